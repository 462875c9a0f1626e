//! Owned read buffers that travel to the kernel and back (monoio's rent model).
//!
//! A [`ConnBuf`] holds the bytes read from a socket but not yet consumed: `data()` is
//! `vec[start..len]`. Reads append at `len`; consuming moves `start`. The buffer is allocated
//! once per connection and grows only up to the head limit the caller allows, so memory per
//! connection stays bounded whatever the body size.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;

use crate::http::h2::bridge::Bridge;
use crate::rt::coarse::{CoarseTimers, ShutdownGuard};
use crate::tls::{ClientIdentity, TlsStream};

/// A connection's socket, plain or with TLS on it, or one HTTP/2 stream of a connection
/// seen as HTTP/1.1 text (see `http::h2::bridge`).
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
    H2(Box<Bridge>),
}

impl Stream {
    /// The socket, for a stream that is one.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(t) => Some(t.tcp()),
            Stream::H2(_) => None,
        }
    }

    pub fn is_tls(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(_) => true,
            Stream::H2(b) => b.tls,
        }
    }

    /// The verified client certificate's identity, on a mutual-TLS connection.
    pub fn identity(&self) -> Option<&Rc<ClientIdentity>> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(t) => t.identity.as_ref(),
            Stream::H2(b) => b.identity.as_ref(),
        }
    }

    /// Waits until a read would find bytes (see `TcpStream::readable`); an h2 stream's read
    /// waits by itself.
    pub async fn readable(&self, relaxed: bool) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.readable(relaxed).await,
            Stream::Tls(t) => t.readable(relaxed).await,
            Stream::H2(_) => Ok(()),
        }
    }

    /// Whether input no read has taken is waiting (see `TlsStream::has_pending_input`);
    /// plain sockets keep theirs in the kernel, where the pool's peek sees it.
    pub fn has_pending_input(&self) -> bool {
        match self {
            Stream::Plain(_) | Stream::H2(_) => false,
            Stream::Tls(t) => t.has_pending_input(),
        }
    }

    /// The stream ended without the peer's `close_notify` (TLS only).
    pub fn ended_uncleanly(&self) -> bool {
        match self {
            Stream::Plain(_) | Stream::H2(_) => false,
            Stream::Tls(t) => t.ended_uncleanly(),
        }
    }

    /// The h2 stream this is, if it is one.
    pub fn bridge(&mut self) -> Option<&mut Bridge> {
        match self {
            Stream::H2(b) => Some(b),
            _ => None,
        }
    }

    /// Lets go of per-request memory while the connection idles.
    pub fn release(&mut self) {
        if let Stream::Tls(t) = self {
            t.release();
        }
    }
}

impl Stream {
    /// The socket's descriptor; none for an h2 stream.
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.tcp().map(AsRawFd::as_raw_fd)
    }
}

/// The future of one operation on a [`Stream`]: the plain socket's own future inline, a TLS
/// operation's boxed. A TLS operation's state (rustls, its own socket reads and writes) is
/// several times a plain one's; inline, it would make every plain read and write future as
/// large, copied wherever futures move. A box per TLS operation costs far less than the
/// record it encrypts or decrypts.
pub enum StreamOp<P, T, H> {
    Plain(P),
    Tls(Pin<Box<T>>),
    H2(Pin<Box<H>>),
}

impl<P: Future, T: Future<Output = P::Output>, H: Future<Output = P::Output>> Future
    for StreamOp<P, T, H>
{
    type Output = P::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<P::Output> {
        // SAFETY: the plain future is never moved out of the pinned enum (no variant is
        // replaced while pinned), so projecting the pin onto it is sound.
        match unsafe { self.get_unchecked_mut() } {
            StreamOp::Plain(p) => unsafe { Pin::new_unchecked(p) }.poll(cx),
            StreamOp::Tls(t) => t.as_mut().poll(cx),
            StreamOp::H2(h) => h.as_mut().poll(cx),
        }
    }
}

impl AsyncReadRent for Stream {
    fn read<T: IoBufMut>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        match self {
            Stream::Plain(s) => StreamOp::Plain(s.read(buf)),
            Stream::Tls(t) => StreamOp::Tls(Box::pin(t.read(buf))),
            Stream::H2(b) => StreamOp::H2(Box::pin(b.read(buf))),
        }
    }

    fn readv<T: IoVecBufMut>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        match self {
            Stream::Plain(s) => StreamOp::Plain(s.readv(buf)),
            Stream::Tls(t) => StreamOp::Tls(Box::pin(t.readv(buf))),
            Stream::H2(_) => StreamOp::H2(Box::pin(unsupported(buf))),
        }
    }
}

impl AsyncWriteRent for Stream {
    fn write<T: IoBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        match self {
            Stream::Plain(s) => StreamOp::Plain(s.write(buf)),
            Stream::Tls(t) => StreamOp::Tls(Box::pin(t.write(buf))),
            Stream::H2(b) => StreamOp::H2(Box::pin(b.write(buf))),
        }
    }

    fn writev<T: IoVecBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        match self {
            Stream::Plain(s) => StreamOp::Plain(s.writev(buf)),
            Stream::Tls(t) => StreamOp::Tls(Box::pin(t.writev(buf))),
            Stream::H2(_) => StreamOp::H2(Box::pin(unsupported(buf))),
        }
    }

    fn flush(&mut self) -> impl Future<Output = io::Result<()>> {
        match self {
            Stream::Plain(s) => StreamOp::Plain(s.flush()),
            Stream::Tls(t) => StreamOp::Tls(Box::pin(t.flush())),
            Stream::H2(_) => StreamOp::H2(Box::pin(std::future::ready(Ok(())))),
        }
    }

    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> {
        match self {
            Stream::Plain(s) => StreamOp::Plain(s.shutdown()),
            Stream::Tls(t) => StreamOp::Tls(Box::pin(t.shutdown())),
            // The stream ends with its message; there is no connection of its own to close.
            Stream::H2(_) => StreamOp::H2(Box::pin(std::future::ready(Ok(())))),
        }
    }
}

/// Vectored I/O on an h2 stream: the pipeline never asks for it.
async fn unsupported<T>(buf: T) -> BufResult<usize, T> {
    (Err(io::ErrorKind::Unsupported.into()), buf)
}

pub struct ConnBuf {
    vec: Vec<u8>,
    start: usize,
    /// Bytes consumed over the buffer's life (for byte counters).
    consumed_total: u64,
}

impl ConnBuf {
    pub fn with_capacity(capacity: usize) -> Self {
        ConnBuf {
            vec: Vec::with_capacity(capacity),
            start: 0,
            consumed_total: 0,
        }
    }

    /// Gives up the (empty) buffer's memory, e.g. to a pool while the connection idles.
    pub fn detach(&mut self) -> Vec<u8> {
        debug_assert!(self.is_empty());
        self.start = 0;
        let mut vec = std::mem::take(&mut self.vec);
        vec.clear();
        vec
    }

    /// Takes `vec` (cleared) as the buffer's memory; the buffer must be empty.
    pub fn attach(&mut self, mut vec: Vec<u8>) {
        debug_assert!(self.is_empty());
        vec.clear();
        self.vec = vec;
        self.start = 0;
    }

    /// Unconsumed bytes.
    pub fn data(&self) -> &[u8] {
        &self.vec[self.start..]
    }

    /// Unconsumed bytes, to rewrite in place (a request path, normalised).
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.vec[self.start..]
    }

    pub fn len(&self) -> usize {
        self.vec.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.vec.len()
    }

    pub fn consumed_total(&self) -> u64 {
        self.consumed_total
    }

    pub fn capacity(&self) -> usize {
        self.vec.capacity()
    }

    /// Drops the first `n` unconsumed bytes.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        self.consumed_total += n as u64;
        if self.start == self.vec.len() {
            self.vec.clear();
            self.start = 0;
        }
    }

    pub fn clear(&mut self) {
        self.vec.clear();
        self.start = 0;
    }

    /// Makes room to read at least one byte: moves unconsumed bytes to the front, and grows
    /// the buffer (up to `max_capacity`) only when it is full of unconsumed bytes.
    fn make_room(&mut self, max_capacity: usize) -> bool {
        if self.vec.len() < self.vec.capacity() {
            return true;
        }
        if self.start > 0 {
            self.vec.copy_within(self.start.., 0);
            self.vec.truncate(self.vec.len() - self.start);
            self.start = 0;
            return true;
        }
        if self.vec.capacity() < max_capacity {
            let grow = (self.vec.capacity()).min(max_capacity - self.vec.capacity());
            self.vec.reserve_exact(grow.max(1));
            return true;
        }
        false
    }

    /// Appends bytes that did not come from a read (a body's start, handed to another task).
    pub fn append(&mut self, bytes: &[u8]) {
        self.vec.extend_from_slice(bytes);
    }

    /// The empty buffer's memory, to write bytes that do not come from a read (an h2
    /// request's head, built by its codec).
    pub fn fill(&mut self) -> &mut Vec<u8> {
        debug_assert!(self.is_empty());
        self.clear();
        &mut self.vec
    }

    /// Reads once from `stream`, appending. Ok(0) means end of stream; an error of kind
    /// `OutOfMemory` means the buffer is at `max_capacity` and full.
    pub async fn read_from<S: AsyncReadRent>(
        &mut self,
        stream: &mut S,
        max_capacity: usize,
    ) -> io::Result<usize> {
        if !self.make_room(max_capacity) {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "buffer full"));
        }
        let vec = std::mem::take(&mut self.vec);
        let len = vec.len();
        let cap = vec.capacity();
        let (res, slice) = stream.read(vec.slice_mut(len..cap)).await;
        self.vec = slice.into_inner();
        res
    }

    /// Writes `data()[range]` to `stream`, whole.
    pub async fn write_range_to<S: AsyncWriteRent>(
        &mut self,
        stream: &mut S,
        from: usize,
        to: usize,
    ) -> io::Result<()> {
        let vec = std::mem::take(&mut self.vec);
        let (begin, end) = (self.start + from, self.start + to);
        let (res, slice) = stream.write_all(vec.slice(begin..end)).await;
        self.vec = slice.into_inner();
        res.map(|_| ())
    }
}

/// The client socket inside a pooled request state: attached while the connection has a
/// request in progress, detached while it idles (the state then serves other connections).
/// Reading or writing a detached stream is a bug, and panics.
///
/// Every write is bounded by the listener's `send_timeout` (nginx's `send_timeout`): a client
/// that stops reading would otherwise hold its connection, its request state and its upstream
/// connection for as long as TCP keeps a zero window open, which is forever. When the time is
/// up the shard's coarse timer shuts the socket down, so the write in flight fails at once and
/// gives its buffer back (a cancelled write would keep it), and the write reports `TimedOut`.
/// A write costs a timer slot taken and given back, no waker and no second future to poll.
pub struct Attached {
    stream: Option<Stream>,
    timers: Rc<CoarseTimers>,
    send_timeout: Duration,
}

impl Attached {
    pub fn new(timers: Rc<CoarseTimers>) -> Attached {
        Attached {
            stream: None,
            timers,
            send_timeout: Duration::from_secs(60),
        }
    }

    pub fn attach(&mut self, stream: Stream) {
        debug_assert!(self.stream.is_none());
        self.stream = Some(stream);
    }

    pub fn detach(&mut self) -> Option<Stream> {
        self.stream.take()
    }

    /// The verified client certificate's identity, on a mutual-TLS connection.
    pub fn identity(&self) -> Option<&Rc<ClientIdentity>> {
        self.stream.as_ref().and_then(Stream::identity)
    }

    pub fn is_tls(&self) -> bool {
        self.stream.as_ref().is_some_and(Stream::is_tls)
    }

    /// The client's request is one stream of an HTTP/2 connection.
    pub fn is_h2(&self) -> bool {
        matches!(self.stream, Some(Stream::H2(_)))
    }

    /// The TLS connection, when the client speaks TLS.
    pub fn tls(&self) -> Option<&TlsStream> {
        match self.stream.as_ref()? {
            Stream::Tls(t) => Some(t),
            _ => None,
        }
    }

    /// The client's TLS session, on an HTTP/2 stream over TLS.
    pub fn h2_session(&self) -> Option<&crate::tls::stream::TlsSession> {
        match self.stream.as_ref()? {
            Stream::H2(b) => b.session.as_deref(),
            _ => None,
        }
    }

    /// Bounds each later write (the listener's `send_timeout`).
    pub fn set_send_timeout(&mut self, timeout: Duration) {
        self.send_timeout = timeout;
        if let Some(Stream::H2(b)) = self.stream.as_mut() {
            if let Some(sink) = b.sink.as_mut() {
                sink.send_timeout = timeout;
            }
        }
    }

    /// Shuts the socket down if the write about to start is not done within the send
    /// timeout. The guard goes into the write's future, which borrows the stream: the
    /// descriptor stays open for as long as the guard can act on it.
    fn send_guard(&mut self) -> Option<ShutdownGuard> {
        // An h2 stream bounds its own writes: it waits for flow-control window, not a socket.
        let fd = self.get().raw_fd()?;
        Some(
            self.timers
                .shutdown_at(fd, self.timers.after(self.send_timeout)),
        )
    }

    /// The socket itself, for a connection that leaves HTTP (an upgrade): its writes are no
    /// longer bounded by the send timeout.
    pub(crate) fn stream_mut(&mut self) -> &mut Stream {
        self.get()
    }

    fn get(&mut self) -> &mut Stream {
        self.stream
            .as_mut()
            .expect("a request state is used only with its connection attached")
    }
}

/// Runs the write `op` and reports `TimedOut` when `guard` shut the socket down before it
/// ended (the write then failed at once, and gave its buffer back).
async fn bounded<T>(
    guard: Option<ShutdownGuard>,
    op: impl Future<Output = BufResult<usize, T>>,
) -> BufResult<usize, T> {
    let (res, buf) = op.await;
    if guard.is_some_and(|g| g.fired()) {
        let e = io::Error::new(
            io::ErrorKind::TimedOut,
            "send timeout: the client took none of the response in time",
        );
        return (Err(e), buf);
    }
    (res, buf)
}

impl AsyncReadRent for Attached {
    fn read<T: IoBufMut>(
        &mut self,
        buf: T,
    ) -> impl std::future::Future<Output = BufResult<usize, T>> {
        self.get().read(buf)
    }

    fn readv<T: IoVecBufMut>(
        &mut self,
        buf: T,
    ) -> impl std::future::Future<Output = BufResult<usize, T>> {
        self.get().readv(buf)
    }
}

impl AsyncWriteRent for Attached {
    fn write<T: IoBuf>(
        &mut self,
        buf: T,
    ) -> impl std::future::Future<Output = BufResult<usize, T>> {
        let guard = self.send_guard();
        bounded(guard, self.get().write(buf))
    }

    fn writev<T: IoVecBuf>(
        &mut self,
        buf: T,
    ) -> impl std::future::Future<Output = BufResult<usize, T>> {
        let guard = self.send_guard();
        bounded(guard, self.get().writev(buf))
    }

    fn flush(&mut self) -> impl std::future::Future<Output = io::Result<()>> {
        self.get().flush()
    }

    fn shutdown(&mut self) -> impl std::future::Future<Output = io::Result<()>> {
        // Over TLS a shutdown writes close_notify first: bounded like any write.
        let guard = self.send_guard();
        let shutdown = self.get().shutdown();
        async move {
            let res = shutdown.await;
            drop(guard);
            res
        }
    }
}

/// Writes a whole owned `Vec` and gives it back cleared, ready for reuse.
pub async fn write_vec<S: AsyncWriteRent>(stream: &mut S, vec: &mut Vec<u8>) -> io::Result<()> {
    let owned = std::mem::take(vec);
    let (res, mut owned) = stream.write_all(owned).await;
    owned.clear();
    *vec = owned;
    res.map(|_| ())
}

/// Writes a static byte string whole.
pub async fn write_static<S: AsyncWriteRent>(
    stream: &mut S,
    bytes: &'static [u8],
) -> io::Result<()> {
    let (res, _) = stream.write_all(bytes).await;
    res.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consume_and_compact() {
        let mut b = ConnBuf::with_capacity(8);
        b.vec.extend_from_slice(b"abcdefgh");
        b.consume(3);
        assert_eq!(b.data(), b"defgh");
        assert!(b.make_room(8));
        assert_eq!(b.data(), b"defgh");
        assert_eq!(b.start, 0);
        b.consume(5);
        assert!(b.is_empty());
        assert_eq!(b.vec.len(), 0);
    }

    #[test]
    fn grows_only_to_max() {
        let mut b = ConnBuf::with_capacity(4);
        b.vec.extend_from_slice(b"abcd");
        assert!(b.make_room(6));
        assert!(b.capacity() >= 5);
        let cap = b.capacity();
        b.vec.resize(cap, b'x');
        assert!(!b.make_room(cap));
    }
}
