//! Observability as an operator sees it (DESIGN.md "Observability"): `/metrics` on the admin
//! listener parsed with a real exposition-format parser, `ringway ctl stats`, the HdrHistogram
//! interval log read back with the hdrhistogram crate, and the JSON access log.
//!
//! Shards report to the control thread every `[metrics] interval`, so every check polls with a
//! deadline until the numbers arrive, and fails at once if a number ever overshoots.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use prometheus_parse::{Scrape, Value};
use ringway_tests::{both_drivers, gateway_bin, get, Client, Gateway, TempPath, Upstream};
use serde_json::Value as Json;

/// How long the metrics of a request may take to show: several report intervals.
const DEADLINE: Duration = Duration::from_secs(10);

/// Requests sent to route `a` and route `b` in each test.
const N_A: usize = 7;
const N_B: usize = 5;

/// A gateway config with an admin listener, a short report interval, two routes `a` (`/a...`)
/// and `b` (`/b...`) to one upstream `backend`, and `extra` tables (interval log, access log).
fn config(upstream: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[admin]
listen = "{{admin}}"

{extra}

[[listeners]]
name = "main"
listen = "{{listen}}"

[[upstreams]]
name = "backend"
endpoints = [{{ address = "{upstream}" }}]

[[routes]]
name = "a"
path_prefix = "/a"
upstream = "backend"

[[routes]]
name = "b"
path_prefix = "/b"
upstream = "backend"
"#
    )
}

fn metrics_table(extra: &str) -> String {
    format!("[metrics]\ninterval = \"100ms\"\n{extra}\n")
}

/// `N_A` requests to route `a` and `N_B` to `b`, each on its own connection (so that with
/// several shards the kernel spreads them), each answered 200.
fn send_requests(gw: &Gateway) {
    for (prefix, n) in [("/a", N_A), ("/b", N_B)] {
        for i in 0..n {
            let mut client = Client::connect(gw.addr());
            let resp = client.request(&get("example.com", &format!("{prefix}/item/{i}?q={i}")));
            assert_eq!(resp.status, 200, "{prefix} request {i}");
        }
    }
}

/// [`ringway_tests::poll_until`] with this file's [`DEADLINE`].
#[track_caller]
fn poll<T>(what: &str, check: impl FnMut() -> Result<T, String>) -> T {
    ringway_tests::poll_until(what, DEADLINE, check)
}

/// `GET /metrics` on the admin listener, parsed.
fn scrape(gw: &Gateway) -> (Scrape, String) {
    let mut client = Client::connect(gw.admin_addr());
    let resp = client.request("GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let kind = resp.header("content-type").unwrap_or_default();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let text = resp.text();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    (scrape, text)
}

/// The value of the sample `metric` whose labels include `labels`; `None` when absent.
fn sample(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => panic!("{metric} is a summary"),
        })
}

fn route_count(scrape: &Scrape, route: &str) -> f64 {
    sample(
        scrape,
        "ringway_request_duration_seconds_count",
        &[("route", route)],
    )
    .unwrap_or(0.0)
}

both_drivers!(metrics_count_every_request_across_shards, |driver| {
    let up = Upstream::ok("x");
    let gw = Gateway::start_shards(driver, 2, &config(up.addr(), &metrics_table("")));
    let (before, _) = scrape(&gw);
    let (a0, b0) = (route_count(&before, "a"), route_count(&before, "b"));

    send_requests(&gw);
    let expected = (a0 + N_A as f64, b0 + N_B as f64);
    let (scrape, text) = poll("_count to grow by the requests sent", || {
        let (scrape, text) = scrape(&gw);
        let got = (route_count(&scrape, "a"), route_count(&scrape, "b"));
        assert!(
            got.0 <= expected.0 && got.1 <= expected.1,
            "counted more requests than sent: {got:?} > {expected:?}\n{text}"
        );
        if got == expected {
            Ok((scrape, text))
        } else {
            Err(format!("{got:?}"))
        }
    });

    // Histograms: cumulative buckets, `+Inf` equal to `_count`, `_sum` present.
    for s in &scrape.samples {
        let Value::Histogram(buckets) = &s.value else {
            continue;
        };
        for pair in buckets.windows(2) {
            assert!(pair[0].less_than < pair[1].less_than, "{s:?}");
            assert!(pair[0].count <= pair[1].count, "{s:?}");
        }
        let inf = buckets.last().expect("buckets");
        assert!(inf.less_than.is_infinite(), "{s:?}");
        let (key, name) = s.labels.iter().next().expect("one label");
        let labels = [(key.as_str(), name.as_str())];
        let count = sample(&scrape, &format!("{}_count", s.metric), &labels).expect("_count");
        assert_eq!(inf.count, count, "{s:?}");
        assert!(sample(&scrape, &format!("{}_sum", s.metric), &labels).is_some());
    }
    let two_xx = |route| {
        sample(
            &scrape,
            "ringway_requests_total",
            &[("route", route), ("class", "2xx")],
        )
    };
    assert_eq!(two_xx("a"), Some(N_A as f64));
    assert_eq!(two_xx("b"), Some(N_B as f64));
    let upstream = [("upstream", "backend")];
    assert_eq!(
        sample(
            &scrape,
            "ringway_upstream_duration_seconds_count",
            &upstream
        ),
        Some((N_A + N_B) as f64)
    );
    let accepted = sample(
        &scrape,
        "ringway_connections_accepted_total",
        &[("listener", "main")],
    );
    assert!(accepted.unwrap_or(0.0) >= (N_A + N_B) as f64, "{text}");
    assert_eq!(sample(&scrape, "ringway_shards", &[]), Some(2.0));
    for shard in ["0", "1"] {
        let labels = [("shard", shard), ("driver", driver.as_str())];
        assert_eq!(
            sample(&scrape, "ringway_shard_driver", &labels),
            Some(1.0),
            "{text}"
        );
    }
    assert_eq!(sample(&scrape, "ringway_draining", &[]), Some(0.0));

    // Labels are bounded: names from the config, never the paths requested.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            !line.contains("/item/"),
            "a path leaked into a label: {line}"
        );
    }
    // Counters end in `_total`.
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').expect("# TYPE name kind");
        assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
    }
});

/// `ringway ctl -c CONFIG stats`, parsed; the stats object (the reply may wrap it).
fn ctl_stats(gw: &Gateway) -> Json {
    let out = Command::new(gateway_bin())
        .args(["ctl", "-c"])
        .arg(gw.config_path())
        .arg("stats")
        .output()
        .expect("run ringway ctl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ringway ctl stats: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: Json = serde_json::from_str(&stdout).expect("the reply is JSON");
    assert_eq!(reply["ok"], true, "{reply}");
    match reply.get("stats") {
        Some(stats) => stats.clone(),
        None => reply,
    }
}

/// p50 <= p90 <= p99 <= p99.9 <= max, all positive numbers.
#[track_caller]
fn assert_percentiles(summary: &Json) {
    let values: Vec<f64> = ["p50", "p90", "p99", "p99_9", "max"]
        .iter()
        .map(|key| {
            summary[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{key} missing: {summary}"))
        })
        .collect();
    assert!(values[0] > 0.0, "{summary}");
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "{summary}");
}

both_drivers!(ctl_stats_has_counters_and_percentiles, |driver| {
    let up = Upstream::ok("x");
    let gw = Gateway::start(driver, &config(up.addr(), &metrics_table("")));
    send_requests(&gw);
    let stats = poll("ctl stats to count the requests sent", || {
        let stats = ctl_stats(&gw);
        let got = (
            stats["routes"]["a"]["requests"].as_u64().unwrap_or(0),
            stats["routes"]["b"]["requests"].as_u64().unwrap_or(0),
        );
        assert!(got.0 <= N_A as u64 && got.1 <= N_B as u64, "{stats}");
        if got == (N_A as u64, N_B as u64) {
            Ok(stats)
        } else {
            Err(stats.to_string())
        }
    });
    assert!(stats["epoch"].is_u64(), "{stats}");
    assert!(stats["uptime_s"].is_number(), "{stats}");
    for route in ["a", "b"] {
        let r = &stats["routes"][route];
        assert_eq!(r["status"]["2xx"], r["requests"], "{r}");
        assert!(r["bytes_in"].as_u64().unwrap() > 0, "{r}");
        assert!(r["bytes_out"].as_u64().unwrap() > 0, "{r}");
        assert_percentiles(&r["latency_ms"]);
        assert_percentiles(&r["upstream_latency_ms"]);
    }
    let backend = &stats["upstreams"]["backend"];
    assert_eq!(backend["requests"], (N_A + N_B) as u64, "{backend}");
    assert_percentiles(&backend["upstream_latency_ms"]);
    let main = &stats["listeners"]["main"];
    assert!(
        main["accepted"].as_u64().unwrap() >= (N_A + N_B) as u64,
        "{main}"
    );
    assert!(main["open"].is_u64(), "{main}");
});

both_drivers!(ctl_histograms_decode_with_hdrhistogram, |driver| {
    let up = Upstream::ok("x");
    let gw = Gateway::start(driver, &config(up.addr(), &metrics_table("")));
    send_requests(&gw);
    let decode = |encoded: &Json| -> Histogram<u64> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a base64 string"))
            .expect("valid base64");
        Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .expect("an HdrHistogram V2 histogram")
    };
    let reply = poll("ctl histograms to hold every request", || {
        let reply = gw.ctl(&["histograms"]).expect_ok("ctl histograms");
        let counts = (
            reply["routes"]["a"]["count"].as_u64().unwrap_or(0),
            reply["routes"]["b"]["count"].as_u64().unwrap_or(0),
        );
        if counts == (N_A as u64, N_B as u64) {
            Ok(reply)
        } else {
            Err(reply.to_string())
        }
    });
    assert_eq!(reply["unit"], "microseconds", "{reply}");
    for (route, n) in [("a", N_A), ("b", N_B)] {
        let total = decode(&reply["routes"][route]["total"]);
        let upstream = decode(&reply["routes"][route]["upstream"]);
        assert_eq!(total.len(), n as u64, "route {route}");
        assert_eq!(upstream.len(), n as u64, "route {route}");
        assert!(total.max() >= upstream.min(), "route {route}");
    }
    let backend = decode(&reply["upstreams"]["backend"]["upstream"]);
    assert_eq!(backend.len(), (N_A + N_B) as u64);
});

/// An interval log as read back: whether it has the `StartTime` and `BaseTime` headers, and
/// every interval block as (tag, histogram).
struct IntervalLog {
    has_times: bool,
    blocks: Vec<(String, Histogram<u64>)>,
}

/// `Err` when the log cannot be read or does not parse (yet).
fn read_interval_log(path: &Path) -> Result<IntervalLog, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let (mut start_time, mut base_time) = (false, false);
    let mut blocks = Vec::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(&bytes) {
        match entry.map_err(|e| format!("{e:?}"))? {
            LogEntry::StartTime(_) => start_time = true,
            LogEntry::BaseTime(_) => base_time = true,
            LogEntry::Interval(block) => {
                let encoded = base64::engine::general_purpose::STANDARD
                    .decode(block.encoded_histogram())
                    .map_err(|e| e.to_string())?;
                let histogram: Histogram<u64> = deserializer
                    .deserialize(&mut &encoded[..])
                    .map_err(|e| format!("{e:?}"))?;
                let tag = block.tag().map(|t| t.to_string()).unwrap_or_default();
                blocks.push((tag, histogram));
            }
        }
    }
    Ok(IntervalLog {
        has_times: start_time && base_time,
        blocks,
    })
}

both_drivers!(interval_log_reads_back_with_hdrhistogram, |driver| {
    let up = Upstream::ok("x");
    let log = TempPath::new("hlog");
    let extra = metrics_table(&format!("interval_log = \"{}\"", log.path().display()));
    let gw = Gateway::start_shards(driver, 2, &config(up.addr(), &extra));
    send_requests(&gw);
    let per_route = poll("the interval log to hold every request", || {
        let read = read_interval_log(log.path())?;
        assert!(read.has_times, "no StartTime/BaseTime header");
        let mut per_route: BTreeMap<String, u64> = BTreeMap::new();
        for (tag, histogram) in &read.blocks {
            *per_route.entry(tag.clone()).or_default() += histogram.len();
        }
        let total: u64 = per_route.values().sum();
        assert!(total <= (N_A + N_B) as u64, "more than sent: {per_route:?}");
        if total == (N_A + N_B) as u64 {
            Ok(per_route)
        } else {
            Err(format!("{per_route:?}"))
        }
    });
    let expected: BTreeMap<String, u64> =
        [("a".into(), N_A as u64), ("b".into(), N_B as u64)].into();
    assert_eq!(per_route, expected);
});

/// The fields every access-log line has.
const FIELDS: [&str; 17] = [
    "time",
    "request_id",
    "client",
    "method",
    "host",
    "path",
    "protocol",
    "status",
    "bytes_in",
    "bytes_out",
    "route",
    "upstream",
    "endpoint",
    "duration_ms",
    "upstream_ms",
    "shard",
    "cause",
];

both_drivers!(access_log_has_a_json_line_per_request, |driver| {
    let up = Upstream::ok("x");
    let log = TempPath::new("log");
    let extra = format!("[access_log]\npath = \"{}\"\n", log.path().display());
    let gw = Gateway::start(driver, &config(up.addr(), &extra));

    // Two requests with a tab (a control character) in their client-supplied request id, one
    // with a quote and a backslash in its path, and one refused with 400 for a control
    // character in its path.
    for _ in 0..2 {
        let mut c = Client::connect(gw.addr());
        let resp =
            c.request("GET /a/1 HTTP/1.1\r\nHost: example.com\r\nX-Request-Id: id\t1\r\n\r\n");
        assert_eq!(resp.status, 200);
    }
    let odd_path = r#"/b/q"uote\back?x=1"#;
    let mut c = Client::connect(gw.addr());
    assert_eq!(c.request(&get("example.com", odd_path)).status, 200);
    let mut c = Client::connect(gw.addr());
    let resp = c.request("GET /a/bad\x01path HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(resp.status, 400);

    let lines = poll("four access-log lines", || {
        let text = std::fs::read_to_string(log.path()).map_err(|e| e.to_string())?;
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        assert!(lines.len() <= 4, "more lines than requests:\n{text}");
        if lines.len() == 4 && text.ends_with('\n') {
            Ok(lines)
        } else {
            Err(text)
        }
    });

    let mut entries = Vec::new();
    for line in &lines {
        assert!(
            line.bytes().all(|b| b >= 0x20 && b != 0x7f),
            "a raw control character in {line:?}"
        );
        let entry: Json = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for field in FIELDS {
            assert!(entry.get(field).is_some(), "no {field} in {line}");
        }
        let time = entry["time"].as_str().expect("time");
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "{time}"
        );
        assert!(entry["request_id"].is_string(), "{line}");
        let client = entry["client"].as_str().expect("client");
        assert!(client.starts_with("127.0.0.1:"), "{line}");
        assert_eq!(entry["shard"], 0, "{line}");
        assert!(
            entry["duration_ms"].as_f64().expect("duration_ms") >= 0.0,
            "{line}"
        );
        assert!(
            entry["bytes_in"].is_u64() && entry["bytes_out"].is_u64(),
            "{line}"
        );
        entries.push(entry);
    }

    let proxied: Vec<&Json> = entries.iter().filter(|e| e["status"] == 200).collect();
    assert_eq!(proxied.len(), 3, "{lines:?}");
    for e in &proxied {
        assert_eq!(e["method"], "GET", "{e}");
        assert_eq!(e["host"], "example.com", "{e}");
        assert_eq!(e["upstream"], "backend", "{e}");
        assert_eq!(e["endpoint"], up.addr().to_string(), "{e}");
        assert!(e["cause"].is_null(), "{e}");
        assert!(e["bytes_in"].as_u64().unwrap() > 0, "{e}");
        assert!(e["bytes_out"].as_u64().unwrap() > 0, "{e}");
        assert_eq!(e["protocol"], "HTTP/1.1", "{e}");
        let upstream_ms = e["upstream_ms"].as_f64().expect("upstream_ms");
        assert!(upstream_ms <= e["duration_ms"].as_f64().unwrap(), "{e}");
    }
    let with_id: Vec<&&Json> = proxied.iter().filter(|e| e["route"] == "a").collect();
    assert_eq!(with_id.len(), 2, "{lines:?}");
    for e in with_id {
        assert_eq!(
            e["request_id"], "id\t1",
            "the tab comes back from its escape: {e}"
        );
        assert_eq!(e["path"], "/a/1", "{e}");
    }
    let odd = proxied
        .iter()
        .find(|e| e["route"] == "b")
        .expect("route b's line");
    assert_eq!(odd["path"], odd_path, "{odd}");

    let refused = entries
        .iter()
        .find(|e| e["status"] == 400)
        .expect("the 400's line");
    assert_eq!(refused["cause"], "bad_request", "{refused}");
    assert!(refused["route"].is_null(), "{refused}");
    assert!(refused["upstream"].is_null(), "{refused}");
    assert!(refused["endpoint"].is_null(), "{refused}");
    assert!(refused["upstream_ms"].is_null(), "{refused}");
    assert!(refused["protocol"].is_null(), "{refused}");
    // The refused request line's words are logged escaped: they read back as sent, and the
    // request still gets an id.
    assert_eq!(refused["path"], "/a/bad\u{1}path", "{refused}");
    assert_eq!(refused["method"], "GET", "{refused}");
    assert_eq!(
        refused["request_id"].as_str().map(str::len),
        Some(32),
        "{refused}"
    );
});

both_drivers!(a_reload_that_renames_a_route_drops_its_series, |driver| {
    let up = Upstream::ok("x");
    let toml = config(up.addr(), &metrics_table(""));
    let gw = Gateway::start_shards(driver, 2, &toml);
    send_requests(&gw);
    poll("route b's requests to show", || {
        let (scrape, _) = scrape(&gw);
        match route_count(&scrape, "b") {
            n if n == N_B as f64 => Ok(()),
            n => Err(format!("{n}")),
        }
    });
    // Route b becomes c: same path, new name. Its old series go; a's carry on.
    gw.write_config(&toml.replace("name = \"b\"", "name = \"c\""));
    gw.ctl(&["reload"]).expect_ok("reload renaming b");
    for i in 0..N_B {
        let mut client = Client::connect(gw.addr());
        let resp = client.request(&get("example.com", &format!("/b/{i}")));
        assert_eq!(resp.status, 200, "request {i} after the reload");
    }
    poll("b's series to go and c's to count its requests", || {
        let (scrape, text) = scrape(&gw);
        let b = scrape
            .samples
            .iter()
            .any(|s| s.labels.get("route") == Some("b"));
        let (a, c) = (route_count(&scrape, "a"), route_count(&scrape, "c"));
        if !b && a == N_A as f64 && c == N_B as f64 {
            Ok(())
        } else {
            Err(format!("b present: {b}, a: {a}, c: {c}\n{text}"))
        }
    });
    let stats = gw.ctl(&["stats"]).expect_ok("stats");
    assert!(stats["routes"].get("b").is_none(), "{stats}");
    assert_eq!(stats["routes"]["c"]["requests"], N_B, "{stats}");
});
