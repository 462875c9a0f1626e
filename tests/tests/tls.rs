//! TLS on a listener: which certificate SNI picks, ALPN, the TLS versions and
//! `min_version`, and mutual TLS with the client's identity forwarded in a header. The other
//! TLS files: `tls_resume.rs` (resumption across shards and reloads), `tls_bad_input.rs`
//! (what is not a TLS handshake), `tls_upstream.rs` (TLS to upstreams), `tls_reload.rs`
//! (certificate reloads) and `tls_tools.rs` (openssl and curl against the gateway).

mod tls_common;

use ringway_tests::tls::{tls_listener_toml, tls_proxy_toml, CertSpec, HandshakeKind, TlsVersion};
use ringway_tests::TempPath;
use ringway_tests::{
    both_drivers, get, route_toml, upstream_toml, CertFiles, Client, Gateway, Pki, TlsClient,
    Upstream,
};
use tls_common::{access_log_lines, access_log_toml, echo, wait_metrics, OBSERVE};

/// A client that accepts any certificate, sending `name` as SNI (`None`: no SNI), so the test
/// sees which certificate the gateway picked.
fn curious(name: Option<&str>) -> TlsClient {
    let builder = TlsClient::builder().accept_any_certificate();
    match name {
        Some(name) => builder.server_name(name),
        // No name: the address is what is verified (nothing is), and rustls sends no SNI.
        None => builder,
    }
    .build()
}

both_drivers!(sni_picks_exact_then_wildcard_else_the_first, |driver| {
    let pki = Pki::new("sni");
    let a = pki.issue_server(&["a.test"]);
    let b = pki.issue_server(&["b.test", "*.wild.test"]);
    let up = Upstream::start(echo);
    let gw = Gateway::start(driver, &tls_proxy_toml(&[&a, &b], "", up.addr(), ""));

    let (first, second) = (a.info().names, b.info().names);
    let cases: [(Option<&str>, &Vec<String>); 8] = [
        (None, &first),
        (Some("unknown.test"), &first),
        (Some("a.test"), &first),
        (Some("b.test"), &second),
        (Some("x.wild.test"), &second),
        // Names match without regard to case.
        (Some("X.Wild.TEST"), &second),
        // A wildcard stands for one label only.
        (Some("a.b.wild.test"), &first),
        (Some("wild.test"), &first),
    ];
    for (i, (name, expected)) in cases.iter().enumerate() {
        let mut conn = curious(*name)
            .connect(gw.addr())
            .unwrap_or_else(|e| panic!("SNI {name:?}: {e}"));
        assert_eq!(&conn.peer_names(), *expected, "SNI {name:?}");
        assert_eq!(conn.alpn().as_deref(), Some("http/1.1"), "SNI {name:?}");
        let path = format!("/sni/{i}");
        let resp = conn.request(&get(name.unwrap_or("h"), &path));
        assert_eq!(resp.status, 200, "SNI {name:?}: {}", resp.text());
        assert_eq!(resp.text(), format!("GET {path}"));
    }
    // The same with verifying clients: each name's certificate verifies for it.
    for name in ["a.test", "b.test", "x.wild.test"] {
        let mut conn = TlsClient::new(&pki, name)
            .connect(gw.addr())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(conn.request(&get(name, "/verified")).status, 200, "{name}");
    }
    let why = TlsClient::new(&pki, "a.b.wild.test").connect_err(gw.addr());
    assert!(why.contains("certificate not valid for name"), "{why}");

    let received = up.received();
    assert_eq!(received.len(), cases.len() + 3);
    for r in &received {
        assert_eq!(r.header_all("x-forwarded-proto"), ["https"], "{}", r.target);
    }
});

both_drivers!(alpn_prefers_h2_and_http_1_1_still_serves, |driver| {
    let pki = Pki::new("versions");
    let cert = pki.issue_server(&["v.test"]);
    let up = Upstream::start(echo);
    let gw = Gateway::start(driver, &tls_proxy_toml(&[&cert], "", up.addr(), ""));

    for version in [TlsVersion::Tls12, TlsVersion::Tls13] {
        for alpn in [&["http/1.1"][..], &["h2", "http/1.1"], &[]] {
            let client = TlsClient::builder()
                .trust(&pki)
                .server_name("v.test")
                .version(version)
                .alpn(alpn)
                .build();
            let case = format!("{version:?}, ALPN offer {alpn:?}");
            let mut conn = client
                .connect(gw.addr())
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(conn.protocol_version(), version, "{case}");
            let chosen = alpn.first().map(|p| p.to_string());
            assert_eq!(conn.alpn(), chosen, "{case}");
            if chosen.as_deref() == Some("h2") {
                // HTTP/2 over TLS is served in tests/tests/h2.rs.
                continue;
            }
            // Keep-alive: two requests on the connection, the second claiming plain HTTP.
            let resp = conn.request(&get("v.test", "/one"));
            assert_eq!(resp.text(), "GET /one", "{case}");
            let forged = "GET /two HTTP/1.1\r\nHost: v.test\r\nX-Forwarded-Proto: http\r\n\r\n";
            assert_eq!(conn.request(forged).text(), "GET /two", "{case}");
        }
    }
    let received = up.received();
    assert_eq!(received.len(), 2 * 2 * 2);
    for r in &received {
        assert_eq!(r.header_all("x-forwarded-proto"), ["https"], "{}", r.target);
    }
});

both_drivers!(min_version_1_3_refuses_a_tls_1_2_client, |driver| {
    let pki = Pki::new("min");
    let cert = pki.issue_server(&["m.test"]);
    let up = Upstream::start(echo);
    let toml =
        OBSERVE.to_string() + &tls_proxy_toml(&[&cert], "min_version = \"1.3\"", up.addr(), "");
    let gw = Gateway::start(driver, &toml);

    let client = |version| {
        TlsClient::builder()
            .trust(&pki)
            .server_name("m.test")
            .version(version)
            .build()
    };
    let why = client(TlsVersion::Tls12).connect_err(gw.addr());
    assert!(why.contains("ProtocolVersion"), "{why}");
    let mut conn = client(TlsVersion::Tls13).connect(gw.addr()).unwrap();
    assert_eq!(conn.protocol_version(), TlsVersion::Tls13);
    assert_eq!(conn.request(&get("m.test", "/")).status, 200);
    assert_eq!(up.requests(), 1);
    wait_metrics(
        &gw,
        &[
            (
                "ringway_tls_handshake_failures_total",
                &[("listener", "main"), ("reason", "protocol")],
                1.0,
            ),
            (
                "ringway_tls_handshakes_total",
                &[("listener", "main"), ("resumed", "false")],
                1.0,
            ),
        ],
    );
});

/// What the upstream should get in `x-client-cert` for `cert`, issued by a [`Pki`] (subject
/// `CN=<name>, O=ringway tests` in DER order): Envoy's XFCC element syntax, the subject in
/// RFC 4514 form, which writes the RDNs last first (`O=...,CN=...`) without spaces after
/// the commas, and a `DNS=` pair per DNS name.
fn xfcc(cert: &CertFiles) -> String {
    let mut value = format!(
        "Hash={};Subject=\"O=ringway tests,CN={}\"",
        cert.sha256(),
        cert.spec.common_name
    );
    for name in &cert.spec.names {
        value.push_str(&format!(";DNS={name}"));
    }
    value
}

/// Checks what of `values` (every `x-client-cert` an upstream got) does not depend on how
/// the subject is written: one value, `cert`'s hash first, its DNS names last. The exact value
/// is checked by each test at its end, after everything else, so that a wrong subject does
/// not hide other failures.
#[track_caller]
fn assert_identity_parts(values: &[&str], cert: &CertFiles, what: &str) {
    assert_eq!(values.len(), 1, "{what}: {values:?}");
    let prefix = format!("Hash={};Subject=\"", cert.sha256());
    assert!(values[0].starts_with(&prefix), "{what}: {values:?}");
    let sans: String = cert
        .spec
        .names
        .iter()
        .map(|n| format!(";DNS={n}"))
        .collect();
    assert!(
        values[0].ends_with(&format!("\"{sans}")),
        "{what}: {values:?}"
    );
}

/// A request that brings its own (forged) identity headers.
fn forged_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: a.test\r\nx-client-cert: Hash=00;Subject=\"CN=root\"\r\n\
         X-Client-Cert: By=spoofed\r\n\r\n"
    )
}

/// A client trusting `pki`, pinned to `version`, presenting `cert` when given.
fn mtls_client(pki: &Pki, version: TlsVersion, cert: Option<&CertFiles>) -> TlsClient {
    let builder = TlsClient::builder()
        .trust(pki)
        .server_name("a.test")
        .version(version);
    match cert {
        Some(cert) => builder.client_cert(cert),
        None => builder,
    }
    .build()
}

both_drivers!(mtls_required_refuses_without_a_good_certificate, |driver| {
    let pki = Pki::new("mtls");
    let server = pki.issue_server(&["a.test"]);
    let alice = pki.issue(&CertSpec::client("alice").names(&["alice.client.test"]));
    let mallory = Pki::new("stranger").issue_client("mallory");
    let up = Upstream::start(echo);
    let tls = format!(
        "client_ca = \"{}\"\nclient_cert_header = \"x-client-cert\"",
        pki.ca_file().display()
    );
    let toml = OBSERVE.to_string() + &tls_proxy_toml(&[&server], &tls, up.addr(), "");
    let gw = Gateway::start(driver, &toml);

    for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
        let why = mtls_client(&pki, version, None).connect_err(gw.addr());
        assert!(why.contains("received fatal alert"), "{version:?}: {why}");
        let why = mtls_client(&pki, version, Some(&mallory)).connect_err(gw.addr());
        assert!(why.contains("received fatal alert"), "{version:?}: {why}");

        let mut conn = mtls_client(&pki, version, Some(&alice))
            .connect(gw.addr())
            .unwrap_or_else(|e| panic!("{version:?}: alice: {e}"));
        assert!(conn.client_cert_requested());
        for path in ["/plain", "/forged"] {
            let req = if path == "/plain" {
                get("a.test", path)
            } else {
                forged_request(path)
            };
            let resp = conn.request(&req);
            assert_eq!(resp.text(), format!("GET {path}"), "{version:?}");
        }
    }
    let received = up.received();
    assert_eq!(received.len(), 4, "only alice's requests arrive");
    for r in &received {
        // The client's own x-client-cert never passes.
        assert_identity_parts(&r.header_all("x-client-cert"), &alice, &r.target);
        assert_eq!(r.header_all("x-forwarded-proto"), ["https"]);
    }
    wait_metrics(
        &gw,
        &[
            (
                "ringway_tls_handshake_failures_total",
                &[("listener", "main"), ("reason", "client_certificate")],
                4.0,
            ),
            (
                "ringway_tls_handshakes_total",
                &[("listener", "main"), ("resumed", "false")],
                2.0,
            ),
        ],
    );
    for r in &received {
        assert_eq!(
            r.header_all("x-client-cert"),
            [xfcc(&alice)],
            "{}",
            r.target
        );
    }
});

both_drivers!(
    mtls_optional_lets_anonymous_clients_in_without_the_header,
    |driver| {
        let pki = Pki::new("optional");
        let server = pki.issue_server(&["a.test"]);
        let alice = pki.issue_client("alice");
        let mallory = Pki::new("stranger").issue_client("mallory");
        let up = Upstream::start(echo);
        let tls = format!(
        "client_ca = \"{}\"\nclient_auth = \"optional\"\nclient_cert_header = \"x-client-cert\"",
        pki.ca_file().display()
    );
        let gw = Gateway::start(driver, &tls_proxy_toml(&[&server], &tls, up.addr(), ""));

        for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
            let mut anonymous = mtls_client(&pki, version, None)
                .connect(gw.addr())
                .unwrap_or_else(|e| panic!("{version:?}: no certificate: {e}"));
            assert!(anonymous.client_cert_requested(), "{version:?}");
            let resp = anonymous.request(&forged_request("/anonymous"));
            assert_eq!(resp.text(), "GET /anonymous", "{version:?}");

            let mut conn = mtls_client(&pki, version, Some(&alice))
                .connect(gw.addr())
                .unwrap_or_else(|e| panic!("{version:?}: alice: {e}"));
            let resp = conn.request(&forged_request("/alice"));
            assert_eq!(resp.text(), "GET /alice", "{version:?}");

            // A certificate that is presented must verify, optional or not.
            let why = mtls_client(&pki, version, Some(&mallory)).connect_err(gw.addr());
            assert!(why.contains("received fatal alert"), "{version:?}: {why}");
        }
        let received = up.received();
        assert_eq!(received.len(), 4);
        for r in &received {
            let values = r.header_all("x-client-cert");
            match r.target.as_str() {
                "/alice" => assert_identity_parts(&values, &alice, "/alice"),
                _ => assert!(values.is_empty(), "{}: {values:?}", r.target),
            }
        }
        let alice_seen: Vec<_> = received.iter().filter(|r| r.target == "/alice").collect();
        assert_eq!(alice_seen.len(), 2);
        for r in alice_seen {
            assert_eq!(r.header_all("x-client-cert"), [xfcc(&alice)]);
        }
    }
);

// The header that carries a verified identity is the gateway's alone, on every listener: a
// plain listener beside the mutual-TLS one must not let a client pass off its own copy, in any
// spelling a CGI-style upstream would read as the same header.
both_drivers!(no_listener_forwards_a_forged_client_cert_header, |driver| {
    let pki = Pki::new("forge");
    let server = pki.issue_server(&["a.test"]);
    let up = Upstream::start(echo);
    let tls = format!(
        "client_ca = \"{}\"\nclient_auth = \"optional\"\nclient_cert_header = \"x-client-cert\"",
        pki.ca_file().display()
    );
    let toml = format!(
        "{}[[listeners]]\nname = \"plain\"\nlisten = \"{{listen2}}\"\n\n{}{}",
        tls_listener_toml("", &[&server], &tls),
        upstream_toml("backend", &[(up.addr(), 1)], ""),
        route_toml("all", "backend"),
    );
    let gw = Gateway::start(driver, &toml);
    let forged = "GET /forged HTTP/1.1\r\nHost: a.test\r\nx-client-cert: Hash=00\r\n\
                  X_Client_Cert: Hash=01\r\nx-client_CERT: Hash=02\r\nx-client-certs: kept\r\n\r\n";
    let plain = Client::connect(gw.addr2()).request(forged);
    assert_eq!(plain.status, 200);
    let mut anonymous = mtls_client(&pki, TlsVersion::Tls13, None)
        .connect(gw.addr())
        .unwrap();
    assert_eq!(anonymous.request(forged).status, 200);
    let received = up.received();
    assert_eq!(received.len(), 2);
    for r in &received {
        let forwarded: Vec<&str> = r
            .headers
            .iter()
            .filter(|(n, _)| n.replace('_', "-") == "x-client-cert")
            .map(|(_, v)| v.as_str())
            .collect();
        assert!(forwarded.is_empty(), "{forwarded:?}");
        assert_eq!(
            r.header_all("x-client-certs"),
            ["kept"],
            "only the exact name"
        );
    }
});

// A reload that makes client certificates required must not be walked around by resuming a
// session made without one.
both_drivers!(
    tightening_mutual_tls_ends_resumption_without_a_certificate,
    |driver| {
        let pki = Pki::new("tighten");
        let server = pki.issue_server(&["a.test"]);
        let alice = pki.issue_client("alice");
        let up = Upstream::start(echo);
        let tls = |auth: &str| {
            format!(
                "client_ca = \"{}\"\nclient_auth = \"{auth}\"",
                pki.ca_file().display()
            )
        };
        let gw = Gateway::start(
            driver,
            &tls_proxy_toml(&[&server], &tls("optional"), up.addr(), ""),
        );
        for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
            let anonymous = mtls_client(&pki, version, None);
            let mut first = anonymous.connect(gw.addr()).unwrap();
            assert_eq!(first.request(&get("a.test", "/")).status, 200);
            let mut again = anonymous.connect(gw.addr()).unwrap();
            assert_eq!(again.request(&get("a.test", "/")).status, 200);
            assert_eq!(
                again.handshake_kind(),
                HandshakeKind::Resumed,
                "{version:?}"
            );
        }
        // The same again with certificates required: the sessions above carry none.
        let clients: Vec<TlsClient> = [TlsVersion::Tls13, TlsVersion::Tls12]
            .into_iter()
            .map(|v| mtls_client(&pki, v, None))
            .collect();
        for client in &clients {
            let mut conn = client.connect(gw.addr()).unwrap();
            assert_eq!(conn.request(&get("a.test", "/")).status, 200);
        }
        gw.write_config(&tls_proxy_toml(&[&server], &tls("required"), up.addr(), ""));
        gw.ctl(&["reload"])
            .expect_ok("reload requiring certificates");
        for client in &clients {
            let refused = match client.connect(gw.addr()) {
                Err(_) => true,
                Ok(mut conn) => {
                    conn.try_send(get("a.test", "/").as_bytes()).is_err()
                        || conn.try_read_response_to("GET").is_err()
                }
            };
            assert!(refused, "a session without a certificate must not resume");
        }
        // A client with a certificate still gets in.
        let mut conn = mtls_client(&pki, TlsVersion::Tls13, Some(&alice))
            .connect(gw.addr())
            .unwrap();
        assert_eq!(conn.request(&get("a.test", "/")).status, 200);
    }
);

// The access log says how each request arrived: TLS version, the name asked for, and the
// verified client's subject; plain requests have nulls there.
both_drivers!(access_log_names_tls_version_sni_and_client, |driver| {
    let pki = Pki::new("log");
    let server = pki.issue_server(&["a.test"]);
    let alice = pki.issue_client("alice");
    let up = Upstream::start(echo);
    let log = TempPath::new("log");
    let tls = format!(
        "client_ca = \"{}\"\nclient_auth = \"optional\"",
        pki.ca_file().display()
    );
    let toml = format!(
        "{}{}[[listeners]]\nname = \"plain\"\nlisten = \"{{listen2}}\"\n\n{}{}",
        access_log_toml(log.path()),
        tls_listener_toml("", &[&server], &tls),
        upstream_toml("backend", &[(up.addr(), 1)], ""),
        route_toml("all", "backend"),
    );
    let gw = Gateway::start(driver, &toml);
    let mut with_cert = mtls_client(&pki, TlsVersion::Tls13, Some(&alice))
        .connect(gw.addr())
        .unwrap();
    assert_eq!(with_cert.request(&get("a.test", "/1")).status, 200);
    let mut anonymous = mtls_client(&pki, TlsVersion::Tls12, None)
        .connect(gw.addr())
        .unwrap();
    assert_eq!(anonymous.request(&get("a.test", "/2")).status, 200);
    assert_eq!(
        Client::connect(gw.addr2())
            .request(&get("a.test", "/3"))
            .status,
        200
    );
    let mut lines = access_log_lines(log.path(), 3);
    lines.sort_by_key(|l| l["path"].as_str().unwrap_or_default().to_owned());
    let fields = |l: &serde_json::Value| {
        (
            l["tls"].as_str().map(str::to_owned),
            l["sni"].as_str().map(str::to_owned),
            l["client_cert"].as_str().map(str::to_owned),
        )
    };
    // RFC 4514: the last RDN first (the harness's CertInfo prints them in certificate order).
    let subject = "O=ringway tests,CN=alice".to_owned();
    assert_eq!(
        fields(&lines[0]),
        (Some("TLSv1.3".into()), Some("a.test".into()), Some(subject))
    );
    assert_eq!(
        fields(&lines[1]),
        (Some("TLSv1.2".into()), Some("a.test".into()), None)
    );
    assert_eq!(fields(&lines[2]), (None, None, None));
    assert!(lines[2]["tls"].is_null() && lines[2]["client_cert"].is_null());
});
