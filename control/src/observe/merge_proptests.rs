//! Shard reports merged as the control thread merges them ([`Observatory::absorb`]) against a
//! naive reference: every value of every shard in one sorted list. Counts, minimum, maximum
//! and percentiles of the merge must be those of the list, to the histogram's resolution.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use proptest::prelude::*;
use ringway_core::metrics::{new_histogram, ShardReport, TrafficStats, HISTOGRAM_MAX_US};

use super::merge::UNROUTED;
use super::{Observatory, ProcessInfo};

const ROUTES: [&str; 3] = ["a", "b", "c"];

/// Quantiles checked: the ones `stats` reports, and both ends.
const QUANTILES: [f64; 7] = [0.0, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0];

/// One request: its route (`ROUTES.len()` for an unrouted one), total and upstream latency
/// in µs.
type Request = (usize, u64, u64);

fn latency() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..2_000,
        1u64..200_000,
        1u64..=HISTOGRAM_MAX_US,
        // Past the histogram's range (its counts reach 2^32 µs): counted as the top value.
        (1u64 << 32)..u64::MAX,
    ]
}

/// Reports in arrival order: (shard, requests since that shard's previous report).
fn reports() -> impl Strategy<Value = Vec<(usize, Vec<Request>)>> {
    let request = (0..=ROUTES.len(), latency(), latency());
    prop::collection::vec((0usize..4, prop::collection::vec(request, 0..40)), 1..12)
}

fn report(shard: usize, requests: &[Request]) -> ShardReport {
    let mut routes: BTreeMap<usize, TrafficStats> = BTreeMap::new();
    for &(route, total, upstream) in requests {
        let stats = routes.entry(route).or_default();
        stats.requests += 1;
        stats.total_latency.record(total);
        stats.upstream_latency.record(upstream);
    }
    let unrouted = routes.remove(&ROUTES.len()).unwrap_or_default();
    ShardReport {
        shard,
        routes: routes
            .into_iter()
            .map(|(route, stats)| (ROUTES[route].to_string(), stats))
            .collect(),
        unrouted,
        ..ShardReport::default()
    }
}

/// The naive percentile: the smallest recorded value with at least `q` of all values at or
/// below it (`values` sorted, not empty).
fn naive_quantile(values: &[u64], q: f64) -> u64 {
    let rank = ((q * values.len() as f64).ceil() as usize).max(1);
    values[rank - 1]
}

fn info() -> ProcessInfo {
    ProcessInfo {
        epoch: 1,
        shards: 4,
        drivers: vec!["epoll"; 4],
        started: Instant::now(),
        started_wall: SystemTime::now(),
        draining: false,
        reloads_ok: 0,
        reloads_failed: 0,
        certificates: vec![],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn merged_reports_hold_every_value_of_every_shard(reports in reports()) {
        let mut observatory = Observatory::default();
        // Per route name: every total and upstream latency, as recorded, capped at the top.
        let mut all: BTreeMap<&str, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
        for (shard, requests) in &reports {
            for &(route, total, upstream) in requests {
                let name = ROUTES.get(route).copied().unwrap_or(UNROUTED);
                let values = all.entry(name).or_default();
                values.0.push(total.min(HISTOGRAM_MAX_US));
                values.1.push(upstream.min(HISTOGRAM_MAX_US));
            }
            observatory.absorb(report(*shard, requests));
        }
        let stats = observatory.stats_json(&info());
        let resolution = new_histogram();
        let totals = observatory.totals();
        for (name, (mut total, mut upstream)) in all {
            let merged = if name == UNROUTED { &totals.unrouted } else { &totals.routes[name] };
            prop_assert_eq!(merged.requests, total.len() as u64);
            for (values, latency) in [
                (&mut total, &merged.total_latency),
                (&mut upstream, &merged.upstream_latency),
            ] {
                values.sort_unstable();
                let hdr = latency.to_hdr();
                prop_assert_eq!(latency.len(), values.len() as u64);
                prop_assert_eq!(hdr.len(), values.len() as u64);
                prop_assert_eq!(hdr.min(), resolution.lowest_equivalent(values[0]));
                prop_assert_eq!(hdr.max(), resolution.highest_equivalent(values[values.len() - 1]));
                for q in QUANTILES {
                    let want = naive_quantile(values, q);
                    let got = hdr.value_at_quantile(q);
                    // The value's bucket: the highest value it holds, its lowest for q = 0.
                    let bucket = if q == 0.0 {
                        resolution.lowest_equivalent(want)
                    } else {
                        resolution.highest_equivalent(want)
                    };
                    prop_assert_eq!(got, bucket, "q {} of {:?}", q, values);
                    // Two significant digits: within 1% of the true value.
                    prop_assert!(got.abs_diff(want) <= want / 100 + 1, "q {} of {:?}", q, values);
                }
            }
            // `stats` shows the same percentiles, in milliseconds.
            let shown = &stats["routes"][name]["latency_ms"];
            let hdr = merged.total_latency.to_hdr();
            prop_assert_eq!(shown["p99"].as_f64(), Some(hdr.value_at_quantile(0.99) as f64 / 1000.0));
            prop_assert_eq!(shown["max"].as_f64(), Some(hdr.max() as f64 / 1000.0));
            // One interval so far: it holds the same values as the totals.
            if let Some(interval) = observatory.interval.routes.get(name) {
                prop_assert!(interval == &merged.total_latency);
            }
        }
    }
}
