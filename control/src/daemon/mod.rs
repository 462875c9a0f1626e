//! `ringway run`: the gateway process. Binds the control socket and the admin listener,
//! starts the shards, then hands everything to the control loop ([`control::Control`]).
//!
//! Threads: one per shard (core), the control loop (this thread), the control-socket accept
//! thread and one thread per control client (at most 16), the admin listener's thread (one
//! event loop, a task per connection), the health check thread, the endpoint-name lookup
//! thread ([`names`]), and the signal thread. Everything outside the shards
//! talks to the loop through one channel of [`Request`]s; the loop does one request at a
//! time, so two reloads never overlap, and no client can block it (each waits for its reply
//! on its own thread or task).

mod admin;
mod background;
mod config_view;
mod control;
mod grpc_health;
mod health;
mod names;
mod notify;
mod quota;
mod reload;
mod signals;
mod socket;

/// The small runtime a control-side thread runs its tasks on (the admin listener, the health
/// checks): epoll, with timers, never io_uring (those threads are not on the data path).
/// `None`, logged with `what`, when it cannot start.
fn small_runtime(
    what: &str,
) -> Option<monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>>> {
    match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the {what} runtime");
            None
        }
    }
}

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crossbeam_channel::Sender;
use ringway_config::Config;
use ringway_core::{start_shards, Epoch, Sinks};
use serde_json::Value;

use crate::observe::{self, Observatory, ProcessInfo};

pub use ringway_control::command::Command;

/// A command and where its answer goes (`None`: signals, which only log the outcome).
pub struct Request {
    pub command: Command,
    /// Who asked, for the log: "socket", "admin", "SIGHUP", ...
    pub origin: &'static str,
    /// The JSON reply (for `Metrics`, a JSON string holding the exposition text).
    pub reply: Option<Sender<Value>>,
}

/// Serves `config` (read from `path`, or the bundled default) until drained or stopped.
pub fn run(path: Option<PathBuf>, config: Config) -> ExitCode {
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let socket = match socket::bind(&config.control.socket) {
        Ok(socket) => socket,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(1);
        }
    };
    let admin = match config
        .admin
        .as_ref()
        .map(|a| admin::bind(a.listen))
        .transpose()
    {
        Ok(admin) => admin,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(1);
        }
    };
    // Before the shards start, so a signal from here on is ours to handle.
    let signals = match signals::register() {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!("cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let (access_log, access_log_reopen) = match config
        .access_log
        .as_ref()
        .map(|a| observe::spawn_access_log(&a.path).map_err(|e| (&a.path, e)))
        .transpose()
    {
        Ok(log) => log.unzip(),
        Err((p, e)) => {
            tracing::error!("cannot open the access log {}: {e}", p.display());
            return ExitCode::from(1);
        }
    };
    let observatory = match Observatory::new(config.metrics.interval_log.as_deref()) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!("cannot open the histogram log: {e}");
            return ExitCode::from(1);
        }
    };

    let background = match background::Background::start() {
        Ok(background) => background,
        Err(e) => {
            tracing::error!("cannot start the config thread: {e}");
            return ExitCode::from(1);
        }
    };

    let source = config.source.clone();
    let listeners: Vec<String> = config
        .listeners
        .iter()
        .map(|l| format!("{}={}", l.name, l.listen))
        .collect();
    let socket_path = config.control.socket.clone();
    let admin_addr = config.admin.as_ref().map(|a| a.listen);
    let epoch = match Epoch::compile(1, config) {
        Ok(epoch) => Arc::new(epoch),
        Err(e) => {
            tracing::error!("{source}: {e}");
            return ExitCode::from(1);
        }
    };
    // Shards send acks and one report per flush round: a small buffer is plenty, and the
    // loop never stops reading it.
    let (events, events_rx) = crossbeam_channel::bounded(1024);
    let set = match start_shards(epoch.clone(), Sinks { events, access_log }) {
        Ok(set) => set,
        Err(e) => {
            tracing::error!("{e}");
            let _ = std::fs::remove_file(&socket_path);
            return ExitCode::from(1);
        }
    };
    for shard in &set.shards {
        match &shard.fallback {
            Some(why) => tracing::warn!(
                shard = shard.index,
                core = ?shard.core,
                "shard runs on epoll: io_uring could not start ({why})"
            ),
            None => {
                tracing::info!(shard = shard.index, core = ?shard.core, driver = %shard.driver, "shard started")
            }
        }
    }
    let info = ProcessInfo {
        epoch: 1,
        shards: set.shards.len(),
        drivers: set.shards.iter().map(|s| s.driver.as_str()).collect(),
        started,
        started_wall,
        draining: false,
        reloads_ok: 0,
        reloads_failed: 0,
        certificates: Vec::new(),
    };
    let draining = Arc::new(AtomicBool::new(false));
    let (commands, commands_rx) = crossbeam_channel::bounded::<Request>(256);
    socket::spawn(socket, commands.clone());
    if let Some(admin) = admin {
        admin::spawn(admin, commands.clone(), draining.clone());
    }
    signals::spawn(signals, commands.clone());
    drop(commands);

    let driver = set.shards.first().map_or("none", |s| s.driver.as_str());
    tracing::info!(
        config = %source,
        shards = set.shards.len(),
        driver,
        listeners = %listeners.join(","),
        control = %socket_path.display(),
        admin = %admin_addr.map_or_else(|| "none".to_string(), |a| a.to_string()),
        "ringway ready"
    );
    let notifier = notify::Notifier::from_env();
    notifier.send("READY=1\nSTATUS=serving");

    let control = control::Control::new(control::Parts {
        path,
        epoch,
        set,
        events: events_rx,
        commands: commands_rx,
        info,
        observatory,
        notifier,
        draining,
        access_log_reopen,
        background,
    });
    let code = control.run();
    let _ = std::fs::remove_file(&socket_path);
    socket::flush_replies(std::time::Duration::from_secs(1));
    code
}
