//! Forwarding one request to an upstream endpoint and relaying the answer.
//!
//! Steps: check the body against the listener's limit; build the upstream head (kept in
//! `d.out` for every try); read a small body whole when the route may retry; then per try: ask
//! the upstream's guard (breaker), pick an endpoint among the eligible ones, borrow a pooled
//! connection (or connect), send the head and body, read the response head (forwarding 1xx).
//! A failed try is sent again when the route's retry policy, its retry budget and its deadline
//! allow (see `retry`). Then write the client head, relay the body, and return the connection
//! to the pool when both messages ended cleanly.
//!
//! Apart from retries, a request that meets a stale pooled connection is sent once more on a
//! fresh connection when nothing of it is lost: its head is still in `d.out` and its body (if
//! any) was wholly in the client buffer, not yet consumed.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use monoio::net::TcpStream;
use ringway_config::{Balance, Endpoint, Listener, Retry, Upstream, UpstreamProtocol};

use super::body::{buffer_request_body, relay_response_body, send_request_body, MAX_TRAILER};
use super::head::{
    client_fields, write_client_head, write_upstream_head, ClientFraming, Forwarded,
};
use super::{local, respond_static, After, Downstream};
use crate::error::{Error, ProxyError};
use crate::http::h1::{
    parse_response, BodyKind, ChunkedScanner, Method, RequestHead, ResponseBody, ResponseHead,
    TransferCodings, Version,
};
use crate::http::h2::bridge::{upstream_stream, BodyFraming, Bridge};
use crate::io::Stream;
use crate::io::{write_static, write_vec, ConnBuf};
use crate::metrics::ErrorCause;
use crate::policy::retry::{self, Failure, Replay};
use crate::rt::coarse::{CoarseTimers, Elapsed};
use crate::state::{Shard, ShardEpoch, UpstreamSlot};
use crate::tls::ClientTls;
use crate::upstream::balance::request_key_hash;
use crate::upstream::{H2Limits, Outcome, Pick, PoolKey, UpstreamConn};

/// Largest response head accepted from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// A response body up to this size that already sits in the buffer goes out in the same write
/// as its head.
const COALESCE: usize = 16 * 1024;
/// Picks drawn to find an endpoint other than the one that just failed.
const REPICKS: usize = 3;

fn at(instant: Instant) -> monoio::time::Instant {
    monoio::time::Instant::from_std(instant)
}

/// What the exchange needs of the request once its head has left the buffer.
#[derive(Clone, Copy)]
struct Request {
    method: Method,
    version: Version,
    keep_alive: bool,
    body: BodyKind,
    /// Bytes of the body already in the client buffer when the whole body is there.
    buffered_body: Option<usize>,
    /// The request offers a WebSocket upgrade upstream: after a 101 the connection is relayed
    /// both ways, closed after this long without a byte.
    upgrade: Option<std::time::Duration>,
}

/// What happened on the way to a response head, besides the head itself.
#[derive(Clone, Copy, Default)]
struct Notes {
    /// An interim (1xx) response went to the client.
    interim_sent: bool,
    /// The head arrived while the request body was still being streamed upstream: the rest of
    /// the body stays unread, so neither connection can be reused.
    early: bool,
}

/// A response head from the try that got one.
struct Answered {
    conn: UpstreamConn,
    resp: ResponseHead,
    pick: Pick,
}

pub(crate) async fn proxy(
    shard: &Rc<Shard>,
    sep: &Rc<ShardEpoch>,
    d: &mut Downstream,
    head: &RequestHead,
    upstream: usize,
    cfg: &Listener,
) -> After {
    match head.body {
        BodyKind::Length(n) if n > cfg.max_request_body => return reject(d, 413).await,
        BodyKind::Chunked => {
            let mut scanner = ChunkedScanner::new(MAX_TRAILER);
            match scanner.scan(&d.buf.data()[head.head_len..]) {
                Err(_) => return reject(d, 400).await,
                Ok(_) if scanner.payload_bytes() > cfg.max_request_body => {
                    return reject(d, 413).await
                }
                Ok(_) => {}
            }
        }
        _ => {}
    }
    d.log.upstream = Some(upstream);
    let route = d.log.route.expect("a proxied request was routed");
    let policy = sep.epoch.config.routes[route].retry.as_ref();
    let up = sep.upstream(shard, upstream);
    d.log.upstream_slot = Some(up.clone());
    if !up.guard.admit(Instant::now()) {
        d.log.cause = Some(ErrorCause::CircuitOpen);
        return respond_static(d, head, 503, cfg).await;
    }
    // The hash key is read from the head, which `prepare` takes out of the buffer.
    let key = match &sep.epoch.config.upstreams[upstream].balance {
        Balance::Hash(key) => request_key_hash(key, d.client, d.buf.data(), &d.headers),
        _ => None,
    };
    let route_cfg = &sep.epoch.config.routes[route];
    let upgrade =
        (head.websocket && route_cfg.websocket).then_some(route_cfg.websocket_idle_timeout);
    let req = match prepare(sep, d, head, (policy, upgrade), cfg).await {
        Ok(req) => req,
        Err(e) => return fail(shard, d, e).await,
    };
    match exchange(shard, sep, d, req, (route, upstream, &up), key, cfg).await {
        Ok(after) => after,
        Err(e) => fail(shard, d, e).await,
    }
}

/// Logs a failed request and answers it with the error's status, if it still can.
async fn fail(shard: &Shard, d: &mut Downstream, e: Error) -> After {
    tracing::debug!(shard = shard.index, endpoint = ?d.log.endpoint, error = %e, "request failed");
    d.log.cause = Some(e.cause);
    if e.status != 0 {
        return reject(d, e.status).await;
    }
    After::Close
}

/// How a try ended for the upstream's breaker and health; `None` when the client, not the
/// upstream, ended it before a response head.
fn error_outcome(e: &ProxyError) -> Option<Outcome> {
    Some(match e.cause {
        // A certificate that does not verify is the endpoint's failure like a refused connect.
        ErrorCause::ConnectFailed | ErrorCause::UpstreamTls => Outcome::ConnectFailed,
        ErrorCause::ConnectTimeout => Outcome::ConnectTimeout,
        ErrorCause::UpstreamTimeout => Outcome::Timeout,
        ErrorCause::UpstreamClosed => Outcome::Reset,
        ErrorCause::BadResponse => Outcome::BadResponse,
        _ => return None,
    })
}

/// Answers with a gateway error and closes.
async fn reject(d: &mut Downstream, status: u16) -> After {
    let response = local::error_response(status, true);
    d.log.status = status;
    d.log.cause = d.log.cause.or(ErrorCause::from_local_status(status));
    if write_static(&mut d.stream, response).await.is_ok() {
        d.written += response.len() as u64;
    }
    After::Close
}

/// Writes the upstream head into `d.out` (kept there for every try), answers `Expect:
/// 100-continue`, takes the client head out of the buffer and, when the route may retry,
/// reads a body up to the policy's size whole so that it can be sent again.
async fn prepare(
    sep: &ShardEpoch,
    d: &mut Downstream,
    head: &RequestHead,
    (policy, upgrade): (Option<&Retry>, Option<std::time::Duration>),
    cfg: &Listener,
) -> Result<Request, Error> {
    d.out.clear();
    {
        // Scoped: nothing of it is needed across the awaits below, where it would sit in
        // every request's future.
        let client_cert_header = cfg
            .tls
            .as_ref()
            .and_then(|t| t.client_cert_header.as_deref());
        let fwd = Forwarded {
            peer: d.peer.ip(),
            trusted: d.trusted_peer,
            tls: d.stream.is_tls(),
            client_cert: client_cert_header.zip(d.stream.identity().map(|id| &*id.header_value)),
            reserved: &sep.epoch.reserved_headers,
            upgrade: upgrade.is_some(),
            credentials: (d.log.route)
                .and_then(|r| sep.epoch.auth[r].as_ref())
                .map(|a| &*a.key_header),
            strip_basic: (d.log.route)
                .and_then(|r| sep.epoch.auth[r].as_ref())
                .is_some_and(|a| a.takes_basic()),
            consumer: (d.log.consumer)
                .map(|c| &sep.epoch.identity.consumers[c as usize])
                .map(|c| (&*c.name, &*c.groups_header)),
        };
        write_upstream_head(&mut d.out, d.buf.data(), head, &d.headers, &fwd, |out| {
            out.extend_from_slice(&d.request_id)
        });
    }
    let has_body = !matches!(head.body, BodyKind::None | BodyKind::Length(0));
    if head.expect_continue && has_body {
        d.written += local::CONTINUE.len() as u64;
        write_static(&mut d.stream, local::CONTINUE)
            .await
            .map_err(ProxyError::client_write)?;
    }
    d.buf.consume(head.head_len);
    let mut buffered_body = match head.body {
        BodyKind::None => Some(0),
        BodyKind::Length(n) => (n <= d.buf.len() as u64).then_some(n as usize),
        BodyKind::Chunked => {
            let mut scanner = ChunkedScanner::new(MAX_TRAILER);
            match scanner.scan(d.buf.data()) {
                Ok(scan) if scan.done => Some(scan.consumed),
                _ => None,
            }
        }
    };
    if let (None, Some(policy)) = (buffered_body, policy) {
        buffered_body = buffer_request_body(d, head.body, policy.max_buffered_body, cfg).await?;
    }
    Ok(Request {
        method: head.method,
        version: head.version,
        keep_alive: head.keep_alive,
        body: head.body,
        buffered_body,
        upgrade,
    })
}

/// Picks an endpoint (by the request's hash `key` for a `"hash"` upstream), avoiding
/// `previous` (the one whose try just failed) when another is eligible.
fn pick(
    shard: &Shard,
    (up_cfg, up): (&Upstream, &UpstreamSlot),
    key: Option<u64>,
    previous: Option<usize>,
    now: Instant,
) -> Option<Pick> {
    let balancer = &up.balancer;
    let eligible = up.guard.eligibility(now);
    let mut pick = balancer.pick(|| shard.next_random(), || key, eligible)?;
    for _ in 0..REPICKS {
        if Some(pick.endpoint) != previous || up_cfg.endpoints.len() < 2 {
            break;
        }
        // Hashing would give the same endpoint again: round robin among the rest.
        let other = balancer.pick(|| shard.next_random(), || None, eligible)?;
        pick = other;
    }
    Some(pick)
}

/// Tries the request until one try gets a response head that is not retried, then relays it.
async fn exchange(
    shard: &Rc<Shard>,
    sep: &Rc<ShardEpoch>,
    d: &mut Downstream,
    req: Request,
    (route, upstream, up): (usize, usize, &UpstreamSlot),
    key: Option<u64>,
    cfg: &Listener,
) -> Result<After, Error> {
    let up_cfg = &sep.epoch.config.upstreams[upstream];
    let up_tls = sep.epoch.upstream_tls[upstream].as_deref();
    let route_cfg = &sep.epoch.config.routes[route];
    let route_state = match &d.log.route_slot {
        Some(slot) => slot.state.clone(),
        None => sep.route(shard, route).state.clone(),
    };
    let guard = &up.guard;
    let policy = route_cfg.retry.as_ref();
    let started = Instant::now();
    let total = match (route_cfg.timeout.map(|t| started + t), d.call_deadline) {
        (Some(route), Some(call)) => Some(route.min(call)),
        (route, call) => route.or(call),
    };
    let mut now = started;
    let replay = Replay {
        method: req.method,
        replayable: req.buffered_body.is_some(),
    };
    let mut req = req;
    let mut active = route_state.retry_budget.start();
    let mut tries = 0u32;
    let mut previous = None;
    let answered = loop {
        tries += 1;
        let Some(pick) = pick(shard, (up_cfg, up), key, previous, now) else {
            return Err(ProxyError::new(
                ErrorCause::NoEndpoint,
                "no eligible endpoint",
                None,
            ));
        };
        let endpoint = &up_cfg.endpoints[pick.endpoint];
        let addr = endpoint.address;
        let target = Target {
            endpoint,
            tls: up_tls,
        };
        d.log.endpoint = Some(addr);
        let per_try = policy.and_then(|p| p.per_try_timeout);
        let deadline = retry::try_deadline(now, per_try, up_cfg.request_timeout, total);
        let result = attempt(shard, d, req, up_cfg, &target, cfg, deadline).await;
        now = Instant::now();
        let failure = match &result {
            Ok((_, resp, _)) => {
                guard.record(pick.endpoint, Outcome::Response(resp.status), now);
                Failure::Status(resp.status)
            }
            Err(e) => {
                if let Some(outcome) = error_outcome(e) {
                    guard.record(pick.endpoint, outcome, now);
                }
                Failure::Error(e)
            }
        };
        // An interim response already went to the client: what was sent cannot be taken back.
        let interim_sent = matches!(&result, Ok((_, _, notes)) if notes.interim_sent);
        let retry = policy
            .filter(|p| {
                tries <= p.retries
                    && !interim_sent
                    && retry::retries_failure(p, replay, &failure)
                    && total.is_none_or(|t| now < t)
            })
            .filter(|p| {
                let allowed = active.try_retry(p);
                if !allowed {
                    shard.record_route(&route_state, |s| s.retries_over_budget += 1);
                }
                allowed
            })
            // Breaker opened meanwhile: stop here with what this try got.
            .filter(|_| guard.admit(now));
        let Some(p) = retry else {
            let (conn, mut resp, notes) = result?;
            if notes.early {
                resp.keep_alive = false;
                req.keep_alive = false;
            }
            break Answered { conn, resp, pick };
        };
        tracing::debug!(shard = shard.index, %addr, try_ = tries, "retrying");
        shard.record_route(&route_state, |s| s.retries += 1);
        up.stats.borrow_mut().retries += 1;
        if let Ok((conn, resp, _)) = result {
            discard(shard, conn, &resp, up_cfg);
        }
        previous = Some(pick.endpoint);
        drop(pick);
        let pause = retry::backoff(p.backoff, tries, shard.next_random());
        if !pause.is_zero() {
            let wake = now + pause;
            if total.is_some_and(|t| wake >= t) {
                return Err(ProxyError::new(
                    ErrorCause::UpstreamTimeout,
                    "route timeout",
                    None,
                ));
            }
            // Boxed: an inline monoio timer (aligned to 128 bytes) would make every request's
            // state machine an over-aligned allocation, for the rare request that retries.
            Box::pin(monoio::time::sleep_until(at(wake))).await;
        }
    };
    if answered.resp.status == 101 {
        let listener = &sep.epoch.config.listeners[d.listener].name;
        shard.listener_event(listener, |l| l.upgraded += 1);
    }
    let result = relay(shard, d, req, answered.conn, answered.resp, up_cfg, started).await;
    // Least request counted the exchange as in flight from the pick; it has ended, however it
    // ended (the guard also drops if this future is dropped mid-exchange).
    drop(answered.pick);
    drop(active);
    result
}

/// Drops a response that is being retried: its connection goes back to the pool when the
/// response ended within what was already read, else it is closed.
fn discard(shard: &Shard, mut conn: UpstreamConn, resp: &ResponseHead, up_cfg: &Upstream) {
    conn.buf.consume(resp.head_len);
    let rest = match resp.body {
        ResponseBody::None => Some(0),
        ResponseBody::Length(n) if n <= conn.buf.len() as u64 => Some(n as usize),
        _ => None,
    };
    if let (Some(n), true) = (rest, resp.keep_alive) {
        conn.buf.consume(n);
        if conn.buf.is_empty() {
            shard.pool.borrow_mut().checkin(
                conn,
                up_cfg.max_idle_per_endpoint,
                up_cfg.pool_idle_timeout,
            );
        }
    }
}

/// One try on one endpoint: a pooled connection (or a fresh one when the pooled one turns out
/// stale), the request sent, the final response head read. The notes tell whether an interim
/// (1xx) response went to the client.
async fn attempt(
    shard: &Rc<Shard>,
    d: &mut Downstream,
    req: Request,
    up_cfg: &Upstream,
    target: &Target<'_>,
    cfg: &Listener,
    deadline: Instant,
) -> Result<(UpstreamConn, ResponseHead, Notes), Error> {
    let mut fresh_only = false;
    loop {
        let mut conn = if up_cfg.protocol == UpstreamProtocol::H2 {
            // Boxed: only h2 upstreams pay for the checkout's state in their futures.
            Box::pin(h2_stream(shard, target, up_cfg, req.method, deadline)).await?
        } else {
            let pooled = if fresh_only {
                None
            } else {
                shard.pool.borrow_mut().checkout(target.key())
            };
            match pooled {
                Some(conn) => conn,
                None => connect(&shard.timers, target, up_cfg, deadline).await?,
            }
        };
        match send_and_read_head(d, &mut conn, req, up_cfg, cfg, deadline).await {
            Ok((resp, notes)) => return Ok((conn, resp, notes)),
            Err(e)
                if e.retryable
                    && e.cause == ErrorCause::UpstreamClosed
                    && conn.reused
                    && !fresh_only =>
            {
                tracing::debug!(addr = %target.addr(), error = %e, "stale pooled connection, sending again on a fresh one");
                // An h2 connection that failed a stream it did not process is lent no more;
                // the next checkout opens a new one (or uses another live one).
                if let Some(slot) = &conn.h2_slot {
                    slot.discard_connection();
                }
                fresh_only = true;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A stream on a pooled HTTP/2 connection to the target, as an upstream connection that holds
/// the stream's slot until the exchange ends.
async fn h2_stream(
    shard: &Rc<Shard>,
    target: &Target<'_>,
    up_cfg: &Upstream,
    method: Method,
    deadline: Instant,
) -> Result<UpstreamConn, Error> {
    let limits = H2Limits::new(up_cfg.connect_timeout, up_cfg.pool_idle_timeout);
    let key = target.key();
    let open = async {
        connect(&shard.timers, target, up_cfg, deadline)
            .await
            .map(|conn| conn.stream)
    };
    let lease = shard
        .h2pool
        .checkout(key, open, &limits, deadline, &shard.timers)
        .await?;
    // `:authority` only for a request without Host (an HTTP/1.0 client's).
    let authority = match target.endpoint.host.as_deref() {
        Some(host) => host.to_owned(),
        None => target.addr().to_string(),
    };
    let bridge = upstream_stream(
        lease.send,
        target.tls.is_some(),
        &authority,
        method == Method::Head,
        shard.timers.clone(),
    );
    let mut conn = UpstreamConn::new(Stream::H2(Box::new(bridge)), key);
    conn.reused = lease.reused;
    conn.h2_slot = Some(lease.slot);
    Ok(conn)
}

/// Writes the response head to the client and relays the body; the upstream connection goes
/// back to the pool when both messages ended cleanly.
#[allow(clippy::too_many_arguments)]
async fn relay(
    shard: &Rc<Shard>,
    d: &mut Downstream,
    req: Request,
    mut conn: UpstreamConn,
    resp: ResponseHead,
    up_cfg: &Upstream,
    started: Instant,
) -> Result<After, Error> {
    if let Some(n) = req.buffered_body {
        d.buf.consume(n);
    }
    d.log.upstream_us = Some(started.elapsed().as_micros() as u64);
    d.log.status = resp.status;
    if let (101, Some(idle)) = (resp.status, req.upgrade) {
        return upgraded(d, conn, resp, idle).await;
    }

    if resp.body != ResponseBody::None {
        // Transfer codings other than chunked go to the client by their labels; an HTTP/1.0
        // client cannot be sent any (RFC 9112 section 6.1), and a body chunked before another
        // coding cannot be chunked again.
        let refuse = match resp.codings {
            TransferCodings::None => None,
            TransferCodings::Labelled if req.version == Version::Http11 => None,
            TransferCodings::Labelled => Some("transfer-coding an HTTP/1.0 client cannot receive"),
            TransferCodings::ChunkedInside => Some("chunked transfer-coding not applied last"),
        };
        if let Some(context) = refuse {
            return Err(ProxyError::new(ErrorCause::BadResponse, context, None));
        }
    }
    let framing = match resp.body {
        ResponseBody::None => ClientFraming::None,
        ResponseBody::Length(n) => ClientFraming::Length(n),
        ResponseBody::Chunked | ResponseBody::UntilClose if req.version == Version::Http11 => {
            ClientFraming::Chunked
        }
        ResponseBody::Chunked | ResponseBody::UntilClose => ClientFraming::Close,
    };
    let close_client = !req.keep_alive || framing == ClientFraming::Close || d.draining.is_raised();
    d.out.clear();
    if let Some(sink) = d.stream.stream_mut().bridge().and_then(|b| b.sink.as_mut()) {
        // An h2 client's answer: the head goes as the fields the upstream's codec checked,
        // with the same ones left out as from an HTTP/1.1 head.
        let src = conn.buf.data();
        let body = match framing {
            ClientFraming::None => BodyFraming::None,
            ClientFraming::Length(n) => BodyFraming::Length(n),
            ClientFraming::Chunked | ClientFraming::Close => BodyFraming::Chunked,
        };
        let fields =
            client_fields(&resp, &d.headers, framing).map(|h| (h.name.get(src), h.value.get(src)));
        d.written += sink
            .send_response_fields(resp.status, fields, body)
            .map_err(ProxyError::client_write)? as u64;
    } else {
        write_client_head(
            &mut d.out,
            conn.buf.data(),
            &resp,
            &d.headers,
            framing,
            close_client,
            req.version,
        );
    }
    conn.buf.consume(resp.head_len);
    let mut body = resp.body;
    if let ResponseBody::Length(n) = body {
        if n as usize <= conn.buf.len() && n as usize <= COALESCE {
            d.out.extend_from_slice(&conn.buf.data()[..n as usize]);
            conn.buf.consume(n as usize);
            body = ResponseBody::None;
        }
    }
    if !d.out.is_empty() {
        d.written += d.out.len() as u64;
        write_vec(&mut d.stream, &mut d.out)
            .await
            .map_err(ProxyError::client_write)?;
    }
    let relayed = relay_response_body(d, &mut conn, body, framing, up_cfg.idle_timeout).await?;
    if resp.keep_alive && relayed.upstream_clean {
        shard.pool.borrow_mut().checkin(
            conn,
            up_cfg.max_idle_per_endpoint,
            up_cfg.pool_idle_timeout,
        );
    }
    Ok(if close_client {
        After::Close
    } else {
        After::KeepAlive
    })
}

/// Passes the upstream's 101 on, then relays the connection both ways until it ends; the
/// client connection closes after it.
async fn upgraded(
    d: &mut Downstream,
    mut conn: UpstreamConn,
    resp: ResponseHead,
    idle: std::time::Duration,
) -> Result<After, Error> {
    d.out.clear();
    write_client_head(
        &mut d.out,
        conn.buf.data(),
        &resp,
        &d.headers,
        ClientFraming::None,
        false,
        Version::Http11,
    );
    conn.buf.consume(resp.head_len);
    d.written += d.out.len() as u64;
    write_vec(&mut d.stream, &mut d.out)
        .await
        .map_err(ProxyError::client_write)?;
    // What either side sent past its head is the new protocol's first bytes.
    let from_client = d.buf.data().to_vec();
    let early_in = from_client.len() as u64;
    d.buf.consume(from_client.len());
    let from_upstream = conn.buf.data().to_vec();
    let timers = d.timers.clone();
    let carried = super::tunnel::relay(
        &timers,
        d.stream.stream_mut(),
        &mut conn.stream,
        (from_client, from_upstream),
        idle,
    )
    .await;
    match carried {
        Ok(carried) => {
            // The bytes read with the head are already counted by the client buffer.
            d.log.upgraded_in = carried.from_client - early_in;
            d.written += carried.from_upstream;
        }
        // Out of descriptors: the 101 is out, so the connection can only close.
        Err(e) => tracing::warn!(error = %e, "cannot relay an upgraded connection"),
    }
    Ok(After::Gone)
}

/// Where one try goes: an endpoint, and the TLS it is reached with.
/// Two references: it lives in every request's future, across its awaits.
struct Target<'a> {
    endpoint: &'a Endpoint,
    tls: Option<&'a ClientTls>,
}

impl Target<'_> {
    fn addr(&self) -> SocketAddr {
        self.endpoint.address
    }

    fn key(&self) -> PoolKey {
        let host = self.endpoint.host.as_deref();
        (self.addr(), self.tls.map_or(0, |tls| tls.pool_key(host)))
    }
}

async fn connect(
    timers: &Rc<CoarseTimers>,
    target: &Target<'_>,
    up_cfg: &Upstream,
    deadline: Instant,
) -> Result<UpstreamConn, Error> {
    let limit = deadline.min(Instant::now() + up_cfg.connect_timeout);
    let stream = match timers
        .within(limit, TcpStream::connect_addr(target.addr()))
        .await
    {
        Err(_) => {
            return Err(ProxyError::new(
                ErrorCause::ConnectTimeout,
                "upstream connect timeout",
                None,
            ))
        }
        Ok(Err(e)) => {
            return Err(ProxyError::new(
                ErrorCause::ConnectFailed,
                "upstream connect failed",
                Some(e),
            ))
        }
        Ok(Ok(stream)) => stream,
    };
    let _ = stream.set_nodelay(true);
    match target.tls {
        None => Ok(UpstreamConn::new(Stream::Plain(stream), target.key())),
        // Boxed: inline, the handshake's state would enlarge every request's future, which
        // is moved whole into its box per request, TLS upstream or not.
        Some(tls) => {
            let key = target.key();
            Box::pin(connect_tls(
                timers,
                stream,
                tls,
                target.endpoint,
                key,
                limit,
            ))
            .await
        }
    }
}

/// The TLS handshake on a new upstream connection; it shares the connect timeout (`limit`):
/// both are the cost of a new connection.
async fn connect_tls(
    timers: &Rc<CoarseTimers>,
    stream: TcpStream,
    tls: &ClientTls,
    endpoint: &Endpoint,
    key: PoolKey,
    limit: Instant,
) -> Result<UpstreamConn, Error> {
    let name = tls.server_name(endpoint.host.as_deref(), endpoint.address);
    match timers
        .within(limit, crate::tls::connect(stream, tls, name))
        .await
    {
        Err(_) => Err(ProxyError::new(
            ErrorCause::ConnectTimeout,
            "upstream TLS handshake timeout",
            None,
        )),
        Ok(Err(e)) => {
            // A certificate that does not verify is a config problem the operator must see,
            // with its reason; at most once a second per shard, so a flood stays one line.
            thread_local! {
                static LOGGED: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
            }
            let now = Instant::now();
            let due = LOGGED.with(|last| {
                let due = last
                    .get()
                    .is_none_or(|t| now.duration_since(t).as_secs() >= 1);
                if due {
                    last.set(Some(now));
                }
                due
            });
            if due {
                tracing::warn!(addr = %endpoint.address, error = %e, "upstream TLS handshake failed");
            }
            Err(ProxyError::new(
                ErrorCause::UpstreamTls,
                "upstream TLS handshake failed",
                Some(e),
            ))
        }
        Ok(Ok(stream)) => Ok(UpstreamConn::new(Stream::Tls(Box::new(stream)), key)),
    }
}

/// Streams the request body upstream while watching the connection for a response (through
/// a second descriptor of the socket, so that reading and writing can be in flight at once):
/// an upstream may answer before it has read the body (a 413, a 401) and stop reading it, and
/// the gateway must then pass that answer on instead of waiting, blocked on a full socket, for
/// a timeout. Returns true when response bytes came first (the rest of the body stays
/// unsent); false when the body went whole and the first bytes of the response followed. Either
/// way those bytes are in `conn.buf`.
async fn stream_body_watching(
    d: &mut Downstream,
    conn: &mut UpstreamConn,
    body: BodyKind,
    up_cfg: &Upstream,
    cfg: &Listener,
    deadline: Instant,
) -> Result<bool, Error> {
    let timed_out = || {
        ProxyError::new(
            ErrorCause::UpstreamTimeout,
            "upstream request timeout",
            None,
        )
    };
    let timers = d.timers.clone();
    // A TLS stream cannot be read through a second descriptor: its records go through
    // rustls. Such a connection sends the body whole first. An h2 stream's response half
    // reads by itself: it is lent to the watcher and given back.
    let watcher = match &mut conn.stream {
        Stream::Plain(tcp) => crate::sys::dup_socket(tcp)
            .and_then(TcpStream::from_std)
            .map(Stream::Plain),
        Stream::H2(bridge) => match bridge.source.take() {
            Some(source) => Ok(Stream::H2(Box::new(Bridge {
                source: Some(source),
                sink: None,
                tls: bridge.tls,
                identity: None,
                session: None,
            }))),
            None => Err(std::io::ErrorKind::NotConnected.into()),
        },
        Stream::Tls(_) => Err(std::io::ErrorKind::Unsupported.into()),
    };
    let Ok(mut watcher) = watcher else {
        // Out of descriptors, or TLS: send without watching.
        let send = send_request_body(d, conn, body, cfg, up_cfg.idle_timeout);
        timers
            .within(deadline, send)
            .await
            .map_err(|_| timed_out())??;
        let limit = deadline.min(Instant::now() + up_cfg.idle_timeout);
        let read = conn.buf.read_from(&mut conn.stream, MAX_RESPONSE_HEAD);
        let read = timers.within(limit, read).await.map_err(|_| timed_out())?;
        return first_head_bytes(read).map(|()| false);
    };
    let mut buf = std::mem::replace(&mut conn.buf, ConnBuf::with_capacity(0));
    let mut read = std::pin::pin!(async move {
        let read = buf.read_from(&mut watcher, MAX_RESPONSE_HEAD).await;
        (read, buf, watcher)
    });
    let first = {
        let send = send_request_body(d, conn, body, cfg, up_cfg.idle_timeout);
        let send = timers.within(deadline, send);
        monoio::select! {
            biased;
            got = read.as_mut() => Err(got),
            sent = send => Ok(sent),
        }
    };
    match first {
        Err((read, buf, watcher)) => {
            conn.buf = buf;
            give_back(conn, watcher);
            // The write given up may have taken the client buffer's memory with it; the
            // connection closes after this response, so only its state needs to be sane.
            d.buf.clear();
            first_head_bytes(read).map(|()| true)
        }
        Ok(sent) => {
            sent.map_err(|_| timed_out())??;
            // The watcher's read, already in flight, is the first read of the response head:
            // giving it up could lose bytes it has taken from the socket.
            let limit = deadline.min(Instant::now() + up_cfg.idle_timeout);
            let (read, buf, watcher) = timers.within(limit, read).await.map_err(|_| timed_out())?;
            conn.buf = buf;
            give_back(conn, watcher);
            first_head_bytes(read).map(|()| false)
        }
    }
}

/// Returns an h2 stream's response half, lent to the watcher, to its stream.
fn give_back(conn: &mut UpstreamConn, mut watcher: Stream) {
    if let (Stream::H2(bridge), Some(lent)) = (&mut conn.stream, watcher.bridge()) {
        bridge.source = lent.source.take();
    }
}

/// Sends the rest of an h2 client's request body to an h2 upstream in a task of its own,
/// while the exchange reads the response: both directions at once, as gRPC's streaming
/// calls need (a bidirectional call's upstream answers each message before the next comes).
/// The client's request half and the upstream stream's sending half move into the task;
/// `rest` is what of the body the client buffer already holds.
fn spawn_duplex(
    d: &mut Downstream,
    conn: &mut UpstreamConn,
    cfg: &Listener,
    idle: std::time::Duration,
) -> bool {
    let (Some(client), Some(upstream)) = (d.stream.stream_mut().bridge(), conn.stream.bridge())
    else {
        return false;
    };
    let (Some(source), Some(sink)) = (client.source.take(), upstream.sink.take()) else {
        return false;
    };
    let mut rest = ConnBuf::with_capacity(super::buffers::READ_BUF);
    rest.append(d.buf.data());
    d.buf.clear();
    let half = |source, sink| {
        Stream::H2(Box::new(Bridge {
            source,
            sink,
            tls: false,
            identity: None,
            session: None,
        }))
    };
    let pump = super::body::pump(
        d.timers.clone(),
        half(Some(source), None),
        half(None, Some(sink)),
        rest,
        (cfg.max_request_body, cfg.body_timeout, idle),
    );
    monoio::spawn(pump);
    true
}

/// The first read of a response head: some bytes, or why there are none.
fn first_head_bytes(read: std::io::Result<usize>) -> Result<(), Error> {
    match read {
        Ok(0) => Err(ProxyError::new(
            ErrorCause::UpstreamClosed,
            "upstream closed before answering",
            None,
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => Err(ProxyError::new(
            ErrorCause::BadResponse,
            "upstream response head too large",
            None,
        )),
        Err(e) => Err(ProxyError::new(
            ErrorCause::UpstreamClosed,
            "upstream read failed",
            Some(e),
        )),
    }
}

/// Sends the request (head from `d.out`, which is kept for a second try) and reads the final
/// response head into `conn.buf`, forwarding interim 1xx heads to HTTP/1.1 clients.
async fn send_and_read_head(
    d: &mut Downstream,
    conn: &mut UpstreamConn,
    req: Request,
    up_cfg: &Upstream,
    cfg: &Listener,
    deadline: Instant,
) -> Result<(ResponseHead, Notes), Error> {
    let stale = |e: std::io::Error| {
        ProxyError::new(ErrorCause::UpstreamClosed, "upstream write failed", Some(e)).retryable()
    };
    let timed_out = |_: Elapsed| {
        ProxyError::new(
            ErrorCause::UpstreamTimeout,
            "upstream request timeout",
            None,
        )
    };
    let mut notes = Notes::default();
    let timers = d.timers.clone();
    let out = std::mem::take(&mut d.out);
    let (res, out) = timers
        .within(
            deadline,
            monoio::io::AsyncWriteRentExt::write_all(&mut conn.stream, out),
        )
        .await
        .map_err(timed_out)?;
    d.out = out;
    res.map_err(stale)?;
    match req.buffered_body {
        Some(0) => {}
        Some(n) => timers
            .within(deadline, d.buf.write_range_to(&mut conn.stream, 0, n))
            .await
            .map_err(timed_out)?
            .map_err(stale)?,
        None => {}
    }
    // Retrying is safe only while nothing is lost: the body must still be in the buffer.
    let replayable = req.buffered_body.is_some();
    let mut received = false;
    if req.buffered_body.is_none() && !spawn_duplex(d, conn, cfg, up_cfg.idle_timeout) {
        notes.early = stream_body_watching(d, conn, req.body, up_cfg, cfg, deadline).await?;
        received = true;
    }
    loop {
        if !conn.buf.is_empty() {
            match parse_response(
                conn.buf.data(),
                MAX_RESPONSE_HEAD,
                &mut d.headers,
                req.method,
            ) {
                Ok(Some(resp)) if resp.status >= 200 => return Ok((resp, notes)),
                // The upstream switches to the protocol offered; one not offered, or a 101
                // that does not name its protocol, cannot be relayed.
                Ok(Some(resp)) if resp.status == 101 => {
                    if req.upgrade.is_some() && resp.upgrade {
                        return Ok((resp, notes));
                    }
                    return Err(ProxyError::new(
                        ErrorCause::BadResponse,
                        "101 to a request that offered no such upgrade",
                        None,
                    ));
                }
                Ok(Some(interim)) => {
                    if interim.status != 100 && req.version == Version::Http11 {
                        d.out.clear();
                        write_client_head(
                            &mut d.out,
                            conn.buf.data(),
                            &interim,
                            &d.headers,
                            ClientFraming::None,
                            false,
                            req.version,
                        );
                        d.written += d.out.len() as u64;
                        notes.interim_sent = true;
                        let sent = write_vec(&mut d.stream, &mut d.out).await;
                        sent.map_err(ProxyError::client_write)?;
                    }
                    conn.buf.consume(interim.head_len);
                    continue;
                }
                Ok(None) => {}
                Err(_) => {
                    return Err(ProxyError::new(
                        ErrorCause::BadResponse,
                        "bad response head from upstream",
                        None,
                    ))
                }
            }
        }
        // Waiting for the head: the request timeout overall, the idle timeout between reads.
        let limit = deadline.min(Instant::now() + up_cfg.idle_timeout);
        let read = timers
            .within(
                limit,
                conn.buf.read_from(&mut conn.stream, MAX_RESPONSE_HEAD),
            )
            .await;
        let err = match read {
            // Nothing arrived in time: a retry may send the request elsewhere.
            Err(elapsed) if replayable && !received => return Err(timed_out(elapsed).retryable()),
            Err(elapsed) => return Err(timed_out(elapsed)),
            Ok(Ok(0)) => ProxyError::new(
                ErrorCause::UpstreamClosed,
                "upstream closed before answering",
                None,
            ),
            Ok(Ok(_)) => {
                received = true;
                continue;
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::OutOfMemory => {
                return Err(ProxyError::new(
                    ErrorCause::BadResponse,
                    "upstream response head too large",
                    None,
                ))
            }
            Ok(Err(e)) => {
                ProxyError::new(ErrorCause::UpstreamClosed, "upstream read failed", Some(e))
            }
        };
        return Err(if replayable && !received {
            err.retryable()
        } else {
            err
        });
    }
}
