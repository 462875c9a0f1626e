//! The admin listener (`[admin] listen`): a small HTTP/1.1 server on the control side (never
//! on a shard). `GET /healthz` is 200 while the process runs, `GET /ready` is 503 while
//! draining and 200 otherwise, `GET /metrics` is the Prometheus text of a fresh flush round.
//! Keep-alive and `connection: close` both work; requests with a body are refused.
//!
//! Threading: one thread ("ringway-admin") running a small monoio runtime on epoll, with one
//! task per connection. A liveness probe must keep getting its answer while clients idle or
//! send a byte at a time, so a connection costs a task and a few KiB of buffer, not a thread:
//! a thousand hostile connections are a thousand parked tasks that the event loop never
//! looks at until their bytes arrive or their deadline fires. The limits:
//! - the whole request head must arrive within [`HEAD_TIMEOUT`], counted from the accept for
//!   the first request and from its first byte for a later one (a byte every second does not
//!   extend it); late heads get `408` and a close;
//! - between requests a keep-alive connection may idle [`IDLE_TIMEOUT`];
//! - at most [`MAX_CONNECTIONS`] connections are served at once; past that a new connection
//!   gets `503` with `connection: close` (at most as many again are being refused at once,
//!   beyond that they are closed at accept).
//!
//! Request heads are parsed by the data plane's strict codec (`ringway_core::http::h1`).
//! `/metrics` asks the control loop over its channel and polls for the answer, so a slow
//! flush round never blocks the other connections.

use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use ringway_core::http::h1::{
    parse_request, reason_phrase, BodyKind, HeaderRef, Method, RequestLimits,
};
use serde_json::Value;

use super::{Command, Request};

/// Connections served at once; more get a 503.
const MAX_CONNECTIONS: usize = 2048;
/// Overrides [`MAX_CONNECTIONS`] (the tests use a small cap).
const MAX_CONNECTIONS_ENV: &str = "RINGWAY_ADMIN_MAX_CONNECTIONS";
/// How long a whole request head may take.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Overrides [`HEAD_TIMEOUT`], in milliseconds.
const HEAD_TIMEOUT_ENV: &str = "RINGWAY_ADMIN_HEAD_TIMEOUT_MS";
/// Idle time allowed between requests on a keep-alive connection.
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long writing one response may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `/metrics` waits for the control loop.
const METRICS_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `/metrics` looks for the control loop's answer.
const METRICS_POLL: Duration = Duration::from_millis(5);
/// How long a refused connection is read from after its 503 (so the answer is not lost to a
/// reset when the client's request arrives after the close).
const REFUSE_LINGER: Duration = Duration::from_millis(500);
const LIMITS: RequestLimits = RequestLimits {
    max_request_line: 8 * 1024,
    max_head: 16 * 1024,
};
/// Bytes asked of one read.
const READ_CHUNK: usize = 2048;

pub fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr} (admin): {e}"))
}

/// Limits, from the constants or (for the tests) the environment.
struct Settings {
    max_connections: usize,
    head_timeout: Duration,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        Settings {
            max_connections: var(MAX_CONNECTIONS_ENV)
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(MAX_CONNECTIONS),
            head_timeout: var(HEAD_TIMEOUT_ENV).map_or(HEAD_TIMEOUT, Duration::from_millis),
        }
    }
}

/// What every connection task shares (one thread: `Rc` and `Cell`).
struct Shared {
    commands: Sender<Request>,
    draining: Arc<AtomicBool>,
    settings: Settings,
    serving: std::cell::Cell<usize>,
    refusing: std::cell::Cell<usize>,
}

pub fn spawn(listener: TcpListener, commands: Sender<Request>, draining: Arc<AtomicBool>) {
    let settings = Settings::from_env();
    std::thread::Builder::new()
        .name("ringway-admin".into())
        .spawn(move || {
            let Some(mut rt) = super::small_runtime("admin listener") else {
                return;
            };
            let shared = Rc::new(Shared {
                commands,
                draining,
                settings,
                serving: 0.into(),
                refusing: 0.into(),
            });
            rt.block_on(accept_loop(listener, shared));
        })
        .expect("spawning the admin thread");
}

async fn accept_loop(listener: TcpListener, shared: Rc<Shared>) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| monoio::net::TcpListener::from_std(listener))
    {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "the admin listener cannot join its runtime");
            return;
        }
    };
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: wait instead of spinning.
                tracing::debug!(error = %e, "admin accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let cap = shared.settings.max_connections;
        if shared.serving.get() < cap {
            shared.serving.set(shared.serving.get() + 1);
            let shared = shared.clone();
            monoio::spawn(async move {
                serve(stream, &shared).await;
                shared.serving.set(shared.serving.get() - 1);
            });
        } else if shared.refusing.get() < cap {
            shared.refusing.set(shared.refusing.get() + 1);
            let shared = shared.clone();
            monoio::spawn(async move {
                refuse(stream).await;
                shared.refusing.set(shared.refusing.get() - 1);
            });
        }
        // Else the stream is dropped: closed without an answer.
    }
}

/// Past the cap: a 503, then what the client sends is read and dropped for a moment.
async fn refuse(mut stream: TcpStream) {
    let response = response(
        503,
        "text/plain",
        b"503 Service Unavailable\n",
        false,
        false,
    );
    if write(&mut stream, response).await.is_err() {
        return;
    }
    let _ = monoio::io::AsyncWriteRent::shutdown(&mut stream).await;
    let end = Instant::now() + REFUSE_LINGER;
    let mut chunk = Vec::with_capacity(READ_CHUNK);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match monoio::time::timeout(left, stream.read(chunk)).await {
            Ok((Ok(n), back)) if n > 0 => chunk = back,
            _ => return,
        }
        chunk.clear();
    }
}

/// One connection: requests in sequence until the client closes, asks to close, errs or
/// runs out of time.
async fn serve(mut stream: TcpStream, shared: &Shared) {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut chunk: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut headers: Vec<HeaderRef> = Vec::new();
    // The first head's deadline runs from the accept.
    let mut deadline = Some(Instant::now() + shared.settings.head_timeout);
    loop {
        let head = loop {
            match parse_request(&buf, &LIMITS, &mut headers) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(e) => {
                    let status = e.status();
                    let body = format!("{status} {}\n", reason_phrase(status));
                    let _ = write(
                        &mut stream,
                        response(status, "text/plain", body.as_bytes(), false, false),
                    )
                    .await;
                    return;
                }
            }
            let wait = match deadline {
                Some(end) => end.saturating_duration_since(Instant::now()),
                None => IDLE_TIMEOUT,
            };
            let read = monoio::time::timeout(wait, stream.read(chunk)).await;
            let Ok((result, back)) = read else {
                if deadline.is_some() {
                    let _ = write(
                        &mut stream,
                        response(408, "text/plain", b"408 Request Timeout\n", false, false),
                    )
                    .await;
                }
                // An idle keep-alive connection past its time: closed without an answer.
                return;
            };
            chunk = back;
            match result {
                Ok(n) if n > 0 => {
                    buf.extend_from_slice(&chunk);
                    chunk.clear();
                    // A later head's deadline runs from its first byte.
                    deadline.get_or_insert_with(|| Instant::now() + shared.settings.head_timeout);
                }
                _ => return,
            }
        };
        let path = head.path.get(&buf)[..head.path_len_without_query].to_vec();
        buf.drain(..head.head_len);
        let has_body = !matches!(head.body, BodyKind::None | BodyKind::Length(0));
        if has_body {
            // Nothing here takes a body, and it is not read: answer and close.
            let _ = write(
                &mut stream,
                response(400, "text/plain", b"400 Bad Request\n", false, false),
            )
            .await;
            return;
        }
        let keep = head.keep_alive;
        let head_only = head.method == Method::Head;
        let (status, kind, body) = if matches!(head.method, Method::Get | Method::Head) {
            route(&path, shared).await
        } else {
            (405, "text/plain", b"405 Method Not Allowed\n".to_vec())
        };
        let sent = write(&mut stream, response(status, kind, &body, keep, head_only)).await;
        if sent.is_err() || !keep {
            return;
        }
        deadline = if buf.is_empty() {
            None
        } else {
            Some(Instant::now() + shared.settings.head_timeout)
        };
    }
}

/// The answer to a GET or HEAD of `path` (without its query).
async fn route(path: &[u8], shared: &Shared) -> (u16, &'static str, Vec<u8>) {
    match path {
        b"/healthz" => (200, "text/plain", b"ok\n".to_vec()),
        b"/ready" if shared.draining.load(Ordering::SeqCst) => {
            (503, "text/plain", b"draining\n".to_vec())
        }
        b"/ready" => (200, "text/plain", b"ready\n".to_vec()),
        b"/metrics" => match metrics(&shared.commands).await {
            Some(text) => (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                text.into_bytes(),
            ),
            None => (503, "text/plain", b"503 Service Unavailable\n".to_vec()),
        },
        _ => (404, "text/plain", b"404 Not Found\n".to_vec()),
    }
}

/// A fresh flush round's Prometheus text from the control loop; `None` when the loop is busy
/// (its queue full), gone, or does not answer in time.
async fn metrics(commands: &Sender<Request>) -> Option<String> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    commands
        .try_send(Request {
            command: Command::Metrics,
            origin: "admin",
            reply: Some(tx),
        })
        .ok()?;
    match wait_reply(&rx, METRICS_TIMEOUT).await? {
        Value::String(text) => Some(text),
        _ => None,
    }
}

/// Polls `rx` without blocking the runtime's other connections.
async fn wait_reply(rx: &Receiver<Value>, within: Duration) -> Option<Value> {
    let end = Instant::now() + within;
    loop {
        match rx.try_recv() {
            Ok(value) => return Some(value),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if Instant::now() >= end => return None,
            Err(TryRecvError::Empty) => monoio::time::sleep(METRICS_POLL).await,
        }
    }
}

fn response(
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\ncache-control: no-store\r\n",
        reason_phrase(status),
        body.len()
    );
    if !keep_alive {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(body);
    }
    bytes
}

/// Writes `bytes` whole within [`WRITE_TIMEOUT`].
async fn write(stream: &mut TcpStream, bytes: Vec<u8>) -> std::io::Result<()> {
    match monoio::time::timeout(WRITE_TIMEOUT, stream.write_all(bytes)).await {
        Ok((result, _)) => result.map(|_| ()),
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_carry_length_and_close() {
        let text = String::from_utf8(response(503, "text/plain", b"x\n", false, false)).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("content-length: 2\r\n"), "{text}");
        assert!(text.contains("connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nx\n"), "{text}");
        let head = String::from_utf8(response(200, "text/plain", b"ok\n", true, true)).unwrap();
        assert!(
            !head.contains("connection:") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
    }
}
