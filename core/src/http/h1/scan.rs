//! Byte-level checks on a head before httparse tokenises it, and the small grammars
//! (token, authority) the request and response parsers share.
//!
//! httparse accepts bare LF as a line ending and lets a request line grow without bound; the
//! scan here rejects what it tolerates and finds where the head ends, in one pass that reports
//! the first fault in byte order, so a message gets the same answer however it is split
//! across reads.

use std::net::Ipv6Addr;

use super::MAX_HEADERS;

/// Empty lines tolerated before a start line (RFC 9112 section 2.2 asks for at least one).
pub(crate) const MAX_LEADING_EMPTY_LINES: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScanError {
    Syntax(&'static str),
    FirstLineTooLong,
    TooManyFields,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Head {
    Partial,
    /// `first_line_end` and `end` are the offsets just past the CRLF of the start line and of
    /// the empty line that ends the head.
    Complete {
        first_line_end: usize,
        end: usize,
    },
}

const PLAIN: u8 = 0;
const CR: u8 = 1;
const LF: u8 = 2;
const CTL: u8 = 3;

/// Every control character but HTAB is refused anywhere in a head; httparse then refuses HTAB
/// where only values may hold it.
static CLASS: [u8; 256] = {
    let mut map = [PLAIN; 256];
    let mut i = 0;
    while i < 0x20 {
        map[i] = CTL;
        i += 1;
    }
    map[b'\t' as usize] = PLAIN;
    map[b'\r' as usize] = CR;
    map[b'\n' as usize] = LF;
    map[0x7f] = CTL;
    map
};

/// Skips the empty lines before a start line. `Ok(None)`: the buffer ends within them.
pub(crate) fn skip_empty_lines(buf: &[u8]) -> Result<Option<usize>, ScanError> {
    let mut i = 0;
    loop {
        match buf.get(i) {
            None => return Ok(None),
            Some(b'\r') => match buf.get(i + 1) {
                None => return Ok(None),
                Some(b'\n') => {
                    if i / 2 == MAX_LEADING_EMPTY_LINES {
                        return Err(ScanError::Syntax(
                            "too many empty lines before the start line",
                        ));
                    }
                    i += 2;
                }
                Some(_) => return Err(ScanError::Syntax("bare CR")),
            },
            Some(b'\n') => return Err(ScanError::Syntax("bare LF")),
            Some(_) => return Ok(Some(i)),
        }
    }
}

/// Scans the head that starts (after any empty lines) at `start`: every line must end in
/// CRLF, no control character but HTAB may appear, no field line may start with whitespace
/// (obs-fold), the start line may hold at most `max_first_line` bytes before its CRLF, and at
/// most [`MAX_HEADERS`] field lines may follow it. The caller bounds `buf` to its head limit.
pub(crate) fn scan_head(
    buf: &[u8],
    start: usize,
    max_first_line: usize,
) -> Result<Head, ScanError> {
    let mut line_start = start;
    let mut first_line_end = None;
    let mut fields = 0usize;
    loop {
        if first_line_end.is_some() && matches!(buf.get(line_start), Some(b' ' | b'\t')) {
            return Err(ScanError::Syntax(
                "obs-fold (field line starts with whitespace)",
            ));
        }
        let rest = &buf[line_start..];
        let special = rest.iter().position(|&b| CLASS[b as usize] != PLAIN);
        let at = special.map_or(buf.len(), |offset| line_start + offset);
        if first_line_end.is_none() && at - start > max_first_line {
            return Err(ScanError::FirstLineTooLong);
        }
        let Some(_) = special else {
            return Ok(Head::Partial);
        };
        match CLASS[buf[at] as usize] {
            CR => match buf.get(at + 1) {
                None => return Ok(Head::Partial),
                Some(b'\n') => {}
                Some(_) => return Err(ScanError::Syntax("bare CR")),
            },
            LF => return Err(ScanError::Syntax("bare LF")),
            _ => return Err(ScanError::Syntax("control character in head")),
        }
        let next = at + 2;
        match first_line_end {
            None if at == line_start => return Err(ScanError::Syntax("empty start line")),
            None => first_line_end = Some(next),
            Some(first_line_end) if at == line_start => {
                return Ok(Head::Complete {
                    first_line_end,
                    end: next,
                })
            }
            Some(_) => {
                fields += 1;
                if fields > MAX_HEADERS {
                    return Err(ScanError::TooManyFields);
                }
            }
        }
        line_start = next;
    }
}

/// What an httparse error means, for a head that already passed [`scan_head`].
pub(crate) fn httparse_reason(err: httparse::Error) -> &'static str {
    match err {
        httparse::Error::HeaderName => "invalid header name (or whitespace before colon)",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status line",
        httparse::Error::Token => "invalid request line",
        httparse::Error::TooManyHeaders => "too many header fields",
        httparse::Error::Version => "unsupported HTTP version",
    }
}

static TCHAR: [bool; 256] = {
    let mut map = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        map[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    map
};

/// RFC 9110 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// RFC 9110 `token`: one or more tchar.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Strips optional whitespace (SP, HTAB) from both ends.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The elements of a comma-separated field value, each trimmed of optional whitespace.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// RFC 3986 `authority` without userinfo, as Host carries it: `host [":" port]` where host is
/// a reg-name (which covers IPv4) or a bracketed IPv6 address. Ports are 1 to 5 digits up to
/// 65535; an empty port after ':' is refused.
pub(crate) fn is_valid_authority(authority: &[u8], require_port: bool) -> bool {
    let (host, port) = match authority.first() {
        Some(b'[') => {
            let Some(close) = authority.iter().position(|&b| b == b']') else {
                return false;
            };
            let literal = &authority[1..close];
            let is_ipv6 = std::str::from_utf8(literal).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok());
            if !is_ipv6 {
                return false;
            }
            match &authority[close + 1..] {
                [] => (&authority[..0], None),
                [b':', port @ ..] => (&authority[..0], Some(port)),
                _ => return false,
            }
        }
        _ => match authority.iter().rposition(|&b| b == b':') {
            Some(colon) => (&authority[..colon], Some(&authority[colon + 1..])),
            None => (authority, None),
        },
    };
    if !is_reg_name(host) {
        return false;
    }
    match port {
        None => !require_port,
        Some(port) => {
            (1..=5).contains(&port.len())
                && port.iter().all(u8::is_ascii_digit)
                && port.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65535
        }
    }
}

/// RFC 3986 `reg-name`: unreserved, pct-encoded and sub-delims; may be empty.
fn is_reg_name(host: &[u8]) -> bool {
    let mut i = 0;
    while i < host.len() {
        match host[i] {
            b'%' => {
                let hex = host.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
                continue;
            }
            b if b.is_ascii_alphanumeric() => {}
            b'-' | b'.' | b'_' | b'~' => {}
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_the_end_of_a_head() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody";
        assert_eq!(
            scan_head(buf, 0, 100),
            Ok(Head::Complete {
                first_line_end: 16,
                end: 27
            })
        );
        for cut in 0..27 {
            assert_eq!(
                scan_head(&buf[..cut], 0, 100),
                Ok(Head::Partial),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn scan_refuses_bad_bytes() {
        let syntax = |buf: &[u8]| match scan_head(buf, 0, 100) {
            Err(ScanError::Syntax(_)) => true,
            other => panic!("{other:?}"),
        };
        assert!(syntax(b"GET / HTTP/1.1\nHost: a\r\n\r\n"));
        assert!(syntax(b"GET / HTTP/1.1\r\nHost: a\n\r\n"));
        assert!(syntax(b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"));
        assert!(syntax(b"GET / HTTP/1.1\r\nHost: a\0\r\n\r\n"));
        assert!(syntax(b"GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n"));
        assert!(syntax(b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"));
        assert!(syntax(b"GET / HTTP/1.1\r\n\tfolded\r\n\r\n"));
        assert!(syntax(b"\r\n"));
    }

    #[test]
    fn scan_limits_the_first_line_and_the_field_count() {
        assert_eq!(
            scan_head(b"GET /abc HTTP/1.1\r\n", 0, 17),
            Ok(Head::Partial)
        );
        assert_eq!(scan_head(b"GET /abc HTTP/1.1\r", 0, 17), Ok(Head::Partial));
        assert_eq!(
            scan_head(b"GET /abcd HTTP/1.1\r\n", 0, 17),
            Err(ScanError::FirstLineTooLong)
        );
        assert_eq!(
            scan_head(b"GET /abcd HTTP/1.", 0, 16),
            Err(ScanError::FirstLineTooLong)
        );
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            many.extend_from_slice(b"a: b\r\n");
        }
        assert_eq!(scan_head(&many, 0, 100), Err(ScanError::TooManyFields));
    }

    #[test]
    fn empty_lines_before_the_start_line() {
        assert_eq!(skip_empty_lines(b"GET"), Ok(Some(0)));
        assert_eq!(skip_empty_lines(b"\r\n\r\nGET"), Ok(Some(4)));
        assert_eq!(skip_empty_lines(b"\r\n\r"), Ok(None));
        assert_eq!(
            skip_empty_lines(b"\nGET"),
            Err(ScanError::Syntax("bare LF"))
        );
        assert!(skip_empty_lines(&b"\r\n".repeat(MAX_LEADING_EMPTY_LINES + 1)).is_err());
        let max = b"\r\n".repeat(MAX_LEADING_EMPTY_LINES);
        assert_eq!(
            skip_empty_lines(&[&max[..], b"G"].concat()),
            Ok(Some(max.len()))
        );
    }

    #[test]
    fn authorities() {
        for ok in [
            &b"example.com"[..],
            b"example.com:8080",
            b"127.0.0.1:80",
            b"[::1]",
            b"[2001:db8::1]:443",
            b"",
            b"a%2Db",
            b"under_score",
        ] {
            assert!(
                is_valid_authority(ok, false),
                "{}",
                String::from_utf8_lossy(ok)
            );
        }
        for bad in [
            &b"user@example.com"[..],
            b"example.com:",
            b"example.com:123456",
            b"example.com:65536",
            b"example.com:8o",
            b"a b",
            b"[::1",
            b"[nope]",
            b"[::1]x",
            b"a/b",
            b"a%zz",
            b"a%2",
            b"a:1:2",
        ] {
            assert!(
                !is_valid_authority(bad, false),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(is_valid_authority(b"example.com:443", true));
        assert!(!is_valid_authority(b"example.com", true));
    }

    #[test]
    fn lists_and_tokens() {
        let items: Vec<&[u8]> = list_elements(b" a ,\tb,,c ").collect();
        assert_eq!(items, [&b"a"[..], b"b", b"", b"c"]);
        assert!(is_token(b"keep-alive"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert_eq!(trim_ows(b" \t x \t"), b"x");
    }
}
