//! `[[routes]]`: what a request must look like to match (listeners, host, methods, headers;
//! the path keys are checked in `path`). What a matched request gets is checked in `action`.

use std::collections::HashSet;
use std::time::Duration;

use super::action::action;
use super::check::host_match;
use super::limit::limits;
use super::path::path;
use super::retry::timeout_and_retry;
use super::{identity, Ctx};
use crate::model::{HeaderMatch, RateLimitKey, Route};
use crate::raw::{At, List, RawConfig, RawHeaderMatch, RawRoute, Typed};
use crate::units::parse_duration;

pub(super) fn routes(ctx: &mut Ctx<'_>, raw: &RawConfig) -> Vec<Route> {
    let Some(routes) = ctx.list(&raw.routes, "routes") else {
        return Vec::new();
    };
    let names = ctx.table_names(routes, "routes", "route", |t| t.name.as_ref());
    let listeners = known_names(&raw.listeners, |l| l.name.as_ref());
    let upstreams = known_names(&raw.upstreams, |u| u.name.as_ref());
    let consumers = identity::known(raw);
    let mut valid = Vec::new();
    for (i, spanned) in routes.iter().enumerate() {
        let r = spanned.get_ref();
        let prefix = format!("routes[{i}]");
        let name = names[i].and_then(|name| ctx.name(name, format!("{prefix}.name")));
        let route_listeners =
            route_listeners(ctx, &prefix, r.listeners.as_ref(), listeners.as_ref());
        let key = format!("{prefix}.host");
        let host = ctx
            .optional(r.host.as_ref(), &key)
            .and_then(|host| match host {
                None => Some(None),
                Some(host) => match host_match(host.get_ref()) {
                    Ok(host) => Some(Some(host)),
                    Err(message) => ctx.fail(host, key.clone(), message),
                },
            });
        let path = path(ctx, &prefix, r);
        let methods = methods(ctx, &prefix, r.methods.as_ref());
        let headers = header_matches(ctx, &prefix, &r.headers);
        let action = action(ctx, &prefix, spanned, upstreams.as_ref());
        let timeout_and_retry = timeout_and_retry(ctx, &prefix, r);
        let limits = limits(ctx, &prefix, r);
        let websocket = websocket(ctx, &prefix, r);
        let auth = identity::route_auth(ctx, &prefix, r, consumers.as_ref());
        let limits = match (limits, &auth) {
            (Some((Some(limit), _)), Some((None, _))) if limit.key == RateLimitKey::Consumer => {
                let message = "key \"consumer\" needs auth on the route: without it no request has a consumer";
                let at = (r.rate_limit.as_ref()).and_then(|t| t.get_ref().key.as_ref()?.span());
                ctx.error_near(at, format!("{prefix}.rate_limit.key"), message);
                None
            }
            (limits, _) => limits,
        };
        let route = (|| {
            Some(Route {
                name: name?,
                listeners: route_listeners?,
                host: host?,
                path: path?,
                methods: methods?,
                headers: headers?,
                action: action?,
                timeout: timeout_and_retry.as_ref()?.0,
                retry: timeout_and_retry?.1,
                rate_limit: limits.clone()?.0,
                max_in_flight: limits?.1,
                websocket: websocket?.0,
                websocket_idle_timeout: websocket?.1,
                auth: auth.clone()?.0,
                acl: auth?.1,
            })
        })();
        valid.extend(route);
    }
    valid
}

/// The names a route may refer to, or `None` when some entry's name is missing or not a
/// string (already reported): references are then not checked, rather than reported for a
/// name that may well be the one meant.
fn known_names<'r, T>(
    table: &'r List<At<T>>,
    name: impl Fn(&'r T) -> Option<&'r Typed<String>>,
) -> Option<HashSet<&'r str>> {
    table
        .items()
        .ok()?
        .iter()
        .map(|entry| match name(entry.get_ref())? {
            Typed::Ok(name) => Some(name.get_ref().as_str()),
            Typed::Wrong { .. } => None,
        })
        .collect()
}

/// Default `websocket_idle_timeout`.
const WEBSOCKET_IDLE: Duration = Duration::from_secs(300);

/// `websocket` and `websocket_idle_timeout`: WebSocket is on by default where a route proxies,
/// and only there.
fn websocket(ctx: &mut Ctx<'_>, prefix: &str, r: &RawRoute) -> Option<(bool, Duration)> {
    let proxied = r.upstream.is_some() || (r.respond.is_none() && r.redirect.is_none());
    let key = format!("{prefix}.websocket");
    let on = match ctx.optional(r.websocket.as_ref(), &key)? {
        None => proxied,
        Some(raw) if *raw.get_ref() && !proxied => {
            return ctx.fail(raw, key, "applies only to a route with an upstream");
        }
        Some(raw) => *raw.get_ref(),
    };
    let key = format!("{prefix}.websocket_idle_timeout");
    let idle = match ctx.optional(r.websocket_idle_timeout.as_ref(), &key)? {
        None => WEBSOCKET_IDLE,
        Some(raw) if !on => {
            let message = if proxied {
                "applies only with websocket = true"
            } else {
                "applies only to a route with an upstream"
            };
            return ctx.fail(raw, key, message);
        }
        Some(raw) => match parse_duration(raw.get_ref()) {
            Ok(idle) => idle,
            Err(message) => return ctx.fail(raw, key, message),
        },
    };
    Some((on, idle))
}

fn route_listeners(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    raw: Option<&List<Typed<String>>>,
    known: Option<&HashSet<&str>>,
) -> Option<Vec<String>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let key = format!("{prefix}.listeners");
    let items = ctx.list(raw, &key)?;
    if items.is_empty() {
        let message = "must name at least one listener; leave the key out to serve every listener";
        ctx.error_near(raw.span(), key, message);
        return None;
    }
    let mut names: Vec<String> = Vec::new();
    let mut all_known = true;
    for (i, name) in items.iter().enumerate() {
        let key = format!("{prefix}.listeners[{i}]");
        let Some(name) = ctx.typed(name, &key) else {
            all_known = false;
            continue;
        };
        if known.is_some_and(|known| !known.contains(name.get_ref().as_str())) {
            let message = format!("no listener named \"{}\"", name.get_ref());
            ctx.error(name, key, message);
            all_known = false;
        } else if !names.contains(name.get_ref()) {
            names.push(name.get_ref().clone());
        }
    }
    all_known.then_some(names)
}

fn methods(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    raw: Option<&List<Typed<String>>>,
) -> Option<Vec<String>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let key = format!("{prefix}.methods");
    let items = ctx.list(raw, &key)?;
    if items.is_empty() {
        let message = "must list at least one method; leave the key out to match any method";
        ctx.error_near(raw.span(), key, message);
        return None;
    }
    let mut methods: Vec<String> = Vec::new();
    let mut all_valid = true;
    for (i, method) in items.iter().enumerate() {
        let key = format!("{prefix}.methods[{i}]");
        let checked = ctx
            .typed(method, &key)
            .and_then(|method| ctx.token(method, key, "method"));
        match checked {
            Some(method) => {
                let method = method.to_ascii_uppercase();
                if !methods.contains(&method) {
                    methods.push(method);
                }
            }
            None => all_valid = false,
        }
    }
    all_valid.then_some(methods)
}

fn header_matches(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    raw: &List<At<RawHeaderMatch>>,
) -> Option<Vec<HeaderMatch>> {
    let raw = ctx.list(raw, &format!("{prefix}.headers"))?;
    let mut matches = Vec::with_capacity(raw.len());
    let mut all_valid = true;
    for (i, spanned) in raw.iter().enumerate() {
        let h = spanned.get_ref();
        let table_key = format!("{prefix}.headers[{i}]");
        let key = |field: &str| format!("{table_key}.{field}");
        let name = ctx
            .required(h.name.as_ref(), (spanned, &table_key), "name")
            .and_then(|name| ctx.token(name, key("name"), "header name"));
        let value = ctx
            .optional(h.value.as_ref(), &key("value"))
            .and_then(|value| match value {
                None => Some(None),
                Some(value) => ctx.header_safe(value, key("value")).map(Some),
            });
        match (name, value) {
            (Some(name), Some(value)) => matches.push(HeaderMatch {
                name: name.to_ascii_lowercase(),
                value,
            }),
            _ => all_valid = false,
        }
    }
    all_valid.then_some(matches)
}

#[cfg(test)]
pub(super) mod tests {
    use crate::model::{HeaderMatch, HostMatch, PathMatch, Route};
    use crate::validate::test_util::{errors, one_error, parse_ok, BASE};

    /// A config with upstream "users" and one route named "r" whose further keys are
    /// `body`, starting on line 9.
    pub(crate) fn with_route(body: &str) -> String {
        format!("{BASE}[[upstreams]]\nname = \"users\"\nendpoints = []\n[[routes]]\nname = \"r\"\n{body}")
    }

    fn the_route(body: &str) -> Route {
        parse_ok(&with_route(body)).routes.remove(0)
    }

    #[test]
    fn minimal_route_matches_everything() {
        let r = the_route("upstream = \"users\"\n");
        assert!(r.listeners.is_empty() && r.methods.is_empty() && r.headers.is_empty());
        assert_eq!(r.host, None);
        assert!(matches!(r.path, PathMatch::Any));
    }

    #[test]
    fn websocket_is_on_where_a_route_proxies() {
        let r = the_route("upstream = \"users\"\n");
        assert!(r.websocket);
        assert_eq!(
            r.websocket_idle_timeout,
            std::time::Duration::from_secs(300)
        );
        let r = the_route("upstream = \"users\"\nwebsocket_idle_timeout = \"30s\"\n");
        assert_eq!(r.websocket_idle_timeout, std::time::Duration::from_secs(30));
        assert!(!the_route("upstream = \"users\"\nwebsocket = false\n").websocket);
        assert_eq!(
            one_error(&with_route(
                "upstream = \"users\"\nwebsocket = false\nwebsocket_idle_timeout = \"1m\"\n"
            )),
            "t.toml:11:26: routes[0].websocket_idle_timeout: applies only with websocket = true"
        );
        assert_eq!(
            one_error(&with_route(
                "respond = { status = 200 }\nwebsocket_idle_timeout = \"1m\"\n"
            )),
            "t.toml:10:26: routes[0].websocket_idle_timeout: applies only to a route with an upstream"
        );
        assert!(!the_route("respond = { status = 200 }\n").websocket);
        assert_eq!(
            one_error(&with_route(
                "respond = { status = 200 }\nwebsocket = true\n"
            )),
            "t.toml:10:13: routes[0].websocket: applies only to a route with an upstream"
        );
        assert_eq!(
            one_error(&with_route(
                "upstream = \"users\"\nwebsocket_idle_timeout = \"0s\"\n"
            )),
            "t.toml:10:26: routes[0].websocket_idle_timeout: must be greater than zero"
        );
    }

    #[test]
    fn duplicate_route_names() {
        let src =
            with_route("upstream = \"users\"\n[[routes]]\nname = \"r\"\nupstream = \"users\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:11:8: routes[1].name: duplicate route name \"r\" (first defined on line 8)"
        );
    }

    #[test]
    fn listeners_must_exist() {
        let r = the_route("listeners = [\"l\", \"l\"]\nupstream = \"users\"\n");
        assert_eq!(r.listeners, ["l"]);
        let src = with_route("listeners = [\"l\", \"admin\"]\nupstream = \"users\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:9:19: routes[0].listeners[1]: no listener named \"admin\""
        );
        let src = with_route("listeners = []\nupstream = \"users\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:9:13: routes[0].listeners: must name at least one listener; leave the key out to serve every listener"
        );
    }

    #[test]
    fn hosts_are_stored_lower_case() {
        let r = the_route("host = \"API.Example.com\"\nupstream = \"users\"\n");
        assert_eq!(r.host, Some(HostMatch::Exact("api.example.com".into())));
        let r = the_route("host = \"*.Example.com\"\nupstream = \"users\"\n");
        assert_eq!(r.host, Some(HostMatch::Wildcard(".example.com".into())));
    }

    #[test]
    fn bad_hosts() {
        let src = with_route("host = \"a.*.com\"\nupstream = \"users\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:9:8: routes[0].host: invalid host \"a.*.com\": '*' is allowed only as the whole first label, as in \"*.example.com\""
        );
        let src = with_route("host = \"api.example.com:443\"\nupstream = \"users\"\n");
        assert!(one_error(&src).starts_with("t.toml:9:8: routes[0].host: \"api.example.com:443\" is not a host name; give the host without a port"));
        let src = with_route("host = \"*.exa_mple.com\"\nupstream = \"users\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:9:8: routes[0].host: invalid wildcard host \"*.exa_mple.com\": labels may hold only letters, digits and '-'"
        );
    }

    #[test]
    fn methods_are_tokens_stored_upper_case() {
        let r = the_route("methods = [\"get\", \"POST\", \"GET\"]\nupstream = \"users\"\n");
        assert_eq!(r.methods, ["GET", "POST"]);
        let src = with_route("methods = [\"GET\", \"GE T\", \"\"]\nupstream = \"users\"\n");
        assert_eq!(
            errors(&src),
            [
                "t.toml:9:19: routes[0].methods[1]: \"GE T\" is not a valid method (an HTTP token)",
                "t.toml:9:27: routes[0].methods[2]: \"\" is not a valid method (an HTTP token)",
            ]
        );
        let src = with_route("methods = []\nupstream = \"users\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:9:11: routes[0].methods: must list at least one method; leave the key out to match any method"
        );
    }

    #[test]
    fn header_matches() {
        let r = the_route(
            "headers = [{ name = \"X-Env\", value = \"canary\" }, { name = \"authorization\" }]\nupstream = \"users\"\n",
        );
        assert_eq!(
            r.headers,
            [
                HeaderMatch {
                    name: "x-env".into(),
                    value: Some("canary".into())
                },
                HeaderMatch {
                    name: "authorization".into(),
                    value: None
                },
            ]
        );
    }

    #[test]
    fn bad_header_matches() {
        let src = with_route(
            "headers = [{ name = \"x env\" }, { name = \"x-a\", value = \"a\\r\\nb\" }]\nupstream = \"users\"\n",
        );
        assert_eq!(
            errors(&src),
            [
                "t.toml:9:21: routes[0].headers[0].name: \"x env\" is not a valid header name (an HTTP token)",
                "t.toml:9:56: routes[0].headers[1].value: must not contain CR, LF or NUL characters",
            ]
        );
        let src = with_route("headers = [{ name = \"x\", valeu = \"1\" }]\nupstream = \"users\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:9:26: routes[0].headers[0].valeu: unknown field `valeu`, expected `name` or `value`"
        );
    }
}
