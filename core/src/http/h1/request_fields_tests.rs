//! Request-target forms and the fields that decide routing, framing and persistence.

use super::tests::{bad, get, ok, req, LIMITS};
use super::*;

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
        assert_eq!(
            bad(&req(&format!("GET {target} HTTP/1.1"), &["Host: a"])),
            "invalid request-target form"
        );
    }
}

#[test]
fn absolute_form_routes_on_its_authority() {
    let buf = req(
        "GET HTTP://API.example.com:8080/a/b?c=d HTTP/1.1",
        &["Host: api.example.com:8080"],
    );
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
    assert_eq!(
        bad(&req("GET http://u:p@a/ HTTP/1.1", &["Host: a"])),
        "userinfo in request-target"
    );
    assert_eq!(
        bad(&req("GET http://a/ HTTP/1.1", &["Host: b"])),
        "Host differs from the request-target authority"
    );
    bad(&req("GET http:///x HTTP/1.1", &["Host: "]));
    bad(&req("GET ftp://a/ HTTP/1.1", &["Host: a"]));
    bad(&req("GET http://a?q HTTP/1.1", &["Host: a"]));
    bad(&req("GET http://a:x/ HTTP/1.1", &["Host: a:x"]));
}

#[test]
fn connect_needs_authority_form() {
    let buf = req(
        "CONNECT example.com:443 HTTP/1.1",
        &["Host: example.com:443"],
    );
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
    assert_eq!(
        bad(&req("GET /a#frag HTTP/1.1", &["Host: a"])),
        "fragment in request-target"
    );
    assert_eq!(
        bad(&req("GET /caf\u{e9} HTTP/1.1", &["Host: a"])),
        "invalid character in request-target"
    );
    bad(b"GET /a\x0bb HTTP/1.1\r\nHost: a\r\n\r\n");
    bad(b"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(
        ok(&req("GET /a%20b?x=|{} HTTP/1.1", &["Host: a"])).path_len_without_query,
        6
    );
}

#[test]
fn host_rules() {
    assert_eq!(bad(&get(&[])), "missing Host");
    assert_eq!(bad(&get(&["Host: a", "Host: a"])), "more than one Host");
    assert_eq!(
        bad(&req("GET / HTTP/1.0", &["Host: a", "host: b"])),
        "more than one Host"
    );
    assert_eq!(ok(&req("GET / HTTP/1.0", &[])).host, None);
    let buf = get(&["Host:"]);
    assert_eq!(ok(&buf).host.unwrap().get(&buf), b"");
    let buf = get(&["Host: [::1]:8080"]);
    assert_eq!(ok(&buf).host.unwrap().get(&buf), b"[::1]:8080");
    for host in [
        "a b",
        "a/b",
        "a@b",
        "a:",
        "a:99999",
        "[::1",
        "a,b c",
        "\u{e9}.com",
    ] {
        assert_eq!(
            bad(&get(&[&format!("Host: {host}")])),
            "invalid Host",
            "{host}"
        );
    }
}

#[test]
fn content_length_rules() {
    assert_eq!(
        ok(&req("POST / HTTP/1.1", &["Host: a", "Content-Length: 0"])).body,
        BodyKind::Length(0)
    );
    assert_eq!(
        ok(&req("POST / HTTP/1.1", &["Host: a", "Content-Length: 12"])).body,
        BodyKind::Length(12)
    );
    assert_eq!(
        ok(&get(&[
            "Host: a",
            "Content-Length: 5, 5",
            "Content-Length: 5"
        ]))
        .body,
        BodyKind::Length(5)
    );
    assert_eq!(
        bad(&get(&["Host: a", "Content-Length: 5", "Content-Length: 6"])),
        "differing Content-Length values"
    );
    assert_eq!(
        bad(&get(&["Host: a", "Content-Length: 5, 6"])),
        "differing Content-Length values"
    );
    for value in ["+1", "-1", "1 2", "", "0x10", "1e3", "12345678901234567890"] {
        assert_eq!(
            bad(&get(&["Host: a", &format!("Content-Length: {value}")])),
            "invalid Content-Length",
            "{value}"
        );
    }
    assert_eq!(
        ok(&get(&["Host: a", "Content-Length: 1234567890123456789"])).body,
        BodyKind::Length(1_234_567_890_123_456_789)
    );
}

#[test]
fn transfer_encoding_rules() {
    let chunked = ok(&req(
        "POST / HTTP/1.1",
        &["Host: a", "Transfer-Encoding: chunked"],
    ));
    assert_eq!(chunked.body, BodyKind::Chunked);
    assert_eq!(
        ok(&get(&["Host: a", "Transfer-Encoding: ChUnKeD"])).body,
        BodyKind::Chunked
    );
    let both = ["Host: a", "Content-Length: 5", "Transfer-Encoding: chunked"];
    assert_eq!(
        bad(&get(&both)),
        "both Content-Length and Transfer-Encoding"
    );
    let http10 = req("POST / HTTP/1.0", &["Transfer-Encoding: chunked"]);
    assert_eq!(bad(&http10), "Transfer-Encoding in an HTTP/1.0 request");
    assert_eq!(
        bad(&get(&["Host: a", "Transfer-Encoding: gzip"])),
        "final transfer-coding is not chunked"
    );
    assert_eq!(
        bad(&get(&["Host: a", "Transfer-Encoding: chunked, gzip"])),
        "final transfer-coding is not chunked"
    );
    assert_eq!(
        bad(&get(&[
            "Host: a",
            "Transfer-Encoding: chunked",
            "Transfer-Encoding: identity"
        ])),
        "final transfer-coding is not chunked"
    );
    assert_eq!(
        bad(&get(&["Host: a", "Transfer-Encoding: chunked, chunked"])),
        "chunked applied more than once"
    );
    assert_eq!(
        bad(&get(&[
            "Host: a",
            "Transfer-Encoding: chunked",
            "Transfer-Encoding: chunked"
        ])),
        "chunked applied more than once"
    );
    assert_eq!(
        bad(&get(&["Host: a", "Transfer-Encoding: gzip, chunked"])),
        "unsupported transfer-coding"
    );
    assert_eq!(
        bad(&get(&["Host: a", "Transfer-Encoding: xchunked"])),
        "final transfer-coding is not chunked"
    );
    assert_eq!(
        bad(&get(&["Host: a", "Transfer-Encoding: chunked;q=1"])),
        "invalid Transfer-Encoding"
    );
    assert_eq!(
        bad(&get(&["Host: a", "Transfer-Encoding:"])),
        "invalid Transfer-Encoding"
    );
}

#[test]
fn framing_lookalike_names() {
    let reason = "field name resembles Content-Length or Transfer-Encoding";
    assert_eq!(bad(&get(&["Host: a", "Content_Length: 5"])), reason);
    assert_eq!(
        bad(&get(&["Host: a", "Transfer_Encoding: chunked"])),
        reason
    );
    assert_eq!(ok(&get(&["Host: a", "X_Custom: 1"])).body, BodyKind::None);
}

#[test]
fn keep_alive_by_version() {
    assert!(ok(&get(&["Host: a"])).keep_alive);
    assert!(!ok(&get(&["Host: a", "Connection: close"])).keep_alive);
    assert!(!ok(&get(&["Host: a", "Connection: keep-alive, Close"])).keep_alive);
    assert!(!ok(&req("GET / HTTP/1.0", &[])).keep_alive);
    assert!(ok(&req("GET / HTTP/1.0", &["Connection: Keep-Alive"])).keep_alive);
    assert!(
        !ok(&req(
            "GET / HTTP/1.0",
            &["Connection: keep-alive", "Connection: close"]
        ))
        .keep_alive
    );
}

#[test]
fn connection_marks_named_fields() {
    let buf = get(&[
        "Host: a",
        "Connection: x-hop, close",
        "X-Hop: 1",
        "X-Keep: 2",
        "x-hop: 3",
    ]);
    let mut headers = Vec::new();
    parse_request(&buf, &LIMITS, &mut headers).unwrap().unwrap();
    let stripped: Vec<&[u8]> = headers
        .iter()
        .filter(|h| h.strip_when_forwarding())
        .map(|h| h.name.get(&buf))
        .collect();
    assert_eq!(stripped, [&b"Connection"[..], b"X-Hop", b"x-hop"]);
    assert_eq!(
        bad(&get(&["Host: a", "Connection: a/b"])),
        "invalid Connection option"
    );
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
