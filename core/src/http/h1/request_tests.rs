use super::*;
use crate::http::h1::HeaderKind;

pub(super) const LIMITS: RequestLimits = RequestLimits {
    max_request_line: 64,
    max_head: 512,
};

pub(super) fn parse(buf: &[u8]) -> Result<Option<RequestHead>, RequestError> {
    parse_request(buf, &LIMITS, &mut Vec::new())
}

pub(super) fn ok(buf: &[u8]) -> RequestHead {
    match parse(buf) {
        Ok(Some(head)) => head,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

#[track_caller]
pub(super) fn bad(buf: &[u8]) -> &'static str {
    match parse(buf) {
        Err(RequestError::BadRequest(reason)) => reason,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

/// A request line plus field lines, with the final CRLF.
pub(super) fn req(line: &str, fields: &[&str]) -> Vec<u8> {
    let mut out = format!("{line}\r\n");
    for field in fields {
        out.push_str(field);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

pub(super) fn get(fields: &[&str]) -> Vec<u8> {
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
        assert_eq!(
            parse(&full[..cut]).unwrap().map(|h| h.head_len),
            None,
            "cut {cut}"
        );
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
    assert_eq!(
        parse(&get(&["Host: a", &filler])).unwrap_err(),
        RequestError::HeadTooLarge
    );
    let exact = get(&["Host: a"]);
    let limits = RequestLimits {
        max_head: exact.len(),
        ..LIMITS
    };
    assert!(parse_request(&exact, &limits, &mut Vec::new())
        .unwrap()
        .is_some());
    let limits = RequestLimits {
        max_head: exact.len() - 1,
        ..LIMITS
    };
    assert_eq!(
        parse_request(&exact, &limits, &mut Vec::new()).unwrap_err(),
        RequestError::HeadTooLarge
    );
}

#[test]
fn too_many_headers() {
    let mut fields = vec!["Host: a"];
    fields.extend(vec!["X: y"; MAX_HEADERS - 1]);
    let limits = RequestLimits {
        max_head: 4096,
        ..LIMITS
    };
    assert_eq!(
        parse_request(&get(&fields), &limits, &mut Vec::new())
            .unwrap()
            .unwrap()
            .head_len,
        get(&fields).len()
    );
    fields.push("X: z");
    assert_eq!(
        parse_request(&get(&fields), &limits, &mut Vec::new()).unwrap_err(),
        RequestError::HeadTooLarge
    );
}

#[test]
fn request_line_too_long() {
    let at_limit = format!("GET /{} HTTP/1.1", "a".repeat(LIMITS.max_request_line - 14));
    assert_eq!(at_limit.len(), LIMITS.max_request_line);
    assert!(ok(&req(&at_limit, &["Host: a"])).head_len > 0);
    let over = format!("GET /{} HTTP/1.1", "a".repeat(LIMITS.max_request_line - 13));
    assert_eq!(
        parse(&req(&over, &["Host: a"])).unwrap_err(),
        RequestError::UriTooLong
    );
    // No CRLF yet: 414 as soon as the line is longer than allowed, before any head limit.
    let partial = "GET /".to_string() + &"a".repeat(LIMITS.max_request_line);
    assert_eq!(
        parse(partial.as_bytes()).unwrap_err(),
        RequestError::UriTooLong
    );
    assert_eq!(
        parse(&partial.as_bytes()[..LIMITS.max_request_line])
            .unwrap()
            .map(|h| h.head_len),
        None
    );
    let tight = RequestLimits {
        max_request_line: 64,
        max_head: 32,
    };
    assert_eq!(
        parse_request(partial.as_bytes(), &tight, &mut Vec::new()).unwrap_err(),
        RequestError::UriTooLong
    );
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
    assert_eq!(
        ok(&req("PROPFIND / HTTP/1.1", &["Host: a"])).method,
        Method::Other
    );
    assert_eq!(
        ok(&req("DELETE / HTTP/1.1", &["Host: a"])).method,
        Method::Delete
    );
    assert_eq!(bad(&req("GE(T / HTTP/1.1", &["Host: a"])), "invalid method");
    assert_eq!(
        bad(&req("G\u{e9}T / HTTP/1.1", &["Host: a"])),
        "invalid method"
    );
    bad(&req(" GET / HTTP/1.1", &["Host: a"]));
    bad(&req("GET  / HTTP/1.1", &["Host: a"]));
    bad(&req("GET / HTTP/1.1 ", &["Host: a"]));
    bad(&req("GET /", &["Host: a"]));
}

#[test]
fn versions() {
    assert_eq!(ok(&req("GET / HTTP/1.0", &[])).version, Version::Http10);
    for line in [
        "GET / http/1.1",
        "GET / HTTP/1.",
        "GET / HTTP/1.x",
        "GET / HTTP/2",
        "GET / HTTP/1.10",
        "GET / HTTP/0.9",
    ] {
        bad(&req(line, &["Host: a"]));
    }
    for line in ["GET / HTTP/2.0", "GET / HTTP/3.0", "GET / HTTP/9.9"] {
        let err = parse(&req(line, &["Host: a"])).unwrap_err();
        assert_eq!(err, RequestError::VersionNotSupported, "{line}");
        assert_eq!(err.status(), 505);
    }
    assert_eq!(
        parse(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap_err(),
        RequestError::VersionNotSupported
    );
}

#[test]
fn later_minor_versions_are_read_as_1_1() {
    for minor in 2..=9 {
        let buf = [
            &b"\r\n"[..],
            &req(
                &format!("POST /a?b HTTP/1.{minor}"),
                &["Host: h", "Content-Length: 3"],
            ),
        ]
        .concat();
        let head = ok(&buf);
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.head_len, buf.len());
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.method_span.get(&buf), b"POST");
        assert_eq!(head.path.get(&buf), b"/a?b");
        assert_eq!(head.host.unwrap().get(&buf), b"h");
        assert_eq!(head.body, BodyKind::Length(3));
        assert!(head.keep_alive);
    }
    // Still 1.1's rules: Host is required, framing is as strict.
    bad(&req("GET / HTTP/1.2", &[]));
    bad(&req(
        "GET / HTTP/1.2",
        &["Host: a", "Content-Length: 1", "Transfer-Encoding: chunked"],
    ));
    let mut fields = Vec::new();
    let buf = req("GET / HTTP/1.5", &["Host: a", "X-A: b"]);
    parse_request(&buf, &LIMITS, &mut fields).unwrap().unwrap();
    assert_eq!(fields[1].name.get(&buf), b"X-A");
    assert_eq!(fields[1].value.get(&buf), b"b");
}

#[test]
fn leading_empty_lines_are_counted() {
    let buf = [b"\r\n\r\n", &get(&["Host: a"])[..]].concat();
    assert_eq!(ok(&buf).head_len, buf.len());
    let too_many = [
        &b"\r\n".repeat(scan::MAX_LEADING_EMPTY_LINES + 1)[..],
        &get(&["Host: a"]),
    ]
    .concat();
    bad(&too_many);
}

#[test]
fn mutated_heads_never_panic_and_prefixes_agree() {
    // xorshift64 with a fixed seed: reproducible, no dependency.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let seeds = [
        get(&["Host: a", "Content-Length: 5"]),
        req(
            "POST http://a:8/x?y HTTP/1.1",
            &["Host: a:8", "Transfer-Encoding: chunked"],
        ),
        req("OPTIONS * HTTP/1.0", &["Connection: keep-alive, x", "X: y"]),
    ];
    let alphabet = b"\r\n \t:,;/?#@*[]0aZ\x00\x7f\xe9";
    for seed in &seeds {
        for _ in 0..300 {
            let mut message = seed.clone();
            for _ in 0..(1 + next() % 3) {
                let at = (next() % message.len() as u64) as usize;
                message[at] = alphabet[(next() % alphabet.len() as u64) as usize];
            }
            let whole = parse(&message).map(|h| h.map(|h| (h.head_len, h.body, h.keep_alive)));
            if let Ok(Some((head_len, _, _))) = whole {
                assert!(head_len <= message.len());
            }
            for cut in 0..message.len() {
                match parse(&message[..cut]).map(|h| h.map(|h| (h.head_len, h.body, h.keep_alive)))
                {
                    Ok(None) => {}
                    prefix => assert_eq!(
                        prefix,
                        whole,
                        "{:?} cut {cut}",
                        String::from_utf8_lossy(&message)
                    ),
                }
            }
        }
    }
}

#[test]
fn websocket_upgrades_are_recognised_and_nothing_else_is() {
    let ws = |line: &str, fields: &[&str]| ok(&req(line, fields)).websocket;
    let base = ["Host: a", "Connection: Upgrade", "Upgrade: websocket"];
    assert!(ws("GET / HTTP/1.1", &base));
    assert!(ws(
        "GET / HTTP/1.1",
        &[
            "Host: a",
            "Connection: keep-alive, upgrade",
            "Upgrade: WebSocket/13, h2c"
        ]
    ));
    // Both fields are needed, on a bodiless HTTP/1.1 GET.
    assert!(!ws("GET / HTTP/1.1", &["Host: a", "Upgrade: websocket"]));
    assert!(!ws("GET / HTTP/1.1", &["Host: a", "Connection: upgrade"]));
    assert!(!ws("GET / HTTP/1.0", &base));
    assert!(!ws("POST / HTTP/1.1", &base));
    let mut with_body = base.to_vec();
    with_body.push("Content-Length: 0");
    assert!(ws("GET / HTTP/1.1", &with_body));
    with_body[3] = "Content-Length: 3";
    assert!(!ws("GET / HTTP/1.1", &with_body));
    assert!(!ws(
        "GET / HTTP/1.1",
        &["Host: a", "Connection: upgrade", "Upgrade: h2c"]
    ));
    assert!(!ws(
        "GET / HTTP/1.1",
        &["Host: a", "Connection: upgrade", "Upgrade: websockets"]
    ));
}
