//! One downstream connection: read a request head, route it, answer it locally or forward it,
//! and loop for the next request (keep-alive, pipelining) until either side closes.

mod body;
mod forward;
pub mod head;
pub mod local;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::AsyncWriteRent;
use monoio::net::TcpStream;
use ringway_config::Listener;

use crate::epoch::{Action, LocalResponse};
use crate::http::h1::{parse_request, BodyKind, HeaderRef, Method, RequestHead, RequestLimits};
use crate::io::{write_static, write_vec, ConnBuf};
use crate::router::RequestView;
use crate::shard::{Shard, ShardEpoch};

/// Initial bytes of a downstream read buffer; it grows up to the listener's head limit.
const DOWNSTREAM_BUF: usize = 16 * 1024;

/// A client connection's buffers, allocated once at accept and reused for every request.
pub(crate) struct Downstream {
    pub stream: TcpStream,
    pub buf: ConnBuf,
    pub out: Vec<u8>,
    pub headers: Vec<HeaderRef>,
    pub peer: SocketAddr,
    pub listener: usize,
}

/// What happens to the connection after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    KeepAlive,
    Close,
}

enum HeadRead {
    Head(RequestHead),
    /// The client went away or idled out between requests: close without a word.
    Gone,
    /// Answer with this status, then close.
    Reject(u16),
}

pub async fn serve(shard: &Rc<Shard>, stream: TcpStream, peer: SocketAddr, listener: usize) {
    let mut d = Downstream {
        stream,
        buf: ConnBuf::with_capacity(DOWNSTREAM_BUF),
        out: Vec::with_capacity(4096),
        headers: Vec::with_capacity(32),
        peer,
        listener,
    };
    let mut first = true;
    loop {
        let sep = shard.epoch();
        let cfg = &sep.epoch.config.listeners[listener];
        let head = match read_head(&mut d, cfg, first).await {
            HeadRead::Head(head) => head,
            HeadRead::Gone => return,
            HeadRead::Reject(status) => {
                tracing::debug!(shard = shard.index, %peer, status, "request rejected");
                let _ = write_static(&mut d.stream, local::error_response(status, true)).await;
                linger_close(d.stream, Some(d.buf)).await;
                return;
            }
        };
        first = false;
        match handle(shard, &sep, &mut d, &head, cfg).await {
            After::KeepAlive => continue,
            After::Close => {
                linger_close(d.stream, Some(d.buf)).await;
                return;
            }
        }
    }
}

async fn read_head(d: &mut Downstream, cfg: &Listener, first: bool) -> HeadRead {
    let limits = RequestLimits {
        max_request_line: cfg.max_request_line,
        max_head: cfg.max_header_bytes,
    };
    let mut head_deadline = (!d.buf.is_empty()).then(|| Instant::now() + cfg.header_timeout);
    // The parser keeps no state between calls: parse again only when a line may have ended (or
    // a limit may be crossed), so a client trickling bytes cannot make it rescan per byte.
    let mut parse = true;
    loop {
        if parse && !d.buf.is_empty() {
            match parse_request(d.buf.data(), &limits, &mut d.headers) {
                Ok(Some(head)) => return HeadRead::Head(head),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(reason = e.reason(), "bad request head");
                    return HeadRead::Reject(e.status());
                }
            }
        }
        let deadline = match head_deadline {
            Some(deadline) => deadline,
            // Waiting for the first byte of a request: the keep-alive idle timeout, or for a
            // fresh connection the header timeout.
            None => {
                Instant::now()
                    + if first {
                        cfg.header_timeout
                    } else {
                        cfg.idle_timeout
                    }
            }
        };
        let max = cfg.max_header_bytes.max(DOWNSTREAM_BUF);
        let before = d.buf.len();
        let read =
            monoio::time::timeout_at(deadline.into(), d.buf.read_from(&mut d.stream, max)).await;
        let data = d.buf.data();
        parse =
            data.len() > cfg.max_request_line || data[before.min(data.len())..].contains(&b'\n');
        match read {
            Err(_elapsed) if head_deadline.is_some() => return HeadRead::Reject(408),
            Err(_elapsed) => return HeadRead::Gone,
            Ok(Ok(0)) => return HeadRead::Gone,
            Ok(Ok(_)) => {
                if head_deadline.is_none() {
                    head_deadline = Some(Instant::now() + cfg.header_timeout);
                }
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::OutOfMemory => {
                return HeadRead::Reject(431)
            }
            Ok(Err(_)) => return HeadRead::Gone,
        }
    }
}

async fn handle(
    shard: &Rc<Shard>,
    sep: &Rc<ShardEpoch>,
    d: &mut Downstream,
    head: &RequestHead,
    cfg: &Listener,
) -> After {
    let epoch = &sep.epoch;
    let route = {
        let src = d.buf.data();
        let headers = &d.headers;
        let any_header = |f: &mut dyn FnMut(&[u8], &[u8]) -> bool| {
            headers.iter().any(|h| f(h.name.get(src), h.value.get(src)))
        };
        let path = head.path.get(src);
        let view = RequestView {
            listener: d.listener,
            host: head.host.map(|h| h.get(src)),
            path: if path.is_empty() {
                b"/"
            } else {
                &path[..head.path_len_without_query.min(path.len())]
            },
            method: head.method_span.get(src),
            headers: &any_header,
        };
        epoch.router.find(&view)
    };
    let Some(route) = route else {
        return respond_static(d, head, 404, cfg).await;
    };
    match &epoch.actions[route] {
        Action::Proxy { upstream } => forward::proxy(shard, sep, d, head, *upstream, cfg).await,
        Action::Local(response) => respond_local(d, head, response, cfg).await,
        Action::Redirect {
            status,
            location,
            keep_path,
        } => {
            let mut response = LocalResponse {
                head: Vec::new(),
                body: Vec::new(),
            };
            let reason = crate::http::h1::reason_phrase(*status);
            response.head.extend_from_slice(
                format!("HTTP/1.1 {status} {reason}\r\nlocation: {location}").as_bytes(),
            );
            if *keep_path {
                let path = head.path.get(d.buf.data());
                response
                    .head
                    .extend_from_slice(if path.is_empty() { b"/" } else { path });
            }
            response
                .head
                .extend_from_slice(b"\r\ncontent-length: 0\r\n");
            respond_local(d, head, &response, cfg).await
        }
    }
}

/// Consumes the request (head and body) from the buffer when the whole body is already there.
/// Returns false when the body is not fully buffered, so the connection must close.
fn consume_request(d: &mut Downstream, head: &RequestHead) -> bool {
    let rest = d.buf.len() - head.head_len;
    let body = match head.body {
        BodyKind::None => 0,
        BodyKind::Length(n) if n <= rest as u64 => n as usize,
        BodyKind::Length(_) => return false,
        BodyKind::Chunked => {
            let mut scanner = crate::http::h1::ChunkedScanner::new(8192);
            match scanner.scan(&d.buf.data()[head.head_len..]) {
                Ok(scan) if scan.done => scan.consumed,
                _ => return false,
            }
        }
    };
    d.buf.consume(head.head_len + body);
    true
}

async fn respond_local(
    d: &mut Downstream,
    head: &RequestHead,
    response: &LocalResponse,
    _cfg: &Listener,
) -> After {
    let keep = head.keep_alive && consume_request(d, head);
    d.out.clear();
    d.out.extend_from_slice(&response.head);
    if !keep {
        d.out.extend_from_slice(b"connection: close\r\n");
    } else if head.version == crate::http::h1::Version::Http10 {
        d.out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    d.out.extend_from_slice(b"\r\n");
    if head.method != Method::Head {
        d.out.extend_from_slice(&response.body);
    }
    match write_vec(&mut d.stream, &mut d.out).await {
        Ok(()) if keep => After::KeepAlive,
        _ => After::Close,
    }
}

async fn respond_static(
    d: &mut Downstream,
    head: &RequestHead,
    status: u16,
    _cfg: &Listener,
) -> After {
    let keep = head.keep_alive && consume_request(d, head);
    match write_static(&mut d.stream, local::error_response(status, !keep)).await {
        Ok(()) if keep => After::KeepAlive,
        _ => After::Close,
    }
}

/// Closes a connection gracefully: shut the write side, then read and drop what the client is
/// still sending (bounded in time and bytes) so that the kernel does not answer it with a reset
/// that could destroy the response in flight.
pub async fn linger_close(mut stream: TcpStream, buf: Option<ConnBuf>) {
    let _ = stream.shutdown().await;
    let mut buf = buf.unwrap_or_else(|| ConnBuf::with_capacity(4096));
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut drained = 0usize;
    while drained < 4 << 20 {
        buf.clear();
        let cap = buf.capacity();
        match monoio::time::timeout_at(deadline.into(), buf.read_from(&mut stream, cap)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
}
