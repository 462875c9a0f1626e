//! The stub upstream: HTTP/1.1 keep-alive, a fixed response, request bodies (Content-Length)
//! read and dropped. Deliberately minimal: it trusts its input, which only benchmarks send.

use std::net::SocketAddr;

use anyhow::Result;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (every thread binds it with SO_REUSEPORT).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Response body bytes.
    #[arg(long, default_value_t = 13)]
    body: usize,
    /// Threads (monoio runtimes).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

impl From<Args> for Options {
    fn from(args: Args) -> Options {
        Options {
            listen: args.listen,
            body: args.body,
            threads: args.threads,
        }
    }
}

pub struct Options {
    pub listen: SocketAddr,
    pub body: usize,
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: "127.0.0.1:9000".parse().expect("literal address"),
            body: 13,
            threads: 1,
        }
    }
}

pub fn run(opts: Options) -> Result<()> {
    let mut response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
        opts.body
    )
    .into_bytes();
    response.extend(std::iter::repeat_n(b'x', opts.body));
    let threads: Vec<_> = (0..opts.threads.max(1))
        .map(|_| {
            let response = response.clone();
            let listen = opts.listen;
            std::thread::spawn(move || {
                let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                    .enable_timer()
                    .build()
                    .expect("runtime");
                rt.block_on(serve(listen, response))
            })
        })
        .collect();
    eprintln!(
        "stub upstream listening on {} ({} threads, {}-byte body)",
        opts.listen, opts.threads, opts.body
    );
    for t in threads {
        t.join().expect("stub thread")?;
    }
    Ok(())
}

async fn serve(listen: SocketAddr, response: Vec<u8>) -> Result<()> {
    let listener = TcpListener::bind_with_config(listen, &ListenerOpts::new().reuse_port(true))?;
    let response: &'static [u8] = Box::leak(response.into_boxed_slice());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        monoio::spawn(connection(stream, response));
    }
}

/// Index just past the head's blank line, and the Content-Length, if the head is complete.
fn head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = &buf[..end];
    let mut length = 0;
    for line in head.split(|&b| b == b'\n') {
        if line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
            let value = std::str::from_utf8(&line[15..]).unwrap_or("").trim();
            length = value.parse().unwrap_or(0);
        }
    }
    Some((end, length))
}

async fn connection(mut stream: TcpStream, response: &'static [u8]) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut skip = 0usize;
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        let (len, cap) = (buf.len(), buf.capacity());
        let (res, slice) = stream.read(buf.slice_mut(len..cap)).await;
        buf = slice.into_inner();
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut at = skip.min(buf.len());
        skip -= at;
        let mut answers = 0;
        while let Some((end, length)) = head_end(&buf[at..]) {
            answers += 1;
            let available = buf.len() - at - end;
            if length > available {
                skip = length - available;
                at = buf.len();
                break;
            }
            at += end + length;
        }
        buf.drain(..at);
        for _ in 0..answers {
            let (res, _) = stream.write_all(response).await;
            if res.is_err() {
                return;
            }
        }
    }
}
