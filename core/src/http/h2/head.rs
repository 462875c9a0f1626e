//! The request head of an HTTP/2 stream, as the one pipeline reads every request: a
//! [`RequestHead`] and its [`HeaderRef`]s, spans into the request's buffer, built from the
//! HEADERS frame the h2 crate decoded (no HTTP/1.1 text is parsed on the way).
//!
//! The h2 crate has refused what RFC 9113 calls malformed before a stream reaches here
//! (pseudo-header misuse, connection-specific fields, `te` other than `trailers`, upper case
//! or CR/LF in names, a `content-length` that disagrees with the DATA). What is checked here
//! is what the gateway checks of every request, whatever its protocol: the same field rules
//! as HTTP/1.1 (one [`Collector`]), the host to route on, the target's form, and the
//! listener's limits.

use http::header::{COOKIE, HOST};

use crate::http::h1::headers::Collector;
use crate::http::h1::{
    is_valid_authority, BodyKind, HeaderRef, Method, RequestError, RequestHead, RequestLimits,
    Span, Version, MAX_HEADERS,
};

use RequestError::BadRequest;

/// Writes the head of `request` into `buf` (which must be empty: spans start at 0) and
/// returns it as the pipeline's request head, its fields in `headers`. `end_stream`: the
/// HEADERS frame ended the stream (no body). The bytes written read as an HTTP/1.1 head, so
/// that what logs and rejections quote from the buffer looks the same for either protocol.
pub fn request_head(
    request: &http::request::Parts,
    end_stream: bool,
    buf: &mut Vec<u8>,
    headers: &mut Vec<HeaderRef>,
    limits: &RequestLimits,
) -> Result<RequestHead, RequestError> {
    debug_assert!(buf.is_empty());
    headers.clear();
    let method = Method::from_bytes(request.method.as_str().as_bytes());
    if method == Method::Connect {
        // Extended CONNECT (RFC 8441) is not offered: SETTINGS_ENABLE_CONNECT_PROTOCOL is off.
        return Err(BadRequest("CONNECT over HTTP/2"));
    }
    let path = request
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .as_bytes();
    let path = if path.is_empty() { b"/" } else { path };
    if path.len() > limits.max_request_line {
        return Err(RequestError::UriTooLong);
    }
    if path.contains(&b'#') {
        return Err(BadRequest("fragment in request-target"));
    }
    if !path.iter().all(u8::is_ascii_graphic) {
        return Err(BadRequest("invalid character in request-target"));
    }
    match path {
        b"*" if method != Method::Options => {
            return Err(BadRequest("asterisk-form target without OPTIONS"))
        }
        b"*" => {}
        [b'/', ..] => {}
        _ => return Err(BadRequest("invalid request-target form")),
    }

    let method_span = push(buf, request.method.as_str().as_bytes());
    buf.push(b' ');
    let target = push(buf, path);
    buf.extend_from_slice(b" HTTP/1.1\r\n");

    let mut collector = Collector::default();
    let mut field = |buf: &mut Vec<u8>, name: &[u8], value: &[u8], headers: &mut Vec<HeaderRef>| {
        if headers.len() == MAX_HEADERS {
            return Err(RequestError::HeadTooLarge);
        }
        let name = push(buf, name);
        buf.extend_from_slice(b": ");
        let value = push(buf, trim(value));
        buf.extend_from_slice(b"\r\n");
        if buf.len() > limits.max_head {
            return Err(RequestError::HeadTooLarge);
        }
        collector
            .field(buf, name, value, headers)
            .map_err(BadRequest)
    };
    // `:authority` wins over a `host` field (RFC 9113 section 8.3.1), and becomes the Host
    // the upstream receives.
    let authority = request.uri.authority().map(|a| a.as_str().as_bytes());
    if let Some(authority) = authority {
        field(buf, b"host", authority, headers)?;
    }
    // Cookie crumbs, which h2 lets a client send as separate fields, are one field again
    // (RFC 9113 section 8.2.3).
    let mut cookies = request.headers.get_all(COOKIE).iter();
    match (cookies.next(), cookies.next()) {
        (None, _) => {}
        (Some(only), None) => field(buf, b"cookie", only.as_bytes(), headers)?,
        (Some(first), Some(second)) => {
            let mut joined = first.as_bytes().to_vec();
            for crumb in std::iter::once(second).chain(cookies) {
                joined.extend_from_slice(b"; ");
                joined.extend_from_slice(crumb.as_bytes());
            }
            field(buf, b"cookie", &joined, headers)?;
        }
    }
    for (name, value) in &request.headers {
        if name == COOKIE || (authority.is_some() && name == HOST) {
            continue;
        }
        // The h2 crate lets `te: trailers` through; like every hop-by-hop field it stops here.
        if name == http::header::TE {
            continue;
        }
        field(buf, name.as_str().as_bytes(), value.as_bytes(), headers)?;
    }
    buf.extend_from_slice(b"\r\n");
    let fields = collector.finish(buf, headers);

    if fields.framing_lookalike {
        return Err(BadRequest(
            "field name resembles Content-Length or Transfer-Encoding",
        ));
    }
    if fields.transfer_encoding.is_some() || fields.connection_upgrade || fields.upgrade {
        // The h2 crate refuses these; should one pass, nothing may act on it.
        return Err(BadRequest("connection-specific field in an HTTP/2 request"));
    }
    let host = match fields.host_count {
        0 => return Err(BadRequest("missing Host")),
        1 => fields.host,
        _ => return Err(BadRequest("more than one Host")),
    };
    if !host.is_some_and(|h| is_valid_authority(h.get(buf), false)) {
        return Err(BadRequest("invalid Host"));
    }
    let body = match fields.content_length {
        Some(n) => BodyKind::Length(n),
        None if end_stream => BodyKind::None,
        // The stream's DATA, until END_STREAM, reaches the pipeline chunked.
        None => BodyKind::Chunked,
    };
    Ok(RequestHead {
        head_len: buf.len(),
        method,
        method_span,
        target,
        path: target,
        path_len_without_query: path.iter().position(|&b| b == b'?').unwrap_or(path.len()),
        version: Version::Http11,
        host,
        body,
        keep_alive: true,
        expect_continue: fields.expect_continue,
        websocket: false,
    })
}

fn push(buf: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let start = buf.len();
    buf.extend_from_slice(bytes);
    Span::new(start, buf.len())
}

/// A field value without the whitespace around it, as the HTTP/1.1 parser gives it.
fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &value[start..end]
}

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;
