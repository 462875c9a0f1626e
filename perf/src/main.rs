//! ringway-perf: the project's measuring stick. For now: `stub`, an upstream that answers every
//! request with a fixed-size body as fast as it can (thread per core, monoio), so that a proxy in
//! front of it is the bottleneck. The open-loop load generator and the side-by-side comparison
//! with nginx and HAProxy come with the measurement issue.
#![forbid(unsafe_code)]

mod stub;

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: ringway-perf stub [--listen ADDR] [--body BYTES] [--threads N]";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("stub") => {
            let mut opts = stub::Options::default();
            while let Some(flag) = args.next() {
                let value = args
                    .next()
                    .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
                match flag.as_str() {
                    "--listen" => opts.listen = value.parse().context("--listen")?,
                    "--body" => opts.body = value.parse().context("--body")?,
                    "--threads" => opts.threads = value.parse().context("--threads")?,
                    _ => bail!("unknown flag {flag}\n{USAGE}"),
                }
            }
            stub::run(opts)
        }
        _ => bail!("{USAGE}"),
    }
}
