//! `ringway`: the gateway's process. `run` loads and validates the config, binds the control
//! socket and the admin listener, starts one shard per core and runs the control loop;
//! `check` only validates; `ctl` is the control socket's client.
//!
//! Threading: the shards are ringway-core's (one monoio runtime per core); everything here
//! runs on plain std threads around one control loop (see [`daemon`]). Error policy: `anyhow`
//! at this edge only; a bad config exits 2, a failure to start exits 1, and a running gateway
//! never exits on a control-plane error (a failed reload leaves the old epoch serving).
#![forbid(unsafe_code)]

mod cli;
mod ctl;
mod daemon;
mod observe;

use std::process::ExitCode;

use clap::Parser;
use ringway_config::ConfigErrors;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Ctl(args) => ctl::main(args),
        Command::Check { config } => {
            init_logging();
            match ringway_config::load(&config) {
                Ok(_) => {
                    println!("{}: ok", config.display());
                    ExitCode::SUCCESS
                }
                Err(errors) => config_failed(&errors),
            }
        }
        Command::Run { config: path } => {
            init_logging();
            let config = match &path {
                Some(path) => match ringway_config::load(path) {
                    Ok(config) => config,
                    Err(errors) => return config_failed(&errors),
                },
                None => ringway_config::default_config(),
            };
            // A reload reads the same file again, whatever the working directory becomes.
            let path = path.map(|p| std::path::absolute(&p).unwrap_or(p));
            daemon::run(path, config)
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
