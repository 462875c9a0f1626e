//! What the `tls*.rs` test files share: an admin listener with a short report interval, a
//! `/metrics` scrape with sample look-ups, `ctl stats` listener counters, polling until the
//! shards' reports arrive, and the access log read back as JSON.
//!
//! Each test file includes this module and uses part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use ringway_tests::{Client, Gateway, Received, Reply};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

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

/// [`ringway_tests::poll_until`] with this file's [`DEADLINE`].
#[track_caller]
pub fn poll<T>(what: &str, check: impl FnMut() -> Result<T, String>) -> T {
    ringway_tests::poll_until(what, DEADLINE, check)
}

/// One sample of the exposition format: metric name, labels, value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub metric: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of a `/metrics` text. Parsed here rather than with prometheus-parse, whose
/// label parser splits at a comma inside a quoted value (a certificate's subject
/// `O=ringway tests,CN=r.test`, its names `a.test,b.test`).
pub type Scrape = Vec<Sample>;

/// `GET /metrics` on the admin listener: the parsed samples and the text.
pub fn scrape(gw: &Gateway) -> (Scrape, String) {
    let mut client = Client::connect(gw.admin_addr());
    let resp = client.request("GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let text = resp.text();
    let samples = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_sample(l).unwrap_or_else(|| panic!("not a sample line: {l:?}")))
        .collect();
    (samples, text)
}

/// `name{key="value",...} number` or `name number`; label values with `\\`, `\"` and `\n`
/// escapes.
fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let metric = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &inner[i + 1..];
                    break;
                }
                ',' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                c => key.push(c),
            }
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        metric,
        labels,
        value,
    })
}

/// The value of the sample `metric` whose labels include `labels`; `None` when absent.
pub fn sample(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .iter()
        .find(|s| {
            s.metric == metric
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
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

#[test]
fn samples_parse_with_commas_and_escapes_in_label_values() {
    let s = parse_sample(
        r#"ringway_x{subject="O=a,CN=b",names="a.test,*.b.test",q="say \"hi\"\\"} 4102444800"#,
    )
    .unwrap();
    assert_eq!(s.metric, "ringway_x");
    assert_eq!(s.labels["subject"], "O=a,CN=b");
    assert_eq!(s.labels["names"], "a.test,*.b.test");
    assert_eq!(s.labels["q"], "say \"hi\"\\");
    assert_eq!(s.value, 4_102_444_800.0);
    let plain = parse_sample("ringway_up 1").unwrap();
    assert!(plain.labels.is_empty() && plain.value == 1.0);
}
