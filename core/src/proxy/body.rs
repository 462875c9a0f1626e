//! Streaming bodies through fixed buffers: client to upstream and upstream to client. Nothing
//! here holds a whole body; memory per exchange is the two connection buffers.

use std::rc::Rc;
use std::time::{Duration, Instant};

use ringway_config::Listener;

use super::head::ClientFraming;
use super::Downstream;
use crate::error::{Error, ProxyError};
use crate::http::h1::{write_chunk_header, BodyKind, ChunkedScanner, ResponseBody, LAST_CHUNK};
use crate::io::write_static;
use crate::metrics::ErrorCause;
use crate::rt::coarse::CoarseTimers;
use crate::upstream::UpstreamConn;

/// Largest trailer section accepted after a chunked body.
pub const MAX_TRAILER: usize = 8 * 1024;

async fn read_client(d: &mut Downstream, cfg: &Listener) -> Result<(), Error> {
    // The buffer does not grow here (a full one has its unconsumed bytes sent first).
    match read_client_growing(d, cfg, 0).await? {
        true => Ok(()),
        false => Err(ProxyError::new(
            ErrorCause::ClientClosed,
            "client read failed",
            None,
        )),
    }
}

async fn write_upstream(
    d: &mut Downstream,
    up: &mut UpstreamConn,
    n: usize,
    idle: Duration,
) -> Result<(), Error> {
    let timers = d.timers.clone();
    let write = d.buf.write_range_to(&mut up.stream, 0, n);
    match timers.within(Instant::now() + idle, write).await {
        Err(_) => Err(ProxyError::new(
            ErrorCause::UpstreamTimeout,
            "upstream write timeout",
            None,
        )),
        Ok(Err(e)) => Err(ProxyError::new(
            ErrorCause::UpstreamClosed,
            "upstream write failed",
            Some(e),
        )),
        Ok(Ok(())) => {
            d.buf.consume(n);
            Ok(())
        }
    }
}

/// Reads the request body, whose first bytes are at the front of `d.buf`, until it is all in
/// the buffer, when its payload is at most `limit` bytes; returns its length in the buffer
/// then, `None` when it is larger (what was read stays at the front, to be streamed).
pub async fn buffer_request_body(
    d: &mut Downstream,
    kind: BodyKind,
    limit: u64,
    cfg: &Listener,
) -> Result<Option<usize>, Error> {
    match kind {
        BodyKind::None => Ok(Some(0)),
        BodyKind::Length(n) if n > limit => Ok(None),
        BodyKind::Length(n) => {
            let n = n as usize;
            while d.buf.len() < n {
                if !read_client_growing(d, cfg, n).await? {
                    return Ok(None);
                }
            }
            Ok(Some(n))
        }
        BodyKind::Chunked => {
            // Chunk framing adds a few bytes per chunk: allow some room over the payload.
            let max = limit as usize + limit as usize / 4 + MAX_TRAILER;
            loop {
                let mut scanner = ChunkedScanner::new(MAX_TRAILER);
                let scan = scanner.scan(d.buf.data()).map_err(|_| {
                    ProxyError::new(ErrorCause::BadRequest, "bad chunked request body", None)
                })?;
                if scan.done {
                    return Ok(Some(scan.consumed));
                }
                if scanner.payload_bytes() > limit || !read_client_growing(d, cfg, max).await? {
                    return Ok(None);
                }
            }
        }
    }
}

/// Reads more of the request into `d.buf`, letting it grow to `max` bytes; false when it is
/// full at `max`.
async fn read_client_growing(
    d: &mut Downstream,
    cfg: &Listener,
    max: usize,
) -> Result<bool, Error> {
    let max = max.max(d.buf.capacity());
    let timers = d.timers.clone();
    let read = d.buf.read_from(&mut d.stream, max);
    match timers.within(Instant::now() + cfg.body_timeout, read).await {
        Err(_) => Err(ProxyError::new(
            ErrorCause::ClientTimeout,
            "request body timeout",
            None,
        )),
        Ok(Ok(0)) => Err(ProxyError::new(
            ErrorCause::ClientClosed,
            "client closed during the request body",
            None,
        )),
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::OutOfMemory => Ok(false),
        Ok(Err(e)) => Err(ProxyError::new(
            ErrorCause::ClientClosed,
            "client read failed",
            Some(e),
        )),
    }
}

/// Streams the request body, whose first bytes are at the front of `d.buf`, to the upstream.
pub async fn send_request_body(
    d: &mut Downstream,
    up: &mut UpstreamConn,
    kind: BodyKind,
    cfg: &Listener,
    idle: Duration,
) -> Result<(), Error> {
    match kind {
        BodyKind::None => Ok(()),
        BodyKind::Length(mut remaining) => {
            while remaining > 0 {
                if d.buf.is_empty() {
                    read_client(d, cfg).await?;
                }
                let n = (d.buf.len() as u64).min(remaining) as usize;
                write_upstream(d, up, n, idle).await?;
                remaining -= n as u64;
            }
            Ok(())
        }
        BodyKind::Chunked => {
            let mut scanner = ChunkedScanner::new(MAX_TRAILER);
            loop {
                if d.buf.is_empty() {
                    read_client(d, cfg).await?;
                }
                let scan = scanner.scan(d.buf.data()).map_err(|_| {
                    ProxyError::new(ErrorCause::BadRequest, "bad chunked request body", None)
                })?;
                if scanner.payload_bytes() > cfg.max_request_body {
                    return Err(ProxyError::new(
                        ErrorCause::BodyTooLarge,
                        "request body over the limit",
                        None,
                    ));
                }
                write_upstream(d, up, scan.consumed, idle).await?;
                if scan.done {
                    return Ok(());
                }
            }
        }
    }
}

/// Where a relayed response body ended.
pub struct Relayed {
    /// The upstream connection ended cleanly after the body and may be reused.
    pub upstream_clean: bool,
}

async fn read_upstream(
    timers: &Rc<CoarseTimers>,
    up: &mut UpstreamConn,
    idle: Duration,
) -> Result<usize, Error> {
    let cap = up.buf.capacity();
    let read = up.buf.read_from(&mut up.stream, cap);
    match timers.within(Instant::now() + idle, read).await {
        Err(_) => Err(ProxyError::after_head(
            ErrorCause::UpstreamTimeout,
            "upstream idle timeout in the response body",
            None,
        )),
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(ProxyError::after_head(
            ErrorCause::UpstreamClosed,
            "upstream read failed in the response body",
            Some(e),
        )),
    }
}

async fn write_client(d: &mut Downstream, up: &mut UpstreamConn, n: usize) -> Result<(), Error> {
    up.buf
        .write_range_to(&mut d.stream, 0, n)
        .await
        .map_err(ProxyError::client_write)?;
    up.buf.consume(n);
    d.written += n as u64;
    Ok(())
}

/// Makes sure some of a chunked body is in `up.buf`, reading when it holds none; the
/// upstream closing there cuts the body short.
async fn more_chunked(d: &Downstream, up: &mut UpstreamConn, idle: Duration) -> Result<(), Error> {
    if up.buf.is_empty() && read_upstream(&d.timers, up, idle).await? == 0 {
        return Err(ProxyError::after_head(
            ErrorCause::UpstreamClosed,
            "upstream closed inside a chunked body",
            None,
        ));
    }
    Ok(())
}

fn bad_chunked() -> Error {
    ProxyError::after_head(ErrorCause::BadResponse, "bad chunked response body", None)
}

/// Relays a chunked response body to a client that cannot take chunked (HTTP/1.0): only the
/// chunk data, the end of the body told by closing the connection. Copied through `d.out`,
/// a path for old clients only.
async fn relay_dechunked(
    d: &mut Downstream,
    up: &mut UpstreamConn,
    idle: Duration,
) -> Result<Relayed, Error> {
    let mut scanner = ChunkedScanner::new(MAX_TRAILER);
    loop {
        more_chunked(d, up, idle).await?;
        d.out.clear();
        let input = up.buf.data();
        let scan = scanner
            .scan_data(input, |range| d.out.extend_from_slice(&input[range]))
            .map_err(|_| bad_chunked())?;
        up.buf.consume(scan.consumed);
        if !d.out.is_empty() {
            d.written += d.out.len() as u64;
            crate::io::write_vec(&mut d.stream, &mut d.out)
                .await
                .map_err(ProxyError::client_write)?;
        }
        if scan.done {
            return Ok(Relayed {
                upstream_clean: up.buf.is_empty(),
            });
        }
    }
}

/// Relays the response body, whose first bytes are at the front of `up.buf`, to the client.
pub async fn relay_response_body(
    d: &mut Downstream,
    up: &mut UpstreamConn,
    body: ResponseBody,
    framing: ClientFraming,
    idle: Duration,
) -> Result<Relayed, Error> {
    match body {
        ResponseBody::None => Ok(Relayed {
            upstream_clean: up.buf.is_empty(),
        }),
        ResponseBody::Length(mut remaining) => {
            while remaining > 0 {
                if up.buf.is_empty() && read_upstream(&d.timers, up, idle).await? == 0 {
                    return Err(ProxyError::after_head(
                        ErrorCause::UpstreamClosed,
                        "upstream closed before the body ended",
                        None,
                    ));
                }
                let n = (up.buf.len() as u64).min(remaining) as usize;
                write_client(d, up, n).await?;
                remaining -= n as u64;
            }
            Ok(Relayed {
                upstream_clean: up.buf.is_empty(),
            })
        }
        ResponseBody::Chunked if framing == ClientFraming::Close => {
            relay_dechunked(d, up, idle).await
        }
        ResponseBody::Chunked => {
            let mut scanner = ChunkedScanner::new(MAX_TRAILER);
            loop {
                more_chunked(d, up, idle).await?;
                let scan = scanner.scan(up.buf.data()).map_err(|_| bad_chunked())?;
                write_client(d, up, scan.consumed).await?;
                if scan.done {
                    return Ok(Relayed {
                        upstream_clean: up.buf.is_empty(),
                    });
                }
            }
        }
        ResponseBody::UntilClose => {
            loop {
                if up.buf.is_empty() && read_upstream(&d.timers, up, idle).await? == 0 {
                    // Over TLS a bare TCP close (no close_notify) could be a cut made on the
                    // path; it ends the body all the same, as nginx and HAProxy take it,
                    // because many TLS servers close that way.
                    if up.stream.ended_uncleanly() {
                        tracing::debug!("upstream TLS stream ended without close_notify");
                    }
                    break;
                }
                let n = up.buf.len();
                if framing == ClientFraming::Chunked {
                    d.out.clear();
                    write_chunk_header(&mut d.out, n);
                    d.written += d.out.len() as u64 + 2;
                    crate::io::write_vec(&mut d.stream, &mut d.out)
                        .await
                        .map_err(ProxyError::client_write)?;
                    write_client(d, up, n).await?;
                    write_static(&mut d.stream, b"\r\n")
                        .await
                        .map_err(ProxyError::client_write)?;
                } else {
                    write_client(d, up, n).await?;
                }
            }
            if framing == ClientFraming::Chunked {
                d.written += LAST_CHUNK.len() as u64;
                write_static(&mut d.stream, LAST_CHUNK)
                    .await
                    .map_err(ProxyError::client_write)?;
            }
            Ok(Relayed {
                upstream_clean: false,
            })
        }
    }
}

/// Carries the rest of a request body from an h2 client's stream to an h2 upstream's,
/// beside the exchange (see `forward::spawn_duplex`): `rest` first, then what the client
/// sends, until its stream ends. Bounded like any request body: by the listener's
/// `max_request_body` and `body_timeout`, and the upstream's idle timeout per write. A body
/// that fails or overruns resets the upstream's stream, so the upstream never takes a cut
/// body for a whole one.
pub async fn pump(
    timers: Rc<CoarseTimers>,
    mut client: crate::io::Stream,
    mut upstream: crate::io::Stream,
    mut rest: crate::io::ConnBuf,
    (limit, body_timeout, idle): (u64, Duration, Duration),
) {
    let mut carried = 0u64;
    let done = loop {
        if !rest.is_empty() {
            let n = rest.len();
            carried += n as u64;
            if carried > limit.saturating_add(limit / 4 + MAX_TRAILER as u64) {
                break false;
            }
            let write = rest.write_range_to(&mut upstream, 0, n);
            match timers.within(Instant::now() + idle, write).await {
                Ok(Ok(())) => rest.consume(n),
                _ => break false,
            }
        }
        if upstream.bridge().is_some_and(|b| b.sent_whole()) {
            break true;
        }
        let cap = rest.capacity().max(READ_CHUNK);
        let read = rest.read_from(&mut client, cap);
        match timers.within(Instant::now() + body_timeout, read).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break false,
        }
    };
    if !done {
        if let Some(sink) = upstream.bridge().and_then(|b| b.sink.as_ref()) {
            sink.shared.target.borrow_mut().reset(h2::Reason::CANCEL);
        }
    }
}

/// Bytes read from a client's stream per read in [`pump`].
const READ_CHUNK: usize = 16 * 1024;
