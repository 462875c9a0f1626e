//! Per-shard traffic statistics: counters and HdrHistograms per route, per upstream and per
//! listener. A shard records into its own [`TrafficStats`] (no sharing, no atomics) and hands
//! the control thread a [`ShardReport`] of everything since its previous report; the control
//! thread merges reports bucket by bucket and computes percentiles after the merge.

mod cause;
mod latency;
mod policy;

use hdrhistogram::Histogram;

pub use cause::ErrorCause;
pub use latency::Latency;
pub use policy::{ConcurrencyStats, RateLimitStats};

pub use crate::upstream::{BreakerState, GuardReport};

/// Histograms record microseconds from 1 µs to one hour, at 2 significant digits (1%).
pub const HISTOGRAM_MAX_US: u64 = 3_600_000_000;
pub const HISTOGRAM_SIGFIG: u8 = 2;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, HISTOGRAM_SIGFIG)
        .expect("constant, valid bounds")
}

/// Counters and latency histograms of one route or one upstream. The default holds no heap
/// memory: histograms grow with the values recorded.
#[derive(Clone, Debug, Default)]
pub struct TrafficStats {
    pub requests: u64,
    /// Responses by status class: index 0 is 1xx, ..., 4 is 5xx.
    pub status_classes: [u64; 5],
    /// Bytes received from clients (heads and bodies) and sent to them.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Failures by cause, indexed by `ErrorCause as usize`.
    pub errors: [u64; ErrorCause::COUNT],
    /// Tries sent again by the route's retry policy (on an upstream: retries it received).
    pub retries: u64,
    /// Retries the policy allowed but the retry budget refused.
    pub retries_over_budget: u64,
    /// Request latency in µs: from the request head's arrival to the response's last byte.
    pub total_latency: Latency,
    /// Upstream latency in µs: from forwarding the request to the upstream's response head.
    pub upstream_latency: Latency,
}

impl TrafficStats {
    pub fn record_status(&mut self, status: u16) {
        if (100..600).contains(&status) {
            self.status_classes[usize::from(status / 100 - 1)] += 1;
        }
    }

    pub fn record_error(&mut self, cause: ErrorCause) {
        self.errors[cause as usize] += 1;
    }

    /// Adds `other` into `self`: counters summed, histograms merged bucket by bucket.
    pub fn merge(&mut self, other: &TrafficStats) {
        self.requests += other.requests;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.retries += other.retries;
        self.retries_over_budget += other.retries_over_budget;
        for (a, b) in self.status_classes.iter_mut().zip(other.status_classes) {
            *a += b;
        }
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        self.total_latency.add(&other.total_latency);
        self.upstream_latency.add(&other.upstream_latency);
    }

    /// True when nothing was recorded.
    pub fn is_idle(&self) -> bool {
        self.requests == 0
            && self.retries == 0
            && self.retries_over_budget == 0
            && self.errors.iter().all(|&e| e == 0)
    }

    /// Bytes held on the heap (the histograms' counts).
    pub fn heap_bytes(&self) -> usize {
        self.total_latency.heap_bytes() + self.upstream_latency.heap_bytes()
    }
}

/// Connection counters of one listener on one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// Connections accepted since the previous report.
    pub accepted: u64,
    /// Connections refused with 503 because the shard was at `max_connections`, since the
    /// previous report.
    pub refused: u64,
    /// Connections open now (a gauge, not a delta).
    pub open: u64,
    /// TLS handshakes completed since the previous report, and of them those that resumed a
    /// session.
    pub tls_handshakes: u64,
    pub tls_resumed: u64,
    /// TLS handshakes that failed, by [`Refusal`](crate::tls::Refusal) (`as usize`), since the
    /// previous report.
    pub tls_refused: [u64; crate::tls::Refusal::COUNT],
    /// Connections that switched protocols (WebSocket) since the previous report.
    pub upgraded: u64,
    /// Connections closed because their PROXY protocol header was missing, malformed, late or
    /// from a peer outside `trusted_proxies`, since the previous report.
    pub proxy_refused: u64,
}

/// What a shard reports to the control thread: deltas since its previous report, keyed by the
/// stable names of routes, upstreams and listeners.
#[derive(Clone, Debug, Default)]
pub struct ShardReport {
    pub shard: usize,
    /// The epoch the shard runs now.
    pub epoch: u64,
    pub routes: Vec<(String, TrafficStats)>,
    pub upstreams: Vec<(String, TrafficStats)>,
    pub listeners: Vec<(String, ListenerStats)>,
    /// Requests that matched no route or were refused before routing (bad input).
    pub unrouted: TrafficStats,
    /// Breaker state and endpoint ejections of each upstream that has a breaker or outlier
    /// detection, by upstream name.
    pub guards: Vec<(String, GuardReport)>,
    /// Access-log lines dropped because the writer fell behind, since the previous report.
    pub access_log_dropped: u64,
    /// Rate-limit decisions of each rate-limited route, by route name.
    pub rate_limits: Vec<(String, RateLimitStats)>,
    /// Concurrency-limit refusals and in-flight counts of each route with `max_in_flight`.
    pub concurrency: Vec<(String, ConcurrencyStats)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counters_and_buckets() {
        let mut a = TrafficStats::default();
        let mut b = TrafficStats::default();
        for us in 1..=1000 {
            a.total_latency.record(us);
            b.total_latency.record(us * 1000);
        }
        a.requests = 1000;
        b.requests = 1000;
        a.record_status(200);
        b.record_status(503);
        b.record_error(ErrorCause::NoEndpoint);
        a.merge(&b);
        assert_eq!(a.requests, 2000);
        assert_eq!(a.total_latency.len(), 2000);
        assert_eq!(a.status_classes, [0, 1, 0, 0, 1]);
        assert_eq!(a.errors[ErrorCause::NoEndpoint as usize], 1);
        // The median of the merge lies between the two inputs' ranges: computed after merging,
        // not averaged from the inputs' medians (500 and 500_000).
        let p50 = a.total_latency.to_hdr().value_at_quantile(0.5);
        assert!((990..=1010).contains(&p50), "p50 {p50}");
    }
}
