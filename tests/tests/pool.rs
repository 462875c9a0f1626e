//! The per-shard upstream connection pool: `Connection: close` from the upstream, stale pooled
//! connections, `pool_idle_timeout` and `max_idle_per_endpoint`.

use ringway_tests::{
    both_drivers, get, proxy_toml, wait_for, Client, Gateway, Received, Reply, Upstream,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

both_drivers!(upstream_connection_close_is_honoured, |driver| {
    let up = Upstream::start(|_: &Received| {
        Reply::with_headers(200, &[("connection", "close")], "once")
    });
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    let mut client = Client::connect(gw.addr());
    for i in 0..3 {
        let resp = client.request(&get("h", &format!("/{i}")));
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, "once"),
            "request {i}"
        );
        assert_eq!(
            resp.header("connection"),
            None,
            "the upstream's close stays upstream"
        );
    }
    assert!(
        !client.is_closed(Duration::from_millis(100)),
        "the client connection stays open"
    );
    assert_eq!(
        up.connections(),
        3,
        "each request needed a new upstream connection"
    );
    let conns: Vec<usize> = up.received().iter().map(|r| r.connection).collect();
    assert_eq!(conns, vec![0, 1, 2]);
});

both_drivers!(stale_pooled_connections_are_retried, |driver| {
    // Answers as if keeping the connection alive, then closes it: every pooled connection is
    // stale by the time the next request wants it.
    let up = Upstream::start(|_: &Received| {
        Reply::RawThenClose(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec())
    });
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    let mut client = Client::connect(gw.addr());
    for i in 0..20 {
        let resp = client.request(&get("h", &format!("/{i}")));
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, "ok"),
            "request {i}"
        );
    }
    assert_eq!(up.requests(), 20);
    let post = "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
    assert_eq!(
        client.request(post).status,
        200,
        "a request with a body is retried too"
    );
    assert_eq!(
        up.received().last().map(|r| r.body.clone()),
        Some(b"abc".to_vec())
    );
});

both_drivers!(pool_idle_timeout_closes_unused_connections, |driver| {
    let up = Upstream::ok("idle");
    let gw = Gateway::start(
        driver,
        &proxy_toml(up.addr(), "pool_idle_timeout = \"200ms\""),
    );
    let mut client = Client::connect(gw.addr());
    assert_eq!(client.request(&get("h", "/")).status, 200);
    assert_eq!(up.connections(), 1);
    up.wait_until(
        "the pooled connection to be closed",
        Duration::from_secs(3),
        |u| u.open_connections() == 0,
    );
    // The client side is not affected, and the next request opens a new upstream connection.
    assert_eq!(client.request(&get("h", "/again")).status, 200);
    assert_eq!(up.connections(), 2);
});

both_drivers!(max_idle_per_endpoint_is_honoured, |driver| {
    const CLIENTS: usize = 4;
    // Holds each request until all of them arrived, so the gateway needs CLIENTS upstream
    // connections at once.
    let arrived = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&arrived);
    let up = Upstream::start(move |_: &Received| {
        seen.fetch_add(1, Ordering::SeqCst);
        wait_for("every client's request", Duration::from_secs(5), || {
            seen.load(Ordering::SeqCst) >= CLIENTS
        });
        Reply::ok("pooled")
    });
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), "max_idle_per_endpoint = 1"));
    let addr = gw.addr();
    let mut clients: Vec<Client> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|i| {
                s.spawn(move || {
                    let mut client = Client::connect(addr);
                    let resp = client.request(&get("h", &format!("/{i}")));
                    assert_eq!(resp.text(), "pooled");
                    client
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    assert_eq!(up.connections(), CLIENTS);
    up.wait_until(
        "idle connections beyond the cap to be closed",
        Duration::from_secs(3),
        |u| u.open_connections() <= 1,
    );
    // The clients are still connected; the one kept connection serves them.
    for client in &mut clients {
        assert_eq!(client.request(&get("h", "/next")).text(), "pooled");
    }
    clients.clear();
});
