//! TLS to upstreams: the endpoint's certificate verified against `ca` for the
//! `sni` name (else the host name written in `address`, else the IP), a client certificate
//! for upstreams that ask for one, pooled TLS connections reused, and every certificate that
//! does not verify a 502 counted as `upstream_tls`, never a fallback to plain HTTP.

mod tls_common;

use ringway_tests::tls::{tls_proxy_toml, upstream_tls_toml, CertSpec, TlsVersion, Validity};
use ringway_tests::{
    assert_gateway_error, both_drivers, get, listener_toml, proxy_toml, route_toml, Client, Driver,
    Gateway, Pki, Response, TempPath, TlsClient, TlsUpstream,
};
use std::time::Duration;
use tls_common::{access_log_lines, access_log_toml, echo, poll, scrape, wait_metrics, OBSERVE};

/// The notAfter of every certificate the harness issues: 2100-01-01T00:00:00Z.
const NOT_AFTER_UNIX_S: i64 = 4_102_444_800;

/// The name the upstream's certificate is for.
const BACKEND: &str = "backend.internal";

/// `[upstreams.tls]` trusting `pki` and sending (and verifying) `sni`.
fn tls_to(pki: &Pki, sni: &str) -> String {
    upstream_tls_toml(Some(pki.ca_file()), &format!("sni = \"{sni}\""))
}

/// One request on a fresh plain connection to the gateway.
fn request(gw: &Gateway, path: &str) -> Response {
    Client::connect(gw.addr()).request(&get("h", path))
}

both_drivers!(verified_by_ca_and_sni, |driver| {
    let pki = Pki::new("upstream");
    let up = TlsUpstream::start(&pki.issue_server(&[BACKEND]), echo);
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), &tls_to(&pki, BACKEND)));
    let resp = request(&gw, "/secure");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.text(), "GET /secure");
    let seen = up.handshakes();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].sni.as_deref(), Some(BACKEND));
    assert_eq!(seen[0].error, None);
    assert!(seen[0].client_cert.is_none());
    // The request went over TLS, but the client's side was plain HTTP.
    assert_eq!(up.received()[0].header_all("x-forwarded-proto"), ["http"]);
});

both_drivers!(pooled_tls_connections_are_reused, |driver| {
    let pki = Pki::new("pool");
    let up = TlsUpstream::start(&pki.issue_server(&[BACKEND]), echo);
    let edge = pki.issue_server(&["edge.test"]);
    let toml = tls_proxy_toml(&[&edge], "", up.addr(), &tls_to(&pki, BACKEND));
    let gw = Gateway::start(driver, &toml);
    let client = TlsClient::new(&pki, "edge.test");
    // Each request on its own client connection: only the pool links them.
    for i in 0..5 {
        let mut conn = client.connect(gw.addr()).unwrap();
        let path = format!("/{i}");
        assert_eq!(
            conn.request(&get("edge.test", &path)).text(),
            format!("GET {path}")
        );
        // The upstream connection is back in the pool once the response is complete.
        up.wait_until("the request", Duration::from_secs(5), |u| u.requests() > i);
    }
    // And several on one client connection.
    let mut conn = client.connect(gw.addr()).unwrap();
    for i in 5..8 {
        let path = format!("/{i}");
        assert_eq!(
            conn.request(&get("edge.test", &path)).text(),
            format!("GET {path}")
        );
    }
    assert_eq!(up.requests(), 8);
    assert_eq!(up.connections(), 1, "one upstream TLS connection for all");
    assert_eq!(up.handshakes().len(), 1);
    for r in up.received() {
        assert_eq!(r.connection, 0, "{}", r.target);
        assert_eq!(r.header_all("x-forwarded-proto"), ["https"], "{}", r.target);
    }
});

/// A gateway to `up` with `upstream_extra`, an access log and `/metrics`; one request must
/// get 502 caused by `upstream_tls`, and the upstream must not get it in any form.
fn refused_as_upstream_tls(driver: Driver, up: &TlsUpstream, upstream_extra: &str, case: &str) {
    let log = TempPath::new("log");
    let toml = format!(
        "{OBSERVE}{}{}",
        access_log_toml(log.path()),
        proxy_toml(up.addr(), upstream_extra)
    );
    let gw = Gateway::start(driver, &toml);
    let resp = request(&gw, "/never");
    assert_gateway_error(&resp, 502);
    let line = &access_log_lines(log.path(), 1)[0];
    assert_eq!(line["status"], 502, "{case}: {line}");
    assert_eq!(line["cause"], "upstream_tls", "{case}: {line}");
    assert_eq!(line["upstream"], "backend", "{case}: {line}");
    wait_metrics(
        &gw,
        &[(
            "ringway_upstream_errors_total",
            &[("upstream", "backend"), ("cause", "upstream_tls")],
            1.0,
        )],
    );
    let seen = up.wait_handshakes(1, Duration::from_secs(5));
    assert!(
        seen.iter().all(|s| s.error.is_some()),
        "{case}: every handshake failed: {seen:?}"
    );
    assert_eq!(up.requests(), 0, "{case}: the upstream got no request");
    assert!(up.errors().is_empty(), "{case}: {:?}", up.errors());
}

both_drivers!(wrong_ca_is_a_502_counted_as_upstream_tls, |driver| {
    let pki = Pki::new("upstream");
    let up = TlsUpstream::ok(&pki.issue_server(&[BACKEND]), "secret");
    let other = Pki::new("other");
    refused_as_upstream_tls(driver, &up, &tls_to(&other, BACKEND), "wrong CA");
});

both_drivers!(name_mismatch_is_a_502, |driver| {
    let pki = Pki::new("upstream");
    let up = TlsUpstream::ok(&pki.issue_server(&[BACKEND]), "secret");
    refused_as_upstream_tls(driver, &up, &tls_to(&pki, "other.internal"), "other name");
});

both_drivers!(expired_certificate_is_a_502, |driver| {
    let pki = Pki::new("upstream");
    let expired = pki.issue(&CertSpec::server(&[BACKEND]).validity(Validity::Expired));
    let up = TlsUpstream::ok(&expired, "secret");
    refused_as_upstream_tls(driver, &up, &tls_to(&pki, BACKEND), "expired");
});

both_drivers!(ip_endpoint_without_sni_needs_an_ip_san, |driver| {
    let pki = Pki::new("upstream");
    // No `sni`: the endpoint's IP is the name; this certificate has only a DNS name.
    let up = TlsUpstream::ok(&pki.issue_server(&[BACKEND]), "secret");
    let tls = upstream_tls_toml(Some(pki.ca_file()), "");
    refused_as_upstream_tls(driver, &up, &tls, "no IP SAN");
    assert_eq!(up.sni_seen(), [None], "no SNI for an IP address");

    // With the IP in the certificate it verifies, still without SNI.
    let up = TlsUpstream::ok(&pki.issue_server(&["127.0.0.1"]), "by ip");
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), &tls));
    assert_eq!(request(&gw, "/").text(), "by ip");
    assert_eq!(up.sni_seen(), [None]);
});

both_drivers!(host_name_endpoint_is_the_server_name, |driver| {
    let pki = Pki::new("upstream");
    let up = TlsUpstream::ok(&pki.issue_server(&["localhost"]), "by name");
    let port = up.addr().port();
    let toml = listener_toml("")
        + &format!(
            "[[upstreams]]\nname = \"backend\"\nendpoints = [{{ address = \"localhost:{port}\" }}]\n{}\n",
            upstream_tls_toml(Some(pki.ca_file()), "")
        )
        + &route_toml("all", "backend");
    let gw = Gateway::start(driver, &toml);
    let resp = request(&gw, "/");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.text(), "by name");
    assert_eq!(up.sni_seen(), [Some("localhost".to_string())]);
});

both_drivers!(
    client_certificate_for_an_upstream_that_requires_one,
    |driver| {
        let pki = Pki::new("upstream");
        let server = pki.issue_server(&[BACKEND]);
        let gw_cert = pki.issue_client("gateway");
        for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
            let up = TlsUpstream::builder(&server)
                .client_ca(&pki)
                .version(version)
                .ok("mutual");
            let with_cert = upstream_tls_toml(
                Some(pki.ca_file()),
                &format!("sni = \"{BACKEND}\"\n{}", gw_cert.toml_keys()),
            );
            let toml = OBSERVE.to_string() + &proxy_toml(up.addr(), &with_cert);
            let gw = Gateway::start(driver, &toml);
            let resp = request(&gw, "/");
            assert_eq!(resp.status, 200, "{version:?}: {}", resp.text());
            assert_eq!(resp.text(), "mutual");
            let certs = up.client_certs_seen();
            assert_eq!(certs.len(), 1, "{version:?}");
            let seen = certs[0].as_ref().expect("the gateway's certificate");
            assert_eq!(seen.sha256, gw_cert.sha256(), "{version:?}");
            assert_eq!(seen.subject, "CN=gateway, O=ringway tests");

            // The client certificate is listed with its upstream, in status and in /metrics.
            let status = gw.ctl(&["status"]).expect_ok("status");
            let listed = status["certificates"]
                .as_array()
                .expect("certificates")
                .iter()
                .find(|c| c["upstream"] == "backend")
                .unwrap_or_else(|| panic!("no certificate of upstream backend: {status}"))
                .clone();
            let file = gw_cert.cert.display().to_string();
            assert_eq!(listed["file"], file.as_str(), "{listed}");
            // RFC 4514: the last RDN first.
            assert_eq!(listed["subject"], "O=ringway tests,CN=gateway", "{listed}");
            // 2100-01-01T00:00:00Z, the harness's notAfter.
            assert_eq!(listed["not_after_unix_s"], 4_102_444_800_i64, "{listed}");
            let labels = [("upstream", "backend"), ("file", file.as_str())];
            poll("the upstream certificate's expiry gauge", || {
                let (scrape, text) = scrape(&gw);
                match tls_common::sample(&scrape, "ringway_tls_certificate_expiry_seconds", &labels)
                {
                    Some(v) if v == NOT_AFTER_UNIX_S as f64 => Ok(()),
                    other => Err(format!("{other:?}\n{text}")),
                }
            });

            // Without a certificate the upstream refuses the handshake: 502, nothing forwarded.
            let without = upstream_tls_toml(Some(pki.ca_file()), &format!("sni = \"{BACKEND}\""));
            let gw = Gateway::start(driver, &proxy_toml(up.addr(), &without));
            assert_gateway_error(&request(&gw, "/"), 502);
            let seen = up.wait_handshakes(2, Duration::from_secs(5));
            assert!(seen[1].error.is_some(), "{version:?}: {seen:?}");
            assert_eq!(up.requests(), 1, "{version:?}");
        }
    }
);

both_drivers!(health_checks_speak_tls_to_a_tls_upstream, |driver| {
    let pki = Pki::new("health");
    let up = TlsUpstream::start(&pki.issue_server(&[BACKEND]), echo);
    let extra = format!(
        "health_check = {{ path = \"/health\", interval = \"100ms\", unhealthy_threshold = 1 }}\n{}",
        tls_to(&pki, BACKEND)
    );
    let gw = Gateway::start(
        driver,
        &format!("{OBSERVE}{}", proxy_toml(up.addr(), &extra)),
    );
    up.wait_until("two health checks", Duration::from_secs(10), |u| {
        u.received()
            .iter()
            .filter(|r| r.target == "/health")
            .count()
            >= 2
    });
    assert!(
        up.handshakes()
            .iter()
            .all(|h| h.error.is_none() && h.sni.as_deref() == Some(BACKEND)),
        "{:?}",
        up.handshakes()
    );
    let endpoint = up.addr().to_string();
    wait_metrics(
        &gw,
        &[(
            "ringway_upstream_endpoint_healthy",
            &[("upstream", "backend"), ("endpoint", endpoint.as_str())],
            1.0,
        )],
    );
    assert_eq!(request(&gw, "/after").status, 200);
});

// The gateway resumes its TLS sessions with an upstream, also after a reload that leaves the
// upstream's TLS settings as they were.
both_drivers!(upstream_sessions_resume_across_a_reload, |driver| {
    let pki = Pki::new("resume-up");
    let up = TlsUpstream::builder(&pki.issue_server(&[BACKEND]))
        .tickets()
        .start(|_: &ringway_tests::Received| {
            ringway_tests::Reply::with_headers(200, &[("connection", "close")], "once")
        });
    let toml = proxy_toml(up.addr(), &tls_to(&pki, BACKEND));
    let gw = Gateway::start(driver, &toml);
    assert_eq!(request(&gw, "/1").status, 200);
    assert_eq!(request(&gw, "/2").status, 200);
    gw.ctl(&["reload"]).expect_ok("reload of the same config");
    assert_eq!(request(&gw, "/3").status, 200);
    let resumed: Vec<bool> = up.handshakes().iter().map(|h| h.resumed).collect();
    assert_eq!(resumed, [false, true, true], "{:?}", up.handshakes());
});
