//! A shard's pool of request buffers. A connection holds buffers only while it has a request
//! in progress: between keep-alive requests it hands them back and waits for readability with
//! none, so an idle connection costs a few hundred bytes, not tens of kilobytes. Taking and
//! returning a set is a `Vec` push and pop, not an allocation.

use std::cell::RefCell;

use crate::http::h1::HeaderRef;

/// Initial bytes of a downstream read buffer; it grows up to the listener's head limit.
pub const READ_BUF: usize = 16 * 1024;
/// Initial bytes of the buffer heads are written into.
pub const OUT_BUF: usize = 4 * 1024;
/// Sets kept for reuse per shard; more are freed when returned.
const KEEP: usize = 64;

/// The buffers one request needs.
#[derive(Default)]
pub struct RequestBuffers {
    pub read: Vec<u8>,
    pub out: Vec<u8>,
    pub headers: Vec<HeaderRef>,
}

#[derive(Default)]
pub struct BufferPool {
    free: RefCell<Vec<RequestBuffers>>,
}

impl BufferPool {
    pub fn take(&self) -> RequestBuffers {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| RequestBuffers {
                read: Vec::with_capacity(READ_BUF),
                out: Vec::with_capacity(OUT_BUF),
                headers: Vec::with_capacity(crate::http::h1::MAX_HEADERS),
            })
    }

    /// Takes back a set. Sets that a large head made grow, or that lost their read buffer (to
    /// a cancelled read), are dropped rather than kept.
    pub fn put(&self, mut buffers: RequestBuffers) {
        let mut free = self.free.borrow_mut();
        let read = buffers.read.capacity();
        if free.len() >= KEEP
            || read == 0
            || read > READ_BUF
            || buffers.out.capacity() > 4 * OUT_BUF
        {
            return;
        }
        buffers.read.clear();
        buffers.out.clear();
        buffers.headers.clear();
        free.push(buffers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_returned_sets_and_drops_grown_ones() {
        let pool = BufferPool::default();
        let mut set = pool.take();
        set.read.extend_from_slice(b"abc");
        let ptr = set.read.as_ptr();
        pool.put(set);
        let again = pool.take();
        assert_eq!(again.read.as_ptr(), ptr);
        assert!(again.read.is_empty());
        let mut grown = again;
        grown.read.reserve(READ_BUF * 4);
        pool.put(grown);
        assert!(pool.free.borrow().is_empty());
    }
}
