//! One HTTP/2 stream seen as an HTTP/1.1 byte stream, so that the one request pipeline
//! (`proxy`: head parsing, routing, policies, retries, body relays, the access log) serves h2
//! exactly as it serves h1.
//!
//! A [`Bridge`] has two halves. Its [`Source`] renders the message arriving on the stream as
//! HTTP/1.1 text: an upstream's response head, which the h1 codec parses, then the body (a
//! client's request body too, its head being built by [`super::head`]), `chunked` when the
//! message does not say its length (its trailers become the chunked trailer section). Its [`Sink`]
//! takes the HTTP/1.1 text the pipeline writes (a response to the client, or a request to an
//! upstream) and sends it as h2 frames: HEADERS from the head (connection-specific fields
//! dropped), DATA from the body with its framing taken off, trailers from a chunked trailer
//! section. The text the sink reads is the pipeline's own output (heads it wrote, bodies it
//! already scanned), so the sink's parsing never meets a client's bytes unchecked.
//!
//! Flow control is per stream: the source releases a DATA frame's window once the pipeline
//! has taken the bytes into its buffer, and the sink waits for window before it sends, within
//! the send timeout; one slow stream holds only its own window, never the connection's.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use monoio::buf::{IoBuf, IoBufMut};

use crate::http::h1::{reason_phrase, ChunkedScanner};
use crate::rt::coarse::CoarseTimers;

/// Most header fields in a head the sink reads (the pipeline's own output).
const SINK_MAX_HEADERS: usize = 128;
/// Longest trailer section carried from a chunked body into h2 trailers.
const MAX_TRAILER: usize = 8 * 1024;

/// One h2 stream as a byte stream: reads yield the incoming message as HTTP/1.1 text, writes
/// take the outgoing one.
pub struct Bridge {
    pub source: Option<Source>,
    pub sink: Option<Sink>,
    /// The connection is TLS (the client's, for a server-side bridge).
    pub tls: bool,
    /// The verified client certificate's identity, on a mutual-TLS client connection.
    pub identity: Option<Rc<crate::tls::ClientIdentity>>,
    /// The client's TLS session, for the access log (a server-side bridge on TLS).
    pub session: Option<Rc<crate::tls::stream::TlsSession>>,
}

impl Bridge {
    pub async fn read<T: IoBufMut>(&mut self, mut buf: T) -> monoio::BufResult<usize, T> {
        let Some(source) = self.source.as_mut() else {
            return (Err(io::ErrorKind::NotConnected.into()), buf);
        };
        // SAFETY: `write_ptr` is valid for `bytes_total` bytes, of which `bytes_init` may be
        // counted as written already: the slice covers the whole writable region, and only
        // the first `n` bytes written are marked initialised.
        let dst = unsafe { std::slice::from_raw_parts_mut(buf.write_ptr(), buf.bytes_total()) };
        let read = source.read(dst).await;
        if let Ok(n) = read {
            // SAFETY: `n` bytes were written at the start of the region above.
            unsafe { buf.set_init(n) };
        }
        (read, buf)
    }

    pub async fn write<T: IoBuf>(&mut self, buf: T) -> monoio::BufResult<usize, T> {
        let Some(sink) = self.sink.as_mut() else {
            return (Err(io::ErrorKind::NotConnected.into()), buf);
        };
        // SAFETY: `read_ptr` is valid for `bytes_init` initialised bytes while `buf` lives.
        let src = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let written = sink.write(src).await;
        (written, buf)
    }

    /// Whether the outgoing message was sent whole.
    pub fn sent_whole(&self) -> bool {
        self.sink.as_ref().is_some_and(|s| s.shared.done.get())
    }
}

/// What the HTTP/1.1 text of an incoming message needs to know to render it.
enum Pending {
    /// A client's request: its head is rendered already.
    Ready,
    /// An upstream's response, once it arrives.
    Response(Rc<Cell<Option<h2::client::ResponseFuture>>>, bool),
}

/// The incoming half: an h2 message rendered as HTTP/1.1 text.
pub struct Source {
    pending: Pending,
    /// Rendered text (a head, chunk framing, trailers) not yet read.
    text: Vec<u8>,
    at: usize,
    /// The rest of the DATA frame being read.
    data: Bytes,
    /// A chunk's closing CRLF is due once `data` is read.
    chunk_open: bool,
    chunked: bool,
    recv: Option<RecvStream>,
    ended: bool,
}

/// Header fields that name the connection, not the message: never carried across a
/// protocol change (RFC 9113 section 8.2.2).
fn connection_specific(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"connection")
        || name.eq_ignore_ascii_case(b"keep-alive")
        || name.eq_ignore_ascii_case(b"proxy-connection")
        || name.eq_ignore_ascii_case(b"transfer-encoding")
        || name.eq_ignore_ascii_case(b"upgrade")
        || name.eq_ignore_ascii_case(b"te")
        || name.eq_ignore_ascii_case(b"http2-settings")
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Renders the header fields of an h2 head; cookie fields, which h2 may split, are joined
/// again with "; " (RFC 9113 section 8.2.3).
fn push_fields(out: &mut Vec<u8>, headers: &HeaderMap, skip: impl Fn(&HeaderName) -> bool) {
    let mut cookies = headers.get_all(http::header::COOKIE).iter().peekable();
    if cookies.peek().is_some() {
        out.extend_from_slice(b"cookie: ");
        for (i, c) in cookies.enumerate() {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(c.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        if name == http::header::COOKIE || skip(name) {
            continue;
        }
        push_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
}

/// The body framing of a message that is not known to be empty: its content-length when it
/// sent one, else chunked (which also carries trailers).
fn push_framing(out: &mut Vec<u8>, headers: &HeaderMap, empty: bool) -> bool {
    if headers.contains_key(CONTENT_LENGTH) {
        return false;
    }
    if empty {
        return false;
    }
    out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    true
}

impl Source {
    /// A client's request body (its head is built by [`super::head::request_head`]):
    /// `chunked` when the request says no length and the stream did not end with its
    /// HEADERS, so that the pipeline reads where it ends (and its trailers).
    pub fn request(recv: RecvStream, chunked: bool) -> Source {
        let ended = recv.is_end_stream();
        Source {
            pending: Pending::Ready,
            text: Vec::new(),
            at: 0,
            data: Bytes::new(),
            chunk_open: false,
            chunked,
            ended,
            recv: (!ended).then_some(recv),
        }
    }

    /// Whether the incoming body may still have bytes to come.
    pub fn body_open(&self) -> bool {
        self.recv.as_ref().is_some_and(|r| !r.is_end_stream())
    }

    /// Reads and drops what is left of the incoming body, `max` bytes at most: whether it
    /// ended. For a request answered whole before its body ended (a gateway error, a 413),
    /// so that its stream closes cleanly instead of with RST_STREAM(NO_ERROR), which RFC 9113
    /// allows but some clients (curl 7.88) report as an error.
    pub async fn discard_rest(&mut self, max: usize) -> bool {
        let Some(recv) = self.recv.as_mut() else {
            return true;
        };
        let mut left = max;
        while !recv.is_end_stream() {
            match recv.data().await {
                Some(Ok(chunk)) => {
                    let n = chunk.len();
                    let Some(rest) = left.checked_sub(n) else {
                        return false;
                    };
                    // Only within the budget: past it, no WINDOW_UPDATE invites more.
                    let _ = recv.flow_control().release_capacity(n);
                    left = rest;
                }
                Some(Err(_)) => return false,
                // The body ended, with END_STREAM on DATA or with trailers.
                None => break,
            }
        }
        true
    }

    /// An upstream's response to the request the paired sink sends; `head_only`: the request
    /// was HEAD.
    fn response(slot: Rc<Cell<Option<h2::client::ResponseFuture>>>, head_only: bool) -> Source {
        Source {
            pending: Pending::Response(slot, head_only),
            text: Vec::new(),
            at: 0,
            data: Bytes::new(),
            chunk_open: false,
            chunked: false,
            recv: None,
            ended: false,
        }
    }

    fn render_response(&mut self, response: Response<RecvStream>, head_only: bool) {
        let (head, recv) = response.into_parts();
        let status = head.status.as_u16();
        let text = &mut self.text;
        text.clear();
        text.extend_from_slice(b"HTTP/1.1 ");
        text.extend_from_slice(head.status.as_str().as_bytes());
        text.push(b' ');
        text.extend_from_slice(reason_phrase(status).as_bytes());
        text.extend_from_slice(b"\r\n");
        push_fields(text, &head.headers, |n| {
            connection_specific(n.as_str().as_bytes())
        });
        let bodiless = head_only || status == 204 || status == 304;
        let empty = recv.is_end_stream() || bodiless;
        if empty && !bodiless && !head.headers.contains_key(CONTENT_LENGTH) {
            text.extend_from_slice(b"content-length: 0\r\n");
        }
        self.chunked = push_framing(text, &head.headers, empty);
        text.extend_from_slice(b"\r\n");
        self.at = 0;
        self.ended = empty;
        self.recv = (!empty).then_some(recv);
    }

    /// Fills `dst` with the next bytes of the message's text; 0 at its end.
    pub async fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        if let Pending::Response(slot, head_only) = &self.pending {
            let head_only = *head_only;
            let Some(future) = slot.take() else {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "no request sent on this stream",
                ));
            };
            let response = future.await.map_err(h2_io_error)?;
            self.pending = Pending::Ready;
            self.render_response(response, head_only);
        }
        loop {
            if self.at < self.text.len() {
                let n = dst.len().min(self.text.len() - self.at);
                dst[..n].copy_from_slice(&self.text[self.at..self.at + n]);
                self.at += n;
                if self.at == self.text.len() {
                    self.text.clear();
                    self.at = 0;
                }
                return Ok(n);
            }
            if !self.data.is_empty() {
                let n = dst.len().min(self.data.len());
                dst[..n].copy_from_slice(&self.data[..n]);
                let _ = self.data.split_to(n);
                if let Some(recv) = self.recv.as_mut() {
                    // The bytes are in the pipeline's buffer now: the peer may send more.
                    let _ = recv.flow_control().release_capacity(n);
                }
                return Ok(n);
            }
            if self.chunk_open {
                self.chunk_open = false;
                self.text.extend_from_slice(b"\r\n");
                continue;
            }
            if self.ended || dst.is_empty() {
                return Ok(0);
            }
            let Some(recv) = self.recv.as_mut() else {
                return Ok(0);
            };
            match poll_fn(|cx| recv.poll_data(cx)).await {
                Some(Ok(data)) if data.is_empty() => continue,
                Some(Ok(data)) => {
                    if self.chunked {
                        crate::http::h1::write_chunk_header(&mut self.text, data.len());
                        // write_chunk_header ends with the size line's CRLF.
                        self.chunk_open = true;
                    }
                    self.data = data;
                }
                Some(Err(e)) => return Err(h2_io_error(e)),
                None => {
                    let trailers = poll_fn(|cx| recv.poll_trailers(cx))
                        .await
                        .map_err(h2_io_error)?;
                    self.ended = true;
                    if self.chunked {
                        self.text.extend_from_slice(b"0\r\n");
                        if let Some(trailers) = trailers {
                            push_fields(&mut self.text, &trailers, |n| {
                                connection_specific(n.as_str().as_bytes())
                            });
                        }
                        self.text.extend_from_slice(b"\r\n");
                    }
                    self.recv = None;
                }
            }
        }
    }
}

/// An h2 failure as the I/O error the pipeline classifies: a stream the peer reset or a
/// connection that went away reads as a closed connection.
pub fn h2_io_error(e: h2::Error) -> io::Error {
    let kind = if e.is_io() {
        io::ErrorKind::BrokenPipe
    } else if e.is_reset() || e.is_go_away() {
        io::ErrorKind::ConnectionReset
    } else {
        io::ErrorKind::InvalidData
    };
    io::Error::new(kind, e)
}

/// What a sink sends on: the response to a client's stream, or a request on an upstream
/// connection.
pub enum Target {
    Respond(h2::server::SendResponse<Bytes>),
    Request {
        send: h2::client::SendRequest<Bytes>,
        /// Where the response future goes, for the paired source.
        response: Rc<Cell<Option<h2::client::ResponseFuture>>>,
        scheme: http::uri::Scheme,
        /// `:authority` when the request has no Host.
        authority: Box<str>,
    },
    /// The head went out: the body's stream.
    Body(SendStream<Bytes>),
    Closed,
}

impl Target {
    /// Resolves when the peer resets the stream (a client cancelling its request).
    pub fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<Result<h2::Reason, h2::Error>> {
        match self {
            Target::Respond(r) => r.poll_reset(cx),
            Target::Body(s) => s.poll_reset(cx),
            _ => Poll::Pending,
        }
    }

    /// Resets the stream unless it ended (an exchange given up half-way).
    pub fn reset(&mut self, reason: h2::Reason) {
        match self {
            Target::Respond(r) => r.send_reset(reason),
            Target::Body(s) => s.send_reset(reason),
            _ => {}
        }
        *self = Target::Closed;
    }
}

/// What the sink's stream shares with the task that serves it: the target, for its
/// cancellation watch, and whether the message went out whole.
pub struct SinkShared {
    pub target: RefCell<Target>,
    pub done: Cell<bool>,
}

/// How the body after a head handed over as fields arrives at the sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    /// In HTTP/1.1 chunked framing, trailers in its trailer section.
    Chunked,
}

#[derive(Debug)]
enum Framing {
    Head,
    Length(u64),
    Chunked(Box<ChunkedScanner>),
    /// A gRPC error answered trailers-only: the rest of the HTTP body is dropped.
    Discard(Option<Box<ChunkedScanner>>, u64),
    Done,
}

/// The outgoing half: HTTP/1.1 text in, h2 frames out.
pub struct Sink {
    pub shared: Rc<SinkShared>,
    framing: Framing,
    head: Vec<u8>,
    trailer: Vec<u8>,
    /// A server-side sink whose client made a gRPC call: gateway errors become gRPC statuses.
    grpc: bool,
    /// The request was HEAD: the response has no body whatever it says.
    head_request: bool,
    timers: Rc<CoarseTimers>,
    pub send_timeout: Duration,
}

impl Sink {
    pub fn respond(
        send: h2::server::SendResponse<Bytes>,
        grpc: bool,
        head_request: bool,
        timers: Rc<CoarseTimers>,
    ) -> Sink {
        Sink::new(Target::Respond(send), grpc, head_request, timers)
    }

    fn new(target: Target, grpc: bool, head_request: bool, timers: Rc<CoarseTimers>) -> Sink {
        Sink {
            shared: Rc::new(SinkShared {
                target: RefCell::new(target),
                done: Cell::new(false),
            }),
            framing: Framing::Head,
            head: Vec::new(),
            trailer: Vec::new(),
            grpc,
            head_request,
            timers,
            send_timeout: Duration::from_secs(60),
        }
    }

    /// Takes bytes of the outgoing message; returns how many it took.
    pub async fn write(&mut self, input: &[u8]) -> io::Result<usize> {
        if input.is_empty() {
            return Ok(0);
        }
        match &mut self.framing {
            Framing::Head => self.take_head(input),
            Framing::Length(remaining) => {
                let want = (*remaining).min(input.len() as u64) as usize;
                let n = self.capacity(want).await?;
                let Framing::Length(remaining) = &mut self.framing else {
                    unreachable!()
                };
                *remaining -= n as u64;
                let end = *remaining == 0;
                if end {
                    self.framing = Framing::Done;
                }
                self.send_data(Bytes::copy_from_slice(&input[..n]), end)?;
                Ok(n)
            }
            Framing::Chunked(scanner) => {
                // How much chunk data this input holds, found on a copy of the scanner: the
                // window is waited for first, so a cancelled write has changed nothing.
                let mut probe = scanner.clone();
                let mut data = 0usize;
                probe
                    .scan_data(input, |r| data += r.len())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.reason()))?;
                let window = if data > 0 {
                    self.capacity(data).await?
                } else {
                    0
                };
                let Framing::Chunked(scanner) = &mut self.framing else {
                    unreachable!()
                };
                let mut out = BytesMut::with_capacity(window.min(data));
                let mut cut = input.len();
                let mut trailer = std::mem::take(&mut self.trailer);
                let scan = if window < data {
                    // Take input only up to where its data fills the window.
                    let mut room = window;
                    let mut end = 0;
                    let mut p = scanner.clone();
                    p.scan_data(input, |r| {
                        if room > 0 {
                            let take = room.min(r.len());
                            room -= take;
                            end = r.start + take;
                        }
                    })
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.reason()))?;
                    cut = end;
                    scanner.scan_parts(
                        &input[..cut],
                        |r| out.extend_from_slice(&input[r]),
                        |b| trailer.push(b),
                    )
                } else {
                    scanner.scan_parts(
                        input,
                        |r| out.extend_from_slice(&input[r]),
                        |b| trailer.push(b),
                    )
                }
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.reason()))?;
                self.trailer = trailer;
                if self.trailer.len() > MAX_TRAILER {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "trailer section too large",
                    ));
                }
                if !out.is_empty() {
                    self.send_data(out.freeze(), false)?;
                }
                if scan.done {
                    self.framing = Framing::Done;
                    self.finish_chunked()?;
                    return Ok(scan.consumed);
                }
                Ok(cut)
            }
            Framing::Discard(scanner, remaining) => {
                let done = match scanner {
                    Some(s) => {
                        let scan = s
                            .scan(input)
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.reason()))?;
                        if scan.done {
                            self.framing = Framing::Done;
                            return Ok(scan.consumed);
                        }
                        false
                    }
                    None => {
                        let n = (*remaining).min(input.len() as u64);
                        *remaining -= n;
                        if *remaining == 0 {
                            self.framing = Framing::Done;
                            return Ok(n as usize);
                        }
                        false
                    }
                };
                debug_assert!(!done);
                Ok(input.len())
            }
            // Nothing follows a message's end on a stream.
            Framing::Done => Ok(input.len()),
        }
    }

    /// Waits until the stream may send at least one of `want` bytes (flow control), within
    /// the send timeout; returns how many it may send now.
    async fn capacity(&mut self, want: usize) -> io::Result<usize> {
        let shared = self.shared.clone();
        let wait = poll_fn(move |cx| {
            let mut target = shared.target.borrow_mut();
            let Target::Body(stream) = &mut *target else {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
            };
            if stream.capacity() < want {
                stream.reserve_capacity(want);
            }
            loop {
                let have = stream.capacity();
                if have > 0 {
                    return Poll::Ready(Ok(have.min(want)));
                }
                match stream.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(_))) => continue,
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(h2_io_error(e))),
                    Poll::Ready(None) => {
                        return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)))
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
        });
        let deadline = Instant::now() + self.send_timeout;
        match self.timers.within(deadline, wait).await {
            Ok(got) => got,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "send timeout: the peer's flow-control window stayed closed",
            )),
        }
    }

    fn send_data(&mut self, data: Bytes, end: bool) -> io::Result<()> {
        let mut target = self.shared.target.borrow_mut();
        let Target::Body(stream) = &mut *target else {
            return Err(io::ErrorKind::BrokenPipe.into());
        };
        stream.send_data(data, end).map_err(h2_io_error)?;
        if end {
            self.shared.done.set(true);
        }
        Ok(())
    }

    fn finish_chunked(&mut self) -> io::Result<()> {
        let trailer = std::mem::take(&mut self.trailer);
        // The section ends with the empty line: nothing but it means no trailers.
        if trailer.len() <= 2 {
            return self.send_data(Bytes::new(), true);
        }
        let mut fields = [httparse::EMPTY_HEADER; SINK_MAX_HEADERS];
        let parsed = httparse::parse_headers(&trailer, &mut fields)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad trailer section"))?;
        let httparse::Status::Complete((_, fields)) = parsed else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad trailer section",
            ));
        };
        let mut map = HeaderMap::with_capacity(fields.len());
        for f in fields {
            if connection_specific(f.name.as_bytes()) {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(f.name.as_bytes()),
                HeaderValue::from_bytes(f.value),
            ) {
                map.append(n, v);
            }
        }
        let mut target = self.shared.target.borrow_mut();
        let Target::Body(stream) = &mut *target else {
            return Err(io::ErrorKind::BrokenPipe.into());
        };
        if map.is_empty() {
            stream.send_data(Bytes::new(), true).map_err(h2_io_error)?;
        } else {
            stream.send_trailers(map).map_err(h2_io_error)?;
        }
        self.shared.done.set(true);
        Ok(())
    }

    /// Gathers the head; once whole, sends it. Returns the input bytes taken.
    fn take_head(&mut self, input: &[u8]) -> io::Result<usize> {
        let before = self.head.len();
        self.head.extend_from_slice(input);
        // The end may straddle two writes: search from a little before the new bytes.
        let from = before.saturating_sub(3);
        let Some(end) = self.head[from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| from + p + 4)
        else {
            if self.head.len() > 256 * 1024 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
            }
            return Ok(input.len());
        };
        let taken = end - before;
        self.head.truncate(end);
        let head = std::mem::take(&mut self.head);
        let is_request = matches!(&*self.shared.target.borrow(), Target::Request { .. });
        if is_request {
            self.send_request_head(&head)?;
        } else {
            self.send_response_head(&head)?;
        }
        self.head = head;
        self.head.clear();
        Ok(taken)
    }

    fn send_response_head(&mut self, head: &[u8]) -> io::Result<()> {
        let mut fields = [httparse::EMPTY_HEADER; SINK_MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut fields);
        match parsed.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad response head",
                ))
            }
        }
        let status = parsed.code.unwrap_or(502);
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::from_u16(status)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad status"))?;
        let (framing, grpc_status) = collect_fields(parsed.headers, response.headers_mut())?;
        self.respond_head(status, response, framing, grpc_status)
    }

    /// Sends a response head the pipeline hands over as fields, the way its codec checked
    /// them, rather than as text: `fields` must hold no framing field (`content-length` is
    /// written from `body`, and only passed among them for a bodiless answer to HEAD or a
    /// 304). Returns the bytes the fields amount to, for the access log.
    pub fn send_response_fields<'a>(
        &mut self,
        status: u16,
        fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
        body: BodyFraming,
    ) -> io::Result<usize> {
        let bad = |what: &'static str| io::Error::new(io::ErrorKind::InvalidData, what);
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::from_u16(status).map_err(|_| bad("bad status"))?;
        let map = response.headers_mut();
        let mut grpc_status = false;
        let mut bytes = 0;
        for (name, value) in fields {
            if connection_specific(name) {
                continue;
            }
            grpc_status |= name.eq_ignore_ascii_case(b"grpc-status");
            bytes += name.len() + value.len() + 4;
            let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            else {
                return Err(bad("bad header field"));
            };
            map.append(n, v);
        }
        let framing = match body {
            BodyFraming::None | BodyFraming::Length(0) => Framing::Done,
            BodyFraming::Length(n) => Framing::Length(n),
            BodyFraming::Chunked => Framing::Chunked(Box::new(ChunkedScanner::new(MAX_TRAILER))),
        };
        if let BodyFraming::Length(n) = body {
            map.insert(CONTENT_LENGTH, HeaderValue::from(n));
            bytes += 20;
        }
        self.respond_head(status, response, framing, grpc_status)?;
        Ok(bytes)
    }

    /// Sends a response head (or, for a gRPC call that failed as HTTP, the trailers-only
    /// answer in its place); the body follows in `framing`.
    fn respond_head(
        &mut self,
        status: u16,
        response: Response<()>,
        framing: Framing,
        grpc_status: bool,
    ) -> io::Result<()> {
        let mut target = self.shared.target.borrow_mut();
        let Target::Respond(respond) = &mut *target else {
            return Err(io::ErrorKind::BrokenPipe.into());
        };
        if (100..200).contains(&status) {
            // The pipeline answers `Expect: 100-continue` itself, and passes on other
            // interim responses: h2 carries both as informational HEADERS.
            let _ = respond.send_informational(response);
            return Ok(());
        }
        let bodiless = self.head_request || status == 204 || status == 304;
        let framing = if bodiless { Framing::Done } else { framing };
        let is_grpc_response = response
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if self.grpc && !grpc_status && !(status == 200 && is_grpc_response) {
            // The call failed before any upstream answered it as gRPC (no endpoint, a
            // timeout, a limit, a breaker) or an upstream answered with a plain HTTP error:
            // a gRPC client reads the status from trailers, so the answer is trailers-only.
            let (code, message) = grpc_status_for(status);
            let mut trailers_only = Response::new(());
            let h = trailers_only.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            h.insert("grpc-status", HeaderValue::from(code));
            h.insert("grpc-message", HeaderValue::from_static(message));
            respond
                .send_response(trailers_only, true)
                .map_err(h2_io_error)?;
            *target = Target::Closed;
            self.shared.done.set(true);
            self.framing = match framing {
                Framing::Done | Framing::Length(0) => Framing::Done,
                Framing::Length(n) => Framing::Discard(None, n),
                _ => Framing::Discard(Some(Box::new(ChunkedScanner::new(MAX_TRAILER))), 0),
            };
            return Ok(());
        }
        let end = matches!(framing, Framing::Done | Framing::Length(0));
        let stream = respond.send_response(response, end).map_err(h2_io_error)?;
        if end {
            *target = Target::Closed;
            self.shared.done.set(true);
            self.framing = Framing::Done;
        } else {
            *target = Target::Body(stream);
            self.framing = framing;
        }
        Ok(())
    }

    fn send_request_head(&mut self, head: &[u8]) -> io::Result<()> {
        let mut fields = [httparse::EMPTY_HEADER; SINK_MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut fields);
        match parsed.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad request head",
                ))
            }
        }
        let bad = |what: &'static str| io::Error::new(io::ErrorKind::InvalidData, what);
        let method = Method::from_bytes(parsed.method.unwrap_or("GET").as_bytes())
            .map_err(|_| bad("bad method"))?;
        let path = parsed.path.unwrap_or("/");
        let host = parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("host"))
            .map(|h| h.value)
            .filter(|v| !v.is_empty());
        let mut request = Request::new(());
        let (framing, _) = collect_fields(parsed.headers, request.headers_mut())?;
        request.headers_mut().remove(HOST);
        // gRPC servers require it, and any h2 server accepts it (RFC 9113 section 8.2.2).
        request
            .headers_mut()
            .insert(http::header::TE, HeaderValue::from_static("trailers"));
        let mut target = self.shared.target.borrow_mut();
        let Target::Request {
            send,
            response,
            scheme,
            authority,
        } = &mut *target
        else {
            return Err(io::ErrorKind::BrokenPipe.into());
        };
        let authority = match host {
            Some(h) => std::str::from_utf8(h).map_err(|_| bad("bad host"))?,
            None => authority,
        };
        let uri = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority)
            .path_and_query(if path == "*" { "/" } else { path })
            .build()
            .map_err(|_| bad("bad request target"))?;
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        let end = matches!(framing, Framing::Done | Framing::Length(0));
        let (future, stream) = send.send_request(request, end).map_err(h2_io_error)?;
        response.set(Some(future));
        if end {
            *target = Target::Closed;
            self.shared.done.set(true);
            self.framing = Framing::Done;
        } else {
            *target = Target::Body(stream);
            self.framing = framing;
        }
        Ok(())
    }
}

/// Copies a head's fields into an h2 header map, leaving out the connection-specific ones;
/// returns the body's framing and whether a `grpc-status` field was among them.
fn collect_fields(
    fields: &[httparse::Header<'_>],
    map: &mut HeaderMap,
) -> io::Result<(Framing, bool)> {
    let mut framing = Framing::Done;
    let mut grpc_status = false;
    for f in fields {
        let name = f.name.as_bytes();
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // The pipeline writes chunked last or alone.
            if f.value.eq_ignore_ascii_case(b"chunked") || f.value.ends_with(b"chunked") {
                framing = Framing::Chunked(Box::new(ChunkedScanner::new(MAX_TRAILER)));
            }
            continue;
        }
        if connection_specific(name) {
            continue;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(f.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
            if !matches!(framing, Framing::Chunked(_)) {
                framing = Framing::Length(n);
            }
        }
        if name.eq_ignore_ascii_case(b"grpc-status") {
            grpc_status = true;
        }
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(f.value),
        ) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad header field",
            ));
        };
        map.append(n, v);
    }
    if matches!(framing, Framing::Length(0)) {
        framing = Framing::Done;
    }
    Ok((framing, grpc_status))
}

/// The gRPC status for a call the gateway answers itself, or that an upstream answered with
/// a plain HTTP error (the mapping gRPC clients apply to HTTP statuses, with the gateway's own
/// limits and timeouts named as what they are).
pub fn grpc_status_for(http: u16) -> (u16, &'static str) {
    match http {
        400 => (13, "bad request"),
        401 => (16, "unauthenticated"),
        403 => (7, "permission denied"),
        404 => (12, "no route for this method"),
        408 | 504 => (4, "deadline exceeded"),
        413 | 431 => (8, "request too large"),
        429 => (8, "rate limited"),
        502 => (14, "bad gateway"),
        503 => (14, "unavailable"),
        _ => (2, "unknown"),
    }
}

/// A request stream on an upstream h2 connection: its sink sends the pipeline's request, its
/// source renders the response.
pub fn upstream_stream(
    send: h2::client::SendRequest<Bytes>,
    tls: bool,
    authority: &str,
    head_request: bool,
    timers: Rc<CoarseTimers>,
) -> Bridge {
    let slot = Rc::new(Cell::new(None));
    let scheme = if tls {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    };
    let target = Target::Request {
        send,
        response: slot.clone(),
        scheme,
        authority: authority.into(),
    };
    Bridge {
        source: Some(Source::response(slot, head_request)),
        sink: Some(Sink::new(target, false, head_request, timers)),
        tls,
        identity: None,
        session: None,
    }
}

/// `grpc-timeout` (gRPC over HTTP/2: 1 to 8 digits and a unit) as a duration.
pub fn grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n.saturating_mul(3600)),
        b'M' => Duration::from_secs(n.saturating_mul(60)),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(grpc_timeout(b"5S"), Some(Duration::from_secs(5)));
        assert_eq!(grpc_timeout(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(grpc_timeout(b"100n"), Some(Duration::from_nanos(100)));
        assert_eq!(grpc_timeout(b"123456789S"), None);
        assert_eq!(grpc_timeout(b"S"), None);
        assert_eq!(grpc_timeout(b"5s"), None);
        assert_eq!(grpc_timeout(b"-5S"), None);
    }

    #[test]
    fn gateway_statuses_map_to_grpc_codes() {
        assert_eq!(grpc_status_for(503).0, 14);
        assert_eq!(grpc_status_for(504).0, 4);
        assert_eq!(grpc_status_for(429).0, 8);
        assert_eq!(grpc_status_for(404).0, 12);
    }
}
