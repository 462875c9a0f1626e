//! The command line: `run`, `check` and `ctl` (the control-socket client).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

const AFTER_HELP: &str = "\
Control commands (ringway ctl, over the control socket from [control] socket):
  status          epoch, per-shard epoch and driver, uptime, open connections
  reload [FILE]   reload the config (or switch to FILE); answers once every shard runs it
  config          the running config, secrets redacted
  stats           counters and latency percentiles per route and upstream
  reopen          reopen the access log and the interval log (after log rotation)
  drain           stop accepting, finish in-flight requests, then exit 0
  shutdown        stop at once, then exit 0

Signals:
  SIGHUP    reload the config file (like `ringway ctl reload`)
  SIGTERM   drain: stop accepting, finish in-flight requests within the drain timeout
            (30 s), close idle keep-alive connections, then exit 0
  SIGINT    stop fast: drop every connection and exit 0
  SIGUSR1   reopen the log files (like `ringway ctl reopen`)

Exit codes:
  run:   0 stopped normally; 1 could not start (a listener could not bind, a live gateway
         owns the control socket); 2 the configuration is invalid
  check: 0 valid; 2 invalid
  ctl:   0 ok reply; 1 error reply; 2 cannot connect to the control socket

Without -c, `ringway run` serves the default configuration compiled into the binary:
http://127.0.0.1:8080/ answers with a short guide. See docs/config.md for every key and
docs/operations.md for running Ringway.";

#[derive(Parser)]
#[command(name = "ringway", version, about = "Ringway: a thread-per-core API gateway", after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve: one proxy shard per core, on the given config (or the bundled default).
    Run {
        /// The TOML config file.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate a config file and exit: 0 when valid, 2 with every error otherwise.
    Check {
        /// The TOML config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Talk to a running gateway over its control socket; prints the JSON reply.
    Ctl(CtlArgs),
}

#[derive(clap::Args)]
pub struct CtlArgs {
    /// The control socket (default: `[control] socket` of -c FILE, else
    /// /run/ringway/control.sock).
    #[arg(long, value_name = "PATH", conflicts_with = "config")]
    pub socket: Option<PathBuf>,
    /// Read the control socket's path from this config file.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum CtlCommand {
    /// Epoch, per-shard epoch and driver, uptime, open connections per listener.
    Status,
    /// Reload the config file, or switch to FILE; answers when every shard runs it.
    Reload {
        /// A new config file to run from now on (default: the current one).
        file: Option<PathBuf>,
    },
    /// The running config, secrets redacted.
    Config,
    /// Counters and latency percentiles per route and per upstream.
    Stats,
    /// The merged latency histograms per route and upstream, HdrHistogram-encoded.
    Histograms,
    /// Stop accepting, finish in-flight requests, then exit.
    Drain,
    /// Stop at once.
    Shutdown,
    /// Reopen the access log and the interval log at their paths (after log rotation).
    Reopen,
}
