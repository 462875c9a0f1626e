//! The gateway's TLS seen by a second TLS stack: `openssl s_client` and `curl`,
//! both on OpenSSL. Each part is skipped, with a note on stderr, where its tool is not
//! installed; the rustls tests in the other `tls*.rs` files cover the same ground regardless.

mod tls_common;

use ringway_tests::tls::{curl_https, openssl_s_client, tls_proxy_toml};
use ringway_tests::{both_drivers, Gateway, Pki, Upstream};
use tls_common::echo;

/// The `subject=` line openssl prints for the peer's certificate.
fn subject_line(out: &str) -> &str {
    out.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_else(|| panic!("no subject line:\n{out}"))
}

both_drivers!(
    openssl_s_client_gets_the_certificate_for_its_name,
    |driver| {
        let pki = Pki::new("openssl");
        let a = pki.issue_server(&["a.test"]);
        let b = pki.issue_server(&["b.test", "*.wild.test"]);
        let up = Upstream::start(echo);
        let gw = Gateway::start(driver, &tls_proxy_toml(&[&a, &b], "", up.addr(), ""));
        let ca = pki.ca_file().display().to_string();

        let cases = [
            (Some("a.test"), "a.test"),
            (Some("b.test"), "b.test"),
            (Some("x.wild.test"), "b.test"),
            (Some("unknown.test"), "a.test"),
            (None, "a.test"),
        ];
        for (name, common_name) in cases {
            let mut args = vec!["-CAfile", ca.as_str(), "-alpn", "http/1.1"];
            if let Some(name) = name {
                args.extend(["-verify_hostname", name]);
            }
            let Some(out) = openssl_s_client(gw.addr(), name, &args) else {
                eprintln!("openssl is not installed: s_client checks skipped");
                return;
            };
            let subject = subject_line(&out);
            assert!(
                subject.contains(&format!("CN = {common_name},"))
                    || subject.contains(&format!("CN={common_name},")),
                "{name:?}: {subject}\n{out}"
            );
            let verified = name != Some("unknown.test");
            assert_eq!(
                out.contains("Verify return code: 0 (ok)"),
                verified,
                "{name:?}:\n{out}"
            );
            assert!(out.contains("ALPN protocol: http/1.1"), "{name:?}:\n{out}");
        }
        for (flag, version) in [
            ("-no_tls1_3", "TLSv1.2"),
            ("-tls1_2", "TLSv1.2"),
            ("-tls1_3", "TLSv1.3"),
        ] {
            let out = openssl_s_client(gw.addr(), Some("b.test"), &["-CAfile", &ca, flag])
                .expect("openssl ran above");
            assert!(
                out.contains(&format!("Protocol  : {version}"))
                    || out.contains(&format!("New, {version}")),
                "{flag}:\n{out}"
            );
            assert!(out.contains("Verify return code: 0 (ok)"), "{flag}:\n{out}");
        }
        // TLS 1.1 is refused: no certificate, no cipher.
        let out =
            openssl_s_client(gw.addr(), Some("a.test"), &["-tls1_1"]).expect("openssl ran above");
        assert!(out.contains("no peer certificate available"), "{out}");
        assert!(out.contains("Cipher is (NONE)"), "{out}");
    }
);

both_drivers!(curl_fetches_through_the_gateway, |driver| {
    let pki = Pki::new("curl");
    let a = pki.issue_server(&["a.test"]);
    let b = pki.issue_server(&["b.test", "*.wild.test"]);
    let up = Upstream::start(echo);
    let gw = Gateway::start(driver, &tls_proxy_toml(&[&a, &b], "", up.addr(), ""));

    for (host, common_name) in [
        ("a.test", "a.test"),
        ("b.test", "b.test"),
        ("x.wild.test", "b.test"),
    ] {
        for version_args in [&["--tlsv1.3"][..], &["--tls-max", "1.2"]] {
            let mut args = vec!["-v"];
            args.extend(version_args);
            let Some(out) = curl_https(gw.addr(), host, "/hello", Some(pki.ca_file()), &args)
            else {
                eprintln!("curl is not installed: curl checks skipped");
                return;
            };
            let case = format!("{host} {version_args:?}");
            assert_eq!(out.code, Some(0), "{case}: {out:?}");
            assert_eq!(out.status(), Some(200), "{case}: {out:?}");
            assert_eq!(out.body(), "GET /hello", "{case}");
            assert!(
                out.stderr.contains(&format!("subject: CN={common_name}")),
                "{case}: {}",
                out.stderr
            );
            assert!(
                out.stderr.contains("ALPN: server accepted http/1.1"),
                "{case}: {}",
                out.stderr
            );
        }
    }
    for r in up.received() {
        assert_eq!(r.header_all("x-forwarded-proto"), ["https"]);
    }
    // Without the test CA: not trusted (exit code 60), nothing forwarded.
    let before = up.requests();
    let untrusted = curl_https(gw.addr(), "a.test", "/", None, &[]).expect("curl ran above");
    assert_eq!(untrusted.code, Some(60), "{untrusted:?}");
    assert_eq!(up.requests(), before);
});

both_drivers!(curl_with_a_client_certificate, |driver| {
    let pki = Pki::new("curl-mtls");
    let server = pki.issue_server(&["a.test"]);
    let alice = pki.issue_client("alice");
    let up = Upstream::start(echo);
    let tls = format!(
        "client_ca = \"{}\"\nclient_cert_header = \"x-client-cert\"",
        pki.ca_file().display()
    );
    let gw = Gateway::start(driver, &tls_proxy_toml(&[&server], &tls, up.addr(), ""));
    let (cert, key) = (
        alice.cert.display().to_string(),
        alice.key.display().to_string(),
    );
    let args = [
        "--cert",
        cert.as_str(),
        "--key",
        key.as_str(),
        "-H",
        "x-client-cert: forged",
    ];
    let Some(out) = curl_https(gw.addr(), "a.test", "/me", Some(pki.ca_file()), &args) else {
        eprintln!("curl is not installed: curl checks skipped");
        return;
    };
    assert_eq!(out.status(), Some(200), "{out:?}");
    let received = up.received();
    assert_eq!(received.len(), 1);
    let values = received[0].header_all("x-client-cert");
    assert_eq!(values.len(), 1, "{values:?}");
    assert!(
        values[0].starts_with(&format!("Hash={};Subject=\"", alice.sha256())),
        "{values:?}"
    );
    // No certificate: refused in the handshake (curl's 35 or 56, by TLS version).
    let out = curl_https(gw.addr(), "a.test", "/", Some(pki.ca_file()), &[]).expect("curl ran");
    assert!(matches!(out.code, Some(35 | 56)), "{out:?}");
    assert_eq!(out.status(), None, "{out:?}");
    assert_eq!(up.requests(), 1);
});
