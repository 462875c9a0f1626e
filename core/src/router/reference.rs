//! A slow, obvious router: docs/config.md's matching rules and "Route precedence" written out
//! as a scan of every route, for tests and fuzz targets to hold the compiled [`Router`] to.
//! It shares no code with the router (no index, no `precedence_key`, no `matcher`), so a
//! mistake in one is not repeated in the other.
//!
//! [`Router`]: super::Router

use std::cmp::Reverse;

use ringway_config::{HeaderMatch, HostMatch, PathMatch, Route};

use super::{RequestView, RouteId};

/// The route `routes` (compiled against `listener_names`) give `req`: of the routes whose
/// every condition matches, the first in precedence order.
pub fn find(routes: &[Route], listener_names: &[String], req: &RequestView<'_>) -> Option<RouteId> {
    let host = req.host.and_then(host_name);
    routes
        .iter()
        .enumerate()
        .filter(|(_, route)| serves(route, listener_names, req.listener))
        .filter_map(|(id, route)| {
            let tier = host_tier(route, host.as_deref())?;
            matches_rest(route, req).then(|| (rank(tier, route, id), id))
        })
        .min()
        .map(|(_, id)| id)
}

/// Rank of a matching route, lowest first: host tier (exact, wildcard with the longest suffix
/// first, none), path kind (exact, prefix with the longest first, regex, none), more
/// conditions first, then file order.
type Rank = (
    u8,
    Reverse<usize>,
    u8,
    Reverse<usize>,
    Reverse<usize>,
    usize,
);

fn rank(tier: (u8, Reverse<usize>), route: &Route, id: RouteId) -> Rank {
    let (kind, len) = match &route.path {
        PathMatch::Exact(_) => (0, 0),
        PathMatch::Prefix(p) => (1, p.len()),
        PathMatch::Regex(_) => (2, 0),
        PathMatch::Any => (3, 0),
    };
    let conditions = usize::from(!route.methods.is_empty()) + route.headers.len();
    (tier.0, tier.1, kind, Reverse(len), Reverse(conditions), id)
}

/// `listeners`: empty serves every listener, else the listeners it names.
fn serves(route: &Route, listener_names: &[String], listener: usize) -> bool {
    if route.listeners.is_empty() {
        return true;
    }
    listener_names
        .get(listener)
        .is_some_and(|name| route.listeners.contains(name))
}

/// The request's host as routes compare it: lower case, without its port and without a final
/// dot. None when it is not ASCII or longer than a DNS name can be.
fn host_name(host: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(host).ok().filter(|t| t.is_ascii())?;
    let name = if text.starts_with('[') {
        // An IPv6 literal holds colons of its own: the port follows its ']'.
        text.find(']').map_or(text, |end| &text[..=end])
    } else {
        text.rsplit_once(':').map_or(text, |(name, _port)| name)
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    (name.len() <= 255).then(|| name.to_ascii_lowercase())
}

/// The route's host tier for this request, None when its `host` does not match.
fn host_tier(route: &Route, host: Option<&str>) -> Option<(u8, Reverse<usize>)> {
    match (&route.host, host) {
        (None, _) => Some((2, Reverse(0))),
        (Some(HostMatch::Exact(want)), Some(host)) => (want == host).then_some((0, Reverse(0))),
        (Some(HostMatch::Wildcard(suffix)), Some(host)) => {
            // `*.example.com` (suffix `.example.com`) wants at least one label before it.
            let label = host.strip_suffix(suffix.as_str())?;
            (!label.is_empty()).then_some((1, Reverse(suffix.len())))
        }
        (Some(_), None) => None,
    }
}

/// Path, methods and headers.
fn matches_rest(route: &Route, req: &RequestView<'_>) -> bool {
    let path = req.path;
    let path_ok = match &route.path {
        PathMatch::Any => true,
        PathMatch::Exact(p) => path == p.as_bytes(),
        PathMatch::Prefix(p) => path.len() >= p.len() && &path[..p.len()] == p.as_bytes(),
        // A path that is not UTF-8 matches no regex.
        PathMatch::Regex(re) => std::str::from_utf8(path).is_ok_and(|p| re.is_match(p)),
    };
    let method_ok =
        route.methods.is_empty() || route.methods.iter().any(|m| m.as_bytes() == req.method);
    path_ok && method_ok && route.headers.iter().all(|h| has_header(req, h))
}

/// Some header of the request has the name (any case) and, if the condition gives one,
/// exactly the value.
fn has_header(req: &RequestView<'_>, want: &HeaderMatch) -> bool {
    let mut seen = Vec::new();
    (req.headers)(&mut |name, value| {
        seen.push((name.to_ascii_lowercase(), value.to_vec()));
        false
    });
    seen.iter().any(|(name, value)| {
        name == want.name.as_bytes()
            && want
                .value
                .as_ref()
                .is_none_or(|v| v.as_bytes() == value.as_slice())
    })
}
