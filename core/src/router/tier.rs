//! One host tier of the route table, indexed by path so that a lookup costs a few hash probes
//! whatever the number of routes: exact paths in one map, prefixes in one map probed once per
//! distinct prefix length (longest first), then regexes and path-less routes in order.

use ahash::AHashMap;
use ringway_config::{PathMatch, Route};

use super::RouteId;

#[derive(Default)]
pub(super) struct Tier {
    exact: AHashMap<Box<[u8]>, Vec<RouteId>>,
    prefixes: AHashMap<Box<[u8]>, Vec<RouteId>>,
    /// Distinct prefix lengths, longest first.
    prefix_lengths: Vec<usize>,
    regex: Vec<RouteId>,
    any: Vec<RouteId>,
}

impl Tier {
    /// `ids` are in precedence order already (see `precedence_key`), so every candidate list
    /// built here is too.
    pub(super) fn new(routes: &[Route], ids: &[RouteId]) -> Tier {
        let mut tier = Tier::default();
        for &id in ids {
            match &routes[id].path {
                PathMatch::Exact(p) => tier.exact.entry(p.as_bytes().into()).or_default().push(id),
                PathMatch::Prefix(p) => {
                    if !tier.prefix_lengths.contains(&p.len()) {
                        tier.prefix_lengths.push(p.len());
                    }
                    tier.prefixes
                        .entry(p.as_bytes().into())
                        .or_default()
                        .push(id);
                }
                PathMatch::Regex(_) => tier.regex.push(id),
                PathMatch::Any => tier.any.push(id),
            }
        }
        tier.prefix_lengths.sort_unstable_by(|a, b| b.cmp(a));
        tier
    }

    pub(super) fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.prefixes.is_empty()
            && self.regex.is_empty()
            && self.any.is_empty()
    }

    /// The first candidate, in precedence order, for which `accept` holds. `accept` checks the
    /// conditions beyond the path index (method, headers, regex, listener).
    pub(super) fn find(&self, path: &[u8], accept: &impl Fn(RouteId) -> bool) -> Option<RouteId> {
        let first = |ids: &[RouteId]| ids.iter().copied().find(|&id| accept(id));
        if let Some(id) = self.exact.get(path).and_then(|ids| first(ids)) {
            return Some(id);
        }
        for &len in &self.prefix_lengths {
            if len > path.len() {
                continue;
            }
            if let Some(id) = self.prefixes.get(&path[..len]).and_then(|ids| first(ids)) {
                return Some(id);
            }
        }
        first(&self.regex).or_else(|| first(&self.any))
    }
}
