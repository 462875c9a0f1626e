//! Upstream failures become short gateway errors: 502 (refused, reset, closed, bad framing),
//! 503 (no endpoint), 504 (connect timeout, request timeout); never internals.

use ringway_tests::{
    assert_gateway_error, both_drivers, free_port, get, listener_toml, proxy_toml, route_toml,
    upstream_toml, Blackhole, Client, Gateway, Received, Reply, Upstream,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One request through a gateway whose upstream `backend` is at `addr`.
fn one_request(
    driver: ringway_tests::Driver,
    addr: SocketAddr,
    upstream_extra: &str,
) -> (ringway_tests::Response, Duration) {
    let gw = Gateway::start(driver, &proxy_toml(addr, upstream_extra));
    let mut client = Client::connect(gw.addr());
    let start = Instant::now();
    let resp = client.request(&get("h", "/"));
    let took = start.elapsed();
    // Unless the gateway said it closes, the client connection survives an upstream failure.
    if resp.header("connection") != Some("close") {
        assert_eq!(client.request(&get("h", "/")).status, resp.status);
    }
    (resp, took)
}

both_drivers!(refused_gets_502, |driver| {
    let nothing: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let (resp, _) = one_request(driver, nothing, "");
    assert_gateway_error(&resp, 502);
});

both_drivers!(reset_gets_502, |driver| {
    let up = Upstream::start(|_: &Received| Reply::Reset);
    let (resp, _) = one_request(driver, up.addr(), "");
    assert_gateway_error(&resp, 502);
});

both_drivers!(close_without_answer_gets_502, |driver| {
    let up = Upstream::start(|_: &Received| Reply::Close);
    let (resp, _) = one_request(driver, up.addr(), "");
    assert_gateway_error(&resp, 502);
});

both_drivers!(request_timeout_gets_504, |driver| {
    let up = Upstream::start(|_: &Received| {
        Reply::Delay(Duration::from_secs(2), Box::new(Reply::ok("late")))
    });
    let (resp, took) = one_request(driver, up.addr(), "request_timeout = \"300ms\"");
    assert_gateway_error(&resp, 504);
    assert!(
        took >= Duration::from_millis(250),
        "504 after {took:?}, before the timeout"
    );
    assert!(took < Duration::from_millis(1500), "504 after {took:?}");
});

both_drivers!(upstream_idle_timeout_before_the_head_gets_504, |driver| {
    let up = Upstream::start(|_: &Received| {
        Reply::Delay(Duration::from_secs(2), Box::new(Reply::ok("late")))
    });
    // The request timeout is long; the upstream's silence trips the idle timeout first.
    let extra = "request_timeout = \"10s\"\nidle_timeout = \"300ms\"";
    let (resp, took) = one_request(driver, up.addr(), extra);
    assert_gateway_error(&resp, 504);
    assert!(
        took >= Duration::from_millis(250),
        "504 after {took:?}, before the timeout"
    );
    assert!(took < Duration::from_millis(1500), "504 after {took:?}");
});

both_drivers!(connect_timeout_gets_504, |driver| {
    let hole = Blackhole::start();
    let (resp, took) = one_request(driver, hole.addr(), "connect_timeout = \"300ms\"");
    assert_gateway_error(&resp, 504);
    assert!(took < Duration::from_millis(1500), "504 after {took:?}");
});

both_drivers!(no_endpoints_gets_503, |driver| {
    let toml = listener_toml("") + &upstream_toml("empty", &[], "") + &route_toml("all", "empty");
    let gw = Gateway::start(driver, &toml);
    let mut client = Client::connect(gw.addr());
    assert_gateway_error(&client.request(&get("h", "/")), 503);
});

/// Upstream responses whose framing a proxy must not trust.
const BAD_FRAMING: [(&str, &[u8]); 4] = [
    (
        "/cl-and-te",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ),
    ("/differing-cl", b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!"),
    ("/invalid-cl", b"HTTP/1.1 200 OK\r\ncontent-length: 5x\r\n\r\nhello"),
    ("/negative-cl", b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\nhello"),
];

both_drivers!(
    bad_upstream_framing_gets_502_and_a_fresh_connection,
    |driver| {
        let up = Upstream::start(|req: &Received| {
            match BAD_FRAMING.iter().find(|(path, _)| *path == req.target) {
                // Kept open by the upstream: only the gateway can decide not to reuse it.
                Some((_, bytes)) => Reply::Raw(bytes.to_vec()),
                None => Reply::ok("good"),
            }
        });
        let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
        for (path, _) in BAD_FRAMING {
            let mut client = Client::connect(gw.addr());
            let before = up.connections();
            assert_gateway_error(&client.request(&get("h", path)), 502);
            let bad_conn = up
                .received()
                .last()
                .expect("the bad request reached the upstream")
                .connection;
            let mut client = Client::connect(gw.addr());
            assert_eq!(
                client.request(&get("h", "/after")).text(),
                "good",
                "after {path}"
            );
            let good_conn = up.received().last().unwrap().connection;
            assert_ne!(
                good_conn, bad_conn,
                "{path}: the bad upstream connection was reused"
            );
            assert!(
                up.connections() > before,
                "{path}: no fresh upstream connection"
            );
        }
    }
);

both_drivers!(
    upstream_failing_mid_body_closes_the_client_connection,
    |driver| {
        let up = Upstream::start(|req: &Received| match req.target.as_str() {
            "/truncated" => Reply::RawThenClose(
                b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b".to_vec(),
            ),
            "/bad-chunk" => Reply::Raw(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n".to_vec(),
            ),
            _ => Reply::ok("good"),
        });
        let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
        for path in ["/truncated", "/bad-chunk"] {
            let mut client = Client::connect(gw.addr());
            client.send(get("h", path).as_bytes());
            // Either a 502 (the head was held back) or a response cut short; never a complete 200.
            match client.try_read_response_to("GET") {
                Ok(resp) => {
                    assert_gateway_error(&resp, 502);
                }
                Err(e) => assert!(
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::UnexpectedEof
                            | std::io::ErrorKind::InvalidData
                            | std::io::ErrorKind::ConnectionReset
                    ),
                    "{path}: {e}"
                ),
            }
            let mut next = Client::connect(gw.addr());
            assert_eq!(
                next.request(&get("h", "/after")).text(),
                "good",
                "after {path}"
            );
        }
    }
);
