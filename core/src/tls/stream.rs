//! A TLS connection over a monoio socket, in monoio's rent model: rustls does the protocol
//! (it is sans-I/O), this drives the socket.
//!
//! Reads take ciphertext from the socket into a scratch buffer, hand it to rustls and give
//! the caller the plaintext; writes give rustls the plaintext and send the records it makes.
//! The scratch buffers come from a per-thread free list while a request is in progress and
//! go back to it when the connection idles ([`TlsStream::release`]), so an idle TLS
//! connection holds its socket and rustls's state, no buffer of ours.
//!
//! A peer that ends the TCP stream without a `close_notify` alert reads as the end of the
//! stream: HTTP's own framing tells a truncated message from a complete one, and most clients
//! close that way.

use std::cell::RefCell;
use std::io::{self, BufRead, Write};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::Connection;

/// Bytes asked of the socket per read: one full TLS record and its header.
const READ_CHUNK: usize = 16 * 1024 + 5 + 256;
/// Records gathered into one socket write, at most.
const WRITE_GATHER: usize = 64 * 1024;
/// Scratch buffers kept per thread for reuse.
const KEEP_SCRATCH: usize = 64;

thread_local! {
    static SCRATCH: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn scratch() -> Vec<u8> {
    SCRATCH
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(READ_CHUNK))
}

fn give_back(mut vec: Vec<u8>) {
    if vec.capacity() == 0 || vec.capacity() > 4 * WRITE_GATHER {
        return;
    }
    vec.clear();
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < KEEP_SCRATCH {
            s.push(vec);
        }
    });
}

pub struct TlsStream {
    io: TcpStream,
    conn: Connection,
    /// Ciphertext read from the socket; `rbuf[rpos..]` is not yet taken by rustls.
    rbuf: Vec<u8>,
    rpos: usize,
    /// Records on their way to the socket.
    wbuf: Vec<u8>,
    /// The socket reached its end.
    eof: bool,
    /// Plaintext rustls holds that no read has taken yet.
    plaintext: usize,
    /// The peer sent `close_notify`.
    peer_closed: bool,
    /// The stream ended without `close_notify`: data may have been cut short.
    unclean_end: bool,
    /// The verified client certificate's identity (mutual TLS), set by the handshake.
    pub identity: Option<std::rc::Rc<super::ClientIdentity>>,
}

impl TlsStream {
    pub fn new(io: TcpStream, conn: Connection) -> TlsStream {
        TlsStream {
            io,
            conn,
            rbuf: Vec::new(),
            rpos: 0,
            wbuf: Vec::new(),
            eof: false,
            plaintext: 0,
            peer_closed: false,
            unclean_end: false,
            identity: None,
        }
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.io
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The negotiated protocol version as the access log names it.
    pub fn version_name(&self) -> &'static str {
        version_name(&self.conn)
    }

    /// The name the client asked for (SNI), on a server connection.
    pub fn server_name(&self) -> Option<&str> {
        server_name(&self.conn)
    }

    /// Returns the scratch buffers while the connection idles. Ciphertext not yet given to
    /// rustls keeps its buffer.
    pub fn release(&mut self) {
        if self.rpos >= self.rbuf.len() {
            give_back(std::mem::take(&mut self.rbuf));
            self.rpos = 0;
        }
        give_back(std::mem::take(&mut self.wbuf));
    }

    /// Waits until the socket is readable, or at once when a read would find bytes without
    /// asking the socket (ciphertext not yet decrypted, plaintext not yet taken).
    pub async fn readable(&self, relaxed: bool) -> io::Result<()> {
        if self.rpos < self.rbuf.len() || self.plaintext > 0 {
            return Ok(());
        }
        self.io.readable(relaxed).await
    }

    /// Drives the handshake to its end.
    pub async fn handshake(&mut self) -> io::Result<()> {
        while self.conn.is_handshaking() {
            if self.conn.wants_write() {
                self.flush_tls().await?;
                continue;
            }
            if self.eof {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection during the handshake",
                ));
            }
            self.fill().await?;
        }
        // TLS 1.3 tickets, and the last flight of a TLS 1.2 server.
        if self.conn.wants_write() {
            self.flush_tls().await?;
        }
        Ok(())
    }

    /// Hands rustls ciphertext: what is buffered, else one read of the socket. Errors of the
    /// protocol are sent to the peer as an alert (best effort) and returned.
    async fn fill(&mut self) -> io::Result<()> {
        if self.rpos >= self.rbuf.len() && !self.eof {
            let mut vec = std::mem::take(&mut self.rbuf);
            if vec.capacity() == 0 {
                vec = scratch();
            }
            vec.clear();
            if vec.capacity() < READ_CHUNK {
                vec.reserve_exact(READ_CHUNK - vec.capacity());
            }
            self.rpos = 0;
            let (res, vec) = self.io.read(vec).await;
            self.rbuf = vec;
            match res {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) => {
                    self.rbuf.clear();
                    return Err(e);
                }
            }
        }
        if self.rpos < self.rbuf.len() {
            // rustls takes at most 4 KiB per call: hand it all there is (up to a full record
            // buffered), then decrypt once.
            let mut taken_any = false;
            while self.rpos < self.rbuf.len() {
                let mut rest = &self.rbuf[self.rpos..];
                match self.conn.read_tls(&mut rest) {
                    Ok(0) => break,
                    Ok(n) => {
                        self.rpos += n;
                        taken_any = true;
                    }
                    // Its buffer is full: what it has is processed first.
                    Err(_) if taken_any => break,
                    Err(e) => return Err(e),
                }
            }
        } else if self.eof {
            // Tells rustls the stream ended.
            let _ = self.conn.read_tls(&mut io::empty());
        }
        match self.conn.process_new_packets() {
            Ok(state) => {
                self.plaintext = state.plaintext_bytes_to_read();
                self.peer_closed |= state.peer_has_closed();
                Ok(())
            }
            Err(e) => {
                // The alert rustls queued says why; the connection is over either way.
                let _ = self.flush_tls().await;
                Err(io::Error::new(io::ErrorKind::InvalidData, e))
            }
        }
    }

    /// Sends every record rustls has queued.
    async fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            let mut vec = std::mem::take(&mut self.wbuf);
            if vec.capacity() == 0 {
                vec = scratch();
            }
            vec.clear();
            while self.conn.wants_write() && vec.len() < WRITE_GATHER {
                self.conn.write_tls(&mut vec)?;
            }
            let (res, vec) = self.io.write_all(vec).await;
            self.wbuf = vec;
            res?;
        }
        Ok(())
    }

    /// Copies plaintext rustls holds into the `len` bytes at `dst`: Some(n), Some(0) at the
    /// end of the stream, None when rustls holds none yet.
    fn take_plaintext(&mut self, dst: *mut u8, len: usize) -> io::Result<Option<usize>> {
        let mut reader = self.conn.reader();
        let taken = match reader.fill_buf() {
            Ok(chunk) => {
                let n = chunk.len().min(len);
                // SAFETY: the caller gives `len` writable bytes at `dst`; `chunk` is rustls's
                // own buffer, so the two do not overlap.
                unsafe { std::ptr::copy_nonoverlapping(chunk.as_ptr(), dst, n) };
                reader.consume(n);
                Some(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.unclean_end = true;
                Some(0)
            }
            Err(e) => return Err(e),
        };
        self.plaintext = match taken {
            Some(n) => self.plaintext.saturating_sub(n),
            None => 0,
        };
        Ok(taken)
    }

    /// Reads plaintext into the `len` bytes at `dst`; Ok(0) at the end of the stream.
    async fn read_into(&mut self, dst: *mut u8, len: usize) -> io::Result<usize> {
        loop {
            if let Some(n) = self.take_plaintext(dst, len)? {
                return Ok(n);
            }
            if self.conn.wants_write() {
                self.flush_tls().await?;
            }
            if self.eof && self.rpos >= self.rbuf.len() {
                // rustls was told; a reader that still would block has nothing more coming.
                let _ = self.conn.read_tls(&mut io::empty());
                let _ = self.conn.process_new_packets();
                return match self.take_plaintext(dst, len)? {
                    Some(n) => Ok(n),
                    None => {
                        self.unclean_end = true;
                        Ok(0)
                    }
                };
            }
            self.fill().await?;
        }
    }

    /// Whether the stream holds input no read has taken (ciphertext, plaintext, the peer's
    /// close): a connection in that state must not go back to a pool, where its next user
    /// would read it.
    pub fn has_pending_input(&self) -> bool {
        self.rpos < self.rbuf.len() || self.plaintext > 0 || self.peer_closed || self.eof
    }

    /// The stream ended without the peer's `close_notify`, so what was read may have been
    /// cut short by anyone on the path.
    pub fn ended_uncleanly(&self) -> bool {
        self.unclean_end
    }

    /// Encrypts `src` (as much as rustls takes) and sends it.
    async fn write_from(&mut self, src: &[u8]) -> io::Result<usize> {
        let n = self.conn.writer().write(src)?;
        self.flush_tls().await?;
        Ok(n)
    }

    /// Sends `close_notify`, then shuts the socket's write side.
    pub async fn close(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        let flushed = self.flush_tls().await;
        let shut = self.io.shutdown().await;
        flushed.and(shut)
    }
}

/// The synchronous steps of a connection relayed both ways at once (an upgraded connection):
/// its reading and writing directions run concurrently on their own descriptors of the
/// socket, and share the rustls state only between their awaits.
impl TlsStream {
    /// Ciphertext read from the socket that rustls has not taken yet.
    pub fn take_unread_ciphertext(&mut self) -> Vec<u8> {
        let rest = self.rbuf[self.rpos.min(self.rbuf.len())..].to_vec();
        self.rpos = self.rbuf.len();
        rest
    }

    /// Gives rustls ciphertext (an empty slice: the socket ended); returns the bytes taken.
    pub fn feed(&mut self, mut ciphertext: &[u8]) -> io::Result<usize> {
        let before = ciphertext.len();
        if before == 0 {
            self.eof = true;
            let _ = self.conn.read_tls(&mut io::empty());
        } else {
            self.conn.read_tls(&mut ciphertext)?;
        }
        let state = self
            .conn
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.plaintext = state.plaintext_bytes_to_read();
        self.peer_closed |= state.peer_has_closed();
        Ok(before - ciphertext.len())
    }

    /// Plaintext rustls holds, into `dst`: Some(0) at the end of the stream, None when it
    /// holds none yet.
    pub fn take_plain(&mut self, dst: &mut [u8]) -> io::Result<Option<usize>> {
        if self.eof && self.plaintext == 0 && !self.peer_closed {
            // Nothing more can come: report the end even without close_notify.
            return Ok(match self.take_plaintext(dst.as_mut_ptr(), dst.len())? {
                None => Some(0),
                taken => taken,
            });
        }
        self.take_plaintext(dst.as_mut_ptr(), dst.len())
    }

    /// Encrypts all of `plaintext` (and any record rustls has queued, such as an answer to a
    /// key update) into `out`.
    pub fn seal(&mut self, mut plaintext: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        loop {
            let n = self.conn.writer().write(plaintext)?;
            plaintext = &plaintext[n..];
            while self.conn.wants_write() {
                self.conn.write_tls(out)?;
            }
            if plaintext.is_empty() {
                return Ok(());
            }
        }
    }

    /// The peer's side of the stream has ended (its `close_notify`, or the socket's end).
    pub fn input_ended(&self) -> bool {
        self.eof || self.peer_closed
    }

    /// Queues `close_notify` into `out`.
    pub fn seal_close(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.conn.send_close_notify();
        while self.conn.wants_write() {
            self.conn.write_tls(out)?;
        }
        Ok(())
    }
}

fn version_name(conn: &Connection) -> &'static str {
    match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "unknown",
    }
}

fn server_name(conn: &Connection) -> Option<&str> {
    match conn {
        Connection::Server(c) => c.server_name(),
        Connection::Client(_) => None,
    }
}

/// What the access log says of a client's TLS session, kept for the streams of an HTTP/2
/// connection once the connection itself has been taken apart.
pub struct TlsSession {
    pub version: &'static str,
    pub sni: Option<Box<str>>,
}

impl TlsSession {
    pub fn of(conn: &Connection) -> TlsSession {
        TlsSession {
            version: version_name(conn),
            sni: server_name(conn).map(Into::into),
        }
    }
}

/// A handshaken TLS connection taken apart, for a protocol that drives it by poll-based I/O
/// (HTTP/2 through [`super::poll::PollTls`]).
pub struct TlsParts {
    pub tcp: TcpStream,
    pub conn: Connection,
    /// Ciphertext read from the socket that rustls has not taken yet.
    pub unread: Vec<u8>,
    pub identity: Option<std::rc::Rc<super::ClientIdentity>>,
}

impl TlsStream {
    /// Sends what rustls has queued, then gives up the socket and the rustls state.
    pub async fn into_parts(mut self) -> io::Result<TlsParts> {
        self.flush_tls().await?;
        let unread = self.take_unread_ciphertext();
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again: every field is read out exactly once
        // here, and each is then owned (or dropped) as a value of its own.
        let (tcp, conn, rbuf, wbuf, identity) = unsafe {
            (
                std::ptr::read(&this.io),
                std::ptr::read(&this.conn),
                std::ptr::read(&this.rbuf),
                std::ptr::read(&this.wbuf),
                std::ptr::read(&this.identity),
            )
        };
        give_back(rbuf);
        give_back(wbuf);
        Ok(TlsParts {
            tcp,
            conn,
            unread,
            identity,
        })
    }
}

impl Drop for TlsStream {
    fn drop(&mut self) {
        self.release();
    }
}

impl AsyncReadRent for TlsStream {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        let total = buf.bytes_total();
        match self.read_into(buf.write_ptr(), total).await {
            Ok(n) => {
                // SAFETY: `n` bytes were written at the start of the buffer.
                unsafe { buf.set_init(n) };
                (Ok(n), buf)
            }
            Err(e) => (Err(e), buf),
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        let ptr = buf.write_iovec_ptr();
        let len = buf.write_iovec_len();
        if len == 0 {
            return (Ok(0), buf);
        }
        // SAFETY: the iovecs are valid; only the first is filled (a short read is allowed).
        let first = unsafe { *ptr };
        match self
            .read_into(first.iov_base.cast::<u8>(), first.iov_len)
            .await
        {
            Ok(n) => {
                // SAFETY: `n` bytes were written at the start of the first iovec.
                unsafe { buf.set_init(n) };
                (Ok(n), buf)
            }
            Err(e) => (Err(e), buf),
        }
    }
}

impl AsyncWriteRent for TlsStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `read_ptr` is valid for `bytes_init` initialised bytes.
        let src = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let res = self.write_from(src).await;
        (res, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let ptr = buf.read_iovec_ptr();
        let len = buf.read_iovec_len();
        let mut taken = 0;
        for i in 0..len {
            // SAFETY: `len` valid iovecs of initialised bytes.
            let iov = unsafe { *ptr.add(i) };
            let src = unsafe { std::slice::from_raw_parts(iov.iov_base.cast::<u8>(), iov.iov_len) };
            match self.conn.writer().write(src) {
                Ok(n) => {
                    taken += n;
                    if n < src.len() {
                        break;
                    }
                }
                Err(e) => return (Err(e), buf),
            }
        }
        let res = self.flush_tls().await.map(|()| taken);
        (res, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.close().await
    }
}
