//! HTTP/2 towards upstreams (`protocol = "h2"`): HTTP/1.1 clients reach an h2 service, and
//! HTTP/2 clients too, over pooled connections that multiplex streams within the service's
//! MAX_CONCURRENT_STREAMS and open more connections only when those are full.

use std::io::{Read, Write};
use std::time::Duration;

use bytes::Bytes;
use ringway_tests::h2upstream::{H2Options, H2Reply, H2Upstream};
use ringway_tests::tls::upstream_tls_toml;
use ringway_tests::{
    assert_gateway_error, both_drivers, get, h2client, proxy_toml, Client, Gateway, Pki,
    TlsUpstream,
};

const LIMIT: Duration = Duration::from_secs(20);

/// A service answering `METHOD PATH BODY-LENGTH`.
fn echo() -> H2Upstream {
    H2Upstream::start(|req| H2Reply::ok(&format!("{} {} {}", req.method, req.path, req.body.len())))
}

both_drivers!(http_1_1_client_reaches_an_h2_upstream, |driver| {
    let up = echo();
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), "protocol = \"h2\""));
    let mut client = Client::connect(gw.addr());
    let resp = client.request(&get("api.test", "/a?x=1"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "GET /a?x=1 0");
    // A body with a length, then one chunked: both arrive whole as DATA.
    let post = "POST /p HTTP/1.1\r\nhost: api.test\r\ncontent-length: 5\r\n\r\nhello";
    assert_eq!(client.request(post).text(), "POST /p 5");
    let chunked = "POST /c HTTP/1.1\r\nhost: api.test\r\ntransfer-encoding: chunked\r\n\r\n\
                    3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n";
    assert_eq!(client.request(chunked).text(), "POST /c 7");

    let got = up.received();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].scheme, "http");
    assert_eq!(got[0].authority, "api.test", "Host becomes :authority");
    assert_eq!(got[2].body, b"abcdefg");
    for req in &got {
        for name in ["connection", "keep-alive", "transfer-encoding", "host"] {
            assert!(
                !req.headers.contains_key(name),
                "{name} must not reach an h2 upstream: {:?}",
                req.headers
            );
        }
        assert!(req.headers.contains_key("x-forwarded-for"));
    }
    // Three requests, one connection.
    assert_eq!(up.connections(), 1);
});

both_drivers!(upstream_trailers_reach_an_http_1_1_client, |driver| {
    let up = H2Upstream::start(|_| H2Reply {
        status: 200,
        body: b"hello".to_vec(),
        trailers: vec![("x-checksum", "abc".into())],
        ..H2Reply::default()
    });
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), "protocol = \"h2\""));
    // Raw, to see the chunked trailer section as the client receives it.
    let mut tcp = std::net::TcpStream::connect(gw.addr()).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: t\r\nte: trailers\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).unwrap();
    let raw = raw.to_lowercase();
    assert!(raw.starts_with("http/1.1 200"), "{raw}");
    assert!(raw.contains("transfer-encoding: chunked"), "{raw}");
    assert!(
        raw.ends_with("5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n"),
        "{raw}"
    );
});

both_drivers!(streams_multiplex_within_the_upstreams_limit, |driver| {
    // Four streams per connection, each answer held back: 20 requests at once need five
    // connections, and never a fifth stream on one.
    let up = H2Upstream::start_with(
        H2Options {
            max_concurrent_streams: Some(4),
            ..H2Options::default()
        },
        |_| H2Reply {
            delay: Duration::from_millis(300),
            ..H2Reply::ok("slow")
        },
    );
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), "protocol = \"h2\""));
    let addr = gw.addr();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.request(&get("t", &format!("/{i}"))).status
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), 200);
    }
    assert_eq!(up.requests(), 20);
    assert!(
        up.max_per_connection() <= 4,
        "{} streams on one connection",
        up.max_per_connection()
    );
    assert!(
        (2..=8).contains(&up.connections()),
        "{} connections for 20 streams at 4 per connection",
        up.connections()
    );
    // Later requests reuse what is open.
    let before = up.connections();
    for i in 0..10 {
        let mut c = Client::connect(addr);
        assert_eq!(c.request(&get("t", &format!("/again/{i}"))).status, 200);
    }
    assert_eq!(up.connections(), before);
});

both_drivers!(h2_client_to_h2_upstream_with_trailers_both_ways, |driver| {
    let up = H2Upstream::start(|req| H2Reply {
        status: 200,
        body: req.body.clone(),
        trailers: vec![("grpc-status", "0".into()), ("x-sum", "7".into())],
        ..H2Reply::default()
    });
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), "protocol = \"h2\""));
    let (body, trailers) = h2client::block_on(LIMIT, async {
        let mut h2 = h2client::connect(gw.addr()).await;
        let (response, mut stream) = h2
            .send
            .send_request(h2client::request("POST", "/echo"), false)
            .unwrap();
        stream
            .send_data(Bytes::from_static(b"ping"), false)
            .unwrap();
        let mut t = http::HeaderMap::new();
        t.insert("x-request-trailer", "1".parse().unwrap());
        stream.send_trailers(t).unwrap();
        let response = response.await.expect("a response");
        assert_eq!(response.status(), 200);
        h2client::read_body(response.into_body()).await.unwrap()
    });
    assert_eq!(body, b"ping");
    let trailers = trailers.expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-sum"], "7");
    let got = up.received();
    assert_eq!(got[0].authority, "h2.test");
    assert_eq!(
        got[0].trailers.as_ref().expect("request trailers")["x-request-trailer"],
        "1"
    );
});

both_drivers!(
    an_idle_upstream_connection_closes_and_is_replaced,
    |driver| {
        let up = echo();
        let gw = Gateway::start(
            driver,
            &proxy_toml(
                up.addr(),
                "protocol = \"h2\"\npool_idle_timeout = \"200ms\"",
            ),
        );
        let mut client = Client::connect(gw.addr());
        assert_eq!(client.request(&get("t", "/1")).status, 200);
        up.wait_until_closed(LIMIT);
        // The closed connection is not lent again: the next request opens another.
        assert_eq!(client.request(&get("t", "/2")).text(), "GET /2 0");
        assert_eq!(up.connections(), 2);
    }
);

both_drivers!(tls_upstreams_are_reached_by_alpn_h2, |driver| {
    let pki = Pki::new("h2-upstream");
    let cert = pki.issue_server(&["backend.internal"]);
    let tls = TlsUpstream::builder(&cert).alpn(&["h2"]).server_config();
    let up = H2Upstream::start_with(
        H2Options {
            tls: Some(std::sync::Arc::new(tls)),
            ..H2Options::default()
        },
        |req| H2Reply::ok(&format!("{} {}", req.scheme, req.path)),
    );
    let upstream = format!(
        "protocol = \"h2\"\n{}",
        upstream_tls_toml(Some(pki.ca_file()), "sni = \"backend.internal\"")
    );
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), &upstream));
    let mut client = Client::connect(gw.addr());
    for i in 0..3 {
        let resp = client.request(&get("api.test", &format!("/s{i}")));
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.text(), format!("https /s{i}"));
    }
    assert_eq!(
        up.connections(),
        1,
        "one TLS connection carries every stream"
    );
});

both_drivers!(a_tls_upstream_without_h2_is_a_502, |driver| {
    // The endpoint speaks TLS but not HTTP/2: the gateway must not fall back to HTTP/1.1
    // on a connection the config says is h2.
    let pki = Pki::new("h1-only");
    let up = TlsUpstream::builder(&pki.issue_server(&["backend.internal"]))
        .alpn(&["http/1.1"])
        .ok("h1");
    let upstream = format!(
        "protocol = \"h2\"\n{}",
        upstream_tls_toml(Some(pki.ca_file()), "sni = \"backend.internal\"")
    );
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), &upstream));
    let resp = Client::connect(gw.addr()).request(&get("api.test", "/"));
    assert_gateway_error(&resp, 502);
    assert_eq!(up.requests(), 0);
});

both_drivers!(a_silent_h2_upstream_costs_connect_timeout, |driver| {
    // The endpoint accepts TCP and then says nothing: no SETTINGS, no PING answer (the
    // kernel completes the handshake into the listener's backlog; nothing ever reads). Opening
    // the connection is bounded by connect_timeout like a TCP connect, not by request_timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let upstream = "protocol = \"h2\"\nconnect_timeout = \"300ms\"\nrequest_timeout = \"30s\"";
    let gw = Gateway::start(driver, &proxy_toml(addr, upstream));
    let started = std::time::Instant::now();
    let resp = Client::connect(gw.addr()).request(&get("api.test", "/"));
    let took = started.elapsed();
    assert_gateway_error(&resp, 504);
    assert!(
        took < Duration::from_secs(10),
        "answered after {took:?}: the handshake waited for request_timeout"
    );
    drop(silent);
});
