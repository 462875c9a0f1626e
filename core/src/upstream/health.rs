//! Active health as the shards see it. The checks themselves run on the control side
//! (`ringway-control`, `daemon/health.rs`), never on a shard; what reaches a shard is a
//! [`HealthTable`]: the endpoints whose checks currently fail, per upstream name, with a
//! generation. Each change sends the whole (small) table, so a shard that misses one, or
//! builds guards for a new epoch later, applies the latest one and is right again.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Endpoints that active health checks found unhealthy. Endpoints not listed (unchecked,
/// not yet checked, or passing) count as healthy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthTable {
    /// Grows with every change; a shard ignores a table older than the one it has.
    pub generation: u64,
    /// Upstream name to its unhealthy endpoints' addresses, sorted.
    pub down: BTreeMap<String, Vec<SocketAddr>>,
}

impl HealthTable {
    /// Whether `address` of upstream `upstream` is marked unhealthy.
    pub fn is_down(&self, upstream: &str, address: SocketAddr) -> bool {
        self.down
            .get(upstream)
            .is_some_and(|down| down.binary_search(&address).is_ok())
    }

    /// The unhealthy endpoints of `upstream` (empty when none).
    pub fn down_of(&self, upstream: &str) -> &[SocketAddr] {
        self.down.get(upstream).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlisted_endpoints_are_healthy() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let mut table = HealthTable::default();
        table.down.insert("u".into(), vec![a]);
        assert!(table.is_down("u", a));
        assert!(!table.is_down("u", b));
        assert!(!table.is_down("v", a));
        assert_eq!(table.down_of("u"), [a]);
        assert!(table.down_of("v").is_empty());
    }
}
