//! Writing the heads the gateway forwards: the request to the upstream and the response to the
//! client. Headers are copied from the read buffer by offset; hop-by-hop headers and those named
//! in `Connection` are dropped, and the gateway writes its own framing and forwarding headers.

use std::net::IpAddr;

use crate::http::h1::{
    reason_phrase, BodyKind, HeaderKind, HeaderRef, RequestHead, ResponseBody, ResponseHead,
    TransferCodings, Version,
};
use crate::http::text::{push_ip, push_u64};

/// The gateway's Via token.
pub const VIA: &[u8] = b"1.1 ringway";

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends the values of every header of `kind` joined by ", " to `out`; true if any.
fn join_values(out: &mut Vec<u8>, src: &[u8], headers: &[HeaderRef], kind: HeaderKind) -> bool {
    let mut any = false;
    for h in headers.iter().filter(|h| h.kind == kind) {
        let value = h.value.get(src);
        if value.is_empty() {
            continue;
        }
        if any {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(value);
        any = true;
    }
    any
}

/// What the gateway tells the upstream about the client connection.
pub struct Forwarded<'a> {
    /// The connection's peer: added to `X-Forwarded-For`.
    pub peer: IpAddr,
    /// The peer is a trusted proxy: the forwarding headers it sent are kept and extended;
    /// from anyone else they are replaced (`X-Forwarded-*`) or dropped (`Forwarded`,
    /// `X-Real-IP`).
    pub trusted: bool,
    /// The client connection is TLS (`x-forwarded-proto: https`).
    pub tls: bool,
    /// The listener's `client_cert_header` (lower-case) and the verified client
    /// certificate's identity to put in it, when the client presented one.
    pub client_cert: Option<(&'a str, &'a [u8])>,
    /// Header names (lower-case) the gateway alone may send: every listener's
    /// `client_cert_header`, on every listener, so that no client can pass one off as its
    /// own; matched with `_` as `-`, as CGI-style servers read them.
    pub reserved: &'a [Box<str>],
    /// Offer the client's WebSocket upgrade to the upstream.
    pub upgrade: bool,
    /// A header carrying credentials the gateway checked (the route's API key header): not
    /// forwarded. Lower-case.
    pub credentials: Option<&'a str>,
    /// The route takes basic credentials: an `authorization: Basic` field is not forwarded.
    pub strip_basic: bool,
    /// The consumer the route's auth found, and its groups (`x-consumer`,
    /// `x-consumer-groups`).
    pub consumer: Option<(&'a str, &'a str)>,
}

/// Whether `name` is `reserved`, in any case and with `_` and `-` alike (on either side:
/// CGI-style servers read both as the same header).
fn is_reserved(name: &[u8], reserved: &str) -> bool {
    let fold = |b: u8| match b.to_ascii_lowercase() {
        b'_' => b'-',
        b => b,
    };
    name.len() == reserved.len()
        && (name.iter().zip(reserved.as_bytes())).all(|(&n, &r)| fold(n) == fold(r))
}

/// The request head sent upstream. `request_id` writes a fresh id when the client sent none.
pub fn write_upstream_head(
    out: &mut Vec<u8>,
    src: &[u8],
    head: &RequestHead,
    headers: &[HeaderRef],
    fwd: &Forwarded<'_>,
    request_id: impl FnOnce(&mut Vec<u8>),
) {
    out.extend_from_slice(head.method_span.get(src));
    out.push(b' ');
    let path = head.path.get(src);
    out.extend_from_slice(if path.is_empty() { b"/" } else { path });
    // HTTP/1.1 whatever the client's version, so that upstream connections stay persistent
    // and pooled; the response is framed for the client's version on the way back.
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if head.version == Version::Http10 && !headers.iter().any(|h| h.kind == HeaderKind::Host) {
        // HTTP/1.1 requires Host (RFC 9112 section 3.2): the absolute-form target's authority,
        // else empty.
        push_header(out, b"host", head.host.map_or(&[][..], |h| h.get(src)));
    }
    let mut has_id = false;
    let (mut has_proto, mut has_host) = (false, false);
    for h in headers {
        if h.strip_when_forwarding() {
            continue;
        }
        match h.kind {
            HeaderKind::XForwardedFor | HeaderKind::Via | HeaderKind::Expect => continue,
            HeaderKind::XForwardedProto if fwd.trusted => has_proto = true,
            HeaderKind::XForwardedHost if fwd.trusted => has_host = true,
            HeaderKind::XForwardedProto
            | HeaderKind::XForwardedHost
            | HeaderKind::Forwarded
            | HeaderKind::XRealIp
            | HeaderKind::XForwardedOther
                if !fwd.trusted =>
            {
                continue
            }
            HeaderKind::XRequestId if has_id => continue,
            HeaderKind::XRequestId => has_id = true,
            _ => {}
        }
        let name = h.name.get(src);
        if fwd.reserved.iter().any(|r| is_reserved(name, r)) {
            continue;
        }
        if fwd
            .credentials
            .is_some_and(|c| name.eq_ignore_ascii_case(c.as_bytes()))
        {
            continue;
        }
        if fwd.strip_basic
            && name.eq_ignore_ascii_case(b"authorization")
            && (h.value.get(src).get(..6)).is_some_and(|s| s.eq_ignore_ascii_case(b"basic "))
        {
            continue;
        }
        push_header(out, name, h.value.get(src));
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if fwd.trusted && join_values(out, src, headers, HeaderKind::XForwardedFor) {
        out.extend_from_slice(b", ");
    }
    push_ip(out, fwd.peer);
    out.extend_from_slice(b"\r\n");
    if !has_proto {
        out.extend_from_slice(if fwd.tls {
            b"x-forwarded-proto: https\r\n"
        } else {
            b"x-forwarded-proto: http\r\n"
        });
    }
    if let Some((name, identity)) = fwd.client_cert {
        push_header(out, name.as_bytes(), identity);
    }
    if let (Some(host), false) = (head.host, has_host) {
        push_header(out, b"x-forwarded-host", host.get(src));
    }
    out.extend_from_slice(b"via: ");
    if join_values(out, src, headers, HeaderKind::Via) {
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(VIA);
    out.extend_from_slice(b"\r\n");
    if !has_id {
        out.extend_from_slice(b"x-request-id: ");
        request_id(out);
        out.extend_from_slice(b"\r\n");
    }
    if let Some((name, groups)) = fwd.consumer {
        push_header(out, b"x-consumer", name.as_bytes());
        if !groups.is_empty() {
            push_header(out, b"x-consumer-groups", groups.as_bytes());
        }
    }
    if fwd.upgrade {
        // WebSocket alone, whatever else the client listed: the upstream may only switch
        // to what it is offered (RFC 9110 section 7.8), and nothing else may be tunnelled.
        out.extend_from_slice(b"connection: upgrade\r\nupgrade: websocket\r\n");
    }
    match head.body {
        BodyKind::None => {}
        BodyKind::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyKind::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// How the gateway frames a response body towards the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    /// No body; a `content-length` from the upstream is passed as it is for HEAD and 304 (it
    /// describes the representation), never for 204 (RFC 9110 section 8.6) or 1xx.
    None,
    Length(u64),
    /// Chunked: passed through, or re-framed from a body that ends with the connection. The
    /// upstream's other transfer codings (`gzip`, ...) are labelled before `chunked`.
    Chunked,
    /// Ends when the gateway closes the connection (HTTP/1.0 clients); a chunked body from
    /// the upstream is de-chunked (its trailer dropped).
    Close,
}

/// The upstream's response fields passed to the client, whatever its protocol: hop-by-hop
/// ones and framing left out, except a `content-length` that describes the representation of
/// a bodiless answer (to HEAD, or a 304; never a 204 or 1xx).
pub fn client_fields<'a>(
    resp: &ResponseHead,
    headers: &'a [HeaderRef],
    framing: ClientFraming,
) -> impl Iterator<Item = &'a HeaderRef> {
    let keep_length = framing == ClientFraming::None && resp.status >= 200 && resp.status != 204;
    let mut kept_length = false;
    headers.iter().filter(move |h| {
        if h.kind == HeaderKind::ContentLength && keep_length && !kept_length {
            kept_length = true;
            return true;
        }
        !h.strip_when_forwarding()
    })
}

/// The response head sent to the client: final (`close` decides `connection: close`) or
/// interim (1xx: `framing` None, `close` false).
pub fn write_client_head(
    out: &mut Vec<u8>,
    src: &[u8],
    resp: &ResponseHead,
    headers: &[HeaderRef],
    framing: ClientFraming,
    close: bool,
    client: Version,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(resp.status));
    out.push(b' ');
    let reason = resp.reason.get(src);
    out.extend_from_slice(if reason.is_empty() {
        reason_phrase(resp.status).as_bytes()
    } else {
        reason
    });
    out.extend_from_slice(b"\r\n");
    let mut kept_length = false;
    for h in headers {
        if h.kind == HeaderKind::ContentLength
            && framing == ClientFraming::None
            && !kept_length
            && resp.status >= 200
            && resp.status != 204
        {
            kept_length = true;
            push_header(out, h.name.get(src), h.value.get(src));
            continue;
        }
        if h.strip_when_forwarding() {
            continue;
        }
        push_header(out, h.name.get(src), h.value.get(src));
    }
    match framing {
        ClientFraming::None | ClientFraming::Close => {}
        ClientFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        ClientFraming::Chunked if resp.codings == TransferCodings::Labelled => {
            out.extend_from_slice(b"transfer-encoding: ");
            join_values(out, src, headers, HeaderKind::TransferEncoding);
            // A final chunked is passed through as it is; a body read until close gets it.
            if resp.body == ResponseBody::UntilClose {
                out.extend_from_slice(b", chunked");
            }
            out.extend_from_slice(b"\r\n");
        }
        ClientFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if resp.status == 101 && resp.upgrade {
        out.extend_from_slice(b"connection: upgrade\r\nupgrade: websocket\r\n");
    } else if resp.status >= 200 {
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        } else if client == Version::Http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::is_reserved;

    #[test]
    fn reserved_names_match_in_any_case_and_with_underscores() {
        for name in [
            "x-client-cert",
            "X-Client-Cert",
            "x_client_cert",
            "X_CLIENT-cert",
        ] {
            assert!(is_reserved(name.as_bytes(), "x-client-cert"), "{name}");
        }
        for name in [
            "x-client-certs",
            "x-client",
            "xclient-cert",
            "x-client-cerT ",
        ] {
            assert!(!is_reserved(name.as_bytes(), "x-client-cert"), "{name}");
        }
    }
}
