//! `[[routes]]`: what a request must look like to match (listeners, host, methods, headers;
//! the path keys are checked in `path`). What a matched request gets is checked in `action`.

use std::collections::HashSet;

use toml::Spanned;

use super::action::action;
use super::check::host_match;
use super::path::path;
use super::Ctx;
use crate::model::{HeaderMatch, Route};
use crate::raw::{RawConfig, RawHeaderMatch};

pub(super) fn routes(ctx: &mut Ctx<'_>, raw: &RawConfig) -> Vec<Route> {
    ctx.unique_names(
        "route",
        "routes",
        raw.routes.iter().map(|r| &r.get_ref().name),
    );
    let listeners: HashSet<&str> = raw
        .listeners
        .iter()
        .map(|l| l.get_ref().name.get_ref().as_str())
        .collect();
    let upstreams: HashSet<&str> = raw
        .upstreams
        .iter()
        .map(|u| u.get_ref().name.get_ref().as_str())
        .collect();
    let mut valid = Vec::new();
    for (i, spanned) in raw.routes.iter().enumerate() {
        let r = spanned.get_ref();
        let prefix = format!("routes[{i}]");
        let name = ctx.name(&r.name, format!("{prefix}.name"));
        let route_listeners = route_listeners(ctx, &prefix, r.listeners.as_ref(), &listeners);
        let host = match &r.host {
            None => Some(None),
            Some(host) => match host_match(host.get_ref()) {
                Ok(host) => Some(Some(host)),
                Err(message) => ctx.fail(host, format!("{prefix}.host"), message),
            },
        };
        let path = path(ctx, &prefix, r);
        let methods = methods(ctx, &prefix, r.methods.as_ref());
        let headers = header_matches(ctx, &prefix, &r.headers);
        let action = action(ctx, &prefix, spanned, &upstreams);
        let route = (|| {
            Some(Route {
                name: name?,
                listeners: route_listeners?,
                host: host?,
                path: path?,
                methods: methods?,
                headers: headers?,
                action: action?,
            })
        })();
        valid.extend(route);
    }
    valid
}

fn route_listeners(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    raw: Option<&Spanned<Vec<Spanned<String>>>>,
    known: &HashSet<&str>,
) -> Option<Vec<String>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    if raw.get_ref().is_empty() {
        let message = "must name at least one listener; leave the key out to serve every listener";
        return ctx.fail(raw, format!("{prefix}.listeners"), message);
    }
    let mut names: Vec<String> = Vec::new();
    let mut all_known = true;
    for (i, name) in raw.get_ref().iter().enumerate() {
        if !known.contains(name.get_ref().as_str()) {
            let message = format!("no listener named \"{}\"", name.get_ref());
            ctx.error(name, format!("{prefix}.listeners[{i}]"), message);
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
    raw: Option<&Spanned<Vec<Spanned<String>>>>,
) -> Option<Vec<String>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    if raw.get_ref().is_empty() {
        let message = "must list at least one method; leave the key out to match any method";
        return ctx.fail(raw, format!("{prefix}.methods"), message);
    }
    let mut methods: Vec<String> = Vec::new();
    let mut all_valid = true;
    for (i, method) in raw.get_ref().iter().enumerate() {
        match ctx.token(method, format!("{prefix}.methods[{i}]"), "method") {
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
    raw: &[RawHeaderMatch],
) -> Option<Vec<HeaderMatch>> {
    let mut matches = Vec::with_capacity(raw.len());
    let mut all_valid = true;
    for (i, h) in raw.iter().enumerate() {
        let key = |field: &str| format!("{prefix}.headers[{i}].{field}");
        let name = ctx.token(&h.name, key("name"), "header name");
        let value = match &h.value {
            None => Some(None),
            Some(value) => ctx.header_safe(value, key("value")).map(Some),
        };
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
