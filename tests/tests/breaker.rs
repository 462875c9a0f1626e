//! Circuit breakers (docs/config.md, `circuit_breaker`): after the configured failures the
//! upstream gets no more requests and clients get 503 at once; after `open_for` one probe
//! goes through, and its success closes the breaker (its failure opens it again). The state
//! shows in `ringway ctl stats` and `/metrics`.
//!
//! One shard throughout: breakers are per shard, so counts of requests reaching the upstream
//! are exact only with one.

use std::time::{Duration, Instant};

use ringway_tests::faults::{Fault, Faulty};
use ringway_tests::{
    assert_gateway_error, both_drivers, get, proxy_toml, wait_for, Client, Gateway, Response,
};
use serde_json::Value;

/// One request on a fresh connection.
fn request(gw: &Gateway) -> Response {
    Client::connect(gw.addr()).request(&get("h", "/"))
}

/// `ctl stats` for upstream `backend`.
fn backend_stats(gw: &Gateway) -> Value {
    gw.ctl(&["stats"]).expect_ok("stats")["upstreams"]["backend"].clone()
}

fn breaker_state(gw: &Gateway) -> Value {
    backend_stats(gw)["breaker"]["by_shard"]["0"].clone()
}

both_drivers!(consecutive_failures_open_then_a_probe_closes, |driver| {
    let mut up = Faulty::start("up");
    up.set(Fault::Status(500));
    let toml = proxy_toml(
        up.addr(),
        "circuit_breaker = { consecutive_failures = 3, open_for = \"500ms\" }",
    );
    let gw = Gateway::start(driver, &toml);
    for i in 0..3 {
        assert_eq!(request(&gw).status, 500, "request {i} reaches the upstream");
    }
    assert_eq!(up.requests(), 3);
    // Open: answered at once, and nothing more reaches the upstream.
    for _ in 0..5 {
        let started = Instant::now();
        let resp = request(&gw);
        assert_gateway_error(&resp, 503);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(up.requests(), 3, "an open breaker let a request through");
    assert_eq!(breaker_state(&gw), "open");
    let stats = backend_stats(&gw);
    assert_eq!(stats["breaker"]["opened"], 1, "{stats}");
    assert!(stats["breaker"]["rejected"].as_u64() >= Some(5), "{stats}");
    assert!(
        stats["errors"]["circuit_open"].as_u64().unwrap_or(0)
            + stats["errors"]["no_endpoint"].as_u64().unwrap_or(0)
            >= 5,
        "{stats}"
    );

    // After open_for, one probe goes through; its success closes the breaker.
    up.set(Fault::Ok);
    wait_for(
        "a probe answered by the upstream",
        Duration::from_secs(5),
        || request(&gw).status == 200,
    );
    assert_eq!(up.requests(), 4, "exactly one probe reached the upstream");
    for _ in 0..5 {
        assert_eq!(request(&gw).status, 200);
    }
    assert_eq!(up.requests(), 9);
    assert_eq!(breaker_state(&gw), "closed");
});

both_drivers!(a_failed_probe_opens_it_again, |driver| {
    let mut up = Faulty::start("up");
    up.set(Fault::Reset);
    let toml = proxy_toml(
        up.addr(),
        "circuit_breaker = { consecutive_failures = 2, open_for = \"300ms\", max_open_for = \"1s\" }",
    );
    let gw = Gateway::start(driver, &toml);
    for _ in 0..2 {
        assert_gateway_error(&request(&gw), 502);
    }
    assert_gateway_error(&request(&gw), 503);
    // The probe after open_for fails (502); then the breaker is open again: 503s, and the
    // upstream got exactly one more request.
    wait_for("a probe", Duration::from_secs(5), || {
        request(&gw).status == 502
    });
    assert_eq!(up.requests(), 3);
    let started = Instant::now();
    assert_gateway_error(&request(&gw), 503);
    assert_eq!(up.requests(), 3);
    // Reopened for twice as long (600ms): the next probe comes no sooner than that.
    wait_for("a second probe", Duration::from_secs(5), || {
        request(&gw).status == 502
    });
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "second probe after {:?}",
        started.elapsed()
    );
    assert_eq!(up.requests(), 4);
    assert_eq!(backend_stats(&gw)["breaker"]["opened"], 3);
});

both_drivers!(connect_failures_open_it_too, |driver| {
    let mut up = Faulty::start("up");
    up.set(Fault::Refuse);
    let toml = proxy_toml(
        up.addr(),
        "circuit_breaker = { consecutive_failures = 2, open_for = \"300ms\" }",
    );
    let gw = Gateway::start(driver, &toml);
    for _ in 0..2 {
        assert_gateway_error(&request(&gw), 502);
    }
    assert_gateway_error(&request(&gw), 503);
    up.set(Fault::Ok);
    wait_for("the upstream back", Duration::from_secs(5), || {
        request(&gw).status == 200
    });
    assert_eq!(
        up.requests(),
        1,
        "only the probe reached the recovered upstream"
    );
});

both_drivers!(error_percent_over_the_window_opens, |driver| {
    let mut up = Faulty::start("up");
    let toml = proxy_toml(
        up.addr(),
        "circuit_breaker = { consecutive_failures = 0, error_percent = 50, window = \"10s\", min_requests = 6, open_for = \"10s\" }",
    );
    let gw = Gateway::start(driver, &toml);
    // Failures never in a row, but half of the requests: the sixth trips it.
    for i in 0..6 {
        let fault = if i % 2 == 0 {
            Fault::Ok
        } else {
            Fault::Status(503)
        };
        up.set(fault.clone());
        let want = if fault == Fault::Ok { 200 } else { 503 };
        assert_eq!(request(&gw).status, want, "request {i}");
    }
    up.set(Fault::Ok);
    let resp = request(&gw);
    assert_gateway_error(&resp, 503);
    assert_eq!(up.requests(), 6);
    assert_eq!(breaker_state(&gw), "open");
});

both_drivers!(breaker_state_in_metrics, |driver| {
    let mut up = Faulty::start("up");
    up.set(Fault::Status(502));
    let toml = format!(
        "[admin]\nlisten = \"{{admin}}\"\n\n{}",
        proxy_toml(
            up.addr(),
            "circuit_breaker = { consecutive_failures = 1, open_for = \"10s\" }"
        )
    );
    let gw = Gateway::start(driver, &toml);
    assert_eq!(request(&gw).status, 502);
    assert_gateway_error(&request(&gw), 503);
    let mut admin = Client::connect(gw.admin_addr());
    let text = admin
        .request("GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .text();
    for line in [
        "ringway_upstream_breaker_state{upstream=\"backend\",shard=\"0\",state=\"open\"} 1",
        "ringway_upstream_breaker_state{upstream=\"backend\",shard=\"0\",state=\"closed\"} 0",
        "ringway_upstream_breaker_opened_total{upstream=\"backend\"} 1",
        "ringway_upstream_breaker_rejected_total{upstream=\"backend\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
});
