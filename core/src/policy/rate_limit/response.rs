//! The 429 a rate-limited request gets, with the `RateLimit-*` fields of
//! draft-ietf-httpapi-ratelimit-headers-06 (the last version with separate `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset` fields, plus `RateLimit-Policy`), written into
//! the connection's reused output buffer without allocating.

use std::time::Duration;

use ringway_config::RateLimit;

use crate::http::text::push_u64;

const BODY: &[u8] = b"429 Too Many Requests\n";

/// Whole seconds to wait, rounded up, at least 1: `Retry-After` and `RateLimit-Reset` are
/// delta-seconds, and 0 would invite an immediate retry that is refused again.
pub fn reset_seconds(reset: Duration) -> u64 {
    let secs = reset.as_secs() + u64::from(reset.subsec_nanos() > 0);
    secs.max(1)
}

/// Appends the whole response to `out`: the status line, `content-type`, `content-length`,
/// `retry-after`, `ratelimit-limit` (the `rate`), `ratelimit-remaining` (0),
/// `ratelimit-reset`, `ratelimit-policy` (`rate;w=SECONDS` when `per` is whole seconds),
/// `connection` as `connection` says, the blank line and, unless `head_only`, the body.
pub fn write_429(
    out: &mut Vec<u8>,
    limit: &RateLimit,
    reset: Duration,
    connection: Option<&[u8]>,
    head_only: bool,
) {
    let reset = reset_seconds(reset);
    out.extend_from_slice(
        b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain\r\ncontent-length: 22\r\nretry-after: ",
    );
    push_u64(out, reset);
    out.extend_from_slice(b"\r\nratelimit-limit: ");
    push_u64(out, u64::from(limit.rate.get()));
    out.extend_from_slice(b"\r\nratelimit-remaining: 0\r\nratelimit-reset: ");
    push_u64(out, reset);
    if limit.per.subsec_nanos() == 0 {
        out.extend_from_slice(b"\r\nratelimit-policy: ");
        push_u64(out, u64::from(limit.rate.get()));
        out.extend_from_slice(b";w=");
        push_u64(out, limit.per.as_secs());
    }
    out.extend_from_slice(b"\r\n");
    if let Some(value) = connection {
        out.extend_from_slice(b"connection: ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(BODY);
    }
}

#[cfg(test)]
mod tests {
    use std::num::{NonZeroU32, NonZeroUsize};

    use ringway_config::RateLimitKey;

    use super::*;

    fn limit(per: Duration) -> RateLimit {
        RateLimit {
            rate: NonZeroU32::new(500).unwrap(),
            per,
            burst: NonZeroU32::new(100).unwrap(),
            key: RateLimitKey::Route,
            max_keys: NonZeroUsize::new(10).unwrap(),
        }
    }

    #[test]
    fn reset_rounds_up_to_whole_seconds() {
        assert_eq!(reset_seconds(Duration::ZERO), 1);
        assert_eq!(reset_seconds(Duration::from_millis(5)), 1);
        assert_eq!(reset_seconds(Duration::from_secs(2)), 2);
        assert_eq!(reset_seconds(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn a_well_framed_429() {
        let mut out = Vec::new();
        let per = Duration::from_secs(60);
        write_429(
            &mut out,
            &limit(per),
            Duration::from_millis(1500),
            Some(b"close"),
            false,
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain\r\ncontent-length: 22\r\n\
             retry-after: 2\r\nratelimit-limit: 500\r\nratelimit-remaining: 0\r\n\
             ratelimit-reset: 2\r\nratelimit-policy: 500;w=60\r\nconnection: close\r\n\r\n\
             429 Too Many Requests\n"
        );
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body.len(), 22);
    }

    #[test]
    fn head_only_and_no_policy_for_fractional_periods() {
        let mut out = Vec::new();
        let per = Duration::from_millis(250);
        write_429(
            &mut out,
            &limit(per),
            Duration::from_secs(12345),
            None,
            true,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("ratelimit-reset: 12345\r\n\r\n"), "{text}");
        assert!(!text.contains("policy"));
    }
}
