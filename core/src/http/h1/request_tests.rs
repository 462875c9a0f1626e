use super::*;
use crate::http::h1::HeaderKind;

const LIMITS: RequestLimits = RequestLimits {
    max_request_line: 64,
    max_head: 512,
};

fn parse(buf: &[u8]) -> Result<Option<RequestHead>, RequestError> {
    parse_request(buf, &LIMITS, &mut Vec::new())
}

fn ok(buf: &[u8]) -> RequestHead {
    match parse(buf) {
        Ok(Some(head)) => head,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

#[track_caller]
fn bad(buf: &[u8]) -> &'static str {
    match parse(buf) {
        Err(RequestError::BadRequest(reason)) => reason,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

/// A request line plus field lines, with the final CRLF.
fn req(line: &str, fields: &[&str]) -> Vec<u8> {
    let mut out = format!("{line}\r\n");
    for field in fields {
        out.push_str(field);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn get(fields: &[&str]) -> Vec<u8> {
    req("GET / HTTP/1.1", fields)
}

#[test]
fn simple_get() {
    let buf = b"GET /users/7?x=1 HTTP/1.1\r\nHost: api.example.com:8080\r\nAccept: */*\r\n\r\nnext";
    let mut headers = Vec::new();
    let head = parse_request(buf, &LIMITS, &mut headers).unwrap().unwrap();
    assert_eq!(head.head_len, buf.len() - 4);
    assert_eq!(head.method, Method::Get);
    assert_eq!(head.method_span.get(buf), b"GET");
    assert_eq!(head.target.get(buf), b"/users/7?x=1");
    assert_eq!(head.path.get(buf), b"/users/7?x=1");
    assert_eq!(head.path_len_without_query, 8);
    assert_eq!(head.version, Version::Http11);
    assert_eq!(head.host.unwrap().get(buf), b"api.example.com:8080");
    assert_eq!(head.body, BodyKind::None);
    assert!(head.keep_alive);
    assert!(!head.expect_continue);
    assert_eq!(headers.len(), 2);
    assert_eq!(headers[0].kind, HeaderKind::Host);
    assert_eq!(headers[1].value.get(buf), b"*/*");
}

#[test]
fn headers_vec_is_cleared_and_reused() {
    let mut headers = Vec::new();
    parse_request(&get(&["Host: a", "X: 1"]), &LIMITS, &mut headers).unwrap();
    let capacity = headers.capacity();
    parse_request(&get(&["Host: a"]), &LIMITS, &mut headers).unwrap();
    assert_eq!(headers.len(), 1);
    assert_eq!(headers.capacity(), capacity);
    assert!(capacity >= MAX_HEADERS);
}

#[test]
fn incomplete_heads_ask_for_more() {
    let full = get(&["Host: a", "Content-Length: 3"]);
    for cut in 0..full.len() {
        assert_eq!(parse(&full[..cut]).unwrap().map(|h| h.head_len), None, "cut {cut}");
    }
}

#[test]
fn every_prefix_agrees_with_the_whole() {
    let long_line = format!("GET /{} HTTP/1.1", "a".repeat(80));
    let messages = [
        get(&["Host: a"]),
        get(&["Host: a", "Bad\0: x"]),
        get(&["Host: a", " folded"]),
        req(&long_line, &["Host: a"]),
        b"GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\nHost: a\r\n\r\n".to_vec(),
        get(&vec!["X: y"; MAX_HEADERS + 1]),
    ];
    for message in &messages {
        let whole = parse(message).map(|h| h.map(|h| h.head_len));
        for cut in 0..message.len() {
            match parse(&message[..cut]) {
                Ok(None) => {}
                prefix => assert_eq!(prefix.map(|h| h.map(|h| h.head_len)), whole, "cut {cut}"),
            }
        }
    }
}

#[test]
fn head_too_large() {
    let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    buf.resize(LIMITS.max_head, b'x');
    assert_eq!(parse(&buf).unwrap_err(), RequestError::HeadTooLarge);
    let mut partial = b"GET / HTTP/1.1\r\nX: ".to_vec();
    partial.resize(LIMITS.max_head - 1, b'x');
    assert_eq!(parse(&partial).unwrap().map(|h| h.head_len), None);
    partial.push(b'x');
    assert_eq!(parse(&partial).unwrap_err(), RequestError::HeadTooLarge);
    assert_eq!(RequestError::HeadTooLarge.status(), 431);
}

#[test]
fn complete_head_over_the_limit_is_too_large() {
    let filler = format!("X: {}", "y".repeat(LIMITS.max_head));
    assert_eq!(parse(&get(&["Host: a", &filler])).unwrap_err(), RequestError::HeadTooLarge);
    let exact = get(&["Host: a"]);
    let limits = RequestLimits {
        max_head: exact.len(),
        ..LIMITS
    };
    assert!(parse_request(&exact, &limits, &mut Vec::new()).unwrap().is_some());
    let limits = RequestLimits {
        max_head: exact.len() - 1,
        ..LIMITS
    };
    assert_eq!(parse_request(&exact, &limits, &mut Vec::new()).unwrap_err(), RequestError::HeadTooLarge);
}

#[test]
fn too_many_headers() {
    let mut fields = vec!["Host: a"];
    fields.extend(vec!["X: y"; MAX_HEADERS - 1]);
    let limits = RequestLimits {
        max_head: 4096,
        ..LIMITS
    };
    assert_eq!(parse_request(&get(&fields), &limits, &mut Vec::new()).unwrap().unwrap().head_len, get(&fields).len());
    fields.push("X: z");
    assert_eq!(parse_request(&get(&fields), &limits, &mut Vec::new()).unwrap_err(), RequestError::HeadTooLarge);
}

#[test]
fn request_line_too_long() {
    let at_limit = format!("GET /{} HTTP/1.1", "a".repeat(LIMITS.max_request_line - 14));
    assert_eq!(at_limit.len(), LIMITS.max_request_line);
    assert!(ok(&req(&at_limit, &["Host: a"])).head_len > 0);
    let over = format!("GET /{} HTTP/1.1", "a".repeat(LIMITS.max_request_line - 13));
    assert_eq!(parse(&req(&over, &["Host: a"])).unwrap_err(), RequestError::UriTooLong);
    // No CRLF yet: 414 as soon as the line is longer than allowed, before any head limit.
    let partial = "GET /".to_string() + &"a".repeat(LIMITS.max_request_line);
    assert_eq!(parse(partial.as_bytes()).unwrap_err(), RequestError::UriTooLong);
    assert_eq!(parse(&partial.as_bytes()[..LIMITS.max_request_line]).unwrap().map(|h| h.head_len), None);
    let tight = RequestLimits {
        max_request_line: 64,
        max_head: 32,
    };
    assert_eq!(parse_request(partial.as_bytes(), &tight, &mut Vec::new()).unwrap_err(), RequestError::UriTooLong);
    assert_eq!(RequestError::UriTooLong.status(), 414);
}

#[test]
fn bare_lf_and_bare_cr() {
    bad(b"GET / HTTP/1.1\nHost: a\r\n\r\n");
    bad(b"GET / HTTP/1.1\r\nHost: a\n\r\n");
    bad(b"GET / HTTP/1.1\r\nHost: a\r\n\n");
    bad(b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n");
    bad(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    // Bare LF is refused as soon as it arrives, before the head is complete.
    bad(b"GET / HTTP/1.1\r\nHost: a\nX");
}

#[test]
fn control_characters() {
    bad(&get(&["Host: a", "X: a\0b"]));
    bad(&get(&["Host: a", "X: a\x0bb"]));
    bad(&get(&["Host: a", "X: a\x7fb"]));
    bad(&get(&["Host: a", "X\x01: b"]));
    bad(b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n");
    bad(b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n");
    let head = ok(&get(&["Host: a", "X: a\tb"]));
    assert_eq!(head.body, BodyKind::None);
}

#[test]
fn whitespace_before_colon_and_obs_fold() {
    bad(&get(&["Host: a", "X : b"]));
    bad(&get(&["Host: a", "X\t: b"]));
    bad(&get(&["Host : a"]));
    bad(&get(&["Host: a", "X: b", " c"]));
    bad(&get(&["Host: a", "X: b", "\tc"]));
    bad(&get(&[" Host: a"]));
    bad(&get(&["Host: a", ": empty name"]));
}

#[test]
fn method_tokens() {
    assert_eq!(ok(&req("PROPFIND / HTTP/1.1", &["Host: a"])).method, Method::Other);
    assert_eq!(ok(&req("DELETE / HTTP/1.1", &["Host: a"])).method, Method::Delete);
    assert_eq!(bad(&req("GE(T / HTTP/1.1", &["Host: a"])), "invalid method");
    assert_eq!(bad(&req("G\u{e9}T / HTTP/1.1", &["Host: a"])), "invalid method");
    bad(&req(" GET / HTTP/1.1", &["Host: a"]));
    bad(&req("GET  / HTTP/1.1", &["Host: a"]));
    bad(&req("GET / HTTP/1.1 ", &["Host: a"]));
    bad(&req("GET /", &["Host: a"]));
}

#[test]
fn versions() {
    assert_eq!(ok(&req("GET / HTTP/1.0", &[])).version, Version::Http10);
    for line in ["GET / HTTP/2.0", "GET / HTTP/1.2", "GET / http/1.1", "GET / HTTP/1.10", "GET / HTTP/0.9"] {
        bad(&req(line, &["Host: a"]));
    }
    bad(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
}

#[test]
fn leading_empty_lines_are_counted() {
    let buf = [b"\r\n\r\n", &get(&["Host: a"])[..]].concat();
    assert_eq!(ok(&buf).head_len, buf.len());
    let too_many = [&b"\r\n".repeat(scan::MAX_LEADING_EMPTY_LINES + 1)[..], &get(&["Host: a"])].concat();
    bad(&too_many);
}

#[test]
fn origin_and_asterisk_forms() {
    let buf = req("OPTIONS * HTTP/1.1", &["Host: a"]);
    let head = ok(&buf);
    assert_eq!(head.path.get(&buf), b"*");
    assert_eq!(head.path_len_without_query, 1);
    bad(&req("GET * HTTP/1.1", &["Host: a"]));
    let buf = req("OPTIONS /x HTTP/1.1", &["Host: a"]);
    assert_eq!(ok(&buf).path.get(&buf), b"/x");
    for target in ["x", "*x", "?a", "example.com:80"] {
        assert_eq!(bad(&req(&format!("GET {target} HTTP/1.1"), &["Host: a"])), "invalid request-target form");
    }
}

#[test]
fn absolute_form_routes_on_its_authority() {
    let buf = req("GET HTTP://API.example.com:8080/a/b?c=d HTTP/1.1", &["Host: api.example.com:8080"]);
    let head = ok(&buf);
    assert_eq!(head.host.unwrap().get(&buf), b"API.example.com:8080");
    assert_eq!(head.path.get(&buf), b"/a/b?c=d");
    assert_eq!(head.path_len_without_query, 4);
    let buf = req("GET https://a HTTP/1.1", &["Host: a"]);
    let head = ok(&buf);
    assert!(head.path.is_empty());
    assert_eq!(head.path_len_without_query, 0);
    let buf = req("GET http://a/ HTTP/1.0", &[]);
    assert_eq!(ok(&buf).host.unwrap().get(&buf), b"a");
}

#[test]
fn absolute_form_faults() {
    assert_eq!(bad(&req("GET http://u:p@a/ HTTP/1.1", &["Host: a"])), "userinfo in request-target");
    assert_eq!(bad(&req("GET http://a/ HTTP/1.1", &["Host: b"])), "Host differs from the request-target authority");
    bad(&req("GET http:///x HTTP/1.1", &["Host: "]));
    bad(&req("GET ftp://a/ HTTP/1.1", &["Host: a"]));
    bad(&req("GET http://a?q HTTP/1.1", &["Host: a"]));
    bad(&req("GET http://a:x/ HTTP/1.1", &["Host: a:x"]));
}

#[test]
fn connect_needs_authority_form() {
    let buf = req("CONNECT example.com:443 HTTP/1.1", &["Host: example.com:443"]);
    let head = ok(&buf);
    assert_eq!(head.method, Method::Connect);
    assert_eq!(head.path.get(&buf), b"example.com:443");
    assert_eq!(head.host.unwrap().get(&buf), b"example.com:443");
    bad(&req("CONNECT example.com HTTP/1.1", &["Host: example.com"]));
    bad(&req("CONNECT / HTTP/1.1", &["Host: a"]));
    bad(&req("CONNECT http://a/ HTTP/1.1", &["Host: a"]));
}

#[test]
fn target_characters() {
    assert_eq!(bad(&req("GET /a#frag HTTP/1.1", &["Host: a"])), "fragment in request-target");
    assert_eq!(bad(&req("GET /caf\u{e9} HTTP/1.1", &["Host: a"])), "invalid character in request-target");
    bad(b"GET /a\x0bb HTTP/1.1\r\nHost: a\r\n\r\n");
    bad(b"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(ok(&req("GET /a%20b?x=|{} HTTP/1.1", &["Host: a"])).path_len_without_query, 6);
}

#[test]
fn host_rules() {
    assert_eq!(bad(&get(&[])), "missing Host");
    assert_eq!(bad(&get(&["Host: a", "Host: a"])), "more than one Host");
    assert_eq!(bad(&req("GET / HTTP/1.0", &["Host: a", "host: b"])), "more than one Host");
    assert_eq!(ok(&req("GET / HTTP/1.0", &[])).host, None);
    let buf = get(&["Host:"]);
    assert_eq!(ok(&buf).host.unwrap().get(&buf), b"");
    let buf = get(&["Host: [::1]:8080"]);
    assert_eq!(ok(&buf).host.unwrap().get(&buf), b"[::1]:8080");
    for host in ["a b", "a/b", "a@b", "a:", "a:99999", "[::1", "a,b c", "\u{e9}.com"] {
        assert_eq!(bad(&get(&[&format!("Host: {host}")])), "invalid Host", "{host}");
    }
}

#[test]
fn content_length_rules() {
    assert_eq!(ok(&req("POST / HTTP/1.1", &["Host: a", "Content-Length: 0"])).body, BodyKind::Length(0));
    assert_eq!(ok(&req("POST / HTTP/1.1", &["Host: a", "Content-Length: 12"])).body, BodyKind::Length(12));
    assert_eq!(ok(&get(&["Host: a", "Content-Length: 5, 5", "Content-Length: 5"])).body, BodyKind::Length(5));
    assert_eq!(bad(&get(&["Host: a", "Content-Length: 5", "Content-Length: 6"])), "differing Content-Length values");
    assert_eq!(bad(&get(&["Host: a", "Content-Length: 5, 6"])), "differing Content-Length values");
    for value in ["+1", "-1", "1 2", "", "0x10", "1e3", "12345678901234567890"] {
        assert_eq!(bad(&get(&["Host: a", &format!("Content-Length: {value}")])), "invalid Content-Length", "{value}");
    }
    assert_eq!(ok(&get(&["Host: a", "Content-Length: 1234567890123456789"])).body, BodyKind::Length(1_234_567_890_123_456_789));
}

#[test]
fn transfer_encoding_rules() {
    let chunked = ok(&req("POST / HTTP/1.1", &["Host: a", "Transfer-Encoding: chunked"]));
    assert_eq!(chunked.body, BodyKind::Chunked);
    assert_eq!(ok(&get(&["Host: a", "Transfer-Encoding: ChUnKeD"])).body, BodyKind::Chunked);
    let both = ["Host: a", "Content-Length: 5", "Transfer-Encoding: chunked"];
    assert_eq!(bad(&get(&both)), "both Content-Length and Transfer-Encoding");
    let http10 = req("POST / HTTP/1.0", &["Transfer-Encoding: chunked"]);
    assert_eq!(bad(&http10), "Transfer-Encoding in an HTTP/1.0 request");
    assert_eq!(bad(&get(&["Host: a", "Transfer-Encoding: gzip"])), "final transfer-coding is not chunked");
    assert_eq!(bad(&get(&["Host: a", "Transfer-Encoding: chunked, gzip"])), "final transfer-coding is not chunked");
    assert_eq!(
        bad(&get(&["Host: a", "Transfer-Encoding: chunked", "Transfer-Encoding: identity"])),
        "final transfer-coding is not chunked"
    );
    assert_eq!(bad(&get(&["Host: a", "Transfer-Encoding: chunked, chunked"])), "chunked applied more than once");
    assert_eq!(
        bad(&get(&["Host: a", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"])),
        "chunked applied more than once"
    );
    assert_eq!(bad(&get(&["Host: a", "Transfer-Encoding: gzip, chunked"])), "unsupported transfer-coding");
    assert_eq!(bad(&get(&["Host: a", "Transfer-Encoding: xchunked"])), "final transfer-coding is not chunked");
    assert_eq!(bad(&get(&["Host: a", "Transfer-Encoding: chunked;q=1"])), "invalid Transfer-Encoding");
    assert_eq!(bad(&get(&["Host: a", "Transfer-Encoding:"])), "invalid Transfer-Encoding");
}

#[test]
fn keep_alive_by_version() {
    assert!(ok(&get(&["Host: a"])).keep_alive);
    assert!(!ok(&get(&["Host: a", "Connection: close"])).keep_alive);
    assert!(!ok(&get(&["Host: a", "Connection: keep-alive, Close"])).keep_alive);
    assert!(!ok(&req("GET / HTTP/1.0", &[])).keep_alive);
    assert!(ok(&req("GET / HTTP/1.0", &["Connection: Keep-Alive"])).keep_alive);
    assert!(!ok(&req("GET / HTTP/1.0", &["Connection: keep-alive", "Connection: close"])).keep_alive);
}

#[test]
fn connection_marks_named_fields() {
    let buf = get(&["Host: a", "Connection: x-hop, close", "X-Hop: 1", "X-Keep: 2", "x-hop: 3"]);
    let mut headers = Vec::new();
    parse_request(&buf, &LIMITS, &mut headers).unwrap().unwrap();
    let stripped: Vec<&[u8]> = headers.iter().filter(|h| h.strip_when_forwarding()).map(|h| h.name.get(&buf)).collect();
    assert_eq!(stripped, [&b"Connection"[..], b"X-Hop", b"x-hop"]);
    assert_eq!(bad(&get(&["Host: a", "Connection: a/b"])), "invalid Connection option");
}

#[test]
fn expect_continue() {
    assert!(ok(&get(&["Host: a", "Expect: 100-continue"])).expect_continue);
    assert!(ok(&get(&["Host: a", "Expect: 100-CONTINUE"])).expect_continue);
    assert!(!ok(&get(&["Host: a"])).expect_continue);
    assert!(!ok(&req("POST / HTTP/1.0", &["Expect: 100-continue"])).expect_continue);
}

#[test]
fn error_statuses_and_reasons() {
    assert_eq!(RequestError::BadRequest("x").status(), 400);
    assert_eq!(RequestError::BadRequest("x").reason(), "x");
    assert_eq!(RequestError::BodyTooLarge.status(), 413);
    assert!(!RequestError::UriTooLong.reason().is_empty());
}
