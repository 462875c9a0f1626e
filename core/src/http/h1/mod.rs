//! Strict HTTP/1.1 codec (RFC 9112), as pure functions over byte buffers.
//!
//! Request smuggling lives in the gap between two parsers that disagree about where a message
//! ends. This codec closes that gap by refusing every message whose framing another parser
//! could read differently: bare CR or LF, obs-fold, control characters, whitespace before a
//! colon, Content-Length together with Transfer-Encoding, differing Content-Length values,
//! transfer-codings other than a single final `chunked`, chunk lines with stray whitespace.
//!
//! Nothing here allocates per call and nothing panics on network input. Heads are tokenised
//! by `httparse` after a byte scan of our own ([`scan`]) that enforces what httparse
//! tolerates; results are [`Span`]s into the caller's read buffer, and header fields go into a
//! `Vec<HeaderRef>` the caller keeps and reuses.
//!
//! - [`request`]: [`parse_request`], the downstream side.
//! - [`response`]: [`parse_response`], the upstream side.
//! - [`chunked`]: [`ChunkedScanner`], validating a chunked body that is passed through
//!   verbatim, and the helpers that write chunked framing.
//! - [`headers`]: [`HeaderKind`], [`HeaderRef`] and the field grammars behind framing.

pub mod chunked;
pub mod headers;
pub mod request;
pub mod response;
mod scan;

pub use chunked::{write_chunk_header, ChunkError, ChunkedScanner, Scan, LAST_CHUNK};
pub use headers::{HeaderKind, HeaderRef};
pub use request::{parse_request, BodyKind, RequestError, RequestHead, RequestLimits};
pub use response::{parse_response, ResponseBody, ResponseError, ResponseHead, TransferCodings};
pub(crate) use scan::is_valid_authority;

/// Most header fields a head may carry; one more is answered with 431 (or refused upstream).
pub const MAX_HEADERS: usize = 100;

/// A byte range `start..end` into the buffer a head was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// The bytes of this span; `buf` must be the buffer it was parsed from.
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }

    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Heads are bounded by their size limit, checked to fit `u32` before any span is made.
    pub(crate) fn new(start: usize, end: usize) -> Span {
        debug_assert!(start <= end && end <= u32::MAX as usize);
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The span of `part`, a subslice of `buf`.
    pub(crate) fn within(buf: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - buf.as_ptr() as usize;
        Span::new(start, start + part.len())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// The request method. Methods are case-sensitive (RFC 9110 section 9.1): `get` is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
    Other,
}

impl Method {
    pub fn from_bytes(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"CONNECT" => Method::Connect,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }

    /// RFC 9110 section 9.2.2; `Other` is never assumed idempotent.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

/// The reason phrase RFC 9110 gives a status code; "" for codes it does not name.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_reads_its_bytes() {
        let buf = b"GET /a HTTP/1.1";
        let span = Span { start: 4, end: 6 };
        assert_eq!(span.get(buf), b"/a");
        assert_eq!(span.len(), 2);
        assert!(!span.is_empty());
        assert!(Span { start: 3, end: 3 }.is_empty());
        assert_eq!(Span::within(buf, &buf[7..]), Span { start: 7, end: 15 });
    }

    #[test]
    fn methods_are_case_sensitive() {
        assert_eq!(Method::from_bytes(b"GET"), Method::Get);
        assert_eq!(Method::from_bytes(b"PATCH"), Method::Patch);
        assert_eq!(Method::from_bytes(b"get"), Method::Other);
        assert_eq!(Method::from_bytes(b"PROPFIND"), Method::Other);
    }

    #[test]
    fn idempotent_methods() {
        for m in [
            Method::Get,
            Method::Head,
            Method::Put,
            Method::Delete,
            Method::Options,
            Method::Trace,
        ] {
            assert!(m.is_idempotent(), "{m:?}");
        }
        for m in [Method::Post, Method::Patch, Method::Connect, Method::Other] {
            assert!(!m.is_idempotent(), "{m:?}");
        }
    }

    #[test]
    fn reason_phrases() {
        assert_eq!(reason_phrase(200), "OK");
        assert_eq!(reason_phrase(502), "Bad Gateway");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(299), "");
        assert_eq!(Version::Http10.as_str(), "HTTP/1.0");
    }
}
