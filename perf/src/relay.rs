//! The floor: a blind relay that pairs each client connection with its own upstream connection
//! and moves bytes in lockstep (one read from the client, written whole to the upstream, one
//! read from the upstream, written whole to the client). It parses nothing, routes nothing,
//! times nothing and logs nothing: four socket operations per request, the fewest any HTTP/1.1
//! proxy with upstream keep-alive can do. Its CPU per request is what the kernel's TCP costs
//! on this layout, so `compare.sh` shows how far above that floor each proxy sits.
//!
//! Correct only for what benchmarks send: one request answered by one response, each arriving
//! in one read (small heads and bodies, no pipelining).

use std::net::SocketAddr;

use anyhow::Result;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A listening address and the upstream its connections are paired with, as
    /// LISTEN=UPSTREAM (127.0.0.1:9100=127.0.0.1:9000); repeat it for more.
    #[arg(long = "pair", required = true, value_parser = parse_pair)]
    pairs: Vec<(SocketAddr, SocketAddr)>,
    /// I/O driver: io_uring or epoll.
    #[arg(long, default_value = "io_uring")]
    driver: String,
}

fn parse_pair(text: &str) -> Result<(SocketAddr, SocketAddr), String> {
    let (listen, upstream) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected LISTEN=UPSTREAM"))?;
    let addr = |a: &str| a.parse().map_err(|e| format!("{a:?}: {e}"));
    Ok((addr(listen)?, addr(upstream)?))
}

/// Buffer per connection pair: larger than any head plus body the benchmarks send.
const BUF: usize = 64 * 1024;

pub fn run(args: Args) -> Result<()> {
    for (listen, upstream) in &args.pairs {
        eprintln!("relay {listen} -> {upstream} ({})", args.driver);
    }
    match args.driver.as_str() {
        "io_uring" => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .build()?
            .block_on(serve_all(args.pairs)),
        "epoll" => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()?
            .block_on(serve_all(args.pairs)),
        other => anyhow::bail!("unknown driver {other:?}: io_uring or epoll"),
    }
}

async fn serve_all(pairs: Vec<(SocketAddr, SocketAddr)>) -> Result<()> {
    let mut listeners = Vec::new();
    for (listen, upstream) in pairs {
        let listener = TcpListener::bind_with_config(listen, &ListenerOpts::new())?;
        listeners.push(monoio::spawn(serve(listener, upstream)));
    }
    for listener in listeners {
        listener.await?;
    }
    Ok(())
}

async fn serve(listener: TcpListener, upstream: SocketAddr) -> Result<()> {
    loop {
        let (client, _) = listener.accept().await?;
        monoio::spawn(async move {
            if let Ok(up) = TcpStream::connect(upstream).await {
                let _ = client.set_nodelay(true);
                let _ = up.set_nodelay(true);
                pair(client, up).await;
            }
        });
    }
}

async fn pair(mut client: TcpStream, mut up: TcpStream) {
    let mut buf = Vec::with_capacity(BUF);
    loop {
        for to_upstream in [true, false] {
            let (from, to) = if to_upstream {
                (&mut client, &mut up)
            } else {
                (&mut up, &mut client)
            };
            buf.clear();
            let (res, b) = from.read(buf).await;
            buf = b;
            if !matches!(res, Ok(n) if n > 0) {
                return;
            }
            let (res, b) = to.write_all(buf).await;
            buf = b;
            if res.is_err() {
                return;
            }
        }
    }
}
