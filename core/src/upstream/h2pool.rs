//! A shard's HTTP/2 connections to upstream endpoints, shared by the streams in flight.
//!
//! Where the HTTP/1.1 pool lends a whole connection per exchange, an HTTP/2 connection carries
//! many exchanges at once: a checkout lends one stream slot on a live connection to its key
//! ([`PoolKey`]), opening another connection only when every one to the key is at its stream
//! limit (the peer's MAX_CONCURRENT_STREAMS, and ours). Past [`H2Limits::max_connections`], a
//! checkout waits, first come first served, until a stream ends or its deadline passes.
//!
//! Each connection is driven by a task of its own (the `h2` crate moves nothing unless its
//! connection future is polled); the task also closes the connection once it has had no stream
//! for the idle timeout, with a slot of the shard's coarse timers (16 bytes while idle, and no
//! timer at all while busy). A connection that got GOAWAY, failed, or whose task ended is never
//! lent again; the streams already on it finish or fail on their own. The pool keeps only live
//! connections, and the checkouts waiting for them: a key with neither is forgotten.
//!
//! Single-threaded like the rest of a shard: `Rc`, `Cell` and `RefCell`, no borrow held across
//! an await, and the handle ([`H2Pool`]) is shared by cloning it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::Bytes;
use h2::client::{Connection, SendRequest};
use h2::Ping;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Error, ProxyError};
use crate::http::h2::bridge::h2_io_error;
use crate::http::h2::io::PollStream;
use crate::io::Stream;
use crate::metrics::ErrorCause;
use crate::rt::coarse::{CoarseTimers, CoarseWait};
use crate::tls::poll::PollTls;
use crate::upstream::PoolKey;

/// Each stream's receive window: what an upstream may send ahead of the client's reading, per
/// stream.
pub const STREAM_WINDOW: u32 = 64 * 1024;
/// The connection's receive window: room for 128 streams' windows, so that a few slow readers
/// do not stall every other stream on the connection.
pub const CONNECTION_WINDOW: u32 = 128 * STREAM_WINDOW;
/// The largest response head (decoded header list) an upstream may send.
pub const MAX_RESPONSE_HEAD: u32 = 64 * 1024;
/// Request bytes buffered per stream before a send is pushed back.
pub const MAX_SEND_BUFFER: usize = 64 * 1024;
/// Streams assumed allowed until the peer's SETTINGS say otherwise.
pub const INITIAL_MAX_SEND_STREAMS: usize = 100;
/// Locally reset streams remembered (late frames on them are then ignored): a connection's
/// worth, as the clients of every stream on one may go away together.
const MAX_CONCURRENT_RESET_STREAMS: usize = 100;
/// How long a connection that will take no new stream may take to close once its last stream
/// ended (it sends GOAWAY and goes when nothing refers to it any more).
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What a checkout may do; the caller passes its upstream's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Limits {
    /// Streams in flight on one connection, at most; the peer's MAX_CONCURRENT_STREAMS may
    /// lower it.
    pub max_streams: u32,
    /// Connections to one key, at most; past it, a checkout waits for a stream to end.
    pub max_connections: u32,
    /// A connection with no stream in flight for this long closes (the upstream's
    /// `pool_idle_timeout`).
    pub idle_timeout: Duration,
    /// Opening a connection (TCP, TLS and the HTTP/2 handshake up to the peer's SETTINGS)
    /// takes at most this long (the upstream's `connect_timeout`).
    pub connect_timeout: Duration,
}

impl H2Limits {
    /// 100 streams per connection and 64 connections per key.
    pub const fn new(connect_timeout: Duration, idle_timeout: Duration) -> H2Limits {
        H2Limits {
            max_streams: 100,
            max_connections: 64,
            idle_timeout,
            connect_timeout,
        }
    }
}

/// One stream's permission to use a connection: [`send`](H2Lease::send) is ready for one
/// `send_request`. Keep [`slot`](H2Lease::slot) until the exchange is over (response body and
/// trailers read, request body sent, or the stream reset): until it is dropped the stream
/// counts against the connection's limit, and the connection is not idle.
#[derive(Debug)]
pub struct H2Lease {
    pub send: SendRequest<Bytes>,
    /// The connection carried a stream before this one (it did not open for this checkout).
    pub reused: bool,
    pub slot: StreamSlot,
}

/// A stream in flight on a pooled connection; dropping it ends the stream's count there.
pub struct StreamSlot {
    conn: Rc<Conn>,
}

impl StreamSlot {
    /// The connection's number, unique within the pool (for logs).
    pub fn connection_id(&self) -> u64 {
        self.conn.id
    }

    /// Lends the connection to no further stream (it stalled, or broke the protocol); the
    /// streams on it, this one included, go on.
    pub fn discard_connection(&self) {
        self.conn.retire();
    }
}

impl fmt::Debug for StreamSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSlot")
            .field("connection", &self.conn.id)
            .finish()
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let conn = &self.conn;
        let left = conn.in_flight.get() - 1;
        conn.in_flight.set(left);
        if left == 0 {
            if !conn.dead.get() {
                conn.idle_deadline.set(conn.timers.after(conn.idle_timeout));
            }
            // A driver that holds an idle wait already sees the new deadline when it fires.
            if !conn.idle_armed.get() {
                conn.wake_driver();
            }
        }
        if !conn.dead.get() {
            conn.key.wake_one();
        }
    }
}

/// The shard's pool: a handle, cloned to share it (the connection tasks hold none).
#[derive(Clone, Default)]
pub struct H2Pool {
    shared: Rc<Shared>,
}

#[derive(Default)]
struct Shared {
    keys: RefCell<AHashMap<PoolKey, Rc<KeyState>>>,
    next_id: Cell<u64>,
}

/// The connections to one key, and the checkouts waiting for one of them.
struct KeyState {
    key: PoolKey,
    pool: Weak<Shared>,
    /// Live connections, oldest first: streams go to the oldest with room, so that the newer
    /// ones a burst opened fall idle and close.
    conns: RefCell<Vec<Rc<Conn>>>,
    /// Connections being opened.
    connecting: Cell<u32>,
    waiters: RefCell<VecDeque<Rc<Waiter>>>,
    /// Connects that failed so far, and the cause of the last: a checkout that waited for a
    /// connection being opened fails with it when that connect failed.
    failures: Cell<u64>,
    last_failure: Cell<ErrorCause>,
}

struct Conn {
    id: u64,
    key: Rc<KeyState>,
    /// The pool's handle on the connection; None once it takes no new stream, so that the
    /// connection closes when its last stream does.
    send: RefCell<Option<SendRequest<Bytes>>>,
    in_flight: Cell<u32>,
    /// Streams lent so far.
    lent: Cell<u64>,
    /// Takes no new stream: GOAWAY, an error, idle, discarded, or its task ended.
    dead: Cell<bool>,
    idle_deadline: Cell<Instant>,
    /// The driver holds an idle wait (no wake needed when the last stream ends).
    idle_armed: Cell<bool>,
    driver: RefCell<Option<Waker>>,
    timers: Rc<CoarseTimers>,
    idle_timeout: Duration,
}

struct Waiter {
    notified: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

enum Take {
    Lease(H2Lease),
    /// Open a connection (counted in `connecting` already).
    Connect,
    /// Wait: for a connection being opened, or for a stream to end.
    Wait {
        for_connect: bool,
    },
}

impl H2Pool {
    pub fn new() -> H2Pool {
        H2Pool::default()
    }

    /// A stream slot on a connection to `key`: an existing connection with room, else a new one
    /// made of what `connect` yields (a TCP stream for h2c, or TLS that negotiated `h2` by
    /// ALPN; `connect` is awaited only then, and its errors are returned as they are), else,
    /// at `limits.max_connections`, the first slot to free up. `deadline` bounds it all:
    /// waiting, the connect and the HTTP/2 handshake (which waits for the peer's SETTINGS, so
    /// that its stream limit is known before the connection is lent and a peer that does not
    /// speak HTTP/2 fails here, as `ConnectFailed`).
    pub async fn checkout<F>(
        &self,
        key: PoolKey,
        connect: F,
        limits: &H2Limits,
        deadline: Instant,
        timers: &Rc<CoarseTimers>,
    ) -> Result<H2Lease, Error>
    where
        F: Future<Output = Result<Stream, Error>>,
    {
        // The key this checkout waited on for a connection being opened, and the connects
        // that had failed there by then.
        let mut waited_on: Option<(Rc<KeyState>, u64)> = None;
        let mut front = false;
        loop {
            if let Some((ks, seen)) = &waited_on {
                if ks.failures.get() != *seen {
                    // The connect this checkout waited for failed: so does the checkout, as
                    // the connect's own caller did (a retry may pick another endpoint).
                    return Err(ProxyError::new(
                        ks.last_failure.get(),
                        "the upstream h2 connection this request waited for failed",
                        None,
                    ));
                }
            }
            // Looked up again after each wait: the key may have been forgotten meanwhile.
            let ks = self.key_state(key);
            let for_connect = match ks.try_take(limits) {
                Take::Lease(lease) => return Ok(lease),
                Take::Connect => return self.open(ks, connect, limits, deadline, timers).await,
                Take::Wait { for_connect } => for_connect,
            };
            if for_connect && waited_on.is_none() {
                waited_on = Some((ks.clone(), ks.failures.get()));
            }
            let wait = Wait::register(&ks, front);
            drop(ks);
            if timers.within(deadline, wait).await.is_err() {
                return Err(ProxyError::new(
                    ErrorCause::ConnectTimeout,
                    if for_connect {
                        "upstream h2 connect timeout"
                    } else {
                        "no upstream h2 stream free in time: every connection is at its limit"
                    },
                    None,
                ));
            }
            front = true;
        }
    }

    /// Live connections, all keys together.
    pub fn connections(&self) -> usize {
        let keys = self.shared.keys.borrow();
        keys.values().map(|ks| ks.conns.borrow().len()).sum()
    }

    /// Live connections to `key`.
    pub fn connections_to(&self, key: PoolKey) -> usize {
        let keys = self.shared.keys.borrow();
        keys.get(&key).map_or(0, |ks| ks.conns.borrow().len())
    }

    /// Streams in flight on live connections, all keys together.
    pub fn streams_in_flight(&self) -> usize {
        let keys = self.shared.keys.borrow();
        keys.values()
            .map(|ks| {
                let conns = ks.conns.borrow();
                conns
                    .iter()
                    .map(|c| c.in_flight.get() as usize)
                    .sum::<usize>()
            })
            .sum()
    }

    /// Closes every connection with no stream in flight (the shard drains). Returns how many.
    pub fn close_idle(&self) -> usize {
        let idle: Vec<Rc<Conn>> = {
            let keys = self.shared.keys.borrow();
            keys.values()
                .flat_map(|ks| {
                    let conns = ks.conns.borrow();
                    conns
                        .iter()
                        .filter(|c| c.in_flight.get() == 0)
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for conn in &idle {
            conn.retire();
        }
        idle.len()
    }

    fn key_state(&self, key: PoolKey) -> Rc<KeyState> {
        let mut keys = self.shared.keys.borrow_mut();
        keys.entry(key)
            .or_insert_with(|| {
                Rc::new(KeyState {
                    key,
                    pool: Rc::downgrade(&self.shared),
                    conns: RefCell::default(),
                    connecting: Cell::new(0),
                    waiters: RefCell::default(),
                    failures: Cell::new(0),
                    last_failure: Cell::new(ErrorCause::ConnectFailed),
                })
            })
            .clone()
    }

    /// Opens a connection for this checkout (`ks.connecting` counts it already) and lends its
    /// first stream.
    async fn open<F>(
        &self,
        ks: Rc<KeyState>,
        connect: F,
        limits: &H2Limits,
        deadline: Instant,
        timers: &Rc<CoarseTimers>,
    ) -> Result<H2Lease, Error>
    where
        F: Future<Output = Result<Stream, Error>>,
    {
        let mut opening = Opening {
            ks: ks.clone(),
            conn: None,
        };
        let id = self.shared.next_id.get();
        self.shared.next_id.set(id + 1);
        let opened = async {
            let stream = connect.await?;
            let (conn, mut ping) = handshake(stream, id, &ks, limits, timers).await?;
            opening.conn = Some(conn.clone());
            // The peer's SETTINGS come before its answer to this PING: once it is in, the
            // connection's stream limit is the peer's, and the peer speaks HTTP/2.
            ping.ping(Ping::opaque()).await.map_err(|e| {
                ProxyError::new(
                    ErrorCause::ConnectFailed,
                    "upstream h2 handshake failed",
                    Some(h2_io_error(e)),
                )
            })?;
            Ok::<_, Error>(conn)
        };
        // A peer that accepts TCP but never speaks HTTP/2 costs connect_timeout, as one that
        // never accepts does, not the request's whole deadline.
        let limit = deadline.min(Instant::now() + limits.connect_timeout);
        let conn = match timers.within(limit, opened).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                ks.failed(e.cause);
                return Err(e);
            }
            Err(_) => {
                ks.failed(ErrorCause::ConnectTimeout);
                return Err(ProxyError::new(
                    ErrorCause::ConnectTimeout,
                    "upstream h2 handshake timeout",
                    None,
                ));
            }
        };
        let Some(send) = conn.ready_send() else {
            // GOAWAY already, or an error in the first exchange.
            ks.failed(ErrorCause::ConnectFailed);
            return Err(ProxyError::new(
                ErrorCause::ConnectFailed,
                "upstream h2 connection closed during its handshake",
                None,
            ));
        };
        let slot = conn.lend();
        ks.conns.borrow_mut().push(conn);
        opening.conn = None;
        Ok(H2Lease {
            send,
            reused: false,
            slot,
        })
    }
}

/// The h2 handshake over `stream`; the connection's task is spawned before this returns.
async fn handshake(
    stream: Stream,
    id: u64,
    ks: &Rc<KeyState>,
    limits: &H2Limits,
    timers: &Rc<CoarseTimers>,
) -> Result<(Rc<Conn>, h2::PingPong), Error> {
    let failed = |context, e| ProxyError::new(ErrorCause::ConnectFailed, context, Some(e));
    match stream {
        Stream::Plain(tcp) => {
            let _ = tcp.set_nodelay(true);
            start(PollStream::new(tcp, Vec::new()), id, ks, limits, timers).await
        }
        Stream::Tls(tls) => {
            if tls.connection().alpn_protocol() != Some(b"h2") {
                return Err(ProxyError::new(
                    ErrorCause::UpstreamTls,
                    "upstream TLS did not negotiate h2 by ALPN",
                    None,
                ));
            }
            let parts = tls
                .into_parts()
                .await
                .map_err(|e| failed("upstream TLS hand-over to h2 failed", e))?;
            let _ = parts.tcp.set_nodelay(true);
            let io = PollStream::new(parts.tcp, Vec::new());
            let io = PollTls::new(io, parts.conn, &parts.unread)
                .map_err(|e| failed("upstream TLS hand-over to h2 failed", e))?;
            start(io, id, ks, limits, timers).await
        }
        Stream::H2(_) => Err(ProxyError::new(
            ErrorCause::ConnectFailed,
            "an h2 stream cannot carry an upstream h2 connection",
            None,
        )),
    }
}

async fn start<T>(
    io: T,
    id: u64,
    ks: &Rc<KeyState>,
    limits: &H2Limits,
    timers: &Rc<CoarseTimers>,
) -> Result<(Rc<Conn>, h2::PingPong), Error>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (send, mut connection) = builder().handshake::<_, Bytes>(io).await.map_err(|e| {
        ProxyError::new(
            ErrorCause::ConnectFailed,
            "upstream h2 handshake failed",
            Some(h2_io_error(e)),
        )
    })?;
    let ping = connection
        .ping_pong()
        .expect("a new connection's PingPong is not taken yet");
    let conn = Rc::new(Conn {
        id,
        key: ks.clone(),
        send: RefCell::new(Some(send)),
        in_flight: Cell::new(0),
        lent: Cell::new(0),
        dead: Cell::new(false),
        idle_deadline: Cell::new(timers.after(limits.idle_timeout)),
        idle_armed: Cell::new(false),
        driver: RefCell::new(None),
        timers: timers.clone(),
        idle_timeout: limits.idle_timeout,
    });
    monoio::spawn(drive(connection, conn.clone()));
    Ok((conn, ping))
}

fn builder() -> h2::client::Builder {
    let mut b = h2::client::Builder::new();
    b.initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(MAX_RESPONSE_HEAD)
        .max_concurrent_reset_streams(MAX_CONCURRENT_RESET_STREAMS)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .initial_max_send_streams(INITIAL_MAX_SEND_STREAMS)
        .enable_push(false);
    b
}

/// A connection's task: polls it until it ends, and closes it after the idle timeout.
async fn drive<T>(connection: Connection<T, Bytes>, conn: Rc<Conn>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut connection = std::pin::pin!(connection);
    // The idle wait and the deadline it was armed for.
    let mut idle: Option<(CoarseWait, Instant)> = None;
    let ended = poll_fn(|cx| {
        if let Poll::Ready(result) = connection.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        conn.register_driver(cx.waker());
        loop {
            if conn.dead.get() || conn.in_flight.get() > 0 {
                idle = None;
                conn.idle_armed.set(false);
                if conn.dead.get() && conn.in_flight.get() == 0 {
                    return Poll::Ready(None);
                }
                return Poll::Pending;
            }
            let (wait, armed_for) = idle.get_or_insert_with(|| {
                let deadline = conn.idle_deadline.get();
                (conn.timers.wait_until(deadline), deadline)
            });
            conn.idle_armed.set(true);
            let expired = match Pin::new(wait).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(expired) => expired,
            };
            // The connection may have been busy, and idle again since, meanwhile: the
            // deadline then moved on. A kick (drain) is not the deadline either.
            let due = expired && conn.idle_deadline.get() <= *armed_for;
            idle = None;
            conn.idle_armed.set(false);
            if due {
                conn.retire();
                return Poll::Ready(None);
            }
        }
    })
    .await;
    match ended {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            tracing::debug!(connection = conn.id, upstream = %conn.key.key.0, error = %e, "upstream h2 connection failed");
        }
        None => {
            // It takes no new stream and has none: with the pool's handle gone, h2 sends
            // GOAWAY and ends the connection; a handle kept past its slot may delay that, up
            // to the grace.
            let deadline = conn.timers.after(CLOSE_GRACE);
            let _ = conn.timers.within(deadline, connection).await;
        }
    }
    conn.retire();
    conn.driver.borrow_mut().take();
}

impl KeyState {
    fn try_take(&self, limits: &H2Limits) -> Take {
        let mut broken = Vec::new();
        let mut found = None;
        {
            let mut conns = self.conns.borrow_mut();
            let mut i = 0;
            while i < conns.len() {
                match conns[i].try_stream(limits.max_streams) {
                    Ok(Some(send)) => {
                        found = Some((conns[i].clone(), send));
                        break;
                    }
                    Ok(None) => i += 1,
                    Err(()) => broken.push(conns.remove(i)),
                }
            }
        }
        for conn in broken {
            conn.close();
        }
        if let Some((conn, send)) = found {
            let reused = conn.lent.get() > 0;
            let slot = conn.lend();
            return Take::Lease(H2Lease { send, reused, slot });
        }
        let live = self.conns.borrow().len() as u64;
        let connecting = u64::from(self.connecting.get());
        let waiting = self.waiters.borrow().len() as u64;
        // A connection being opened will take that many streams: wait for it rather than
        // open one each, as a burst to a new key would.
        if connecting > 0 && waiting < connecting * u64::from(limits.max_streams.max(1)) {
            return Take::Wait { for_connect: true };
        }
        if live + connecting < u64::from(limits.max_connections.max(1)) {
            self.connecting.set(self.connecting.get() + 1);
            return Take::Connect;
        }
        Take::Wait { for_connect: false }
    }

    fn failed(&self, cause: ErrorCause) {
        self.failures.set(self.failures.get() + 1);
        self.last_failure.set(cause);
    }

    /// Lets the first waiter try again (a stream ended, or a connection went).
    fn wake_one(&self) {
        let first = self.waiters.borrow_mut().pop_front();
        if let Some(waiter) = first {
            waiter.notify();
        }
    }

    fn wake_all(&self) {
        let all = std::mem::take(&mut *self.waiters.borrow_mut());
        for waiter in all {
            waiter.notify();
        }
    }

    /// Drops the key from the pool when it has no connection and no checkout on it.
    fn forget_if_empty(self: &Rc<Self>) {
        if !self.conns.borrow().is_empty()
            || self.connecting.get() > 0
            || !self.waiters.borrow().is_empty()
        {
            return;
        }
        if let Some(pool) = self.pool.upgrade() {
            let mut keys = pool.keys.borrow_mut();
            if keys.get(&self.key).is_some_and(|ks| Rc::ptr_eq(ks, self)) {
                keys.remove(&self.key);
            }
        }
    }
}

impl Conn {
    /// A handle ready for one more stream, when the connection has room for one: Err when it
    /// takes no new stream any more (GOAWAY, an error).
    fn try_stream(&self, local_max: u32) -> Result<Option<SendRequest<Bytes>>, ()> {
        if self.dead.get() {
            return Err(());
        }
        let send = self.send.borrow();
        let Some(send) = send.as_ref() else {
            return Err(());
        };
        let max = send
            .current_max_send_streams()
            .min(local_max.max(1) as usize);
        if self.in_flight.get() as usize >= max {
            return Ok(None);
        }
        ready(send).map(Some).ok_or(())
    }

    fn ready_send(&self) -> Option<SendRequest<Bytes>> {
        let send = self.send.borrow();
        ready(send.as_ref()?)
    }

    fn lend(self: &Rc<Self>) -> StreamSlot {
        self.in_flight.set(self.in_flight.get() + 1);
        self.lent.set(self.lent.get() + 1);
        StreamSlot { conn: self.clone() }
    }

    /// Takes no new stream from now on; the streams in flight go on.
    fn close(&self) {
        if self.dead.replace(true) {
            return;
        }
        drop(self.send.borrow_mut().take());
        self.wake_driver();
    }

    /// Closes the connection and takes it out of the pool.
    fn retire(self: &Rc<Self>) {
        if self.dead.get() && !self.listed() {
            return;
        }
        self.close();
        self.key.conns.borrow_mut().retain(|c| !Rc::ptr_eq(c, self));
        // Room for another connection, for a checkout waiting at the limit.
        self.key.wake_one();
        self.key.forget_if_empty();
    }

    fn listed(self: &Rc<Self>) -> bool {
        self.key.conns.borrow().iter().any(|c| Rc::ptr_eq(c, self))
    }

    fn register_driver(&self, waker: &Waker) {
        let mut driver = self.driver.borrow_mut();
        match driver.as_ref() {
            Some(w) if w.will_wake(waker) => {}
            _ => *driver = Some(waker.clone()),
        }
    }

    fn wake_driver(&self) {
        if let Some(waker) = self.driver.borrow().as_ref() {
            waker.wake_by_ref();
        }
    }
}

/// A clone of `send` that may start a stream: None once the connection takes no new stream.
/// A fresh clone has no stream pending open, so its readiness is known without waiting.
fn ready(send: &SendRequest<Bytes>) -> Option<SendRequest<Bytes>> {
    let mut send = send.clone();
    match send.poll_ready(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(())) => Some(send),
        Poll::Ready(Err(_)) | Poll::Pending => None,
    }
}

impl Waiter {
    fn notify(&self) {
        self.notified.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }
}

/// A checkout's place in its key's queue.
struct Wait {
    ks: Rc<KeyState>,
    waiter: Rc<Waiter>,
    done: bool,
}

impl Wait {
    fn register(ks: &Rc<KeyState>, front: bool) -> Wait {
        let waiter = Rc::new(Waiter {
            notified: Cell::new(false),
            waker: RefCell::new(None),
        });
        let mut waiters = ks.waiters.borrow_mut();
        if front {
            waiters.push_front(waiter.clone());
        } else {
            waiters.push_back(waiter.clone());
        }
        drop(waiters);
        Wait {
            ks: ks.clone(),
            waiter,
            done: false,
        }
    }
}

impl Future for Wait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.waiter.notified.get() {
            self.done = true;
            return Poll::Ready(());
        }
        let mut waker = self.waiter.waker.borrow_mut();
        match waker.as_ref() {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if self.waiter.notified.get() {
            if !self.done {
                // Woken but gone (timed out, or the request went): the turn passes on.
                self.ks.wake_one();
            }
        } else {
            self.ks
                .waiters
                .borrow_mut()
                .retain(|w| !Rc::ptr_eq(w, &self.waiter));
        }
        self.ks.forget_if_empty();
    }
}

/// A connection being opened: on failure or cancellation, the connection (if the handshake
/// got that far) closes, and the checkouts that waited for it try again.
struct Opening {
    ks: Rc<KeyState>,
    conn: Option<Rc<Conn>>,
}

impl Drop for Opening {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.retire();
        }
        self.ks.connecting.set(self.ks.connecting.get() - 1);
        self.ks.wake_all();
        self.ks.forget_if_empty();
    }
}
