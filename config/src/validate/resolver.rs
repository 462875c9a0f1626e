//! `[resolver]` (where endpoint names are looked up) and each upstream's `resolve_interval`
//! (how often they are looked up again while the config runs).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::Ctx;
use crate::model::Resolver;
use crate::raw::{RawResolver, Typed};
use crate::units::parse_duration;

/// The port of a DNS server written without one.
const DNS_PORT: u16 = 53;
/// `resolve_interval` when the upstream does not say.
pub(super) const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
/// The shortest `resolve_interval`: shorter would only load the DNS servers.
const MIN_RESOLVE_INTERVAL: Duration = Duration::from_millis(100);

/// `[resolver]`; the defaults (the system's resolver) when the table is absent.
pub(super) fn resolver(ctx: &mut Ctx<'_>, raw: Option<&RawResolver>) -> Option<Resolver> {
    let Some(raw) = raw else {
        return Some(Resolver::default());
    };
    let default = Resolver::default();
    let timeout = ctx.duration(
        raw.timeout.as_ref(),
        "resolver.timeout".into(),
        default.timeout,
    );
    let servers = match &raw.servers {
        None => Some(Vec::new()),
        Some(list) => ctx.list(list, "resolver.servers").and_then(|items| {
            let mut all_valid = true;
            let mut servers = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let key = format!("resolver.servers[{i}]");
                let server =
                    ctx.typed(item, &key)
                        .and_then(|spanned| match dns_server(spanned.get_ref()) {
                            Ok(addr) => Some(addr),
                            Err(message) => ctx.fail(spanned, key, message),
                        });
                match server {
                    Some(addr) => servers.push(addr),
                    None => all_valid = false,
                }
            }
            all_valid.then_some(servers)
        }),
    };
    Some(Resolver {
        servers: servers?,
        timeout: timeout?,
    })
}

/// A DNS server as written in `servers`: `ip`, `ip:port`, `[ipv6]:port` or a bare IPv6
/// address.
fn dns_server(text: &str) -> Result<SocketAddr, String> {
    let addr = match text.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, DNS_PORT),
        Err(_) => text.parse::<SocketAddr>().map_err(|_| {
            format!("\"{text}\" is not a DNS server; write an IP address, with a port if not 53 (\"10.0.0.2\", \"127.0.0.1:5353\", \"[::1]:53\")")
        })?,
    };
    if addr.port() == 0 {
        return Err("port 0 cannot be sent to".into());
    }
    Ok(addr)
}

/// `resolve_interval` of the upstream at `prefix`: a duration of at least 100ms, or `"off"`
/// (`None`); 30s when absent.
pub(super) fn resolve_interval(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    raw: Option<&Typed<String>>,
) -> Option<Option<Duration>> {
    let key = format!("{prefix}.resolve_interval");
    let Some(spanned) = ctx.optional(raw, &key)? else {
        return Some(Some(DEFAULT_RESOLVE_INTERVAL));
    };
    let text = spanned.get_ref().as_str();
    if text == "off" {
        return Some(None);
    }
    match parse_duration(text) {
        Ok(interval) if interval < MIN_RESOLVE_INTERVAL => {
            let message = format!(
                "must be at least {MIN_RESOLVE_INTERVAL:?}, or \"off\" to look names up only at load"
            );
            ctx.fail(spanned, key, message)
        }
        Ok(interval) => Some(Some(interval)),
        Err(why) => ctx.fail(spanned, key, format!("{why}; or \"off\"")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use crate::model::Resolver;
    use crate::resolve::tests::{server, Says};
    use crate::validate::test_util::{errors, one_error, parse_ok, BASE};

    #[test]
    fn defaults_are_the_system_resolver_and_30s() {
        let src = format!(
            "{BASE}[[upstreams]]\nname = \"u\"\nendpoints = [{{ address = \"localhost:9000\" }}]\n"
        );
        let config = parse_ok(&src);
        assert_eq!(config.resolver, Resolver::default());
        assert!(config.resolver.servers.is_empty());
        assert_eq!(config.resolver.timeout, Duration::from_secs(2));
        assert_eq!(
            config.upstreams[0].resolve_interval,
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn servers_timeout_and_intervals() {
        let src = format!(
            "{BASE}[resolver]\nservers = [\"10.0.0.2\", \"127.0.0.1:5353\", \"::1\", \"[::1]:5300\"]\n\
             timeout = \"250ms\"\n\
             [[upstreams]]\nname = \"a\"\nendpoints = []\nresolve_interval = \"5s\"\n\
             [[upstreams]]\nname = \"b\"\nendpoints = []\nresolve_interval = \"off\"\n"
        );
        let config = parse_ok(&src);
        let servers: Vec<String> = config
            .resolver
            .servers
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            servers,
            ["10.0.0.2:53", "127.0.0.1:5353", "[::1]:53", "[::1]:5300"]
        );
        assert_eq!(config.resolver.timeout, Duration::from_millis(250));
        assert_eq!(
            config.upstreams[0].resolve_interval,
            Some(Duration::from_secs(5))
        );
        assert_eq!(config.upstreams[1].resolve_interval, None);
    }

    #[test]
    fn bad_resolver_settings() {
        let src = format!(
            "{BASE}[resolver]\nservers = [\"dns.example:53\", \"10.0.0.1:0\", 53]\ntimeout = \"0s\"\n"
        );
        assert_eq!(
            errors(&src),
            [
                "t.toml:5:12: resolver.servers[0]: \"dns.example:53\" is not a DNS server; write an IP address, with a port if not 53 (\"10.0.0.2\", \"127.0.0.1:5353\", \"[::1]:53\")",
                "t.toml:5:30: resolver.servers[1]: port 0 cannot be sent to",
                "t.toml:5:44: resolver.servers[2]: invalid type: integer `53`, expected a string",
                "t.toml:6:11: resolver.timeout: must be greater than zero",
            ]
        );
        let src = format!("{BASE}[resolver]\nservers = \"10.0.0.2\"\nport = 53\n");
        let errors = errors(&src);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(
            errors[1],
            "t.toml:6:1: resolver.port: unknown field `port`, expected `servers` or `timeout`"
        );
        assert!(
            errors[0].starts_with("t.toml:5:11: resolver.servers:"),
            "{errors:?}"
        );
    }

    #[test]
    fn bad_intervals() {
        let upstream = |interval: &str| {
            format!("{BASE}[[upstreams]]\nname = \"u\"\nendpoints = []\nresolve_interval = {interval}\n")
        };
        let cases = [
            (
                "\"50ms\"",
                "t.toml:7:20: upstreams[0].resolve_interval: must be at least 100ms, or \"off\" to look names up only at load",
            ),
            (
                "\"never\"",
                "t.toml:7:20: upstreams[0].resolve_interval: \"never\" is not a duration; write a number with a unit (ms, s, m, h), such as \"5s\"; or \"off\"",
            ),
            (
                "30",
                "t.toml:7:20: upstreams[0].resolve_interval: invalid type: integer `30`, expected a string",
            ),
        ];
        for (value, want) in cases {
            assert_eq!(one_error(&upstream(value)), want, "{value}");
        }
    }

    #[test]
    fn an_invalid_resolver_does_not_add_errors_for_names() {
        // The names cannot be looked up with servers that are wrong: only the servers are
        // reported, not every endpoint.
        let src = format!(
            "{BASE}[resolver]\nservers = [\"nope\"]\n\
             [[upstreams]]\nname = \"u\"\nendpoints = [{{ address = \"backend.test:80\" }}, {{ address = \"bad\" }}]\n"
        );
        let errors = errors(&src);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("t.toml:5:12: resolver.servers[0]:"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("t.toml:8:59: upstreams[0].endpoints[1].address:"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_name_is_looked_up_once_per_load_and_a_running_address_is_kept() {
        let (dns, queries) = server(Says::Ipv4(vec![
            [127, 0, 0, 2].into(),
            [127, 0, 0, 3].into(),
        ]));
        let src = format!(
            "{BASE}[resolver]\nservers = [\"{dns}\"]\n\
             [[upstreams]]\nname = \"a\"\n\
             endpoints = [{{ address = \"backend.test:1\" }}, {{ address = \"Backend.Test:2\" }}]\n\
             [[upstreams]]\nname = \"b\"\nendpoints = [{{ address = \"backend.test:3\" }}]\n"
        );
        let first = parse_ok(&src);
        assert_eq!(
            queries.load(Ordering::SeqCst),
            1,
            "one query for three endpoints"
        );
        let addresses: Vec<String> = (first.upstreams.iter())
            .flat_map(|u| &u.endpoints)
            .map(|e| e.address.to_string())
            .collect();
        assert_eq!(addresses, ["127.0.0.2:1", "127.0.0.2:2", "127.0.0.2:3"]);
        // A reload of a config that runs on 127.0.0.3 keeps it: the name still has it.
        let mut running = first.clone();
        for e in running.upstreams.iter_mut().flat_map(|u| &mut u.endpoints) {
            e.address.set_ip([127, 0, 0, 3].into());
        }
        let read = crate::read::read(&src, "t.toml").unwrap();
        let again = crate::validate::validate(read, "t.toml", &src, Some(&running)).unwrap();
        assert_eq!(
            again.upstreams[1].endpoints[0].address,
            "127.0.0.3:3".parse().unwrap()
        );
    }
}
