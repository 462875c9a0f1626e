//! The harness tested against itself: the client talks to the test upstream directly, so
//! both are known good before they judge the gateway.

use crate::{wait_for, Blackhole, Client, Reply, Upstream};
use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn echo_target() -> Upstream {
    Upstream::start(|req| Reply::ok(&format!("{} {}", req.method, req.target)))
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let up = echo_target();
    let mut client = Client::connect(up.addr());
    for i in 0..5 {
        let resp = client.request(&crate::get("h", &format!("/{i}")));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), format!("GET /{i}"));
    }
    assert_eq!(up.connections(), 1);
    assert_eq!(up.requests(), 5);
    assert!(up.received().iter().all(|r| r.connection == 0));
    drop(client);
    up.wait_until("the connection to close", Duration::from_secs(5), |u| {
        u.open_connections() == 0
    });
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let up = echo_target();
    let mut client = Client::connect(up.addr());
    let all: String = (0..3).map(|i| crate::get("h", &format!("/{i}"))).collect();
    client.send(all.as_bytes());
    for i in 0..3 {
        assert_eq!(client.read_response().text(), format!("GET /{i}"));
    }
}

#[test]
fn request_bodies_are_read_and_counted() {
    let up = Upstream::start(|req| Reply::ok(&req.body_len.to_string()));
    let mut client = Client::connect(up.addr());
    let resp = client.request("POST /cl HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(resp.text(), "5");
    let chunked = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
                   3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nx-sum: 5\r\n\r\n";
    assert_eq!(client.request(chunked).text(), "5");
    let big = 3 * 1024 * 1024 + 7;
    client
        .send(format!("PUT /big HTTP/1.1\r\nHost: h\r\nContent-Length: {big}\r\n\r\n").as_bytes());
    client.send(&vec![b'x'; big]);
    assert_eq!(client.read_response().text(), big.to_string());

    let got = up.received();
    assert_eq!(got[0].body, b"hello");
    assert!(!got[0].chunked);
    assert_eq!(got[1].body, b"abcde");
    assert!(got[1].chunked);
    assert_eq!(got[1].trailers, vec![("x-sum".into(), "5".into())]);
    assert_eq!(got[2].body_len, big as u64);
    assert_eq!(got[2].body.len(), 1024 * 1024);
    assert_eq!(
        got[2].header("content-length"),
        Some(big.to_string().as_str())
    );
}

#[test]
fn sized_bodies_stream_with_either_framing() {
    let len = 5 * 1024 * 1024 + 3;
    let up = Upstream::start(move |req| Reply::Sized {
        status: 200,
        len,
        chunked: req.target == "/chunked",
    });
    let mut client = Client::connect(up.addr());
    for (path, chunked) in [("/cl", false), ("/chunked", true)] {
        let resp = client.request(&crate::get("h", path));
        assert_eq!(resp.chunked, chunked);
        assert_eq!(resp.body.len() as u64, len);
        assert!(resp.body == Reply::sized_body(len), "{path}: body differs");
    }
    let head = client.request("HEAD /cl HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        head.header("content-length"),
        Some(len.to_string().as_str())
    );
    assert!(head.body.is_empty());
    // The connection is still in step after the HEAD.
    assert_eq!(
        client.request(&crate::get("h", "/cl")).body.len() as u64,
        len
    );
}

#[test]
fn scripted_failures_close_or_reset() {
    let up = Upstream::start(|req| match req.target.as_str() {
        "/close" => Reply::Close,
        "/reset" => Reply::Reset,
        "/raw" => Reply::RawThenClose(b"HTTP/1.1 200 OK\r\n\r\nuntil close".to_vec()),
        _ => Reply::Delay(Duration::from_millis(100), Box::new(Reply::status(204))),
    });
    let mut client = Client::connect(up.addr());
    client.send(crate::get("h", "/close").as_bytes());
    assert!(client.is_closed(Duration::from_secs(5)));

    let mut client = Client::connect(up.addr());
    client.send(crate::get("h", "/reset").as_bytes());
    let err = client.try_read_response_to("GET").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");

    let mut client = Client::connect(up.addr());
    assert_eq!(
        client.request(&crate::get("h", "/raw")).text(),
        "until close"
    );

    let mut client = Client::connect(up.addr());
    let start = Instant::now();
    assert_eq!(client.request(&crate::get("h", "/delay")).status, 204);
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert!(!client.is_closed(Duration::from_millis(50)));
}

#[test]
fn interim_responses_come_before_the_final_one() {
    let up = Upstream::start(|_| {
        Reply::Seq(vec![
            Reply::Raw(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n".to_vec()),
            Reply::Chunked {
                status: 200,
                headers: vec![],
                chunks: vec![b"ab".to_vec(), vec![], b"c".to_vec()],
            },
        ])
    });
    let resp = Client::connect(up.addr()).request(&crate::get("h", "/"));
    assert_eq!(resp.interim, vec![103]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "abc");
}

#[test]
fn connection_close_is_honoured_both_ways() {
    let up = Upstream::ok("bye");
    let mut client = Client::connect(up.addr());
    let resp = client.request("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(client.is_closed(Duration::from_secs(5)));
}

#[test]
fn malformed_requests_are_recorded_as_errors() {
    let up = Upstream::ok("x");
    let mut client = Client::connect(up.addr());
    client.send(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert!(client.is_closed(Duration::from_secs(5)));
    wait_for("the error to be recorded", Duration::from_secs(5), || {
        !up.errors().is_empty()
    });
    assert_eq!(up.requests(), 0);
}

#[test]
fn dropping_the_upstream_closes_its_connections() {
    let up = Upstream::ok("x");
    let mut client = Client::connect(up.addr());
    assert_eq!(client.request(&crate::get("h", "/")).status, 200);
    drop(up);
    assert!(client.is_closed(Duration::from_secs(5)));
}

#[test]
fn blackhole_connects_hang() {
    let hole = Blackhole::start();
    let err = TcpStream::connect_timeout(&hole.addr(), Duration::from_millis(300)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
}

#[test]
fn head_responses_carry_the_length_without_a_body() {
    let up = Upstream::ok("hello");
    let mut client = Client::connect(up.addr());
    let head = client.request("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(head.header("content-length"), Some("5"));
    assert!(head.body.is_empty());
    assert_eq!(client.request(&crate::get("h", "/")).text(), "hello");
}
