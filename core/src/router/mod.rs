//! The compiled route table.
//!
//! Precedence (docs/config.md "Route precedence"): host tier first (exact host, then wildcard
//! hosts with the longest suffix first, then routes without a host); within a tier, path kind
//! (exact, then prefix with the longest first, then regex, then no path); then routes with more
//! conditions (methods and headers); then file order. The first route in this order whose every
//! condition matches wins. Each host tier indexes its routes by path ([`tier`]), so a lookup
//! costs a few hash probes however many routes there are, and allocates nothing.

mod matcher;
#[cfg(any(test, feature = "test-util"))]
pub mod reference;
mod tier;

use ahash::AHashMap;
use ringway_config::{HostMatch, PathMatch, Route};
use tier::Tier;

pub use matcher::RequestView;

/// A route's index in [`Router::routes`] (its position in the file).
pub type RouteId = usize;

pub struct Router {
    routes: Vec<Route>,
    /// Per route, a bitmask over the first 64 listener indexes: those it serves (all ones for
    /// a route that names no listener, so it serves every listener).
    listener_masks: Vec<u64>,
    /// The listener names, by index: a listener past the 64th is looked up by name in the
    /// route's `listeners` (a config with that many listeners is rare; the mask stays a word).
    listener_names: Vec<String>,
    exact: AHashMap<String, Tier>,
    /// (suffix, tier), longest suffix first.
    wildcard: Vec<(String, Tier)>,
    any_host: Tier,
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
        let tier = |mut ids: Vec<RouteId>| {
            ids.sort_by_key(|&id| precedence_key(&routes[id], id));
            Tier::new(routes, &ids)
        };
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
            listener_names: listener_names.to_vec(),
            exact: exact
                .into_iter()
                .map(|(host, ids)| (host, tier(ids)))
                .collect(),
            wildcard: wildcard
                .into_iter()
                .map(|(suffix, ids)| (suffix, tier(ids)))
                .collect(),
            any_host: tier(any_host),
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
        let accept = |id: RouteId| {
            let mask = self.listener_masks[id];
            let serves = if req.listener < 64 {
                mask & (1 << req.listener) != 0
            } else {
                mask == u64::MAX
                    || (self.listener_names.get(req.listener))
                        .is_some_and(|name| self.routes[id].listeners.contains(name))
            };
            serves && matcher::matches(&self.routes[id], req)
        };
        let mut lower = [0u8; 255];
        if let Some(host) = matcher::normalise_host(req.host, &mut lower) {
            if let Some(id) = self.exact.get(host).and_then(|t| t.find(req.path, &accept)) {
                return Some(id);
            }
            for (suffix, tier) in &self.wildcard {
                if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                    if let Some(id) = tier.find(req.path, &accept) {
                        return Some(id);
                    }
                }
            }
        }
        if self.any_host.is_empty() {
            return None;
        }
        self.any_host.find(req.path, &accept)
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

#[cfg(test)]
mod proptests;
