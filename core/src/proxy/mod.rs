//! One downstream connection: read a request head, route it, answer it locally or forward it,
//! and loop for the next request (keep-alive, pipelining) until either side closes.

mod body;
pub mod buffers;
pub mod client;
mod forward;
mod h2;
pub mod head;
pub mod local;
mod record;
mod tunnel;

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use ringway_config::{Listener, RateLimit};

use crate::epoch::{Action, LocalResponse};
use crate::http::h1::{
    parse_request, BodyKind, HeaderRef, Method, RequestError, RequestHead, RequestLimits,
};
use crate::io::{write_static, write_vec, Attached, ConnBuf, Stream};
use crate::metrics::ErrorCause;
use crate::policy::basic::Verifier;
use crate::policy::identity::{Attempt, AuthFailure, Credential};
use crate::policy::rate_limit::response::write_429;
use crate::policy::rate_limit::Verdict;
use crate::router::RequestView;
use crate::rt::coarse::CoarseTimers;
use crate::rt::signal::Signal;
use crate::state::{Shard, ShardEpoch};
use buffers::{DownstreamPool, READ_BUF};

pub(crate) use record::RequestLog;

/// A request in progress on a client connection: its socket (attached for the request's
/// duration), buffers, header offsets, id and log record. Taken from the shard's pool
/// ([`buffers::DownstreamPool`]) when a request begins and returned when the connection goes
/// idle, so idle connections hold none of it.
pub(crate) struct Downstream {
    pub stream: Attached,
    pub buf: ConnBuf,
    pub out: Vec<u8>,
    pub headers: Vec<HeaderRef>,
    pub peer: SocketAddr,
    /// The current request's client: `peer`, or the address a trusted proxy forwarded for.
    pub client: IpAddr,
    /// `peer` is one of the listener's `trusted_proxies`.
    pub trusted_peer: bool,
    /// The peer may speak for others at all (see `Conn::may_forward`).
    pub peer_may_forward: bool,
    /// The listener's index in the epoch serving the current request.
    pub listener: usize,
    /// Bytes written to the client since the state was taken from the pool.
    pub written: u64,
    /// The current request's id: the client's `x-request-id`, or one generated for it.
    pub request_id: Vec<u8>,
    /// What the current request did, for metrics and the access log.
    pub log: RequestLog,
    /// The shard's drain signal: once raised, every response says `connection: close`.
    pub draining: Rc<Signal>,
    /// The shard's coarse timers, which bound this request's reads and writes.
    pub timers: Rc<CoarseTimers>,
    /// The client's own deadline for the answer (a gRPC call's `grpc-timeout`).
    pub call_deadline: Option<Instant>,
    /// A head its codec built already (an h2 stream's, from its HEADERS), for the request
    /// to run on instead of reading one from `buf`.
    pub prepared: Option<Result<RequestHead, RequestError>>,
}

/// What the connections one listener accepted on one shard share.
pub struct ListenerHandle {
    pub name: Rc<str>,
    /// Raised when a reload removes the listener or the shard drains: its accept loop stops
    /// and its connections close once idle.
    pub stop: Rc<Signal>,
    /// The listener's open connections on this shard.
    pub open: Rc<Cell<usize>>,
    /// The shard's open connections, all listeners together.
    pub shard_open: Rc<Cell<usize>>,
}

/// A client address in 16 bytes rather than `SocketAddr`'s 32: IPv6 ones are boxed.
enum Peer {
    V4(SocketAddrV4),
    V6(Box<SocketAddrV6>),
}

impl Peer {
    /// An IPv4 client of a dual-stack (`[::]`) listener arrives as an IPv4-mapped IPv6
    /// address: it is kept as the IPv4 address it is, for the log, `X-Forwarded-For` and keys.
    fn new(addr: SocketAddr) -> Peer {
        match addr {
            SocketAddr::V4(v4) => Peer::V4(v4),
            SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
                Some(ip) => Peer::V4(SocketAddrV4::new(ip, v6.port())),
                None => Peer::V6(Box::new(v6)),
            },
        }
    }

    fn get(&self) -> SocketAddr {
        match self {
            Peer::V4(v4) => SocketAddr::V4(*v4),
            Peer::V6(v6) => SocketAddr::V6(**v6),
        }
    }
}

/// What an idle client connection keeps: everything else is in the pooled [`Downstream`]
/// while a request is in progress. It counts itself open on its listener and shard while it
/// lives.
pub struct Conn {
    /// `None` only while a request state holds the socket.
    stream: Option<Stream>,
    peer: Peer,
    listener: Rc<ListenerHandle>,
    /// False when a PROXY header named no client (v1 UNKNOWN, v2 LOCAL): the peer is then
    /// the balancer itself, and an L4 balancer does not vouch for the request's forwarding
    /// fields, so they are not believed even if it is a trusted proxy.
    may_forward: bool,
}

impl Conn {
    pub fn new(stream: Stream, peer: SocketAddr, listener: Rc<ListenerHandle>) -> Conn {
        listener.open.set(listener.open.get() + 1);
        listener.shard_open.set(listener.shard_open.get() + 1);
        Conn {
            stream: Some(stream),
            peer: Peer::new(peer),
            listener,
            may_forward: true,
        }
    }
}

impl Conn {
    /// A connection still in its TLS handshake: counted open, no stream yet.
    pub fn handshaking(peer: SocketAddr, listener: Rc<ListenerHandle>) -> Conn {
        listener.open.set(listener.open.get() + 1);
        listener.shard_open.set(listener.shard_open.get() + 1);
        Conn {
            stream: None,
            peer: Peer::new(peer),
            listener,
            may_forward: true,
        }
    }

    pub fn set_stream(&mut self, stream: Stream) {
        self.stream = Some(stream);
    }

    pub fn listener_name(&self) -> &str {
        &self.listener.name
    }

    /// Reads the PROXY protocol header the connection starts with, by `deadline`; the
    /// client's address in it becomes the connection's peer. False when the connection must
    /// close (no valid header in time; counted).
    pub async fn read_proxy_header(&mut self, shard: &Shard, deadline: Instant) -> bool {
        let Some(Stream::Plain(mut tcp)) = self.stream.take() else {
            return false;
        };
        let read = self.proxy_header_on(shard, &mut tcp, deadline).await;
        self.stream = Some(Stream::Plain(tcp));
        read
    }

    /// [`Conn::read_proxy_header`] on a socket the connection does not hold yet (a TLS
    /// listener's, before its handshake).
    pub async fn proxy_header_on(
        &mut self,
        shard: &Shard,
        tcp: &mut monoio::net::TcpStream,
        deadline: Instant,
    ) -> bool {
        let read = shard
            .timers
            .within(deadline, crate::proxy_protocol::read_header(tcp))
            .await;
        let fault = match read {
            Ok(Ok(crate::proxy_protocol::Header::Proxied(client))) => {
                self.peer = Peer::new(client);
                return true;
            }
            Ok(Ok(crate::proxy_protocol::Header::Local)) => {
                self.may_forward = false;
                return true;
            }
            Ok(Err(fault)) => fault,
            Err(_) => "no PROXY header in time",
        };
        tracing::debug!(shard = shard.index, peer = %self.peer.get(), fault, "PROXY header refused");
        shard.listener_event(&self.listener.name, |l| l.proxy_refused += 1);
        false
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let l = &self.listener;
        l.open.set(l.open.get() - 1);
        l.shard_open.set(l.shard_open.get() - 1);
    }
}

/// What happens to the connection after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    KeepAlive,
    /// Close gracefully (the response, if any, was written).
    Close,
    /// The client went away or idled out: drop the connection without a word.
    Gone,
    /// The client sent the HTTP/2 preface: the connection speaks h2 from here.
    Http2,
}

enum HeadRead {
    Head(RequestHead),
    /// The HTTP/2 connection preface (h2c with prior knowledge).
    Http2,
    /// The client went away or idled out between requests: close without a word.
    Gone,
    /// Answer with this status, then close.
    Reject(u16),
}

/// Serves one client connection until either side closes, its listener is removed or the
/// shard drains.
///
/// Between requests the connection holds only its socket, address and listener: the request
/// state goes back to the shard's pool and the per-request state machine is boxed for the
/// request's duration only, so an idle connection's task stays small.
pub async fn serve(shard: &Rc<Shard>, downstreams: &Rc<DownstreamPool>, conn: &mut Conn) {
    if let Some(Stream::Tls(tls)) = &conn.stream {
        if tls.connection().alpn_protocol() == Some(b"h2") {
            Box::pin(serve_tls_h2(shard, downstreams, conn)).await;
            return;
        }
    }
    let mut first = true;
    let mut d: Option<Box<Downstream>> = None;
    loop {
        // Pipelined bytes already buffered are the next request: no wait.
        if d.as_ref().is_none_or(|d| d.buf.is_empty()) {
            if let Some(state) = d.take() {
                conn.stream = downstreams.put(state);
            }
            let idle = {
                let sep = shard.epoch();
                let Some(index) = sep.listener_index(&conn.listener.name) else {
                    return;
                };
                let cfg = &sep.epoch.config.listeners[index];
                if first {
                    cfg.header_timeout
                } else {
                    cfg.idle_timeout
                }
            };
            if !wait_readable(conn, shard, idle).await {
                return;
            }
            let Some(stream) = conn.stream.take() else {
                return;
            };
            d = Some(downstreams.take(stream, conn.peer.get()));
            if let Some(d) = d.as_mut() {
                d.peer_may_forward = conn.may_forward;
            }
        }
        let Some(state) = d.as_mut() else {
            return;
        };
        let listener = &conn.listener;
        let request = {
            // Scoped: a named future left in scope across the await below would keep its
            // full size (4.7 KB) in every idle connection's task, boxed or not.
            let request = one_request(shard, state, &listener.name, &listener.stop, first);
            // An over-aligned state machine (a monoio timer held inline is aligned to 128
            // bytes) would make this box a `posix_memalign` per request: such timers are
            // boxed where they are awaited, or replaced by the shard's coarse timers.
            debug_assert!(std::mem::align_of_val(&request) <= 16);
            Box::pin(request)
        };
        let after = request.await;
        first = false;
        match after {
            After::KeepAlive => continue,
            After::Gone => return,
            After::Http2 => {
                if let Some(state) = d.take() {
                    Box::pin(serve_h2c(shard, downstreams, conn, state)).await;
                }
                return;
            }
            After::Close => {
                if let Some(state) = d.take() {
                    Box::pin(close_downstream(downstreams, state)).await;
                }
                return;
            }
        }
    }
}

/// Reads, routes and answers one request, then records it.
async fn one_request(
    shard: &Rc<Shard>,
    d: &mut Downstream,
    listener: &str,
    stop: &Rc<Signal>,
    first: bool,
) -> After {
    let waiting = shard.epoch();
    // A listener removed by a reload serves no further request on its connections.
    let Some(index) = waiting.listener_index(listener) else {
        return After::Close;
    };
    let read = match d.prepared.take() {
        Some(Ok(head)) => HeadRead::Head(head),
        Some(Err(e)) => {
            tracing::debug!(reason = e.reason(), "bad request head");
            HeadRead::Reject(e.status())
        }
        None => {
            read_head(
                d,
                &waiting.epoch.config.listeners[index],
                first,
                shard,
                stop,
            )
            .await
        }
    };
    // The request runs on the epoch current when its head arrived; if that epoch removed
    // the listener, on the one it arrived under, and the connection closes after it.
    let current = shard.epoch();
    let (sep, index, removed) = match current.listener_index(listener) {
        Some(i) => (current, i, false),
        None => (waiting, index, true),
    };
    d.listener = index;
    let cfg = &sep.epoch.config.listeners[index];
    d.stream.set_send_timeout(cfg.send_timeout);
    d.log.begin(d.buf.consumed_total(), d.written);
    let mut head = match read {
        HeadRead::Head(head) => head,
        HeadRead::Gone => return After::Gone,
        HeadRead::Http2 => return After::Http2,
        HeadRead::Reject(status) => {
            tracing::debug!(shard = shard.index, peer = %d.peer, status, "request rejected");
            d.log.status = status;
            d.log.cause = ErrorCause::from_local_status(status);
            d.log
                .capture_rejected(shard, d.buf.data(), &mut d.request_id);
            let response = local::error_response(status, true);
            if write_static(&mut d.stream, response).await.is_ok() {
                d.written += response.len() as u64;
            }
            record::finish(shard, &sep, d);
            return After::Close;
        }
    };
    if shard.is_draining() || removed {
        head.keep_alive = false;
    }
    let trusted: &[ringway_config::IpNet] = if d.peer_may_forward {
        &cfg.trusted_proxies
    } else {
        &[]
    };
    (d.client, d.trusted_peer) =
        client::client_address(trusted, d.peer.ip(), d.buf.data(), &d.headers);
    let h2 = d.stream.is_h2();
    d.log.capture(
        shard,
        d.buf.data(),
        &head,
        &d.headers,
        &mut d.request_id,
        h2,
    );
    let after = match normalize_path(&mut d.buf, &mut head, cfg.encoded_slashes) {
        Ok(()) => handle(shard, &sep, d, &mut head, cfg).await,
        Err(reason) => {
            tracing::debug!(shard = shard.index, peer = %d.peer, reason, "request path refused");
            respond_static(d, &head, 400, cfg).await
        }
    };
    record::finish(shard, &sep, d);
    after
}

/// Takes the query parameter at `param` (with its `?` or `&`) out of the request's path in its
/// buffer: an API key read from the query is not forwarded.
fn remove_query_param(
    buf: &mut crate::io::ConnBuf,
    head: &mut RequestHead,
    param: crate::http::h1::Span,
) {
    let (start, end) = (param.start as usize, param.end as usize);
    let path_end = head.path.end as usize;
    let data = buf.data_mut();
    let first = data[start] == b'?';
    data.copy_within(end..path_end, start);
    let new_end = path_end - (end - start);
    // The parameter after it is now the first.
    if first && start < new_end && data[start] == b'&' {
        data[start] = b'?';
    }
    head.path = crate::http::h1::Span::new(head.path.start as usize, new_end);
}

/// Normalises the request's path in its buffer before routing (see [`crate::http::path`]):
/// the query, untouched, moves up behind it, and `head.path` shrinks to fit. The access log
/// keeps the target as sent (captured before). Asterisk-form and CONNECT targets are no
/// paths and stay as they are.
fn normalize_path(
    buf: &mut crate::io::ConnBuf,
    head: &mut RequestHead,
    slashes: ringway_config::EncodedSlashes,
) -> Result<(), &'static str> {
    let slashes = match slashes {
        ringway_config::EncodedSlashes::Reject => crate::http::path::EncodedSlashes::Reject,
        ringway_config::EncodedSlashes::Keep => crate::http::path::EncodedSlashes::Keep,
    };
    let (start, end) = (head.path.start as usize, head.path.end as usize);
    let query = start + head.path_len_without_query.min(end - start);
    let data = buf.data_mut();
    if head.method == Method::Connect || data.get(start) != Some(&b'/') {
        return Ok(());
    }
    let len = crate::http::path::normalize(&mut data[start..query], slashes)?;
    if start + len < query {
        data.copy_within(query..end, start + len);
        head.path = crate::http::h1::Span::new(start, end - (query - start - len));
        head.path_len_without_query = len;
    }
    Ok(())
}

/// Waits, holding no request state, until the connection is readable, at most `idle`; false
/// when it should close instead (timeout, drain, listener removed, error).
async fn wait_readable(conn: &Conn, shard: &Shard, idle: Duration) -> bool {
    let Some(stream) = &conn.stream else {
        return false;
    };
    let deadline = Instant::now() + idle;
    loop {
        if shard.is_draining() || conn.listener.stop.is_raised() {
            return false;
        }
        // Not relaxed: on epoll a readiness flag left over from the previous request would
        // report readable at once and the connection would take a request state back while
        // idle. The deadline is the shard's coarse timer (see `rt::coarse`), not a
        // monoio `Sleep`, and a removed listener or a drain kicks the timer instead of
        // raising a signal each idle connection would wait on: that is what keeps an idle
        // connection's task small.
        let expired = monoio::select! {
            ready = stream.readable(false) => return ready.is_ok(),
            expired = shard.timers.wait_until(deadline) => expired,
        };
        if expired {
            return false;
        }
    }
}

/// Reads one request head. The connection was readable (or has bytes buffered) when this
/// starts; the header timeout runs from here.
async fn read_head(
    d: &mut Downstream,
    cfg: &Listener,
    first: bool,
    shard: &Shard,
    stop: &Rc<Signal>,
) -> HeadRead {
    let limits = RequestLimits {
        max_request_line: cfg.max_request_line,
        max_head: cfg.max_header_bytes,
    };
    let now = Instant::now();
    let mut head_deadline = (!d.buf.is_empty()).then(|| now + cfg.header_timeout);
    // No byte of this request yet: a readiness report may have been spurious, so the wait for
    // the first byte is bounded by the idle timeout (header timeout on a fresh connection).
    let idle_deadline = now
        + if first {
            cfg.header_timeout
        } else {
            cfg.idle_timeout
        };
    // The parser keeps no state between calls: parse again only when a line may have ended (or
    // a limit may be crossed), so a client trickling bytes cannot make it rescan per byte.
    let mut parse = true;
    loop {
        if parse && !d.buf.is_empty() {
            match parse_request(d.buf.data(), &limits, &mut d.headers) {
                Ok(Some(head)) => return HeadRead::Head(head),
                Ok(None) => {}
                Err(e) => {
                    // Only the preface makes an HTTP/2.0 request line (505 otherwise); h2c
                    // over TLS is not offered (ALPN says h2 there).
                    if first
                        && d.buf.data().starts_with(&crate::http::h2::PREFACE[..16])
                        && !d.stream.is_tls()
                    {
                        return HeadRead::Http2;
                    }
                    tracing::debug!(reason = e.reason(), "bad request head");
                    return HeadRead::Reject(e.status());
                }
            }
        }
        let deadline = head_deadline.unwrap_or(idle_deadline);
        let max = cfg.max_header_bytes.max(READ_BUF);
        let before = d.buf.len();
        let read = d
            .timers
            .within(deadline, d.buf.read_from(&mut d.stream, max));
        let read = if head_deadline.is_none() {
            // Between requests a draining shard, or a removed listener, closes the connection.
            monoio::select! {
                read = read => read,
                _ = shard.draining.wait() => return HeadRead::Gone,
                _ = stop.wait() => return HeadRead::Gone,
            }
        } else {
            read.await
        };
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
    head: &mut RequestHead,
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
    d.log.route = Some(route);
    // Policies, in order: who the caller is and whether it may use the route, the rate limit,
    // then the concurrency limit (a request refused for its rate takes no in-flight slot).
    // The slot is held until this exchange ends, however it ends.
    if let Some(auth) = &epoch.auth[route] {
        let identity = &epoch.identity;
        let attempt = {
            let mut cache = shard.auth_cache.borrow_mut();
            identity.authenticate(auth, d.buf.data(), head, &d.headers, &mut cache)
        };
        let result = match attempt {
            Attempt::Done(result) => result,
            Attempt::Verify {
                consumer,
                hash,
                password,
                key,
            } => match Verifier::get().verify(hash, password) {
                // Every bcrypt thread is busy and the queue full: refused now, not queued.
                None => {
                    d.log.cause = Some(ErrorCause::AuthUnavailable);
                    return respond_static(d, head, 503, cfg).await;
                }
                Some(verification) => {
                    let matched = verification.await;
                    let now = Instant::now();
                    (shard.auth_cache.borrow_mut().basic).put(key, matched, now);
                    match matched {
                        true => Ok((consumer, Credential::Basic)),
                        false => Err(AuthFailure::BadPassword),
                    }
                }
            },
        };
        // Every copy of the key parameter leaves the target, whatever let the request in.
        while let Some((param, value)) = identity.query_credential(auth, d.buf.data(), head) {
            d.log.redact(value);
            remove_query_param(&mut d.buf, head, param);
        }
        match result {
            Err(failure) => {
                d.log.auth_failure = Some(failure);
                return respond_unauthorized(d, head, auth.challenge()).await;
            }
            Ok((consumer, credential)) => {
                d.log.consumer = Some(consumer);
                d.log.credential = Some(credential);
                if !identity.allows(auth, consumer) {
                    return respond_static(d, head, 403, cfg).await;
                }
            }
        }
    }
    let slot = sep.route(shard, route);
    d.log.route_slot = Some(slot.clone());
    if let Some(limiter) = &slot.limiter {
        let consumer = d
            .log
            .consumer
            .map(|c| &*epoch.identity.consumers[c as usize].name);
        let key = limiter.key(d.client, consumer, d.buf.data(), &d.headers);
        if let Verdict::Limited { reset, .. } = limiter.admit(key, d.log.start).await {
            return respond_rate_limited(d, head, limiter.limit(), reset).await;
        }
    }
    let _in_flight = match &slot.concurrency {
        None => None,
        Some(limit) => match limit.enter() {
            Some(slot) => Some(slot),
            None => {
                d.log.cause = Some(ErrorCause::ConcurrencyLimited);
                return respond_static(d, head, 503, cfg).await;
            }
        },
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
                status: *status,
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
    let keep = head.keep_alive && !d.draining.is_raised() && consume_request(d, head);
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
    d.log.status = response.status;
    send_out(d, keep).await
}

/// Writes the response in `d.out`; keeps the connection when `keep` and the write went well.
async fn send_out(d: &mut Downstream, keep: bool) -> After {
    let len = d.out.len() as u64;
    let sent = write_vec(&mut d.stream, &mut d.out).await;
    if sent.is_ok() {
        d.written += len;
    }
    match sent {
        Ok(()) if keep => After::KeepAlive,
        _ => After::Close,
    }
}

/// The 429 of a route's rate limit; the connection stays open when the request's body was
/// wholly read.
async fn respond_rate_limited(
    d: &mut Downstream,
    head: &RequestHead,
    limit: &RateLimit,
    reset: Duration,
) -> After {
    let keep = head.keep_alive && !d.draining.is_raised() && consume_request(d, head);
    d.log.status = 429;
    d.log.cause = Some(ErrorCause::RateLimited);
    let connection: Option<&[u8]> = if !keep {
        Some(b"close")
    } else if head.version == crate::http::h1::Version::Http10 {
        Some(b"keep-alive")
    } else {
        None
    };
    d.out.clear();
    write_429(
        &mut d.out,
        limit,
        reset,
        connection,
        head.method == Method::Head,
    );
    send_out(d, keep).await
}

async fn respond_static(
    d: &mut Downstream,
    head: &RequestHead,
    status: u16,
    _cfg: &Listener,
) -> After {
    let keep = head.keep_alive && !d.draining.is_raised() && consume_request(d, head);
    d.log.status = status;
    d.log.cause = d.log.cause.or(ErrorCause::from_local_status(status));
    let response = local::error_response(status, !keep);
    let sent = write_static(&mut d.stream, response).await;
    if sent.is_ok() {
        d.written += response.len() as u64;
    }
    match sent {
        Ok(()) if keep => After::KeepAlive,
        _ => After::Close,
    }
}

/// The 401 of a route's `auth`, with a challenge for each method it takes.
async fn respond_unauthorized(d: &mut Downstream, head: &RequestHead, challenge: &[u8]) -> After {
    let keep = head.keep_alive && !d.draining.is_raised() && consume_request(d, head);
    d.log.status = 401;
    d.log.cause = Some(ErrorCause::Unauthenticated);
    d.out.clear();
    d.out.extend_from_slice(
        b"HTTP/1.1 401 Unauthorized\r\ncontent-type: text/plain\r\ncontent-length: 17\r\n",
    );
    d.out.extend_from_slice(challenge);
    if !keep {
        d.out.extend_from_slice(b"connection: close\r\n");
    } else if head.version == crate::http::h1::Version::Http10 {
        d.out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    d.out.extend_from_slice(b"\r\n");
    if head.method != Method::Head {
        d.out.extend_from_slice(b"401 Unauthorized\n");
    }
    send_out(d, keep).await
}

/// Goes on with a plain connection whose first bytes were the HTTP/2 preface, as h2c.
async fn serve_h2c(
    shard: &Rc<Shard>,
    downstreams: &Rc<DownstreamPool>,
    conn: &mut Conn,
    mut d: Box<Downstream>,
) {
    let read = d.buf.data().to_vec();
    d.buf.clear();
    let Some(Stream::Plain(tcp)) = downstreams.put(d) else {
        return;
    };
    let io = crate::http::h2::io::PollStream::new(tcp, read);
    h2::serve(shard, downstreams, conn, io, None, None).await;
}

/// Goes on with a TLS connection whose client chose h2 by ALPN.
async fn serve_tls_h2(shard: &Rc<Shard>, downstreams: &Rc<DownstreamPool>, conn: &mut Conn) {
    let Some(Stream::Tls(tls)) = conn.stream.take() else {
        return;
    };
    let Ok(parts) = tls.into_parts().await else {
        return;
    };
    let session = crate::tls::stream::TlsSession::of(&parts.conn);
    let io = crate::http::h2::io::PollStream::new(parts.tcp, Vec::new());
    let Ok(io) = crate::tls::poll::PollTls::new(io, parts.conn, &parts.unread) else {
        return;
    };
    h2::serve(shard, downstreams, conn, io, parts.identity, Some(session)).await;
}

/// Closes the connection of a request state gracefully, then returns the state to the pool.
async fn close_downstream(downstreams: &DownstreamPool, mut d: Box<Downstream>) {
    let Downstream { stream, buf, .. } = &mut *d;
    linger(stream, buf).await;
    d.buf.clear();
    drop(downstreams.put(d));
}

/// Closes a connection gracefully: shut the write side, then read and drop what the client is
/// still sending (bounded in time and bytes) so that the kernel does not answer it with a reset
/// that could destroy the response in flight.
pub async fn linger_close<S: AsyncReadRent + AsyncWriteRent>(mut stream: S, buf: Option<ConnBuf>) {
    let mut buf = buf.unwrap_or_else(|| ConnBuf::with_capacity(4096));
    linger(&mut stream, &mut buf).await;
}

async fn linger<S: AsyncReadRent + AsyncWriteRent>(stream: &mut S, buf: &mut ConnBuf) {
    let _ = stream.shutdown().await;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut drained = 0usize;
    while drained < 4 << 20 {
        buf.clear();
        let cap = buf.capacity();
        match monoio::time::timeout_at(deadline.into(), buf.read_from(stream, cap)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
}
