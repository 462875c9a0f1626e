//! What the `tls*.rs` test files share: an admin listener with a short report interval, a
//! `/metrics` scrape with sample look-ups, `ctl stats` listener counters, polling until the
//! shards' reports arrive, and the access log read back as JSON.
//!
//! Each test file includes this module and uses part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use prometheus_parse::{Scrape, Value};
use ringway_tests::{Client, Gateway, Received, Reply};
use serde_json::Value as Json;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long counters may take to show: many report intervals of [`OBSERVE`].
pub const DEADLINE: Duration = Duration::from_secs(10);

/// An admin listener on `{admin}` and a 100 ms report interval: `/metrics` and `ctl stats`
/// catch up with the shards quickly.
pub const OBSERVE: &str = "[admin]\nlisten = \"{admin}\"\n\n[metrics]\ninterval = \"100ms\"\n\n";

/// `[access_log]` writing to `path`.
pub fn access_log_toml(path: &Path) -> String {
    format!("[access_log]\npath = \"{}\"\n\n", path.display())
}

/// An upstream handler answering `METHOD TARGET`, so a response names what the upstream got.
pub fn echo(req: &Received) -> Reply {
    Reply::ok(&format!("{} {}", req.method, req.target))
}

/// Polls `check` until it returns `Ok`, panicking with `what` and the last `Err` once
/// [`DEADLINE`] passes.
#[track_caller]
pub fn poll<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        match check() {
            Ok(value) => return value,
            Err(state) if Instant::now() >= end => {
                panic!("timed out after {DEADLINE:?} waiting for {what}; last seen: {state}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// `GET /metrics` on the admin listener: the parsed samples and the text.
pub fn scrape(gw: &Gateway) -> (Scrape, String) {
    let mut client = Client::connect(gw.admin_addr());
    let resp = client.request("GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let text = resp.text();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    (scrape, text)
}

/// The value of the sample `metric` whose labels include `labels`; `None` when absent.
pub fn sample(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{metric} is not a plain sample: {other:?}"),
        })
}

/// One expected sample: metric, labels it must have, value.
pub type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// Polls `/metrics` until every `(metric, labels, value)` reads exactly `value` (an absent
/// sample reads 0); fails at once when one of them is above its value (counted too many).
#[track_caller]
pub fn wait_metrics(gw: &Gateway, expected: &[Expected<'_>]) -> (Scrape, String) {
    poll("the expected /metrics samples", || {
        let (scrape, text) = scrape(gw);
        let mut differs = Vec::new();
        for (metric, labels, want) in expected {
            let got = sample(&scrape, metric, labels).unwrap_or(0.0);
            assert!(
                got <= *want,
                "{metric}{labels:?} is {got}, more than the {want} expected\n{text}"
            );
            if got != *want {
                differs.push(format!("{metric}{labels:?} = {got}, want {want}"));
            }
        }
        if differs.is_empty() {
            Ok((scrape, text))
        } else {
            Err(format!("{differs:?}\n{text}"))
        }
    })
}

/// `ringway ctl stats`: the stats object (the reply may wrap it in `stats`).
pub fn ctl_stats(gw: &Gateway) -> Json {
    let reply = gw.ctl(&["stats"]).expect_ok("ctl stats");
    match reply.get("stats") {
        Some(stats) => stats.clone(),
        None => reply,
    }
}

/// Polls the access log at `path` until it has `count` complete lines, each parsed; fails at
/// once when it has more.
#[track_caller]
pub fn access_log_lines(path: &Path, count: usize) -> Vec<Json> {
    poll(&format!("{count} access-log lines"), || {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() <= count, "more lines than requests:\n{text}");
        if lines.len() < count || !text.ends_with('\n') {
            return Err(text);
        }
        Ok(lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect())
    })
}
