//! HTTP/2 client connections: the h2 crate runs the protocol (with the limits below), and each
//! stream is served by the same pipeline as an HTTP/1.1 request: its head built from the
//! HEADERS frame ([`request_head`]), its body and the answer carried by a
//! [`Bridge`](crate::http::h2::bridge::Bridge).
//!
//! A connection is one task that drives the h2 connection (accepting streams, reading and
//! writing frames); each stream is a task of its own, so a slow stream waits alone. The
//! connection says GOAWAY (and finishes the streams it took) when the shard drains, when a
//! reload removes its listener, or after the listener's idle timeout with no stream open.

use std::cell::Cell;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::header::CONTENT_TYPE;
use tokio::io::{AsyncRead, AsyncWrite};

use super::buffers::DownstreamPool;
use super::{one_request, record, Conn};
use crate::http::h1::RequestLimits;
use crate::http::h2::bridge::{grpc_timeout, Bridge, Sink, Source};
use crate::http::h2::head::request_head;
use crate::io::Stream;
use crate::metrics::ErrorCause;
use crate::state::Shard;
use crate::tls::stream::TlsSession;
use crate::tls::ClientIdentity;

/// What is left of a request's body after its complete answer is read and dropped, up to
/// this much and this long, before the stream is reset (RST_STREAM(NO_ERROR)) instead.
const DISCARD_MAX: usize = 64 * 1024;
const DISCARD_TIME: Duration = Duration::from_secs(1);

/// Streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
pub const MAX_CONCURRENT_STREAMS: u32 = 128;
/// Each stream's receive window: what one stream may have in flight towards the gateway.
pub const STREAM_WINDOW: u32 = 64 * 1024;
/// Largest decoded header list a client may send (SETTINGS_MAX_HEADER_LIST_SIZE).
pub const MAX_HEADER_LIST: u32 = 16 * 1024;

/// The server side of the h2 crate as the gateway configures it. The connection window is
/// every stream's window together, so that streams stalled at their own limit can never
/// hold the window the others need; the reset and error budgets end a connection that
/// resets streams (or makes the gateway reset them) faster than it does work.
fn builder() -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(STREAM_WINDOW * MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .header_table_size(4096)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(Some(256))
        .max_concurrent_reset_streams(256)
        .reset_stream_duration(Duration::from_secs(5))
        .max_send_buffer_size(64 * 1024);
    b
}

/// What every stream of one connection shares.
struct ConnInfo {
    peer: SocketAddr,
    may_forward: bool,
    tls: bool,
    identity: Option<Rc<ClientIdentity>>,
    session: Option<Rc<TlsSession>>,
    listener: Rc<super::ListenerHandle>,
    /// Streams in progress.
    open: Cell<usize>,
    /// When the last stream in progress ended.
    idle_since: Cell<Instant>,
}

/// Serves an HTTP/2 connection until it closes. `io` starts right after what was already
/// read of it (a plain connection's preface is replayed by the caller's `PollStream`).
pub(crate) async fn serve<IO>(
    shard: &Rc<Shard>,
    downstreams: &Rc<DownstreamPool>,
    conn: &Conn,
    io: IO,
    identity: Option<Rc<ClientIdentity>>,
    session: Option<TlsSession>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (header_timeout, idle_timeout) = {
        let sep = shard.epoch();
        let Some(index) = sep.listener_index(&conn.listener.name) else {
            return;
        };
        let cfg = &sep.epoch.config.listeners[index];
        (cfg.header_timeout, cfg.idle_timeout)
    };
    let handshake = builder().handshake::<_, Bytes>(io);
    let mut h2 = match shard
        .timers
        .within(Instant::now() + header_timeout, handshake)
        .await
    {
        Ok(Ok(h2)) => h2,
        Ok(Err(e)) => {
            tracing::debug!(shard = shard.index, peer = %conn.peer.get(), error = %e, "h2 handshake failed");
            return;
        }
        Err(_) => return,
    };
    let info = Rc::new(ConnInfo {
        peer: conn.peer.get(),
        may_forward: conn.may_forward,
        tls: session.is_some(),
        identity,
        session: session.map(Rc::new),
        listener: conn.listener.clone(),
        open: Cell::new(0),
        idle_since: Cell::new(Instant::now()),
    });
    let stop = conn.listener.stop.clone();
    let mut closing = false;
    loop {
        if !closing && (shard.is_draining() || stop.is_raised()) {
            h2.graceful_shutdown();
            closing = true;
        }
        // With streams open the idle check is only armed again: streams end without waking
        // this task, so the timer is what notices the connection went idle.
        let now = Instant::now();
        let idle_check = if info.open.get() == 0 {
            info.idle_since.get() + idle_timeout
        } else {
            now + idle_timeout
        };
        let accepted = monoio::select! {
            accepted = h2.accept() => accepted,
            _ = shard.draining.wait(), if !closing => continue,
            _ = stop.wait(), if !closing => continue,
            _ = shard.timers.wait_until(idle_check), if !closing => {
                if info.open.get() == 0 && Instant::now() >= info.idle_since.get() + idle_timeout {
                    h2.graceful_shutdown();
                    closing = true;
                }
                continue;
            }
        };
        match accepted {
            Some(Ok((request, respond))) => {
                info.open.set(info.open.get() + 1);
                let (shard, downstreams, info) = (shard.clone(), downstreams.clone(), info.clone());
                monoio::spawn(async move {
                    Box::pin(stream(&shard, &downstreams, &info, request, respond)).await;
                    info.open.set(info.open.get() - 1);
                    if info.open.get() == 0 {
                        info.idle_since.set(Instant::now());
                    }
                });
            }
            Some(Err(e)) => {
                // The h2 crate has answered with GOAWAY (or the peer went away).
                tracing::debug!(shard = shard.index, peer = %info.peer, error = %e, "h2 connection error");
                break;
            }
            None => break,
        }
    }
    // Frames queued for streams still finishing go out before the socket closes.
    let _ = shard
        .timers
        .within(
            Instant::now() + Duration::from_secs(2),
            poll_fn(|cx| h2.poll_closed(cx)),
        )
        .await;
}

/// Serves one stream as one request of the pipeline.
async fn stream(
    shard: &Rc<Shard>,
    downstreams: &DownstreamPool,
    info: &ConnInfo,
    request: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
) {
    let (head, body) = request.into_parts();
    let limits = {
        let sep = shard.epoch();
        let Some(index) = sep.listener_index(&info.listener.name) else {
            return;
        };
        let cfg = &sep.epoch.config.listeners[index];
        RequestLimits {
            max_request_line: cfg.max_request_line,
            max_head: cfg.max_header_bytes,
        }
    };
    let grpc = head
        .headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    // A gRPC call's deadline bounds the gateway's wait for the upstream's answer.
    let deadline = head
        .headers
        .get("grpc-timeout")
        .filter(|_| grpc)
        .and_then(|v| grpc_timeout(v.as_bytes()))
        .map(|t| Instant::now() + t);
    let end_stream = body.is_end_stream();
    let sink = Sink::respond(
        respond,
        grpc,
        head.method == http::Method::HEAD,
        shard.timers.clone(),
    );
    let shared = sink.shared.clone();
    let chunked = !end_stream && !head.headers.contains_key(http::header::CONTENT_LENGTH);
    let bridge = Bridge {
        source: Some(Source::request(body, chunked)),
        sink: Some(sink),
        tls: info.tls,
        session: info.session.clone(),
        identity: info.identity.clone(),
    };
    let mut d = downstreams.take(Stream::H2(Box::new(bridge)), info.peer);
    d.peer_may_forward = info.may_forward;
    d.call_deadline = deadline;
    let built = request_head(&head, end_stream, d.buf.fill(), &mut d.headers, &limits);
    d.prepared = Some(built);
    drop(head);
    let listener = &info.listener;
    let served = {
        let request = one_request(shard, &mut d, &listener.name, &listener.stop, true);
        // A client that resets the stream cancels the exchange: dropping it resets the
        // upstream's stream too, or closes its connection.
        let reset = poll_fn(|cx| {
            if shared.done.get() {
                return Poll::Pending;
            }
            match shared.target.borrow_mut().poll_reset(cx) {
                Poll::Ready(_) => Poll::Ready(()),
                Poll::Pending => Poll::Pending,
            }
        });
        monoio::select! {
            after = request => Some(after),
            () = reset => None,
        }
    };
    if served.is_none() {
        tracing::debug!(shard = shard.index, peer = %info.peer, "client reset the stream");
        d.log.cause = Some(ErrorCause::ClientClosed);
        let sep = shard.epoch();
        record::finish(shard, &sep, &mut d);
    }
    if !shared.done.get() {
        // The response could not be sent whole: the client must not take it for complete.
        shared.target.borrow_mut().reset(h2::Reason::INTERNAL_ERROR);
    }
    d.buf.clear();
    let bridge = downstreams.put(d);
    if served.is_some() && shared.done.get() {
        if let Some(Stream::H2(mut bridge)) = bridge {
            // Only a body still arriving costs a timer (most requests read theirs whole).
            if let Some(source) = bridge.source.as_mut().filter(|s| s.body_open()) {
                let limit = Instant::now() + DISCARD_TIME;
                let _ = shard
                    .timers
                    .within(limit, source.discard_rest(DISCARD_MAX))
                    .await;
            }
        }
    }
}
