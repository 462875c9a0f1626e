//! HTTP/1.1 protocol edges: later 1.x minor versions, other major versions, transfer codings
//! from the upstream, 204/304/HEAD responses, and HTTP/1.0 clients behind an HTTP/1.1 upstream
//! side.

use ringway_tests::{
    assert_gateway_error, both_drivers, get, proxy_toml, Client, Gateway, Received, Reply, Upstream,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// An upstream that answers with the version and target it was sent.
fn echo_version() -> Upstream {
    Upstream::start(|req: &Received| Reply::ok(&format!("{} {}", req.version, req.target)))
}

both_drivers!(later_minor_versions_are_served_as_1_1, |driver| {
    let up = echo_version();
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    let mut c = Client::connect(gw.addr());
    for minor in [2, 5, 9] {
        let resp = c.request(&format!("GET /v{minor} HTTP/1.{minor}\r\nHost: h\r\n\r\n"));
        assert_eq!(resp.status, 200, "HTTP/1.{minor}: {:?}", resp.text());
        assert_eq!(resp.text(), format!("HTTP/1.1 /v{minor}"));
        // Served as 1.1: persistent by default, no keep-alive token needed.
        assert_eq!(resp.header("connection"), None);
    }
    // 1.1's rules hold: no Host is a 400.
    let mut c = Client::connect(gw.addr());
    let resp = c.request("GET / HTTP/1.2\r\n\r\n");
    assert_eq!(resp.status, 400);
    assert_eq!(up.requests(), 3);
});

both_drivers!(other_major_versions_are_505, |driver| {
    let up = echo_version();
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    for line in ["GET / HTTP/2.0", "GET / HTTP/3.0"] {
        let mut c = Client::connect(gw.addr());
        let resp = c.request(&format!("{line}\r\nHost: h\r\n\r\n"));
        assert_eq!(resp.status, 505, "{line}");
        assert_eq!(resp.text(), "505 HTTP Version Not Supported\n");
        assert_eq!(resp.header("connection"), Some("close"));
        assert!(
            c.is_closed(Duration::from_secs(5)),
            "{line}: connection kept"
        );
    }
    assert_eq!(up.connections(), 0);
});

/// Sends `req` on a fresh connection and reads until the gateway closes it: the head (lower
/// case) and the raw body bytes.
fn exchange_raw(addr: SocketAddr, req: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&all)));
    let head = String::from_utf8_lossy(&all[..end]).to_ascii_lowercase();
    (head, all[end + 4..].to_vec())
}

/// Decodes a chunked body (no extensions, no trailers), asserting it is complete.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk line");
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line]).unwrap(), 16).unwrap();
        body = &body[line + 2..];
        if size == 0 {
            assert_eq!(body, b"\r\n", "end of the chunked body");
            return out;
        }
        out.extend_from_slice(&body[..size]);
        assert_eq!(&body[size..size + 2], b"\r\n");
        body = &body[size + 2..];
    }
}

/// Bytes standing for a gzip body: the gateway passes them without looking.
const GZIPPED: &[u8] = b"\x1f\x8b\x08\x00 not really gzip";

fn coded_upstream() -> Upstream {
    Upstream::start(|req: &Received| {
        let raw = |head: &str, body: &[u8]| [head.as_bytes(), body].concat();
        match req.target.as_str() {
            "/gzip-close" => Reply::RawThenClose(raw(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                GZIPPED,
            )),
            "/gzip-chunked" => Reply::Raw(raw(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
                &[b"5\r\n", &GZIPPED[..5], b"\r\n0\r\n\r\n"].concat(),
            )),
            "/chunked-inside" => Reply::RawThenClose(raw(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                GZIPPED,
            )),
            _ => Reply::ok("plain"),
        }
    })
}

both_drivers!(transfer_codings_keep_their_labels, |driver| {
    let up = coded_upstream();
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    // Read until close: chunked for the client, gzip still named before it.
    let (head, body) = exchange_raw(
        gw.addr(),
        "GET /gzip-close HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("\r\ntransfer-encoding: gzip, chunked\r\n"),
        "{head}"
    );
    assert!(!head.contains("content-length"), "{head}");
    assert_eq!(dechunk(&body), GZIPPED);
    // A final chunked is passed through with the labels before it.
    let (head, body) = exchange_raw(
        gw.addr(),
        "GET /gzip-chunked HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert!(
        head.contains("\r\ntransfer-encoding: gzip, chunked\r\n"),
        "{head}"
    );
    assert_eq!(dechunk(&body), &GZIPPED[..5]);
    // Plain responses keep their framing alone.
    let (head, _) = exchange_raw(
        gw.addr(),
        "GET /plain HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert!(!head.contains("transfer-encoding"), "{head}");
});

both_drivers!(transfer_codings_that_cannot_be_passed_are_502, |driver| {
    let up = coded_upstream();
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    // chunked applied before gzip: chunking it again would apply chunked twice.
    let mut c = Client::connect(gw.addr());
    let resp = c.request(&get("h", "/chunked-inside"));
    assert_gateway_error(&resp, 502);
    // An HTTP/1.0 client cannot be sent a transfer coding.
    for target in ["/gzip-close", "/gzip-chunked"] {
        let mut c = Client::connect(gw.addr());
        let resp = c.request(&format!("GET {target} HTTP/1.0\r\nHost: h\r\n\r\n"));
        assert_gateway_error(&resp, 502);
    }
});

/// An upstream that sends bodiless responses with lengths: `/204` and `/304` and whatever a
/// HEAD asks for.
fn bodiless_upstream() -> Upstream {
    Upstream::start(|req: &Received| {
        let raw = |s: &str| Reply::Raw(s.as_bytes().to_vec());
        match (req.method.as_str(), req.target.as_str()) {
            (_, "/204") => raw("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-A: 1\r\n\r\n"),
            (_, "/304") => {
                raw("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"e\"\r\n\r\n")
            }
            ("HEAD", _) => raw("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            _ => Reply::ok("after"),
        }
    })
}

both_drivers!(bodiless_responses_carry_no_body, |driver| {
    let up = bodiless_upstream();
    let toml = proxy_toml(up.addr(), "")
        .replace("[[routes]]", "[[routes]]\nname = \"local204\"\npath_exact = \"/local204\"\nrespond = { status = 204 }\n\n[[routes]]");
    let gw = Gateway::start(driver, &toml);
    let mut c = Client::connect(gw.addr());
    for (req, status, length) in [
        (get("h", "/204"), 204, None),
        (get("h", "/304"), 304, Some("10")),
        (
            "HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n".to_string(),
            200,
            Some("5"),
        ),
        (get("h", "/local204"), 204, None),
    ] {
        let resp = c.request(&req);
        assert_eq!(resp.status, status, "{req}");
        assert_eq!(resp.header("content-length"), length, "{req}");
        assert_eq!(resp.header("transfer-encoding"), None, "{req}");
        assert_eq!(resp.header("connection"), None, "{req}");
        // Had any body byte followed the head, this response would read wrong.
        let after = c.request(&get("h", "/after"));
        assert_eq!(
            (after.status, after.text().as_str()),
            (200, "after"),
            "after {req}"
        );
    }
    let resp = c.request(&get("h", "/204"));
    assert_eq!(resp.header("x-a"), Some("1"));
    // Bodiless upstream responses leave the upstream connection reusable.
    assert_eq!(up.connections(), 1);
});

/// An upstream that answers `/chunked` chunked, `/close` without a length (then closes), and
/// anything else with a Content-Length; the body says the version and Host it was sent.
fn versioned_upstream() -> Upstream {
    Upstream::start(|req: &Received| {
        let seen = format!("{} host={:?}", req.version, req.header("host"));
        match req.target.as_str() {
            "/chunked" => Reply::Chunked {
                status: 200,
                headers: vec![],
                chunks: vec![b"one ".to_vec(), b"two ".to_vec(), seen.into_bytes()],
            },
            "/close" => Reply::RawThenClose(
                format!("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close {seen}")
                    .into_bytes(),
            ),
            _ => Reply::ok(&seen),
        }
    })
}

both_drivers!(
    http10_clients_go_upstream_as_http11_with_pooling,
    |driver| {
        let up = versioned_upstream();
        let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
        for _ in 0..3 {
            let mut c = Client::connect(gw.addr());
            let resp = c.request("GET /a HTTP/1.0\r\nHost: h\r\n\r\n");
            assert_eq!(resp.status, 200);
            assert_eq!(resp.text(), "HTTP/1.1 host=Some(\"h\")");
            // The client did not ask to keep the connection.
            assert_eq!(resp.header("connection"), Some("close"));
            assert!(c.is_closed(Duration::from_secs(5)));
        }
        // One upstream connection carried all three.
        assert_eq!(up.connections(), 1);
        let received = up.received();
        assert!(received.iter().all(|r| r.version == "HTTP/1.1"));
        assert!(received.iter().all(|r| r.header("connection").is_none()));
        // Without Host: the absolute-form authority, else an empty Host (HTTP/1.1 needs one).
        let mut c = Client::connect(gw.addr());
        let resp = c.request("GET http://a.example/x HTTP/1.0\r\n\r\n");
        assert_eq!(resp.text(), "HTTP/1.1 host=Some(\"a.example\")");
        let mut c = Client::connect(gw.addr());
        let resp = c.request("GET /x HTTP/1.0\r\n\r\n");
        assert_eq!(resp.text(), "HTTP/1.1 host=Some(\"\")");
    }
);

both_drivers!(http10_clients_get_no_chunked, |driver| {
    let up = versioned_upstream();
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    // A chunked upstream body goes to a 1.0 client de-chunked, ended by the close.
    for keep in ["", "Connection: keep-alive\r\n"] {
        let (head, body) = exchange_raw(
            gw.addr(),
            &format!("GET /chunked HTTP/1.0\r\nHost: h\r\n{keep}\r\n"),
        );
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(!head.contains("transfer-encoding"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert_eq!(
            String::from_utf8_lossy(&body),
            "one two HTTP/1.1 host=Some(\"h\")"
        );
    }
    // The chunked body ended cleanly: its upstream connection went back to the pool.
    let mut c = Client::connect(gw.addr());
    assert_eq!(c.request(&get("h", "/a")).status, 200);
    assert_eq!(up.connections(), 1);
    // Read until close upstream: close-delimited to the client as well.
    let (head, body) = exchange_raw(gw.addr(), "GET /close HTTP/1.0\r\nHost: h\r\n\r\n");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert_eq!(
        String::from_utf8_lossy(&body),
        "until close HTTP/1.1 host=Some(\"h\")"
    );
    // With a length, a client that asked for keep-alive keeps its connection.
    let mut c = Client::connect(gw.addr());
    for _ in 0..2 {
        let resp = c.request("GET /a HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(resp.status, 200);
        assert!(!resp.chunked);
        assert_eq!(resp.header("connection"), Some("keep-alive"));
        assert_eq!(resp.text(), "HTTP/1.1 host=Some(\"h\")");
    }
});

both_drivers!(
    later_minor_versions_from_upstreams_are_read_as_1_1,
    |driver| {
        let up = Upstream::start(|_| {
            Reply::Raw(b"HTTP/1.3 200 OK\r\nContent-Length: 5\r\nX-Up: yes\r\n\r\nhello".to_vec())
        });
        let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
        let mut c = Client::connect(gw.addr());
        for _ in 0..2 {
            let resp = c.request(&get("h", "/"));
            assert_eq!((resp.status, resp.text().as_str()), (200, "hello"));
            assert_eq!(resp.header("x-up"), Some("yes"));
        }
        // Persistent as 1.1: one upstream connection served both.
        assert_eq!(up.connections(), 1);
    }
);
