//! The control loop: owns the current epoch, knows which epoch each shard runs, absorbs the
//! shards' reports into the [`Observatory`], and answers one [`Request`] at a time.
//!
//! Waiting (for acknowledgements after a reload, for reports after a flush) happens inside
//! the loop, with a deadline, while it keeps absorbing every shard event: a shard is never
//! left blocked on a full event channel, and requests queue behind the one in progress.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{select, Receiver};
use ringway_core::{Epoch, FromShard, ShardInfo, ShardLink, ShardSet, ToShard};
use serde_json::{json, Value};

use super::health::{HealthChecker, Probe};
use super::names::{Found, Names};
use super::notify::Notifier;
use super::quota::Quota;
use super::{config_view, reload, Command, Request};
use crate::observe::{CertificateInfo, Observatory, ProcessInfo};

/// How long a flush round waits for every shard's report.
const FLUSH_DEADLINE: Duration = Duration::from_millis(500);
/// After a drain's timeout, how long shards get to report that they stopped before they are
/// told to stop now, and after a stop, before the process exits regardless.
const STOP_GRACE: Duration = Duration::from_secs(3);

pub struct Parts {
    pub path: Option<PathBuf>,
    pub epoch: Arc<Epoch>,
    pub set: ShardSet,
    pub events: Receiver<FromShard>,
    pub commands: Receiver<Request>,
    pub info: ProcessInfo,
    pub observatory: Observatory,
    pub notifier: Notifier,
    pub draining: Arc<AtomicBool>,
    /// Raised to make the access-log writer reopen its file; `None` without an access log.
    pub access_log_reopen: Option<crate::observe::Reopen>,
    pub background: super::background::Background,
}

/// What the process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Shards drain; past `deadline` they are told to stop.
    Draining {
        deadline: Instant,
    },
    /// Shards were told to stop; past `deadline` the process exits anyway.
    Stopping {
        deadline: Instant,
    },
}

/// What the loop knows about one shard.
struct ShardState {
    info: ShardInfo,
    link: ShardLink,
    /// The epoch it acknowledged last without error.
    epoch: u64,
    /// The last acknowledgement: epoch and error, for a reload to wait on.
    last_ack: Option<(u64, Option<String>)>,
    /// Reports received so far, for a flush round to wait on.
    reports: u64,
    stopped: bool,
}

pub struct Control {
    path: Option<PathBuf>,
    current: Arc<Epoch>,
    /// Epochs replaced by a reload, kept here until no shard request holds them, so that
    /// the last reference (and the heavy free of a route table) is this thread's, never a
    /// shard's.
    retired: Vec<Arc<Epoch>>,
    /// A large reply (stats, metrics, histograms) was built since the last tick: its memory
    /// goes back to the system at the next one (see `tick`).
    trim_due: bool,
    /// Where configs are loaded and old epochs freed, at idle priority.
    background: super::background::Background,
    next_epoch: u64,
    shards: Vec<ShardState>,
    set: ShardSet,
    events: Receiver<FromShard>,
    commands: Receiver<Request>,
    info: ProcessInfo,
    observatory: Observatory,
    notifier: Notifier,
    draining: Arc<AtomicBool>,
    access_log_reopen: Option<crate::observe::Reopen>,
    phase: Phase,
    /// Active health checks of the current config's upstreams.
    health: HealthChecker,
    health_results: Receiver<Probe>,
    /// Shards still owed the latest health table (their inbox was too full for it).
    health_owed: Vec<usize>,
    /// The node's rate-limit buckets, leased to shards.
    quota: Quota,
    /// The endpoint names the current config follows, and their latest lookups.
    names: Names,
    names_found: Receiver<Found>,
}

impl Control {
    pub fn new(mut parts: Parts) -> Control {
        let links = std::mem::take(&mut parts.set.links);
        let shards = parts
            .set
            .shards
            .iter()
            .cloned()
            .zip(links)
            .map(|(info, link)| ShardState {
                info,
                link,
                epoch: parts.epoch.id,
                last_ack: None,
                reports: 0,
                stopped: false,
            })
            .collect();
        let quota = Quota::new(&parts.epoch, parts.set.shards.len());
        let health = HealthChecker::new(&parts.epoch.config);
        let health_results = health.results();
        let names = Names::new(&parts.epoch.config);
        let names_found = names.found();
        let mut observatory = parts.observatory;
        observatory.follow(&parts.epoch.config);
        Control {
            retired: Vec::new(),
            trim_due: false,
            background: parts.background,
            health,
            health_results,
            health_owed: Vec::new(),
            path: parts.path,
            next_epoch: parts.epoch.id + 1,
            current: parts.epoch,
            shards,
            set: parts.set,
            events: parts.events,
            commands: parts.commands,
            info: parts.info,
            observatory,
            notifier: parts.notifier,
            draining: parts.draining,
            access_log_reopen: parts.access_log_reopen,
            phase: Phase::Serving,
            quota,
            names,
            names_found,
        }
    }

    /// Runs until every shard has stopped (after a drain or a stop); the process's exit code.
    pub fn run(mut self) -> ExitCode {
        // `[metrics] interval` as the gateway started; a reload that changes it warns.
        let ticker = crossbeam_channel::tick(self.current.config.metrics.interval);
        while !self.shards.iter().all(|s| s.stopped) {
            select! {
                recv(self.commands) -> request => {
                    if let Ok(request) = request {
                        self.handle(request);
                    }
                }
                recv(self.events) -> event => {
                    if let Ok(event) = event {
                        self.event(event);
                    }
                }
                recv(self.health_results) -> probe => {
                    if let Ok(probe) = probe {
                        if self.health.absorb(probe) {
                            self.health_owed = (0..self.shards.len()).collect();
                        }
                    }
                }
                recv(self.names_found) -> found => {
                    if let Ok(found) = found {
                        self.resolved(found);
                    }
                }
                recv(ticker) -> _ => self.tick(),
                default(Duration::from_millis(100)) => {}
            }
            if !self.health_owed.is_empty() {
                self.send_health();
            }
            if !self.check_deadlines() {
                break;
            }
        }
        // One last round of whatever the shards sent before they stopped.
        while let Ok(event) = self.events.try_recv() {
            self.event(event);
        }
        self.observatory.end_interval(SystemTime::now());
        if self.shards.iter().all(|s| s.stopped) {
            self.set.join();
        }
        tracing::info!("ringway stopped");
        ExitCode::SUCCESS
    }

    /// Moves a drain past its timeout to a stop; false when the process should exit now.
    fn check_deadlines(&mut self) -> bool {
        let now = Instant::now();
        match self.phase {
            Phase::Serving => true,
            Phase::Draining { deadline } if now >= deadline => {
                tracing::warn!("shards did not finish draining in time: stopping them");
                self.stop_shards();
                true
            }
            Phase::Draining { .. } => true,
            Phase::Stopping { deadline } if now >= deadline => {
                let left: Vec<usize> = self
                    .shards
                    .iter()
                    .filter(|s| !s.stopped)
                    .map(|s| s.info.index)
                    .collect();
                tracing::error!(?left, "shards did not stop in time: exiting anyway");
                false
            }
            Phase::Stopping { .. } => true,
        }
    }

    fn event(&mut self, event: FromShard) {
        match event {
            FromShard::Ack {
                shard,
                epoch,
                error,
            } => {
                if let Some(s) = self.shards.get_mut(shard) {
                    if error.is_none() {
                        s.epoch = epoch;
                    }
                    s.last_ack = Some((epoch, error));
                }
            }
            FromShard::Report(report) => {
                if let Some(s) = self.shards.get_mut(report.shard) {
                    s.reports += 1;
                }
                self.observatory.absorb(*report);
            }
            FromShard::Stopped { shard } => {
                tracing::info!(shard, "shard stopped");
                if let Some(s) = self.shards.get_mut(shard) {
                    s.stopped = true;
                }
            }
            FromShard::Lease { shard, asks } => self.quota.absorb(shard, &asks),
        }
        // Grants go out once the events queued now are handled (one message per shard for a
        // burst of asks), or sooner when many are waiting.
        if self.quota.has_grants() && (self.events.is_empty() || self.quota.many_grants()) {
            self.send_grants();
        }
    }

    /// Sends the queued lease grants, one message per shard. A grant that cannot be sent
    /// (the shard is gone, or its inbox is nearly full and must keep room for epochs) gives
    /// its tokens back to the node's buckets.
    fn send_grants(&mut self) {
        for (shard, grants) in self.quota.take_grants() {
            let Some(s) = self.shards.get(shard) else {
                continue;
            };
            if s.stopped || s.link.queued() >= ShardLink::RESERVED {
                self.quota.undo(&grants);
            } else {
                s.link.send(ToShard::Lease(grants));
            }
        }
    }

    /// Sends the latest active health table to the shards that are owed it. One whose inbox is
    /// too full (it must keep room for epochs) stays owed, for the next turn of the loop; a
    /// newer table replaces an undelivered one.
    fn send_health(&mut self) {
        let table = self.health.table();
        let shards = &self.shards;
        self.health_owed.retain(|&i| {
            let Some(s) = shards.get(i) else {
                return false;
            };
            if s.stopped {
                return false;
            }
            s.link.queued() >= ShardLink::RESERVED || !s.link.send(ToShard::Health(table.clone()))
        });
    }

    /// Handles events until `done` holds or `deadline` passes; true when `done` held.
    fn pump_until(&mut self, deadline: Instant, done: impl Fn(&Control) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            match self.events.recv_deadline(deadline) {
                Ok(event) => self.event(event),
                Err(_) => return done(self),
            }
        }
    }

    /// Asks every running shard for a report and waits for them (at most [`FLUSH_DEADLINE`]).
    fn flush_round(&mut self) {
        let mut waiting = Vec::new();
        for s in &self.shards {
            if !s.stopped && s.link.send(ToShard::Flush) {
                waiting.push((s.info.index, s.reports));
            }
        }
        let done = |c: &Control| {
            waiting
                .iter()
                .all(|&(i, before)| c.shards[i].reports > before || c.shards[i].stopped)
        };
        if !self.pump_until(Instant::now() + FLUSH_DEADLINE, done) {
            tracing::debug!("a flush round ended without every shard's report");
        }
        self.observatory
            .set_rate_limit_node_keys(&self.quota.keys());
    }

    fn tick(&mut self) {
        self.flush_round();
        self.observatory.end_interval(SystemTime::now());
        self.free_retired();
        // With 10,000 routes, `stats` and `/metrics` build replies of megabytes: once sent
        // and freed, the allocator would keep that peak resident.
        if std::mem::take(&mut self.trim_due) {
            self.background
                .spawn(ringway_core::sys::release_free_memory);
        }
    }

    /// Drops the retired epochs that no shard holds any more (here, off the shards), then
    /// the statistics of names that no epoch still in use has. A shard's report follows the
    /// end of every request it counts, and this runs after a whole flush round.
    fn free_retired(&mut self) {
        let (held, free): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|epoch| Arc::strong_count(epoch) > 1);
        self.retired = held;
        if !free.is_empty() {
            self.background.spawn(move || {
                drop(free);
                ringway_core::sys::release_free_memory();
            });
        }
        let epochs = std::iter::once(&*self.current)
            .chain(self.retired.iter().map(|e| &**e))
            .collect();
        self.observatory.forget(epochs);
    }

    fn handle(&mut self, request: Request) {
        let Request {
            command,
            origin,
            reply,
        } = request;
        tracing::debug!(?command, origin, "control request");
        let answer = match command {
            Command::Status => self.status(),
            Command::Reload { path } => self.reload(path, origin),
            Command::Config => {
                let config = &self.current.config;
                json!({
                    "ok": true,
                    "epoch": self.current.id,
                    "file": config.source,
                    "text": config_view::redacted_toml(&config.source_text),
                    "config": config_view::render(config),
                })
            }
            Command::Stats => {
                self.trim_due = true;
                self.flush_round();
                self.observatory.set_health(self.health.view());
                let mut stats = self.observatory.stats_json(&self.process_info());
                match stats.as_object_mut() {
                    Some(map) => {
                        map.insert("ok".into(), Value::Bool(true));
                        stats
                    }
                    None => json!({ "ok": true, "stats": stats }),
                }
            }
            Command::Histograms => {
                self.trim_due = true;
                self.flush_round();
                let mut histograms = self.observatory.histograms_json();
                if let Some(map) = histograms.as_object_mut() {
                    map.insert("ok".into(), Value::Bool(true));
                    map.insert("epoch".into(), json!(self.current.id));
                }
                histograms
            }
            Command::Metrics => {
                self.trim_due = true;
                self.flush_round();
                self.observatory.set_health(self.health.view());
                Value::String(self.observatory.prometheus(&self.process_info()))
            }
            Command::Drain => self.drain(origin),
            Command::Reopen => self.reopen(origin),
            Command::Shutdown => self.shutdown(origin),
        };
        if let Some(reply) = reply {
            // The asker may have given up (timeout, closed connection): nothing to do.
            let _ = reply.send(answer);
        }
    }

    fn process_info(&self) -> ProcessInfo {
        let mut info = self.info.clone();
        info.epoch = self.current.id;
        info.draining = self.phase != Phase::Serving;
        info.certificates = CertificateInfo::of(&self.current.config);
        info
    }

    fn status(&self) -> Value {
        let info = self.process_info();
        let shards: Vec<Value> = self
            .shards
            .iter()
            .map(|s| {
                json!({
                    "shard": s.info.index,
                    "epoch": s.epoch,
                    "driver": info.drivers.get(s.info.index).copied().unwrap_or("unknown"),
                    "core": s.info.core,
                    "fallback": s.info.fallback,
                    "stopped": s.stopped,
                })
            })
            .collect();
        let connections: serde_json::Map<String, Value> = self
            .observatory
            .open_connections()
            .into_iter()
            .map(|(name, open)| (name, Value::from(open)))
            .collect();
        let listeners: Vec<Value> = self
            .current
            .config
            .listeners
            .iter()
            .map(|l| {
                let mut listener = json!({ "name": l.name, "listen": l.listen.to_string() });
                if let Some(tls) = &l.tls {
                    listener["tls"] = json!({
                        "client_ca": tls.client_ca.as_ref().map(|ca| ca.file.display().to_string()),
                        "min_version": match tls.min_version {
                            ringway_config::TlsVersion::V1_2 => "1.2",
                            ringway_config::TlsVersion::V1_3 => "1.3",
                        },
                    });
                }
                listener
            })
            .collect();
        let now_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let certificates: Vec<Value> = info
            .certificates
            .iter()
            .map(|c| {
                json!({
                    c.owner_kind: c.owner,
                    "file": c.file,
                    "subject": c.subject,
                    "names": c.names,
                    "not_after_unix_s": c.not_after,
                    "expires_in_days": (c.not_after - now_unix) as f64 / 86_400.0,
                })
            })
            .collect();
        let started_unix = info
            .started_wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        json!({
            "ok": true,
            "pid": std::process::id(),
            "epoch": info.epoch,
            "config": self.current.config.source,
            "state": match self.phase {
                Phase::Serving => "serving",
                Phase::Draining { .. } => "draining",
                Phase::Stopping { .. } => "stopping",
            },
            "draining": info.draining,
            "uptime_s": info.started.elapsed().as_secs_f64(),
            "started_unix_s": started_unix,
            "shards": shards,
            "listeners": listeners,
            "certificates": certificates,
            "connections": connections,
            "reloads": { "ok": info.reloads_ok, "failed": info.reloads_failed },
            "resolver": self.names.view(),
            "retired_epochs": self.retired.len(),
            "shard_count": info.shards,
        })
    }

    fn reload(&mut self, path: Option<PathBuf>, origin: &str) -> Value {
        if self.phase != Phase::Serving {
            return json!({ "ok": false, "errors": ["the gateway is draining or stopping: no reload"] });
        }
        let Some(path) = path.or_else(|| self.path.clone()) else {
            return json!({ "ok": false, "errors": ["the gateway runs the bundled default config: name a file to reload"] });
        };
        self.notifier.reloading();
        let answer = self.reload_from(path.clone());
        self.notifier.send("READY=1\nSTATUS=serving");
        let ok = answer.get("ok") == Some(&Value::Bool(true));
        if ok {
            self.info.reloads_ok += 1;
            tracing::info!(origin, file = %path.display(), epoch = self.current.id, "reloaded");
        } else {
            self.info.reloads_failed += 1;
            tracing::warn!(origin, file = %path.display(), reply = %answer, "reload failed");
        }
        answer
    }

    fn reload_from(&mut self, path: PathBuf) -> Value {
        let id = self.next_epoch;
        let loaded = reload::load_epoch(&self.background, path.clone(), self.current.clone(), id);
        let (epoch, warnings) = match loaded {
            Ok(loaded) => loaded,
            Err(errors) => {
                return json!({ "ok": false, "epoch": self.current.id, "errors": errors })
            }
        };
        self.next_epoch += 1;
        // The running config's `[control] reload_timeout` bounds this reload.
        let ack_deadline = self.current.config.control.reload_timeout;
        self.quota.add_epoch(&epoch);
        let sent = self.broadcast(&epoch);
        let done = |c: &Control| {
            sent.iter()
                .all(|&i| c.shards[i].last_ack.as_ref().is_some_and(|a| a.0 == id))
        };
        self.pump_until(Instant::now() + ack_deadline, done);

        let mut errors = Vec::new();
        let mut switched = Vec::new();
        let mut silent = Vec::new();
        for s in &self.shards {
            if s.stopped {
                continue;
            }
            match &s.last_ack {
                Some((e, None)) if *e == id => switched.push(s.info.index),
                Some((e, Some(error))) if *e == id => {
                    errors.push(format!("shard {}: {error}", s.info.index))
                }
                _ => silent.push(s.info.index),
            }
        }
        if !errors.is_empty() {
            // Some shard could not switch (a listener did not bind after all): put the ones
            // that did back on the running epoch, so every shard serves the same config.
            let old = self.current.clone();
            let back: Vec<usize> = switched
                .iter()
                .copied()
                .filter(|&i| {
                    !self.shards[i].stopped && self.shards[i].link.send(ToShard::Epoch(old.clone()))
                })
                .collect();
            let old_id = old.id;
            let done = |c: &Control| {
                back.iter()
                    .all(|&i| c.shards[i].last_ack.as_ref().is_some_and(|a| a.0 == old_id))
            };
            self.pump_until(Instant::now() + ack_deadline, done);
            self.quota.retain_epoch(&self.current);
            self.retired.push(epoch);
            return json!({ "ok": false, "epoch": old_id, "errors": errors, "rolled_back": true });
        }
        // Every shard that answered runs the new epoch; one that did not has it queued.
        let old = std::mem::replace(&mut self.current, epoch);
        self.retired.push(old);
        self.observatory.follow(&self.current.config);
        self.quota.retain_epoch(&self.current);
        self.path = Some(path);
        if self.health.follow(&self.current.config) {
            self.health_owed = (0..self.shards.len()).collect();
        }
        self.names.follow(&self.current.config);
        if !silent.is_empty() {
            let errors: Vec<String> = silent
                .iter()
                .map(|i| {
                    format!("shard {i} did not acknowledge epoch {id} within {ack_deadline:?}")
                })
                .collect();
            return json!({ "ok": false, "epoch": id, "errors": errors, "pending": silent });
        }
        let mut answer = json!({ "ok": true, "epoch": id });
        if !warnings.is_empty() {
            answer["warnings"] = json!(warnings);
        }
        answer
    }

    /// Takes in a lookup of an endpoint name (and any others already waiting); when an
    /// endpoint's name moved to another address, switches to a new epoch whose config differs
    /// from the running one only in those addresses. The shards get it as they get a reload,
    /// without this loop waiting for their acknowledgements: nothing in it can fail on a
    /// shard (the listeners are the running ones).
    fn resolved(&mut self, first: Found) {
        let mut moved = self.names.absorb(first);
        while let Ok(found) = self.names_found.try_recv() {
            moved |= self.names.absorb(found);
        }
        if !moved || self.phase != Phase::Serving {
            return;
        }
        let Some(config) = self.names.patch(&self.current.config) else {
            return;
        };
        let id = self.next_epoch;
        let running = self.current.clone();
        let compiled = self
            .background
            .run(move || Epoch::compile_after(id, config, Some(&running)).map(Arc::new));
        let epoch = match compiled {
            Ok(epoch) => epoch,
            Err(e) => {
                tracing::error!(error = %e, "cannot compile the config with the new endpoint addresses: keeping the old ones");
                return;
            }
        };
        self.next_epoch += 1;
        self.quota.add_epoch(&epoch);
        self.broadcast(&epoch);
        let old = std::mem::replace(&mut self.current, epoch);
        self.retired.push(old);
        self.observatory.follow(&self.current.config);
        self.quota.retain_epoch(&self.current);
        if self.health.follow(&self.current.config) {
            self.health_owed = (0..self.shards.len()).collect();
        }
        tracing::info!(epoch = id, "endpoint addresses changed");
    }

    /// Sends `epoch` to every running shard; the shards it reached.
    fn broadcast(&mut self, epoch: &Arc<Epoch>) -> Vec<usize> {
        self.shards
            .iter()
            .filter(|s| !s.stopped && s.link.send(ToShard::Epoch(epoch.clone())))
            .map(|s| s.info.index)
            .collect()
    }

    /// Reopens the log files at their paths (after logrotate moved them away).
    fn reopen(&mut self, origin: &str) -> Value {
        if let Some(flag) = &self.access_log_reopen {
            flag.store(true, Ordering::SeqCst);
        }
        let interval_log = match self.observatory.reopen_interval_log() {
            Ok(reopened) => reopened,
            Err(e) => {
                tracing::warn!(origin, error = %e, "cannot reopen the interval log");
                return json!({ "ok": false, "error": format!("cannot reopen the interval log: {e}") });
            }
        };
        tracing::info!(origin, "reopening the log files");
        json!({
            "ok": true,
            "access_log": self.access_log_reopen.is_some(),
            "interval_log": interval_log,
        })
    }

    fn drain(&mut self, origin: &str) -> Value {
        let timeout = self.current.config.control.drain_timeout;
        if self.phase == Phase::Serving {
            tracing::info!(origin, ?timeout, "draining");
            self.notifier.send("STOPPING=1\nSTATUS=draining");
            self.draining.store(true, Ordering::SeqCst);
            for s in &self.shards {
                if !s.stopped {
                    s.link.send(ToShard::Drain { timeout });
                }
            }
            self.phase = Phase::Draining {
                deadline: Instant::now() + timeout + STOP_GRACE,
            };
        }
        json!({ "ok": true, "state": "draining", "timeout_s": timeout.as_secs_f64() })
    }

    fn shutdown(&mut self, origin: &str) -> Value {
        tracing::info!(origin, "stopping");
        self.stop_shards();
        json!({ "ok": true, "state": "stopping" })
    }

    fn stop_shards(&mut self) {
        if matches!(self.phase, Phase::Stopping { .. }) {
            return;
        }
        self.notifier.send("STOPPING=1\nSTATUS=stopping");
        self.draining.store(true, Ordering::SeqCst);
        for s in &self.shards {
            if !s.stopped {
                s.link.send(ToShard::Stop);
            }
        }
        self.phase = Phase::Stopping {
            deadline: Instant::now() + STOP_GRACE,
        };
    }
}
