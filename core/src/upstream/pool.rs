//! A shard's idle keep-alive connections to upstream endpoints.
//!
//! Keyed by endpoint address, so a pool survives a reload that keeps the endpoint. Checkout is
//! last-in first-out (the warmest connection) and skips connections that idled past their
//! timeout or that the endpoint closed meanwhile (a non-blocking peek, for connections idle
//! long enough for that to be likely). A periodic sweep closes
//! expired connections so that idle sockets do not linger at the upstream.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::io::{ConnBuf, Stream};
use crate::sys::{liveness, Liveness};
use crate::upstream::h2pool::StreamSlot;
use ahash::AHashMap;

/// Bytes of the read buffer each upstream connection owns.
pub const UPSTREAM_BUF: usize = 16 * 1024;

/// What a pooled connection is good for: an endpoint address, and the TLS it speaks there
/// (0: plaintext; else a digest of the upstream's TLS settings and the server name), so that a
/// connection is never reused with other TLS settings than it was made with.
pub type PoolKey = (SocketAddr, u64);

pub struct UpstreamConn {
    pub stream: Stream,
    pub key: PoolKey,
    pub buf: ConnBuf,
    /// Served at least one exchange before (it came from the pool).
    pub reused: bool,
    /// An HTTP/2 stream's place on its pooled connection, held until the exchange ends.
    pub h2_slot: Option<StreamSlot>,
}

impl UpstreamConn {
    pub fn new(stream: Stream, key: PoolKey) -> Self {
        UpstreamConn {
            stream,
            key,
            buf: ConnBuf::with_capacity(UPSTREAM_BUF),
            reused: false,
            h2_slot: None,
        }
    }
}

struct Idle {
    conn: UpstreamConn,
    since: Instant,
    expires: Instant,
}

/// A connection idle for less than this is reused without a liveness peek (a system call):
/// upstreams close idle connections after seconds, not milliseconds, and a request that still
/// meets a closed one is sent again on a fresh connection when that is safe.
const PEEK_AFTER: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct Pool {
    idle: AHashMap<PoolKey, Vec<Idle>>,
}

impl Pool {
    pub fn checkout(&mut self, key: PoolKey) -> Option<UpstreamConn> {
        let list = self.idle.get_mut(&key)?;
        let now = Instant::now();
        while let Some(idle) = list.pop() {
            let fresh = now.duration_since(idle.since) < PEEK_AFTER;
            if idle.expires > now
                && (fresh || idle.conn.stream.tcp().map(liveness) == Some(Liveness::Idle))
            {
                let mut conn = idle.conn;
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for reuse unless the endpoint already has `max_idle` idle connections.
    pub fn checkin(&mut self, mut conn: UpstreamConn, max_idle: usize, idle_timeout: Duration) {
        // Bytes after the response (a TLS stream holds them where no peek sees them) would
        // become the next request's response.
        // An h2 stream is one exchange: its connection is the h2 pool's.
        if conn.stream.has_pending_input() || conn.stream.tcp().is_none() {
            return;
        }
        let list = self.idle.entry(conn.key).or_default();
        if list.len() >= max_idle {
            return;
        }
        conn.buf.clear();
        conn.stream.release();
        let now = Instant::now();
        list.push(Idle {
            conn,
            since: now,
            expires: now + idle_timeout,
        });
    }

    /// Closes every idle connection past its expiry. Returns how many were closed.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let mut closed = 0;
        self.idle.retain(|_, list| {
            let before = list.len();
            list.retain(|idle| idle.expires > now);
            closed += before - list.len();
            !list.is_empty()
        });
        closed
    }

    pub fn idle_count(&self) -> usize {
        self.idle.values().map(Vec::len).sum()
    }
}
