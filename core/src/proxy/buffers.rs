//! A shard's pool of request states. A connection holds a [`Downstream`] (its buffers, header
//! offsets, request id and log record) only while it has a request in progress: between
//! keep-alive requests it hands the box back, keeps only its socket and address, and waits for
//! readability with nothing else, so an idle connection costs a few hundred bytes, not
//! kilobytes. Taking and returning a box is a `Vec` pop and push, not an allocation.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;

use super::{Downstream, RequestLog};
use crate::io::{Attached, ConnBuf, Stream};
use crate::rt::coarse::CoarseTimers;
use crate::rt::signal::Signal;

/// Initial bytes of a downstream read buffer; it grows up to the listener's head limit.
pub const READ_BUF: usize = 16 * 1024;
/// Initial bytes of the buffer heads are written into.
pub const OUT_BUF: usize = 4 * 1024;
/// Boxes kept for reuse per shard while few are lent out. Under more concurrency (an h2
/// connection has up to 128 streams in flight) the pool keeps as many as are lent, up to
/// [`MAX_KEEP`], so that a busy shard does not allocate a state per request; once traffic
/// falls back under `KEEP` lent, the extra ones are freed.
const KEEP: usize = 64;
const MAX_KEEP: usize = 1024;

pub struct DownstreamPool {
    // Boxed on purpose: states are lent out and come back as one pointer, never moved whole.
    #[allow(clippy::vec_box)]
    free: RefCell<Vec<Box<Downstream>>>,
    /// States lent out now.
    lent: Cell<usize>,
    access_log: bool,
    draining: Rc<Signal>,
    timers: Rc<CoarseTimers>,
}

impl DownstreamPool {
    pub fn new(access_log: bool, draining: Rc<Signal>, timers: Rc<CoarseTimers>) -> DownstreamPool {
        DownstreamPool {
            free: RefCell::new(Vec::new()),
            lent: Cell::new(0),
            access_log,
            draining,
            timers,
        }
    }

    /// A request state for the connection `stream` from `peer`.
    pub(crate) fn take(&self, stream: Stream, peer: SocketAddr) -> Box<Downstream> {
        let lent = self.lent.get();
        self.lent.set(lent + 1);
        let popped = {
            let mut free = self.free.borrow_mut();
            if lent < KEEP && free.len() > KEEP {
                free.truncate(KEEP);
            }
            free.pop()
        };
        let mut d = popped.unwrap_or_else(|| {
            Box::new(Downstream {
                stream: Attached::new(self.timers.clone()),
                buf: ConnBuf::with_capacity(READ_BUF),
                out: Vec::with_capacity(OUT_BUF),
                headers: Vec::with_capacity(crate::http::h1::MAX_HEADERS),
                peer,
                client: peer.ip(),
                trusted_peer: false,
                peer_may_forward: true,
                listener: 0,
                written: 0,
                request_id: Vec::with_capacity(32),
                log: RequestLog::new(self.access_log),
                draining: self.draining.clone(),
                timers: self.timers.clone(),
                call_deadline: None,
                prepared: None,
            })
        });
        d.stream.attach(stream);
        d.peer = peer;
        d.client = peer.ip();
        d.trusted_peer = false;
        d.call_deadline = None;
        d.prepared = None;
        d
    }

    /// Takes back a request state whose buffer holds nothing unconsumed, and gives back its
    /// connection's socket. States whose buffers a large head or body made grow, or that lost
    /// their read buffer (to a cancelled read), are dropped rather than kept.
    pub(crate) fn put(&self, mut d: Box<Downstream>) -> Option<Stream> {
        debug_assert!(d.buf.is_empty());
        let mut stream = d.stream.detach();
        if let Some(stream) = &mut stream {
            stream.release();
        }
        let lent = self.lent.get() - 1;
        self.lent.set(lent);
        let mut free = self.free.borrow_mut();
        let read = d.buf.capacity();
        let keep = lent.clamp(KEEP, MAX_KEEP);
        if free.len() < keep && read != 0 && read <= READ_BUF && d.out.capacity() <= 4 * OUT_BUF {
            d.buf.clear();
            d.out.clear();
            d.headers.clear();
            d.written = 0;
            free.push(d);
        }
        stream
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.free.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_returned_states_and_drops_grown_ones() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let socket = || {
                Stream::Plain(
                    monoio::net::TcpStream::from_std(std::net::TcpStream::connect(addr).unwrap())
                        .unwrap(),
                )
            };
            let pool = DownstreamPool::new(false, Signal::new(), CoarseTimers::new());
            let d = pool.take(socket(), addr);
            let ptr: *const Downstream = &*d;
            assert!(pool.put(d).is_some(), "the socket comes back");
            assert_eq!(pool.kept(), 1);
            let mut again = pool.take(socket(), addr);
            assert_eq!(&*again as *const Downstream, ptr);
            assert!(again.buf.is_empty());
            again.out.reserve(OUT_BUF * 8);
            assert!(pool.put(again).is_some());
            assert_eq!(pool.kept(), 0, "a grown state is dropped");
        });
    }

    #[test]
    fn keeps_as_many_as_are_lent_until_traffic_falls() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap();
        rt.block_on(async {
            let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
            let pool = DownstreamPool::new(false, Signal::new(), CoarseTimers::new());
            let plain = || {
                Stream::H2(Box::new(crate::http::h2::bridge::Bridge {
                    source: None,
                    sink: None,
                    tls: false,
                    identity: None,
                    session: None,
                }))
            };
            // 400 in flight, each returned while most of the others are still out: every
            // state is kept while the traffic lasts.
            let mut out: Vec<_> = (0..400).map(|_| pool.take(plain(), addr)).collect();
            for _ in 0..100 {
                pool.put(out.pop().unwrap());
                out.push(pool.take(plain(), addr));
            }
            assert!(pool.kept() <= 1, "reused, not allocated");
            for d in out.drain(..200) {
                pool.put(d);
            }
            assert_eq!(pool.kept(), 200);
            for d in out.drain(..) {
                pool.put(d);
            }
            assert_eq!(
                pool.kept(),
                200,
                "what is kept stays bounded by what was lent"
            );
            // Traffic back under KEEP: the extra states go.
            let d = pool.take(plain(), addr);
            assert_eq!(pool.kept(), KEEP - 1);
            pool.put(d);
            assert_eq!(pool.kept(), KEEP);
        });
    }
}
