//! Merging shard reports: counters are summed and histograms added bucket by bucket, per
//! route, per upstream and per listener name. Names are the config's stable names, so the
//! totals of a route carry on across reloads that keep it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use ringway_core::metrics::{Latency, ListenerStats, ShardReport, TrafficStats};

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
    pub tls_handshakes: u64,
    pub tls_resumed: u64,
    /// Failed handshakes by `tls::Refusal` (`as usize`).
    pub tls_refused: [u64; ringway_core::tls::Refusal::COUNT],
    pub upgraded: u64,
    pub proxy_refused: u64,
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
        self.tls_handshakes += stats.tls_handshakes;
        self.tls_resumed += stats.tls_resumed;
        self.upgraded += stats.upgraded;
        self.proxy_refused += stats.proxy_refused;
        for (total, n) in self.tls_refused.iter_mut().zip(stats.tls_refused) {
            *total += n;
        }
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

    /// Forgets the series of names no live epoch has (removed or renamed routes, upstreams and
    /// listeners), so that their memory goes and their metrics disappear. A late report of
    /// such a name (a request of an old epoch that finished since) shows it again until the
    /// next call.
    pub fn forget(&mut self, live: &Live<'_>) {
        self.routes.retain(|name, _| live.route(name));
        self.upstreams.retain(|name, _| live.upstream(name));
        self.protection
            .upstreams
            .retain(|name, _| live.upstream(name));
        self.limits.retain(|name| live.route(name));
        self.listeners
            .retain(|name, l| live.listener(name) || l.open() > 0);
    }

    /// Every route with its totals, the unrouted requests last as [`UNROUTED`].
    pub fn routes_with_unrouted(&self) -> impl Iterator<Item = (&str, &TrafficStats)> {
        self.routes
            .iter()
            .map(|(name, stats)| (name.as_str(), stats))
            .chain(std::iter::once((UNROUTED, &self.unrouted)))
    }
}

/// The names of the epochs that requests may still run on: the current one and those still
/// held by a request.
pub struct Live<'a> {
    pub epochs: Vec<&'a ringway_core::Epoch>,
}

impl Live<'_> {
    fn route(&self, name: &str) -> bool {
        self.epochs.iter().any(|e| e.route_ids.contains_key(name))
    }

    fn upstream(&self, name: &str) -> bool {
        self.epochs
            .iter()
            .any(|e| e.upstream_ids.contains_key(name))
    }

    fn listener(&self, name: &str) -> bool {
        self.epochs
            .iter()
            .any(|e| e.config.listeners.iter().any(|l| l.name == name))
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
    /// Total request latency (µs) by route name, [`UNROUTED`] included; only routes with
    /// traffic in the interval.
    pub routes: BTreeMap<String, Latency>,
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
            match self.routes.get_mut(name) {
                Some(latency) => latency.add(&stats.total_latency),
                None => {
                    self.routes
                        .insert(name.to_string(), stats.total_latency.clone());
                }
            }
        }
    }

    /// Starts the next interval at `start`; the routes of the one before are forgotten, so
    /// that only routes with traffic hold memory.
    pub fn restart(&mut self, start: SystemTime) {
        self.start = start;
        self.routes.clear();
    }
}
