//! Header fields: what each one is, which ones stop at this hop, and the field grammars that
//! decide framing and persistence (Content-Length, Transfer-Encoding, Connection, Host).

use super::scan::{is_token, list_elements, trim_ows};
use super::{Span, MAX_HEADERS};

/// The fields the gateway acts on; everything else is `Other` and passes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderKind {
    Other,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Trailer,
    Upgrade,
    ProxyAuthorization,
    Expect,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    Forwarded,
    XRealIp,
    /// `X-Forwarded-Port`, `-Prefix`, `-Ssl`: what a proxy in front tells of the original
    /// request; believed from trusted proxies only, like `Forwarded`.
    XForwardedOther,
    Via,
    XRequestId,
    /// A name that reads as a forwarding field (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`)
    /// once '_' becomes '-', as CGI-style servers fold names: never forwarded, so that no
    /// client can slip an address past the gateway's own forwarding fields.
    ForwardingLookalike,
}

impl HeaderKind {
    /// Classifies a field name, ASCII case-insensitively.
    pub fn classify(name: &[u8]) -> HeaderKind {
        const NAMES: [(&[u8], HeaderKind); 21] = [
            (b"host", HeaderKind::Host),
            (b"content-length", HeaderKind::ContentLength),
            (b"transfer-encoding", HeaderKind::TransferEncoding),
            (b"connection", HeaderKind::Connection),
            (b"keep-alive", HeaderKind::KeepAlive),
            (b"proxy-connection", HeaderKind::ProxyConnection),
            (b"te", HeaderKind::Te),
            (b"trailer", HeaderKind::Trailer),
            (b"upgrade", HeaderKind::Upgrade),
            (b"proxy-authorization", HeaderKind::ProxyAuthorization),
            (b"expect", HeaderKind::Expect),
            (b"x-forwarded-for", HeaderKind::XForwardedFor),
            (b"x-forwarded-proto", HeaderKind::XForwardedProto),
            (b"x-forwarded-host", HeaderKind::XForwardedHost),
            (b"forwarded", HeaderKind::Forwarded),
            (b"x-real-ip", HeaderKind::XRealIp),
            (b"x-forwarded-port", HeaderKind::XForwardedOther),
            (b"x-forwarded-prefix", HeaderKind::XForwardedOther),
            (b"x-forwarded-ssl", HeaderKind::XForwardedOther),
            (b"via", HeaderKind::Via),
            (b"x-request-id", HeaderKind::XRequestId),
        ];
        NAMES
            .iter()
            .find(|(known, _)| known.len() == name.len() && known.eq_ignore_ascii_case(name))
            .map_or(HeaderKind::Other, |&(_, kind)| kind)
    }

    /// Fields that describe one connection, not the message (RFC 9110 section 7.6.1), plus the
    /// de-facto ones (Keep-Alive, Proxy-Connection) and Proxy-Authorization, which is for us.
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            HeaderKind::Connection
                | HeaderKind::KeepAlive
                | HeaderKind::ProxyConnection
                | HeaderKind::Te
                | HeaderKind::Trailer
                | HeaderKind::Upgrade
                | HeaderKind::TransferEncoding
                | HeaderKind::ProxyAuthorization
                | HeaderKind::ForwardingLookalike
        )
    }
}

/// One field line of a parsed head: spans into the buffer the head was parsed from. The
/// value has no leading or trailing whitespace.
#[derive(Clone, Copy, Debug)]
pub struct HeaderRef {
    pub name: Span,
    pub value: Span,
    pub kind: HeaderKind,
    /// The name is listed as an option in a Connection field of the same head.
    pub named_in_connection: bool,
}

impl HeaderRef {
    /// True for hop-by-hop kinds, for Content-Length (the proxy writes its own framing) and for
    /// fields named in Connection.
    pub fn strip_when_forwarding(&self) -> bool {
        self.kind.is_hop_by_hop()
            || self.kind == HeaderKind::ContentLength
            || self.named_in_connection
    }
}

/// What the framing and persistence fields of a head say, each already checked on its own.
/// The request and response parsers judge the combinations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fields {
    pub host_count: usize,
    pub host: Option<Span>,
    pub content_length: Option<u64>,
    pub transfer_encoding: Option<Codings>,
    pub close: bool,
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// Connection lists `upgrade`.
    pub connection_upgrade: bool,
    /// Upgrade fields are present; `websocket`: one of them offers WebSocket.
    pub upgrade: bool,
    pub websocket: bool,
    /// An Upgrade element names something other than WebSocket.
    pub upgrade_other: bool,
    /// A field name that reads as Content-Length or Transfer-Encoding once '_' becomes '-'
    /// (as CGI-style servers fold them): it would reach the upstream past our framing.
    pub framing_lookalike: bool,
}

/// The transfer-codings listed across every Transfer-Encoding field, in order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Codings {
    pub chunked: usize,
    pub last_is_chunked: bool,
    /// A coding other than `chunked` appears.
    pub other: bool,
}

/// Turns httparse's fields into `out` (cleared by the caller) and checks the fields that
/// decide framing: Content-Length values must be digits and agree, Transfer-Encoding and
/// Connection must be lists of tokens. Marks the fields Connection names.
pub(crate) fn collect(
    buf: &[u8],
    parsed: &[httparse::Header<'_>],
    out: &mut Vec<HeaderRef>,
) -> Result<Fields, &'static str> {
    out.reserve(MAX_HEADERS);
    let mut collector = Collector::default();
    for header in parsed {
        let name = Span::within(buf, header.name.as_bytes());
        let value = Span::within(buf, header.value);
        collector.field(buf, name, value, out)?;
    }
    Ok(collector.finish(buf, out))
}

/// The field checks of one head, a field at a time, for every codec: the h1 parser feeds it
/// what httparse found, the h2 codec the fields of a HEADERS frame.
#[derive(Default)]
pub(crate) struct Collector {
    fields: Fields,
    connection_options: bool,
}

impl Collector {
    /// Classifies and checks one field (`name` and `value` are spans into `buf`) and pushes
    /// it to `out`.
    #[inline]
    pub(crate) fn field(
        &mut self,
        buf: &[u8],
        name_span: Span,
        value_span: Span,
        out: &mut Vec<HeaderRef>,
    ) -> Result<(), &'static str> {
        let fields = &mut self.fields;
        let name = name_span.get(buf);
        let value = value_span.get(buf);
        let mut kind = HeaderKind::classify(name);
        let underscore = kind == HeaderKind::Other && name.contains(&b'_');
        if underscore && resembles_forwarding_field(name) {
            kind = HeaderKind::ForwardingLookalike;
        }
        out.push(HeaderRef {
            name: name_span,
            value: value_span,
            kind,
            named_in_connection: false,
        });
        match kind {
            HeaderKind::Host => {
                fields.host_count += 1;
                fields.host = Some(value_span);
            }
            HeaderKind::ContentLength => {
                for element in list_elements(value) {
                    let n = parse_content_length(element).ok_or("invalid Content-Length")?;
                    match fields.content_length {
                        Some(seen) if seen != n => return Err("differing Content-Length values"),
                        _ => fields.content_length = Some(n),
                    }
                }
            }
            HeaderKind::TransferEncoding => {
                let codings = fields
                    .transfer_encoding
                    .get_or_insert_with(Codings::default);
                for element in list_elements(value) {
                    let is_chunked =
                        transfer_coding_is_chunked(element).ok_or("invalid Transfer-Encoding")?;
                    codings.chunked += usize::from(is_chunked);
                    codings.other |= !is_chunked;
                    codings.last_is_chunked = is_chunked;
                }
            }
            HeaderKind::Connection => {
                for option in list_elements(value).filter(|o| !o.is_empty()) {
                    if option.eq_ignore_ascii_case(b"close") {
                        fields.close = true;
                    } else if option.eq_ignore_ascii_case(b"keep-alive") {
                        fields.keep_alive = true;
                    } else if is_token(option) {
                        fields.connection_upgrade |= option.eq_ignore_ascii_case(b"upgrade");
                        self.connection_options = true;
                    } else {
                        return Err("invalid Connection option");
                    }
                }
            }
            HeaderKind::Upgrade => {
                fields.upgrade = true;
                // protocol-name ["/" protocol-version] (RFC 9110 section 7.8).
                for p in list_elements(value).filter(|p| !p.is_empty()) {
                    let name = p.split(|&b| b == b'/').next().unwrap_or(p);
                    if name.eq_ignore_ascii_case(b"websocket") {
                        fields.websocket = true;
                    } else {
                        fields.upgrade_other = true;
                    }
                }
            }
            HeaderKind::Expect => {
                fields.expect_continue |=
                    list_elements(value).any(|e| e.eq_ignore_ascii_case(b"100-continue"));
            }
            HeaderKind::Other if underscore => {
                fields.framing_lookalike |= resembles_framing_field(name)
            }
            _ => {}
        }
        Ok(())
    }

    /// What the head's fields say together, once every field is in `out`.
    #[inline]
    pub(crate) fn finish(self, buf: &[u8], out: &mut [HeaderRef]) -> Fields {
        if self.connection_options {
            mark_named_in_connection(buf, out);
        }
        self.fields
    }
}

/// Content-Length element: 1 to 19 ASCII digits (so it always fits u64), nothing else.
fn parse_content_length(element: &[u8]) -> Option<u64> {
    if element.is_empty() || element.len() > 19 || !element.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        element
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

/// Whether `name` is `field` (lower case) once '_' reads as '-', in any case.
fn folds_to(name: &[u8], field: &[u8]) -> bool {
    field.len() == name.len()
        && field
            .iter()
            .zip(name)
            .all(|(&f, &n)| f == n.to_ascii_lowercase() || (f == b'-' && n == b'_'))
}

/// For a name with '_' in it.
fn resembles_framing_field(name: &[u8]) -> bool {
    folds_to(name, b"content-length") || folds_to(name, b"transfer-encoding")
}

/// For a name with '_' in it.
fn resembles_forwarding_field(name: &[u8]) -> bool {
    const FORWARDING: [&[u8]; 8] = [
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-prefix",
        b"x-forwarded-ssl",
        b"x-real-ip",
        b"x-client-ip",
    ];
    FORWARDING.iter().any(|field| folds_to(name, field))
}

/// One transfer-coding element: `Some(true)` for a bare `chunked` (it takes no parameters),
/// `Some(false)` for any other well-formed coding, `None` for an empty or malformed element.
fn transfer_coding_is_chunked(element: &[u8]) -> Option<bool> {
    let name_len = element
        .iter()
        .position(|&b| !super::scan::is_tchar(b))
        .unwrap_or(element.len());
    let (name, params) = element.split_at(name_len);
    if name.is_empty() {
        return None;
    }
    let params = trim_ows(params);
    if !params.is_empty() && params[0] != b';' {
        return None;
    }
    let chunked = name.eq_ignore_ascii_case(b"chunked");
    if chunked && !params.is_empty() {
        return None;
    }
    Some(chunked)
}

/// Sets `named_in_connection` on every field whose name a Connection field lists. Host is
/// exempt: the gateway routes by it and forwards it unchanged, so no client may drop it.
fn mark_named_in_connection(buf: &[u8], headers: &mut [HeaderRef]) {
    for i in 0..headers.len() {
        if headers[i].kind != HeaderKind::Connection {
            continue;
        }
        for option in list_elements(headers[i].value.get(buf)) {
            if option.is_empty()
                || option.eq_ignore_ascii_case(b"close")
                || option.eq_ignore_ascii_case(b"keep-alive")
            {
                continue;
            }
            for header in headers.iter_mut() {
                if header.kind != HeaderKind::Host
                    && header.name.get(buf).eq_ignore_ascii_case(option)
                {
                    header.named_in_connection = true;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;
