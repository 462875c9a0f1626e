//! A socket as tokio's `AsyncRead`/`AsyncWrite`, by readiness: wait until monoio says the
//! socket is readable (writable), then one non-blocking `recv` (`send`) on its descriptor.
//!
//! Both drivers have the readiness waits (a `POLL_ADD` in the io_uring ring, the epoll
//! registration on the legacy driver), so this needs nothing of monoio's `poll-io` feature.
//! Unlike a rent-I/O read, a wait holds no buffer: an idle HTTP/2 connection keeps only what
//! the `h2` crate keeps. The bytes read before the protocol was known (the preface, and what
//! came with it) are handed out first.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use monoio::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

type Wait = Pin<Box<dyn Future<Output = io::Result<()>>>>;

/// Slices per `sendmsg`, at most (the kernel's UIO_MAXIOV); the rest go in the next write.
const MAX_IOV: usize = 1024;

pub struct PollStream {
    tcp: Rc<TcpStream>,
    /// Bytes read before this stream was made; `read_first[at..]` not yet handed out.
    read_first: Vec<u8>,
    at: usize,
    readable: Option<Wait>,
    writable: Option<Wait>,
}

impl PollStream {
    /// `first`: bytes already read from `tcp`, handed out before any read of the socket.
    pub fn new(tcp: TcpStream, first: Vec<u8>) -> PollStream {
        PollStream {
            tcp: Rc::new(tcp),
            read_first: first,
            at: 0,
            readable: None,
            writable: None,
        }
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

/// Runs the non-blocking syscall `op` once the socket is ready for `direction`: its byte
/// count, or, when the socket has nothing (no room), a readiness wait parked in `wait`.
fn poll_syscall(
    tcp: &Rc<TcpStream>,
    wait: &mut Option<Wait>,
    direction: Direction,
    cx: &mut Context<'_>,
    mut op: impl FnMut(std::os::fd::RawFd) -> isize,
) -> Poll<io::Result<usize>> {
    loop {
        if let Some(pending) = wait {
            ready!(pending.as_mut().poll(cx))?;
            *wait = None;
        }
        let n = op(tcp.as_raw_fd());
        if n >= 0 {
            return Poll::Ready(Ok(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => {}
            _ => return Poll::Ready(Err(e)),
        }
        // Not relaxed: the readiness monoio remembers may be stale, since the syscall went
        // around it.
        let tcp = Rc::clone(tcp);
        *wait = Some(match direction {
            Direction::Read => Box::pin(async move { tcp.readable(false).await }),
            Direction::Write => Box::pin(async move { tcp.writable(false).await }),
        });
    }
}

impl AsyncRead for PollStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.read_first.len() {
            let n = (this.read_first.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.read_first[this.at..this.at + n]);
            this.at += n;
            if this.at == this.read_first.len() {
                this.read_first = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        // Not `initialize_unfilled`: the h2 crate hands a fresh, uninitialised buffer to
        // every read, and zeroing its spare capacity each time cost more instructions per
        // request than anything else on the h2 path.
        // SAFETY: only recv(2) writes to this memory, and only `n` bytes of it are then marked
        // initialised.
        let unfilled = unsafe { buf.unfilled_mut() };
        // SAFETY: recv(2) writes at most `unfilled.len()` bytes into `unfilled`, a valid
        // region; MSG_DONTWAIT keeps it from blocking whatever the socket's mode.
        let recv = |fd| unsafe {
            libc::recv(
                fd,
                unfilled.as_mut_ptr().cast(),
                unfilled.len(),
                libc::MSG_DONTWAIT,
            )
        };
        let n = ready!(poll_syscall(
            &this.tcp,
            &mut this.readable,
            Direction::Read,
            cx,
            recv
        ))?;
        // SAFETY: recv(2) wrote these `n` bytes.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for PollStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // SAFETY: send(2) reads `src.len()` bytes of a valid slice; MSG_NOSIGNAL turns a
        // closed peer into EPIPE instead of a signal.
        let send = |fd| unsafe {
            libc::send(
                fd,
                src.as_ptr().cast(),
                src.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        poll_syscall(&this.tcp, &mut this.writable, Direction::Write, cx, send)
    }

    /// One `sendmsg` for a frame's head and its payload: without it the h2 crate writes a
    /// DATA frame's payload of 1 KiB or more in a syscall (and often a segment) of its own.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let count = bufs.len().min(MAX_IOV);
        let send = |fd| {
            // SAFETY: an all-zero msghdr is valid (no name, no control data); IoSlice is
            // ABI-compatible with iovec on Unix, and `bufs[..count]` outlives the call, which
            // only reads those slices.
            unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = bufs.as_ptr().cast_mut().cast();
                msg.msg_iovlen = count as _;
                libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            }
        };
        poll_syscall(&this.tcp, &mut this.writable, Direction::Write, cx, send)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Nothing is buffered here: a write is in the kernel when it returns.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // SAFETY: shutdown(2) on a descriptor this stream holds open.
        let rc = unsafe { libc::shutdown(self.tcp.as_raw_fd(), libc::SHUT_WR) };
        if rc == 0 {
            Poll::Ready(Ok(()))
        } else {
            Poll::Ready(Err(io::Error::last_os_error()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::h2::PREFACE;
    use crate::rt::runtime::{build, Built};
    use bytes::Bytes;
    use monoio::io::AsyncReadRent;
    use ringway_config::DriverChoice;

    /// An h2 server on the legacy or io_uring driver, the h2 client on the same runtime:
    /// concurrent requests with bodies, a large response, trailers, and the preface read
    /// before the connection became a `PollStream`.
    fn round_trip(uring: bool) {
        let run = async {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = monoio::spawn(async move {
                let (mut tcp, _) = listener.accept().await.unwrap();
                // As the gateway will: read first, see the preface, then switch.
                let (n, first) = tcp.read(Vec::with_capacity(4096)).await;
                assert!(n.unwrap() >= 1);
                assert!(PREFACE.starts_with(&first[..first.len().min(24)]));
                let mut conn = h2::server::handshake(PollStream::new(tcp, first))
                    .await
                    .unwrap();
                while let Some(stream) = conn.accept().await {
                    let (req, mut respond) = stream.unwrap();
                    monoio::spawn(async move {
                        let mut body = req.into_body();
                        let mut got = 0usize;
                        while let Some(chunk) = body.data().await {
                            let chunk = chunk.unwrap();
                            got += chunk.len();
                            let _ = body.flow_control().release_capacity(chunk.len());
                        }
                        let resp = http::Response::builder().status(200).body(()).unwrap();
                        let mut send = respond.send_response(resp, false).unwrap();
                        send.send_data(Bytes::from(vec![7u8; 200_000]), false)
                            .unwrap();
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("x-got", got.to_string().parse().unwrap());
                        send.send_trailers(trailers).unwrap();
                    });
                }
            });
            let tcp = monoio::net::TcpStream::connect(addr).await.unwrap();
            let (client, conn) = h2::client::handshake(PollStream::new(tcp, Vec::new()))
                .await
                .unwrap();
            monoio::spawn(async move {
                let _ = conn.await;
            });
            let mut tasks = Vec::new();
            for i in 0..20usize {
                let mut client = client.clone().ready().await.unwrap();
                tasks.push(monoio::spawn(async move {
                    let req = http::Request::post("http://x/").body(()).unwrap();
                    let (resp, mut send) = client.send_request(req, false).unwrap();
                    send.send_data(Bytes::from(vec![1u8; 1000 * i]), true)
                        .unwrap();
                    let resp = resp.await.unwrap();
                    assert_eq!(resp.status(), 200);
                    let mut body = resp.into_body();
                    let mut n = 0;
                    while let Some(chunk) = body.data().await {
                        let chunk = chunk.unwrap();
                        n += chunk.len();
                        let _ = body.flow_control().release_capacity(chunk.len());
                    }
                    assert_eq!(n, 200_000);
                    let trailers = body.trailers().await.unwrap().unwrap();
                    assert_eq!(trailers["x-got"], (1000 * i).to_string().as_str());
                }));
            }
            for t in tasks {
                t.await;
            }
            drop(server);
        };
        let choice = if uring {
            DriverChoice::IoUring
        } else {
            DriverChoice::Epoll
        };
        match build(choice, 256).expect("a runtime") {
            Built::Uring(mut rt) => rt.block_on(run),
            Built::Legacy(mut rt, _) => rt.block_on(run),
        }
    }

    #[test]
    fn h2_runs_over_readiness_on_epoll() {
        round_trip(false);
    }

    #[test]
    fn h2_runs_over_readiness_on_io_uring() {
        round_trip(true);
    }
}
