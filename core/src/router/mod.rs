//! The compiled route table.
//!
//! Precedence (docs/config.md "Route precedence"): host tier first (exact host, then wildcard
//! hosts with the longest suffix first, then routes without a host); within a tier, path kind
//! (exact, then prefix with the longest first, then regex, then no path); then routes with more
//! conditions (methods and headers); then file order. The first route in this order whose every
//! condition matches wins. Each host tier is pre-sorted at compile time, so a lookup walks at
//! most three short candidate lists and allocates nothing.

mod matcher;

use ahash::AHashMap;
use ringway_config::{HostMatch, PathMatch, Route};

pub use matcher::RequestView;

/// A route's index in [`Router::routes`] (its position in the file).
pub type RouteId = usize;

pub struct Router {
    routes: Vec<Route>,
    /// Listener index -> does route `r` serve it: `serves[r]` is a bitmask over listeners
    /// (listeners beyond 64 fall back to a name check).
    listener_masks: Vec<u64>,
    exact: AHashMap<String, Vec<RouteId>>,
    /// (suffix, candidates), longest suffix first.
    wildcard: Vec<(String, Vec<RouteId>)>,
    any_host: Vec<RouteId>,
}

impl Router {
    /// Compiles `routes` against the configured listener names.
    pub fn new(routes: &[Route], listener_names: &[String]) -> Router {
        let mut exact: AHashMap<String, Vec<RouteId>> = AHashMap::new();
        let mut wildcard: Vec<(String, Vec<RouteId>)> = Vec::new();
        let mut any_host = Vec::new();
        for (id, route) in routes.iter().enumerate() {
            match &route.host {
                Some(HostMatch::Exact(h)) => exact.entry(h.clone()).or_default().push(id),
                Some(HostMatch::Wildcard(suffix)) => {
                    match wildcard.iter_mut().find(|(s, _)| s == suffix) {
                        Some((_, ids)) => ids.push(id),
                        None => wildcard.push((suffix.clone(), vec![id])),
                    }
                }
                None => any_host.push(id),
            }
        }
        let order = |ids: &mut Vec<RouteId>| ids.sort_by_key(|&id| precedence_key(&routes[id], id));
        exact.values_mut().for_each(order);
        wildcard.iter_mut().for_each(|(_, ids)| order(ids));
        order(&mut any_host);
        // Stable sort keeps file order between equally long suffixes.
        wildcard.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        let listener_masks = routes
            .iter()
            .map(|r| {
                if r.listeners.is_empty() {
                    return u64::MAX;
                }
                listener_names
                    .iter()
                    .enumerate()
                    .filter(|(i, name)| *i < 64 && r.listeners.contains(name))
                    .fold(0u64, |m, (i, _)| m | (1 << i))
            })
            .collect();
        Router {
            routes: routes.to_vec(),
            listener_masks,
            exact,
            wildcard,
            any_host,
        }
    }

    pub fn route(&self, id: RouteId) -> &Route {
        &self.routes[id]
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The winning route for a request, if any.
    pub fn find(&self, req: &RequestView<'_>) -> Option<RouteId> {
        let mut lower = [0u8; 255];
        let host = matcher::normalise_host(req.host, &mut lower);
        if let Some(host) = host {
            if let Some(ids) = self.exact.get(host) {
                if let Some(id) = self.first_match(ids, req) {
                    return Some(id);
                }
            }
            for (suffix, ids) in &self.wildcard {
                if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                    if let Some(id) = self.first_match(ids, req) {
                        return Some(id);
                    }
                }
            }
        }
        self.first_match(&self.any_host, req)
    }

    fn first_match(&self, ids: &[RouteId], req: &RequestView<'_>) -> Option<RouteId> {
        ids.iter().copied().find(|&id| {
            let mask = self.listener_masks[id];
            let serves = if req.listener < 64 {
                mask & (1 << req.listener) != 0
            } else {
                mask == u64::MAX
            };
            serves && matcher::matches(&self.routes[id], req)
        })
    }
}

/// Sort key: path kind, longer prefixes first, more conditions first, then file order.
fn precedence_key(
    route: &Route,
    id: RouteId,
) -> (
    u8,
    std::cmp::Reverse<usize>,
    std::cmp::Reverse<usize>,
    usize,
) {
    let (kind, len) = match &route.path {
        PathMatch::Exact(p) => (0, p.len()),
        PathMatch::Prefix(p) => (1, p.len()),
        PathMatch::Regex(_) => (2, 0),
        PathMatch::Any => (3, 0),
    };
    let conditions = usize::from(!route.methods.is_empty()) + route.headers.len();
    (
        kind,
        std::cmp::Reverse(len),
        std::cmp::Reverse(conditions),
        id,
    )
}

#[cfg(test)]
mod tests;
