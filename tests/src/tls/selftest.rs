//! The TLS harness tested against itself, no gateway: [`TlsClient`] against [`TlsUpstream`],
//! and the OpenSSL tools against both, so they are known good before they judge the gateway.

use super::*;
use crate::{get, Reply};
use std::time::Duration;

#[test]
fn the_harness_types_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Pki>();
    send_sync::<CertFiles>();
    send_sync::<TlsClient>();
    send_sync::<TlsUpstream>();
    fn send<T: Send>() {}
    send::<TlsConn>();
}

fn echo(req: &crate::Received) -> Reply {
    Reply::ok(&format!("{} {}", req.method, req.target))
}

#[test]
fn sni_names_and_alpn_are_seen_on_both_sides() {
    let pki = Pki::new("sni");
    let cert = pki.issue_server(&["a.test", "*.wild.test", "127.0.0.1"]);
    let up = TlsUpstream::builder(&cert).alpn(&["http/1.1"]).start(echo);

    let mut conn = TlsClient::new(&pki, "a.test").connect(up.addr()).unwrap();
    assert_eq!(conn.request(&get("a.test", "/x")).text(), "GET /x");
    assert_eq!(conn.peer_names(), ["a.test", "*.wild.test", "127.0.0.1"]);
    assert_eq!(conn.peer_cert().sha256, cert.sha256());
    assert_eq!(conn.peer_certificates().len(), 1);
    assert_eq!(conn.alpn().as_deref(), Some("http/1.1"));
    assert_eq!(conn.protocol_version(), TlsVersion::Tls13);
    assert_eq!(conn.handshake_kind(), HandshakeKind::Full);
    assert!(!conn.client_cert_requested());

    // A wildcard name, then no server name at all: the address is verified against the IP
    // SAN, and no SNI goes out.
    let mut wild = TlsClient::new(&pki, "x.wild.test")
        .connect(up.addr())
        .unwrap();
    assert_eq!(wild.request(&get("h", "/")).status, 200);
    let by_ip = TlsClient::builder().trust(&pki).build();
    assert_eq!(
        by_ip
            .connect(up.addr())
            .unwrap()
            .request(&get("h", "/"))
            .status,
        200
    );
    // SNI off, the name still verified.
    let no_sni = TlsClient::builder()
        .trust(&pki)
        .server_name("a.test")
        .sni(false)
        .alpn(&[])
        .build();
    let mut quiet = no_sni.connect(up.addr()).unwrap();
    assert_eq!(quiet.request(&get("h", "/")).status, 200);
    assert_eq!(quiet.alpn(), None);

    assert_eq!(
        up.sni_seen(),
        [
            Some("a.test".into()),
            Some("x.wild.test".into()),
            None,
            None
        ]
    );
    let seen = up.handshakes();
    assert_eq!(seen[0].alpn_offered, ["http/1.1"]);
    assert_eq!(seen[0].alpn.as_deref(), Some("http/1.1"));
    assert!(seen[3].alpn_offered.is_empty());
    assert!(seen
        .iter()
        .all(|s| s.error.is_none() && s.client_cert.is_none()));
    assert_eq!(up.requests(), 4);
}

#[test]
fn client_certificates_are_required_and_seen() {
    let pki = Pki::new("mtls");
    let server = pki.issue_server(&["backend.internal"]);
    let alice = pki.issue_client("alice");
    for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
        let up = TlsUpstream::builder(&server)
            .client_ca(&pki)
            .version(version)
            .ok("hi");
        let client = |cert: Option<&CertFiles>| {
            let builder = TlsClient::builder()
                .trust(&pki)
                .server_name("backend.internal");
            match cert {
                Some(cert) => builder.client_cert(cert),
                None => builder,
            }
            .build()
        };

        let mut conn = client(Some(&alice)).connect(up.addr()).unwrap();
        assert_eq!(conn.request(&get("h", "/")).text(), "hi");
        assert!(conn.client_cert_requested());
        assert_eq!(conn.protocol_version(), version);

        let why = client(None).connect_err(up.addr());
        assert!(
            why.contains("received fatal alert: CertificateRequired")
                || why.contains("received fatal alert: HandshakeFailure"),
            "{version:?}: {why}"
        );
        // A certificate from a CA the upstream does not trust.
        let stranger = Pki::new("stranger").issue_client("mallory");
        let why = client(Some(&stranger)).connect_err(up.addr());
        assert!(why.contains("received fatal alert"), "{version:?}: {why}");

        up.wait_handshakes(3, Duration::from_secs(5));
        let certs = up.client_certs_seen();
        assert_eq!(certs.len(), 3, "{version:?}");
        let seen = certs[0].as_ref().expect("alice's certificate");
        assert_eq!(seen.common_name.as_deref(), Some("alice"));
        assert_eq!(seen.subject, "CN=alice, O=ringway tests");
        assert_eq!(seen.sha256, alice.sha256());
        assert_eq!(seen.serial, alice.serial());
        let errors = up.handshake_errors();
        assert_eq!(errors.len(), 2, "{version:?}: {errors:?}");
        assert!(errors[1].contains("UnknownIssuer"), "{errors:?}");
        assert_eq!(up.requests(), 1);
    }
}

#[test]
fn optional_client_auth_serves_clients_without_a_certificate() {
    let pki = Pki::new("optional");
    let up = TlsUpstream::builder(&pki.issue_server(&["o.test"]))
        .client_ca(&pki)
        .optional_client_auth()
        .ok("either way");
    let mut anonymous = TlsClient::new(&pki, "o.test").connect(up.addr()).unwrap();
    assert!(anonymous.client_cert_requested());
    assert_eq!(anonymous.request(&get("h", "/")).text(), "either way");
    assert_eq!(up.client_certs_seen(), [None]);
}

#[test]
fn sessions_resume_through_a_shared_store() {
    let pki = Pki::new("resume");
    let cert = pki.issue_server(&["r.test"]);
    for (version, tickets) in [
        (TlsVersion::Tls13, false),
        (TlsVersion::Tls13, true),
        (TlsVersion::Tls12, false),
        (TlsVersion::Tls12, true),
    ] {
        let builder = TlsUpstream::builder(&cert).version(version);
        let up = if tickets { builder.tickets() } else { builder }.start(echo);
        // Two clients sharing sessions, as two gateway shards' clients would see them.
        let first = TlsClient::new(&pki, "r.test");
        let second = TlsClient::builder()
            .resume_with(&first)
            .server_name("r.test")
            .build();
        let mut conn = first.connect(up.addr()).unwrap();
        assert_eq!(conn.handshake_kind(), HandshakeKind::Full);
        // TLS 1.3 tickets come after the handshake: one exchange reads them.
        assert_eq!(conn.request(&get("h", "/1")).status, 200);
        let mut again = second.connect(up.addr()).unwrap();
        let case = format!("{version:?}, tickets {tickets}");
        assert_eq!(again.handshake_kind(), HandshakeKind::Resumed, "{case}");
        assert_eq!(again.protocol_version(), version);
        assert_eq!(again.request(&get("h", "/2")).text(), "GET /2");
        // The certificates of the first handshake are still known.
        assert_eq!(again.peer_names(), ["r.test"], "{case}");
        let resumed: Vec<bool> = up.handshakes().iter().map(|s| s.resumed).collect();
        assert_eq!(resumed, [false, true], "{case}");

        let fresh = TlsClient::builder()
            .trust(&pki)
            .server_name("r.test")
            .no_resumption()
            .build();
        let mut full = fresh.connect(up.addr()).unwrap();
        full.request(&get("h", "/"));
        let full = fresh.connect(up.addr()).unwrap();
        assert_eq!(full.handshake_kind(), HandshakeKind::Full, "{case}");
    }
}

#[test]
fn verification_failures_name_the_reason() {
    let pki = Pki::new("verify");
    let up = TlsUpstream::ok(&pki.issue_server(&["v.test"]), "x");

    let other = Pki::new("other");
    let why = TlsClient::new(&other, "v.test").connect_err(up.addr());
    assert!(
        why.contains("invalid peer certificate: UnknownIssuer"),
        "{why}"
    );
    let why = TlsClient::new(&pki, "w.test").connect_err(up.addr());
    assert!(
        why.contains("invalid peer certificate: certificate not valid for name \"w.test\""),
        "{why}"
    );
    assert!(
        why.starts_with(&format!("TLS handshake with {}", up.addr())),
        "{why}"
    );
    // By address, but the certificate has no IP SAN.
    let why = TlsClient::builder()
        .trust(&pki)
        .build()
        .connect_err(up.addr());
    assert!(why.contains("certificate not valid for name"), "{why}");

    up.wait_handshakes(3, Duration::from_secs(5));
    let errors = up.handshake_errors();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].contains("UnknownCA"), "{errors:?}");
    assert!(errors[1].contains("BadCertificate"), "{errors:?}");

    // What an untrusting client still sees.
    let any = TlsClient::builder().accept_any_certificate().build();
    assert_eq!(any.connect(up.addr()).unwrap().peer_names(), ["v.test"]);
}

#[test]
fn expired_and_future_certificates_fail() {
    let pki = Pki::new("dates");
    for (validity, reason) in [
        (
            Validity::Expired,
            "invalid peer certificate: certificate expired",
        ),
        (
            Validity::NotYetValid,
            "invalid peer certificate: certificate not valid yet",
        ),
    ] {
        let cert = pki.issue(&CertSpec::server(&["d.test"]).validity(validity));
        let up = TlsUpstream::ok(&cert, "x");
        let why = TlsClient::new(&pki, "d.test").connect_err(up.addr());
        assert!(why.contains(reason), "{validity:?}: {why}");
    }
}

#[test]
fn reissued_certificates_replace_the_files_with_a_new_serial() {
    let pki = Pki::new("reload");
    let old = pki.issue(&CertSpec::server(&["r.test"]).file_stem("edge"));
    assert_eq!(old.cert, pki.dir().join("edge.pem"));
    assert_eq!(old.key, pki.dir().join("edge.key"));
    let new = pki.reissue(&old);
    assert_eq!((&new.cert, &new.key), (&old.cert, &old.key));
    assert_ne!(new.serial(), old.serial());
    assert_ne!(new.sha256(), old.sha256());
    assert_ne!(new.key_pem, old.key_pem);
    assert_eq!(new.info().names, ["r.test"]);
    let on_disk = CertInfo::from_pem_file(&new.cert);
    assert_eq!(on_disk.serial, new.serial());
    assert_eq!(std::fs::read_to_string(&new.key).unwrap(), new.key_pem);

    // Served from the files, old then new.
    let up = TlsUpstream::ok(&old, "old");
    let conn = TlsClient::new(&pki, "r.test").connect(up.addr()).unwrap();
    assert_eq!(conn.peer_cert().serial, old.serial());
    let up = TlsUpstream::ok(&new, "new");
    let conn = TlsClient::new(&pki, "r.test").connect(up.addr()).unwrap();
    assert_eq!(conn.peer_cert().serial, new.serial());
}

#[test]
fn pki_files_live_in_its_directory_until_drop() {
    let pki = Pki::new("files");
    let client = pki.issue_client("bob");
    let info = client.info();
    assert_eq!(info.subject, "CN=bob, O=ringway tests");
    assert_eq!(info.issuer, "CN=files CA, O=ringway tests");
    assert!(info.names.is_empty());
    assert_eq!(CertInfo::from_pem_file(pki.ca_file()).subject, info.issuer);
    assert!(client.cert.starts_with(pki.dir()) && client.key.starts_with(pki.dir()));
    assert!(std::fs::read_to_string(&client.key)
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    let entry = client.toml();
    assert_eq!(
        entry,
        format!(
            "{{ cert = \"{}\", key = \"{}\" }}",
            client.cert.display(),
            client.key.display()
        )
    );
    let relative = client.toml_relative();
    assert!(
        relative.starts_with("{ cert = \"client-0-bob.pem\""),
        "{relative}"
    );
    let bundle = pki.write_file("bundle.pem", &(pki.ca_pem().to_owned() + pki.ca_pem()));
    assert_eq!(bundle, pki.dir().join("bundle.pem"));

    let dir = pki.dir().to_path_buf();
    drop(pki);
    assert!(!dir.exists());
    assert!(!client.cert.exists());
}

#[test]
fn intermediates_travel_in_the_certificate_file() {
    let root = Pki::new("root");
    let issuing = root.intermediate("issuing");
    assert_eq!(
        std::fs::read(issuing.ca_file()).unwrap(),
        root.ca_pem().as_bytes()
    );
    let cert = issuing.issue_server(&["chain.test"]);
    assert_eq!(cert.chain.len(), 2);
    assert_eq!(cert.cert_pem.matches("BEGIN CERTIFICATE").count(), 2);
    let up = TlsUpstream::ok(&cert, "chained");
    let mut conn = TlsClient::builder()
        .trust_file(root.ca_file())
        .server_name("chain.test")
        .build()
        .connect(up.addr())
        .unwrap();
    assert_eq!(conn.peer_certificates().len(), 2);
    assert_eq!(
        CertInfo::parse(&conn.peer_certificates()[1]).subject,
        "CN=issuing CA, O=ringway tests"
    );
    assert_eq!(conn.request(&get("h", "/")).text(), "chained");
}

#[test]
fn every_key_kind_and_version_handshakes() {
    let pki = Pki::new("kinds");
    for key in [KeyKind::EcdsaP384, KeyKind::Ed25519, KeyKind::Rsa2048] {
        let cert = pki.issue(&CertSpec::server(&["k.test"]).key(key));
        let up = TlsUpstream::ok(&cert, "k");
        for version in [TlsVersion::Tls12, TlsVersion::Tls13] {
            let client = TlsClient::builder()
                .trust(&pki)
                .server_name("k.test")
                .version(version)
                .build();
            let mut conn = client.connect(up.addr()).unwrap();
            assert_eq!(conn.protocol_version(), version, "{key:?}");
            assert_eq!(
                conn.request(&get("h", "/")).text(),
                "k",
                "{key:?} {version:?}"
            );
        }
    }
    // A client pinned to 1.2 against an upstream pinned to 1.3.
    let up = TlsUpstream::builder(&pki.issue_server(&["k.test"]))
        .version(TlsVersion::Tls13)
        .ok("k");
    let old = TlsClient::builder()
        .trust(&pki)
        .server_name("k.test")
        .version(TlsVersion::Tls12)
        .build();
    let why = old.connect_err(up.addr());
    assert!(why.contains("ProtocolVersion"), "{why}");
}

#[test]
fn tls_connections_frame_bodies_and_closes_as_plain_ones() {
    let pki = Pki::new("bodies");
    let up = TlsUpstream::start(&pki.issue_server(&["b.test"]), |req| {
        match req.target.as_str() {
            "/big" => Reply::Sized {
                status: 200,
                len: 3 << 20,
                chunked: true,
            },
            "/close" => Reply::Close,
            "/until-close" => Reply::RawThenClose(b"HTTP/1.1 200 OK\r\n\r\nrest".to_vec()),
            _ => Reply::ok(&format!("{} bytes", req.body_len)),
        }
    });
    let client = TlsClient::new(&pki, "b.test");
    let mut conn = client.connect(up.addr()).unwrap();
    let big = conn.request(&get("h", "/big"));
    assert!(big.chunked && big.body == Reply::sized_body(3 << 20));
    let upload = "x".repeat(200_000);
    let post = format!("POST /up HTTP/1.1\r\nHost: h\r\ncontent-length: 200000\r\n\r\n{upload}");
    assert_eq!(conn.request(&post).text(), "200000 bytes");

    conn.send(get("h", "/close").as_bytes());
    assert!(conn.is_closed(Duration::from_secs(5)));
    let mut conn = client.connect(up.addr()).unwrap();
    // close_notify ends a body read until close.
    assert_eq!(conn.request(&get("h", "/until-close")).text(), "rest");
    // The client's close_notify reads as end of file upstream.
    let mut conn = client.connect(up.addr()).unwrap();
    conn.shutdown_write();
    assert!(conn.is_closed(Duration::from_secs(5)));
    assert!(up.errors().is_empty(), "{:?}", up.errors());
}

#[test]
fn config_snippets_name_the_files() {
    let pki = Pki::new("toml");
    let (a, b) = (pki.issue_server(&["a.test"]), pki.issue_server(&["b.test"]));
    let listener = tls_listener_toml("", &[&a, &b], "min_version = \"1.3\"");
    assert!(listener.starts_with("[[listeners]]\nname = \"main\"\nlisten = \"{listen}\"\n"));
    assert!(listener.contains(&format!(
        "[listeners.tls]\ncertificates = [{}, {}]\nmin_version = \"1.3\"\n",
        a.toml(),
        b.toml()
    )));
    let gw_cert = pki.issue_client("gateway");
    let upstream = upstream_tls_toml(Some(pki.ca_file()), &gw_cert.toml_keys());
    assert_eq!(
        upstream,
        format!(
            "[upstreams.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\n",
            pki.ca_file().display(),
            gw_cert.cert.display(),
            gw_cert.key.display()
        )
    );
    let addr = "127.0.0.1:9".parse().unwrap();
    let proxy = tls_proxy_toml(&[&a], "", addr, &upstream);
    let tls_at = proxy.find("[listeners.tls]").unwrap();
    let upstream_at = proxy.find("[[upstreams]]").unwrap();
    let upstream_tls_at = proxy.find("[upstreams.tls]").unwrap();
    assert!(tls_at < upstream_at && upstream_at < upstream_tls_at);
    assert!(proxy.ends_with("[[routes]]\nname = \"all\"\nupstream = \"backend\"\n\n"));
}

#[test]
fn openssl_and_curl_talk_to_the_tls_upstream() {
    let pki = Pki::new("tools");
    let server = pki.issue_server(&["t.test"]);
    let up = TlsUpstream::builder(&server)
        .client_ca(&pki)
        .optional_client_auth()
        .alpn(&["http/1.1"])
        .start(echo);
    let ca = pki.ca_file().display().to_string();
    match openssl_s_client(up.addr(), Some("t.test"), &["-CAfile", &ca]) {
        None => eprintln!("openssl is not installed: s_client checks skipped"),
        Some(out) => {
            assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
            assert!(
                out.contains("CN = t.test") || out.contains("CN=t.test"),
                "{out}"
            );
        }
    }
    match openssl_s_client(up.addr(), None, &["-tls1_2"]) {
        None => {}
        Some(out) => assert!(out.contains("TLSv1.2"), "{out}"),
    }
    let alice = pki.issue_client("alice");
    let (cert, key) = (
        alice.cert.display().to_string(),
        alice.key.display().to_string(),
    );
    let with_cert = ["--cert", &cert, "--key", &key];
    let Some(out) = curl_https(
        up.addr(),
        "t.test",
        "/hello",
        Some(pki.ca_file()),
        &with_cert,
    ) else {
        eprintln!("curl is not installed: curl checks skipped");
        return;
    };
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.status(), Some(200), "{out:?}");
    assert_eq!(out.body(), "GET /hello");
    let curl_seen = up
        .handshakes()
        .into_iter()
        .find(|s| s.client_cert.is_some())
        .expect("curl's handshake, with alice's certificate");
    assert_eq!(curl_seen.sni.as_deref(), Some("t.test"));
    assert_eq!(curl_seen.client_cert.unwrap().sha256, alice.sha256());
    // Without the CA: not trusted (curl's exit code 60).
    let untrusted = curl_https(up.addr(), "t.test", "/", None, &[]).unwrap();
    assert_eq!(untrusted.code, Some(60), "{untrusted:?}");
    assert_eq!(untrusted.status(), None);
}
