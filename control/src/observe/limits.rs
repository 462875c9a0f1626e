//! Route limits across shards: rate-limit decisions and keys held, concurrency-limit refusals
//! and requests in flight, merged from the shards' reports by route name. Labels are route
//! names and key kinds (`route`, `client_ip`, `header`), never a key's value.

use std::collections::BTreeMap;

use ringway_core::metrics::{ConcurrencyStats, RateLimitStats};
use serde_json::{json, Map, Value};

use super::prometheus::{header, sample};

#[derive(Default)]
pub struct Limits {
    pub rate_limits: BTreeMap<String, RateLimitTotals>,
    pub concurrency: BTreeMap<String, ConcurrencyTotals>,
}

/// One route's rate limit, all shards together.
#[derive(Default, Debug)]
pub struct RateLimitTotals {
    pub key: &'static str,
    pub admitted: u64,
    pub rejected: u64,
    pub borrowed: u64,
    pub max_keys: u64,
    /// Per shard: admitted and rejected since start, and the keys held at the latest report.
    pub by_shard: BTreeMap<usize, ShardCounts>,
    /// Keys with a bucket on the control thread (set before each `stats` and `/metrics`).
    pub node_keys: u64,
}

#[derive(Default, Debug, Clone, Copy)]
pub struct ShardCounts {
    pub admitted: u64,
    pub rejected: u64,
    pub keys: u64,
}

/// One route's concurrency limit, all shards together.
#[derive(Default, Debug)]
pub struct ConcurrencyTotals {
    pub rejected: u64,
    pub max: u64,
    /// Requests in flight at each shard's latest report.
    pub in_flight_by_shard: BTreeMap<usize, u64>,
}

impl Limits {
    pub fn absorb(
        &mut self,
        shard: usize,
        rate_limits: &[(String, RateLimitStats)],
        concurrency: &[(String, ConcurrencyStats)],
    ) {
        for (route, stats) in rate_limits {
            let totals = self.rate_limits.entry(route.clone()).or_default();
            totals.key = stats.key;
            totals.max_keys = stats.max_keys;
            totals.admitted += stats.admitted;
            totals.rejected += stats.rejected;
            totals.borrowed += stats.borrowed;
            let counts = totals.by_shard.entry(shard).or_default();
            counts.admitted += stats.admitted;
            counts.rejected += stats.rejected;
            counts.keys = stats.keys;
        }
        for (route, stats) in concurrency {
            let totals = self.concurrency.entry(route.clone()).or_default();
            totals.rejected += stats.rejected;
            totals.max = stats.max;
            totals.in_flight_by_shard.insert(shard, stats.in_flight);
        }
    }

    /// Shows every limited route of `config`, with its settings, before its first request
    /// (shards report a route only once it has served one).
    pub fn follow(&mut self, config: &ringway_config::Config) {
        for route in &config.routes {
            if let Some(limit) = &route.rate_limit {
                let totals = self.rate_limits.entry(route.name.clone()).or_default();
                totals.key = limit.key.kind();
                totals.max_keys = limit.max_keys.get() as u64;
            }
            if let Some(max) = route.max_in_flight {
                self.concurrency.entry(route.name.clone()).or_default().max = max.get() as u64;
            }
        }
    }

    /// Forgets the routes for which `live` is false.
    pub fn retain(&mut self, live: impl Fn(&str) -> bool) {
        self.rate_limits.retain(|route, _| live(route));
        self.concurrency
            .retain(|route, t| live(route) || t.in_flight_by_shard.values().any(|&n| n > 0));
    }

    /// The control thread's bucket counts, by route name; routes not listed have none.
    pub fn set_node_keys(&mut self, keys: &[(String, u64)]) {
        for totals in self.rate_limits.values_mut() {
            totals.node_keys = 0;
        }
        for (route, n) in keys {
            if let Some(totals) = self.rate_limits.get_mut(route) {
                totals.node_keys = *n;
            }
        }
    }

    /// `rate_limits` and `concurrency_limits` of `ringway ctl stats`.
    pub fn json(&self) -> (Value, Value) {
        let rate_limits: Map<String, Value> = self
            .rate_limits
            .iter()
            .map(|(route, t)| {
                let shards: Map<String, Value> = t
                    .by_shard
                    .iter()
                    .map(|(shard, c)| {
                        let value = json!({
                            "admitted": c.admitted,
                            "rejected": c.rejected,
                            "keys": c.keys,
                        });
                        (shard.to_string(), value)
                    })
                    .collect();
                let value = json!({
                    "key": t.key,
                    "admitted": t.admitted,
                    "rejected": t.rejected,
                    "borrowed": t.borrowed,
                    "keys": t.by_shard.values().map(|c| c.keys).sum::<u64>(),
                    "max_keys": t.max_keys,
                    "node_keys": t.node_keys,
                    "shards": shards,
                });
                (route.clone(), value)
            })
            .collect();
        let concurrency: Map<String, Value> = self
            .concurrency
            .iter()
            .map(|(route, t)| {
                let value = json!({
                    "max_in_flight": t.max,
                    "in_flight": t.in_flight_by_shard.values().sum::<u64>(),
                    "rejected": t.rejected,
                });
                (route.clone(), value)
            })
            .collect();
        (Value::Object(rate_limits), Value::Object(concurrency))
    }

    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "ringway_rate_limit_requests_total",
            "counter",
            "Requests of rate-limited routes by route, key kind and decision (admitted, rejected with 429).",
        );
        for (route, t) in &self.rate_limits {
            for (decision, n) in [("admitted", t.admitted), ("rejected", t.rejected)] {
                let labels = [
                    ("route", route.as_str()),
                    ("key", t.key),
                    ("decision", decision),
                ];
                sample(&mut out, "ringway_rate_limit_requests_total", &labels, n);
            }
        }
        header(
            &mut out,
            "ringway_rate_limit_borrowed_total",
            "counter",
            "Requests admitted without a leased token because the control thread did not answer in time (paid back from later grants).",
        );
        for (route, t) in &self.rate_limits {
            let labels = [("route", route.as_str()), ("key", t.key)];
            sample(
                &mut out,
                "ringway_rate_limit_borrowed_total",
                &labels,
                t.borrowed,
            );
        }
        header(
            &mut out,
            "ringway_rate_limit_keys",
            "gauge",
            "Keys the shards hold rate-limit state for, summed over the shards (each holds at most max_keys).",
        );
        for (route, t) in &self.rate_limits {
            let labels = [("route", route.as_str()), ("key", t.key)];
            let keys = t.by_shard.values().map(|c| c.keys).sum();
            sample(&mut out, "ringway_rate_limit_keys", &labels, keys);
        }
        header(
            &mut out,
            "ringway_concurrency_limit_rejected_total",
            "counter",
            "Requests refused with 503 because their route had max_in_flight requests in flight on the shard.",
        );
        for (route, t) in &self.concurrency {
            let labels = [("route", route.as_str())];
            sample(
                &mut out,
                "ringway_concurrency_limit_rejected_total",
                &labels,
                t.rejected,
            );
        }
        header(
            &mut out,
            "ringway_concurrency_limit_in_flight",
            "gauge",
            "Requests in flight on routes with max_in_flight, summed over the shards' latest reports.",
        );
        for (route, t) in &self.concurrency {
            let labels = [("route", route.as_str())];
            let n = t.in_flight_by_shard.values().sum();
            sample(&mut out, "ringway_concurrency_limit_in_flight", &labels, n);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rl(admitted: u64, rejected: u64, keys: u64) -> RateLimitStats {
        RateLimitStats {
            key: "client_ip",
            admitted,
            rejected,
            borrowed: 1,
            keys,
            max_keys: 100,
        }
    }

    #[test]
    fn merges_shards_and_renders() {
        let mut limits = Limits::default();
        let cc = |in_flight| ConcurrencyStats {
            rejected: 2,
            in_flight,
            max: 10,
        };
        limits.absorb(0, &[("api".into(), rl(10, 3, 7))], &[("api".into(), cc(4))]);
        limits.absorb(1, &[("api".into(), rl(5, 1, 2))], &[("api".into(), cc(1))]);
        // Gauges are the latest per shard; counters add up.
        limits.absorb(0, &[("api".into(), rl(1, 0, 6))], &[("api".into(), cc(3))]);
        limits.set_node_keys(&[("api".into(), 9)]);
        let (rate, conc) = limits.json();
        assert_eq!(rate["api"]["admitted"], 16);
        assert_eq!(rate["api"]["rejected"], 4);
        assert_eq!(rate["api"]["borrowed"], 3);
        assert_eq!(rate["api"]["keys"], 8);
        assert_eq!(rate["api"]["node_keys"], 9);
        assert_eq!(rate["api"]["shards"]["1"]["admitted"], 5);
        assert_eq!(conc["api"]["in_flight"], 4);
        assert_eq!(conc["api"]["rejected"], 6);
        let text = limits.prometheus();
        let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("valid exposition text");
        let value = |name: &str, label: (&str, &str)| {
            parsed
                .samples
                .iter()
                .find(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                    _ => f64::NAN,
                })
        };
        let decision = ("decision", "rejected");
        assert_eq!(
            value("ringway_rate_limit_requests_total", decision),
            Some(4.0)
        );
        assert_eq!(
            value("ringway_rate_limit_keys", ("key", "client_ip")),
            Some(8.0)
        );
        let route = ("route", "api");
        assert_eq!(
            value("ringway_concurrency_limit_rejected_total", route),
            Some(6.0)
        );
        assert_eq!(
            value("ringway_concurrency_limit_in_flight", route),
            Some(4.0)
        );
    }
}
