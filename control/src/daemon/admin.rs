//! The admin listener (`[admin] listen`): a small HTTP/1.1 server on std threads, on the
//! control side (never on a shard). `GET /healthz` is 200 while the process runs, `GET
//! /ready` is 503 while draining and 200 otherwise, `GET /metrics` is the Prometheus text of
//! a fresh flush round. Keep-alive and `connection: close` both work; anything fancier
//! (bodies, pipelining beyond sequential requests, chunked uploads) is refused.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use serde_json::Value;

use super::{Command, Request};

/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 32;
/// Longest request head.
const MAX_HEAD: usize = 16 * 1024;
/// Idle time allowed between (and within) requests.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `/metrics` waits for the control loop.
const METRICS_TIMEOUT: Duration = Duration::from_secs(10);

pub fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr} (admin): {e}"))
}

pub fn spawn(listener: TcpListener, commands: Sender<Request>, draining: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("ringway-admin".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    continue;
                }
                let (commands, draining, active) =
                    (commands.clone(), draining.clone(), active.clone());
                let _ = std::thread::Builder::new()
                    .name("ringway-admin-conn".into())
                    .spawn(move || {
                        serve(stream, &commands, &draining);
                        active.fetch_sub(1, Ordering::SeqCst);
                    });
            }
        })
        .expect("spawning the admin thread");
}

struct Head {
    method: String,
    path: String,
    keep_alive: bool,
    has_body: bool,
}

fn serve(mut stream: TcpStream, commands: &Sender<Request>, draining: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let end = loop {
            if let Some(end) = find_head_end(&buf) {
                break end;
            }
            if buf.len() > MAX_HEAD {
                let _ = respond(
                    &mut stream,
                    431,
                    "text/plain",
                    b"431 Request Header Fields Too Large\n",
                    false,
                    false,
                );
                return;
            }
            match stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        };
        // A head that does not parse, or a request with a body (nothing here takes one): 400.
        let head = match parse_head(&buf[..end]) {
            Some(head) if !head.has_body => head,
            _ => {
                let _ = respond(
                    &mut stream,
                    400,
                    "text/plain",
                    b"400 Bad Request\n",
                    false,
                    false,
                );
                return;
            }
        };
        buf.drain(..end);
        let head_only = head.method == "HEAD";
        let keep = head.keep_alive;
        let (status, kind, body): (u16, &str, Vec<u8>) = if head.method != "GET" && !head_only {
            (405, "text/plain", b"405 Method Not Allowed\n".to_vec())
        } else {
            match head.path.split('?').next().unwrap_or("") {
                "/healthz" => (200, "text/plain", b"ok\n".to_vec()),
                "/ready" if draining.load(Ordering::SeqCst) => {
                    (503, "text/plain", b"draining\n".to_vec())
                }
                "/ready" => (200, "text/plain", b"ready\n".to_vec()),
                "/metrics" => match metrics(commands) {
                    Some(text) => (
                        200,
                        "text/plain; version=0.0.4; charset=utf-8",
                        text.into_bytes(),
                    ),
                    None => (503, "text/plain", b"503 Service Unavailable\n".to_vec()),
                },
                _ => (404, "text/plain", b"404 Not Found\n".to_vec()),
            }
        };
        if respond(&mut stream, status, kind, &body, keep, head_only).is_err() || !keep {
            return;
        }
    }
}

fn metrics(commands: &Sender<Request>) -> Option<String> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    commands
        .send(Request {
            command: Command::Metrics,
            origin: "admin",
            reply: Some(tx),
        })
        .ok()?;
    match rx.recv_timeout(METRICS_TIMEOUT).ok()? {
        Value::String(text) => Some(text),
        _ => None,
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn parse_head(head: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (method, path, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !path.starts_with('/') {
        return None;
    }
    let mut keep_alive = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return None,
    };
    let mut has_body = false;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "connection" => {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case("keep-alive") {
                        keep_alive = true;
                    }
                }
            }
            "content-length" => has_body |= value != "0",
            "transfer-encoding" => has_body = true,
            _ => {}
        }
    }
    Some(Head {
        method: method.to_string(),
        path: path.to_string(),
        keep_alive,
        has_body,
    })
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\ncache-control: no-store\r\n",
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
    stream.write_all(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_with_keep_alive_rules() {
        let h = parse_head(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(
            (h.method.as_str(), h.path.as_str(), h.keep_alive),
            ("GET", "/ready", true)
        );
        let h = parse_head(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        let h = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        let h = parse_head(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n").unwrap();
        assert!(h.has_body);
        assert!(parse_head(b"GET / HTTP/2\r\n\r\n").is_none());
        assert!(parse_head(b"GET  / HTTP/1.1\r\n\r\n").is_none());
        assert!(parse_head(b"GET / HTTP/1.1\r\nbad header\r\n\r\n").is_none());
    }
}
