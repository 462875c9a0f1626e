//! Who the client is: forwarding headers from trusted proxies are extended, from anyone else
//! replaced; the PROXY protocol (v1 and v2, plain and TLS listeners) names the client; the
//! client address drives the access log and `client_ip` rate limits.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ringway_tests::tls::tls_proxy_toml;
use ringway_tests::{
    both_drivers, listener_toml, poll_until, route_toml, upstream_toml, Client, Gateway, Pki,
    Received, Reply, TempPath, TlsClient, Upstream,
};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// One listener with `listener_extra`, an upstream answering with the forwarding headers it
/// got, a catch-all route with `route_extra`, and an access log.
fn setup(
    driver: ringway_tests::Driver,
    listener_extra: &str,
    route_extra: &str,
) -> (Gateway, Upstream, TempPath) {
    let up = Upstream::start(|req: &Received| {
        let h = |n| req.header_all(n).join(" | ");
        Reply::ok(&format!(
            "xff={};proto={};host={};fwd={};real={}",
            h("x-forwarded-for"),
            h("x-forwarded-proto"),
            h("x-forwarded-host"),
            h("forwarded"),
            h("x-real-ip"),
        ))
    });
    let log = TempPath::new("log");
    let toml = format!(
        "{}{}{}{route_extra}\n[access_log]\npath = \"{}\"\n",
        listener_toml(listener_extra),
        upstream_toml("u", &[(up.addr(), 1)], ""),
        route_toml("r", "u"),
        log.path().display(),
    );
    (Gateway::start(driver, &toml), up, log)
}

/// The access log's `client` fields, in order, once there are `n`.
fn logged_clients(log: &TempPath, n: usize) -> Vec<String> {
    poll_until("access log lines", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(log.path()).map_err(|e| e.to_string())?;
        let clients: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["client"].as_str().unwrap().to_string()
            })
            .collect();
        if clients.len() >= n {
            Ok(clients)
        } else {
            Err(format!("{clients:?}"))
        }
    })
}

const SPOOFING: &str = "GET / HTTP/1.1\r\nHost: api.example\r\n\
    X-Forwarded-For: 6.6.6.6, 198.51.100.7\r\nX-Forwarded-Proto: https\r\n\
    X-Forwarded-Host: orig.example\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n\r\n";

both_drivers!(a_trusted_proxy_s_headers_are_extended, |driver| {
    let (gw, _up, log) = setup(driver, "trusted_proxies = [\"127.0.0.2\"]", "");
    let mut c = Client::connect_from(gw.addr(), ip("127.0.0.2"));
    let resp = c.request(SPOOFING);
    assert_eq!(
        resp.text(),
        "xff=6.6.6.6, 198.51.100.7, 127.0.0.2;proto=https;host=orig.example;\
         fwd=for=6.6.6.6;real=6.6.6.6"
    );
    // The client is the nearest address that is not a trusted proxy.
    assert_eq!(logged_clients(&log, 1), vec!["198.51.100.7"]);
});

both_drivers!(anyone_else_s_headers_are_replaced, |driver| {
    let (gw, _up, log) = setup(driver, "trusted_proxies = [\"127.0.0.2\"]", "");
    let mut c = Client::connect_from(gw.addr(), ip("127.0.0.3"));
    let resp = c.request(SPOOFING);
    assert_eq!(
        resp.text(),
        "xff=127.0.0.3;proto=http;host=api.example;fwd=;real="
    );
    let port = c.local_addr().port();
    assert_eq!(logged_clients(&log, 1), vec![format!("127.0.0.3:{port}")]);
    // Without trusted_proxies, nobody is trusted.
    let (gw, _up, _log) = setup(driver, "", "");
    let mut c = Client::connect_from(gw.addr(), ip("127.0.0.2"));
    assert_eq!(
        c.request(SPOOFING).text(),
        "xff=127.0.0.2;proto=http;host=api.example;fwd=;real="
    );
});

both_drivers!(
    client_ip_rate_limits_see_through_trusted_proxies,
    |driver| {
        let limit = "rate_limit = { rate = 1, per = \"1h\", key = \"client_ip\" }";
        let (gw, _up, _log) = setup(driver, "trusted_proxies = [\"127.0.0.0/30\"]", limit);
        let via_proxy = |client: &str| {
            let mut c = Client::connect_from(gw.addr(), ip("127.0.0.2"));
            c.request(&format!(
                "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: {client}\r\n\r\n"
            ))
            .status
        };
        assert_eq!(via_proxy("198.51.100.1"), 200);
        assert_eq!(via_proxy("198.51.100.2"), 200);
        assert_eq!(via_proxy("198.51.100.1"), 429);
        // An untrusted peer cannot pick its key: it is its own address.
        let direct = |claim: &str| {
            let mut c = Client::connect_from(gw.addr(), ip("127.0.0.9"));
            c.request(&format!(
                "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: {claim}\r\n\r\n"
            ))
            .status
        };
        assert_eq!(direct("198.51.100.3"), 200);
        assert_eq!(direct("198.51.100.4"), 429);
    }
);

/// A PROXY v2 header for a TCP over IPv4 client `src`.
fn proxy_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(src), SocketAddr::V4(dst)) = (src, dst) else {
        panic!("IPv4 only")
    };
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x21, 0x11, 0, 12]);
    out.extend_from_slice(&src.ip().octets());
    out.extend_from_slice(&dst.ip().octets());
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

both_drivers!(proxy_protocol_names_the_client, |driver| {
    let (gw, _up, log) = setup(driver, "proxy_protocol = true", "");
    let mut c = Client::connect(gw.addr());
    c.send(b"PROXY TCP4 198.51.100.7 127.0.0.1 4711 80\r\n");
    for _ in 0..2 {
        let resp = c.request("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(
            resp.text().starts_with("xff=198.51.100.7;"),
            "{}",
            resp.text()
        );
    }
    // v2, with the request in the same segment as the header.
    let mut c = Client::connect(gw.addr());
    let mut bytes = proxy_v2("203.0.113.5:5000".parse().unwrap(), gw.addr());
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    c.send(&bytes);
    assert!(c.read_response().text().starts_with("xff=203.0.113.5;"));
    // UNKNOWN: the connection's own peer.
    let mut c = Client::connect(gw.addr());
    c.send(b"PROXY UNKNOWN\r\n");
    let resp = c.request("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(resp.text().starts_with("xff=127.0.0.1;"), "{}", resp.text());
    let clients = logged_clients(&log, 4);
    assert_eq!(
        clients[..3],
        ["198.51.100.7:4711", "198.51.100.7:4711", "203.0.113.5:5000"]
    );
});

both_drivers!(
    connections_without_a_valid_proxy_header_are_closed,
    |driver| {
        let (gw, up, _log) = setup(
            driver,
            "proxy_protocol = true\nheader_timeout = \"1s\"\ntrusted_proxies = [\"127.0.0.1\"]",
            "",
        );
        for preamble in [
            &b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"PROXY TCP4 198.51.100.7 127.0.0.1 4711\r\nGET / HTTP/1.1\r\n\r\n",
            b"PROXY TCP4 not-an-address 127.0.0.1 4711 80\r\n",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff",
        ] {
            let mut c = Client::connect(gw.addr());
            c.send(preamble);
            assert!(c.is_closed(Duration::from_secs(5)), "{preamble:?}");
        }
        // Silence: closed at the header timeout.
        let mut c = Client::connect(gw.addr());
        assert!(c.is_closed(Duration::from_secs(5)));
        // A valid header from outside trusted_proxies.
        let mut c = Client::connect_from(gw.addr(), ip("127.0.0.2"));
        c.send(b"PROXY TCP4 198.51.100.7 127.0.0.1 4711 80\r\n");
        assert!(c.is_closed(Duration::from_secs(5)));
        assert_eq!(up.requests(), 0);
        let stats = poll_until("failures counted", Duration::from_secs(10), || {
            let stats = gw.ctl(&["stats"]).expect_ok("stats");
            match stats["listeners"]["main"]["proxy_protocol_failures"].as_u64() {
                Some(6) => Ok(stats),
                _ => Err(stats.to_string()),
            }
        });
        assert_eq!(stats["listeners"]["main"]["accepted"], 5);
        // A trusted peer still gets through.
        let mut c = Client::connect(gw.addr());
        c.send(b"PROXY TCP4 198.51.100.7 127.0.0.1 4711 80\r\n");
        assert_eq!(c.request("GET / HTTP/1.1\r\nHost: h\r\n\r\n").status, 200);
    }
);

both_drivers!(proxy_protocol_before_tls, |driver| {
    let pki = Pki::new("pp");
    let cert = pki.issue_server(&["localhost"]);
    let up = Upstream::start(|req: &Received| {
        Reply::ok(req.header("x-forwarded-for").unwrap_or("none"))
    });
    let toml = tls_proxy_toml(&[&cert], "", up.addr(), "").replacen(
        "[listeners.tls]",
        "proxy_protocol = true\n[listeners.tls]",
        1,
    );
    let gw = Gateway::start(driver, &toml);
    let client = TlsClient::new(&pki, "localhost");
    let mut c = client
        .connect_after(gw.addr(), b"PROXY TCP4 198.51.100.7 127.0.0.1 4711 443\r\n")
        .unwrap();
    assert_eq!(
        c.request("GET / HTTP/1.1\r\nHost: h\r\n\r\n").text(),
        "198.51.100.7"
    );
    // Straight into TLS, without the header: refused.
    assert!(client.connect(gw.addr()).is_err());
});

both_drivers!(lookalike_and_extra_forwarding_headers, |driver| {
    let up = Upstream::start(|req: &Received| {
        let mut names: Vec<String> = req.headers.iter().map(|(n, _)| n.clone()).collect();
        names.sort();
        Reply::ok(&names.join(","))
    });
    let toml = format!(
        "{}{}{}",
        listener_toml("trusted_proxies = [\"127.0.0.2\"]"),
        upstream_toml("u", &[(up.addr(), 1)], ""),
        route_toml("r", "u"),
    );
    let gw = Gateway::start(driver, &toml);
    let req = "GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\nx_real_ip: 6.6.6.6\r\n\
               X-Forwarded-Port: 443\r\nX-Forwarded-Prefix: /app\r\nX-Forwarded-Ssl: on\r\n\
               X-Other_Thing: kept\r\n\r\n";
    let seen = |source: &str| {
        let mut c = Client::connect_from(gw.addr(), ip(source));
        c.request(req).text()
    };
    // Underscore spellings of forwarding fields never pass; the port, prefix and ssl fields
    // pass from a trusted proxy only.
    let untrusted = seen("127.0.0.3");
    for name in [
        "x_forwarded_for",
        "x_real_ip",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-ssl",
    ] {
        assert!(!untrusted.contains(name), "{name}: {untrusted}");
    }
    assert!(untrusted.contains("x-other_thing"), "{untrusted}");
    let trusted = seen("127.0.0.2");
    assert!(!trusted.contains("x_forwarded_for") && !trusted.contains("x_real_ip"));
    for name in ["x-forwarded-port", "x-forwarded-prefix", "x-forwarded-ssl"] {
        assert!(trusted.contains(name), "{name}: {trusted}");
    }
});

both_drivers!(ipv4_clients_of_a_dual_stack_listener_are_ipv4, |driver| {
    if std::net::TcpListener::bind("[::]:0").is_err() {
        eprintln!("no IPv6 here: skipped");
        return;
    }
    let up =
        Upstream::start(|req: &Received| Reply::ok(req.header("x-forwarded-for").unwrap_or("")));
    let log = TempPath::new("log");
    let port = ringway_tests::free_port();
    let toml = format!(
        "[[listeners]]\nname = \"main\"\nlisten = \"[::]:{port}\"\n\n{}{}[access_log]\npath = \"{}\"\n",
        upstream_toml("u", &[(up.addr(), 1)], ""),
        route_toml("r", "u"),
        log.path().display(),
    );
    let _gw = Gateway::start(driver, &toml);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = Client::connect(addr);
    let resp = c.request("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(resp.text(), "127.0.0.1");
    assert_eq!(logged_clients(&log, 1), vec![c.local_addr().to_string()]);
});

both_drivers!(
    a_proxy_header_naming_no_client_vouches_for_nothing,
    |driver| {
        let (gw, _up, _log) = setup(
            driver,
            "proxy_protocol = true\ntrusted_proxies = [\"127.0.0.1\"]",
            "",
        );
        let req = "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
        // UNKNOWN (or v2 LOCAL): the balancer itself is the peer, and its forwarding fields are
        // not believed although it is trusted: an L4 balancer does not check them.
        let mut c = Client::connect(gw.addr());
        c.send(b"PROXY UNKNOWN\r\n");
        assert!(c.request(req).text().starts_with("xff=127.0.0.1;"));
        // A named client is the peer, untrusted: its claim is replaced too.
        let mut c = Client::connect(gw.addr());
        c.send(b"PROXY TCP4 198.51.100.7 127.0.0.1 4711 80\r\n");
        assert!(c.request(req).text().starts_with("xff=198.51.100.7;"));
    }
);
