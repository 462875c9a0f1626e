//! The `ringway ctl stats` reply: counters and percentiles per route and per upstream, and
//! connection counts per listener. Percentiles come from the merged histograms.

use ringway_core::metrics::{ErrorCause, Latency, TrafficStats};
use serde_json::{json, Map, Value};

use super::merge::Totals;
use super::ProcessInfo;

/// The status classes in the order of `TrafficStats::status_classes`.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The quantiles reported, with their JSON keys.
const QUANTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)];

pub fn render(totals: &Totals, info: &ProcessInfo) -> Value {
    let routes: Map<String, Value> = totals
        .routes_with_unrouted()
        .map(|(name, stats)| (name.to_string(), traffic(stats)))
        .collect();
    let mut upstreams: Map<String, Value> = totals
        .upstreams
        .iter()
        .map(|(name, stats)| (name.clone(), traffic(stats)))
        .collect();
    let no_traffic = || traffic(&TrafficStats::default());
    totals.protection.extend_json(&mut upstreams, no_traffic);
    let listeners: Map<String, Value> = totals
        .listeners
        .iter()
        .map(|(name, l)| {
            let mut value = json!({"open": l.open(), "accepted": l.accepted, "refused": l.refused, "upgraded": l.upgraded});
            if l.proxy_refused > 0 {
                value["proxy_protocol_failures"] = json!(l.proxy_refused);
            }
            if l.tls_handshakes > 0 || l.tls_refused.iter().any(|&n| n > 0) {
                let failures: Map<String, Value> = (ringway_core::tls::Refusal::ALL.iter())
                    .zip(l.tls_refused)
                    .filter(|(_, n)| *n > 0)
                    .map(|(r, n)| (r.as_str().to_owned(), Value::from(n)))
                    .collect();
                value["tls"] = json!({
                    "handshakes": l.tls_handshakes,
                    "resumed": l.tls_resumed,
                    "failures": failures,
                });
            }
            (name.clone(), value)
        })
        .collect();
    let (rate_limits, concurrency_limits) = totals.limits.json();
    json!({
        "epoch": info.epoch,
        "uptime_s": info.started.elapsed().as_secs(),
        "routes": routes,
        "upstreams": upstreams,
        "listeners": listeners,
        "rate_limits": rate_limits,
        "concurrency_limits": concurrency_limits,
    })
}

/// One route's or upstream's counters and latency summaries.
fn traffic(stats: &TrafficStats) -> Value {
    let status: Map<String, Value> = STATUS_CLASSES
        .iter()
        .zip(stats.status_classes)
        .map(|(class, n)| (class.to_string(), n.into()))
        .collect();
    let errors: Map<String, Value> = ErrorCause::ALL
        .iter()
        .zip(stats.errors)
        .filter(|&(_, n)| n > 0)
        .map(|(cause, n)| (cause.as_str().to_string(), n.into()))
        .collect();
    json!({
        "requests": stats.requests,
        "status": status,
        "errors": errors,
        "bytes_in": stats.bytes_in,
        "bytes_out": stats.bytes_out,
        "retries": stats.retries,
        "retries_over_budget": stats.retries_over_budget,
        "latency_ms": summary(&stats.total_latency),
        "upstream_latency_ms": summary(&stats.upstream_latency),
    })
}

/// `{"p50":..,"p90":..,"p99":..,"p99_9":..,"max":..}` in milliseconds (µs resolution), or
/// `null` when nothing was recorded (an upstream has no total latency of its own).
pub fn summary(latency: &Latency) -> Value {
    if latency.is_empty() {
        return Value::Null;
    }
    let histogram = latency.to_hdr();
    let mut out: Map<String, Value> = QUANTILES
        .iter()
        .map(|&(key, q)| (key.to_string(), ms(histogram.value_at_quantile(q))))
        .collect();
    out.insert("max".to_string(), ms(histogram.max()));
    Value::Object(out)
}

fn ms(us: u64) -> Value {
    json!(us as f64 / 1000.0)
}
