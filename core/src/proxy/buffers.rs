//! A shard's pool of request states. A connection holds a [`Downstream`] (its buffers, header
//! offsets, request id and log record) only while it has a request in progress: between
//! keep-alive requests it hands the box back, keeps only its socket and address, and waits for
//! readability with nothing else, so an idle connection costs a few hundred bytes, not
//! kilobytes. Taking and returning a box is a `Vec` pop and push, not an allocation.

use std::cell::RefCell;
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
/// Boxes kept for reuse per shard; more are freed when returned.
const KEEP: usize = 64;

pub struct DownstreamPool {
    // Boxed on purpose: states are lent out and come back as one pointer, never moved whole.
    #[allow(clippy::vec_box)]
    free: RefCell<Vec<Box<Downstream>>>,
    access_log: bool,
    draining: Rc<Signal>,
    timers: Rc<CoarseTimers>,
}

impl DownstreamPool {
    pub fn new(access_log: bool, draining: Rc<Signal>, timers: Rc<CoarseTimers>) -> DownstreamPool {
        DownstreamPool {
            free: RefCell::new(Vec::new()),
            access_log,
            draining,
            timers,
        }
    }

    /// A request state for the connection `stream` from `peer`.
    pub(crate) fn take(&self, stream: Stream, peer: SocketAddr) -> Box<Downstream> {
        let mut d = self.free.borrow_mut().pop().unwrap_or_else(|| {
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
            })
        });
        d.stream.attach(stream);
        d.peer = peer;
        d.client = peer.ip();
        d.trusted_peer = false;
        d.call_deadline = None;
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
        let mut free = self.free.borrow_mut();
        let read = d.buf.capacity();
        if free.len() < KEEP && read != 0 && read <= READ_BUF && d.out.capacity() <= 4 * OUT_BUF {
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
}
