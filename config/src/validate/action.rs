//! What a matched route does: exactly one of `upstream`, `respond` and `redirect`.

use std::collections::HashSet;
use std::ops::Range;

use super::Ctx;
use crate::model::{DirectResponse, Redirect, RouteAction};
use crate::raw::{At, RawRedirect, RawRespond, RawRoute};

const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

/// Headers a direct response may not set: the gateway writes the framing itself.
const FRAMING_HEADERS: [&str; 2] = ["content-length", "transfer-encoding"];

pub(super) fn action(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    route: &At<RawRoute>,
    upstreams: Option<&HashSet<&str>>,
) -> Option<RouteAction> {
    let r = route.get_ref();
    let given: Vec<(&str, Option<Range<usize>>)> = [
        ("upstream", r.upstream.as_ref().map(|v| v.span())),
        ("respond", r.respond.as_ref().map(|v| v.span())),
        ("redirect", r.redirect.as_ref().map(|v| v.span())),
    ]
    .into_iter()
    .filter_map(|(field, at)| Some((field, at?)))
    .collect();
    match given.as_slice() {
        [] => {
            let message = "a route needs one of upstream, respond or redirect";
            ctx.error_near(route.span(), prefix.to_owned(), message);
        }
        [(first, _), rest @ ..] => {
            for (field, at) in rest {
                let message =
                    format!("set only one of upstream, respond and redirect; {first} is set too");
                ctx.error_near(at.clone(), format!("{prefix}.{field}"), message);
            }
        }
    }
    let upstream = r.upstream.as_ref().map(|name| {
        let key = format!("{prefix}.upstream");
        let name = ctx.typed(name, &key)?;
        if upstreams.is_some_and(|known| !known.contains(name.get_ref().as_str())) {
            let message = format!("no upstream named \"{}\"", name.get_ref());
            return ctx.fail(name, key, message);
        }
        Some(RouteAction::Proxy {
            upstream: name.get_ref().clone(),
        })
    });
    let respond = r
        .respond
        .as_ref()
        .map(|raw| respond(ctx, prefix, raw).map(RouteAction::Respond));
    let redirect = r
        .redirect
        .as_ref()
        .map(|raw| redirect(ctx, prefix, raw).map(RouteAction::Redirect));
    match given.len() {
        1 => upstream.or(respond).or(redirect).flatten(),
        _ => None,
    }
}

fn respond(ctx: &mut Ctx<'_>, prefix: &str, raw: &At<RawRespond>) -> Option<DirectResponse> {
    let table_key = format!("{prefix}.respond");
    let key = |field: &str| format!("{table_key}.{field}");
    let table = (raw, table_key.as_str());
    let raw = raw.get_ref();
    let status = ctx
        .required(raw.status.as_ref(), table, "status")
        .and_then(|status| {
            let n = *status.get_ref();
            if !(200..=599).contains(&n) {
                let message = format!("must be between 200 and 599, got {n}");
                return ctx.fail(status, key("status"), message);
            }
            u16::try_from(n).ok()
        });
    let mut headers = Vec::with_capacity(raw.headers.0.len());
    let mut headers_valid = true;
    for (name, value) in &raw.headers.0 {
        let header_key = key(&format!("headers.{}", name.get_ref()));
        let mut checked_name = ctx.token(name, header_key.clone(), "header name");
        if FRAMING_HEADERS
            .iter()
            .any(|f| name.get_ref().eq_ignore_ascii_case(f))
        {
            let message = format!(
                "{} is set by the gateway and may not be configured",
                name.get_ref()
            );
            checked_name = ctx.fail(name, header_key.clone(), message);
        }
        let checked_value = ctx
            .typed(value, &header_key)
            .and_then(|value| ctx.header_safe(value, header_key));
        match (checked_name, checked_value) {
            (Some(name), Some(value)) => headers.push((name, value)),
            _ => headers_valid = false,
        }
    }
    let body = ctx.optional(raw.body.as_ref(), &key("body"));
    let text = body.flatten().map_or("", |b| b.get_ref().as_str());
    if let (Some(code @ (204 | 304)), Some(Some(at))) = (status, body) {
        if !text.is_empty() {
            ctx.error(
                at,
                key("body"),
                format!("a {code} response has no body; remove it or use another status"),
            );
            headers_valid = false;
        }
    }
    Some(DirectResponse {
        status: status?,
        headers: headers_valid.then_some(headers)?,
        body: body.map(|_| text.to_owned())?,
    })
}

fn redirect(ctx: &mut Ctx<'_>, prefix: &str, raw: &At<RawRedirect>) -> Option<Redirect> {
    let table_key = format!("{prefix}.redirect");
    let key = |field: &str| format!("{table_key}.{field}");
    let table = (raw, table_key.as_str());
    let raw = raw.get_ref();
    let location = ctx
        .required(raw.location.as_ref(), table, "location")
        .and_then(|location| {
            if location.get_ref().is_empty() {
                ctx.fail(location, key("location"), "must not be empty")
            } else {
                ctx.header_safe(location, key("location"))
            }
        });
    let status = match ctx.optional(raw.status.as_ref(), &key("status")) {
        None => None,
        Some(None) => Some(302),
        Some(Some(status)) => match u16::try_from(*status.get_ref()) {
            Ok(code) if REDIRECT_STATUSES.contains(&code) => Some(code),
            _ => {
                let message = format!(
                    "must be 301, 302, 303, 307 or 308, got {}",
                    status.get_ref()
                );
                ctx.fail(status, key("status"), message)
            }
        },
    };
    let keep_path = ctx
        .optional(raw.keep_path.as_ref(), &key("keep_path"))
        .map(|keep| keep.is_some_and(|keep| *keep.get_ref()));
    Some(Redirect {
        location: location?,
        status: status?,
        keep_path: keep_path?,
    })
}

#[cfg(test)]
mod tests {
    use crate::model::{DirectResponse, Redirect, RouteAction};
    use crate::validate::route::tests::with_route;
    use crate::validate::test_util::{errors, one_error, parse_ok};

    fn action(body: &str) -> RouteAction {
        parse_ok(&with_route(body)).routes.remove(0).action
    }

    #[test]
    fn proxy() {
        assert_eq!(
            action("upstream = \"users\"\n"),
            RouteAction::Proxy {
                upstream: "users".into()
            }
        );
    }

    #[test]
    fn upstream_must_exist() {
        let src = with_route("upstream = \"orders\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:9:12: routes[0].upstream: no upstream named \"orders\""
        );
    }

    #[test]
    fn exactly_one_action() {
        let src = with_route("host = \"a.com\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:7:1: routes[0]: a route needs one of upstream, respond or redirect"
        );
        let src = with_route(
            "upstream = \"users\"\nrespond = { status = 200 }\nredirect = { location = \"/x\" }\n",
        );
        assert_eq!(
            errors(&src),
            [
                "t.toml:10:11: routes[0].respond: set only one of upstream, respond and redirect; upstream is set too",
                "t.toml:11:12: routes[0].redirect: set only one of upstream, respond and redirect; upstream is set too",
            ]
        );
    }

    #[test]
    fn respond() {
        let got = action(
            "[routes.respond]\nstatus = 404\nheaders = { X-Served-By = \"ringway\", content-type = \"text/plain\" }\nbody = \"nope\\n\"\n",
        );
        let want = DirectResponse {
            status: 404,
            headers: vec![
                ("X-Served-By".into(), "ringway".into()),
                ("content-type".into(), "text/plain".into()),
            ],
            body: "nope\n".into(),
        };
        assert_eq!(got, RouteAction::Respond(want));
        let RouteAction::Respond(empty) = action("respond = { status = 204 }\n") else {
            panic!()
        };
        assert_eq!(
            (empty.status, empty.headers.len(), empty.body.as_str()),
            (204, 0, "")
        );
    }

    #[test]
    fn respond_status_range() {
        for bad in ["199", "600", "-1"] {
            let src = with_route(&format!("respond = {{ status = {bad} }}\n"));
            assert_eq!(
                one_error(&src),
                format!(
                    "t.toml:9:22: routes[0].respond.status: must be between 200 and 599, got {bad}"
                )
            );
        }
        let src = with_route("respond = { body = \"x\" }\n");
        assert_eq!(
            one_error(&src),
            "t.toml:9:11: routes[0].respond: missing field `status`"
        );
    }

    #[test]
    fn respond_headers() {
        let src = with_route(
            "[routes.respond]\nstatus = 200\nheaders = { \"x y\" = \"1\", x-a = \"a\\nb\", Content-Length = \"3\" }\n",
        );
        assert_eq!(
            errors(&src),
            [
                "t.toml:11:13: routes[0].respond.headers.x y: \"x y\" is not a valid header name (an HTTP token)",
                "t.toml:11:32: routes[0].respond.headers.x-a: must not contain CR, LF or NUL characters",
                "t.toml:11:40: routes[0].respond.headers.Content-Length: Content-Length is set by the gateway and may not be configured",
            ]
        );
    }

    #[test]
    fn no_body_for_204_and_304() {
        let src = with_route("respond = { status = 304, body = \"x\" }\n");
        assert_eq!(
            one_error(&src),
            "t.toml:9:34: routes[0].respond.body: a 304 response has no body; remove it or use another status"
        );
    }

    #[test]
    fn redirect() {
        let got = action("redirect = { location = \"https://example.com/\" }\n");
        let want = Redirect {
            location: "https://example.com/".into(),
            status: 302,
            keep_path: false,
        };
        assert_eq!(got, RouteAction::Redirect(want));
        let got = action("redirect = { location = \"/new\", status = 308, keep_path = true }\n");
        let want = Redirect {
            location: "/new".into(),
            status: 308,
            keep_path: true,
        };
        assert_eq!(got, RouteAction::Redirect(want));
    }

    #[test]
    fn bad_redirects() {
        let src = with_route("redirect = { location = \"\", status = 200 }\n");
        assert_eq!(
            errors(&src),
            [
                "t.toml:9:25: routes[0].redirect.location: must not be empty",
                "t.toml:9:38: routes[0].redirect.status: must be 301, 302, 303, 307 or 308, got 200",
            ]
        );
        let src = with_route("redirect = { location = \"/a\\r\\nSet-Cookie: x=1\" }\n");
        assert_eq!(
            one_error(&src),
            "t.toml:9:25: routes[0].redirect.location: must not contain CR, LF or NUL characters"
        );
        let src = with_route("redirect = { location = \"/a\", code = 301 }\n");
        assert_eq!(
            one_error(&src),
            "t.toml:9:31: routes[0].redirect.code: unknown field `code`, expected one of `location`, `status`, `keep_path`"
        );
    }
}
