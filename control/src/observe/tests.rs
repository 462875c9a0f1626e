use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use prometheus_parse::{Scrape, Value};
use ringway_core::metrics::{new_histogram, ErrorCause, ListenerStats, ShardReport, TrafficStats};

use super::merge::UNROUTED;
use super::prometheus::{cumulative_buckets, escape_label_value, sum_seconds, BUCKETS_S};
use super::*;

/// xorshift64*: reproducible "random" values for the property-style tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A latency in µs spread over six orders of magnitude, as real traffic is.
    fn latency_us(&mut self) -> u64 {
        let magnitude = 10u64.pow(self.below(7) as u32);
        1 + self.below(magnitude * 9)
    }
}

/// A file path in the temp dir unique to this test run, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(ext: &str) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("ringway-observe-{}-{n}.{ext}", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&path);
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn info() -> ProcessInfo {
    ProcessInfo {
        epoch: 7,
        shards: 2,
        drivers: vec!["io_uring", "epoll"],
        started: Instant::now() - Duration::from_secs(90),
        started_wall: SystemTime::now() - Duration::from_secs(90),
        draining: false,
        reloads_ok: 3,
        reloads_failed: 1,
        certificates: vec![CertificateInfo {
            owner_kind: "listener",
            owner: "edge".into(),
            file: "/etc/ringway/api.pem".into(),
            subject: "CN=api.example".into(),
            names: vec!["api.example".into(), "*.api.example".into()],
            not_after: 1_800_000_000,
        }],
    }
}

/// `n` requests answered `status` with latencies from `latencies_us`.
fn traffic(status: u16, latencies_us: &[u64]) -> TrafficStats {
    let mut stats = TrafficStats::default();
    for &us in latencies_us {
        stats.requests += 1;
        stats.record_status(status);
        stats.bytes_in += 100;
        stats.bytes_out += 1000;
        stats.total_latency.record(us);
        stats.upstream_latency.record(us / 2 + 1);
    }
    stats
}

fn report(shard: usize, routes: Vec<(&str, TrafficStats)>) -> ShardReport {
    ShardReport {
        shard,
        epoch: 1,
        routes: routes
            .into_iter()
            .map(|(name, stats)| (name.to_string(), stats))
            .collect(),
        ..ShardReport::default()
    }
}

#[test]
fn absorb_sums_counters_and_merges_histograms_by_name() {
    let mut obs = Observatory::new(None).unwrap();
    let fast: Vec<u64> = (1..=1000).collect();
    let slow: Vec<u64> = (1..=1000).map(|us| us * 1000).collect();
    obs.absorb(report(0, vec![("api", traffic(200, &fast))]));
    let mut failed = traffic(502, &slow);
    failed.record_error(ErrorCause::ConnectFailed);
    obs.absorb(report(
        1,
        vec![("api", failed), ("web", traffic(200, &[5]))],
    ));

    let api = &obs.totals().routes["api"];
    assert_eq!(api.requests, 2000);
    assert_eq!(api.status_classes, [0, 1000, 0, 0, 1000]);
    assert_eq!(api.errors[ErrorCause::ConnectFailed as usize], 1);
    assert_eq!(api.bytes_in, 200_000);
    assert_eq!(api.total_latency.len(), 2000);
    // Computed from the merged buckets: the shards' own medians are 500 µs and 500 ms, and
    // their average (250 ms) would be wrong.
    let p50 = api.total_latency.to_hdr().value_at_quantile(0.5);
    assert!((990..=1010).contains(&p50), "p50 {p50}");
    assert_eq!(obs.totals().routes["web"].requests, 1);
}

#[test]
fn merging_random_histograms_equals_recording_every_value_into_one() {
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut obs = Observatory::new(None).unwrap();
        let mut all = new_histogram();
        let reports = 1 + rng.below(12) as usize;
        for i in 0..reports {
            let values: Vec<u64> = (0..rng.below(300)).map(|_| rng.latency_us()).collect();
            for &v in &values {
                all.record(v).unwrap();
            }
            obs.absorb(report(i % 4, vec![("r", traffic(200, &values))]));
        }
        let merged = match obs.totals().routes.get("r") {
            Some(stats) => stats.total_latency.to_hdr(),
            None => {
                assert!(all.is_empty(), "seed {seed}");
                continue;
            }
        };
        assert!(merged == all, "seed {seed}: merged histogram differs");
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                merged.value_at_quantile(q),
                all.value_at_quantile(q),
                "seed {seed} q {q}"
            );
        }
    }
}

#[test]
fn unrouted_requests_show_as_a_route() {
    let mut obs = Observatory::new(None).unwrap();
    let mut r = report(0, vec![]);
    r.unrouted = traffic(400, &[20, 30]);
    r.unrouted.record_error(ErrorCause::BadRequest);
    obs.absorb(r);
    let stats = obs.stats_json(&info());
    let unrouted = &stats["routes"][UNROUTED];
    assert_eq!(unrouted["requests"], 2);
    assert_eq!(unrouted["status"]["4xx"], 2);
    assert_eq!(unrouted["errors"]["bad_request"], 1);
}

#[test]
fn listener_open_is_the_latest_gauge_per_shard_summed() {
    let mut obs = Observatory::new(None).unwrap();
    let listener = |accepted, refused, open| ListenerStats {
        accepted,
        refused,
        open,
        ..Default::default()
    };
    let mut with_listeners = |shard, stats: Vec<(&str, ListenerStats)>| {
        let mut r = report(shard, vec![]);
        r.listeners = stats.into_iter().map(|(n, s)| (n.to_string(), s)).collect();
        obs.absorb(r);
    };
    with_listeners(
        0,
        vec![("main", listener(5, 0, 3)), ("alt", listener(1, 0, 1))],
    );
    with_listeners(1, vec![("main", listener(4, 2, 2))]);
    with_listeners(
        0,
        vec![("main", listener(1, 0, 1)), ("alt", listener(0, 0, 0))],
    );
    assert_eq!(
        obs.open_connections(),
        vec![("alt".to_string(), 0), ("main".to_string(), 3)]
    );
    let main = &obs.totals().listeners["main"];
    assert_eq!((main.accepted, main.refused), (10, 2));
    let stats = obs.stats_json(&info());
    assert_eq!(
        stats["listeners"]["main"],
        serde_json::json!({"open": 3, "accepted": 10, "refused": 2, "upgraded": 0})
    );
}

#[test]
fn stats_json_has_counters_and_percentiles() {
    let mut obs = Observatory::new(None).unwrap();
    let values: Vec<u64> = (1..=10_000).collect();
    let mut upstream = traffic(200, &[]);
    upstream.requests = 3;
    upstream.upstream_latency.record(2000);
    let mut r = report(0, vec![("api", traffic(200, &values))]);
    r.upstreams = vec![("backend".to_string(), upstream)];
    obs.absorb(r);
    let stats = obs.stats_json(&info());
    assert_eq!(stats["epoch"], 7);
    assert!(stats["uptime_s"].as_u64().unwrap() >= 90);
    let api = &stats["routes"]["api"];
    assert_eq!(api["requests"], 10_000);
    assert_eq!(
        api["status"],
        serde_json::json!({"1xx": 0, "2xx": 10_000, "3xx": 0, "4xx": 0, "5xx": 0})
    );
    assert_eq!(api["errors"], serde_json::json!({}));
    assert_eq!(api["bytes_in"], 1_000_000);
    assert_eq!(api["bytes_out"], 10_000_000);
    let latency = &api["latency_ms"];
    for (key, expected_ms) in [
        ("p50", 5.0),
        ("p90", 9.0),
        ("p99", 9.9),
        ("p99_9", 9.99),
        ("max", 10.0),
    ] {
        let got = latency[key].as_f64().unwrap();
        // The histogram's resolution is 1%.
        assert!(
            (got - expected_ms).abs() <= expected_ms * 0.01,
            "{key}: {got} ms, expected {expected_ms}"
        );
    }
    assert!(api["upstream_latency_ms"]["p50"].as_f64().unwrap() > 2.0);
    let backend = &stats["upstreams"]["backend"];
    assert_eq!(backend["requests"], 3);
    assert!(backend["latency_ms"].is_null(), "{backend}");
    let p99 = backend["upstream_latency_ms"]["p99"].as_f64().unwrap();
    assert!((1.98..=2.02).contains(&p99), "{p99}");
}

#[test]
fn cumulative_buckets_count_each_value_once_at_its_bound() {
    let mut h = new_histogram();
    for us in [100, 400, 700, 1000, 3_000, 60_000, 2_000_000, 30_000_000] {
        h.record(us).unwrap();
    }
    let buckets = cumulative_buckets(&h);
    // 0.5ms 1ms 2.5ms 5ms 10ms 25ms 50ms 100ms 250ms 500ms 1s 2.5s 5s 10s
    assert_eq!(buckets, [2, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7]);
    let sum = sum_seconds(&h);
    let exact = 32.065_2;
    assert!((sum - exact).abs() < exact * 0.01, "{sum}");
    assert_eq!(cumulative_buckets(&new_histogram()), [0; BUCKETS_S.len()]);
}

#[test]
fn label_values_are_escaped() {
    let mut out = String::new();
    escape_label_value(&mut out, "a\\b\"c\nd");
    assert_eq!(out, r#"a\\b\"c\nd"#);
}

/// Checks one line of the text format strictly: `# HELP name text`, `# TYPE name type`, or
/// `name{label="value",...} value` with only the escapes the format allows.
fn check_line(line: &str) {
    let is_name = |s: &str| {
        !s.is_empty()
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    if let Some(rest) = line.strip_prefix("# HELP ") {
        let (name, _) = rest.split_once(' ').expect(line);
        assert!(is_name(name), "{line}");
        return;
    }
    if let Some(rest) = line.strip_prefix("# TYPE ") {
        let (name, kind) = rest.split_once(' ').expect(line);
        assert!(is_name(name), "{line}");
        assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
        return;
    }
    let (series, value) = line.rsplit_once(' ').expect(line);
    assert!(
        value == "+Inf" || value.parse::<f64>().is_ok_and(f64::is_finite),
        "{line}"
    );
    let Some((name, labels)) = series.split_once('{') else {
        assert!(is_name(series), "{line}");
        return;
    };
    assert!(is_name(name), "{line}");
    let mut rest = labels.strip_suffix('}').expect(line);
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect(line);
        assert!(is_name(key), "{line}");
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect(line) {
                (_, '\\') => assert!(
                    matches!(chars.next(), Some((_, '\\' | '"' | 'n'))),
                    "{line}"
                ),
                (i, '"') => break i,
                (_, '\n') => panic!("raw newline in {line}"),
                _ => {}
            }
        };
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn busy_observatory() -> Observatory {
    let mut obs = Observatory::new(None).unwrap();
    let mut rng = Rng(42);
    for shard in 0..2 {
        let values: Vec<u64> = (0..500).map(|_| rng.latency_us()).collect();
        let mut api = traffic(200, &values);
        api.record_error(ErrorCause::UpstreamTimeout);
        let mut r = report(
            shard,
            vec![("api", api), ("web.v2", traffic(404, &[80, 90]))],
        );
        r.upstreams = vec![("backend".to_string(), traffic(200, &values[..100]))];
        r.listeners = vec![(
            "main".to_string(),
            ListenerStats {
                accepted: 10,
                refused: 1,
                open: 4,
                ..Default::default()
            },
        )];
        r.unrouted = traffic(400, &[15]);
        obs.absorb(r);
    }
    obs
}

#[test]
fn prometheus_text_parses_with_consistent_histograms() {
    let obs = busy_observatory();
    let text = obs.prometheus(&info());
    for line in text.lines() {
        check_line(line);
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();

    let find = |metric: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {metric} {labels:?} in\n{text}"))
    };
    let counter = |metric: &str, labels: &[(&str, &str)]| match find(metric, labels).value {
        Value::Counter(v) => v,
        ref other => panic!("{metric} is not a counter: {other:?}"),
    };
    let gauge = |metric: &str, labels: &[(&str, &str)]| match find(metric, labels).value {
        Value::Gauge(v) => v,
        ref other => panic!("{metric} is not a gauge: {other:?}"),
    };
    let untyped = |metric: &str, labels: &[(&str, &str)]| match find(metric, labels).value {
        Value::Untyped(v) => v,
        ref other => panic!("{metric}: {other:?}"),
    };

    assert_eq!(
        counter(
            "ringway_requests_total",
            &[("route", "api"), ("class", "2xx")]
        ),
        1000.0
    );
    assert_eq!(
        counter(
            "ringway_requests_total",
            &[("route", "api"), ("class", "5xx")]
        ),
        0.0
    );
    assert_eq!(
        counter(
            "ringway_requests_total",
            &[("route", "web.v2"), ("class", "4xx")]
        ),
        4.0
    );
    assert_eq!(
        counter(
            "ringway_requests_total",
            &[("route", "_unrouted"), ("class", "4xx")]
        ),
        2.0
    );
    let timeouts = [("route", "api"), ("cause", "upstream_timeout")];
    assert_eq!(counter("ringway_request_errors_total", &timeouts), 2.0);
    let bytes_in = [("route", "api"), ("direction", "in")];
    assert_eq!(counter("ringway_request_bytes_total", &bytes_in), 100_000.0);
    let upstream_2xx = [("upstream", "backend"), ("class", "2xx")];
    assert_eq!(
        counter("ringway_upstream_requests_total", &upstream_2xx),
        200.0
    );
    assert_eq!(
        gauge("ringway_connections_open", &[("listener", "main")]),
        8.0
    );
    assert_eq!(
        counter(
            "ringway_connections_accepted_total",
            &[("listener", "main")]
        ),
        20.0
    );
    assert_eq!(
        counter("ringway_connections_refused_total", &[("listener", "main")]),
        2.0
    );
    assert_eq!(gauge("ringway_config_epoch", &[]), 7.0);
    assert_eq!(gauge("ringway_shards", &[]), 2.0);
    assert_eq!(
        gauge(
            "ringway_shard_driver",
            &[("shard", "1"), ("driver", "epoll")]
        ),
        1.0
    );
    assert!(gauge("ringway_uptime_seconds", &[]) >= 90.0);
    assert_eq!(counter("ringway_reloads_total", &[("result", "ok")]), 3.0);
    assert_eq!(
        counter("ringway_reloads_total", &[("result", "failed")]),
        1.0
    );
    assert_eq!(gauge("ringway_draining", &[]), 0.0);

    // Every histogram: cumulative buckets in increasing `le`, `+Inf` last and equal to
    // `_count`, which equals the requests counted.
    let mut histograms = 0;
    for sample in &scrape.samples {
        let Value::Histogram(buckets) = &sample.value else {
            continue;
        };
        histograms += 1;
        assert_eq!(buckets.len(), BUCKETS_S.len() + 1, "{sample:?}");
        for pair in buckets.windows(2) {
            assert!(pair[0].less_than < pair[1].less_than, "{sample:?}");
            assert!(pair[0].count <= pair[1].count, "{sample:?}");
        }
        let inf = buckets.last().unwrap();
        assert!(inf.less_than.is_infinite(), "{sample:?}");
        let (key, name) = sample.labels.iter().next().unwrap();
        let labels = [(key.as_str(), name.as_str())];
        let count = untyped(&format!("{}_count", sample.metric), &labels);
        assert_eq!(inf.count, count, "{sample:?}");
        let sum = untyped(&format!("{}_sum", sample.metric), &labels);
        assert!(
            sum >= 0.0 && (count == 0.0) == (sum == 0.0),
            "{sample:?} sum {sum}"
        );
        if sample.metric == "ringway_request_duration_seconds" {
            let requests: f64 = ["1xx", "2xx", "3xx", "4xx", "5xx"]
                .iter()
                .map(|class| counter("ringway_requests_total", &[(key, name), ("class", class)]))
                .sum();
            assert_eq!(count, requests, "{name}");
        }
    }
    // api, web.v2, _unrouted and the upstream backend.
    assert_eq!(histograms, 4);

    // Each metric family is typed exactly once, counters end in `_total`.
    let mut types = BTreeMap::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').unwrap();
        assert!(types.insert(name, kind).is_none(), "{name} typed twice");
        assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
    }
}

#[test]
fn prometheus_lists_every_family_even_without_traffic() {
    let obs = Observatory::new(None).unwrap();
    let text = obs.prometheus(&ProcessInfo {
        draining: true,
        ..info()
    });
    for line in text.lines() {
        check_line(line);
    }
    for family in [
        "ringway_requests_total",
        "ringway_request_errors_total",
        "ringway_request_bytes_total",
        "ringway_request_duration_seconds",
        "ringway_upstream_requests_total",
        "ringway_upstream_errors_total",
        "ringway_upstream_duration_seconds",
        "ringway_connections_open",
        "ringway_connections_accepted_total",
        "ringway_connections_refused_total",
        "ringway_config_epoch",
        "ringway_shards",
        "ringway_shard_driver",
        "ringway_uptime_seconds",
        "ringway_reloads_total",
        "ringway_draining",
    ] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
    }
    assert!(text.contains("\nringway_draining 1\n"));
    assert!(text.contains("ringway_request_duration_seconds_count{route=\"_unrouted\"} 0\n"));
}

/// One interval block read back from an interval log.
struct Block {
    tag: String,
    /// Seconds since `BaseTime`.
    start_s: f64,
    length_s: f64,
    histogram: Histogram<u64>,
}

/// The number of headers (`BaseTime` lines) and every interval block of an interval log.
fn read_interval_log(bytes: &[u8]) -> (usize, Vec<Block>) {
    let mut headers = 0;
    let mut blocks = Vec::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(bytes) {
        match entry.expect("a well-formed interval log") {
            LogEntry::StartTime(_) => {}
            LogEntry::BaseTime(_) => headers += 1,
            LogEntry::Interval(block) => {
                let encoded = base64::engine::general_purpose::STANDARD
                    .decode(block.encoded_histogram())
                    .unwrap();
                let histogram: Histogram<u64> =
                    deserializer.deserialize(&mut &encoded[..]).unwrap();
                blocks.push(Block {
                    tag: block.tag().expect("every block is tagged").to_string(),
                    start_s: block.start_timestamp().as_secs_f64(),
                    length_s: block.duration().as_secs_f64(),
                    histogram,
                });
            }
        }
    }
    (headers, blocks)
}

#[test]
fn interval_log_reads_back_with_the_hdrhistogram_crate() {
    let file = TempFile::new("hlog");
    let mut obs = Observatory::new(Some(&file.0)).unwrap();
    let start = SystemTime::now();
    let text = std::fs::read_to_string(&file.0).unwrap();
    assert!(text.contains("#[StartTime: "), "{text}");
    assert!(text.contains("#[BaseTime: "), "{text}");
    assert!(
        text.contains("\"StartTimestamp\",\"Interval_Length\""),
        "{text}"
    );

    // Interval 1: two routes on two shards. Interval 2: only one route. Interval 3: nothing.
    obs.absorb(report(0, vec![("api", traffic(200, &[100, 200, 300]))]));
    obs.absorb(report(
        1,
        vec![("api", traffic(200, &[400])), ("web", traffic(200, &[7]))],
    ));
    obs.end_interval(start + Duration::from_secs(5));
    let mut r = report(0, vec![("web", traffic(200, &[9, 10]))]);
    r.unrouted = traffic(400, &[3]);
    obs.absorb(r);
    obs.end_interval(start + Duration::from_secs(10));
    obs.end_interval(start + Duration::from_secs(15));

    let (headers, blocks) = read_interval_log(&std::fs::read(&file.0).unwrap());
    assert_eq!(headers, 1);
    let summary: Vec<(&str, u64)> = blocks
        .iter()
        .map(|b| (b.tag.as_str(), b.histogram.len()))
        .collect();
    assert_eq!(
        summary,
        [("api", 4), ("web", 1), ("_unrouted", 1), ("web", 2)]
    );
    // Timestamps are seconds since BaseTime; the first interval started when the log opened.
    let api = &blocks[0];
    assert!(api.start_s < 1.0, "{}", api.start_s);
    assert!((4.0..=5.1).contains(&api.length_s), "{}", api.length_s);
    assert_eq!(api.histogram.max(), api.histogram.highest_equivalent(400));
    let web = &blocks[3];
    assert!((4.0..=5.1).contains(&web.start_s), "{}", web.start_s);
    assert!((4.9..=5.1).contains(&web.length_s), "{}", web.length_s);

    // Totals are untouched by the intervals.
    assert_eq!(obs.totals().routes["api"].total_latency.len(), 4);

    // A second process appends its own header and blocks to the same file.
    drop(obs);
    let mut obs = Observatory::new(Some(&file.0)).unwrap();
    obs.absorb(report(0, vec![("api", traffic(200, &[1, 2]))]));
    obs.end_interval(SystemTime::now());
    let (headers, blocks) = read_interval_log(&std::fs::read(&file.0).unwrap());
    assert_eq!(headers, 2);
    assert_eq!(blocks.len(), 5);
    assert_eq!(blocks[4].histogram.len(), 2);
}

#[test]
fn interval_log_cannot_open_is_an_error() {
    let dir = TempFile::new("missing-dir");
    let path = dir.0.join("log.hlog");
    assert!(Observatory::new(Some(&path)).is_err());
}

#[test]
fn access_log_appends_batches_until_every_sender_is_dropped() {
    use std::os::unix::fs::PermissionsExt;

    let file = TempFile::new("log");
    std::fs::write(&file.0, "{\"earlier\":true}\n").unwrap();
    std::fs::set_permissions(&file.0, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (tx, _reopen, thread) = spawn_access_log_writer(&file.0).unwrap();
    let tx2 = tx.clone();
    let shard = std::thread::spawn(move || {
        for i in 0..50 {
            tx2.send(format!("{{\"shard\":1,\"n\":{i}}}\n").into_bytes())
                .unwrap();
        }
    });
    tx.send(b"{\"shard\":0,\"n\":0}\n{\"shard\":0,\"n\":1}\n".to_vec())
        .unwrap();
    shard.join().unwrap();
    drop(tx);
    thread.join().unwrap();
    let text = std::fs::read_to_string(&file.0).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 53, "{text}");
    assert_eq!(lines[0], "{\"earlier\":true}");
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
    // Each batch is written whole: shard 0's two lines stay together.
    let first = lines
        .iter()
        .position(|l| l.contains("\"shard\":0"))
        .unwrap();
    assert_eq!(lines[first + 1], "{\"shard\":0,\"n\":1}");
}

#[test]
fn access_log_is_created_0640() {
    use std::os::unix::fs::PermissionsExt;

    let file = TempFile::new("log");
    let (tx, _reopen) = spawn_access_log(&file.0).unwrap();
    drop(tx);
    let mode = std::fs::metadata(&file.0).unwrap().permissions().mode() & 0o777;
    // 0640, less whatever the umask takes away; never more.
    assert_eq!(mode & !0o640, 0, "{mode:o}");
    assert_eq!(mode & 0o600, 0o600, "{mode:o}");
}

#[test]
fn access_log_in_a_missing_directory_is_an_error() {
    let dir = TempFile::new("missing-dir");
    assert!(spawn_access_log(&dir.0.join("access.log")).is_err());
}

#[test]
fn access_log_reopens_its_path_on_request() {
    let file = TempFile::new("log");
    let (tx, reopen, thread) = spawn_access_log_writer(&file.0).unwrap();
    tx.send(b"{\"n\":1}\n".to_vec()).unwrap();
    let rotated = file.0.with_extension("1");
    // Wait for the first line, then move the file away as logrotate does.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::read_to_string(&file.0)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(std::time::Instant::now() < end, "first line never written");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::fs::rename(&file.0, &rotated).unwrap();
    reopen.store(true, std::sync::atomic::Ordering::SeqCst);
    // Without traffic the writer reopens within its check period: the new file appears.
    while !file.0.exists() {
        assert!(std::time::Instant::now() < end, "the path was not reopened");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    tx.send(b"{\"n\":2}\n".to_vec()).unwrap();
    drop(tx);
    thread.join().unwrap();
    assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "{\"n\":1}\n");
    assert_eq!(std::fs::read_to_string(&file.0).unwrap(), "{\"n\":2}\n");
    let _ = std::fs::remove_file(&rotated);
}
