//! Prometheus text exposition format 0.0.4 for the admin listener's `/metrics`.
//!
//! Labels are bounded: route, upstream and listener names from the config, status classes and
//! error causes; never anything a client sent. Latency histograms are exported with fixed
//! bucket bounds, counted from the merged HdrHistograms.

use std::fmt::Write;
use std::time::UNIX_EPOCH;

use hdrhistogram::Histogram;
use ringway_core::metrics::{new_histogram, ErrorCause, Latency, TrafficStats};
use ringway_core::tls::Refusal;

use super::merge::{ListenerTotals, Totals};
use super::stats_json::STATUS_CLASSES;
use super::ProcessInfo;

/// Upper bounds (`le`) of the exported latency buckets, in seconds; `+Inf` follows.
pub const BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Histograms record microseconds.
const US_PER_S: f64 = 1_000_000.0;

pub fn render(totals: &Totals, info: &ProcessInfo) -> String {
    let mut out = Out {
        text: String::with_capacity(16 * 1024),
        scratch: new_histogram(),
    };
    process(&mut out, info);
    routes(&mut out, totals);
    upstreams(&mut out, totals);
    listeners(&mut out, totals);
    certificates(&mut out, info);
    out.text.push_str(&totals.protection.prometheus());
    out.text.push_str(&totals.limits.prometheus());
    out.header(
        "ringway_access_log_dropped_lines_total",
        "counter",
        "Access-log lines dropped because the log writer fell behind (shards never wait for it).",
    );
    out.sample(
        "ringway_access_log_dropped_lines_total",
        &[],
        totals.access_log_dropped,
    );
    out.text
}

fn process(out: &mut Out, info: &ProcessInfo) {
    out.header(
        "ringway_config_epoch",
        "gauge",
        "The config epoch the control thread runs.",
    );
    out.sample("ringway_config_epoch", &[], info.epoch);
    out.header(
        "ringway_shards",
        "gauge",
        "Number of shards (event-loop threads).",
    );
    out.sample("ringway_shards", &[], info.shards as u64);
    out.header(
        "ringway_shard_driver",
        "gauge",
        "Always 1; the labels say which I/O driver each shard runs.",
    );
    for (shard, driver) in info.drivers.iter().enumerate() {
        let shard = shard.to_string();
        out.sample(
            "ringway_shard_driver",
            &[("shard", shard.as_str()), ("driver", driver)],
            1,
        );
    }
    out.header(
        "ringway_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
    );
    let started = info
        .started_wall
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    out.sample_f64("ringway_start_time_seconds", &[], started.as_secs_f64());
    out.header(
        "ringway_uptime_seconds",
        "gauge",
        "Seconds since the process started.",
    );
    let uptime = info.started.elapsed().as_secs_f64();
    out.sample_f64("ringway_uptime_seconds", &[], uptime);
    out.header(
        "ringway_reloads_total",
        "counter",
        "Config reloads by result: ok (every shard runs the new epoch) or failed.",
    );
    out.sample(
        "ringway_reloads_total",
        &[("result", "ok")],
        info.reloads_ok,
    );
    out.sample(
        "ringway_reloads_total",
        &[("result", "failed")],
        info.reloads_failed,
    );
    out.header(
        "ringway_draining",
        "gauge",
        "1 while the gateway drains (stops accepting, finishes in-flight requests), else 0.",
    );
    out.sample("ringway_draining", &[], u64::from(info.draining));
}

fn routes(out: &mut Out, totals: &Totals) {
    let routes: Vec<_> = totals.routes_with_unrouted().collect();
    out.header(
        "ringway_requests_total",
        "counter",
        "Requests by route and status class (route _unrouted: matched no route).",
    );
    for (route, stats) in &routes {
        classes(out, "ringway_requests_total", "route", route, stats);
    }
    out.header(
        "ringway_request_errors_total",
        "counter",
        "Failed requests by route and cause.",
    );
    for (route, stats) in &routes {
        errors(out, "ringway_request_errors_total", "route", route, stats);
    }
    out.header(
        "ringway_retries_total",
        "counter",
        "Tries sent again by a route's retry policy, by route.",
    );
    for (route, stats) in &routes {
        out.sample("ringway_retries_total", &[("route", route)], stats.retries);
    }
    out.header(
        "ringway_retries_over_budget_total",
        "counter",
        "Retries the retry policy allowed but the route's retry budget refused, by route.",
    );
    for (route, stats) in &routes {
        out.sample(
            "ringway_retries_over_budget_total",
            &[("route", route)],
            stats.retries_over_budget,
        );
    }
    out.header(
        "ringway_request_bytes_total",
        "counter",
        "Bytes received from clients (in) and sent to them (out), by route.",
    );
    for (route, stats) in &routes {
        bytes(out, "ringway_request_bytes_total", "route", route, stats);
    }
    out.header(
        "ringway_request_duration_seconds",
        "histogram",
        "Request latency by route, from the request head's arrival to the response's last \
         byte. Buckets and _sum come from an HdrHistogram: accurate to its 1% resolution.",
    );
    for (route, stats) in &routes {
        histogram(
            out,
            "ringway_request_duration_seconds",
            ("route", route),
            &stats.total_latency,
        );
    }
}

fn upstreams(out: &mut Out, totals: &Totals) {
    out.header(
        "ringway_upstream_requests_total",
        "counter",
        "Requests sent to an upstream, by upstream and status class of the response sent to \
         the client.",
    );
    for (name, stats) in &totals.upstreams {
        classes(
            out,
            "ringway_upstream_requests_total",
            "upstream",
            name,
            stats,
        );
    }
    out.header(
        "ringway_upstream_errors_total",
        "counter",
        "Failures on the upstream side, by upstream and cause.",
    );
    for (name, stats) in &totals.upstreams {
        errors(
            out,
            "ringway_upstream_errors_total",
            "upstream",
            name,
            stats,
        );
    }
    out.header(
        "ringway_upstream_bytes_total",
        "counter",
        "Bytes received from clients (in) and sent to them (out) for requests sent to an \
         upstream, by upstream.",
    );
    for (name, stats) in &totals.upstreams {
        bytes(out, "ringway_upstream_bytes_total", "upstream", name, stats);
    }
    out.header(
        "ringway_upstream_duration_seconds",
        "histogram",
        "Upstream latency, from forwarding the request to the upstream's response head. \
         Buckets and _sum come from an HdrHistogram: accurate to its 1% resolution.",
    );
    for (name, stats) in &totals.upstreams {
        histogram(
            out,
            "ringway_upstream_duration_seconds",
            ("upstream", name),
            &stats.upstream_latency,
        );
    }
}

fn listeners(out: &mut Out, totals: &Totals) {
    out.header(
        "ringway_connections_open",
        "gauge",
        "Client connections open now, by listener (all shards).",
    );
    for (name, l) in &totals.listeners {
        out.sample("ringway_connections_open", &[("listener", name)], l.open());
    }
    out.header(
        "ringway_connections_accepted_total",
        "counter",
        "Client connections accepted, by listener.",
    );
    for (name, l) in &totals.listeners {
        let labels = [("listener", name.as_str())];
        out.sample("ringway_connections_accepted_total", &labels, l.accepted);
    }
    out.header(
        "ringway_connections_refused_total",
        "counter",
        "Client connections refused with 503 at a shard's max_connections, by listener.",
    );
    for (name, l) in &totals.listeners {
        let labels = [("listener", name.as_str())];
        out.sample("ringway_connections_refused_total", &labels, l.refused);
    }
    out.header(
        "ringway_connections_upgraded_total",
        "counter",
        "Client connections that switched to WebSocket after the upstream's 101, by listener.",
    );
    for (name, l) in &totals.listeners {
        let labels = [("listener", name.as_str())];
        out.sample("ringway_connections_upgraded_total", &labels, l.upgraded);
    }
    out.header(
        "ringway_proxy_protocol_failures_total",
        "counter",
        "Client connections closed for a missing, malformed, late or untrusted PROXY protocol \
         header, by listener (listeners with proxy_protocol only).",
    );
    for (name, l) in &totals.listeners {
        if l.proxy_refused > 0 {
            let labels = [("listener", name.as_str())];
            out.sample(
                "ringway_proxy_protocol_failures_total",
                &labels,
                l.proxy_refused,
            );
        }
    }
    out.header(
        "ringway_tls_handshakes_total",
        "counter",
        "TLS handshakes completed, by listener and whether they resumed a session.",
    );
    // Only listeners that have seen TLS: a plain listener has no such series.
    let tls = |l: &&ListenerTotals| l.tls_handshakes > 0 || l.tls_refused.iter().any(|&n| n > 0);
    for (name, l) in totals.listeners.iter().filter(|(_, l)| tls(l)) {
        let full = l.tls_handshakes - l.tls_resumed.min(l.tls_handshakes);
        let labels = |resumed| [("listener", name.as_str()), ("resumed", resumed)];
        out.sample("ringway_tls_handshakes_total", &labels("false"), full);
        out.sample(
            "ringway_tls_handshakes_total",
            &labels("true"),
            l.tls_resumed,
        );
    }
    out.header(
        "ringway_tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed, by listener and reason (timeout, plain_http, not_tls, \
         closed, client_certificate, certificate_rejected, no_alpn, protocol); only reasons \
         seen at least once.",
    );
    for (name, l) in &totals.listeners {
        for (reason, n) in Refusal::ALL.iter().zip(l.tls_refused) {
            if n > 0 {
                let labels = [("listener", name.as_str()), ("reason", reason.as_str())];
                out.sample("ringway_tls_handshake_failures_total", &labels, n);
            }
        }
    }
}

fn certificates(out: &mut Out, info: &ProcessInfo) {
    out.header(
        "ringway_tls_certificate_expiry_seconds",
        "gauge",
        "When each certificate of the running config expires (notAfter), in seconds since the \
         Unix epoch, by its listener (or upstream, for client certificates), file, subject \
         and names.",
    );
    for c in &info.certificates {
        let names = c.names.join(",");
        let labels = [
            (c.owner_kind, c.owner.as_str()),
            ("file", c.file.as_str()),
            ("subject", c.subject.as_str()),
            ("names", names.as_str()),
        ];
        out.sample_f64(
            "ringway_tls_certificate_expiry_seconds",
            &labels,
            c.not_after as f64,
        );
    }
}

fn classes(out: &mut Out, metric: &str, key: &str, name: &str, stats: &TrafficStats) {
    for (class, n) in STATUS_CLASSES.iter().zip(stats.status_classes) {
        out.sample(metric, &[(key, name), ("class", class)], n);
    }
}

/// Only causes seen at least once: thirteen zero series per route would be mostly noise.
fn errors(out: &mut Out, metric: &str, key: &str, name: &str, stats: &TrafficStats) {
    for (cause, n) in ErrorCause::ALL.iter().zip(stats.errors) {
        if n > 0 {
            out.sample(metric, &[(key, name), ("cause", cause.as_str())], n);
        }
    }
}

fn bytes(out: &mut Out, metric: &str, key: &str, name: &str, stats: &TrafficStats) {
    out.sample(metric, &[(key, name), ("direction", "in")], stats.bytes_in);
    out.sample(
        metric,
        &[(key, name), ("direction", "out")],
        stats.bytes_out,
    );
}

/// Cumulative buckets of a µs HdrHistogram at [`BUCKETS_S`]: the count of recorded values
/// whose HdrHistogram bucket starts at or below each bound.
pub fn cumulative_buckets(h: &Histogram<u64>) -> [u64; BUCKETS_S.len()] {
    let bounds_us = BUCKETS_S.map(|s| (s * US_PER_S).round() as u64);
    let mut counts = [0u64; BUCKETS_S.len()];
    for v in h.iter_recorded() {
        let low = h.lowest_equivalent(v.value_iterated_to());
        let first = bounds_us.partition_point(|&bound| bound < low);
        if let Some(count) = counts.get_mut(first) {
            *count += v.count_at_value();
        }
    }
    let mut running = 0;
    for count in &mut counts {
        running += *count;
        *count = running;
    }
    counts
}

/// The sum of a µs HdrHistogram in seconds, each bucket counted at its median value.
pub fn sum_seconds(h: &Histogram<u64>) -> f64 {
    let sum_us: u128 = h
        .iter_recorded()
        .map(|v| {
            u128::from(h.median_equivalent(v.value_iterated_to())) * u128::from(v.count_at_value())
        })
        .sum();
    sum_us as f64 / US_PER_S
}

fn histogram(out: &mut Out, metric: &str, label: (&str, &str), latency: &Latency) {
    latency.copy_into(&mut out.scratch);
    let h = &out.scratch;
    let bucket = format!("{metric}_bucket");
    let (buckets, len, sum) = (cumulative_buckets(h), h.len(), sum_seconds(h));
    for (le, count) in BUCKETS_S.iter().zip(buckets) {
        let le = le.to_string();
        out.sample(&bucket, &[label, ("le", &le)], count);
    }
    out.sample(&bucket, &[label, ("le", "+Inf")], len);
    out.sample_f64(&format!("{metric}_sum"), &[label], sum);
    out.sample(&format!("{metric}_count"), &[label], len);
}

/// The text being built (writes to a `String` cannot fail), and one full histogram that each
/// route's compact one is copied into for its buckets.
struct Out {
    text: String,
    scratch: Histogram<u64>,
}

impl Out {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        header(&mut self.text, name, kind, help);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        sample(&mut self.text, name, labels, value);
    }

    fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        name_and_labels(&mut self.text, name, labels);
        let _ = writeln!(self.text, " {value}");
    }
}

/// `# HELP` and `# TYPE` lines of a metric (also for the breaker and limit metrics).
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line with its labels.
pub fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    name_and_labels(out, name, labels);
    let _ = writeln!(out, " {value}");
}

fn name_and_labels(out: &mut String, name: &str, labels: &[(&str, &str)]) {
    out.push_str(name);
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (key, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push_str("=\"");
        escape_label_value(out, value);
        out.push('"');
    }
    out.push('}');
}

/// Label values escape backslash, double quote and line feed (format 0.0.4).
pub fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `# HELP` text escapes backslash and line feed (format 0.0.4).
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}
