//! `[[listeners]]`: where downstream connections are accepted, and the limits on them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use super::tls::listener_tls;
use super::Ctx;
use crate::model::{EncodedSlashes, IpNet, Listener};
use crate::raw::{At, List, RawListener, Typed};

const MIN_REQUEST_LINE: u64 = 64;

/// `encoded_slashes`: `"reject"` (default) or `"keep"`.
fn encoded_slashes(ctx: &mut Ctx<'_>, l: &RawListener, key: &str) -> Option<EncodedSlashes> {
    let Some(raw) = ctx.optional(l.encoded_slashes.as_ref(), key)? else {
        return Some(EncodedSlashes::Reject);
    };
    match raw.get_ref().as_str() {
        "reject" => Some(EncodedSlashes::Reject),
        "keep" => Some(EncodedSlashes::Keep),
        other => {
            let message = format!("unknown value \"{other}\"; expected \"reject\" or \"keep\"");
            ctx.fail(raw, key.to_string(), message)
        }
    }
}

pub(super) fn listeners(ctx: &mut Ctx<'_>, raw: &List<At<RawListener>>) -> Vec<Listener> {
    let Some(raw) = ctx.list(raw, "listeners") else {
        return Vec::new();
    };
    if raw.is_empty() {
        ctx.error_at(
            0,
            "listeners".into(),
            "at least one [[listeners]] table is required",
        );
    }
    let names = ctx.table_names(raw, "listeners", "listener", |t| t.name.as_ref());
    let mut taken: HashMap<SocketAddr, &str> = HashMap::new();
    let mut valid = Vec::new();
    for (i, spanned) in raw.iter().enumerate() {
        let l = spanned.get_ref();
        let prefix = format!("listeners[{i}]");
        let table = (spanned, prefix.as_str());
        let key = |field: &str| format!("{prefix}.{field}");
        let name = names[i].and_then(|name| ctx.name(name, key("name")));
        let raw_listen = ctx.required(l.listen.as_ref(), table, "listen");
        let mut listen = raw_listen.and_then(|raw_listen| ctx.address(raw_listen, key("listen")));
        if let (Some(addr), Some(raw_listen)) = (listen, raw_listen) {
            if let Some(other) = taken.get(&addr) {
                let message = format!("address {addr} is already used by listener \"{other}\"");
                listen = ctx.fail(raw_listen, key("listen"), message);
            } else if let Some(name) = names[i] {
                taken.insert(addr, name.get_ref());
            }
        }
        let max_connections = ctx
            .int(
                l.max_connections.as_ref(),
                key("max_connections"),
                10_000,
                (1, i64::MAX),
            )
            .and_then(|n| NonZeroUsize::new(usize::try_from(n).ok()?));
        let timeout = |ctx: &mut Ctx<'_>, raw: &Option<Typed<String>>, field, secs| {
            ctx.duration(raw.as_ref(), key(field), Duration::from_secs(secs))
        };
        let header_timeout = timeout(ctx, &l.header_timeout, "header_timeout", 10);
        let idle_timeout = timeout(ctx, &l.idle_timeout, "idle_timeout", 60);
        let body_timeout = timeout(ctx, &l.body_timeout, "body_timeout", 30);
        let send_timeout = timeout(ctx, &l.send_timeout, "send_timeout", 60);
        let line = ctx.size(
            l.max_request_line.as_ref(),
            key("max_request_line"),
            8192,
            MIN_REQUEST_LINE,
        );
        let head = ctx.size(
            l.max_header_bytes.as_ref(),
            key("max_header_bytes"),
            32768,
            0,
        );
        let body = ctx.size(
            l.max_request_body.as_ref(),
            key("max_request_body"),
            100 << 20,
            0,
        );
        let (mut line, mut head) = (to_usize(line), to_usize(head));
        if let (Some(line_bytes), Some(head_bytes)) = (line, head) {
            if head_bytes < line_bytes {
                let message = format!(
                    "max_header_bytes ({head_bytes}) must be at least max_request_line ({line_bytes})"
                );
                // Point at whichever of the two the file sets; the head size if both.
                match (&l.max_header_bytes, &l.max_request_line) {
                    (Some(at), _) => {
                        ctx.error_near(at.span(), key("max_header_bytes"), message);
                        head = None;
                    }
                    (None, Some(at)) => {
                        ctx.error_near(at.span(), key("max_request_line"), message);
                        line = None;
                    }
                    (None, None) => unreachable!("the defaults are consistent"),
                }
            }
        }
        let tls = listener_tls(ctx, &prefix, l.tls.as_ref());
        let trusted_proxies = trusted_proxies(ctx, &prefix, l.trusted_proxies.as_ref());
        let proxy_protocol = ctx
            .optional(l.proxy_protocol.as_ref(), &key("proxy_protocol"))
            .map(|raw| raw.is_some_and(|raw| *raw.get_ref()));
        let encoded_slashes = encoded_slashes(ctx, l, &key("encoded_slashes"));
        let listener = (|| {
            Some(Listener {
                name: name?,
                listen: listen?,
                max_connections: max_connections?,
                header_timeout: header_timeout?,
                idle_timeout: idle_timeout?,
                body_timeout: body_timeout?,
                send_timeout: send_timeout?,
                max_request_line: line?,
                max_header_bytes: head?,
                max_request_body: body?,
                tls: tls?,
                trusted_proxies: trusted_proxies?,
                proxy_protocol: proxy_protocol?,
                encoded_slashes: encoded_slashes?,
            })
        })();
        valid.extend(listener);
    }
    valid
}

/// `trusted_proxies`: networks, each an address or CIDR.
fn trusted_proxies(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    raw: Option<&List<Typed<String>>>,
) -> Option<Vec<IpNet>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let key = format!("{prefix}.trusted_proxies");
    let items = ctx.list(raw, &key)?;
    let mut nets = Vec::with_capacity(items.len());
    let mut valid = true;
    for (i, item) in items.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let Some(text) = ctx.typed(item, &key) else {
            valid = false;
            continue;
        };
        match IpNet::parse(text.get_ref()) {
            Ok(net) => nets.push(net),
            Err(message) => {
                ctx.error(text, key, message);
                valid = false;
            }
        }
    }
    valid.then_some(nets)
}

/// Byte counts past `usize` cannot occur on the 64-bit targets Ringway runs on.
fn to_usize(n: Option<u64>) -> Option<usize> {
    n.and_then(|n| usize::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::validate::test_util::{errors, one_error, parse_ok, BASE};

    #[test]
    fn defaults() {
        let config = parse_ok(BASE);
        let l = &config.listeners[0];
        assert_eq!(l.name, "l");
        assert_eq!(l.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(l.max_connections.get(), 10_000);
        assert_eq!(l.header_timeout, Duration::from_secs(10));
        assert_eq!(l.idle_timeout, Duration::from_secs(60));
        assert_eq!(l.body_timeout, Duration::from_secs(30));
        assert_eq!(l.send_timeout, Duration::from_secs(60));
        assert_eq!(l.max_request_line, 8192);
        assert_eq!(l.max_header_bytes, 32768);
        assert_eq!(l.max_request_body, 100 * 1024 * 1024);
    }

    #[test]
    fn explicit_values() {
        let src = "[[listeners]]\nname = \"a\"\nlisten = \"localhost:8081\"\nmax_connections = 5\n\
                   header_timeout = \"250ms\"\nidle_timeout = \"1m\"\nbody_timeout = \"1.5s\"\n\
                   send_timeout = \"5s\"\nmax_request_line = \"1KiB\"\nmax_header_bytes = 1024\nmax_request_body = \"1MB\"\n";
        let config = parse_ok(src);
        let l = &config.listeners[0];
        assert_eq!(l.listen, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(l.max_connections.get(), 5);
        assert_eq!(l.header_timeout, Duration::from_millis(250));
        assert_eq!(l.idle_timeout, Duration::from_secs(60));
        assert_eq!(l.body_timeout, Duration::from_millis(1500));
        assert_eq!(l.send_timeout, Duration::from_secs(5));
        assert_eq!((l.max_request_line, l.max_header_bytes), (1024, 1024));
        assert_eq!(l.max_request_body, 1_000_000);
    }

    #[test]
    fn at_least_one_listener() {
        assert_eq!(
            one_error("[runtime]\npin = true\n"),
            "t.toml:1:1: listeners: at least one [[listeners]] table is required"
        );
    }

    #[test]
    fn duplicate_names_and_addresses() {
        let src = format!("{BASE}\n[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:8080\"\n");
        assert_eq!(
            errors(&src),
            [
                "t.toml:6:8: listeners[1].name: duplicate listener name \"l\" (first defined on line 2)",
                "t.toml:7:10: listeners[1].listen: address 127.0.0.1:8080 is already used by listener \"l\"",
            ]
        );
    }

    #[test]
    fn invalid_name() {
        let src = "[[listeners]]\nname = \"a b\"\nlisten = \"127.0.0.1:1\"\n";
        assert_eq!(
            one_error(src),
            "t.toml:2:8: listeners[0].name: invalid name \"a b\": use letters, digits, '_', '.' and '-' (at least one)"
        );
        let src = "[[listeners]]\nname = \"\"\nlisten = \"127.0.0.1:1\"\n";
        assert!(one_error(src).starts_with("t.toml:2:8: listeners[0].name: invalid name \"\""));
        let src = "[[listeners]]\nname = \"_unrouted\"\nlisten = \"127.0.0.1:1\"\n";
        assert_eq!(
            one_error(src),
            "t.toml:2:8: listeners[0].name: invalid name \"_unrouted\": names starting with '_' are reserved"
        );
    }

    #[test]
    fn bad_listen_address() {
        let src = "[[listeners]]\nname = \"a\"\nlisten = \"8080\"\n";
        assert_eq!(
            one_error(src),
            "t.toml:3:10: listeners[0].listen: \"8080\" is not an address; expected ip:port or host:port"
        );
        let src = "[[listeners]]\nname = \"a\"\nlisten = \"no-such-host.invalid:80\"\n";
        assert!(one_error(src).starts_with(
            "t.toml:3:10: listeners[0].listen: cannot resolve host \"no-such-host.invalid\""
        ));
    }

    #[test]
    fn limits() {
        let src = format!(
            "{BASE}max_connections = 0\nheader_timeout = \"0s\"\nidle_timeout = \"10\"\n\
             max_request_line = 63\nmax_request_body = -1\n"
        );
        assert_eq!(
            errors(&src),
            [
                "t.toml:4:19: listeners[0].max_connections: must be at least 1, got 0",
                "t.toml:5:18: listeners[0].header_timeout: must be greater than zero",
                "t.toml:6:16: listeners[0].idle_timeout: \"10\" has no unit; write it with ms, s, m or h, such as \"10s\"",
                "t.toml:7:20: listeners[0].max_request_line: must be at least 64 bytes, got 63",
                "t.toml:8:20: listeners[0].max_request_body: must not be negative, got -1",
            ]
        );
    }

    #[test]
    fn header_bytes_must_hold_the_request_line() {
        let src = format!("{BASE}max_request_line = 4096\nmax_header_bytes = \"2KiB\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:5:20: listeners[0].max_header_bytes: max_header_bytes (2048) must be at least max_request_line (4096)"
        );
        let src = format!("{BASE}max_request_line = \"64KiB\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:4:20: listeners[0].max_request_line: max_header_bytes (32768) must be at least max_request_line (65536)"
        );
    }

    #[test]
    fn size_of_wrong_type() {
        let src = format!("{BASE}max_request_body = 1.5\n");
        assert_eq!(
            one_error(&src),
            "t.toml:4:20: listeners[0].max_request_body: invalid type: floating point `1.5`, expected a size: a number of bytes or a string such as \"64KiB\""
        );
    }
}

#[cfg(test)]
mod trust_tests {
    use crate::model::IpNet;
    use crate::validate::test_util::{one_error, parse_ok, BASE};

    #[test]
    fn networks_parse_and_match() {
        let net = |s| IpNet::parse(s).unwrap();
        let ip = |s: &str| s.parse().unwrap();
        assert!(net("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!net("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!net("0.0.0.0/0").contains(ip("::2")));
        // An IPv4-mapped IPv6 peer (a listener on [::]) is its IPv4 address.
        assert!(net("192.168.0.0/16").contains(ip("::ffff:192.168.3.4")));
        assert!(net("2001:db8::/32").contains(ip("2001:db8:1::1")));
        assert!(!net("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(net("::/0").contains(ip("::1")));
        for (bad, why) in [
            ("10.0.0.1/8", "host bits set; the network is 10.0.0.0/8"),
            ("10.0.0.0/33", "prefix length must be 0 to 32"),
            ("10.0.0.0/+8", "prefix length must be 0 to 32"),
            ("::/129", "prefix length must be 0 to 128"),
            ("example.com", "is not an IP address"),
            ("10.0.0.0/", "prefix length"),
        ] {
            let err = IpNet::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn listener_keys() {
        let cfg = parse_ok(&format!(
            "{BASE}trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nproxy_protocol = true\n"
        ));
        let l = &cfg.listeners[0];
        assert_eq!(l.trusted_proxies.len(), 2);
        assert_eq!(l.trusted_proxies[1].to_string(), "::1/128");
        assert!(l.proxy_protocol);
        let cfg = parse_ok(BASE);
        assert!(cfg.listeners[0].trusted_proxies.is_empty());
        assert!(!cfg.listeners[0].proxy_protocol);
        let err = one_error(&format!("{BASE}trusted_proxies = [\"10.1.2.3/16\"]\n"));
        assert!(
            err.ends_with(
                "listeners[0].trusted_proxies[0]: \"10.1.2.3/16\" has host bits set; the network is 10.1.0.0/16"
            ),
            "{err}"
        );
    }

    #[test]
    fn encoded_slashes_are_refused_unless_kept() {
        assert_eq!(
            parse_ok(BASE).listeners[0].encoded_slashes,
            crate::EncodedSlashes::Reject
        );
        let cfg = parse_ok(&format!("{BASE}encoded_slashes = \"keep\"\n"));
        assert_eq!(
            cfg.listeners[0].encoded_slashes,
            crate::EncodedSlashes::Keep
        );
        let err = one_error(&format!("{BASE}encoded_slashes = \"decode\"\n"));
        assert!(
            err.ends_with(
                "listeners[0].encoded_slashes: unknown value \"decode\"; expected \"reject\" or \"keep\""
            ),
            "{err}"
        );
    }
}
