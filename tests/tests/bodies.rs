//! Large bodies stream through the gateway in both directions with bounded memory, and a body
//! over `max_request_body` is refused before it reaches the upstream.

use ringway_tests::{
    assert_gateway_error, both_drivers, get, listener_toml, route_toml, upstream_toml, wait_for,
    Client, Gateway, Received, Reply, TempPath, Upstream,
};
use std::time::Duration;

const BIG: u64 = 64 * 1024 * 1024;
/// Piece size the client writes a big body in.
const PIECE: usize = 1024 * 1024;
/// How much the gateway's resident memory may grow over one big transfer.
const RSS_GROWTH_LIMIT_KIB: u64 = 32 * 1024;

/// A gateway in front of an upstream that answers with the request body's length, or with a
/// `Sized` body of `BIG` bytes for `/download/cl` and `/download/chunked`.
fn setup(driver: ringway_tests::Driver) -> (Upstream, Gateway) {
    let up = Upstream::start(|req: &Received| match req.target.as_str() {
        "/download/cl" => Reply::Sized {
            status: 200,
            len: BIG,
            chunked: false,
        },
        "/download/chunked" => Reply::Sized {
            status: 200,
            len: BIG,
            chunked: true,
        },
        _ => Reply::ok(&req.body_len.to_string()),
    });
    let toml = listener_toml("max_request_body = \"128MiB\"")
        + &upstream_toml("backend", &[(up.addr(), 1)], "")
        + &route_toml("all", "backend");
    let gw = Gateway::start(driver, &toml);
    // Warm up: the first request allocates the connection's buffers and the pool.
    assert_eq!(
        Client::connect(gw.addr())
            .request(&get("h", "/warm"))
            .status,
        200
    );
    (up, gw)
}

/// Runs `transfer` and asserts the gateway's peak RSS stayed within the limit above what it
/// used before.
fn assert_memory_bounded(gw: &Gateway, what: &str, transfer: impl FnOnce()) {
    let before = gw.rss_kib();
    transfer();
    let peak = gw.peak_rss_kib();
    let growth = peak.saturating_sub(before);
    assert!(
        growth < RSS_GROWTH_LIMIT_KIB,
        "{what}: the gateway's RSS grew by {growth} KiB (from {before} KiB to a peak of {peak} KiB)"
    );
}

fn upload(client: &mut Client, chunked: bool) {
    let piece = vec![b'u'; PIECE];
    if chunked {
        client.send(b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
        let mut framed = format!("{:x}\r\n", PIECE).into_bytes();
        framed.extend_from_slice(&piece);
        framed.extend_from_slice(b"\r\n");
        for _ in 0..BIG / PIECE as u64 {
            client.send(&framed);
        }
        client.send(b"0\r\n\r\n");
    } else {
        client.send(
            format!("POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: {BIG}\r\n\r\n").as_bytes(),
        );
        for _ in 0..BIG / PIECE as u64 {
            client.send(&piece);
        }
    }
    let resp = client.read_response();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.text(),
        BIG.to_string(),
        "the upstream counted the whole body"
    );
}

fn check_download(resp: &ringway_tests::Response, chunked: bool) {
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len() as u64, BIG);
    assert_eq!(resp.chunked, chunked, "headers {:?}", resp.headers);
    for offset in (0..BIG).step_by(4093).chain([BIG - 1]) {
        assert_eq!(
            resp.body[offset as usize],
            Reply::sized_byte(offset),
            "byte {offset}"
        );
    }
}

both_drivers!(upload_with_content_length, |driver| {
    let (up, gw) = setup(driver);
    let mut client = Client::connect(gw.addr());
    assert_memory_bounded(&gw, "64 MiB upload (content-length)", || {
        upload(&mut client, false)
    });
    let got = up
        .received()
        .pop()
        .expect("the upload reached the upstream");
    assert_eq!(got.body_len, BIG);
});

both_drivers!(upload_chunked, |driver| {
    let (up, gw) = setup(driver);
    let mut client = Client::connect(gw.addr());
    assert_memory_bounded(&gw, "64 MiB upload (chunked)", || upload(&mut client, true));
    let got = up
        .received()
        .pop()
        .expect("the upload reached the upstream");
    assert_eq!(got.body_len, BIG);
});

both_drivers!(download_with_content_length, |driver| {
    let (_up, gw) = setup(driver);
    let mut client = Client::connect(gw.addr());
    assert_memory_bounded(&gw, "64 MiB download (content-length)", || {
        let resp = client.request(&get("h", "/download/cl"));
        check_download(&resp, false);
        assert_eq!(
            resp.header("content-length"),
            Some(BIG.to_string().as_str())
        );
    });
});

both_drivers!(download_chunked, |driver| {
    let (_up, gw) = setup(driver);
    let mut client = Client::connect(gw.addr());
    assert_memory_bounded(&gw, "64 MiB download (chunked)", || {
        check_download(&client.request(&get("h", "/download/chunked")), true);
    });
});

both_drivers!(body_over_the_limit_gets_413, |driver| {
    let up = Upstream::ok("never");
    let toml = listener_toml("max_request_body = 1024")
        + &upstream_toml("backend", &[(up.addr(), 1)], "")
        + &route_toml("all", "backend");
    let gw = Gateway::start(driver, &toml);
    let mut client = Client::connect(gw.addr());
    // The head alone: the gateway answers from the declared length, before any body.
    let resp = client.request("POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 2048\r\n\r\n");
    assert_gateway_error(&resp, 413);
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(client.is_closed(Duration::from_secs(5)));
    assert_eq!(
        up.connections(),
        0,
        "the upstream saw nothing of the refused request"
    );

    // At the limit is fine.
    let mut client = Client::connect(gw.addr());
    let body = "x".repeat(1024);
    let ok = client.request(&format!(
        "POST /ok HTTP/1.1\r\nHost: h\r\nContent-Length: 1024\r\n\r\n{body}"
    ));
    assert_eq!(ok.status, 200);
    let got = up.received();
    assert_eq!(
        got.len(),
        1,
        "only the request within the limit reached the upstream"
    );
    assert_eq!(got[0].target, "/ok");
});

both_drivers!(
    an_early_answer_to_an_upload_is_passed_on_at_once,
    |driver| {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::time::Instant;

        // An upstream that answers 413 as soon as it has the head, and then holds the connection
        // without reading the body (as servers that refuse an upload do).
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = conn.write_all(
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 9\r\nconnection: close\r\n\r\ntoo large",
        );
            std::thread::sleep(Duration::from_secs(8));
        });
        let gw = Gateway::start(
            driver,
            &(listener_toml("")
                + &upstream_toml("up", &[(upstream, 1)], "")
                + &route_toml("all", "up")),
        );
        let mut client = TcpStream::connect(gw.addr()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(6)))
            .unwrap();
        let mut writer = client.try_clone().unwrap();
        let started = Instant::now();
        // 64 MiB: far more than the socket buffers on the way hold, written by another thread
        // (it blocks once nobody reads, and fails once the gateway closes).
        std::thread::spawn(move || {
            let _ = writer.write_all(
                format!("POST /upload HTTP/1.1\r\nhost: h\r\ncontent-length: {BIG}\r\n\r\n")
                    .as_bytes(),
            );
            let piece = vec![b'x'; PIECE];
            for _ in 0..BIG / PIECE as u64 {
                if writer.write_all(&piece).is_err() {
                    return;
                }
            }
        });
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer);
        let took = started.elapsed();
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 413 "), "{text:?} after {took:?}");
        assert!(text.ends_with("too large"), "{text:?}");
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "the rest of the body is unread: the connection must close ({text:?})"
        );
        assert!(took < Duration::from_secs(4), "413 after {took:?}");
    }
);

// A client that stops reading a response is cut off after the listener's `send_timeout`
// (nginx's), and the request is logged as a client timeout: it does not hold its connection,
// its request state and its upstream connection for as long as TCP keeps a zero window open.
both_drivers!(
    a_client_that_stops_reading_is_cut_off_after_send_timeout,
    |driver| {
        let up = Upstream::start(|_: &Received| Reply::Sized {
            status: 200,
            len: BIG,
            chunked: false,
        });
        let log = TempPath::new("log");
        let toml = format!("[access_log]\npath = \"{}\"\n", log.path().display())
            + &listener_toml("send_timeout = \"1s\"")
            + &upstream_toml("backend", &[(up.addr(), 1)], "")
            + &route_toml("all", "backend");
        let gw = Gateway::start(driver, &toml);
        let mut client = Client::connect(gw.addr());
        client.send(get("h", "/download").as_bytes());

        // The client reads nothing until the gateway has given up on it.
        let mut line = String::new();
        wait_for(
            "the access-log line of the request",
            Duration::from_secs(15),
            || {
                let text = std::fs::read_to_string(log.path()).unwrap_or_default();
                line = text.lines().next().unwrap_or_default().to_string();
                !line.is_empty()
            },
        );
        let entry: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(entry["cause"], "client_timeout", "{line}");
        assert_eq!(entry["status"], 200, "the head went out: {line}");
        let sent = entry["bytes_out"].as_u64().expect("bytes_out");
        assert!(sent < BIG, "{line}");

        // What the sockets held arrives, then the end of the connection, long before the body's end.
        let got = client
            .read_until_closed(Duration::from_secs(10))
            .expect("the gateway closes the connection");
        assert!(got < BIG, "{got} bytes of {BIG}");
        up.wait_until(
            "the upstream connection closed",
            Duration::from_secs(5),
            |up| up.open_connections() == 0,
        );
    }
);
