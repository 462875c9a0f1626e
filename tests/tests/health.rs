//! Active health checks (docs/config.md, `health_check`): the control side checks every
//! endpoint; one that fails `unhealthy_threshold` checks in a row gets no traffic on any
//! shard until `healthy_threshold` checks pass again. Reloads start and stop checks.

use std::time::Duration;

use ringway_tests::faults::{Fault, Faulty};
use ringway_tests::{
    assert_gateway_error, both_drivers, get, listener_toml, route_toml, upstream_toml, wait_for,
    Client, Gateway,
};
use serde_json::Value;

const CHECK: &str =
    "health_check = { path = \"/healthz\", interval = \"100ms\", timeout = \"100ms\", \
                     unhealthy_threshold = 2, healthy_threshold = 2 }";

fn pool_toml(endpoints: &[&Faulty], extra: &str) -> String {
    let endpoints: Vec<_> = endpoints.iter().map(|up| (up.addr(), 1)).collect();
    listener_toml("") + &upstream_toml("pool", &endpoints, extra) + &route_toml("all", "pool")
}

/// `ctl stats` health of `up` in upstream `pool`: `Null` when it is not checked.
fn health_of(gw: &Gateway, up: &Faulty) -> Value {
    let stats = gw.ctl(&["stats"]).expect_ok("stats");
    stats["upstreams"]["pool"]["health"][up.addr().to_string()].clone()
}

fn wait_health(gw: &Gateway, up: &Faulty, healthy: bool) {
    let what = format!("{} healthy = {healthy}", up.addr());
    wait_for(&what, Duration::from_secs(5), || {
        health_of(gw, up)["healthy"] == Value::Bool(healthy)
    });
}

/// Sends `n` requests, each on a new connection (so that with several shards they spread
/// over the shards); every one must get 200.
fn send(gw: &Gateway, n: usize) {
    for i in 0..n {
        let resp = Client::connect(gw.addr()).request(&get("h", &format!("/r{i}")));
        assert_eq!(resp.status, 200, "request {i}: {}", resp.text());
    }
}

both_drivers!(
    an_unhealthy_endpoint_gets_no_traffic_until_it_recovers,
    |driver| {
        let (mut a, b) = (Faulty::start("a"), Faulty::start("b"));
        // Two shards: the health table must reach both.
        let gw = Gateway::start_shards(driver, 2, &pool_toml(&[&a, &b], CHECK));
        wait_for("checks of a", Duration::from_secs(5), || {
            a.requests_to("/healthz") >= 2
        });
        assert_eq!(health_of(&gw, &a)["healthy"], true);
        a.set(Fault::Status(500));
        wait_health(&gw, &a, false);
        let last = &health_of(&gw, &a)["last"];
        assert_eq!(last, "status 500");
        let before = a.requests_except("/healthz");
        send(&gw, 20);
        assert_eq!(
            a.requests_except("/healthz"),
            before,
            "an unhealthy endpoint got traffic"
        );
        assert_eq!(b.requests_except("/healthz"), 20);
        // Recovered: it passes two checks in a row and gets its share again.
        a.set(Fault::Ok);
        wait_health(&gw, &a, true);
        send(&gw, 40);
        assert!(
            a.requests_except("/healthz") >= 10,
            "a got {}",
            a.requests_except("/healthz")
        );
    }
);

both_drivers!(refused_checks_mark_it_down_too, |driver| {
    let (mut a, b) = (Faulty::start("a"), Faulty::start("b"));
    let gw = Gateway::start(driver, &pool_toml(&[&a, &b], CHECK));
    a.set(Fault::Refuse);
    wait_health(&gw, &a, false);
    assert_eq!(health_of(&gw, &a)["last"], "connect: connection refused");
    send(&gw, 10);
    assert_eq!(b.requests_except("/healthz"), 10);
});

both_drivers!(no_healthy_endpoint_gets_503, |driver| {
    let mut a = Faulty::start("a");
    let gw = Gateway::start(driver, &pool_toml(&[&a], CHECK));
    a.set(Fault::Status(503));
    wait_health(&gw, &a, false);
    let before = a.requests_except("/healthz");
    let resp = Client::connect(gw.addr()).request(&get("h", "/"));
    assert_gateway_error(&resp, 503);
    assert_eq!(a.requests_except("/healthz"), before);
    let stats = gw.ctl(&["stats"]).expect_ok("stats");
    assert_eq!(
        stats["upstreams"]["pool"]["errors"]["no_endpoint"], 1,
        "{stats}"
    );
});

both_drivers!(reloads_start_and_stop_checks, |driver| {
    let (mut a, b) = (Faulty::start("a"), Faulty::start("b"));
    let gw = Gateway::start(driver, &pool_toml(&[&a, &b], ""));
    // No health_check: nothing checks, and stats show no health.
    assert_eq!(health_of(&gw, &a), Value::Null);
    assert_eq!(a.requests_to("/healthz"), 0);
    a.set(Fault::Status(500));
    gw.write_config(&pool_toml(&[&a, &b], CHECK));
    gw.ctl(&["reload"])
        .expect_ok("reload adding the health check");
    wait_health(&gw, &a, false);
    send(&gw, 10);
    assert_eq!(b.requests_except("/healthz"), 10);
    // Without the check again: a counts as healthy at once and gets traffic (its 500s).
    gw.write_config(&pool_toml(&[&a, &b], ""));
    gw.ctl(&["reload"])
        .expect_ok("reload removing the health check");
    assert_eq!(health_of(&gw, &a), Value::Null);
    let before = a.requests_except("/healthz");
    for i in 0..10 {
        Client::connect(gw.addr()).request(&get("h", &format!("/again{i}")));
    }
    assert_eq!(a.requests_except("/healthz"), before + 5);
    // And its checks stopped.
    let checks = a.requests_to("/healthz");
    send_nothing_for(Duration::from_millis(300));
    assert!(
        a.requests_to("/healthz") <= checks + 1,
        "checks go on after the reload"
    );
});

/// Lets time pass with nothing to wait for: the one place a test needs an absence (no more
/// checks) rather than a condition.
fn send_nothing_for(time: Duration) {
    std::thread::sleep(time);
}
