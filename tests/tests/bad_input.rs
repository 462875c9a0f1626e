//! Bad request input: malformed or ambiguous framing, invalid syntax, oversized pieces and slow
//! or idle clients. Each rejection must carry the exact status and `connection: close`, the
//! connection must then close, and the upstream must never get a connection for it (DESIGN.md
//! "What bad input gets", notes/contracts.md "Gateway behaviour the tests check").

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringway_tests::{both_drivers, get, Client, Driver, Gateway, Response, Upstream};

/// How long a rejected connection may take to close after its response.
const CLOSE_WITHIN: Duration = Duration::from_secs(2);

/// A gateway with small limits in front of one upstream that answers 200 "x" to everything.
struct Env {
    gw: Gateway,
    up: Upstream,
}

fn start(driver: Driver) -> Env {
    start_with(driver, "")
}

/// `listener_extra` is appended to the listener table (after the small limits).
fn start_with(driver: Driver, listener_extra: &str) -> Env {
    let up = Upstream::ok("x");
    let toml = format!(
        r#"
[[listeners]]
name = "main"
listen = "{{listen}}"
max_request_line = 256
max_header_bytes = 1024
max_request_body = 1000
{listener_extra}

[[upstreams]]
name = "backend"
endpoints = [{{ address = "{addr}" }}]

[[routes]]
name = "all"
path_prefix = "/"
upstream = "backend"
"#,
        addr = up.addr()
    );
    let gw = Gateway::start(driver, &toml);
    Env { gw, up }
}

fn is_close(resp: &Response) -> bool {
    resp.header("connection")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("close"))
}

impl Env {
    /// Sends `raw` on a new connection and checks the rejection: exact status, the short error
    /// body, `connection: close`, the connection closed, and (when `upstream_untouched`) no
    /// upstream connection at all.
    fn reject_with(&self, raw: &[u8], status: u16, upstream_untouched: bool) -> Response {
        let what = String::from_utf8_lossy(raw).escape_debug().to_string();
        let mut c = Client::connect(self.gw.addr());
        c.send(raw);
        let resp = c.read_response();
        assert_eq!(
            resp.status,
            status,
            "status for {what}; response {:?}",
            resp.text()
        );
        assert!(
            resp.text().starts_with(&format!("{status} ")),
            "error body for {what}: {:?}",
            resp.text()
        );
        assert!(
            is_close(&resp),
            "connection: close for {what}; headers {:?}",
            resp.headers
        );
        assert!(
            c.is_closed(CLOSE_WITHIN),
            "connection not closed after {status} for {what}"
        );
        if upstream_untouched {
            assert_eq!(
                self.up.connections(),
                0,
                "upstream got a connection for {what}; received {:?}",
                self.up
                    .received()
                    .iter()
                    .map(|r| &r.target)
                    .collect::<Vec<_>>()
            );
        }
        resp
    }

    fn reject(&self, raw: &[u8], status: u16) -> Response {
        self.reject_with(raw, status, true)
    }

    /// A valid request on a new connection is answered by the upstream.
    fn served(&self) {
        let mut c = Client::connect(self.gw.addr());
        let resp = c.request(&get("example.com", "/ok"));
        assert_eq!(resp.status, 200, "valid request: {:?}", resp.text());
        assert_eq!(resp.text(), "x");
    }
}

/// `POST / HTTP/1.1` with a Host and the given extra header lines (each ending in CRLF), then
/// `body`.
fn post(headers: &str, body: &str) -> Vec<u8> {
    format!("POST / HTTP/1.1\r\nHost: example.com\r\n{headers}\r\n{body}").into_bytes()
}

/// `GET / HTTP/1.1` with a Host and the given extra header lines (each ending in CRLF).
fn get_with(headers: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: example.com\r\n{headers}\r\n").into_bytes()
}

// ---- framing ----

both_drivers!(content_length_with_transfer_encoding_is_400, |driver| {
    let env = start(driver);
    env.reject(
        &post(
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\n",
        ),
        400,
    );
    env.reject(
        &post(
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "0\r\n\r\n",
        ),
        400,
    );
});

both_drivers!(differing_content_lengths_are_400, |driver| {
    let env = start(driver);
    env.reject(
        &post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
        400,
    );
    env.reject(&post("Content-Length: 5, 6\r\n", "hello!"), 400);
});

both_drivers!(invalid_content_length_is_400, |driver| {
    let env = start(driver);
    for value in ["+5", "5a", "", " 5 5", "99999999999999999999", "-1", "0x5"] {
        env.reject(&post(&format!("Content-Length: {value}\r\n"), "hello"), 400);
    }
});

both_drivers!(
    transfer_encoding_other_than_final_chunked_is_400,
    |driver| {
        let env = start(driver);
        for value in ["gzip", "chunked, gzip", "chunked, chunked", "identity"] {
            env.reject(
                &post(&format!("Transfer-Encoding: {value}\r\n"), "0\r\n\r\n"),
                400,
            );
        }
        // The same list split over two header lines.
        env.reject(
            &post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            400,
        );
    }
);

both_drivers!(transfer_encoding_in_http10_is_400, |driver| {
    let env = start(driver);
    env.reject(
        b"POST / HTTP/1.0\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
});

both_drivers!(bad_chunk_size_is_400, |driver| {
    let env = start(driver);
    // Head and body go out in one write, so the gateway sees the bad size before it would
    // have any reason to reach the upstream.
    let seventeen_hex_digits = "10000000000000000";
    for size in [
        "zz",
        "-1",
        seventeen_hex_digits,
        "5 ;x",
        "0x5",
        "",
        " 5",
        "5\t",
    ] {
        env.reject(
            &post(
                "Transfer-Encoding: chunked\r\n",
                &format!("{size}\r\nhello\r\n0\r\n\r\n"),
            ),
            400,
        );
    }
});

both_drivers!(valid_chunked_variants_are_accepted, |driver| {
    // The strict chunk parser must not reject what RFC 9112 allows.
    let env = start(driver);
    let cases = [
        ("chunked", "5;name=value\r\nhello\r\n0\r\n\r\n", "hello"),
        ("chunked", "A\r\n0123456789\r\n0\r\n\r\n", "0123456789"),
        ("chunked", "005\r\nhello\r\n000\r\n\r\n", "hello"),
        (
            "chunked",
            "5\r\nhello\r\n0\r\nx-trailer: 1\r\n\r\n",
            "hello",
        ),
        ("Chunked", "5\r\nhello\r\n0\r\n\r\n", "hello"),
    ];
    for (i, (te, body, want)) in cases.iter().enumerate() {
        let mut c = Client::connect(env.gw.addr());
        c.send(&post(&format!("Transfer-Encoding: {te}\r\n"), body));
        let resp = c.read_response();
        assert_eq!(resp.status, 200, "{te} {body:?}: {:?}", resp.text());
        let got = env.up.received();
        assert_eq!(got.len(), i + 1);
        assert_eq!(got[i].body, want.as_bytes(), "{te} {body:?}");
    }
});

both_drivers!(missing_crlf_after_chunk_data_is_400, |driver| {
    let env = start(driver);
    for body in ["5\r\nhelloXX\r\n0\r\n\r\n", "5\r\nhello0\r\n\r\n"] {
        env.reject(&post("Transfer-Encoding: chunked\r\n", body), 400);
    }
});

// ---- header syntax ----

both_drivers!(obs_fold_is_400, |driver| {
    let env = start(driver);
    env.reject(&get_with("X-A: a\r\n b\r\n"), 400);
    env.reject(&get_with("X-A: a\r\n\tb\r\n"), 400);
});

both_drivers!(whitespace_before_colon_is_400, |driver| {
    let env = start(driver);
    env.reject(&get_with("X-A : b\r\n"), 400);
    env.reject(&get_with("X-A\t: b\r\n"), 400);
});

both_drivers!(invalid_header_name_is_400, |driver| {
    let env = start(driver);
    for line in ["X(A: b", ": b", "X-A b", "X A: b", "X\x01A: b"] {
        env.reject(&get_with(&format!("{line}\r\n")), 400);
    }
});

both_drivers!(control_characters_in_header_value_are_400, |driver| {
    let env = start(driver);
    for c in ['\x01', '\x7f', '\0'] {
        env.reject(&get_with(&format!("X-A: a{c}b\r\n")), 400);
    }
});

both_drivers!(bare_lf_line_endings_are_400, |driver| {
    let env = start(driver);
    env.reject(b"GET / HTTP/1.1\nHost: example.com\n\n", 400);
    env.reject(b"GET / HTTP/1.1\r\nHost: example.com\nX-A: b\r\n\r\n", 400);
    env.reject(b"GET / HTTP/1.1\r\nHost: example.com\r\n\n", 400);
});

both_drivers!(missing_host_in_http11_is_400, |driver| {
    let env = start(driver);
    env.reject(b"GET / HTTP/1.1\r\n\r\n", 400);
});

both_drivers!(duplicate_host_is_400, |driver| {
    let env = start(driver);
    env.reject(
        b"GET / HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\n\r\n",
        400,
    );
    env.reject(
        b"GET / HTTP/1.1\r\nHost: example.com\r\nHost: example.com\r\n\r\n",
        400,
    );
});

both_drivers!(http10_without_host_is_served, |driver| {
    let env = start(driver);
    let mut c = Client::connect(env.gw.addr());
    let resp = c.request("GET /old HTTP/1.0\r\n\r\n");
    assert_eq!(resp.status, 200, "{:?}", resp.text());
    assert_eq!(resp.text(), "x");
    let got = env.up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].target, "/old");
});

// ---- size limits ----

both_drivers!(request_line_over_max_request_line_is_414, |driver| {
    let env = start(driver);
    let long = format!(
        "GET /{} HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "a".repeat(300)
    );
    env.reject(long.as_bytes(), 414);
    // Just under the limit is fine (the line without CRLF is 5 + 236 + 9 = 250 bytes).
    let mut c = Client::connect(env.gw.addr());
    let resp = c.request(&get("example.com", &format!("/{}", "a".repeat(236))));
    assert_eq!(resp.status, 200, "{:?}", resp.text());
});

both_drivers!(head_over_max_header_bytes_is_431, |driver| {
    let env = start(driver);
    // One big header.
    env.reject(&get_with(&format!("X-Big: {}\r\n", "b".repeat(1100))), 431);
    // Many small ones adding up.
    let many: String = (0..20)
        .map(|i| format!("X-H{i}: {}\r\n", "v".repeat(60)))
        .collect();
    env.reject(&get_with(&many), 431);
});

both_drivers!(more_than_100_headers_is_431, |driver| {
    let env = start(driver);
    // 101 headers plus Host, each tiny so the head stays under max_header_bytes (1024).
    let headers: String = (0..101).map(|i| format!("h{i}:1\r\n")).collect();
    let raw = get_with(&headers);
    assert!(raw.len() < 1024, "the head must only break the count limit");
    env.reject(&raw, 431);
    // Exactly 100 (99 plus Host) is fine.
    let headers: String = (0..99).map(|i| format!("h{i}:1\r\n")).collect();
    let mut c = Client::connect(env.gw.addr());
    c.send(&get_with(&headers));
    let resp = c.read_response();
    assert_eq!(resp.status, 200, "{:?}", resp.text());
});

both_drivers!(content_length_over_max_request_body_is_413, |driver| {
    let env = start(driver);
    // The head alone: the gateway must answer from the declared length.
    env.reject(&post("Content-Length: 1001\r\n", ""), 413);
    // Exactly the limit is fine.
    let mut c = Client::connect(env.gw.addr());
    c.send(&post("Content-Length: 1000\r\n", &"b".repeat(1000)));
    let resp = c.read_response();
    assert_eq!(resp.status, 200, "{:?}", resp.text());
    assert_eq!(env.up.received()[0].body_len, 1000);
});

both_drivers!(chunked_body_over_max_request_body_is_413, |driver| {
    let env = start(driver);
    // Two 600-byte chunks: 1200 > 1000. Chunked bodies stream, so the upstream may have seen
    // the head; only the status and the close are checked.
    let chunk = format!("258\r\n{}\r\n", "c".repeat(600));
    let body = format!("{chunk}{chunk}0\r\n\r\n");
    env.reject_with(&post("Transfer-Encoding: chunked\r\n", &body), 413, false);
    // One chunk whose declared size alone (0x3e9 = 1001) is over the limit.
    env.reject_with(
        &post("Transfer-Encoding: chunked\r\n", "3e9\r\nabc"),
        413,
        false,
    );
});

// ---- request line syntax ----

both_drivers!(invalid_method_token_is_400, |driver| {
    let env = start(driver);
    for method in ["G(T", "G@T", "GE\"T"] {
        env.reject(
            format!("{method} / HTTP/1.1\r\nHost: example.com\r\n\r\n").as_bytes(),
            400,
        );
    }
});

both_drivers!(http20_version_is_505, |driver| {
    let env = start(driver);
    env.reject(b"GET / HTTP/2.0\r\nHost: example.com\r\n\r\n", 505);
});

both_drivers!(malformed_request_line_is_400, |driver| {
    let env = start(driver);
    for line in [
        "GET / http/1.1",
        "GET / HTTP/1",
        "GET /",
        "GET  / HTTP/1.1",
        "GET / HTTP/1.1 extra",
        "GET /a b HTTP/1.1",
    ] {
        env.reject(
            format!("{line}\r\nHost: example.com\r\n\r\n").as_bytes(),
            400,
        );
    }
});

both_drivers!(bad_request_pipelined_after_a_good_one, |driver| {
    let env = start(driver);
    // A good POST whose body is followed, in the same write, by a request with CL and TE.
    let mut c = Client::connect(env.gw.addr());
    let mut raw = post("Content-Length: 5\r\n", "hello");
    raw.extend_from_slice(&post(
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        "0\r\n\r\n",
    ));
    c.send(&raw);
    let first = c.read_response();
    assert_eq!(first.status, 200, "{:?}", first.text());
    let second = c.read_response();
    assert_eq!(second.status, 400, "{:?}", second.text());
    assert!(is_close(&second), "{:?}", second.headers);
    assert!(c.is_closed(CLOSE_WITHIN));
    let got = env.up.received();
    assert_eq!(got.len(), 1, "only the good request reaches the upstream");
    assert_eq!(got[0].body, b"hello");
});

both_drivers!(target_with_fragment_is_400, |driver| {
    let env = start(driver);
    env.reject(b"GET /a#b HTTP/1.1\r\nHost: example.com\r\n\r\n", 400);
});

both_drivers!(target_not_starting_with_slash_is_400, |driver| {
    let env = start(driver);
    env.reject(b"GET a/b HTTP/1.1\r\nHost: example.com\r\n\r\n", 400);
});

both_drivers!(
    valid_request_after_rejected_one_on_new_connection_works,
    |driver| {
        let env = start(driver);
        let bad: Vec<(Vec<u8>, u16)> = vec![
            (
                post(
                    "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                    "0\r\n\r\n",
                ),
                400,
            ),
            (get_with("X-A: a\r\n b\r\n"), 400),
            (b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
            (
                format!("GET /{} HTTP/1.1\r\nHost: e\r\n\r\n", "a".repeat(300)).into_bytes(),
                414,
            ),
            (get_with(&format!("X-Big: {}\r\n", "b".repeat(1100))), 431),
            (post("Content-Length: 1001\r\n", ""), 413),
        ];
        for (i, (raw, status)) in bad.iter().enumerate() {
            // Checked against the upstream's count so far: each valid request below may open one.
            let before = env.up.received().len();
            let what = String::from_utf8_lossy(raw).escape_debug().to_string();
            let mut c = Client::connect(env.gw.addr());
            c.send(raw);
            let resp = c.read_response();
            assert_eq!(resp.status, *status, "{what}");
            assert!(is_close(&resp), "{what}");
            assert!(c.is_closed(CLOSE_WITHIN), "{what}");
            assert_eq!(
                env.up.received().len(),
                before,
                "{what} reached the upstream"
            );
            env.served();
            assert_eq!(env.up.received().len(), i + 1);
        }
    }
);

// ---- slow and idle clients, connection cap ----

both_drivers!(stalled_head_gets_408_within_header_timeout, |driver| {
    let env = start_with(driver, "header_timeout = \"300ms\"");
    let started = Instant::now();
    let mut c = Client::connect(env.gw.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: exa");
    let resp = c.read_response();
    let took = started.elapsed();
    assert_eq!(resp.status, 408, "{:?}", resp.text());
    assert!(is_close(&resp), "{:?}", resp.headers);
    assert!(took < Duration::from_secs(3), "408 after {took:?}");
    assert!(
        took >= Duration::from_millis(200),
        "408 already after {took:?}"
    );
    assert!(c.is_closed(CLOSE_WITHIN));
    assert_eq!(env.up.connections(), 0);
});

both_drivers!(trickled_head_gets_408_within_header_timeout, |driver| {
    // header_timeout bounds the whole head, not the gap between bytes: a client trickling a
    // byte every 50 ms must not keep its connection past it.
    let env = start_with(driver, "header_timeout = \"300ms\"");
    let mut s = TcpStream::connect(env.gw.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut writer = s.try_clone().unwrap();
    let started = Instant::now();
    let trickle = std::thread::spawn(move || {
        let head = format!(
            "GET / HTTP/1.1\r\nHost: example.com\r\nX-Slow: {}",
            "s".repeat(200)
        );
        for b in head.bytes() {
            if writer.write_all(&[b]).is_err() || started.elapsed() > Duration::from_secs(5) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("no 408 after {:?}: {e}", started.elapsed()),
        }
    }
    let took = started.elapsed();
    let head = String::from_utf8_lossy(&buf).to_string();
    assert!(head.starts_with("HTTP/1.1 408 "), "{head:?} after {took:?}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head:?}"
    );
    assert!(took < Duration::from_secs(3), "408 after {took:?}");
    let _ = s.shutdown(std::net::Shutdown::Both);
    trickle.join().unwrap();
    assert_eq!(env.up.connections(), 0);
});

both_drivers!(
    silent_connection_does_not_outlive_header_timeout,
    |driver| {
        // A connection that never sends a byte: the contract does not say whether it gets a 408
        // or a plain close, only that it does not stay open.
        let env = start_with(driver, "header_timeout = \"300ms\"");
        let mut s = TcpStream::connect(env.gw.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("silent connection still open after {:?}", started.elapsed())
                }
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408 "),
            "{text:?}"
        );
    }
);

both_drivers!(
    idle_keep_alive_connection_is_closed_without_response,
    |driver| {
        let env = start_with(driver, "idle_timeout = \"300ms\"");
        // A raw stream, to see every byte that arrives after the one response.
        let mut s = TcpStream::connect(env.gw.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(get("example.com", "/").as_bytes()).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head_end, body_len) = loop {
            let n = s.read(&mut chunk).expect("reading the response");
            assert!(
                n > 0,
                "closed before a whole response: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..pos]).to_string();
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .expect("content-length");
                break (pos + 4, len);
            }
        };
        while buf.len() < head_end + body_len {
            let n = s.read(&mut chunk).expect("reading the body");
            assert!(n > 0, "closed mid-body");
            buf.extend_from_slice(&chunk[..n]);
        }
        let idle_from = Instant::now();
        let mut extra = buf[head_end + body_len..].to_vec();
        loop {
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => extra.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("idle connection still open after {:?}", idle_from.elapsed())
                }
                Err(e) => panic!("idle connection ended with {e} instead of EOF"),
            }
        }
        let took = idle_from.elapsed();
        assert!(
            extra.is_empty(),
            "bytes after the response: {:?}",
            String::from_utf8_lossy(&extra)
        );
        assert!(took < Duration::from_secs(3), "closed after {took:?}");
        assert!(
            took >= Duration::from_millis(200),
            "closed already after {took:?}"
        );
    }
);

both_drivers!(connection_over_max_connections_gets_503, |driver| {
    let env = start_with(driver, "max_connections = 2");
    let mut c1 = Client::connect(env.gw.addr());
    let mut c2 = Client::connect(env.gw.addr());
    assert_eq!(c1.request(&get("example.com", "/1")).status, 200);
    assert_eq!(c2.request(&get("example.com", "/2")).status, 200);
    // The third is answered without sending anything: the gateway refuses it at accept.
    let mut c3 = Client::connect(env.gw.addr());
    let resp = c3.read_response();
    assert_eq!(resp.status, 503, "{:?}", resp.text());
    assert!(is_close(&resp), "{:?}", resp.headers);
    assert!(c3.is_closed(CLOSE_WITHIN));
    // The first two still work.
    assert_eq!(c1.request(&get("example.com", "/1b")).status, 200);
    assert_eq!(c2.request(&get("example.com", "/2b")).status, 200);
});
