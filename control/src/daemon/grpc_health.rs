//! gRPC health checks (`health_check.kind = "grpc"`): one `grpc.health.v1.Health/Check` call
//! per check, on a connection of its own, as Envoy's and Kubernetes' gRPC probes make it.
//!
//! The check passes when the call answers `SERVING`: HTTP status 200, `grpc-status` 0, and a
//! `HealthCheckResponse` whose `status` is 1. Anything else fails it, with a detail naming what
//! came back (`NOT_SERVING`, `SERVICE_UNKNOWN`, `grpc-status 12`, `HTTP status 404`, ...).
//!
//! The two messages are tiny and fixed, so they are encoded and decoded here by hand rather
//! than with a protobuf library: the request is field 1 (`service`, a string), the response
//! field 1 (`status`, an enum as a varint).

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use ringway_config::HealthCheck;
use ringway_core::http::h2::io::PollStream;
use ringway_core::io::Stream;
use ringway_core::tls::poll::PollTls;
use ringway_core::tls::ClientTls;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use super::health::{connect, io_failure};

const PATH: &str = "/grpc.health.v1.Health/Check";
/// The largest response message read (a HealthCheckResponse is 2 bytes).
const MAX_MESSAGE: usize = 1024;
/// The largest response head (and trailers) accepted.
const MAX_HEAD: u32 = 16 * 1024;

/// One check of `service` at `address`, within `config.timeout`.
pub(super) async fn check(
    address: SocketAddr,
    config: &HealthCheck,
    service: &str,
    tls: Option<(&ClientTls, &ServerName<'static>)>,
) -> Result<(), String> {
    let authority = config.host.clone().unwrap_or_else(|| address.to_string());
    let exchange = async {
        match connect(address, tls).await? {
            Stream::Plain(tcp) => {
                call(PollStream::new(tcp, Vec::new()), false, &authority, service).await
            }
            Stream::Tls(tls) => {
                if tls.connection().alpn_protocol() != Some(b"h2") {
                    return Err("tls: the endpoint did not agree to h2 by ALPN".to_string());
                }
                let parts = tls.into_parts().await.map_err(|e| io_failure("tls", e))?;
                let io = PollStream::new(parts.tcp, Vec::new());
                let io = PollTls::new(io, parts.conn, &parts.unread)
                    .map_err(|e| io_failure("tls", e))?;
                call(io, true, &authority, service).await
            }
            Stream::H2(_) => Err("unexpected h2 stream".to_string()),
        }
    };
    match monoio::time::timeout(config.timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err("timeout".to_string()),
    }
}

/// The call over `io`, the connection driven beside it (both end with this future).
async fn call<T>(io: T, tls: bool, authority: &str, service: &str) -> Result<(), String>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let h2_failure = |what: &str, e: h2::Error| format!("{what}: {e}");
    let (send, connection) = h2::client::Builder::new()
        .max_header_list_size(MAX_HEAD)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| h2_failure("h2 handshake", e))?;
    let scheme = if tls { "https" } else { "http" };
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("{scheme}://{authority}{PATH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "ringway-health-check")
        .body(())
        .map_err(|e| format!("request: {e}"))?;
    let exchange = async move {
        let mut send = send.ready().await.map_err(|e| h2_failure("h2", e))?;
        let (response, mut body) = send
            .send_request(request, false)
            .map_err(|e| h2_failure("h2 request", e))?;
        body.send_data(request_message(service), true)
            .map_err(|e| h2_failure("h2 request", e))?;
        let response = response.await.map_err(|e| h2_failure("h2 response", e))?;
        let (head, mut body) = response.into_parts();
        if head.status != http::StatusCode::OK {
            return Err(format!("HTTP status {}", head.status.as_u16()));
        }
        // A failing status in the head (trailers-only) is final. An OK there is not enough:
        // the verdict is the HealthCheckResponse, which must still follow.
        let head_status = head.headers.get("grpc-status").cloned();
        if let Some(status) = &head_status {
            grpc_status(status.as_bytes(), head.headers.get("grpc-message"))?;
        }
        let mut message = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| h2_failure("h2 body", e))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            if message.len() + chunk.len() > MAX_MESSAGE {
                return Err("response message too large".to_string());
            }
            message.extend_from_slice(&chunk);
        }
        let trailers = body
            .trailers()
            .await
            .map_err(|e| h2_failure("h2 trailers", e))?
            .unwrap_or_default();
        match trailers.get("grpc-status") {
            Some(status) => grpc_status(status.as_bytes(), trailers.get("grpc-message"))?,
            None if head_status.is_none() => return Err("no grpc-status".to_string()),
            None => {}
        }
        serving(&message)
    };
    let mut exchange = std::pin::pin!(exchange);
    let mut connection = std::pin::pin!(connection);
    poll_fn(|cx| {
        if let Poll::Ready(result) = exchange.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        match connection.as_mut().poll(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Err("h2: connection closed".to_string())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(h2_failure("h2", e))),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// The length-prefixed HealthCheckRequest for `service` ("" sends an empty message).
fn request_message(service: &str) -> Bytes {
    let mut proto = Vec::with_capacity(service.len() + 8);
    if !service.is_empty() {
        proto.push(0x0a); // field 1, length-delimited
        push_varint(&mut proto, service.len() as u64);
        proto.extend_from_slice(service.as_bytes());
    }
    let mut framed = Vec::with_capacity(5 + proto.len());
    framed.push(0); // not compressed
    framed.extend_from_slice(&(proto.len() as u32).to_be_bytes());
    framed.extend_from_slice(&proto);
    Bytes::from(framed)
}

fn push_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn varint(input: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first()?;
        *input = rest;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

fn grpc_status(status: &[u8], message: Option<&http::HeaderValue>) -> Result<(), String> {
    if status == b"0" {
        return Ok(());
    }
    let status = String::from_utf8_lossy(status);
    Err(match message.and_then(|m| m.to_str().ok()) {
        Some(m) => format!("grpc-status {status}: {m}"),
        None => format!("grpc-status {status}"),
    })
}

/// Whether the length-prefixed HealthCheckResponse in `message` says SERVING.
fn serving(message: &[u8]) -> Result<(), String> {
    if message.is_empty() {
        return Err("no HealthCheckResponse".to_string());
    }
    let malformed = || "malformed HealthCheckResponse".to_string();
    let [compressed, l0, l1, l2, l3, proto @ ..] = message else {
        return Err(malformed());
    };
    if *compressed != 0 {
        return Err("compressed HealthCheckResponse (none was offered)".to_string());
    }
    if u32::from_be_bytes([*l0, *l1, *l2, *l3]) as usize != proto.len() {
        return Err(malformed());
    }
    // Fields in any order, unknown ones skipped; a missing status is UNKNOWN (0).
    let mut status = 0;
    let mut rest = proto;
    while !rest.is_empty() {
        let tag = varint(&mut rest).ok_or_else(malformed)?;
        match tag & 7 {
            0 => {
                let value = varint(&mut rest).ok_or_else(malformed)?;
                if tag >> 3 == 1 {
                    status = value;
                }
            }
            2 => {
                let len = varint(&mut rest).ok_or_else(malformed)? as usize;
                rest = rest.get(len..).ok_or_else(malformed)?;
            }
            1 => rest = rest.get(8..).ok_or_else(malformed)?,
            5 => rest = rest.get(4..).ok_or_else(malformed)?,
            _ => return Err(malformed()),
        }
    }
    match status {
        1 => Ok(()),
        0 => Err("UNKNOWN".to_string()),
        2 => Err("NOT_SERVING".to_string()),
        3 => Err("SERVICE_UNKNOWN".to_string()),
        n => Err(format!("status {n}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_messages_are_length_prefixed_protobuf() {
        assert_eq!(&request_message("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &request_message("svc")[..],
            &[0, 0, 0, 0, 5, 0x0a, 3, b's', b'v', b'c']
        );
        let long = "x".repeat(200);
        let framed = request_message(&long);
        assert_eq!(&framed[5..8], &[0x0a, 0xc8, 0x01]);
        assert_eq!(framed.len(), 5 + 3 + 200);
    }

    #[test]
    fn responses_decode_to_a_verdict() {
        assert_eq!(serving(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(()));
        assert_eq!(
            serving(&[0, 0, 0, 0, 2, 0x08, 2]),
            Err("NOT_SERVING".into())
        );
        assert_eq!(
            serving(&[0, 0, 0, 0, 2, 0x08, 3]),
            Err("SERVICE_UNKNOWN".into())
        );
        // No status field: UNKNOWN; unknown fields before it are skipped.
        assert_eq!(serving(&[0, 0, 0, 0, 0]), Err("UNKNOWN".into()));
        assert_eq!(serving(&[0, 0, 0, 0, 5, 0x12, 1, b'z', 0x08, 1]), Ok(()));
        // Lengths that lie, compression, truncation.
        assert!(serving(&[0, 0, 0, 0, 9, 0x08, 1]).is_err());
        assert!(serving(&[1, 0, 0, 0, 2, 0x08, 1]).is_err());
        assert!(serving(&[0, 0, 0]).is_err());
        assert!(serving(&[0, 0, 0, 0, 2, 0x08, 0x80]).is_err());
    }

    #[test]
    fn statuses_name_what_failed() {
        assert_eq!(grpc_status(b"0", None), Ok(()));
        let message = http::HeaderValue::from_static("no such method");
        assert_eq!(
            grpc_status(b"12", Some(&message)),
            Err("grpc-status 12: no such method".into())
        );
    }

    /// How a server answers the check in [`answer`].
    #[derive(Clone, Copy)]
    enum Answer {
        /// grpc-status 0 in the head, then a message, then trailers with grpc-status 0.
        HeadOkThen(u8),
        /// The status in the head with END_STREAM: no message at all.
        TrailersOnly(&'static str),
        /// The usual: head, message, trailers.
        Normal(u8),
    }

    /// Runs `call` against an HTTP/2 server over an in-memory pipe that answers as told.
    fn answer(how: Answer) -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (client, server) = tokio::io::duplex(64 * 1024);
            let serve = async move {
                let mut conn = h2::server::handshake(server).await.unwrap();
                let Some(Ok((_req, mut respond))) = conn.accept().await else {
                    return;
                };
                let ok = |status: &str| {
                    http::Response::builder()
                        .status(200)
                        .header("content-type", "application/grpc")
                        .header("grpc-status", status)
                        .body(())
                        .unwrap()
                };
                let plain = http::Response::builder()
                    .status(200)
                    .header("content-type", "application/grpc")
                    .body(())
                    .unwrap();
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                let message = |status| Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]);
                match how {
                    Answer::TrailersOnly(status) => {
                        respond.send_response(ok(status), true).unwrap();
                    }
                    Answer::HeadOkThen(status) | Answer::Normal(status) => {
                        let head = match how {
                            Answer::HeadOkThen(_) => ok("0"),
                            _ => plain,
                        };
                        let mut body = respond.send_response(head, false).unwrap();
                        body.send_data(message(status), false).unwrap();
                        body.send_trailers(trailers).unwrap();
                    }
                }
                // Keep the connection up until the client is done with it.
                while conn.accept().await.is_some() {}
            };
            let check = call(client, false, "health.test", "");
            tokio::select! {
                result = check => result,
                _ = serve => Err("server ended first".to_string()),
            }
        })
    }

    #[test]
    fn the_message_decides_not_an_ok_in_the_head() {
        assert_eq!(answer(Answer::Normal(1)), Ok(()));
        assert_eq!(answer(Answer::Normal(2)), Err("NOT_SERVING".into()));
        assert_eq!(answer(Answer::HeadOkThen(2)), Err("NOT_SERVING".into()));
        assert_eq!(answer(Answer::HeadOkThen(1)), Ok(()));
        assert_eq!(
            answer(Answer::TrailersOnly("0")),
            Err("no HealthCheckResponse".into())
        );
        assert_eq!(
            answer(Answer::TrailersOnly("14")),
            Err("grpc-status 14".into())
        );
    }
}
