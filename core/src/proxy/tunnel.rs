//! An upgraded connection (WebSocket after the upstream's 101): bytes relayed both ways, each
//! direction on its own, until both have ended, either side fails, or nothing moved for the
//! idle timeout.
//!
//! Each direction reads one socket and writes the other, concurrently with the opposite
//! direction: a peer that writes a lot without reading (an echo of a large message) must never
//! wait on the gateway's write the other way. A socket is read and written at once through two
//! descriptors of it; over TLS both directions share the rustls state, taken only between
//! awaits.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::io::Stream;
use crate::rt::coarse::CoarseTimers;
use crate::sys::dup_socket;
use crate::tls::TlsStream;

/// Bytes moved per read, each direction.
const CHUNK: usize = 16 * 1024;
/// How long the other direction may go on once one has ended (HAProxy's `timeout
/// client-fin`): a peer that half-closes has said goodbye, and a tunnel must not linger
/// half-open for a full idle timeout.
const AFTER_FIN: Duration = Duration::from_secs(2);

/// What an upgraded connection carried.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Carried {
    pub from_client: u64,
    pub from_upstream: u64,
}

/// One socket of the tunnel, split for concurrent reading and writing.
enum Side<'a> {
    Plain {
        stream: &'a mut TcpStream,
        writer: TcpStream,
    },
    Tls {
        tls: RefCell<&'a mut TlsStream>,
        reader: TcpStream,
        writer: TcpStream,
    },
}

impl<'a> Side<'a> {
    fn new(stream: &'a mut Stream) -> io::Result<Side<'a>> {
        let dup = |s: &TcpStream| dup_socket(s).and_then(TcpStream::from_std);
        Ok(match stream {
            Stream::Plain(tcp) => Side::Plain {
                writer: dup(tcp)?,
                stream: tcp,
            },
            Stream::Tls(tls) => Side::Tls {
                reader: dup(tls.tcp())?,
                writer: dup(tls.tcp())?,
                tls: RefCell::new(&mut **tls),
            },
            // Upgrades are offered only to HTTP/1.1 clients and upstreams.
            Stream::H2(_) => return Err(io::ErrorKind::Unsupported.into()),
        })
    }

    fn split(&mut self) -> (Reader<'_, 'a>, Writer<'_, 'a>) {
        match self {
            Side::Plain { stream, writer } => (Reader::Plain(stream), Writer::Plain(writer)),
            Side::Tls {
                tls,
                reader,
                writer,
            } => {
                let ciphertext = tls.borrow_mut().take_unread_ciphertext();
                (
                    Reader::Tls {
                        tls,
                        socket: reader,
                        ciphertext,
                        at: 0,
                    },
                    Writer::Tls {
                        tls,
                        socket: writer,
                        sealed: Vec::new(),
                    },
                )
            }
        }
    }
}

enum Reader<'s, 'a> {
    Plain(&'s mut TcpStream),
    Tls {
        tls: &'s RefCell<&'a mut TlsStream>,
        socket: &'s mut TcpStream,
        /// Ciphertext read; `ciphertext[at..]` is not yet given to rustls.
        ciphertext: Vec<u8>,
        at: usize,
    },
}

impl Reader<'_, '_> {
    /// Reads into `buf` (cleared, `CHUNK` capacity); Ok(0) at the end of the stream.
    async fn read(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        buf.clear();
        match self {
            Reader::Plain(stream) => stream.read(buf).await,
            Reader::Tls {
                tls,
                socket,
                ciphertext,
                at,
            } => loop {
                let fed = {
                    let mut tls = tls.borrow_mut();
                    buf.resize(CHUNK, 0);
                    match tls.take_plain(&mut buf) {
                        Ok(Some(n)) => {
                            buf.truncate(n);
                            return (Ok(n), buf);
                        }
                        Ok(None) if *at < ciphertext.len() => tls.feed(&ciphertext[*at..]),
                        Ok(None) => Ok(0),
                        Err(e) => Err(e),
                    }
                };
                match fed {
                    // Given to rustls: what it decrypted is taken on the next turn.
                    Ok(n) if n > 0 => {
                        *at += n;
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        buf.clear();
                        return (Err(e), buf);
                    }
                }
                ciphertext.clear();
                *at = 0;
                let mut vec = std::mem::take(ciphertext);
                vec.reserve(CHUNK);
                let (res, vec) = socket.read(vec).await;
                *ciphertext = vec;
                match res {
                    Ok(0) => {
                        if let Err(e) = tls.borrow_mut().feed(&[]) {
                            return (Err(e), buf);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return (Err(e), buf),
                }
            },
        }
    }
}

enum Writer<'s, 'a> {
    Plain(&'s mut TcpStream),
    Tls {
        tls: &'s RefCell<&'a mut TlsStream>,
        socket: &'s mut TcpStream,
        sealed: Vec<u8>,
    },
}

impl Writer<'_, '_> {
    async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match self {
            Writer::Plain(stream) => {
                let (res, buf) = stream.write_all(buf).await;
                (res.map(drop), buf)
            }
            Writer::Tls {
                tls,
                socket,
                sealed,
            } => {
                sealed.clear();
                if let Err(e) = tls.borrow_mut().seal(&buf, sealed) {
                    return (Err(e), buf);
                }
                let (res, vec) = socket.write_all(std::mem::take(sealed)).await;
                *sealed = vec;
                (res.map(drop), buf)
            }
        }
    }

    /// Ends this direction: close_notify over TLS, then the socket's write side.
    async fn shutdown(&mut self) {
        match self {
            Writer::Plain(stream) => {
                let _ = stream.shutdown().await;
            }
            Writer::Tls {
                tls,
                socket,
                sealed,
            } => {
                // close_notify only once the peer's side has ended too: rustls must not take
                // records after sending its own alert (a bad one would make it alert twice),
                // and the other direction still reads this peer. Until then a TCP half-close
                // says the same; WebSocket's own close frame guards against truncation.
                sealed.clear();
                let close = {
                    let mut tls = tls.borrow_mut();
                    tls.input_ended() && tls.seal_close(sealed).is_ok()
                };
                if close {
                    let _ = socket.write_all(std::mem::take(sealed)).await;
                }
                let _ = socket.shutdown().await;
            }
        }
    }
}

/// When the tunnel last moved a byte, and since when each direction's write has waited on its
/// reader: a peer that stops reading must not hold the tunnel open because the other direction
/// still has traffic (nginx's `proxy_send_timeout`).
struct Clock {
    active: Cell<Instant>,
    writing: [Cell<Option<Instant>>; 2],
}

impl Clock {
    /// When the tunnel has been idle, or one write stuck, for `idle`.
    fn deadline(&self, idle: Duration) -> Instant {
        let stuck = self.writing.iter().filter_map(Cell::get).min();
        self.active.get().min(stuck.unwrap_or(self.active.get())) + idle
    }
}

/// Relays `first` (bytes already read), then everything `from` sends, to `to`; ends `to`'s
/// write side when `from` ends. `direction` indexes the clock's write state.
async fn pump(
    mut from: Reader<'_, '_>,
    mut to: Writer<'_, '_>,
    first: Vec<u8>,
    (clock, direction): (&Clock, usize),
    moved: &Cell<u64>,
) -> io::Result<()> {
    let mut buf = first;
    loop {
        if !buf.is_empty() {
            let n = buf.len() as u64;
            clock.writing[direction].set(Some(Instant::now()));
            let (res, back) = to.write_all(buf).await;
            clock.writing[direction].set(None);
            buf = back;
            res?;
            moved.set(moved.get() + n);
            clock.active.set(Instant::now());
        }
        if buf.capacity() < CHUNK {
            buf = Vec::with_capacity(CHUNK);
        }
        let (res, back) = from.read(buf).await;
        buf = back;
        if res? == 0 {
            to.shutdown().await;
            return Ok(());
        }
        clock.active.set(Instant::now());
    }
}

/// Resolves once nothing moved, or a write has waited, for `idle`.
async fn idle_out(timers: &Rc<CoarseTimers>, clock: &Clock, idle: Duration) {
    loop {
        if timers.wait_until(clock.deadline(idle)).await && clock.deadline(idle) <= Instant::now() {
            return;
        }
    }
}

/// Relays between `client` and `upstream` until both directions ended, either failed, no byte
/// moved for `idle`, or a peer left a write waiting that long. `from_client` and `from_upstream` were read past the HTTP heads.
pub(crate) async fn relay(
    timers: &Rc<CoarseTimers>,
    client: &mut Stream,
    upstream: &mut Stream,
    (from_client, from_upstream): (Vec<u8>, Vec<u8>),
    idle: Duration,
) -> io::Result<Carried> {
    let mut client = Side::new(client)?;
    let mut upstream = Side::new(upstream)?;
    let (client_r, client_w) = client.split();
    let (upstream_r, upstream_w) = upstream.split();
    let clock = Clock {
        active: Cell::new(Instant::now()),
        writing: [Cell::new(None), Cell::new(None)],
    };
    let (up_bytes, down_bytes) = (Cell::new(0), Cell::new(0));
    let up = pump(client_r, upstream_w, from_client, (&clock, 0), &up_bytes);
    let mut up = std::pin::pin!(up);
    let down = pump(
        upstream_r,
        client_w,
        from_upstream,
        (&clock, 1),
        &down_bytes,
    );
    let mut down = std::pin::pin!(down);
    let (mut up_done, mut down_done) = (false, false);
    let mut watchdog = std::pin::pin!(idle_out(timers, &clock, idle));
    let ended = loop {
        monoio::select! {
            res = up.as_mut(), if !up_done => {
                up_done = true;
                if let Err(e) = res {
                    break Some(e);
                }
            }
            res = down.as_mut(), if !down_done => {
                down_done = true;
                if let Err(e) = res {
                    break Some(e);
                }
            }
            _ = watchdog.as_mut() => break None,
        }
        if up_done && down_done {
            break None;
        }
        // One direction ended: the other gets a short grace.
        clock.active.set(Instant::now());
        watchdog.set(idle_out(timers, &clock, idle.min(AFTER_FIN)));
    };
    if let Some(e) = ended {
        tracing::debug!(error = %e, "upgraded connection ended by an error");
    }
    let carried = Carried {
        from_client: up_bytes.get(),
        from_upstream: down_bytes.get(),
    };
    Ok(carried)
}
