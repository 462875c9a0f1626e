//! Merging shard reports: counters are summed and histograms added bucket by bucket, per
//! route, per upstream and per listener name. Names are the config's stable names, so the
//! totals of a route carry on across reloads that keep it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use hdrhistogram::Histogram;
use ringway_core::metrics::{new_histogram, ListenerStats, ShardReport, TrafficStats};

/// The route name under which requests that matched no route (or were refused before routing)
/// are shown.
pub const UNROUTED: &str = "_unrouted";

/// Cumulative totals since the process started.
#[derive(Default)]
pub struct Totals {
    pub routes: BTreeMap<String, TrafficStats>,
    pub upstreams: BTreeMap<String, TrafficStats>,
    /// Requests that matched no route; shown as the route [`UNROUTED`].
    pub unrouted: TrafficStats,
    pub listeners: BTreeMap<String, ListenerTotals>,
    /// Access-log lines dropped because the writer fell behind.
    pub access_log_dropped: u64,
    /// Breakers, ejections and endpoint health per upstream.
    pub protection: super::guards::Protection,
    /// Rate and concurrency limits per route.
    pub limits: super::limits::Limits,
}

/// One listener across all shards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenerTotals {
    pub accepted: u64,
    pub refused: u64,
    /// The latest `open` gauge each shard reported, by shard index.
    pub open_by_shard: BTreeMap<usize, u64>,
}

impl ListenerTotals {
    /// Connections open now, summed over the shards' latest reports.
    pub fn open(&self) -> u64 {
        self.open_by_shard.values().sum()
    }

    fn absorb(&mut self, shard: usize, stats: &ListenerStats) {
        self.accepted += stats.accepted;
        self.refused += stats.refused;
        self.open_by_shard.insert(shard, stats.open);
    }
}

impl Totals {
    pub fn absorb(&mut self, report: ShardReport) {
        merge_named(&mut self.routes, report.routes);
        merge_named(&mut self.upstreams, report.upstreams);
        self.protection.absorb(report.shard, &report.guards);
        self.limits
            .absorb(report.shard, &report.rate_limits, &report.concurrency);
        self.unrouted.merge(&report.unrouted);
        self.access_log_dropped += report.access_log_dropped;
        for (name, stats) in &report.listeners {
            self.listeners
                .entry(name.clone())
                .or_default()
                .absorb(report.shard, stats);
        }
    }

    /// Every route with its totals, the unrouted requests last as [`UNROUTED`].
    pub fn routes_with_unrouted(&self) -> impl Iterator<Item = (&str, &TrafficStats)> {
        self.routes
            .iter()
            .map(|(name, stats)| (name.as_str(), stats))
            .chain(std::iter::once((UNROUTED, &self.unrouted)))
    }
}

/// Adds each named delta into `into`, taking the delta's allocation for a name seen first.
fn merge_named(into: &mut BTreeMap<String, TrafficStats>, deltas: Vec<(String, TrafficStats)>) {
    for (name, delta) in deltas {
        match into.get_mut(&name) {
            Some(total) => total.merge(&delta),
            None => {
                into.insert(name, delta);
            }
        }
    }
}

/// Per-route request latency since the interval started: what one interval-log block holds.
pub struct Interval {
    pub start: SystemTime,
    /// Total request latency (µs) by route name, [`UNROUTED`] included.
    pub routes: BTreeMap<String, Histogram<u64>>,
}

impl Default for Interval {
    fn default() -> Self {
        Interval::new(SystemTime::now())
    }
}

impl Interval {
    pub fn new(start: SystemTime) -> Interval {
        Interval {
            start,
            routes: BTreeMap::new(),
        }
    }

    pub fn absorb(&mut self, report: &ShardReport) {
        let routes = report.routes.iter().map(|(n, s)| (n.as_str(), s));
        for (name, stats) in routes.chain(std::iter::once((UNROUTED, &report.unrouted))) {
            if stats.total_latency.is_empty() {
                continue;
            }
            let histogram = match self.routes.get_mut(name) {
                Some(h) => h,
                None => self
                    .routes
                    .entry(name.to_string())
                    .or_insert_with(new_histogram),
            };
            // Same bounds on both sides (`new_histogram`): adding cannot fail.
            let _ = histogram.add(&stats.total_latency);
        }
    }

    /// Starts the next interval at `start`, keeping the histograms' allocations.
    pub fn restart(&mut self, start: SystemTime) {
        self.start = start;
        for histogram in self.routes.values_mut() {
            histogram.reset();
        }
    }
}
