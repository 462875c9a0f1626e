//! ringway-perf: the project's measuring stick.
//!
//! - `stub`: an upstream that answers every request with a fixed-size body as fast as it can
//!   (thread per core, monoio), so that a proxy in front of it is the bottleneck.
//! - `load`: the load generator (thread per core, glommio): open loop at a fixed rate with
//!   coordinated-omission-corrected latency, or closed loop for maximum throughput; over
//!   plain TCP or TLS (a cheap rustls client, for handshakes per second).
//! - `h2`: the HTTP/2 load generator (h2c): open or closed loop, many streams per connection,
//!   gRPC-shaped calls with `--grpc`.
//! - `idle`: holds many idle keep-alive connections open, to measure a server's memory per
//!   connection.
//! - `relay`: a blind one-to-one TCP relay, the floor under any proxy's CPU per request.
//! - `routes`: writes configs with many routes (Ringway's and nginx's), for config at scale.
//!
//! `perf/compare.sh` runs them against Ringway, nginx and HAProxy side by side. Errors are
//! `anyhow` at this binary's edge; the network is trusted only as far as a benchmark needs.
#![forbid(unsafe_code)]

mod idle;
mod load;
mod micro;
mod relay;
mod routes;
mod stub;
mod target;
mod tls;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ringway-perf", about = "Ringway's measuring stick")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upstream stub: answers every request with a fixed-size body.
    Stub(stub::Args),
    /// Load generator: open loop (--rate) or closed loop.
    Load(load::Args),
    /// HTTP/2 load generator (h2c): open loop (--rate) or closed loop, --streams per connection.
    H2(load::h2::Args),
    /// Opens and holds idle keep-alive connections.
    Idle(idle::Args),
    /// Micro-benchmarks of the hot pieces: head parsing, routing, balancing, histograms.
    Micro(micro::Args),
    /// The floor: a blind one-to-one TCP relay in lockstep, for what the kernel alone costs.
    Relay(relay::Args),
    /// Writes a config with many routes (Ringway's, or nginx's with --nginx).
    Routes(routes::Args),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Stub(args) => stub::run(args.into()),
        Command::Load(args) => load::run(args),
        Command::H2(args) => load::h2::run(args),
        Command::Idle(args) => idle::run(args),
        Command::Micro(args) => micro::run(args),
        Command::Relay(args) => relay::run(args),
        Command::Routes(args) => routes::run(args),
    }
}

/// Raises this process's open-file limit to at least `wanted` where the hard limit allows;
/// a failure only means connects fail later, counted as errors.
fn raise_fd_limit(wanted: u64) {
    match rlimit::utils::increase_nofile_limit(wanted) {
        Ok(got) if got >= wanted => {}
        Ok(got) => eprintln!("open-file limit is {got}, below the {wanted} wanted"),
        Err(e) => eprintln!("could not raise the open-file limit to {wanted}: {e}"),
    }
}
