//! Response heads from upstream (RFC 9112 sections 4 and 6.3).
//!
//! The same syntax rules as requests hold; a fault here means the upstream connection cannot
//! be trusted to frame the next message, so the caller answers 502 (or closes the client
//! connection if the head already went out) and never reuses that upstream connection.

use std::mem::MaybeUninit;

use super::headers::{collect, HeaderRef};
use super::scan::{self, Head, ScanError};
use super::{Method, Span, Version, MAX_HEADERS};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseBody {
    None,
    Length(u64),
    Chunked,
    /// Delimited by the upstream closing the connection.
    UntilClose,
}

/// Transfer codings the upstream applied besides a final `chunked` (RFC 9112 section 6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferCodings {
    /// None, or only `chunked`.
    None,
    /// Others (`gzip`, ...), with `chunked` last or absent: their labels, in the upstream's
    /// Transfer-Encoding fields, go on with the body.
    Labelled,
    /// `chunked` followed by another coding: the body cannot be chunked again for the client
    /// (chunked would be applied twice).
    ChunkedInside,
}

#[derive(Clone, Debug)]
pub struct ResponseHead {
    /// Bytes of the head including the final CRLF CRLF and any empty lines before it.
    pub head_len: usize,
    pub version: Version,
    pub status: u16,
    /// The reason phrase as sent (possibly empty, possibly obs-text).
    pub reason: Span,
    pub body: ResponseBody,
    pub codings: TransferCodings,
    /// Whether the upstream connection may carry another request after this response.
    pub keep_alive: bool,
    /// A 101 switching to WebSocket and nothing else (`Upgrade: websocket` with `Connection:
    /// upgrade`): the only switch the gateway offers, so the only one it relays.
    pub upgrade: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    Malformed(&'static str),
    HeadTooLarge,
}

impl ResponseError {
    /// A short cause for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ResponseError::Malformed(reason) => reason,
            ResponseError::HeadTooLarge => "response head too large",
        }
    }
}

impl From<ScanError> for ResponseError {
    fn from(err: ScanError) -> Self {
        match err {
            ScanError::Syntax(reason) => ResponseError::Malformed(reason),
            ScanError::FirstLineTooLong | ScanError::TooManyFields => ResponseError::HeadTooLarge,
        }
    }
}

use ResponseError::Malformed;

/// Length of "HTTP/1.1 200 ", after which the reason phrase starts.
const REASON_OFFSET: usize = 13;

/// Parses a response head at the start of `buf`; `headers` is cleared and receives its fields.
/// `request_method` decides HEAD (no body) and CONNECT framing. A 1xx head has body `None`: it
/// is interim and the caller reads the next head, except 101, after which the connection
/// speaks another protocol: only a caller that asked for an upgrade may accept it. A 2xx to
/// CONNECT (a tunnel) is not supported and comes back `Malformed`.
// Inlined into the shard's one caller: the admin listener and health checks call it too,
// and out of line it costs the proxy a call per message (callgrind).
#[inline]
pub fn parse_response(
    buf: &[u8],
    max_head: usize,
    headers: &mut Vec<HeaderRef>,
    request_method: Method,
) -> Result<Option<ResponseHead>, ResponseError> {
    headers.clear();
    let incomplete = || {
        if buf.len() >= max_head {
            Err(ResponseError::HeadTooLarge)
        } else {
            Ok(None)
        }
    };
    let Some(start) = scan::skip_empty_lines(buf)? else {
        return incomplete();
    };
    let scanned = &buf[..buf.len().min(max_head)];
    let (line_end, head_len) = match scan::scan_head(scanned, start, usize::MAX)? {
        Head::Partial => return incomplete(),
        Head::Complete {
            first_line_end,
            end,
        } => (first_line_end, end),
    };
    if head_len > u32::MAX as usize {
        return Err(ResponseError::HeadTooLarge);
    }

    // httparse knows only 1.0 and 1.1. A later 1.x is read as 1.1 (RFC 9110 section 2.5),
    // from a copy whose minor digit says 1, at the same offsets; only such a response pays
    // for the copy.
    let minor_at = start + 7;
    let patched;
    let buf: &[u8] = match buf.get(start..start + 9) {
        Some([b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'2'..=b'9', b' ']) => {
            let mut copy = buf[..head_len].to_vec();
            copy[minor_at] = b'1';
            patched = copy;
            &patched
        }
        _ => buf,
    };
    let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        &buf[..head_len],
        &mut raw,
    ) {
        Ok(httparse::Status::Complete(n)) if n == head_len => {}
        Ok(_) => return Err(Malformed("malformed head")),
        Err(err) => return Err(Malformed(scan::httparse_reason(err))),
    }
    let (Some(minor), Some(status)) = (res.version, res.code) else {
        return Err(Malformed("invalid status line"));
    };
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    if !(100..=599).contains(&status) {
        return Err(Malformed("status code out of range"));
    }
    // httparse hides a reason with obs-text; take it from the status line itself.
    let line_content_end = line_end - 2;
    let reason = Span::new(
        (start + REASON_OFFSET).min(line_content_end),
        line_content_end,
    );

    let fields = collect(buf, res.headers, headers).map_err(Malformed)?;
    if request_method == Method::Connect && (200..300).contains(&status) {
        return Err(Malformed("unexpected 2xx to CONNECT"));
    }
    let persistent = match version {
        Version::Http11 => !fields.close,
        Version::Http10 => fields.keep_alive && !fields.close,
    };
    if let Some(codings) = fields.transfer_encoding {
        // RFC 9112 section 6.1: Transfer-Encoding on 1.0 means faulty framing.
        if version == Version::Http10 {
            return Err(Malformed("Transfer-Encoding in an HTTP/1.0 response"));
        }
        if fields.content_length.is_some() {
            return Err(Malformed("both Content-Length and Transfer-Encoding"));
        }
        if codings.chunked > 1 {
            return Err(Malformed("chunked applied more than once"));
        }
    }
    let no_body = (100..200).contains(&status)
        || status == 204
        || status == 304
        || request_method == Method::Head;
    let (body, keep_alive) = match (fields.transfer_encoding, fields.content_length) {
        _ if status == 101 => (ResponseBody::None, false),
        _ if no_body => (ResponseBody::None, persistent),
        (Some(codings), _) if codings.last_is_chunked => (ResponseBody::Chunked, persistent),
        (Some(_), _) => (ResponseBody::UntilClose, false),
        (None, Some(n)) => (ResponseBody::Length(n), persistent),
        (None, None) => (ResponseBody::UntilClose, false),
    };
    let codings = match fields.transfer_encoding {
        Some(c) if c.other && c.chunked > 0 && !c.last_is_chunked => TransferCodings::ChunkedInside,
        Some(c) if c.other => TransferCodings::Labelled,
        _ => TransferCodings::None,
    };
    Ok(Some(ResponseHead {
        head_len,
        version,
        status,
        reason,
        body,
        codings,
        keep_alive,
        upgrade: status == 101
            && fields.websocket
            && !fields.upgrade_other
            && fields.connection_upgrade,
    }))
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
