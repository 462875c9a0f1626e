//! A raw HTTP/2 client for hostile tests: blocking std sockets, frames built byte by byte, so
//! a test can send what no well-behaved client library would (floods, bad stream ids,
//! malformed header blocks) and see exactly which frames the gateway answers with.
//!
//! Header blocks are hand-built HPACK ([`hpack`]): static-table indexes and literals without
//! Huffman coding. The client announces SETTINGS_HEADER_TABLE_SIZE 0, so the server's blocks
//! never refer to its dynamic table and [`Frame::status`] can read `:status` without a full
//! HPACK decoder. Every read is bounded by a deadline; nothing here sleeps.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types (RFC 9113 §6).
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

/// Frame flags.
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// Error codes (RFC 9113 §7).
pub const NO_ERROR: u32 = 0x0;
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const INTERNAL_ERROR: u32 = 0x2;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const STREAM_CLOSED: u32 = 0x5;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const COMPRESSION_ERROR: u32 = 0x9;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// SETTINGS identifiers.
pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

/// The largest frame payload a peer must accept without asking (SETTINGS_MAX_FRAME_SIZE's
/// initial value).
pub const MAX_FRAME: usize = 16_384;

/// HPACK encoding by hand (RFC 7541): integers, static-table indexes, literals without
/// Huffman coding.
pub mod hpack {
    /// Appends `value` as an HPACK integer with an `n`-bit prefix; `flags` fills the bits
    /// above the prefix in the first byte.
    pub fn integer(out: &mut Vec<u8>, n: u8, flags: u8, value: usize) {
        let max = (1usize << n) - 1;
        if value < max {
            out.push(flags | value as u8);
            return;
        }
        out.push(flags | max as u8);
        let mut rest = value - max;
        while rest >= 128 {
            out.push((rest % 128) as u8 | 0x80);
            rest /= 128;
        }
        out.push(rest as u8);
    }

    /// A string literal, Huffman off.
    pub fn string(out: &mut Vec<u8>, s: &[u8]) {
        integer(out, 7, 0x00, s.len());
        out.extend_from_slice(s);
    }

    /// An indexed field (static table 1..=61, dynamic table from 62).
    pub fn indexed(out: &mut Vec<u8>, index: usize) {
        integer(out, 7, 0x80, index);
    }

    /// A literal field without indexing, with a literal name.
    pub fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
        out.push(0x00);
        string(out, name);
        string(out, value);
    }

    /// A literal field without indexing whose name is static-table entry `index`.
    pub fn literal_name(out: &mut Vec<u8>, index: usize, value: &[u8]) {
        integer(out, 4, 0x00, index);
        string(out, value);
    }

    /// A literal field with incremental indexing: the decoder adds it to its dynamic table.
    pub fn literal_indexed(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
        out.push(0x40);
        string(out, name);
        string(out, value);
    }

    /// `:method GET`, `:scheme http`, `:path /`, `:authority h2.test` (or `path`).
    pub fn get(path: &str) -> Vec<u8> {
        let mut out = vec![0x82, 0x86];
        if path == "/" {
            out.push(0x84);
        } else {
            literal_name(&mut out, 4, path.as_bytes());
        }
        literal_name(&mut out, 1, b"h2.test");
        out
    }

    /// [`get`] followed by literal `headers`.
    pub fn get_with(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut out = get(path);
        for (name, value) in headers {
            literal(&mut out, name.as_bytes(), value.as_bytes());
        }
        out
    }

    /// `:method POST`, `:scheme http`, `:path`, `:authority h2.test`, then `headers`.
    pub fn post(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut out = vec![0x83, 0x86];
        literal_name(&mut out, 4, path.as_bytes());
        literal_name(&mut out, 1, b"h2.test");
        for (name, value) in headers {
            literal(&mut out, name.as_bytes(), value.as_bytes());
        }
        out
    }
}

/// One frame read from the server.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A GOAWAY's or RST_STREAM's error code.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            GOAWAY => 4,
            RST_STREAM => 0,
            _ => return None,
        };
        let b = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A GOAWAY's last stream id.
    pub fn last_stream(&self) -> Option<u32> {
        if self.kind != GOAWAY {
            return None;
        }
        let b = self.payload.get(..4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff)
    }

    /// A response HEADERS frame's `:status`, when the block starts with it in a form this
    /// reader knows: a static-table index, or a literal with name index 8 (plain or Huffman
    /// digits). Dynamic-table size updates before it are skipped.
    pub fn status(&self) -> Option<u16> {
        if self.kind != HEADERS {
            return None;
        }
        let mut p = self.payload.as_slice();
        if self.flags & 0x8 != 0 {
            let pad = *p.first()? as usize;
            p = p.get(1..p.len().checked_sub(pad)?)?;
        }
        if self.flags & 0x20 != 0 {
            p = p.get(5..)?;
        }
        while p.first().is_some_and(|b| b & 0xe0 == 0x20) {
            let (_, rest) = read_int(p, 5)?;
            p = rest;
        }
        let first = *p.first()?;
        if first & 0x80 != 0 {
            let (index, _) = read_int(p, 7)?;
            return match index {
                8 => Some(200),
                9 => Some(204),
                10 => Some(206),
                11 => Some(304),
                12 => Some(400),
                13 => Some(404),
                14 => Some(500),
                _ => None,
            };
        }
        let prefix = if first & 0x40 != 0 { 6 } else { 4 };
        let (index, rest) = read_int(p, prefix)?;
        if index != 8 {
            return None;
        }
        let huffman = rest.first()? & 0x80 != 0;
        let (len, rest) = read_int(rest, 7)?;
        let raw = rest.get(..len)?;
        let digits = if huffman {
            huffman_digits(raw)?
        } else {
            String::from_utf8(raw.to_vec()).ok()?
        };
        digits.parse().ok()
    }
}

/// An HPACK integer with an `n`-bit prefix, and what follows it.
fn read_int(p: &[u8], n: u8) -> Option<(usize, &[u8])> {
    let max = (1usize << n) - 1;
    let mut value = (*p.first()? as usize) & max;
    let mut i = 1;
    if value == max {
        let mut shift = 0;
        loop {
            let b = *p.get(i)?;
            i += 1;
            value += ((b & 0x7f) as usize) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
            if shift > 28 {
                return None;
            }
        }
    }
    Some((value, &p[i..]))
}

/// Decodes a Huffman string made only of digits (RFC 7541 Appendix B: '0'-'2' are 5-bit
/// codes 0-2, '3'-'9' 6-bit codes 0x19-0x1f), with EOS padding of ones.
fn huffman_digits(raw: &[u8]) -> Option<String> {
    let bits: Vec<u8> = raw
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let mut out = String::new();
    let mut i = 0;
    while i < bits.len() {
        let rest = &bits[i..];
        if rest.len() < 5 || rest.iter().all(|&b| b == 1) {
            break;
        }
        let code5 = rest[..5].iter().fold(0u8, |a, &b| a << 1 | b);
        if code5 <= 2 {
            out.push((b'0' + code5) as char);
            i += 5;
            continue;
        }
        let code6 = (code5 << 1) | *rest.get(5)?;
        if (0x19..=0x1f).contains(&code6) {
            out.push((b'3' + code6 - 0x19) as char);
            i += 6;
            continue;
        }
        return None;
    }
    Some(out)
}

/// The bytes of one frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    assert!(len < 1 << 24, "frame payload too long");
    let mut out = Vec::with_capacity(9 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A SETTINGS frame's bytes.
pub fn settings_frame(settings: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in settings {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &payload)
}

/// A RST_STREAM frame's bytes.
pub fn rst_frame(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// A WINDOW_UPDATE frame's bytes.
pub fn window_update_frame(stream: u32, increment: u32) -> Vec<u8> {
    frame(WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

/// A PRIORITY frame's bytes: `stream` depends on `on` with `weight`.
pub fn priority_frame(stream: u32, on: u32, weight: u8) -> Vec<u8> {
    let mut payload = on.to_be_bytes().to_vec();
    payload.push(weight);
    frame(PRIORITY, 0, stream, &payload)
}

/// A PING frame's bytes.
pub fn ping_frame(data: [u8; 8]) -> Vec<u8> {
    frame(PING, 0, 0, &data)
}

/// A complete header block on `stream` as HEADERS (+ CONTINUATION frames when it is longer
/// than [`MAX_FRAME`]).
pub fn headers_frames(stream: u32, block: &[u8], end_stream: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pieces = block.chunks(MAX_FRAME).peekable();
    let first = pieces.next().unwrap_or(&[]);
    let es = if end_stream { END_STREAM } else { 0 };
    let eh = if pieces.peek().is_none() {
        END_HEADERS
    } else {
        0
    };
    out.extend(frame(HEADERS, es | eh, stream, first));
    while let Some(piece) = pieces.next() {
        let eh = if pieces.peek().is_none() {
            END_HEADERS
        } else {
            0
        };
        out.extend(frame(CONTINUATION, eh, stream, piece));
    }
    out
}

/// Why [`H2Raw::next_frame`] returned no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The server closed (FIN or RST).
    Closed,
    /// The deadline passed.
    Timeout,
}

/// What arrived until a GOAWAY, the end of the connection or a deadline.
#[derive(Debug, Default)]
pub struct Arrived {
    pub frames: Vec<Frame>,
    /// The first GOAWAY's (last stream id, error code).
    pub goaway: Option<(u32, u32)>,
    /// The server closed the connection.
    pub closed: bool,
}

impl Arrived {
    /// The GOAWAY's error code.
    pub fn goaway_code(&self) -> Option<u32> {
        self.goaway.map(|(_, code)| code)
    }

    /// The RST_STREAM codes sent on `stream`.
    pub fn resets(&self, stream: u32) -> Vec<u32> {
        self.frames
            .iter()
            .filter(|f| f.kind == RST_STREAM && f.stream == stream)
            .filter_map(Frame::error_code)
            .collect()
    }

    /// How many RST_STREAM frames arrived, on any stream.
    pub fn reset_count(&self) -> usize {
        self.frames.iter().filter(|f| f.kind == RST_STREAM).count()
    }

    /// The `:status` of the response HEADERS on `stream`.
    pub fn status(&self, stream: u32) -> Option<u16> {
        self.frames
            .iter()
            .filter(|f| f.kind == HEADERS && f.stream == stream)
            .find_map(Frame::status)
    }

    /// The DATA bytes on `stream`.
    pub fn body(&self, stream: u32) -> Vec<u8> {
        self.frames
            .iter()
            .filter(|f| f.kind == DATA && f.stream == stream)
            .flat_map(|f| data_payload(f).iter().copied())
            .collect()
    }

    /// A frame on `stream` ended it (END_STREAM or RST_STREAM).
    pub fn stream_ended(&self, stream: u32) -> bool {
        self.frames.iter().any(|f| ends_stream(f, stream))
    }

    /// A summary for failure messages: frame kinds, streams, codes.
    pub fn summary(&self) -> String {
        let mut kinds: Vec<String> = self
            .frames
            .iter()
            .take(40)
            .map(|f| match f.error_code() {
                Some(code) => format!("{}@{}({code:#x})", kind_name(f.kind), f.stream),
                None => format!("{}@{}", kind_name(f.kind), f.stream),
            })
            .collect();
        if self.frames.len() > 40 {
            kinds.push(format!("... {} frames in all", self.frames.len()));
        }
        let mut counts = std::collections::BTreeMap::new();
        for f in &self.frames {
            *counts.entry(kind_name(f.kind)).or_insert(0usize) += 1;
        }
        let mut codes = std::collections::BTreeMap::new();
        for f in self.frames.iter().filter(|f| f.kind == RST_STREAM) {
            *codes
                .entry(f.error_code().unwrap_or(u32::MAX))
                .or_insert(0usize) += 1;
        }
        format!(
            "frames [{}], counts {counts:?}, RST_STREAM codes {codes:x?}, goaway {:?}, closed {}",
            kinds.join(" "),
            self.goaway,
            self.closed
        )
    }
}

/// A DATA frame's payload without padding.
fn data_payload(f: &Frame) -> &[u8] {
    if f.flags & 0x8 == 0 {
        return &f.payload;
    }
    let Some(&pad) = f.payload.first() else {
        return &[];
    };
    f.payload
        .get(1..f.payload.len().saturating_sub(pad as usize))
        .unwrap_or(&[])
}

fn ends_stream(f: &Frame, stream: u32) -> bool {
    f.stream == stream
        && (f.kind == RST_STREAM || (matches!(f.kind, HEADERS | DATA) && f.flags & END_STREAM != 0))
}

/// A frame type's name, for messages.
pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        DATA => "DATA",
        HEADERS => "HEADERS",
        PRIORITY => "PRIORITY",
        RST_STREAM => "RST_STREAM",
        SETTINGS => "SETTINGS",
        PUSH_PROMISE => "PUSH_PROMISE",
        PING => "PING",
        GOAWAY => "GOAWAY",
        WINDOW_UPDATE => "WINDOW_UPDATE",
        CONTINUATION => "CONTINUATION",
        _ => "UNKNOWN",
    }
}

/// A raw HTTP/2 connection to the gateway (h2c by prior knowledge).
pub struct H2Raw {
    sock: TcpStream,
    buf: Vec<u8>,
    /// Frames read while flooding ([`H2Raw::flood`]), handed out by the next reads first.
    pending: std::collections::VecDeque<Frame>,
    closed: bool,
    /// SETTINGS frames from the server are acknowledged as they are read.
    pub ack_settings: bool,
}

impl H2Raw {
    /// Connects, sends the preface and SETTINGS with HEADER_TABLE_SIZE 0 and `settings`.
    pub fn connect_with(addr: SocketAddr, settings: &[(u16, u32)]) -> H2Raw {
        let sock = TcpStream::connect(addr).expect("connect to the gateway");
        sock.set_nodelay(true).expect("nodelay");
        // A flood must not block forever on a server that stopped reading.
        sock.set_write_timeout(Some(Duration::from_secs(3)))
            .expect("write timeout");
        let mut conn = H2Raw {
            sock,
            buf: Vec::new(),
            pending: Default::default(),
            closed: false,
            ack_settings: true,
        };
        let mut all = vec![(SETTINGS_HEADER_TABLE_SIZE, 0)];
        all.extend_from_slice(settings);
        let mut hello = PREFACE.to_vec();
        hello.extend(settings_frame(&all));
        conn.write(&hello).expect("send the preface");
        conn
    }

    /// Connects with default settings (but a zero-size HPACK table for responses).
    pub fn connect(addr: SocketAddr) -> H2Raw {
        H2Raw::connect_with(addr, &[])
    }

    /// Writes `bytes` whole (a frame or many).
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.sock.write_all(bytes)
    }

    /// Writes one frame.
    pub fn send(
        &mut self,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
    ) -> std::io::Result<()> {
        self.write(&frame(kind, flags, stream, payload))
    }

    /// Sends a header block on `stream` (HEADERS, CONTINUATION as needed, END_HEADERS last).
    pub fn headers(&mut self, stream: u32, block: &[u8], end_stream: bool) -> std::io::Result<()> {
        self.write(&headers_frames(stream, block, end_stream))
    }

    /// Sends `body` as DATA frames on `stream`, END_STREAM on the last when `end`.
    pub fn data(&mut self, stream: u32, body: &[u8], end: bool) -> std::io::Result<()> {
        let mut out = Vec::new();
        let mut pieces = body.chunks(MAX_FRAME).peekable();
        if pieces.peek().is_none() {
            out.extend(frame(DATA, if end { END_STREAM } else { 0 }, stream, &[]));
        }
        while let Some(piece) = pieces.next() {
            let last = pieces.peek().is_none();
            let flags = if end && last { END_STREAM } else { 0 };
            out.extend(frame(DATA, flags, stream, piece));
        }
        self.write(&out)
    }

    /// Sends a GET for `path` on `stream` (END_STREAM).
    pub fn get(&mut self, stream: u32, path: &str) -> std::io::Result<()> {
        self.headers(stream, &hpack::get(path), true)
    }

    /// Sends RST_STREAM.
    pub fn rst(&mut self, stream: u32, code: u32) -> std::io::Result<()> {
        self.write(&rst_frame(stream, code))
    }

    /// Sends GOAWAY.
    pub fn goaway(&mut self, last: u32, code: u32) -> std::io::Result<()> {
        let mut payload = last.to_be_bytes().to_vec();
        payload.extend_from_slice(&code.to_be_bytes());
        self.send(GOAWAY, 0, 0, &payload)
    }

    /// Writes `chunks` one after the other, stopping early when the server sends GOAWAY,
    /// closes, or stops reading (a write times out). Between chunks the frames already
    /// arrived are taken in, so a GOAWAY is read before the server's close can reset the
    /// connection. Returns how many chunks were written whole.
    pub fn flood(&mut self, chunks: impl IntoIterator<Item = Vec<u8>>) -> usize {
        let mut written = 0;
        for chunk in chunks {
            if self.write(&chunk).is_err() {
                break;
            }
            written += 1;
            if self.drain_ready() {
                break;
            }
        }
        written
    }

    /// Reads what has arrived without waiting; true once a GOAWAY or the close was seen.
    fn drain_ready(&mut self) -> bool {
        if self.sock.set_nonblocking(true).is_err() {
            return true;
        }
        let mut stop = false;
        loop {
            match self.parse() {
                Some(f) => {
                    stop |= f.kind == GOAWAY;
                    self.pending.push_back(f);
                    continue;
                }
                None if self.closed => {
                    stop = true;
                    break;
                }
                None => {}
            }
            let mut chunk = [0u8; 65536];
            match self.sock.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.closed = true,
            }
        }
        let _ = self.sock.set_nonblocking(false);
        stop
    }

    /// One complete frame from the buffer, if there is one.
    fn parse(&mut self) -> Option<Frame> {
        if self.buf.len() < 9 {
            return None;
        }
        let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
        if self.buf.len() < 9 + len {
            return None;
        }
        let head: Vec<u8> = self.buf.drain(..9 + len).collect();
        let f = Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload: head[9..].to_vec(),
        };
        if self.ack_settings && f.kind == SETTINGS && f.flags & ACK == 0 {
            let _ = self.write(&frame(SETTINGS, ACK, 0, &[]));
        }
        Some(f)
    }

    /// The next frame, waiting until `deadline`.
    pub fn next_frame(&mut self, deadline: Instant) -> Result<Frame, End> {
        if let Some(f) = self.pending.pop_front() {
            return Ok(f);
        }
        loop {
            if let Some(f) = self.parse() {
                return Ok(f);
            }
            if self.closed {
                return Err(End::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(End::Timeout);
            }
            let wait = (deadline - now).max(Duration::from_millis(1));
            self.sock
                .set_read_timeout(Some(wait))
                .expect("read timeout");
            let mut chunk = [0u8; 65536];
            match self.sock.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.closed = true,
            }
        }
    }

    /// Reads frames until `stop` holds for one (it is included), the server closes, or
    /// `limit` passes.
    pub fn read_until(&mut self, limit: Duration, mut stop: impl FnMut(&Frame) -> bool) -> Arrived {
        let deadline = Instant::now() + limit;
        let mut arrived = Arrived::default();
        loop {
            match self.next_frame(deadline) {
                Ok(f) => {
                    let done = stop(&f);
                    if f.kind == GOAWAY && arrived.goaway.is_none() {
                        arrived.goaway = f.last_stream().zip(f.error_code());
                    }
                    arrived.frames.push(f);
                    if done {
                        return arrived;
                    }
                }
                Err(End::Closed) => {
                    arrived.closed = true;
                    return arrived;
                }
                Err(End::Timeout) => return arrived,
            }
        }
    }

    /// Reads until GOAWAY or the end of the connection, within `limit`.
    pub fn read_until_goaway(&mut self, limit: Duration) -> Arrived {
        self.read_until(limit, |f| f.kind == GOAWAY)
    }

    /// Reads until `stream` ends (END_STREAM or RST_STREAM), a GOAWAY, the end of the
    /// connection, or `limit`.
    pub fn read_stream(&mut self, stream: u32, limit: Duration) -> Arrived {
        self.read_until(limit, |f| f.kind == GOAWAY || ends_stream(f, stream))
    }

    /// Reads until the server closes the connection (frames before it kept), within `limit`.
    pub fn read_until_closed(&mut self, limit: Duration) -> Arrived {
        self.read_until(limit, |_| false)
    }

    /// Sends PING and waits for its ACK: proof the connection still works, with every
    /// frame the server sent before it.
    pub fn ping_pong(&mut self, limit: Duration) -> Arrived {
        let data = *b"h2rawpng";
        let _ = self.write(&ping_frame(data));
        self.read_until(limit, |f| {
            f.kind == GOAWAY || (f.kind == PING && f.flags & ACK != 0 && f.payload == data)
        })
    }
}

/// A GET `path` on a fresh connection: its status and body, or a panic saying what came.
pub fn fresh_get(addr: SocketAddr, path: &str, limit: Duration) -> (u16, Vec<u8>) {
    let mut conn = H2Raw::connect(addr);
    conn.get(1, path).expect("send a GET");
    let got = conn.read_stream(1, limit);
    let status = got.status(1).unwrap_or_else(|| {
        panic!(
            "no response status on a fresh connection: {}",
            got.summary()
        )
    });
    (status, got.body(1))
}
