//! `ringway-perf idle`: opens many keep-alive connections, sends one request on each (so the
//! server holds each in its keep-alive state, as after real traffic), then holds them open
//! and idle. Prints `ready OPEN FAILED` on stdout once every connection has been tried, so a
//! script can then read the server's memory; exits after `--hold` (or when killed). On an
//! `https://` URL each connection is a TLS session (a full handshake each unless `--resume`).

use std::cell::Cell;
use std::io::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Result;
use glommio::sync::Semaphore;
use glommio::{LocalExecutorBuilder, Placement};

use crate::load::response::{ResponseReader, MAX_HEAD};
use crate::load::stream::Stream;
use crate::target::{parse_cores, parse_duration, Cores, Target};
use crate::tls::{TlsArgs, TlsClient};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Target URL, http://HOST:PORT/PATH
    #[arg(long)]
    url: String,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 5000)]
    connections: u64,
    /// Requests in flight at once while the connections are opened (keeps the server's
    /// upstream pool small, as steady traffic would).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long to hold the connections once they are ready.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    hold: Duration,
    /// CPU to pin the one thread to.
    #[arg(long, value_parser = parse_cores)]
    cores: Option<Cores>,
    #[command(flatten)]
    tls: TlsArgs,
}

/// Connect, read and write timeout of each connection's one request.
const TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(args: Args) -> Result<()> {
    let target = Target::parse(&args.url, 0)?;
    let tls = match target.tls {
        true => Some(TlsClient::new(&args.tls, &target.host)?),
        false => None,
    };
    crate::raise_fd_limit(args.connections + 64);
    let placement = match args.cores.as_ref().map(|c| c.0.as_slice()) {
        Some([core, ..]) => Placement::Fixed(*core),
        _ => Placement::Unbound,
    };
    let handle = LocalExecutorBuilder::new(placement)
        .name("idle")
        .spawn(move || async move {
            let target = Rc::new((target, tls));
            let gate = Rc::new(Semaphore::new(args.concurrency.max(1) as u64));
            let open = Rc::new(Cell::new(0u64));
            let failed = Rc::new(Cell::new(0u64));
            let mut tasks = Vec::new();
            for _ in 0..args.connections {
                let (target, gate, open, failed) =
                    (target.clone(), gate.clone(), open.clone(), failed.clone());
                tasks.push(glommio::spawn_local(async move {
                    let permit = gate.acquire_permit(1).await;
                    let stream = one_request(&target.0, target.1.as_ref()).await;
                    drop(permit);
                    match &stream {
                        Ok(_) => open.set(open.get() + 1),
                        Err(_) => failed.set(failed.get() + 1),
                    }
                    stream
                }));
            }
            let mut streams = Vec::with_capacity(tasks.len());
            for task in tasks {
                streams.push(task.await);
            }
            println!("ready {} {}", open.get(), failed.get());
            let _ = std::io::stdout().flush();
            let until = Instant::now() + args.hold;
            glommio::timer::sleep(until.saturating_duration_since(Instant::now())).await;
            drop(streams);
        })
        .map_err(|e| anyhow::anyhow!("starting the idle thread: {e}"))?;
    handle
        .join()
        .map_err(|e| anyhow::anyhow!("the idle thread failed: {e}"))?;
    Ok(())
}

/// Connects, sends one request, reads its response, and returns the connection.
async fn one_request(target: &Target, tls: Option<&TlsClient>) -> std::io::Result<Stream> {
    let mut stream = Stream::open(target, tls, TIMEOUT)
        .await
        .map_err(|kind| std::io::Error::other(format!("{kind:?}")))?
        .stream;
    stream.write_all(&target.request).await?;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut filled = 0;
    let mut reader = ResponseReader::default();
    loop {
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
        let adv = reader
            .advance(&buf[..filled])
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        buf.copy_within(adv.consumed..filled, 0);
        filled -= adv.consumed;
        if adv.done.is_some() {
            return Ok(stream);
        }
    }
}
