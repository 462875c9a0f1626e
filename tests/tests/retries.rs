//! Retries: which failures a route's `retry` policy sends again (connect failure, reset before
//! any response byte, per-try timeout, listed statuses), for which methods and bodies, within
//! which budget and deadlines. Real upstreams that refuse, reset, stall or answer 5xx.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringway_tests::{
    assert_gateway_error, both_drivers, free_port, get, listener_toml, route_toml, upstream_toml,
    Client, Driver, Gateway, Received, Reply, Upstream,
};

/// A gateway with one upstream `backend` over `endpoints` (round robin, equal weights) and
/// one catch-all route to it with `route_extra` lines (the retry policy).
fn gateway(driver: Driver, endpoints: &[SocketAddr], route_extra: &str) -> Gateway {
    let endpoints: Vec<(SocketAddr, u32)> = endpoints.iter().map(|a| (*a, 1)).collect();
    let toml = listener_toml("")
        + &upstream_toml("backend", &endpoints, "")
        + &route_toml("all", "backend")
        + route_extra
        + "\n";
    Gateway::start(driver, &toml)
}

fn refused() -> SocketAddr {
    ([127, 0, 0, 1], free_port()).into()
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: h\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// The route's retry counter from `ringway ctl stats`.
fn route_counter(gw: &Gateway, counter: &str) -> u64 {
    let stats = gw.ctl(&["stats"]).expect_ok("stats");
    stats["routes"]["all"][counter].as_u64().unwrap_or(0)
}

both_drivers!(connect_failures_are_retried_on_another_endpoint, |driver| {
    let good = Upstream::ok("good");
    let dead = refused();
    // Without a policy, every other request (round robin) meets the refusing endpoint.
    let gw = gateway(driver, &[dead, good.addr()], "");
    let statuses: Vec<u16> = (0..4)
        .map(|_| Client::connect(gw.addr()).request(&get("h", "/")).status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 502).count(),
        2,
        "{statuses:?}"
    );
    drop(gw);

    let gw = gateway(driver, &[dead, good.addr()], "retry = { retries = 1 }");
    let mut client = Client::connect(gw.addr());
    for _ in 0..6 {
        let resp = client.request(&get("h", "/"));
        assert_eq!((resp.status, resp.text().as_str()), (200, "good"));
    }
    // Half of the first tries went to the dead endpoint.
    wait_counter(&gw, "retries", 3);
});

both_drivers!(a_reset_is_retried_for_idempotent_methods_only, |driver| {
    let good = Upstream::start(|r: &Received| Reply::ok(&format!("good {}", r.body_len)));
    let reset = Upstream::start(|_: &Received| Reply::Reset);
    let endpoints = [reset.addr(), good.addr()];
    let gw = gateway(driver, &endpoints, "retry = { retries = 1 }");
    // Round robin: the first try of every other request lands on the resetting endpoint.
    for _ in 0..4 {
        let resp = Client::connect(gw.addr()).request(&get("h", "/"));
        assert_eq!((resp.status, resp.text().as_str()), (200, "good 0"));
    }
    let body = vec![b'x'; 10_000];
    let statuses: Vec<u16> = (0..4)
        .map(|_| {
            let mut c = Client::connect(gw.addr());
            c.send(&post("/", &body));
            c.read_response().status
        })
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 502).count(),
        2,
        "a POST is not retried after a reset: {statuses:?}"
    );
    drop(gw);

    // Unless the route allows it: then the buffered body goes again, whole.
    let gw = gateway(
        driver,
        &endpoints,
        "retry = { retries = 1, non_idempotent = true }",
    );
    for _ in 0..4 {
        let mut c = Client::connect(gw.addr());
        c.send(&post("/", &body));
        let resp = c.read_response();
        assert_eq!((resp.status, resp.text().as_str()), (200, "good 10000"));
    }
    assert!(good
        .received()
        .iter()
        .all(|r| r.body == body || r.body_len == 0));
});

both_drivers!(
    a_body_streamed_past_the_buffer_is_never_sent_twice,
    |driver| {
        // The resetting endpoint reads the whole request before resetting: the body went upstream.
        let reset = Upstream::start(|_: &Received| Reply::Reset);
        let good = Upstream::ok("good");
        let gw = gateway(
            driver,
            &[reset.addr(), good.addr()],
            "retry = { retries = 1, non_idempotent = true, max_buffered_body = \"1KiB\" }",
        );
        // 256 KiB: more than the gateway's read buffer, so it cannot have it all at hand.
        let body = vec![b'y'; 256 << 10];
        let mut c = Client::connect(gw.addr());
        c.send(&post("/", &body));
        assert_gateway_error(&c.read_response(), 502);
        assert_eq!(reset.requests(), 1);
        assert_eq!(good.requests(), 0, "a partly sent body was sent again");
    }
);

both_drivers!(
    listed_statuses_are_retried_and_the_last_answer_is_relayed,
    |driver| {
        let busy = Upstream::start(|_: &Received| Reply::Full {
            status: 503,
            headers: vec![("x-from".into(), "busy".into())],
            body: b"busy\n".to_vec(),
        });
        let good = Upstream::ok("good");
        let gw = gateway(
            driver,
            &[busy.addr(), good.addr()],
            "retry = { retries = 1, statuses = [503] }",
        );
        for _ in 0..4 {
            let resp = Client::connect(gw.addr()).request(&get("h", "/"));
            assert_eq!((resp.status, resp.text().as_str()), (200, "good"));
        }
        drop(gw);

        // Every try answers 503: after `retries` retries the last 503 goes to the client as is.
        let gw = gateway(
            driver,
            &[busy.addr()],
            "retry = { retries = 2, statuses = [503], backoff = \"1ms\" }",
        );
        let before = busy.requests();
        let mut client = Client::connect(gw.addr());
        let resp = client.request(&get("h", "/"));
        assert_eq!(resp.status, 503);
        assert_eq!(resp.header("x-from"), Some("busy"));
        assert_eq!(resp.text(), "busy\n");
        assert_eq!(busy.requests() - before, 3, "one try and two retries");
        // The connection stays usable.
        assert_eq!(client.request(&get("h", "/")).status, 503);
    }
);

both_drivers!(
    a_slow_try_is_abandoned_after_the_per_try_timeout,
    |driver| {
        let slow = Upstream::start(|_: &Received| {
            Reply::Delay(Duration::from_secs(3), Box::new(Reply::ok("slow")))
        });
        let fast = Upstream::ok("fast");
        let gw = gateway(
            driver,
            &[slow.addr(), fast.addr()],
            "retry = { retries = 1, on = [\"timeout\"], per_try_timeout = \"200ms\" }",
        );
        for _ in 0..2 {
            let start = Instant::now();
            let resp = Client::connect(gw.addr()).request(&get("h", "/"));
            assert_eq!((resp.status, resp.text().as_str()), (200, "fast"));
            assert!(
                start.elapsed() < Duration::from_millis(1500),
                "{:?}",
                start.elapsed()
            );
        }
    }
);

both_drivers!(the_route_timeout_bounds_every_try_together, |driver| {
    let slow = Upstream::start(|_: &Received| {
        Reply::Delay(Duration::from_secs(3), Box::new(Reply::ok("slow")))
    });
    let gw = gateway(
        driver,
        &[slow.addr()],
        "timeout = \"400ms\"\nretry = { retries = 5, per_try_timeout = \"250ms\", backoff = \"1ms\" }",
    );
    let start = Instant::now();
    let resp = Client::connect(gw.addr()).request(&get("h", "/"));
    let took = start.elapsed();
    assert_gateway_error(&resp, 504);
    assert!(took >= Duration::from_millis(350), "504 after {took:?}");
    assert!(took < Duration::from_millis(1500), "504 after {took:?}");
    assert!(
        slow.requests() <= 2,
        "{} tries fit in a 400ms route timeout of 250ms tries",
        slow.requests()
    );
});

both_drivers!(an_empty_budget_refuses_retries_and_counts_them, |driver| {
    let reset = Upstream::start(|_: &Received| Reply::Reset);
    let gw = gateway(
        driver,
        &[reset.addr()],
        "retry = { retries = 3, budget_percent = 0, min_retries = 0 }",
    );
    let resp = Client::connect(gw.addr()).request(&get("h", "/"));
    assert_gateway_error(&resp, 502);
    assert_eq!(reset.requests(), 1, "the budget allowed no retry");
    wait_counter(&gw, "retries_over_budget", 1);
    assert_eq!(route_counter(&gw, "retries"), 0);
});

both_drivers!(without_a_policy_nothing_is_retried, |driver| {
    let reset = Upstream::start(|_: &Received| Reply::Reset);
    let gw = gateway(driver, &[reset.addr()], "");
    let resp = Client::connect(gw.addr()).request(&get("h", "/"));
    assert_gateway_error(&resp, 502);
    assert_eq!(reset.requests(), 1);
});

/// Waits until the route's `counter` in `ringway ctl stats` reaches `at_least` (stats arrive
/// with the shards' periodic reports).
fn wait_counter(gw: &Gateway, counter: &str, at_least: u64) {
    ringway_tests::wait_for(
        &format!("route counter {counter} >= {at_least}"),
        Duration::from_secs(10),
        || route_counter(gw, counter) >= at_least,
    );
}
