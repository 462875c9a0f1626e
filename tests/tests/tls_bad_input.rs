//! What is not a TLS handshake on a TLS port: plain HTTP gets nginx's 400, other
//! bytes a close without an answer, a client that sends nothing or half a ClientHello is
//! closed after `handshake_timeout`; each is counted in
//! `ringway_tls_handshake_failures_total` by reason, and silent connections do not keep a
//! real client from being served.

mod tls_common;

use ringway_tests::tls::tls_proxy_toml;
use ringway_tests::{both_drivers, get, Client, Gateway, Pki, TlsClient, Upstream};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls_common::{ctl_stats, echo, poll, wait_metrics, OBSERVE};

/// The handshake_timeout of the tests that wait for it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// A gateway with one TLS listener (certificate for `t.test`, `tls_extra` lines), `/metrics`,
/// and `up` behind it.
fn gateway(driver: ringway_tests::Driver, pki: &Pki, up: &Upstream, tls_extra: &str) -> Gateway {
    let cert = pki.issue_server(&["t.test"]);
    let toml = OBSERVE.to_string() + &tls_proxy_toml(&[&cert], tls_extra, up.addr(), "");
    Gateway::start(driver, &toml)
}

/// The first flight of a real rustls client: a TLS record holding a ClientHello for `t.test`.
fn client_hello() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = "t.test".try_into().expect("a server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("a client");
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).expect("write to a Vec");
    }
    assert_eq!(hello[0], 0x16, "a handshake record");
    hello
}

/// A connection that has sent the first half of a ClientHello.
fn half_hello(addr: SocketAddr) -> Client {
    let hello = client_hello();
    let mut c = Client::connect(addr);
    c.send(&hello[..hello.len() / 2]);
    c
}

/// A plain HTTP request on the TLS port: every byte the gateway sent until it closed.
fn plain_http_exchange(addr: SocketAddr) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(get("t.test", "/").as_bytes()).unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("not closed after the answer ({raw:?}): {e}"));
    raw
}

/// The listener's failure counters: `(reason, count)` pairs that must all be reached.
fn failures(gw: &Gateway, expected: &[(&str, f64)]) {
    let labels: Vec<[(&str, &str); 2]> = expected
        .iter()
        .map(|(reason, _)| [("listener", "main"), ("reason", *reason)])
        .collect();
    let samples: Vec<_> = expected
        .iter()
        .zip(&labels)
        .map(|((_, n), labels)| ("ringway_tls_handshake_failures_total", &labels[..], *n))
        .collect();
    wait_metrics(gw, &samples);
}

both_drivers!(plain_http_gets_400_and_other_bytes_a_close, |driver| {
    let pki = Pki::new("bad");
    let up = Upstream::start(echo);
    let gw = gateway(driver, &pki, &up, "");

    // Read raw, to the close: the response's framing is checked at the end of the test, so
    // that a wrong content-length does not hide the other checks.
    let started = Instant::now();
    let raw = plain_http_exchange(gw.addr());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "closed after the 400 only after {:?}",
        started.elapsed()
    );
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text:?}");
    assert!(
        body.contains("plain HTTP") && body.contains("HTTPS port"),
        "{text:?}"
    );
    let header = |name: &str| {
        head.lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    assert_eq!(header("connection").as_deref(), Some("close"), "{text:?}");

    // Bytes that cannot start a TLS record: closed at once, nothing written.
    for garbage in [
        &b"\x00\x01\x02\x03\xffgarbage\r\n\r\n"[..],
        b"hello there\r\n",
    ] {
        let mut c = Client::connect(gw.addr());
        c.send(garbage);
        assert_eq!(
            c.read_until_closed(Duration::from_secs(2)),
            Some(0),
            "{garbage:?}: closed without an answer"
        );
    }
    // Clients that give up: a close before anything, and one in the middle of a ClientHello.
    let mut quitter = Client::connect(gw.addr());
    quitter.shutdown_write();
    assert_eq!(quitter.read_until_closed(Duration::from_secs(2)), Some(0));
    let mut halfway = half_hello(gw.addr());
    halfway.shutdown_write();
    assert_eq!(halfway.read_until_closed(Duration::from_secs(2)), Some(0));

    failures(
        &gw,
        &[("plain_http", 1.0), ("not_tls", 2.0), ("closed", 2.0)],
    );
    // Still serving TLS, and nothing of the above reached the upstream.
    let mut good = TlsClient::new(&pki, "t.test").connect(gw.addr()).unwrap();
    assert_eq!(good.request(&get("t.test", "/ok")).text(), "GET /ok");
    assert_eq!(up.connections(), 1);
    assert_eq!(up.requests(), 1);

    // The 400's framing: its content-length is the length of its body.
    let length = header("content-length").expect("a content-length");
    assert_eq!(
        length,
        body.len().to_string(),
        "content-length of the 400 to plain HTTP, body {body:?}"
    );
});

both_drivers!(
    silent_and_half_hello_clients_close_after_the_timeout,
    |driver| {
        let pki = Pki::new("slow");
        let up = Upstream::start(echo);
        let gw = gateway(driver, &pki, &up, "handshake_timeout = \"1s\"");

        let started = Instant::now();
        let mut silent = Client::connect(gw.addr());
        let mut half = half_hello(gw.addr());
        for (what, conn) in [("silent", &mut silent), ("half ClientHello", &mut half)] {
            let closed = conn.read_until_closed(Duration::from_secs(5));
            let took = started.elapsed();
            assert_eq!(closed, Some(0), "{what}: closed without an answer");
            assert!(
                took >= HANDSHAKE_TIMEOUT - Duration::from_millis(100),
                "{what}: closed after {took:?}, before handshake_timeout"
            );
            assert!(
                took < HANDSHAKE_TIMEOUT * 3,
                "{what}: closed after {took:?}"
            );
        }
        failures(&gw, &[("timeout", 2.0)]);
        let stats = poll("ctl stats to count the timeouts", || {
            let stats = ctl_stats(&gw);
            match stats["listeners"]["main"]["tls"]["failures"]["timeout"].as_u64() {
                Some(2) => Ok(stats),
                _ => Err(stats.to_string()),
            }
        });
        let tls = &stats["listeners"]["main"]["tls"];
        assert_eq!(
            tls["failures"].as_object().map(|f| f.len()),
            Some(1),
            "{tls}"
        );
        assert_eq!(tls["handshakes"], 0, "{tls}");
        assert_eq!(up.connections(), 0);
    }
);

both_drivers!(silent_connections_do_not_hold_up_a_real_client, |driver| {
    const SILENT: usize = 200;
    let pki = Pki::new("crowd");
    let up = Upstream::start(echo);
    let gw = gateway(driver, &pki, &up, "handshake_timeout = \"3s\"");

    let started = Instant::now();
    let mut silent: Vec<Client> = (0..SILENT).map(|_| Client::connect(gw.addr())).collect();
    let client = TlsClient::new(&pki, "t.test");
    for i in 0..5 {
        let t = Instant::now();
        let mut conn = client
            .connect(gw.addr())
            .unwrap_or_else(|e| panic!("client {i} beside {SILENT} silent connections: {e}"));
        assert_eq!(conn.request(&get("t.test", "/")).status, 200, "client {i}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "client {i} served after {:?}",
            t.elapsed()
        );
    }
    // The real clients were served while every silent connection was still waiting.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    for (i, conn) in silent.iter_mut().enumerate() {
        let left = Duration::from_secs(8).saturating_sub(started.elapsed());
        assert_eq!(
            conn.read_until_closed(left),
            Some(0),
            "silent connection {i} closed by the timeout"
        );
    }
    failures(&gw, &[("timeout", SILENT as f64)]);
    assert_eq!(up.requests(), 5);
});
