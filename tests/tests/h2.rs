//! HTTP/2 from clients, seen by real HTTP/2 clients: curl (nghttp2) with prior knowledge on a
//! plain listener and by ALPN over TLS, and h2load for many concurrent streams on few
//! connections. Where a tool is not installed its part is skipped with a note on stderr
//! (.ci/run installs both). Hostile HTTP/2 is in h2_hostile.rs, gRPC in grpc.rs.

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use ringway_tests::tls::{curl_https, tls_proxy_toml};
use ringway_tests::{
    both_drivers, get, h2client, listener_toml, proxy_toml, route_toml, upstream_toml, Client,
    Gateway, Pki, Received, Reply, Upstream,
};

/// Longest any one HTTP/2 exchange below may take.
const LIMIT: Duration = Duration::from_secs(20);

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

/// A listener proxying everything to `up` (control socket and drain timeout set), with
/// `listener_extra` in the listener's table.
fn proxied(up: &Upstream, listener_extra: &str) -> String {
    format!(
        "[control]\nsocket = \"{{control_socket}}\"\ndrain_timeout = \"10s\"\n\n[[listeners]]\nname = \"main\"\nlisten = \"{{listen}}\"\n{listener_extra}\n\n[[upstreams]]\nname = \"u\"\nendpoints = [{{ address = \"{}\" }}]\n\n[[routes]]\nname = \"all\"\nupstream = \"u\"\n",
        up.addr()
    )
}

both_drivers!(trailers_pass_both_ways, |driver| {
    // The upstream answers chunked with trailers; it records the request's trailers.
    let up = Upstream::start(|_: &Received| {
        Reply::Raw(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n\
              5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n"
                .to_vec(),
        )
    });
    let gw = Gateway::start(driver, &proxied(&up, ""));
    let (body, trailers) = h2client::block_on(LIMIT, async {
        let mut h2 = h2client::connect(gw.addr()).await;
        let (response, mut stream) = h2
            .send
            .send_request(h2client::request("POST", "/t"), false)
            .unwrap();
        stream.send_data(Bytes::from_static(b"abc"), false).unwrap();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-request-sum", "42".parse().unwrap());
        stream.send_trailers(trailers).unwrap();
        let response = response.await.expect("a response");
        assert_eq!(response.status(), 200);
        h2client::read_body(response.into_body()).await.unwrap()
    });
    assert_eq!(body, b"hello");
    let trailers = trailers.expect("the upstream's trailers arrive as h2 trailers");
    assert_eq!(trailers["x-checksum"], "abc123");
    let got = up.received();
    assert_eq!(got[0].body, b"abc");
    assert!(got[0].chunked, "no length: chunked towards HTTP/1.1");
    assert_eq!(
        got[0].trailers,
        [("x-request-sum".to_string(), "42".to_string())]
    );
});

both_drivers!(a_stalled_stream_does_not_stall_the_others, |driver| {
    const BIG: u64 = 4 * 1024 * 1024;
    let up = Upstream::start(|r: &Received| {
        if r.target == "/big" {
            Reply::Full {
                status: 200,
                headers: Vec::new(),
                body: Reply::sized_body(BIG),
            }
        } else {
            Reply::ok("small")
        }
    });
    let gw = Gateway::start(driver, &proxied(&up, ""));
    h2client::block_on(LIMIT, async {
        let mut h2 = h2client::connect(gw.addr()).await;
        // The big response fills its stream's window and waits: the client reads none of it.
        let (big, _) = h2
            .send
            .send_request(h2client::request("GET", "/big"), true)
            .unwrap();
        let big = big.await.expect("the big response's head");
        for i in 0..50 {
            h2.send = h2.send.ready().await.expect("the connection takes streams");
            let (small, _) = h2
                .send
                .send_request(h2client::request("GET", &format!("/s{i}")), true)
                .unwrap();
            let small = small
                .await
                .expect("a small response beside the stalled one");
            let (body, _) = h2client::read_body(small.into_body()).await.unwrap();
            assert_eq!(body, b"small");
        }
        // Now the big one, whole.
        let (body, _) = h2client::read_body(big.into_body()).await.unwrap();
        assert_eq!(body.len() as u64, BIG);
        assert!(body == Reply::sized_body(BIG));
    });
});

both_drivers!(
    a_stream_the_client_never_reads_is_reset_after_send_timeout,
    |driver| {
        let up = Upstream::start(|_: &Received| Reply::Full {
            status: 200,
            headers: Vec::new(),
            body: Reply::sized_body(1 << 20),
        });
        let gw = Gateway::start(driver, &proxied(&up, "send_timeout = \"1s\""));
        let reason = h2client::block_on(LIMIT, async {
            let mut h2 = h2client::connect(gw.addr()).await;
            let (resp, _) = h2
                .send
                .send_request(h2client::request("GET", "/"), true)
                .unwrap();
            let mut body = resp.await.expect("the head").into_body();
            // Read what the window lets through without releasing it, then wait.
            loop {
                match body.data().await {
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return e.reason(),
                    None => return None,
                }
            }
        });
        assert_eq!(
            reason,
            Some(h2::Reason::INTERNAL_ERROR),
            "the stalled stream is reset"
        );
    }
);

both_drivers!(
    drain_sends_goaway_and_finishes_streams_in_flight,
    |driver| {
        let up = Upstream::start(|r: &Received| {
            if r.target == "/slow" {
                Reply::Delay(Duration::from_millis(1500), Box::new(Reply::ok("slow")))
            } else {
                Reply::ok("fast")
            }
        });
        let mut gw = Gateway::start(driver, &proxied(&up, ""));
        let (slow, after) = h2client::block_on(LIMIT, async {
            let mut h2 = h2client::connect(gw.addr()).await;
            let (slow, _) = h2
                .send
                .send_request(h2client::request("GET", "/slow"), true)
                .unwrap();
            let waited = std::time::Instant::now();
            while up.requests() < 1 && waited.elapsed() < Duration::from_secs(5) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            gw.signal("TERM");
            let slow = slow.await.expect("the stream in flight is answered");
            let (body, _) = h2client::read_body(slow.into_body()).await.unwrap();
            // GOAWAY came: the connection takes no new stream, and ends.
            let after = match h2.send.ready().await {
                Err(e) => Some(e.is_go_away() || e.is_io() || e.is_remote()),
                Ok(mut send) => match send.send_request(h2client::request("GET", "/late"), true) {
                    Err(_) => Some(true),
                    Ok((late, _)) => late.await.err().map(|_| true),
                },
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), h2.driver).await;
            (body, after)
        });
        assert_eq!(slow, b"slow");
        assert_eq!(after, Some(true), "no stream after GOAWAY");
        assert_eq!(
            up.requests(),
            1,
            "nothing after the drain reached the upstream"
        );
        let status = gw
            .wait_exit(Duration::from_secs(10))
            .expect("exits after the drain");
        assert_eq!(status.code(), Some(0));
    }
);

both_drivers!(a_reload_that_removes_the_listener_sends_goaway, |driver| {
    let up = Upstream::ok("one");
    let gw = Gateway::start(driver, &proxied(&up, ""));
    h2client::block_on(LIMIT, async {
        let mut h2 = h2client::connect(gw.addr()).await;
        let (resp, _) = h2
            .send
            .send_request(h2client::request("GET", "/"), true)
            .unwrap();
        assert_eq!(resp.await.unwrap().status(), 200);
        // The new config serves on the second address only.
        gw.write_config(&proxied(&up, "").replace("{listen}", "{listen2}"));
        gw.ctl(&["reload"]).expect_ok("reload");
        // The connection ends gracefully: its driver returns without an error of ours.
        let ended = tokio::time::timeout(Duration::from_secs(5), h2.driver).await;
        assert!(ended.is_ok(), "the connection ended after GOAWAY");
    });
});

both_drivers!(
    an_idle_h2_connection_is_closed_after_idle_timeout,
    |driver| {
        let up = Upstream::ok("x");
        let gw = Gateway::start(driver, &proxied(&up, "idle_timeout = \"1s\""));
        h2client::block_on(LIMIT, async {
            let mut h2 = h2client::connect(gw.addr()).await;
            let (resp, _) = h2
                .send
                .send_request(h2client::request("GET", "/"), true)
                .unwrap();
            assert_eq!(resp.await.unwrap().status(), 200);
            let started = std::time::Instant::now();
            let ended = tokio::time::timeout(Duration::from_secs(5), h2.driver).await;
            assert!(ended.is_ok(), "the idle connection was closed");
            assert!(started.elapsed() >= Duration::from_millis(800));
        });
    }
);

both_drivers!(h2_heads_meet_the_http_1_1_head_rules, |driver| {
    let up = echo();
    let config = listener_toml("max_request_line = 1024\nmax_header_bytes = 4096")
        + &upstream_toml("backend", &[(up.addr(), 1)], "")
        + &route_toml("all", "backend");
    let gw = Gateway::start(driver, &config);
    let statuses = h2client::block_on(LIMIT, async {
        let mut h2 = h2client::connect(gw.addr()).await;
        let mut status = |req: http::Request<()>| {
            let (resp, _) = h2.send.send_request(req, true).expect("a stream");
            async move { resp.await.expect("an answer").status().as_u16() }
        };
        let with = |name: &str, value: &str| {
            let mut req = h2client::request("GET", "/ok");
            req.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
            req
        };
        vec![
            status(h2client::request("GET", "/ok")).await,
            // Read as Content-Length by servers that fold '_' into '-'.
            status(with("content_length", "3")).await,
            status(h2client::request("GET", &format!("/{}", "a".repeat(2000)))).await,
            status(with("x-big", &"v".repeat(5000))).await,
            // A `host` field beside `:authority` is dropped, not a second Host.
            status(with("host", "other.test")).await,
        ]
    });
    assert_eq!(statuses, [200, 400, 414, 431, 200]);
    let got = up.received();
    assert_eq!(got.len(), 2, "refused heads never reach the upstream");
    assert_eq!(got[1].header_all("host"), ["h2.test"]);
});

both_drivers!(h2_over_tls_is_logged_with_its_tls_session, |driver| {
    let pki = Pki::new("h2log");
    let cert = pki.issue_server(&["h2.test"]);
    let up = echo();
    let log = ringway_tests::TempPath::new("log");
    let toml = tls_proxy_toml(&[&cert], "", up.addr(), "")
        + &format!("\n[access_log]\npath = \"{}\"\n", log.path().display());
    let gw = Gateway::start(driver, &toml);
    let args = ["--http2", "-w", "\n%{http_version}"];
    let Some(out) = curl_https(gw.addr(), "h2.test", "/logged", Some(pki.ca_file()), &args) else {
        eprintln!("curl is not installed: curl checks skipped");
        return;
    };
    assert!(out.stdout.ends_with("\n2"), "{}", out.stdout);
    let line = ringway_tests::poll_until("an access log line", LIMIT, || {
        let text = std::fs::read_to_string(log.path()).map_err(|e| e.to_string())?;
        text.lines()
            .next()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .ok_or_else(|| "empty".to_string())
    });
    assert_eq!(line["protocol"], "HTTP/2");
    assert_eq!(line["tls"], "TLSv1.3");
    assert_eq!(line["sni"], "h2.test");
});
