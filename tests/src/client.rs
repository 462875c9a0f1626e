//! A raw HTTP/1.1 client over one TCP connection (plain, or TLS through
//! `crate::tls::TlsClient`): tests write exact bytes and read responses framed the way the
//! gateway framed them.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a read may block before the client gives up on the gateway.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEAD: usize = 64 * 1024;

/// `GET {path} HTTP/1.1` with a Host header and nothing else.
pub fn get(host: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

/// A response as read off the wire.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    /// In arrival order, names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// De-chunked.
    pub body: Vec<u8>,
    /// Status codes of the 1xx interim responses that came before this one.
    pub interim: Vec<u16>,
    /// Whether the body came with `transfer-encoding: chunked`.
    pub chunked: bool,
}

impl Response {
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

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What a [`Client`] runs over: a byte stream on one TCP connection (the connection itself,
/// or a TLS session on it, `crate::tls::TlsStream`). The TCP side is there for timeouts,
/// addresses and shutdown.
pub trait Transport: Read + Write {
    fn tcp(&self) -> &TcpStream;

    /// Ends the writing side, so the peer reads end of file (TLS: after a `close_notify`).
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.tcp().shutdown(std::net::Shutdown::Write)
    }
}

impl Transport for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

/// One client connection, plain TCP unless `S` says otherwise. Reads block at most 10 s;
/// then the call panics.
pub struct Client<S: Transport = TcpStream> {
    /// The stream, buffered for reading; writes go to the stream underneath the buffer.
    reader: BufReader<S>,
}

impl Client<TcpStream> {
    /// Connects or panics.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        Ok(Client::from_stream(connect_tcp(addr)?))
    }

    /// Connects from `source`, e.g. 127.0.0.2 (all of 127.0.0.0/8 is local on Linux), so that
    /// the gateway sees another client address; or panics.
    pub fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> Client {
        let connect = || {
            let domain = socket2::Domain::for_address(addr);
            let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
            socket.bind(&SocketAddr::new(source, 0).into())?;
            socket.connect_timeout(&addr.into(), READ_TIMEOUT)?;
            let stream: TcpStream = socket.into();
            configure(&stream)?;
            Ok(Client::from_stream(stream))
        };
        connect().unwrap_or_else(|e: io::Error| panic!("connect to {addr} from {source}: {e}"))
    }
}

/// A TCP connection to `addr` with the client's timeouts set, as every [`Client`] starts.
pub(crate) fn connect_tcp(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT)?;
    configure(&stream)?;
    Ok(stream)
}

fn configure(stream: &TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    stream.set_nodelay(true)
}

impl<S: Transport> Client<S> {
    /// A client on a connected stream (its TCP timeouts set, see `connect_tcp`).
    pub(crate) fn from_stream(stream: S) -> Client<S> {
        Client {
            reader: BufReader::with_capacity(64 * 1024, stream),
        }
    }

    /// The stream itself, for a protocol of its own (WebSocket); nothing must be buffered.
    pub fn into_stream(self) -> S {
        assert!(self.reader.buffer().is_empty(), "bytes read but not taken");
        self.reader.into_inner()
    }

    /// The stream underneath.
    pub fn stream(&self) -> &S {
        self.reader.get_ref()
    }

    fn tcp(&self) -> &TcpStream {
        self.reader.get_ref().tcp()
    }

    /// The client side's address (what the gateway sees as the client).
    pub fn local_addr(&self) -> SocketAddr {
        self.tcp().local_addr().expect("local_addr")
    }

    /// Writes all of `bytes` in one write call, or panics.
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes)
            .unwrap_or_else(|e| panic!("send {} bytes: {e}", bytes.len()));
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stream = self.reader.get_mut();
        stream.write_all(bytes)?;
        stream.flush()
    }

    /// Sends `req` and reads the response (HEAD-aware: the method is taken from `req`).
    pub fn request(&mut self, req: &str) -> Response {
        self.send(req.as_bytes());
        let method = req.split(' ').next().unwrap_or("GET").to_string();
        self.read_response_to(&method)
    }

    /// Reads one response to a request that was not HEAD. Panics on error or timeout.
    pub fn read_response(&mut self) -> Response {
        self.read_response_to("GET")
    }

    /// Reads one response to a `method` request (HEAD responses have no body).
    pub fn read_response_to(&mut self, method: &str) -> Response {
        self.try_read_response_to(method)
            .unwrap_or_else(|e| match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    panic!("no complete response within {READ_TIMEOUT:?}")
                }
                io::ErrorKind::UnexpectedEof => panic!("the connection closed before a response"),
                _ => panic!("reading a response: {e}"),
            })
    }

    /// As [`Client::read_response_to`], with the failure as an error: `UnexpectedEof` when
    /// the gateway closed before a whole response.
    pub fn try_read_response_to(&mut self, method: &str) -> io::Result<Response> {
        let mut interim = Vec::new();
        loop {
            let (status, headers) = self.read_head()?;
            if (100..200).contains(&status) && status != 101 {
                interim.push(status);
                continue;
            }
            let mut resp = Response {
                status,
                headers,
                interim,
                ..Response::default()
            };
            self.read_body(method, &mut resp)?;
            return Ok(resp);
        }
    }

    /// Reads one response head only (status and headers), e.g. a `100 Continue` before the
    /// body is sent. Panics on error or timeout.
    pub fn read_head_only(&mut self) -> (u16, Vec<(String, String)>) {
        self.read_head()
            .unwrap_or_else(|e| panic!("reading a response head: {e}"))
    }

    /// True when the peer closes the connection (EOF or reset) within `within`; false when
    /// it is still open then, or when bytes arrive instead (they stay unread).
    pub fn is_closed(&mut self, within: Duration) -> bool {
        self.wait_closed(within, false).is_some()
    }

    /// Reads and counts whatever arrives until the peer closes the connection (EOF or reset);
    /// `None` if it is still open after `within`.
    pub fn read_until_closed(&mut self, within: Duration) -> Option<u64> {
        self.wait_closed(within, true)
    }

    /// Waits up to `within` for the peer to close: the bytes read before, or `None` when it
    /// is still open, or when bytes arrive and `drain` is false (they stay unread).
    fn wait_closed(&mut self, within: Duration, drain: bool) -> Option<u64> {
        let end = Instant::now() + within;
        let mut total = 0u64;
        let closed = loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            let _ = self.tcp().set_read_timeout(Some(left));
            match self.reader.fill_buf() {
                Ok([]) => break true,
                Ok(_) if !drain => break false,
                Ok(bytes) => {
                    let n = bytes.len();
                    total += n as u64;
                    self.reader.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break false
                }
                Err(_) => break true,
            }
        };
        let _ = self.tcp().set_read_timeout(Some(READ_TIMEOUT));
        closed.then_some(total)
    }

    /// Closes the write side (the gateway reads EOF) and keeps reading possible.
    pub fn shutdown_write(&mut self) {
        let _ = self.reader.get_mut().shutdown_write();
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        (&mut self.reader)
            .take(MAX_HEAD as u64)
            .read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if !line.ends_with(b"\r\n") {
            return Err(invalid(format!(
                "line not ended by CRLF: {:?}",
                String::from_utf8_lossy(&line)
            )));
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).map_err(|e| invalid(e.to_string()))
    }

    fn read_fields(&mut self) -> io::Result<Vec<(String, String)>> {
        let mut fields = Vec::new();
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                return Ok(fields);
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| invalid(format!("header without a colon: {line:?}")))?;
            fields.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
    }

    fn read_head(&mut self) -> io::Result<(u16, Vec<(String, String)>)> {
        let line = self.read_line()?;
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let status = parts.next().and_then(|s| s.parse::<u16>().ok());
        let Some(status) = status.filter(|_| version.starts_with("HTTP/1.")) else {
            return Err(invalid(format!("bad status line {line:?}")));
        };
        Ok((status, self.read_fields()?))
    }

    fn read_body(&mut self, method: &str, resp: &mut Response) -> io::Result<()> {
        if method == "HEAD" || resp.status == 204 || resp.status == 304 {
            return Ok(());
        }
        let te = resp.header_all("transfer-encoding").join(",");
        let lengths: Vec<String> = resp
            .header_all("content-length")
            .iter()
            .map(|s| s.to_string())
            .collect();
        if !te.is_empty() {
            if !lengths.is_empty() {
                return Err(invalid("response with both content-length and TE".into()));
            }
            if !te.eq_ignore_ascii_case("chunked") {
                return Err(invalid(format!("response transfer-encoding {te:?}")));
            }
            resp.chunked = true;
            self.read_chunked(resp)
        } else if let Some(first) = lengths.first() {
            if lengths.iter().any(|l| l != first) {
                return Err(invalid(format!("differing content-length {lengths:?}")));
            }
            let len: u64 = first
                .parse()
                .map_err(|_| invalid(format!("bad content-length {first:?}")))?;
            self.read_exact_into(len, &mut resp.body)
        } else {
            match self.reader.read_to_end(&mut resp.body) {
                // Only TLS reads say this: the peer closed without `close_notify`.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(invalid(format!(
                    "a body read until close ended without TLS close_notify ({e})"
                ))),
                other => other.map(|_| ()),
            }
        }
    }

    fn read_exact_into(&mut self, len: u64, body: &mut Vec<u8>) -> io::Result<()> {
        let start = body.len();
        let got = (&mut self.reader).take(len).read_to_end(body)?;
        if (got as u64) < len {
            body.truncate(start + got);
            return Err(invalid(format!("EOF after {got} of {len} body bytes")));
        }
        Ok(())
    }

    fn read_chunked(&mut self, resp: &mut Response) -> io::Result<()> {
        loop {
            let line = self.read_line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| invalid(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                // Trailers are not kept; the response ends at the empty line.
                self.read_fields()?;
                return Ok(());
            }
            self.read_exact_into(size, &mut resp.body)?;
            if !self.read_line()?.is_empty() {
                return Err(invalid("chunk not followed by CRLF".into()));
            }
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
