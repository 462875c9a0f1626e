//! HTTP/2 from clients, seen by real HTTP/2 clients: curl (nghttp2) with prior knowledge on a
//! plain listener and by ALPN over TLS, and h2load for many concurrent streams on few
//! connections. Where a tool is not installed its part is skipped with a note on stderr
//! (.ci/run installs both). Hostile HTTP/2 is in h2_hostile.rs, gRPC in grpc.rs.

use std::process::Command;

use ringway_tests::tls::{curl_https, tls_proxy_toml};
use ringway_tests::{
    both_drivers, get, proxy_toml, Client, Gateway, Pki, Received, Reply, Upstream,
};

/// An upstream answering `METHOD TARGET BODY-LENGTH` to every request.
fn echo() -> Upstream {
    Upstream::start(|req: &Received| {
        Reply::ok(&format!("{} {} {}", req.method, req.target, req.body.len()))
    })
}

/// Runs curl with `args`; `None` when curl is not installed.
fn curl(args: &[&str]) -> Option<(String, String)> {
    match Command::new("curl").args(args).output() {
        Ok(out) => Some((
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("curl is not installed: curl checks skipped");
            None
        }
        Err(e) => panic!("curl: {e}"),
    }
}

both_drivers!(
    h2c_by_prior_knowledge_beside_http_1_1_on_one_port,
    |driver| {
        let up = echo();
        let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
        let url = format!("http://{}/a?x=1", gw.addr());
        let Some((out, err)) = curl(&[
            "-sS",
            "--http2-prior-knowledge",
            "-H",
            "host: h2.test",
            "-w",
            "\n%{http_version} %{http_code}",
            &url,
        ]) else {
            return;
        };
        assert_eq!(out, "GET /a?x=1 0\n2 200", "curl stderr: {err}");
        // HTTP/1.1 on the same port, after and beside it.
        let mut client = Client::connect(gw.addr());
        assert_eq!(client.request(&get("h1.test", "/b")).text(), "GET /b 0");

        let got = up.received();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].header("host"),
            Some("h2.test"),
            ":authority becomes Host"
        );
        assert_eq!(got[0].header("x-forwarded-proto"), Some("http"));
        assert_eq!(got[0].header_all("x-forwarded-for"), ["127.0.0.1"]);
    }
);

both_drivers!(h2_over_tls_by_alpn, |driver| {
    let pki = Pki::new("h2alpn");
    let cert = pki.issue_server(&["h2.test"]);
    let up = echo();
    let gw = Gateway::start(driver, &tls_proxy_toml(&[&cert], "", up.addr(), ""));
    let args = ["--http2", "-w", "\n%{http_version}"];
    let Some(out) = curl_https(gw.addr(), "h2.test", "/tls", Some(pki.ca_file()), &args) else {
        eprintln!("curl is not installed: curl checks skipped");
        return;
    };
    assert!(
        out.stdout.starts_with("HTTP/2 200"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.ends_with("GET /tls 0\n2"), "{}", out.stdout);
    let got = up.received();
    assert_eq!(got[0].header("x-forwarded-proto"), Some("https"));
    assert_eq!(
        got[0].header("host"),
        Some("h2.test:".to_string() + &gw.addr().port().to_string()).as_deref()
    );
});

both_drivers!(request_and_response_bodies_stream_both_ways, |driver| {
    const LEN: u64 = 3 * 1024 * 1024 + 17;
    let up = Upstream::start(|req: &Received| {
        if req.method == "GET" {
            return Reply::Chunked {
                status: 200,
                headers: Vec::new(),
                chunks: Reply::sized_body(LEN)
                    .chunks(100_000)
                    .map(<[u8]>::to_vec)
                    .collect(),
            };
        }
        Reply::ok(&format!(
            "{} {}",
            req.body_len,
            req.header("content-length").unwrap_or("-")
        ))
    });
    let gw = Gateway::start(
        driver,
        &proxy_toml(up.addr(), "").replace(
            "[[listeners]]",
            "[[listeners]]\nmax_request_body = 10485760",
        ),
    );
    let dir = ringway_tests::TempDir::new("h2bodies");
    let file = dir.path().join("body");
    std::fs::write(&file, Reply::sized_body(LEN)).unwrap();
    let data = format!("@{}", file.display());
    let url = format!("http://{}/up", gw.addr());
    // With content-length, and without (chunked towards the HTTP/1.1 upstream).
    let Some((out, err)) = curl(&[
        "-sS",
        "--http2-prior-knowledge",
        "--data-binary",
        &data,
        &url,
    ]) else {
        return;
    };
    assert_eq!(out, format!("{LEN} {LEN}"), "{err}");
    let (out, err) = curl(&[
        "-sS",
        "--http2-prior-knowledge",
        "-H",
        "transfer-encoding: chunked",
        "--data-binary",
        &data,
        &url,
    ])
    .unwrap();
    assert_eq!(out, format!("{LEN} -"), "{err}");
    // A large response, whole and in order.
    let got = Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            &format!("http://{}/down", gw.addr()),
        ])
        .output()
        .unwrap();
    assert_eq!(got.stdout.len() as u64, LEN);
    assert!(
        got.stdout == Reply::sized_body(LEN),
        "the body arrives intact"
    );
});

both_drivers!(many_streams_on_few_connections, |driver| {
    let up = Upstream::ok("many");
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    let url = format!("http://{}/m", gw.addr());
    let out = match Command::new("h2load")
        .args(["-n", "2000", "-c", "2", "-m", "100", &url])
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("h2load is not installed: h2load checks skipped");
            return;
        }
        Err(e) => panic!("h2load: {e}"),
    };
    assert!(
        out.contains("2000 total, 2000 started, 2000 done, 2000 succeeded"),
        "{out}"
    );
    assert!(out.contains("status codes: 2000 2xx"), "{out}");
    assert_eq!(up.requests(), 2000);
});
