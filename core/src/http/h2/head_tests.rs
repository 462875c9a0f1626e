use super::*;
use crate::http::h1::{parse_request, HeaderKind};

const LIMITS: RequestLimits = RequestLimits {
    max_request_line: 8192,
    max_head: 16 * 1024,
};

fn parts(method: &str, uri: &str, fields: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (n, v) in fields {
        b = b.header(*n, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn build(
    p: &http::request::Parts,
    end_stream: bool,
) -> (Result<RequestHead, RequestError>, Vec<u8>, Vec<HeaderRef>) {
    let mut buf = Vec::new();
    let mut headers = Vec::new();
    let head = request_head(p, end_stream, &mut buf, &mut headers, &LIMITS);
    (head, buf, headers)
}

fn field<'a>(buf: &'a [u8], headers: &[HeaderRef], name: &str) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|h| h.name.get(buf) == name.as_bytes())
        .map(|h| h.value.get(buf))
        .collect()
}

#[test]
fn the_head_is_what_the_http1_parser_reads_from_the_same_bytes() {
    let cases = [
        parts(
            "GET",
            "https://example.com/a/b?x=1",
            &[("accept", "*/*"), ("x-forwarded-for", "10.0.0.1")],
        ),
        parts(
            "POST",
            "http://api.test:8080/v1",
            &[("content-length", "5"), ("expect", "100-continue")],
        ),
        parts("OPTIONS", "*", &[("host", "h.test")]),
        parts(
            "PUT",
            "https://a.test/u",
            &[("x_forwarded_for", "1.2.3.4"), ("via", "1.1 other")],
        ),
    ];
    for p in &cases {
        let (h2, buf, h2_fields) = build(p, true);
        let h2 = h2.unwrap();
        let mut h1_fields = Vec::new();
        let h1 = parse_request(&buf, &LIMITS, &mut h1_fields)
            .unwrap()
            .expect("a whole head");
        assert_eq!(h2.head_len, h1.head_len);
        assert_eq!(h2.method, h1.method);
        assert_eq!(h2.method_span, h1.method_span);
        assert_eq!(h2.path, h1.path);
        assert_eq!(h2.path_len_without_query, h1.path_len_without_query);
        assert_eq!(h2.host, h1.host);
        assert_eq!(h2.expect_continue, h1.expect_continue);
        assert_eq!(h2_fields.len(), h1_fields.len());
        for (a, b) in h2_fields.iter().zip(&h1_fields) {
            assert_eq!((a.name, a.value, a.kind), (b.name, b.value, b.kind));
        }
    }
}

#[test]
fn authority_becomes_host_and_wins_over_a_host_field() {
    let p = parts(
        "GET",
        "https://routed.test/",
        &[("host", "other.test"), ("accept", "x")],
    );
    let (head, buf, headers) = build(&p, true);
    let head = head.unwrap();
    assert_eq!(head.host.unwrap().get(&buf), b"routed.test");
    assert_eq!(field(&buf, &headers, "host"), vec![&b"routed.test"[..]]);
    assert_eq!(head.body, BodyKind::None);
    assert!(head.keep_alive);
}

#[test]
fn a_host_field_serves_when_there_is_no_authority() {
    let (head, buf, _) = build(&parts("GET", "/p", &[("host", "h.test:81")]), true);
    assert_eq!(head.unwrap().host.unwrap().get(&buf), b"h.test:81");
    let (head, _, _) = build(&parts("GET", "/p", &[]), true);
    assert_eq!(head.unwrap_err(), BadRequest("missing Host"));
    let two = parts("GET", "/p", &[("host", "a.test"), ("host", "b.test")]);
    assert_eq!(
        build(&two, true).0.unwrap_err(),
        BadRequest("more than one Host")
    );
    let bad = parts("GET", "/p", &[("host", "a b")]);
    assert_eq!(build(&bad, true).0.unwrap_err(), BadRequest("invalid Host"));
}

#[test]
fn cookie_crumbs_are_joined() {
    let p = parts(
        "GET",
        "https://c.test/",
        &[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")],
    );
    let (head, buf, headers) = build(&p, true);
    head.unwrap();
    assert_eq!(field(&buf, &headers, "cookie"), vec![&b"a=1; b=2; c=3"[..]]);
    let one = parts("GET", "https://c.test/", &[("cookie", "a=1")]);
    let (_, buf, headers) = build(&one, true);
    assert_eq!(field(&buf, &headers, "cookie"), vec![&b"a=1"[..]]);
}

#[test]
fn the_body_is_framed_by_content_length_else_by_the_stream() {
    let cl = parts("POST", "https://b.test/", &[("content-length", "12")]);
    assert_eq!(build(&cl, false).0.unwrap().body, BodyKind::Length(12));
    let open = parts("POST", "https://b.test/", &[]);
    assert_eq!(build(&open, false).0.unwrap().body, BodyKind::Chunked);
    assert_eq!(build(&open, true).0.unwrap().body, BodyKind::None);
    let differing = parts(
        "POST",
        "https://b.test/",
        &[("content-length", "1"), ("content-length", "2")],
    );
    assert_eq!(
        build(&differing, false).0.unwrap_err(),
        BadRequest("differing Content-Length values")
    );
}

#[test]
fn field_rules_are_the_http1_rules() {
    let framing = parts("POST", "https://b.test/", &[("content_length", "3")]);
    assert!(matches!(build(&framing, false).0, Err(BadRequest(_))));
    let forwarding = parts("GET", "https://b.test/", &[("x_real_ip", "1.2.3.4")]);
    let (head, _, headers) = build(&forwarding, true);
    head.unwrap();
    assert!(headers
        .iter()
        .any(|h| h.kind == HeaderKind::ForwardingLookalike));
    let te = parts("GET", "https://b.test/", &[("te", "trailers")]);
    let (head, buf, headers) = build(&te, true);
    head.unwrap();
    assert!(field(&buf, &headers, "te").is_empty());
    let padded = parts("GET", "https://b.test/", &[("x-a", " v \t")]);
    let (_, buf, headers) = build(&padded, true);
    assert_eq!(field(&buf, &headers, "x-a"), vec![&b"v"[..]]);
}

#[test]
fn targets_and_methods_the_gateway_refuses() {
    let star = parts("GET", "*", &[("host", "h.test")]);
    assert!(build(&star, true).0.is_err());
    let connect = parts("CONNECT", "h.test:443", &[]);
    assert!(build(&connect, true).0.is_err());
}

#[test]
fn limits_hold() {
    let long = format!("https://l.test/{}", "a".repeat(9000));
    assert_eq!(
        build(&parts("GET", &long, &[]), true).0.unwrap_err(),
        RequestError::UriTooLong
    );
    let many: Vec<(String, String)> = (0..MAX_HEADERS)
        .map(|i| (format!("x-f{i}"), "v".into()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (&n[..], &v[..])).collect();
    assert_eq!(
        build(&parts("GET", "https://l.test/", &many), true)
            .0
            .unwrap_err(),
        RequestError::HeadTooLarge
    );
    let big = "v".repeat(9000);
    let two_big = parts(
        "GET",
        "https://l.test/",
        &[("x-a", &big[..]), ("x-b", &big[..])],
    );
    assert_eq!(
        build(&two_big, true).0.unwrap_err(),
        RequestError::HeadTooLarge
    );
}
