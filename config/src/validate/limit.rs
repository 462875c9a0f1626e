//! A route's traffic limits: `rate_limit` (a node-wide token bucket per key) and
//! `max_in_flight` (a cap on concurrent requests per shard).

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use toml::Spanned;

use super::check::is_token;
use super::Ctx;
use crate::model::{RateLimit, RateLimitKey};
use crate::raw::{At, RawRateLimit, RawRoute};

/// Largest `rate` and `burst`: beyond a billion tokens per period a limit means nothing.
const MAX_TOKENS: i64 = 1_000_000_000;
/// Largest `max_keys` per shard (about 100 bytes each).
const MAX_KEYS: i64 = 10_000_000;
const DEFAULT_MAX_KEYS: i64 = 10_000;
/// Largest `max_in_flight`.
const MAX_IN_FLIGHT: i64 = 10_000_000;

/// `rate_limit` and `max_in_flight` of a route; `None` when either is invalid (reported).
pub(super) fn limits(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    r: &RawRoute,
) -> Option<(Option<RateLimit>, Option<NonZeroUsize>)> {
    let rate_limit = match r.rate_limit.as_ref() {
        None => Some(None),
        Some(raw) => rate_limit(ctx, prefix, raw).map(Some),
    };
    let max_in_flight = match r.max_in_flight.as_ref() {
        None => Some(None),
        Some(raw) => ctx
            .int(
                Some(raw),
                format!("{prefix}.max_in_flight"),
                1,
                (1, MAX_IN_FLIGHT),
            )
            .and_then(|n| usize::try_from(n).ok())
            .and_then(NonZeroUsize::new)
            .map(Some),
    };
    Some((rate_limit?, max_in_flight?))
}

fn rate_limit(ctx: &mut Ctx<'_>, prefix: &str, raw: &At<RawRateLimit>) -> Option<RateLimit> {
    let table_key = format!("{prefix}.rate_limit");
    let key = |field: &str| format!("{table_key}.{field}");
    let table = (raw, table_key.as_str());
    let raw = raw.get_ref();
    let rate = ctx
        .required(raw.rate.as_ref(), table, "rate")
        .and_then(|rate| tokens(ctx, rate, key("rate")));
    let per = ctx.duration(raw.per.as_ref(), key("per"), Duration::from_secs(1));
    let burst = match raw.burst.as_ref() {
        None => rate,
        Some(burst) => ctx
            .typed(burst, &key("burst"))
            .and_then(|burst| tokens(ctx, burst, key("burst"))),
    };
    let bucket_key = match ctx.optional(raw.key.as_ref(), &key("key")) {
        None => None,
        Some(None) => Some(RateLimitKey::Route),
        Some(Some(text)) => bucket_key(ctx, text, key("key")),
    };
    let max_keys = ctx
        .int(
            raw.max_keys.as_ref(),
            key("max_keys"),
            DEFAULT_MAX_KEYS,
            (1, MAX_KEYS),
        )
        .and_then(|n| usize::try_from(n).ok())
        .and_then(NonZeroUsize::new);
    Some(RateLimit {
        rate: rate?,
        per: per?,
        burst: burst?,
        key: bucket_key?,
        max_keys: max_keys?,
    })
}

/// A number of tokens, 1..=[`MAX_TOKENS`].
fn tokens(ctx: &mut Ctx<'_>, raw: &Spanned<i64>, key: String) -> Option<NonZeroU32> {
    let n = *raw.get_ref();
    if !(1..=MAX_TOKENS).contains(&n) {
        let message = format!("must be between 1 and {MAX_TOKENS}, got {n}");
        return ctx.fail(raw, key, message);
    }
    u32::try_from(n).ok().and_then(NonZeroU32::new)
}

fn bucket_key(ctx: &mut Ctx<'_>, raw: &Spanned<String>, key: String) -> Option<RateLimitKey> {
    let text = raw.get_ref().as_str();
    match text {
        "route" => return Some(RateLimitKey::Route),
        "client_ip" => return Some(RateLimitKey::ClientIp),
        // The route's auth is checked with the route: a limit keyed by a consumer that no
        // request can have would silently become a limit on the whole route.
        "consumer" => return Some(RateLimitKey::Consumer),
        _ => {}
    }
    match text.strip_prefix("header:") {
        Some(name) if is_token(name) => Some(RateLimitKey::Header(name.to_ascii_lowercase())),
        Some(name) => {
            let message = format!("\"{name}\" is not a valid header name (an HTTP token)");
            ctx.fail(raw, key, message)
        }
        None => {
            let message = format!(
                "\"{text}\" is not a rate limit key; expected \"route\", \"client_ip\", \
                 \"consumer\" or \"header:NAME\""
            );
            ctx.fail(raw, key, message)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::{NonZeroU32, NonZeroUsize};
    use std::time::Duration;

    use crate::model::{RateLimit, RateLimitKey, Route};
    use crate::validate::route::tests::with_route;
    use crate::validate::test_util::{errors, one_error, parse_ok};

    fn the_route(body: &str) -> Route {
        parse_ok(&with_route(body)).routes.remove(0)
    }

    fn limit(rate: u32, per: Duration, burst: u32, key: RateLimitKey) -> RateLimit {
        RateLimit {
            rate: NonZeroU32::new(rate).unwrap(),
            per,
            burst: NonZeroU32::new(burst).unwrap(),
            key,
            max_keys: NonZeroUsize::new(10_000).unwrap(),
        }
    }

    #[test]
    fn no_limits_by_default() {
        let r = the_route("upstream = \"users\"\n");
        assert_eq!((r.rate_limit, r.max_in_flight), (None, None));
    }

    #[test]
    fn rate_limit_defaults() {
        let r = the_route("upstream = \"users\"\nrate_limit = { rate = 500 }\n");
        let want = limit(500, Duration::from_secs(1), 500, RateLimitKey::Route);
        assert_eq!(r.rate_limit, Some(want));
    }

    #[test]
    fn rate_limit_values() {
        let r = the_route(
            "upstream = \"users\"\nrate_limit = { rate = 500, per = \"1s\", burst = 100, key = \"client_ip\" }\n",
        );
        let want = limit(500, Duration::from_secs(1), 100, RateLimitKey::ClientIp);
        assert_eq!(r.rate_limit, Some(want));
        let r = the_route(
            "upstream = \"users\"\n[routes.rate_limit]\nrate = 10\nper = \"1m\"\nkey = \"header:X-Api-Key\"\nmax_keys = 64\n",
        );
        let mut want = limit(
            10,
            Duration::from_secs(60),
            10,
            RateLimitKey::Header("x-api-key".into()),
        );
        want.max_keys = NonZeroUsize::new(64).unwrap();
        assert_eq!(r.rate_limit, Some(want));
    }

    #[test]
    fn max_in_flight() {
        let r = the_route("upstream = \"users\"\nmax_in_flight = 100\n");
        assert_eq!(r.max_in_flight, NonZeroUsize::new(100));
        let src = with_route("upstream = \"users\"\nmax_in_flight = 0\n");
        assert_eq!(
            one_error(&src),
            "t.toml:10:17: routes[0].max_in_flight: must be between 1 and 10000000, got 0"
        );
        let src = with_route("upstream = \"users\"\nmax_in_flight = \"100\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:10:17: routes[0].max_in_flight: invalid type: string \"100\", expected i64"
        );
    }

    #[test]
    fn consumer_needs_authentication() {
        let src =
            with_route("upstream = \"users\"\nrate_limit = { rate = 5, key = \"consumer\" }\n");
        assert_eq!(
            one_error(&src),
            "t.toml:10:32: routes[0].rate_limit.key: key \"consumer\" needs auth on the route: \
             without it no request has a consumer"
        );
    }

    #[test]
    fn every_bad_value_is_reported() {
        let src = with_route(
            "upstream = \"users\"\nrate_limit = { rate = 0, per = \"5\", burst = -1, key = \"query:id\", max_keys = 0 }\n",
        );
        assert_eq!(
            errors(&src),
            [
                "t.toml:10:23: routes[0].rate_limit.rate: must be between 1 and 1000000000, got 0",
                "t.toml:10:32: routes[0].rate_limit.per: \"5\" has no unit; write it with ms, s, m or h, such as \"5s\"",
                "t.toml:10:45: routes[0].rate_limit.burst: must be between 1 and 1000000000, got -1",
                "t.toml:10:55: routes[0].rate_limit.key: \"query:id\" is not a rate limit key; expected \"route\", \"client_ip\", \"consumer\" or \"header:NAME\"",
                "t.toml:10:78: routes[0].rate_limit.max_keys: must be between 1 and 10000000, got 0",
            ]
        );
        let src = with_route("upstream = \"users\"\nrate_limit = { key = \"header:x y\" }\n");
        assert_eq!(
            errors(&src),
            [
                "t.toml:10:14: routes[0].rate_limit: missing field `rate`",
                "t.toml:10:22: routes[0].rate_limit.key: \"x y\" is not a valid header name (an HTTP token)",
            ]
        );
    }

    #[test]
    fn unknown_keys_and_wrong_shapes() {
        let src = with_route("upstream = \"users\"\nrate_limit = { rate = 5, period = \"1s\" }\n");
        assert_eq!(
            one_error(&src),
            "t.toml:10:26: routes[0].rate_limit.period: unknown field `period`, expected one of \
             `rate`, `per`, `burst`, `key`, `max_keys`"
        );
        let src = with_route("upstream = \"users\"\nrate_limit = 500\n");
        assert_eq!(
            one_error(&src),
            "t.toml:10:14: routes[0].rate_limit: invalid type: integer `500`, expected a rate \
             limit such as { rate = 500, per = \"1s\", key = \"client_ip\" }"
        );
    }
}
