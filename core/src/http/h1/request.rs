//! Request heads from downstream (RFC 9112 sections 2 to 3 and 6).
//!
//! Every message that another parser could frame differently is refused here with the status
//! the client gets, before anything reaches an upstream.

use std::mem::MaybeUninit;

use super::headers::{collect, Fields, HeaderRef};
use super::scan::{self, is_valid_authority, Head, ScanError};
use super::{Method, Span, Version, MAX_HEADERS};

#[derive(Clone, Copy, Debug)]
pub struct RequestLimits {
    /// Most bytes of the request line, without its CRLF (414 beyond).
    pub max_request_line: usize,
    /// Most bytes of the whole head, empty lines before it and final CRLF included (431 beyond).
    pub max_head: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

#[derive(Clone, Debug)]
pub struct RequestHead {
    /// Bytes of the head including the final CRLF CRLF and any empty lines before it.
    pub head_len: usize,
    pub method: Method,
    pub method_span: Span,
    /// The request-target exactly as sent.
    pub target: Span,
    /// What to forward in origin-form: the target for origin-form; for absolute-form the
    /// path-and-query after the authority (empty means "/"; it never starts with '?'); "*"
    /// for asterisk-form; for CONNECT's authority-form the target itself.
    pub path: Span,
    /// Length of `path` before its '?'.
    pub path_len_without_query: usize,
    pub version: Version,
    /// The authority to route on, port included as sent: the absolute-form target's
    /// authority if used, else the Host field value (which may be empty).
    pub host: Option<Span>,
    pub body: BodyKind,
    /// HTTP/1.1: unless `Connection: close`; HTTP/1.0: only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (ignored on 1.0, RFC 9110 10.1.1).
    pub expect_continue: bool,
    /// An HTTP/1.1 GET without a body asking to switch to WebSocket (`Connection: upgrade`
    /// and `Upgrade: websocket`, RFC 6455 section 4.1). Other upgrades are not offered
    /// upstream: their Upgrade field is dropped like any hop-by-hop field.
    pub websocket: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    BadRequest(&'static str),
    UriTooLong,
    HeadTooLarge,
    /// A well-formed request line of a major version other than 1 (`HTTP/2.0` sent to an
    /// HTTP/1 port): 505, as nginx answers it.
    VersionNotSupported,
    /// Never returned by `parse_request`; for the caller that counts body bytes.
    BodyTooLarge,
}

impl RequestError {
    pub fn status(&self) -> u16 {
        match self {
            RequestError::BadRequest(_) => 400,
            RequestError::UriTooLong => 414,
            RequestError::HeadTooLarge => 431,
            RequestError::VersionNotSupported => 505,
            RequestError::BodyTooLarge => 413,
        }
    }

    /// A short cause for logs; never shown to the client.
    pub fn reason(&self) -> &'static str {
        match self {
            RequestError::BadRequest(reason) => reason,
            RequestError::UriTooLong => "request line too long",
            RequestError::HeadTooLarge => "request head too large",
            RequestError::VersionNotSupported => "HTTP major version not supported",
            RequestError::BodyTooLarge => "request body too large",
        }
    }
}

impl From<ScanError> for RequestError {
    fn from(err: ScanError) -> Self {
        match err {
            ScanError::Syntax(reason) => RequestError::BadRequest(reason),
            ScanError::FirstLineTooLong => RequestError::UriTooLong,
            ScanError::TooManyFields => RequestError::HeadTooLarge,
        }
    }
}

use RequestError::BadRequest;

/// Parses a request head at the start of `buf`; `headers` is cleared and receives its fields.
/// `Ok(None)`: head not complete yet, no limit exceeded: read more and call again with the
/// longer buffer. Faults are reported in the order their bytes arrive, so the answer does not
/// depend on how the head was split across reads.
// Inlined into the shard's one caller: the admin listener and health checks call it too,
// and out of line it costs the proxy a call per message (callgrind).
#[inline]
pub fn parse_request(
    buf: &[u8],
    limits: &RequestLimits,
    headers: &mut Vec<HeaderRef>,
) -> Result<Option<RequestHead>, RequestError> {
    headers.clear();
    let incomplete = || {
        if buf.len() >= limits.max_head {
            Err(RequestError::HeadTooLarge)
        } else {
            Ok(None)
        }
    };
    let Some(start) = scan::skip_empty_lines(buf)? else {
        return incomplete();
    };
    // 414 is judged before 431: scan far enough to see the whole allowed request line.
    let scan_limit = limits.max_head.max(
        start
            .saturating_add(limits.max_request_line)
            .saturating_add(2),
    );
    let scanned = &buf[..buf.len().min(scan_limit)];
    let (line_end, head_len) = match scan::scan_head(scanned, start, limits.max_request_line)? {
        Head::Partial => return incomplete(),
        Head::Complete {
            first_line_end,
            end,
        } => (first_line_end, end),
    };
    if head_len > limits.max_head || head_len > u32::MAX as usize {
        return Err(RequestError::HeadTooLarge);
    }
    // httparse knows only 1.0 and 1.1. A later 1.x is read as 1.1 (RFC 9110 section 2.5):
    // the head is parsed from a copy whose minor digit says 1, at the same offsets, so every
    // span below holds for `buf` too. Only such a request pays for the copy.
    let patched;
    let src: &[u8] = match version_line(&buf[start..line_end])? {
        LineVersion::Known => buf,
        LineVersion::LaterMinor => {
            let mut copy = buf[..head_len].to_vec();
            copy[line_end - 3] = b'1';
            patched = copy;
            &patched
        }
    };
    let head = &src[..head_len];

    let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(head, &mut raw) {
        Ok(httparse::Status::Complete(n)) if n == head_len => {}
        Ok(_) => return Err(BadRequest("malformed head")),
        Err(httparse::Error::Token) => {
            return Err(BadRequest(request_line_fault(&buf[start..line_end])))
        }
        Err(err) => return Err(BadRequest(scan::httparse_reason(err))),
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(BadRequest("malformed request line"));
    };
    let method_span = Span::within(src, method.as_bytes());
    let method = Method::from_bytes(method.as_bytes());
    let target = Span::within(src, target.as_bytes());
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };

    let fields = collect(src, req.headers, headers).map_err(BadRequest)?;
    if fields.framing_lookalike {
        return Err(BadRequest(
            "field name resembles Content-Length or Transfer-Encoding",
        ));
    }
    let form = request_target(buf, target, method)?;
    let host = route_host(buf, &fields, version, form.authority)?;
    let body = request_body(&fields, version)?;
    let keep_alive = match version {
        Version::Http11 => !fields.close,
        Version::Http10 => fields.keep_alive && !fields.close,
    };
    Ok(Some(RequestHead {
        head_len,
        method,
        method_span,
        target,
        path: form.path,
        path_len_without_query: form
            .path
            .get(buf)
            .iter()
            .position(|&b| b == b'?')
            .unwrap_or(form.path.len()),
        version,
        host,
        body,
        keep_alive,
        expect_continue: fields.expect_continue && version == Version::Http11,
        websocket: fields.websocket
            && fields.connection_upgrade
            && version == Version::Http11
            && method == Method::Get
            && matches!(body, BodyKind::None | BodyKind::Length(0)),
    }))
}

enum LineVersion {
    /// HTTP/1.0, HTTP/1.1, or anything httparse is left to refuse.
    Known,
    /// HTTP/1.2 to HTTP/1.9.
    LaterMinor,
}

/// The version at the end of a request line (`line` with its CRLF). `HTTP/D.D` with a major of
/// 2 or more is refused with 505; HTTP/0.9 and malformed versions stay httparse's to refuse
/// (400).
fn version_line(line: &[u8]) -> Result<LineVersion, RequestError> {
    let Some(v) = line
        .len()
        .checked_sub(11)
        .map(|at| &line[at..line.len() - 2])
    else {
        return Ok(LineVersion::Known);
    };
    match v {
        [b' ', b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            if *major >= b'2' {
                Err(RequestError::VersionNotSupported)
            } else if *major == b'1' && *minor >= b'2' {
                Ok(LineVersion::LaterMinor)
            } else {
                Ok(LineVersion::Known)
            }
        }
        _ => Ok(LineVersion::Known),
    }
}

/// httparse says "invalid token" for the method and the target alike; tell them apart.
fn request_line_fault(line: &[u8]) -> &'static str {
    let method_len = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    if scan::is_token(&line[..method_len]) {
        "invalid request-target"
    } else {
        "invalid method"
    }
}

struct TargetForm {
    path: Span,
    /// The authority of an absolute-form target.
    authority: Option<Span>,
}

/// RFC 9112 section 3.2: origin-form, absolute-form (http and https only), authority-form for
/// CONNECT only, asterisk-form for OPTIONS only. Targets are ASCII without '#'.
fn request_target(buf: &[u8], target: Span, method: Method) -> Result<TargetForm, RequestError> {
    let bytes = target.get(buf);
    if bytes.contains(&b'#') {
        return Err(BadRequest("fragment in request-target"));
    }
    if !bytes.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(BadRequest("invalid character in request-target"));
    }
    if method == Method::Connect {
        if !is_valid_authority(bytes, true) || bytes.is_empty() {
            return Err(BadRequest("CONNECT needs an authority-form target"));
        }
        return Ok(TargetForm {
            path: target,
            authority: None,
        });
    }
    if bytes == b"*" {
        if method != Method::Options {
            return Err(BadRequest("asterisk-form target without OPTIONS"));
        }
        return Ok(TargetForm {
            path: target,
            authority: None,
        });
    }
    if bytes[0] == b'/' {
        return Ok(TargetForm {
            path: target,
            authority: None,
        });
    }
    let scheme_len = if starts_with_ignore_case(bytes, b"http://") {
        7
    } else if starts_with_ignore_case(bytes, b"https://") {
        8
    } else {
        return Err(BadRequest("invalid request-target form"));
    };
    let rest = &bytes[scheme_len..];
    let authority_len = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_len);
    if authority.contains(&b'@') {
        return Err(BadRequest("userinfo in request-target"));
    }
    if authority.is_empty() || !is_valid_authority(authority, false) {
        return Err(BadRequest("invalid authority in request-target"));
    }
    if path.first() == Some(&b'?') {
        return Err(BadRequest("absolute-form target with a query but no path"));
    }
    Ok(TargetForm {
        path: Span::within(buf, path),
        authority: Some(Span::within(buf, authority)),
    })
}

fn starts_with_ignore_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Host rules of RFC 9112 section 3.2: exactly one valid Host on HTTP/1.1, at most one on
/// 1.0. An absolute-form authority wins for routing; a Host that disagrees with it is refused,
/// because the upstream gets Host unchanged and must not see another host than we routed on.
fn route_host(
    buf: &[u8],
    fields: &Fields,
    version: Version,
    target_authority: Option<Span>,
) -> Result<Option<Span>, RequestError> {
    match (fields.host_count, version) {
        (0, Version::Http11) => return Err(BadRequest("missing Host")),
        (0, Version::Http10) => return Ok(target_authority),
        (1, _) => {}
        _ => return Err(BadRequest("more than one Host")),
    }
    let host = fields.host.ok_or(BadRequest("missing Host"))?;
    if !is_valid_authority(host.get(buf), false) {
        return Err(BadRequest("invalid Host"));
    }
    match target_authority {
        Some(authority) if !authority.get(buf).eq_ignore_ascii_case(host.get(buf)) => {
            Err(BadRequest("Host differs from the request-target authority"))
        }
        Some(authority) => Ok(Some(authority)),
        None => Ok(Some(host)),
    }
}

/// RFC 9112 section 6: Transfer-Encoding must be exactly `chunked` (the gateway rewrites
/// framing, so it could not carry any other coding on), never with Content-Length, never on
/// HTTP/1.0.
fn request_body(fields: &Fields, version: Version) -> Result<BodyKind, RequestError> {
    match (fields.transfer_encoding, fields.content_length) {
        (None, None) => Ok(BodyKind::None),
        (None, Some(n)) => Ok(BodyKind::Length(n)),
        (Some(_), _) if version == Version::Http10 => {
            Err(BadRequest("Transfer-Encoding in an HTTP/1.0 request"))
        }
        (Some(_), Some(_)) => Err(BadRequest("both Content-Length and Transfer-Encoding")),
        (Some(codings), None) => {
            if codings.chunked > 1 {
                Err(BadRequest("chunked applied more than once"))
            } else if !codings.last_is_chunked {
                Err(BadRequest("final transfer-coding is not chunked"))
            } else if codings.other {
                Err(BadRequest("unsupported transfer-coding"))
            } else {
                Ok(BodyKind::Chunked)
            }
        }
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "request_fields_tests.rs"]
mod fields_tests;
