//! The hash key of a request for a `"hash"` upstream, read in place from the parsed head.

use std::net::IpAddr;

use ringway_config::HashKey;

use super::maglev::hash64;
use crate::http::h1::HeaderRef;

/// Seed of request-key hashes (distinct from the permutation seeds of the table).
const KEY_SEED: u64 = 0x6b65_7900_0000_0001;

/// The hash of the request's key; `None` when the request has none (no such header or
/// cookie), and the upstream falls back to round robin.
pub fn request_key_hash(
    key: &HashKey,
    peer: IpAddr,
    src: &[u8],
    headers: &[HeaderRef],
) -> Option<u64> {
    match key {
        HashKey::ClientIp => Some(match peer.to_canonical() {
            IpAddr::V4(ip) => hash64(&ip.octets(), KEY_SEED),
            IpAddr::V6(ip) => hash64(&ip.octets(), KEY_SEED),
        }),
        HashKey::Header(name) => headers
            .iter()
            .find(|h| h.name.get(src).eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| hash64(h.value.get(src), KEY_SEED)),
        HashKey::Cookie(name) => headers
            .iter()
            .filter(|h| h.name.get(src).eq_ignore_ascii_case(b"cookie"))
            .find_map(|h| cookie(h.value.get(src), name.as_bytes()))
            .map(|value| hash64(value, KEY_SEED)),
    }
}

/// The value of cookie `name` in a Cookie field value (`a=1; b=2`, RFC 6265 section 4.2.1),
/// without surrounding double quotes.
fn cookie<'a>(field: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    field.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        if pair[..eq].trim_ascii() != name {
            return None;
        }
        let value = pair[eq + 1..].trim_ascii();
        Some(
            value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::h1::{parse_request, RequestLimits};

    fn key_of(key: &HashKey, head: &str, peer: &str) -> Option<u64> {
        let mut headers = Vec::new();
        let src = head.as_bytes();
        let limits = RequestLimits {
            max_request_line: 8192,
            max_head: 65536,
        };
        parse_request(src, &limits, &mut headers)
            .expect("valid head")
            .expect("complete head");
        request_key_hash(key, peer.parse().unwrap(), src, &headers)
    }

    const PEER: &str = "192.0.2.7";

    #[test]
    fn header_key_is_case_insensitive_and_first_wins() {
        let key = HashKey::Header("x-user".into());
        let a = key_of(
            &key,
            "GET / HTTP/1.1\r\nHost: h\r\nX-User: alice\r\n\r\n",
            PEER,
        );
        let b = key_of(
            &key,
            "GET / HTTP/1.1\r\nx-user: alice\r\nX-USER: bob\r\nHost: h\r\n\r\n",
            "10.0.0.1",
        );
        assert!(a.is_some());
        assert_eq!(a, b, "same value, any peer and name case: same key");
        let c = key_of(
            &key,
            "GET / HTTP/1.1\r\nHost: h\r\nX-User: bob\r\n\r\n",
            PEER,
        );
        assert_ne!(a, c);
        assert_eq!(
            key_of(&key, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", PEER),
            None
        );
    }

    #[test]
    fn cookie_key_finds_the_named_cookie_in_any_cookie_field() {
        let key = HashKey::Cookie("sid".into());
        let plain = key_of(
            &key,
            "GET / HTTP/1.1\r\nHost: h\r\nCookie: sid=42\r\n\r\n",
            PEER,
        );
        let among = key_of(
            &key,
            "GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\nCookie: b=2;  sid=\"42\" ; c=3\r\n\r\n",
            PEER,
        );
        assert!(plain.is_some());
        assert_eq!(plain, among);
        for absent in [
            "Cookie: sids=42; xsid=1",
            "Cookie: SID=42",
            "X-Cookie: sid=42",
        ] {
            let head = format!("GET / HTTP/1.1\r\nHost: h\r\n{absent}\r\n\r\n");
            assert_eq!(key_of(&key, &head, PEER), None, "{absent}");
        }
    }

    #[test]
    fn client_ip_key_ignores_the_rest_of_the_request() {
        let head = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let a = key_of(&HashKey::ClientIp, head, PEER);
        let mapped = key_of(&HashKey::ClientIp, head, "::ffff:192.0.2.7");
        assert!(a.is_some());
        assert_eq!(a, mapped, "an IPv4-mapped address is the IPv4 client");
        assert_ne!(a, key_of(&HashKey::ClientIp, head, "192.0.2.8"));
    }
}
