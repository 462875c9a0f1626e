//! Observability on the control thread: merging shard reports, the `stats` JSON, Prometheus
//! text for the admin listener, the HdrHistogram interval log and the access-log writer.
//!
//! Shards record into their own histograms and counters and send deltas ([`ShardReport`]);
//! the [`Observatory`] adds them bucket by bucket into cumulative totals and into the current
//! interval. Percentiles are computed from the merged histograms, never averaged across shards.
//!
//! Threading: the `Observatory` belongs to the control thread (plain `&mut self`, no locks).
//! The access-log writer is its own thread ([`spawn_access_log`]), so that no shard and not the
//! control thread waits on the disk.
//!
//! Errors: a failing interval log or access log is reported with `tracing::warn!` and skipped;
//! observability never stops the gateway.

mod access_log;
mod guards;
mod hlog;
mod limits;
mod merge;
mod prometheus;
mod stats_json;

use std::path::Path;
use std::time::{Instant, SystemTime};

use ringway_core::metrics::ShardReport;

pub use access_log::{spawn_access_log_writer, Reopen};
pub use guards::EndpointHealth;
pub use hlog::HistogramLog;
use merge::Totals;

/// What the daemon knows about the process, for `ringway_*` gauges and `status`.
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    pub epoch: u64,
    pub shards: usize,
    /// "io_uring" or "epoll" per shard, by shard index.
    pub drivers: Vec<&'static str>,
    pub started: Instant,
    pub started_wall: SystemTime,
    pub draining: bool,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// The running config's certificates (listeners' and upstreams' client certificates).
    pub certificates: Vec<CertificateInfo>,
}

/// One certificate the running config serves or presents, for `status` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// `"listener"` or `"upstream"`.
    pub owner_kind: &'static str,
    pub owner: String,
    pub file: String,
    pub subject: String,
    pub names: Vec<String>,
    /// notAfter, seconds since the Unix epoch.
    pub not_after: i64,
}

impl CertificateInfo {
    /// Every certificate of `config`, listeners first, in file order.
    pub fn of(config: &ringway_config::Config) -> Vec<CertificateInfo> {
        let info = |owner_kind, owner: &str, cert: &ringway_config::CertKey| CertificateInfo {
            owner_kind,
            owner: owner.to_owned(),
            file: cert.cert_file.display().to_string(),
            subject: cert.subject.clone(),
            names: cert.names.clone(),
            not_after: cert.not_after,
        };
        let listeners = config.listeners.iter().flat_map(|l| {
            let certs = l
                .tls
                .as_ref()
                .map(|t| t.certificates.as_slice())
                .unwrap_or_default();
            certs.iter().map(|c| info("listener", &l.name, c))
        });
        let upstreams = config.upstreams.iter().filter_map(|u| {
            let cert = u.tls.as_ref()?.client_cert.as_ref()?;
            Some(info("upstream", &u.name, cert))
        });
        listeners.chain(upstreams).collect()
    }
}

/// Cumulative, merged statistics of every shard, keyed by route, upstream and listener name.
#[derive(Default)]
pub struct Observatory {
    /// Everything since the process started.
    totals: Totals,
    /// Since the previous [`Observatory::end_interval`]: what the interval log gets.
    interval: merge::Interval,
    /// Where intervals go, when `[metrics] interval_log` is set.
    log: Option<HistogramLog>,
    log_path: Option<std::path::PathBuf>,
}

impl Observatory {
    /// `interval_log`: where to append HdrHistogram interval logs, if configured.
    pub fn new(interval_log: Option<&std::path::Path>) -> std::io::Result<Observatory> {
        let now = SystemTime::now();
        let log = interval_log
            .map(|path: &Path| HistogramLog::open(path, now))
            .transpose()?;
        Ok(Observatory {
            totals: Totals::default(),
            interval: merge::Interval::new(now),
            log,
            log_path: interval_log.map(Path::to_path_buf),
        })
    }

    /// Closes the interval log and opens its path again, with a new header (log rotation).
    /// Ok(false) when there is no interval log; on error the old file stays in use.
    pub fn reopen_interval_log(&mut self) -> std::io::Result<bool> {
        let Some(path) = &self.log_path else {
            return Ok(false);
        };
        self.log = Some(HistogramLog::open(path, SystemTime::now())?);
        Ok(true)
    }

    /// Merges one shard's report (deltas since its previous report) into the totals and into
    /// the current interval.
    pub fn absorb(&mut self, report: ShardReport) {
        self.interval.absorb(&report);
        self.totals.absorb(report);
    }

    /// Replaces what `stats` and `/metrics` show of active health: per upstream name, its
    /// checked endpoints.
    pub fn set_health(&mut self, health: std::collections::BTreeMap<String, Vec<EndpointHealth>>) {
        self.totals.protection.health = health;
    }

    /// The number of keys with a node bucket, per rate-limited route name, for `stats` and
    /// `/metrics`.
    pub fn set_rate_limit_node_keys(&mut self, keys: &[(String, u64)]) {
        self.totals.limits.set_node_keys(keys);
    }

    /// Shows the limits of `config`'s routes (it is the running config now).
    pub fn follow(&mut self, config: &ringway_config::Config) {
        self.totals.limits.follow(config);
    }

    /// Forgets every route, upstream and listener that none of `epochs` has.
    pub fn forget(&mut self, epochs: Vec<&ringway_core::Epoch>) {
        self.totals.forget(&merge::Live { epochs });
    }

    /// Closes the current interval: writes one interval-log entry per route with traffic.
    pub fn end_interval(&mut self, now: SystemTime) {
        if let Some(log) = &mut self.log {
            if let Err(e) = log.write_interval(&self.interval, now) {
                tracing::warn!(error = %e, "interval log: could not write an interval");
            }
        }
        self.interval.restart(now);
    }

    /// `ringway ctl stats`: counters and p50/p90/p99/p99.9/max per route and per upstream.
    pub fn stats_json(&self, info: &ProcessInfo) -> serde_json::Value {
        stats_json::render(&self.totals, info)
    }

    /// Open connections per listener (from the latest reports), for `status`.
    pub fn open_connections(&self) -> Vec<(String, u64)> {
        self.totals
            .listeners
            .iter()
            .map(|(name, l)| (name.clone(), l.open()))
            .collect()
    }

    /// `ringway ctl histograms`: the merged latency histograms since start, per route and per
    /// upstream, in HdrHistogram's compressed V2 encoding, base64 (what `HistogramLogProcessor`
    /// and the HdrHistogram libraries decode), values in microseconds.
    pub fn histograms_json(&self) -> serde_json::Value {
        use base64::Engine;
        use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
        let encode = |latency: &ringway_core::metrics::Latency| {
            let mut bytes = Vec::new();
            match V2DeflateSerializer::new().serialize(&latency.to_hdr(), &mut bytes) {
                Ok(_) => serde_json::Value::String(
                    base64::engine::general_purpose::STANDARD.encode(bytes),
                ),
                Err(_) => serde_json::Value::Null,
            }
        };
        let routes: serde_json::Map<String, serde_json::Value> = self
            .totals
            .routes_with_unrouted()
            .map(|(name, stats)| {
                let entry = serde_json::json!({
                    "count": stats.total_latency.len(),
                    "total": encode(&stats.total_latency),
                    "upstream": encode(&stats.upstream_latency),
                });
                (name.to_string(), entry)
            })
            .collect();
        let upstreams: serde_json::Map<String, serde_json::Value> = self
            .totals
            .upstreams
            .iter()
            .map(|(name, stats)| {
                let entry = serde_json::json!({
                    "count": stats.upstream_latency.len(),
                    "upstream": encode(&stats.upstream_latency),
                });
                (name.clone(), entry)
            })
            .collect();
        serde_json::json!({
            "unit": "microseconds",
            "encoding": "HdrHistogram V2 compressed, base64",
            "routes": routes,
            "upstreams": upstreams,
        })
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn prometheus(&self, info: &ProcessInfo) -> String {
        prometheus::render(&self.totals, info)
    }

    /// The cumulative totals, as merged so far.
    #[cfg(test)]
    fn totals(&self) -> &Totals {
        &self.totals
    }
}

/// Starts the access-log writer thread appending to `path`; shards send it batches of lines.
///
/// The file is created with mode 0640 if missing and always appended to; the thread writes
/// each batch as it arrives and ends once every sender is dropped. Use
/// [`spawn_access_log_writer`] to also get the thread's handle (to wait for the last batch).
/// Raising the returned flag makes the writer reopen `path` (log rotation).
pub fn spawn_access_log(
    path: &std::path::Path,
) -> std::io::Result<(crossbeam_channel::Sender<Vec<u8>>, Reopen)> {
    spawn_access_log_writer(path).map(|(tx, reopen, _thread)| (tx, reopen))
}

#[cfg(test)]
mod merge_proptests;
#[cfg(test)]
mod tests;
