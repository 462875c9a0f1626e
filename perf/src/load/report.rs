//! A load run's output: the human summary, the one-line JSON for scripts, and the
//! HdrHistogram interval log.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use super::stats::Stats;
use super::Interval;

const PERCENTILES: [(&str, f64); 4] =
    [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9)];

pub struct Summary<'a> {
    pub url: &'a str,
    pub connections: u64,
    pub threads: usize,
    pub rate: Option<u64>,
    pub duration: Duration,
    pub warmup: Duration,
    /// Requests per connection before it is closed (None: unlimited, keep-alive).
    pub requests_per_connection: Option<u64>,
    /// `https://`: the handshake counts are printed.
    pub tls: bool,
    /// CPU time of the load generator (all threads) over the run, warm-up included, as a
    /// share of one core: near `threads`, the generator itself was the limit.
    pub busy: Option<f64>,
    pub stats: &'a Stats,
}

impl Summary<'_> {
    fn achieved(&self) -> f64 {
        self.stats.responses as f64 / self.duration.as_secs_f64()
    }

    /// The human summary on stdout; with `json`, the JSON line on stdout and the human
    /// summary on stderr.
    pub fn print(&self, json: bool) {
        if json {
            eprint!("{}", self.human());
            println!("{}", self.json());
        } else {
            print!("{}", self.human());
        }
    }

    pub fn human(&self) -> String {
        let s = self.stats;
        let mode = match self.rate {
            Some(rate) => format!("open loop at {rate} req/s (latency from due time)"),
            None => "closed loop (latency from send)".to_string(),
        };
        let mut out = format!(
            "{}: {} connections, {} thread{}, {}, {:.1}s measured after {:.1}s warm-up\n",
            self.url,
            self.connections,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            mode,
            self.duration.as_secs_f64(),
            self.warmup.as_secs_f64(),
        );
        if let Some(n) = self.requests_per_connection {
            let _ = writeln!(out, "  a new connection every {n} request(s)");
        }
        let _ = writeln!(
            out,
            "  requests  {} ({:.0} req/s), {:.1} MB of bodies",
            s.responses,
            self.achieved(),
            s.body_bytes as f64 / 1e6
        );
        let e = &s.errors;
        let _ = writeln!(
            out,
            "  errors    connect {}, read {}, write {}, timeout {}, tls {}, status {}{}",
            e.connect,
            e.read,
            e.write,
            e.timeout,
            e.tls,
            e.status,
            if self.rate.is_some() {
                format!("; unsent (behind schedule) {}", s.unsent)
            } else {
                String::new()
            }
        );
        if self.tls {
            let _ = writeln!(
                out,
                "  tls       handshakes {:.0}/s: full {}, resumed {}",
                (s.handshakes_full + s.handshakes_resumed) as f64 / self.duration.as_secs_f64(),
                s.handshakes_full,
                s.handshakes_resumed
            );
        }
        if let Some(busy) = self.busy {
            let _ = writeln!(
                out,
                "  cpu       the generator was busy {:.0}% of one core",
                busy * 100.0
            );
        }
        out.push_str("  latency  ");
        for (name, q) in PERCENTILES {
            let _ = write!(
                out,
                " {name} {}",
                micros(s.latency.value_at_quantile(q / 100.0))
            );
        }
        let _ = writeln!(out, " max {}", micros(s.latency.max()));
        out
    }

    pub fn json(&self) -> String {
        let s = self.stats;
        let e = &s.errors;
        let mut out = format!(
            "{{\"url\":{:?},\"mode\":\"{}\",\"rate\":{},\"connections\":{},\"threads\":{},\"duration_s\":{:.3},\"requests\":{},\"requests_total\":{},\"achieved_rps\":{:.1},\"body_bytes\":{},\"unsent\":{},",
            self.url,
            if self.rate.is_some() { "open" } else { "closed" },
            self.rate.map_or("null".to_string(), |r| r.to_string()),
            self.connections,
            self.threads,
            self.duration.as_secs_f64(),
            s.responses,
            s.responses_total,
            self.achieved(),
            s.body_bytes,
            s.unsent,
        );
        let _ = write!(
            out,
            "\"handshakes\":{{\"full\":{},\"resumed\":{}}},\"generator_busy\":{},",
            s.handshakes_full,
            s.handshakes_resumed,
            self.busy.map_or("null".to_string(), |b| format!("{b:.3}"))
        );
        let _ = write!(
            out,
            "\"errors\":{{\"connect\":{},\"read\":{},\"write\":{},\"timeout\":{},\"tls\":{},\"status\":{},\"total\":{}}},\"latency_us\":{{",
            e.connect, e.read, e.write, e.timeout, e.tls, e.status, e.total()
        );
        for (name, q) in PERCENTILES {
            let _ = write!(
                out,
                "\"{name}\":{},",
                s.latency.value_at_quantile(q / 100.0)
            );
        }
        let _ = write!(
            out,
            "\"max\":{},\"mean\":{:.1}}}}}",
            s.latency.max(),
            s.latency.mean()
        );
        out
    }
}

fn micros(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}us"),
        1_000..1_000_000 => format!("{:.2}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

/// Writes the interval log: one histogram per second of the measured window, merged over the
/// threads (each thread sends its own; an interval is written once all `threads` have).
pub fn write_log(
    path: &Path,
    start: SystemTime,
    threads: usize,
    rx: mpsc::Receiver<Interval>,
) -> Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut file = BufWriter::new(file);
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment("ringway-perf load: latency in microseconds")
        .with_start_time(start)
        .with_base_time(start)
        .with_max_value_divisor(1000.0)
        .begin_log_with(&mut file, &mut serializer)
        .context("writing the interval log header")?;
    let mut pending: BTreeMap<u32, (usize, Duration, Histogram<u64>)> = BTreeMap::new();
    let mut write = |index: u32, length: Duration, h: &Histogram<u64>| {
        writer
            .write_histogram(h, Duration::from_secs(u64::from(index)), length, None)
            .map_err(|e| anyhow!("writing the interval log: {e}"))
    };
    for interval in rx {
        let entry = pending
            .entry(interval.index)
            .or_insert_with(|| (0, Duration::ZERO, super::stats::histogram()));
        entry.0 += 1;
        entry.1 = entry.1.max(interval.length);
        entry
            .2
            .add(&interval.latency)
            .expect("histograms share their bounds");
        while let Some(first) = pending.first_entry() {
            if first.get().0 < threads {
                break;
            }
            let (index, (_, length, h)) = first.remove_entry();
            write(index, length, &h)?;
        }
    }
    // Threads that ended early leave partial intervals: write what there is.
    for (index, (_, length, h)) in pending {
        write(index, length, &h)?;
    }
    drop(writer);
    file.flush().context("writing the interval log")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_summary_is_one_line_with_every_field() {
        let mut stats = Stats {
            responses_total: 5,
            ..Stats::default()
        };
        for us in [100, 200, 300, 400] {
            stats.record(us, 200, 10);
        }
        stats.record(900, 500, 0);
        let summary = Summary {
            url: "http://127.0.0.1:1/",
            connections: 2,
            threads: 1,
            rate: Some(10),
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            requests_per_connection: None,
            tls: true,
            busy: Some(0.5),
            stats: &stats,
        };
        let json = summary.json();
        assert!(!json.contains('\n'));
        for field in [
            "\"requests\":5,",
            "\"achieved_rps\":5.0,",
            "\"status\":1,",
            "\"p50\":300,",
            "\"max\":900,",
            "\"mode\":\"open\"",
            "\"handshakes\":{\"full\":0,\"resumed\":0}",
            "\"tls\":0,",
            "\"generator_busy\":0.500,",
        ] {
            assert!(json.contains(field), "{field} in {json}");
        }
        assert!(summary.human().contains("p99.9 900us"));
    }
}
