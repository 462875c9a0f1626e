//! `[[upstreams]]`: named groups of endpoints, and how connections to them behave.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use toml::Spanned;

use super::check::is_token;
use super::protect::{circuit_breaker, health_check, outlier_detection};
use super::resolver::resolve_interval;
use super::tls::upstream_tls;
use super::Ctx;
use crate::model::{Balance, Endpoint, HashKey, HealthCheckKind, Upstream, UpstreamProtocol};
use crate::raw::{At, List, RawEndpoint, RawUpstream, Typed};

pub(super) fn upstreams(ctx: &mut Ctx<'_>, raw: &List<At<RawUpstream>>) -> Vec<Upstream> {
    let Some(raw) = ctx.list(raw, "upstreams") else {
        return Vec::new();
    };
    let names = ctx.table_names(raw, "upstreams", "upstream", |t| t.name.as_ref());
    let mut valid = Vec::new();
    for (i, spanned) in raw.iter().enumerate() {
        let u = spanned.get_ref();
        let prefix = format!("upstreams[{i}]");
        let key = |field: &str| format!("{prefix}.{field}");
        let name = names[i].and_then(|name| ctx.name(name, key("name")));
        let endpoints = match &u.endpoints {
            Some(list) => ctx
                .list(list, &key("endpoints"))
                .and_then(|raw| endpoints(ctx, i, raw)),
            None => {
                let message = "missing field `endpoints`";
                ctx.error_near(spanned.span(), prefix.clone(), message);
                None
            }
        };
        let timeout = |ctx: &mut Ctx<'_>, raw: &Option<Typed<String>>, field, secs| {
            ctx.duration(raw.as_ref(), key(field), Duration::from_secs(secs))
        };
        let connect_timeout = timeout(ctx, &u.connect_timeout, "connect_timeout", 5);
        let request_timeout = timeout(ctx, &u.request_timeout, "request_timeout", 60);
        let idle_timeout = timeout(ctx, &u.idle_timeout, "idle_timeout", 60);
        let pool_idle_timeout = timeout(ctx, &u.pool_idle_timeout, "pool_idle_timeout", 60);
        let max_idle = ctx
            .int(
                u.max_idle_per_endpoint.as_ref(),
                key("max_idle_per_endpoint"),
                64,
                (0, i64::MAX),
            )
            .and_then(|n| usize::try_from(n).ok());
        let balance = balance(ctx, u, &prefix);
        let breaker = circuit_breaker(ctx, &prefix, u.circuit_breaker.as_ref());
        let health = health_check(ctx, &prefix, u.health_check.as_ref());
        let outlier = outlier_detection(ctx, &prefix, u.outlier_detection.as_ref());
        let tls = upstream_tls(ctx, &prefix, u.tls.as_ref());
        let resolve_interval = resolve_interval(ctx, &prefix, u.resolve_interval.as_ref());
        let protocol = protocol(ctx, u, &prefix);
        if let (Some(Some(check)), Some(UpstreamProtocol::H1)) = (&health, protocol) {
            if matches!(check.kind, HealthCheckKind::Grpc { .. }) {
                grpc_check_needs_h2(ctx, u, &prefix);
            }
        }
        let upstream = (|| {
            Some(Upstream {
                name: name?,
                endpoints: endpoints?,
                connect_timeout: connect_timeout?,
                request_timeout: request_timeout?,
                idle_timeout: idle_timeout?,
                pool_idle_timeout: pool_idle_timeout?,
                max_idle_per_endpoint: max_idle?,
                balance: balance?,
                circuit_breaker: breaker?,
                health_check: health?,
                outlier_detection: outlier?,
                tls: tls?,
                resolve_interval: resolve_interval?,
                protocol: protocol?,
            })
        })();
        valid.extend(upstream);
    }
    valid
}

/// A gRPC health check on an HTTP/1.1 upstream: gRPC runs over HTTP/2 only, so the check
/// and the traffic would disagree about what the endpoint speaks.
fn grpc_check_needs_h2(ctx: &mut Ctx<'_>, u: &RawUpstream, prefix: &str) {
    let Some(Typed::Ok(kind)) = u
        .health_check
        .as_ref()
        .and_then(|t| t.get_ref().kind.as_ref())
    else {
        return;
    };
    let message =
        "a gRPC health check needs protocol = \"h2\" on the upstream (gRPC runs over HTTP/2)";
    ctx.error(kind, format!("{prefix}.health_check.kind"), message);
}

/// `protocol`: `"h1"` (default) or `"h2"`.
fn protocol(ctx: &mut Ctx<'_>, u: &RawUpstream, prefix: &str) -> Option<UpstreamProtocol> {
    let key = format!("{prefix}.protocol");
    let Some(raw) = ctx.optional(u.protocol.as_ref(), &key)? else {
        return Some(UpstreamProtocol::H1);
    };
    match raw.get_ref().as_str() {
        "h1" => Some(UpstreamProtocol::H1),
        "h2" => Some(UpstreamProtocol::H2),
        other => {
            let message = format!("unknown protocol \"{other}\"; expected \"h1\" or \"h2\"");
            ctx.fail(raw, key, message)
        }
    }
}

/// `balance` and `hash_key`: the key is required with `"hash"` and refused with the others.
fn balance(ctx: &mut Ctx<'_>, u: &RawUpstream, prefix: &str) -> Option<Balance> {
    let key = |field: &str| format!("{prefix}.{field}");
    let policy = ctx.optional(u.balance.as_ref(), &key("balance"))?;
    let hash_key = ctx.optional(u.hash_key.as_ref(), &key("hash_key"));
    let name = policy.map_or("round_robin", |p| p.get_ref().as_str());
    let balance = match name {
        "round_robin" => Balance::RoundRobin,
        "random" => Balance::Random,
        "least_request" => Balance::LeastRequest,
        "hash" => {
            let policy = policy.expect("\"hash\" was written");
            match hash_key? {
                Some(raw) => return hash_key_of(ctx, raw, key("hash_key")).map(Balance::Hash),
                None => {
                    let message = "balance = \"hash\" needs hash_key: \"client_ip\", \"header:NAME\" or \"cookie:NAME\"";
                    return ctx.fail(policy, key("hash_key"), message);
                }
            }
        }
        other => {
            let message = format!(
                "unknown balance \"{other}\"; expected \"round_robin\", \"random\", \"least_request\" or \"hash\""
            );
            return ctx.fail(policy.expect("a default is known"), key("balance"), message);
        }
    };
    if let Some(raw) = hash_key? {
        let message =
            format!("hash_key is only used with balance = \"hash\" (balance is \"{name}\")");
        return ctx.fail(raw, key("hash_key"), message);
    }
    Some(balance)
}

fn hash_key_of(ctx: &mut Ctx<'_>, raw: &Spanned<String>, key: String) -> Option<HashKey> {
    let text = raw.get_ref().as_str();
    let named = |kind: &str| {
        text.strip_prefix(kind)
            .and_then(|rest| rest.strip_prefix(':'))
    };
    if text == "client_ip" {
        return Some(HashKey::ClientIp);
    }
    let (what, name, make): (&str, _, fn(String) -> HashKey) = if let Some(name) = named("header") {
        ("header name", name, |n| {
            HashKey::Header(n.to_ascii_lowercase())
        })
    } else if let Some(name) = named("cookie") {
        ("cookie name", name, HashKey::Cookie)
    } else {
        let message = format!(
            "\"{text}\" is not a hash key; expected \"client_ip\", \"header:NAME\" or \"cookie:NAME\""
        );
        return ctx.fail(raw, key, message);
    };
    if !is_token(name) {
        let message = format!("\"{name}\" is not a valid {what} (an HTTP token)");
        return ctx.fail(raw, key, message);
    }
    Some(make(name.to_string()))
}

/// An endpoint as written: its name and port, or its address. The same endpoint written twice
/// is refused; two names that resolve to one address are not (both point at it, as they may
/// come to when a name is looked up again while the gateway runs).
fn written(
    host: Option<&str>,
    addr: std::net::SocketAddr,
) -> (Option<String>, std::net::SocketAddr) {
    match host {
        Some(host) => (
            Some(host.to_owned()),
            std::net::SocketAddr::from(([0, 0, 0, 0], addr.port())),
        ),
        None => (None, addr),
    }
}

/// Every endpoint checked; `None` if any failed. An empty list is valid (answers 503).
fn endpoints(ctx: &mut Ctx<'_>, upstream: usize, raw: &[At<RawEndpoint>]) -> Option<Vec<Endpoint>> {
    let mut seen = HashSet::new();
    let mut endpoints = Vec::with_capacity(raw.len());
    let mut all_valid = true;
    for (i, spanned) in raw.iter().enumerate() {
        let e = spanned.get_ref();
        let prefix = format!("upstreams[{upstream}].endpoints[{i}]");
        let key = |field: &str| format!("{prefix}.{field}");
        let table = (spanned, prefix.as_str());
        let mut address = None;
        let mut host = None;
        if let Some(raw_address) = ctx.required(e.address.as_ref(), table, "address") {
            host = host_as_written(raw_address.get_ref());
            address = ctx.endpoint_address(raw_address, key("address"));
            if let Some(addr) = address {
                if addr.port() == 0 {
                    let message = "port 0 cannot be connected to";
                    address = ctx.fail(raw_address, key("address"), message);
                } else if !seen.insert(written(host.as_deref(), addr)) {
                    let message = format!(
                        "endpoint {} is listed twice in this upstream",
                        raw_address.get_ref()
                    );
                    address = ctx.fail(raw_address, key("address"), message);
                }
            }
        }
        let weight = ctx
            .int(e.weight.as_ref(), key("weight"), 1, (1, 1000))
            .and_then(|w| NonZeroU32::new(u32::try_from(w).ok()?));
        match (address, weight) {
            (Some(address), Some(weight)) => endpoints.push(Endpoint {
                address,
                host,
                weight,
            }),
            _ => all_valid = false,
        }
    }
    all_valid.then_some(endpoints)
}

/// The host of a `host:port` address as written, lower-cased; `None` for an IP literal.
fn host_as_written(address: &str) -> Option<String> {
    if address.parse::<SocketAddr>().is_ok() {
        return None;
    }
    let (host, _port) = address.rsplit_once(':')?;
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::model::{Balance, HashKey};
    use crate::validate::test_util::{errors, one_error, parse_ok, BASE};

    #[test]
    fn defaults_and_weights() {
        let src = format!(
            "{BASE}[[upstreams]]\nname = \"users\"\nendpoints = [\n  \
             {{ address = \"127.0.0.1:9000\", weight = 2 }},\n  {{ address = \"127.0.0.1:9001\" }},\n]\n"
        );
        let config = parse_ok(&src);
        let u = config.upstream("users").unwrap();
        assert_eq!(u.endpoints.len(), 2);
        assert_eq!(u.endpoints[0].address, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(u.endpoints[0].weight.get(), 2);
        assert_eq!(u.endpoints[1].weight.get(), 1);
        assert_eq!(u.connect_timeout, Duration::from_secs(5));
        assert_eq!(u.request_timeout, Duration::from_secs(60));
        assert_eq!(u.idle_timeout, Duration::from_secs(60));
        assert_eq!(u.pool_idle_timeout, Duration::from_secs(60));
        assert_eq!(u.max_idle_per_endpoint, 64);
        assert_eq!(u.balance, Balance::RoundRobin);
    }

    fn with_balance(lines: &str) -> String {
        format!("{BASE}[[upstreams]]\nname = \"u\"\nendpoints = []\n{lines}\n")
    }

    #[test]
    fn balance_policies() {
        for (text, want) in [
            ("round_robin", Balance::RoundRobin),
            ("random", Balance::Random),
            ("least_request", Balance::LeastRequest),
        ] {
            let src = with_balance(&format!("balance = \"{text}\""));
            assert_eq!(parse_ok(&src).upstreams[0].balance, want);
        }
        for (text, want) in [
            ("client_ip", HashKey::ClientIp),
            ("header:X-User", HashKey::Header("x-user".into())),
            ("cookie:Session", HashKey::Cookie("Session".into())),
        ] {
            let src = with_balance(&format!("balance = \"hash\"\nhash_key = \"{text}\""));
            assert_eq!(parse_ok(&src).upstreams[0].balance, Balance::Hash(want));
        }
    }

    #[test]
    fn bad_balance_and_hash_keys() {
        let cases = [
            (
                "balance = \"fastest\"",
                "t.toml:7:11: upstreams[0].balance: unknown balance \"fastest\"; expected \"round_robin\", \"random\", \"least_request\" or \"hash\"",
            ),
            (
                "balance = \"hash\"",
                "t.toml:7:11: upstreams[0].hash_key: balance = \"hash\" needs hash_key: \"client_ip\", \"header:NAME\" or \"cookie:NAME\"",
            ),
            (
                "hash_key = \"client_ip\"",
                "t.toml:7:12: upstreams[0].hash_key: hash_key is only used with balance = \"hash\" (balance is \"round_robin\")",
            ),
            (
                "balance = \"random\"\nhash_key = \"client_ip\"",
                "t.toml:8:12: upstreams[0].hash_key: hash_key is only used with balance = \"hash\" (balance is \"random\")",
            ),
            (
                "balance = \"hash\"\nhash_key = \"query:id\"",
                "t.toml:8:12: upstreams[0].hash_key: \"query:id\" is not a hash key; expected \"client_ip\", \"header:NAME\" or \"cookie:NAME\"",
            ),
            (
                "balance = \"hash\"\nhash_key = \"header:\"",
                "t.toml:8:12: upstreams[0].hash_key: \"\" is not a valid header name (an HTTP token)",
            ),
            (
                "balance = \"hash\"\nhash_key = \"cookie:a b\"",
                "t.toml:8:12: upstreams[0].hash_key: \"a b\" is not a valid cookie name (an HTTP token)",
            ),
            (
                "balance = 3",
                "t.toml:7:11: upstreams[0].balance: invalid type: integer `3`, expected a string",
            ),
        ];
        for (lines, want) in cases {
            assert_eq!(one_error(&with_balance(lines)), want, "{lines}");
        }
    }

    #[test]
    fn explicit_values() {
        let src = format!(
            "{BASE}[[upstreams]]\nname = \"u\"\nendpoints = []\nconnect_timeout = \"250ms\"\n\
             request_timeout = \"2s\"\nidle_timeout = \"3s\"\npool_idle_timeout = \"4s\"\n\
             max_idle_per_endpoint = 0\n"
        );
        let config = parse_ok(&src);
        let u = &config.upstreams[0];
        assert!(u.endpoints.is_empty());
        assert_eq!(u.connect_timeout, Duration::from_millis(250));
        assert_eq!(u.request_timeout, Duration::from_secs(2));
        assert_eq!(u.idle_timeout, Duration::from_secs(3));
        assert_eq!(u.pool_idle_timeout, Duration::from_secs(4));
        assert_eq!(u.max_idle_per_endpoint, 0);
    }

    #[test]
    fn endpoints_key_is_required() {
        let src = format!("{BASE}[[upstreams]]\nname = \"u\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:4:1: upstreams[0]: missing field `endpoints`"
        );
    }

    #[test]
    fn weight_range() {
        for bad in ["0", "1001", "-1"] {
            let src = format!(
                "{BASE}[[upstreams]]\nname = \"u\"\nendpoints = [{{ address = \"127.0.0.1:1\", weight = {bad} }}]\n"
            );
            assert_eq!(
                one_error(&src),
                format!("t.toml:6:50: upstreams[0].endpoints[0].weight: must be between 1 and 1000, got {bad}")
            );
        }
        let src = format!(
            "{BASE}[[upstreams]]\nname = \"u\"\nendpoints = [{{ address = \"127.0.0.1:1\", weight = 1000 }}]\n"
        );
        assert_eq!(parse_ok(&src).upstreams[0].endpoints[0].weight.get(), 1000);
    }

    #[test]
    fn bad_endpoint_addresses() {
        let src = format!(
            "{BASE}[[upstreams]]\nname = \"u\"\nendpoints = [\n  {{ address = \"10.0.0.1\" }},\n  \
             {{ address = \"127.0.0.1:0\" }},\n  {{ address = \"127.0.0.1:5\" }},\n  \
             {{ address = \"127.0.0.1:5\" }},\n  {{ address = \"LOCALHOST:6\" }},\n  \
             {{ address = \"localhost:6\" }},\n]\n"
        );
        assert_eq!(
            errors(&src),
            [
                "t.toml:7:15: upstreams[0].endpoints[0].address: \"10.0.0.1\" is not an address; expected ip:port or host:port",
                "t.toml:8:15: upstreams[0].endpoints[1].address: port 0 cannot be connected to",
                "t.toml:10:15: upstreams[0].endpoints[3].address: endpoint 127.0.0.1:5 is listed twice in this upstream",
                "t.toml:12:15: upstreams[0].endpoints[5].address: endpoint localhost:6 is listed twice in this upstream",
            ]
        );
        // A name and an address that come to the same place are two endpoints written
        // differently: allowed, as when two names resolve to one address.
        let src = format!(
            "{BASE}[[upstreams]]\nname = \"u\"\nendpoints = [\n  {{ address = \"127.0.0.1:5\" }},\n  \
             {{ address = \"localhost:5\" }},\n]\n"
        );
        let endpoints = &parse_ok(&src).upstreams[0].endpoints;
        assert_eq!(endpoints[0].address, endpoints[1].address);
    }

    #[test]
    fn duplicate_upstream_names_and_bad_timeouts() {
        let src = format!(
            "{BASE}[[upstreams]]\nname = \"u\"\nendpoints = []\nconnect_timeout = \"5\"\n\
             [[upstreams]]\nname = \"u\"\nendpoints = []\nmax_idle_per_endpoint = -1\n"
        );
        assert_eq!(
            errors(&src),
            [
                "t.toml:7:19: upstreams[0].connect_timeout: \"5\" has no unit; write it with ms, s, m or h, such as \"5s\"",
                "t.toml:9:8: upstreams[1].name: duplicate upstream name \"u\" (first defined on line 5)",
                "t.toml:11:25: upstreams[1].max_idle_per_endpoint: must be at least 0, got -1",
            ]
        );
    }

    #[test]
    fn endpoint_host_is_kept_for_names_only() {
        let src = format!(
            "{BASE}[[upstreams]]\nname = \"u\"\nendpoints = [\n  {{ address = \"LocalHost:9000\" }},\n  \
             {{ address = \"127.0.0.1:9001\" }},\n  {{ address = \"[::1]:9002\" }},\n]\n"
        );
        let config = parse_ok(&src);
        let endpoints = &config.upstreams[0].endpoints;
        assert_eq!(endpoints[0].host.as_deref(), Some("localhost"));
        assert_eq!(endpoints[0].address, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(endpoints[1].host, None);
        assert_eq!(endpoints[2].host, None);
        assert_eq!(config.upstreams[0].tls, None);
    }

    #[test]
    fn unknown_endpoint_key() {
        let src = format!(
            "{BASE}[[upstreams]]\nname = \"u\"\nendpoints = [{{ address = \"127.0.0.1:1\", wieght = 2 }}]\n"
        );
        assert_eq!(
            one_error(&src),
            "t.toml:6:41: upstreams[0].endpoints[0].wieght: unknown field `wieght`, expected `address` or `weight`"
        );
    }
}
