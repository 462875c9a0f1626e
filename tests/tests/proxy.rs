//! Proxying through an upstream route: methods and bodies, keep-alive and pipelining, bodiless
//! responses, interim responses, forwarding headers and hop-by-hop removal.

use ringway_tests::{both_drivers, get, proxy_toml, Client, Gateway, Received, Reply, Upstream};
use std::time::Duration;

/// An upstream answering `METHOD TARGET BODY` to every request.
fn echo() -> Upstream {
    Upstream::start(|req: &Received| {
        let body = String::from_utf8_lossy(&req.body);
        Reply::ok(&format!("{} {} {body}", req.method, req.target))
    })
}

both_drivers!(get_and_post, |driver| {
    let up = echo();
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    let mut client = Client::connect(gw.addr());

    let resp = client.request(&get("example.com", "/a?x=1"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "GET /a?x=1 ");

    let post = "POST /submit HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(client.request(post).text(), "POST /submit hello");

    let chunked = "POST /c HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n\
                   3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    assert_eq!(client.request(chunked).text(), "POST /c abcde");

    let got = up.received();
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[0].header("host"),
        Some("example.com"),
        "Host passes unchanged"
    );
    assert_eq!(got[1].body_len, 5);
    assert_eq!(got[2].body, b"abcde");
});

both_drivers!(keep_alive_on_both_sides, |driver| {
    let up = Upstream::ok("k");
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    let mut client = Client::connect(gw.addr());
    for i in 0..50 {
        let resp = client.request(&get("h", &format!("/{i}")));
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, "k"),
            "request {i}"
        );
    }
    assert_eq!(up.requests(), 50);
    assert_eq!(
        up.connections(),
        1,
        "one pooled upstream connection serves all 50"
    );
});

both_drivers!(pipelined_requests_are_answered_in_order, |driver| {
    let up = echo();
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    let mut client = Client::connect(gw.addr());
    let all: String = (0..5).map(|i| get("h", &format!("/p{i}"))).collect();
    client.send(all.as_bytes());
    for i in 0..5 {
        let resp = client.read_response();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), format!("GET /p{i} "));
    }
    assert_eq!(up.requests(), 5);
});

both_drivers!(bodiless_responses, |driver| {
    let up = Upstream::start(|req: &Received| match req.target.as_str() {
        "/204" => Reply::status(204),
        "/304" => Reply::with_headers(304, &[("etag", "\"v1\"")], ""),
        _ => Reply::ok("hello"),
    });
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    let mut client = Client::connect(gw.addr());

    let head = client.request("HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some("5"),
        "HEAD keeps the length"
    );
    assert!(head.body.is_empty());

    let no_content = client.request(&get("h", "/204"));
    assert_eq!(no_content.status, 204);
    assert!(no_content.body.is_empty());
    assert_eq!(no_content.header("transfer-encoding"), None);

    let not_modified = client.request(&get("h", "/304"));
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("etag"), Some("\"v1\""));
    assert!(not_modified.body.is_empty());

    // No stray body bytes: the connection is still in step.
    assert_eq!(client.request(&get("h", "/x")).text(), "hello");
    assert!(!client.is_closed(Duration::from_millis(50)));
});

both_drivers!(upstream_interim_response_is_forwarded, |driver| {
    let up = Upstream::start(|_: &Received| {
        Reply::Seq(vec![
            Reply::Raw(
                b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n".into(),
            ),
            Reply::ok("final"),
        ])
    });
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    let mut client = Client::connect(gw.addr());
    let resp = client.request(&get("h", "/"));
    assert_eq!(resp.interim, vec![103]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "final");
    assert_eq!(client.request(&get("h", "/again")).text(), "final");
});

both_drivers!(expect_100_continue, |driver| {
    let up = echo();
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    let mut client = Client::connect(gw.addr());
    client
        .send(b"PUT /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    let (status, _) = client.read_head_only();
    assert_eq!(
        status, 100,
        "the gateway says 100 Continue before the body is sent"
    );
    client.send(b"data");
    let resp = client.read_response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "PUT /up data");
    let got = &up.received()[0];
    assert_eq!(got.header("expect"), None, "Expect is not forwarded");
});

both_drivers!(forwarding_headers, |driver| {
    let up = Upstream::ok("f");
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    let mut client = Client::connect(gw.addr());
    let client_ip = client.local_addr().ip().to_string();
    client.request(
        "GET /1 HTTP/1.1\r\nHost: api.example.com:8080\r\nX-Forwarded-For: 203.0.113.9\r\n\
         X-Forwarded-Proto: https\r\nX-Forwarded-Host: spoofed.example\r\nVia: 1.0 edge\r\n\
         X-Request-Id: abc-123\r\n\r\n",
    );
    client.request(&get("plain.example.com", "/2"));

    let got = up.received();
    let first = &got[0];
    // The client is no trusted proxy: what it claims is replaced (tests/client_address.rs
    // has the trusted side).
    assert_eq!(
        first.header_all("x-forwarded-for"),
        vec![client_ip.as_str()]
    );
    assert_eq!(first.header_all("x-forwarded-proto"), vec!["http"]);
    assert_eq!(
        first.header_all("x-forwarded-host"),
        vec!["api.example.com:8080"]
    );
    assert_eq!(first.header_all("via").join(", "), "1.0 edge, 1.1 ringway");
    assert_eq!(first.header_all("x-request-id"), vec!["abc-123"]);
    assert_eq!(first.header("host"), Some("api.example.com:8080"));

    let second = &got[1];
    assert_eq!(
        second.header_all("x-forwarded-for"),
        vec![client_ip.as_str()]
    );
    assert_eq!(second.header("x-forwarded-proto"), Some("http"));
    assert_eq!(second.header("x-forwarded-host"), Some("plain.example.com"));
    assert_eq!(second.header_all("via"), vec!["1.1 ringway"]);
    let id = second
        .header("x-request-id")
        .expect("a generated x-request-id");
    assert_eq!(id.len(), 32, "{id:?}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{id:?}"
    );
});

/// Hop-by-hop request headers, none of which may reach the upstream.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "x-custom",
];

both_drivers!(hop_by_hop_headers_are_removed_both_ways, |driver| {
    let up = Upstream::start(|_: &Received| {
        Reply::with_headers(
            200,
            &[
                ("connection", "keep-alive, x-up-private"),
                ("x-up-private", "1"),
                ("keep-alive", "timeout=5"),
                ("proxy-connection", "keep-alive"),
                ("upgrade", "h2c"),
                ("trailer", "x-sum"),
                ("x-kept", "yes"),
            ],
            "hop",
        )
    });
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    let mut client = Client::connect(gw.addr());
    let resp = client.request(
        "GET /h HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Custom\r\nX-Custom: secret\r\n\
         Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
         Trailer: x-sum\r\nUpgrade: websocket\r\nProxy-Authorization: Basic eDp5\r\n\
         X-End: kept\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "hop");
    assert_eq!(resp.header("x-kept"), Some("yes"));
    for name in [
        "x-up-private",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "trailer",
    ] {
        assert_eq!(resp.header(name), None, "{name} reached the client");
    }
    if let Some(connection) = resp.header("connection") {
        assert!(
            !connection.contains("x-up-private"),
            "connection: {connection}"
        );
    }

    let mut closing = Client::connect(gw.addr());
    let resp = closing.request("GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert_eq!(resp.status, 200);
    assert!(
        closing.is_closed(Duration::from_secs(5)),
        "Connection: close is honoured"
    );

    let got = up.received();
    assert_eq!(got.len(), 2);
    for req in &got {
        for name in HOP_BY_HOP {
            assert_eq!(
                req.header(name),
                None,
                "{name} reached the upstream ({})",
                req.target
            );
        }
    }
    assert_eq!(got[0].header("x-end"), Some("kept"));
});

both_drivers!(
    unframed_upstream_response_is_chunked_to_the_client,
    |driver| {
        let up = Upstream::start(|_: &Received| {
            Reply::RawThenClose(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nread until close".into(),
            )
        });
        let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
        let mut client = Client::connect(gw.addr());
        for _ in 0..2 {
            let resp = client.request(&get("h", "/"));
            assert_eq!(resp.status, 200);
            assert!(resp.chunked, "headers {:?}", resp.headers);
            assert_eq!(resp.text(), "read until close");
        }
        assert_eq!(up.connections(), 2);
    }
);

both_drivers!(
    pipelined_requests_with_bodies_keep_their_boundaries,
    |driver| {
        let up = echo();
        let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
        let mut client = Client::connect(gw.addr());
        let all = "POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\none\
               POST /2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n\
               GET /3 HTTP/1.1\r\nHost: h\r\n\r\n";
        client.send(all.as_bytes());
        for expected in ["POST /1 one", "POST /2 two", "GET /3 "] {
            assert_eq!(client.read_response().text(), expected);
        }
    }
);
