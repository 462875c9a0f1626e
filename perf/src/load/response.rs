//! Reading HTTP/1.1 responses off a keep-alive connection: the head is parsed with httparse,
//! the body is counted, never copied or kept (Content-Length, chunked, or until close).
//!
//! [`ResponseReader`] is a pure state machine over byte slices, so the connection loop owns
//! the buffer and the socket, and the framing is unit-tested without one.

use std::fmt;

/// Longest response head accepted; the connection buffer must hold at least this much.
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// Longest chunk-size or trailer line.
const MAX_LINE: usize = 1024;

/// A complete response, as far as the load generator cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The server said `connection: close` (or the body ran until close).
    pub close: bool,
    /// Body bytes (after de-chunking).
    pub body: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    Head,
    HeadTooLarge,
    ContentLength,
    ChunkSize,
    ChunkEnd,
    LineTooLong,
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            FramingError::Head => "malformed response head",
            FramingError::HeadTooLarge => "response head too large",
            FramingError::ContentLength => "bad content-length",
            FramingError::ChunkSize => "bad chunk size",
            FramingError::ChunkEnd => "chunk not followed by CRLF",
            FramingError::LineTooLong => "chunk or trailer line too long",
        };
        f.write_str(what)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Fixed {
        remaining: u64,
    },
    ChunkSize,
    ChunkData {
        remaining: u64,
    },
    /// The CRLF after a chunk's data; `seen` of its two bytes already consumed.
    ChunkCrlf {
        seen: u8,
    },
    Trailers,
    UntilClose,
}

/// Frames one response at a time. Feed it the unconsumed bytes with [`advance`]; at end of
/// stream call [`finish_at_eof`].
///
/// [`advance`]: ResponseReader::advance
/// [`finish_at_eof`]: ResponseReader::finish_at_eof
#[derive(Debug)]
pub struct ResponseReader {
    state: State,
    status: u16,
    close: bool,
    body: u64,
}

impl Default for ResponseReader {
    fn default() -> Self {
        ResponseReader {
            state: State::Head,
            status: 0,
            close: false,
            body: 0,
        }
    }
}

/// What [`ResponseReader::advance`] made of the bytes it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    /// Bytes consumed from the front of the slice; the caller drops them.
    pub consumed: usize,
    /// Set when a response ended within the consumed bytes; the reader is ready for the next.
    pub done: Option<Response>,
}

impl ResponseReader {
    /// Consumes as much of `buf` as it can. Stops at the end of one response (bytes after it
    /// belong to the next), or when it needs more bytes than `buf` holds (an incomplete head
    /// or line is left unconsumed: the caller keeps it and appends to it).
    pub fn advance(&mut self, buf: &[u8]) -> Result<Advance, FramingError> {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            match self.state {
                State::Head => match self.head(rest)? {
                    Some(used) => at += used,
                    None => return Ok(self.pending(at)),
                },
                State::Fixed { remaining } => {
                    let take = remaining.min(rest.len() as u64);
                    at += take as usize;
                    self.body += take;
                    if take == remaining {
                        return Ok(self.complete(at));
                    }
                    self.state = State::Fixed {
                        remaining: remaining - take,
                    };
                    return Ok(self.pending(at));
                }
                State::ChunkSize => match line(rest)? {
                    Some((text, used)) => {
                        at += used;
                        let size = chunk_size(text)?;
                        self.state = if size == 0 {
                            State::Trailers
                        } else {
                            State::ChunkData { remaining: size }
                        };
                    }
                    None => return Ok(self.pending(at)),
                },
                State::ChunkData { remaining } => {
                    let take = remaining.min(rest.len() as u64);
                    at += take as usize;
                    self.body += take;
                    if take < remaining {
                        self.state = State::ChunkData {
                            remaining: remaining - take,
                        };
                        return Ok(self.pending(at));
                    }
                    self.state = State::ChunkCrlf { seen: 0 };
                }
                State::ChunkCrlf { seen } => {
                    let want: &[u8] = &b"\r\n"[seen as usize..];
                    let n = want.len().min(rest.len());
                    if rest[..n] != want[..n] {
                        return Err(FramingError::ChunkEnd);
                    }
                    at += n;
                    if n < want.len() {
                        self.state = State::ChunkCrlf {
                            seen: seen + n as u8,
                        };
                        return Ok(self.pending(at));
                    }
                    self.state = State::ChunkSize;
                }
                State::Trailers => match line(rest)? {
                    Some((text, used)) => {
                        at += used;
                        if text.is_empty() {
                            return Ok(self.complete(at));
                        }
                    }
                    None => return Ok(self.pending(at)),
                },
                State::UntilClose => {
                    self.body += rest.len() as u64;
                    return Ok(self.pending(buf.len()));
                }
            }
        }
    }

    /// The peer closed the connection. A body delimited by the close ends here; anything
    /// else was cut short (`None`).
    pub fn finish_at_eof(&mut self) -> Option<Response> {
        if self.state == State::UntilClose {
            return self.complete(0).done;
        }
        None
    }

    fn pending(&self, consumed: usize) -> Advance {
        Advance {
            consumed,
            done: None,
        }
    }

    fn complete(&mut self, consumed: usize) -> Advance {
        let done = Response {
            status: self.status,
            close: self.close || self.state == State::UntilClose,
            body: self.body,
        };
        *self = ResponseReader::default();
        Advance {
            consumed,
            done: Some(done),
        }
    }

    /// Parses a head at the start of `buf`; `None` when it is not complete yet.
    fn head(&mut self, buf: &[u8]) -> Result<Option<usize>, FramingError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let used = match response.parse(buf) {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                return Err(FramingError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(FramingError::Head),
        };
        let status = response.code.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            // An interim response (100 Continue, 103 Early Hints): the real one follows.
            return Ok(Some(used));
        }
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut close = response.version == Some(0);
        for h in response.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let value = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or(FramingError::ContentLength)?;
                if length.is_some_and(|l| l != value) {
                    return Err(FramingError::ContentLength);
                }
                length = Some(value);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = h
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        close = false;
                    }
                }
            }
        }
        self.status = status;
        self.close = close;
        self.body = 0;
        self.state = if status == 204 || status == 304 {
            State::Fixed { remaining: 0 }
        } else if chunked {
            State::ChunkSize
        } else if let Some(length) = length {
            State::Fixed { remaining: length }
        } else {
            State::UntilClose
        };
        Ok(Some(used))
    }
}

/// A CRLF-terminated line at the start of `buf`, without its CRLF, and the bytes it spans.
fn line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, FramingError> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(end) if end > MAX_LINE => Err(FramingError::LineTooLong),
        Some(end) => Ok(Some((&buf[..end], end + 2))),
        None if buf.len() > MAX_LINE => Err(FramingError::LineTooLong),
        None => Ok(None),
    }
}

/// The hexadecimal size of a chunk-size line, extensions ignored.
fn chunk_size(text: &[u8]) -> Result<u64, FramingError> {
    let digits = text
        .split(|&b| b == b';')
        .next()
        .unwrap_or(&[])
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(FramingError::ChunkSize);
    }
    let mut size = 0u64;
    for &d in digits {
        let v = (d as char).to_digit(16).ok_or(FramingError::ChunkSize)?;
        size = size * 16 + u64::from(v);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes the way the connection loop does (keeping what
    /// was not consumed), and returns every response framed plus the leftover bytes.
    fn frame(input: &[u8], step: usize) -> (Vec<Response>, Vec<u8>) {
        let mut reader = ResponseReader::default();
        let mut pending: Vec<u8> = Vec::new();
        let mut done = Vec::new();
        for piece in input.chunks(step) {
            pending.extend_from_slice(piece);
            loop {
                let adv = reader.advance(&pending).expect("valid framing");
                pending.drain(..adv.consumed);
                match adv.done {
                    Some(r) => done.push(r),
                    None => break,
                }
            }
        }
        (done, pending)
    }

    fn every_step(input: &[u8], expect: &[Response]) {
        for step in 1..=input.len() {
            let (done, rest) = frame(input, step);
            assert_eq!(done, expect, "step {step}");
            assert!(rest.is_empty(), "step {step}: leftover {rest:?}");
        }
    }

    fn ok(body: u64) -> Response {
        Response {
            status: 200,
            close: false,
            body,
        }
    }

    #[test]
    fn content_length_bodies_back_to_back() {
        let input = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 503 Busy\r\ncontent-length: 2\r\n\r\nno";
        let busy = Response {
            status: 503,
            close: false,
            body: 2,
        };
        every_step(input, &[ok(5), ok(0), busy]);
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let input = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
        every_step(input, &[ok(15), ok(0)]);
    }

    #[test]
    fn chunked_wins_over_content_length_and_large_bodies_are_counted() {
        let mut input =
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n10000\r\n"
                .to_vec();
        input.extend(std::iter::repeat_n(b'x', 0x10000));
        input.extend_from_slice(b"\r\n0\r\n\r\n");
        let (done, rest) = frame(&input, 4096);
        assert_eq!(done, [ok(0x10000)]);
        assert!(rest.is_empty());
    }

    #[test]
    fn interim_responses_are_skipped_and_no_body_statuses_have_none() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\n";
        let none = |status| Response {
            status,
            close: false,
            body: 0,
        };
        every_step(input, &[none(204), none(304)]);
    }

    #[test]
    fn connection_close_and_http10_are_reported() {
        let input = b"HTTP/1.1 200 OK\r\nconnection: keep-alive, close\r\ncontent-length: 1\r\n\r\nxHTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n";
        let closing = |body| Response {
            status: 200,
            close: true,
            body,
        };
        every_step(input, &[closing(1), closing(0)]);
    }

    #[test]
    fn body_until_close_ends_at_eof() {
        let mut reader = ResponseReader::default();
        let adv = reader
            .advance(b"HTTP/1.1 200 OK\r\n\r\nabc")
            .expect("valid head");
        assert_eq!(adv.done, None);
        assert_eq!(adv.consumed, 22);
        let r = reader.finish_at_eof().expect("ends at close");
        assert_eq!((r.status, r.close, r.body), (200, true, 3));
    }

    #[test]
    fn eof_inside_a_framed_body_is_a_cut() {
        let mut reader = ResponseReader::default();
        let adv = reader
            .advance(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
            .expect("valid head");
        assert_eq!(adv.done, None);
        assert_eq!(reader.finish_at_eof(), None);
    }

    #[test]
    fn leftover_after_a_response_is_not_consumed() {
        let mut reader = ResponseReader::default();
        let input = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nxHTTP/1.1";
        let adv = reader.advance(input).expect("valid");
        assert_eq!(adv.done, Some(ok(1)));
        assert_eq!(&input[adv.consumed..], b"HTTP/1.1");
    }

    #[test]
    fn bad_framing_is_an_error() {
        let bad: [&[u8]; 5] = [
            b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nabc",
            b"HTTTP/1.1 200 OK\r\n\r\n",
        ];
        for input in bad {
            let mut reader = ResponseReader::default();
            assert!(reader.advance(input).is_err(), "{:?}", input);
        }
        let mut reader = ResponseReader::default();
        let huge = vec![b'a'; MAX_HEAD];
        let mut head = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
        head.extend_from_slice(&huge);
        assert_eq!(reader.advance(&head), Err(FramingError::HeadTooLarge));
    }
}
