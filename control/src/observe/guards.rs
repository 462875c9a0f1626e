//! Upstream protection in the stats: circuit breakers and outlier ejections (per shard, from
//! the shards' reports) and active endpoint health (from the control side's health checker).
//!
//! Breaker states and ejections are gauges: the latest report of each shard counts, and a
//! shard that stops reporting an upstream (removed, or its protection turned off) drops out of
//! it. Opened, rejected and ejection counts are cumulative since the process started.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ringway_core::metrics::{BreakerState, GuardReport};
use serde_json::{json, Map, Value};

use super::prometheus::{header, sample};

/// One upstream's breakers and ejections across the shards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuardTotals {
    /// The latest report of each shard that reports this upstream.
    pub by_shard: BTreeMap<usize, GuardReport>,
    pub opened: u64,
    pub rejected: u64,
    pub ejections: u64,
}

/// What the health checker says about one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointHealth {
    pub address: SocketAddr,
    pub healthy: bool,
    /// Checks done so far.
    pub checks: u64,
    /// The last check's result, such as `status 200` or `connect: connection refused`;
    /// empty before the first.
    pub last: String,
}

/// Every upstream's protection, by upstream name.
#[derive(Default)]
pub struct Protection {
    pub upstreams: BTreeMap<String, GuardTotals>,
    /// Upstreams with active health checks: their endpoints' health.
    pub health: BTreeMap<String, Vec<EndpointHealth>>,
}

impl Protection {
    /// Takes one shard's guard reports (every upstream it protects).
    pub fn absorb(&mut self, shard: usize, reports: &[(String, GuardReport)]) {
        for (name, totals) in self.upstreams.iter_mut() {
            if !reports.iter().any(|(n, _)| n == name) {
                totals.by_shard.remove(&shard);
            }
        }
        for (name, report) in reports {
            let totals = match self.upstreams.get_mut(name) {
                Some(t) => t,
                None => self.upstreams.entry(name.clone()).or_default(),
            };
            totals.opened += report.opened;
            totals.rejected += report.rejected;
            totals.ejections += report.ejections;
            totals.by_shard.insert(shard, report.clone());
        }
    }

    /// Adds `breaker`, `outlier` and `health` to the `ctl stats` entry of each protected
    /// upstream in `upstreams`, with `empty()` as the entry of one that had no traffic yet.
    pub fn extend_json(&self, upstreams: &mut Map<String, Value>, empty: impl Fn() -> Value) {
        let mut entry = |name: &str, key: &str, value: Value| {
            let upstream = upstreams.entry(name.to_string()).or_insert_with(&empty);
            if let Some(map) = upstream.as_object_mut() {
                map.insert(key.to_string(), value);
            }
        };
        for (name, totals) in &self.upstreams {
            let states: Vec<(usize, BreakerState)> = totals
                .by_shard
                .iter()
                .filter_map(|(&shard, r)| Some((shard, r.breaker?)))
                .collect();
            if !states.is_empty() || totals.opened > 0 || totals.rejected > 0 {
                let count: Map<String, Value> = BreakerState::ALL
                    .iter()
                    .map(|s| {
                        let n = states.iter().filter(|(_, state)| state == s).count();
                        (s.as_str().to_string(), n.into())
                    })
                    .collect();
                let shards: Map<String, Value> = states
                    .iter()
                    .map(|(shard, s)| (shard.to_string(), s.as_str().into()))
                    .collect();
                let breaker = json!({
                    "shards_by_state": count,
                    "by_shard": shards,
                    "opened": totals.opened,
                    "rejected": totals.rejected,
                });
                entry(name, "breaker", breaker);
            }
            let mut ejected: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            let mut outlier = false;
            for (&shard, report) in &totals.by_shard {
                outlier |= !report.endpoints.is_empty();
                for (address, _) in report.endpoints.iter().filter(|e| e.1) {
                    ejected.entry(address.to_string()).or_default().push(shard);
                }
            }
            if outlier || totals.ejections > 0 {
                let outlier = json!({ "ejections": totals.ejections, "ejected": ejected });
                entry(name, "outlier", outlier);
            }
        }
        for (name, endpoints) in &self.health {
            let health: Map<String, Value> = endpoints
                .iter()
                .map(|e| {
                    let value = json!({
                        "healthy": e.healthy,
                        "checks": e.checks,
                        "last": e.last,
                    });
                    (e.address.to_string(), value)
                })
                .collect();
            entry(name, "health", Value::Object(health));
        }
    }

    /// The Prometheus text of the protection metrics.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "ringway_upstream_breaker_state",
            "gauge",
            "1 for the state each shard's circuit breaker of an upstream is in (closed, open, half_open), 0 for the others.",
        );
        for (name, totals) in &self.upstreams {
            for (shard, report) in &totals.by_shard {
                let Some(now) = report.breaker else { continue };
                let shard = shard.to_string();
                for state in BreakerState::ALL {
                    let labels = [
                        ("upstream", name.as_str()),
                        ("shard", shard.as_str()),
                        ("state", state.as_str()),
                    ];
                    sample(
                        &mut out,
                        "ringway_upstream_breaker_state",
                        &labels,
                        u64::from(state == now),
                    );
                }
            }
        }
        type Counter = (&'static str, &'static str, fn(&GuardTotals) -> u64);
        let counters: [Counter; 3] = [
            (
                "ringway_upstream_breaker_opened_total",
                "Times a shard's circuit breaker of an upstream opened.",
                |t| t.opened,
            ),
            (
                "ringway_upstream_breaker_rejected_total",
                "Requests answered 503 at once because the upstream's breaker was open.",
                |t| t.rejected,
            ),
            (
                "ringway_upstream_ejections_total",
                "Endpoints of an upstream ejected by outlier detection (on any shard).",
                |t| t.ejections,
            ),
        ];
        for (metric, help, value) in counters {
            header(&mut out, metric, "counter", help);
            for (name, totals) in &self.upstreams {
                sample(&mut out, metric, &[("upstream", name)], value(totals));
            }
        }
        header(
            &mut out,
            "ringway_upstream_endpoint_ejected",
            "gauge",
            "1 while outlier detection on a shard keeps an endpoint out, else 0.",
        );
        for (name, totals) in &self.upstreams {
            for (shard, report) in &totals.by_shard {
                let shard = shard.to_string();
                for (address, ejected) in &report.endpoints {
                    let address = address.to_string();
                    let labels = [
                        ("upstream", name.as_str()),
                        ("endpoint", address.as_str()),
                        ("shard", shard.as_str()),
                    ];
                    let value = u64::from(*ejected);
                    sample(
                        &mut out,
                        "ringway_upstream_endpoint_ejected",
                        &labels,
                        value,
                    );
                }
            }
        }
        header(
            &mut out,
            "ringway_upstream_endpoint_healthy",
            "gauge",
            "1 while active health checks find an endpoint healthy, else 0.",
        );
        for (name, endpoints) in &self.health {
            for e in endpoints {
                let address = e.address.to_string();
                let labels = [("upstream", name.as_str()), ("endpoint", address.as_str())];
                let value = u64::from(e.healthy);
                sample(
                    &mut out,
                    "ringway_upstream_endpoint_healthy",
                    &labels,
                    value,
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(breaker: Option<BreakerState>, opened: u64, ejected: &[(&str, bool)]) -> GuardReport {
        GuardReport {
            breaker,
            opened,
            rejected: opened * 10,
            ejections: ejected.iter().filter(|e| e.1).count() as u64,
            endpoints: ejected
                .iter()
                .map(|(a, e)| (a.parse().unwrap(), *e))
                .collect(),
        }
    }

    #[test]
    fn shards_merge_into_counts_and_a_shard_that_stops_reporting_drops_out() {
        let mut p = Protection::default();
        let open = report(
            Some(BreakerState::Open),
            1,
            &[("127.0.0.1:1", true), ("127.0.0.1:2", false)],
        );
        p.absorb(0, &[("u".into(), open)]);
        p.absorb(
            1,
            &[("u".into(), report(Some(BreakerState::Closed), 0, &[]))],
        );
        p.absorb(
            0,
            &[(
                "u".into(),
                report(Some(BreakerState::Open), 1, &[("127.0.0.1:1", true)]),
            )],
        );
        let mut upstreams = Map::new();
        p.extend_json(&mut upstreams, || json!({}));
        let breaker = &upstreams["u"]["breaker"];
        assert_eq!(
            breaker["shards_by_state"],
            json!({"closed": 1, "open": 1, "half_open": 0})
        );
        assert_eq!(breaker["by_shard"], json!({"0": "open", "1": "closed"}));
        assert_eq!(
            (breaker["opened"].clone(), breaker["rejected"].clone()),
            (json!(2), json!(20))
        );
        assert_eq!(
            upstreams["u"]["outlier"],
            json!({"ejections": 2, "ejected": {"127.0.0.1:1": [0]}})
        );
        let text = p.prometheus();
        assert!(text.contains(
            "ringway_upstream_breaker_state{upstream=\"u\",shard=\"0\",state=\"open\"} 1\n"
        ));
        assert!(text.contains(
            "ringway_upstream_breaker_state{upstream=\"u\",shard=\"1\",state=\"open\"} 0\n"
        ));
        assert!(text.contains("ringway_upstream_breaker_opened_total{upstream=\"u\"} 2\n"));
        assert!(text.contains("ringway_upstream_endpoint_ejected{upstream=\"u\",endpoint=\"127.0.0.1:1\",shard=\"0\"} 1\n"));
        // Shard 0 reports no guard for "u" any more (reloaded without it): only shard 1 stays.
        p.absorb(0, &[]);
        let mut upstreams = Map::new();
        p.extend_json(&mut upstreams, || json!({}));
        assert_eq!(
            upstreams["u"]["breaker"]["by_shard"],
            json!({"1": "closed"})
        );
    }

    #[test]
    fn health_shows_per_endpoint() {
        let mut p = Protection::default();
        p.health.insert(
            "u".into(),
            vec![EndpointHealth {
                address: "127.0.0.1:9".parse().unwrap(),
                healthy: false,
                checks: 4,
                last: "status 500".into(),
            }],
        );
        let mut upstreams = Map::new();
        upstreams.insert("u".into(), json!({"requests": 3}));
        p.extend_json(&mut upstreams, || json!({}));
        assert_eq!(upstreams["u"]["requests"], 3);
        assert_eq!(
            upstreams["u"]["health"],
            json!({"127.0.0.1:9": {"healthy": false, "checks": 4, "last": "status 500"}})
        );
        assert!(p.prometheus().contains(
            "ringway_upstream_endpoint_healthy{upstream=\"u\",endpoint=\"127.0.0.1:9\"} 0\n"
        ));
    }
}
