//! The test upstream: a small HTTP/1.1 server on 127.0.0.1 (one std thread per connection,
//! keep-alive, content-length and chunked request bodies read streaming) that records every
//! request and answers each with the [`Reply`] its handler scripts. It serves plain TCP, or
//! whatever stream a [`Wrap`] makes of each accepted connection (`crate::tls::TlsUpstream`:
//! a TLS session).

use crate::reply::{After, Reply};
use socket2::{Domain, SockRef, Socket, Type};
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Request body bytes kept in [`Received::body`]; `body_len` counts all of them.
const KEPT_BODY: usize = 1024 * 1024;
/// Largest request head the upstream reads.
const MAX_HEAD: usize = 64 * 1024;

/// One request as the upstream parsed it.
#[derive(Debug, Clone, Default)]
pub struct Received {
    pub method: String,
    pub target: String,
    pub version: String,
    /// In arrival order, names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The first 1 MiB of the body (de-chunked).
    pub body: Vec<u8>,
    /// The exact body length (de-chunked).
    pub body_len: u64,
    pub chunked: bool,
    pub trailers: Vec<(String, String)>,
    /// Which connection it came on: the accept order, from 0.
    pub connection: usize,
}

impl Received {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    /// Every value of header `name` (any case), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

type Handler = Box<dyn Fn(&Received) -> Reply + Send + Sync>;

/// A stream the upstream serves requests on.
pub(crate) trait Conn: Read + Write + Send {
    /// Called before a connection the upstream chose to close is closed (not before a reset):
    /// TLS sends its `close_notify` here.
    fn finish(&mut self) {}
}

impl Conn for TcpStream {}

impl<C: Conn + ?Sized> Conn for Box<C> {
    fn finish(&mut self) {
        (**self).finish()
    }
}

/// Makes the stream to serve from an accepted connection and its id (the accept order), e.g.
/// a TLS session after its handshake. An error closes the connection unserved.
pub(crate) type Wrap = Box<dyn Fn(TcpStream, usize) -> io::Result<Box<dyn Conn>> + Send + Sync>;

struct Shared {
    handler: Handler,
    /// `None`: requests are read from the TCP connection itself.
    wrap: Option<Wrap>,
    stop: AtomicBool,
    connections: AtomicUsize,
    open: AtomicUsize,
    received: Mutex<Vec<Received>>,
    /// Requests the upstream could not parse, as messages.
    errors: Mutex<Vec<String>>,
    /// A clone of each open connection, so dropping the upstream can shut them all down.
    streams: Mutex<HashMap<usize, TcpStream>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running test upstream; dropping it stops accepting and shuts every connection down.
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Listens on a fresh 127.0.0.1 port and answers each request with `handler(&request)`.
    pub fn start(handler: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Upstream {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let listener = TcpListener::bind(any).expect("bind the test upstream");
        Upstream::start_with(listener, handler).expect("start the test upstream")
    }

    /// [`Upstream::start`] on a listener the caller made (e.g. one with `SO_REUSEPORT`, to
    /// listen again on the port of an upstream that was dropped).
    pub fn start_with(
        listener: TcpListener,
        handler: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> io::Result<Upstream> {
        Upstream::start_wrapped(listener, None, Box::new(handler))
    }

    /// [`Upstream::start_with`], serving each connection over the stream `wrap` makes of it.
    pub(crate) fn start_wrapped(
        listener: TcpListener,
        wrap: Option<Wrap>,
        handler: Handler,
    ) -> io::Result<Upstream> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            handler,
            wrap,
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            received: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
            streams: Mutex::new(HashMap::new()),
        });
        let accepting = Arc::clone(&shared);
        let acceptor = std::thread::spawn(move || accept_loop(listener, accepting));
        Ok(Upstream {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// 200 with `body` to every request, keep-alive.
    pub fn ok(body: &str) -> Upstream {
        let body = body.to_string();
        Upstream::start(move |_| Reply::ok(&body))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections open now (closed by either side are not counted).
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Complete requests parsed so far.
    pub fn requests(&self) -> usize {
        lock(&self.shared.received).len()
    }

    /// Every complete request so far, in the order they were parsed.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    /// Requests the upstream could not parse (what the gateway sent was not valid HTTP/1.1).
    pub fn errors(&self) -> Vec<String> {
        lock(&self.shared.errors).clone()
    }

    /// Polls `cond` until it holds; panics with `what` after `deadline`.
    pub fn wait_until(&self, what: &str, deadline: Duration, cond: impl Fn(&Upstream) -> bool) {
        crate::wait_for(what, deadline, || cond(self));
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for stream in lock(&self.shared.streams).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let id = shared.connections.fetch_add(1, Ordering::SeqCst);
        shared.open.fetch_add(1, Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.streams).insert(id, clone);
        }
        let serving = Arc::clone(&shared);
        std::thread::spawn(move || {
            let conn = match &serving.wrap {
                None => stream.try_clone().map(|s| Box::new(s) as Box<dyn Conn>),
                Some(wrap) => stream.try_clone().and_then(|s| wrap(s, id)),
            };
            let after = conn.map_or(After::Close, |conn| serve(conn, id, &serving));
            // The last descriptor of the socket has to go for a close (or reset) to happen.
            lock(&serving.streams).remove(&id);
            if after == After::Reset {
                let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            } else {
                let _ = stream.shutdown(Shutdown::Both);
            }
            drop(stream);
            serving.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Serves requests on one connection until either side closes it.
fn serve(conn: impl Conn, id: usize, shared: &Shared) -> After {
    let mut reader = BufReader::with_capacity(64 * 1024, conn);
    let after = loop {
        let req = match read_request(&mut reader, id) {
            Ok(Some(req)) => req,
            Ok(None) => break After::Close,
            Err(e) => {
                if !shared.stop.load(Ordering::SeqCst) {
                    lock(&shared.errors).push(format!("connection {id}: {e}"));
                }
                break After::Close;
            }
        };
        lock(&shared.received).push(req.clone());
        let reply = (shared.handler)(&req);
        let out = reader.get_mut();
        match reply
            .write(out, &req)
            .and_then(|after| out.flush().map(|()| after))
        {
            Ok(After::KeepAlive) => continue,
            Ok(after) => break after,
            Err(_) => break After::Close,
        }
    };
    if after == After::Close {
        reader.get_mut().finish();
    }
    after
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// One line ending in CRLF, without it; `None` at a clean end of file before any byte.
fn read_line(r: &mut impl BufRead, limit: usize) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    r.by_ref().take(limit as u64).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    if !line.ends_with(b"\r\n") {
        return Err(invalid(format!(
            "line not ended by CRLF: {:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line)
        .map(Some)
        .map_err(|e| invalid(e.to_string()))
}

fn read_fields(r: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut fields = Vec::new();
    loop {
        let line = read_line(r, MAX_HEAD)?.ok_or_else(|| invalid("EOF in the head".into()))?;
        if line.is_empty() {
            return Ok(fields);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("header without a colon: {line:?}")))?;
        if name.is_empty() || name.contains(|c: char| c.is_whitespace()) {
            return Err(invalid(format!("bad header name: {line:?}")));
        }
        fields.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
}

/// Reads one request, body included; `Ok(None)` when the peer closed between requests.
fn read_request(r: &mut impl BufRead, connection: usize) -> io::Result<Option<Received>> {
    let Some(line) = read_line(r, MAX_HEAD)? else {
        return Ok(None);
    };
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(invalid(format!("bad request line: {line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("bad version: {line:?}")));
    }
    let mut req = Received {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers: read_fields(r)?,
        connection,
        ..Received::default()
    };
    let te = req.header_all("transfer-encoding").join(",");
    let lengths = req.header_all("content-length");
    if !te.is_empty() {
        if !lengths.is_empty() {
            return Err(invalid("both transfer-encoding and content-length".into()));
        }
        if !te.to_ascii_lowercase().trim_end().ends_with("chunked") {
            return Err(invalid(format!(
                "transfer-encoding not ending in chunked: {te}"
            )));
        }
        req.chunked = true;
        read_chunked(r, &mut req)?;
    } else if let Some(first) = lengths.first() {
        if lengths.iter().any(|l| l != first) {
            return Err(invalid(format!("differing content-length: {lengths:?}")));
        }
        let len: u64 = first
            .parse()
            .map_err(|_| invalid(format!("bad content-length {first:?}")))?;
        read_body(r, len, &mut req)?;
    }
    Ok(Some(req))
}

/// Reads exactly `len` body bytes into `req`, keeping the first [`KEPT_BODY`].
fn read_body(r: &mut impl BufRead, len: u64, req: &mut Received) -> io::Result<()> {
    let mut left = len;
    while left > 0 {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(invalid(format!("EOF with {left} body bytes missing")));
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let keep = n.min(KEPT_BODY.saturating_sub(req.body.len()));
        req.body.extend_from_slice(&buf[..keep]);
        r.consume(n);
        left -= n as u64;
        req.body_len += n as u64;
    }
    Ok(())
}

fn read_chunked(r: &mut impl BufRead, req: &mut Received) -> io::Result<()> {
    loop {
        let line = read_line(r, 1024)?.ok_or_else(|| invalid("EOF in chunked body".into()))?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            req.trailers = read_fields(r)?;
            return Ok(());
        }
        read_body(r, size, req)?;
        let end = read_line(r, 2)?;
        if end.as_deref() != Some("") {
            return Err(invalid("chunk not followed by CRLF".into()));
        }
    }
}

/// A listener whose accept queue is full and never drained (backlog 0, one connection
/// queued): connection attempts to it get no SYN-ACK and hang, as a host that drops packets.
pub struct Blackhole {
    addr: SocketAddr,
    _listener: Socket,
    _queued: Vec<TcpStream>,
}

impl Blackhole {
    pub fn start() -> Blackhole {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        listener.bind(&any.into()).expect("bind");
        listener.listen(0).expect("listen");
        let addr = listener
            .local_addr()
            .expect("local_addr")
            .as_socket()
            .expect("an inet address");
        let mut queued = Vec::new();
        for _ in 0..64 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(stream) => queued.push(stream),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Blackhole {
                        addr,
                        _listener: listener,
                        _queued: queued,
                    }
                }
                Err(e) => panic!("filling the blackhole's accept queue: {e}"),
            }
        }
        panic!("the blackhole's accept queue never filled (64 connections queued)");
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
