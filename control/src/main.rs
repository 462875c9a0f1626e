//! `ringway`: the gateway's process. Parses the command line, loads and validates the config,
//! starts one shard per core and waits for them.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use ringway_config::{Config, ConfigErrors};
use ringway_core::{start_shards, Epoch, Sinks};

const AFTER_HELP: &str = "\
Signals:
  SIGTERM, SIGINT   stop the gateway

Exit codes:
  0  stopped normally
  1  could not start (a listener could not bind, a runtime could not start)
  2  the configuration is invalid

Without -c, `ringway run` serves the default configuration compiled into the binary:
http://127.0.0.1:8080/ answers with a short guide. See docs/config.md for every key.";

#[derive(Parser)]
#[command(name = "ringway", version, about = "Ringway: a thread-per-core API gateway", after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Check { config } => match ringway_config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(errors) => config_failed(&errors),
        },
        Command::Run { config } => {
            let config = match config {
                Some(path) => match ringway_config::load(&path) {
                    Ok(config) => config,
                    Err(errors) => return config_failed(&errors),
                },
                None => ringway_config::default_config(),
            };
            run(config)
        }
    }
}

fn config_failed(errors: &ConfigErrors) -> ExitCode {
    eprintln!("{errors}");
    ExitCode::from(2)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run(config: Config) -> ExitCode {
    let source = config.source.clone();
    let listeners: Vec<String> = config
        .listeners
        .iter()
        .map(|l| format!("{}={}", l.name, l.listen))
        .collect();
    let epoch = Arc::new(Epoch::compile(1, config));
    // The control thread arrives with the control-plane work; until then shard events go
    // nowhere and there is no access log.
    let (events, _events_rx) = crossbeam_channel::bounded(1024);
    let sinks = Sinks {
        events,
        access_log: None,
    };
    let shards = match start_shards(epoch, sinks) {
        Ok(shards) => shards,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(1);
        }
    };
    for shard in &shards.shards {
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
    let driver = shards.shards.first().map_or("none", |s| s.driver.as_str());
    tracing::info!(
        config = %source,
        shards = shards.shards.len(),
        driver,
        listeners = %listeners.join(","),
        "ringway ready"
    );
    shards.join();
    ExitCode::SUCCESS
}
