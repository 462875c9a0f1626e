use super::*;

const MAX_HEAD: usize = 512;

fn parse_for(buf: &[u8], method: Method) -> Result<Option<ResponseHead>, ResponseError> {
    parse_response(buf, MAX_HEAD, &mut Vec::new(), method)
}

fn ok_for(buf: &[u8], method: Method) -> ResponseHead {
    match parse_for(buf, method) {
        Ok(Some(head)) => head,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn ok(buf: &[u8]) -> ResponseHead {
    ok_for(buf, Method::Get)
}

#[track_caller]
fn malformed(buf: &[u8]) -> &'static str {
    match parse_for(buf, Method::Get) {
        Err(ResponseError::Malformed(reason)) => reason,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn res(line: &str, fields: &[&str]) -> Vec<u8> {
    let mut out = format!("{line}\r\n");
    for field in fields {
        out.push_str(field);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn ok200(fields: &[&str]) -> Vec<u8> {
    res("HTTP/1.1 200 OK", fields)
}

#[test]
fn simple_response() {
    let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello";
    let mut headers = Vec::new();
    let head = parse_response(buf, MAX_HEAD, &mut headers, Method::Get)
        .unwrap()
        .unwrap();
    assert_eq!(head.head_len, buf.len() - 5);
    assert_eq!(head.version, Version::Http11);
    assert_eq!(head.status, 200);
    assert_eq!(head.reason.get(buf), b"OK");
    assert_eq!(head.body, ResponseBody::Length(5));
    assert!(head.keep_alive);
    assert_eq!(headers.len(), 2);
    assert!(headers[0].strip_when_forwarding());
    assert!(!headers[1].strip_when_forwarding());
}

#[test]
fn reason_phrases_as_sent() {
    let buf = res("HTTP/1.1 404 Not Found", &["Content-Length: 0"]);
    assert_eq!(ok(&buf).reason.get(&buf), b"Not Found");
    let buf = res("HTTP/1.1 200", &["Content-Length: 0"]);
    assert!(ok(&buf).reason.is_empty());
    let buf = res("HTTP/1.1 200 ", &["Content-Length: 0"]);
    assert!(ok(&buf).reason.is_empty());
    let buf = res("HTTP/1.1 200 Tr\u{e8}s bien", &["Content-Length: 0"]);
    assert_eq!(ok(&buf).reason.get(&buf), "Tr\u{e8}s bien".as_bytes());
}

#[test]
fn incomplete_and_too_large() {
    let full = ok200(&["Content-Length: 0"]);
    for cut in 0..full.len() {
        assert_eq!(
            parse_for(&full[..cut], Method::Get)
                .unwrap()
                .map(|h| h.head_len),
            None,
            "cut {cut}"
        );
    }
    let mut long = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
    long.resize(MAX_HEAD, b'x');
    assert_eq!(
        parse_for(&long, Method::Get).unwrap_err(),
        ResponseError::HeadTooLarge
    );
    let filler = format!("X: {}", "y".repeat(MAX_HEAD));
    assert_eq!(
        parse_for(&ok200(&[&filler]), Method::Get).unwrap_err(),
        ResponseError::HeadTooLarge
    );
    let many = ok200(&vec!["X: y"; MAX_HEADERS + 1]);
    assert_eq!(
        parse_response(&many, 4096, &mut Vec::new(), Method::Get).unwrap_err(),
        ResponseError::HeadTooLarge
    );
}

#[test]
fn later_minor_versions_read_as_1_1() {
    for line in ["HTTP/1.2 200 OK", "HTTP/1.9 200 Fine"] {
        let head = ok(&res(line, &["Content-Length: 3", "X-A: b"]));
        assert_eq!(head.version, Version::Http11, "{line}");
        assert_eq!(head.body, ResponseBody::Length(3));
        assert!(head.keep_alive);
    }
    // Offsets hold for the buffer as sent.
    let buf = res("HTTP/1.5 404 Not Here", &["X-A: b"]);
    let mut headers = Vec::new();
    let head = parse_response(&buf, 4096, &mut headers, Method::Get)
        .unwrap()
        .unwrap();
    assert_eq!(head.reason.get(&buf), b"Not Here");
    assert_eq!(headers[0].value.get(&buf), b"b");
    malformed(&res("HTTP/2.0 200 OK", &[]));
    malformed(&res("HTTP/1.10 200 OK", &[]));
}

#[test]
fn syntax_faults() {
    malformed(b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n");
    malformed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n");
    malformed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n");
    malformed(&ok200(&["Content-Length: 0", " folded"]));
    malformed(&ok200(&["Content-Length : 0"]));
    malformed(&ok200(&["X: a\0b"]));
    malformed(&ok200(&["X: a\x1bb"]));
    malformed(&res("HTTP/1.1 200 O\x01K", &[]));
    for line in [
        "HTTP/2 200 OK",
        "HTTP/1.1 20 OK",
        "HTTP/1.1 2000 OK",
        "HTTP/1.1  200 OK",
        "http/1.1 200 OK",
        "HTTP/1.1 OK",
    ] {
        malformed(&res(line, &["Content-Length: 0"]));
    }
    assert_eq!(
        malformed(&res("HTTP/1.1 099 Odd", &[])),
        "status code out of range"
    );
    assert_eq!(
        malformed(&res("HTTP/1.1 600 Odd", &[])),
        "status code out of range"
    );
}

#[test]
fn framing_faults() {
    assert_eq!(
        malformed(&ok200(&["Content-Length: 3", "Transfer-Encoding: chunked"])),
        "both Content-Length and Transfer-Encoding"
    );
    assert_eq!(
        malformed(&ok200(&["Content-Length: 3", "Content-Length: 4"])),
        "differing Content-Length values"
    );
    assert_eq!(
        malformed(&ok200(&["Content-Length: -3"])),
        "invalid Content-Length"
    );
    assert_eq!(
        malformed(&ok200(&["Content-Length: 3 4"])),
        "invalid Content-Length"
    );
    assert_eq!(
        malformed(&ok200(&["Transfer-Encoding: chunked, chunked"])),
        "chunked applied more than once"
    );
    assert_eq!(
        malformed(&res("HTTP/1.0 200 OK", &["Transfer-Encoding: chunked"])),
        "Transfer-Encoding in an HTTP/1.0 response"
    );
    assert_eq!(
        ok(&ok200(&["Content-Length: 3, 3"])).body,
        ResponseBody::Length(3)
    );
}

#[test]
fn bodies_that_cannot_exist() {
    for status in [
        "100 Continue",
        "103 Early Hints",
        "204 No Content",
        "304 Not Modified",
    ] {
        let head = ok(&res(&format!("HTTP/1.1 {status}"), &["Content-Length: 10"]));
        assert_eq!(head.body, ResponseBody::None, "{status}");
    }
    let head = ok_for(&ok200(&["Content-Length: 10"]), Method::Head);
    assert_eq!(head.body, ResponseBody::None);
    assert!(head.keep_alive);
    let head = ok_for(&ok200(&["Transfer-Encoding: chunked"]), Method::Head);
    assert_eq!(head.body, ResponseBody::None);
    assert_eq!(
        ok(&res("HTTP/1.1 103 Early Hints", &["Link: </a>"])).status,
        103
    );
}

#[test]
fn unsupported_upgrades_and_tunnels() {
    // A 101 ends the HTTP exchange; whether it names its protocol is for the caller, which
    // alone knows whether it asked for one.
    let switched = ok(&res(
        "HTTP/1.1 101 Switching Protocols",
        &["Upgrade: websocket", "Connection: Upgrade"],
    ));
    assert_eq!((switched.status, switched.upgrade), (101, true));
    assert_eq!(switched.body, ResponseBody::None);
    assert!(!switched.keep_alive);
    let unnamed = ok(&res(
        "HTTP/1.1 101 Switching Protocols",
        &["Connection: upgrade"],
    ));
    assert!(!unnamed.upgrade);
    assert!(
        !ok(&res(
            "HTTP/1.1 101 Switching Protocols",
            &["Upgrade: websocket"]
        ))
        .upgrade
    );
    // Only WebSocket is ever offered upstream; a switch to anything else is not relayed.
    for other in [
        "Upgrade: h2c",
        "Upgrade: websocket, h2c",
        "Upgrade: TLS/1.2",
    ] {
        let head = ok(&res(
            "HTTP/1.1 101 Switching Protocols",
            &[other, "Connection: upgrade"],
        ));
        assert!(!head.upgrade, "{other}");
    }
    let tunnel = parse_for(&ok200(&[]), Method::Connect);
    assert_eq!(
        tunnel.unwrap_err(),
        ResponseError::Malformed("unexpected 2xx to CONNECT")
    );
    assert_eq!(
        ok_for(
            &res("HTTP/1.1 403 Forbidden", &["Content-Length: 0"]),
            Method::Connect
        )
        .status,
        403
    );
}

#[test]
fn transfer_encoding_framing() {
    let head = ok(&ok200(&["Transfer-Encoding: chunked"]));
    assert_eq!(head.body, ResponseBody::Chunked);
    assert_eq!(head.codings, TransferCodings::None);
    assert!(head.keep_alive);
    let head = ok(&ok200(&["Transfer-Encoding: gzip, chunked"]));
    assert_eq!(head.body, ResponseBody::Chunked);
    assert_eq!(head.codings, TransferCodings::Labelled);
    let head = ok(&ok200(&["Transfer-Encoding: gzip"]));
    assert_eq!(head.body, ResponseBody::UntilClose);
    assert_eq!(head.codings, TransferCodings::Labelled);
    assert!(!head.keep_alive);
    let head = ok(&ok200(&[
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: gzip",
    ]));
    assert_eq!(head.body, ResponseBody::UntilClose);
    assert_eq!(head.codings, TransferCodings::ChunkedInside);
    assert!(!head.keep_alive);
    assert_eq!(ok(&ok200(&[])).codings, TransferCodings::None);
}

#[test]
fn until_close_without_length() {
    let head = ok(&ok200(&[]));
    assert_eq!(head.body, ResponseBody::UntilClose);
    assert!(!head.keep_alive);
    let head = ok(&res("HTTP/1.0 200 OK", &["Connection: keep-alive"]));
    assert_eq!(head.body, ResponseBody::UntilClose);
    assert!(!head.keep_alive);
}

#[test]
fn keep_alive_by_version() {
    assert!(ok(&ok200(&["Content-Length: 0"])).keep_alive);
    assert!(!ok(&ok200(&["Content-Length: 0", "Connection: close"])).keep_alive);
    assert!(!ok(&res("HTTP/1.0 200 OK", &["Content-Length: 0"])).keep_alive);
    let head = ok(&res(
        "HTTP/1.0 200 OK",
        &["Content-Length: 0", "Connection: keep-alive"],
    ));
    assert_eq!(head.version, Version::Http10);
    assert!(head.keep_alive);
    assert!(!ok(&res("HTTP/1.0 204 No Content", &[])).keep_alive);
}

#[test]
fn connection_marks_named_fields() {
    let buf = ok200(&[
        "Content-Length: 0",
        "Connection: x-up",
        "X-Up: 1",
        "X-Keep: 2",
    ]);
    let mut headers = Vec::new();
    parse_response(&buf, MAX_HEAD, &mut headers, Method::Get)
        .unwrap()
        .unwrap();
    let kept: Vec<&[u8]> = headers
        .iter()
        .filter(|h| !h.strip_when_forwarding())
        .map(|h| h.name.get(&buf))
        .collect();
    assert_eq!(kept, [&b"X-Keep"[..]]);
}

#[test]
fn leading_empty_lines() {
    let buf = [b"\r\n", &ok200(&["Content-Length: 0"])[..]].concat();
    assert_eq!(ok(&buf).head_len, buf.len());
    assert_eq!(
        ResponseError::HeadTooLarge.reason(),
        "response head too large"
    );
}

#[test]
fn mutated_heads_never_panic_and_prefixes_agree() {
    let mut state = 0x853c_49e6_748f_ea9bu64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let seed = res(
        "HTTP/1.1 200 OK",
        &["Content-Length: 5", "Connection: keep-alive, x", "X: y"],
    );
    let alphabet = b"\r\n \t:,;0aZ\x00\x7f\xe9";
    for _ in 0..500 {
        let mut message = seed.clone();
        for _ in 0..(1 + next() % 3) {
            let at = (next() % message.len() as u64) as usize;
            message[at] = alphabet[(next() % alphabet.len() as u64) as usize];
        }
        let summary = |buf: &[u8]| {
            parse_for(buf, Method::Get).map(|h| h.map(|h| (h.head_len, h.status, h.body)))
        };
        let whole = summary(&message);
        for cut in 0..message.len() {
            match summary(&message[..cut]) {
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
