//! More than one shard: every shard binds the listener (SO_REUSEPORT) and serves; the driver
//! in use is named at start-up.

use ringway_tests::{both_drivers, get, proxy_toml, Client, Driver, Gateway, Upstream};

both_drivers!(two_shards_serve_many_connections, |driver| {
    const THREADS: usize = 4;
    const CONNECTIONS_PER_THREAD: usize = 10;
    const REQUESTS_PER_CONNECTION: usize = 5;
    let up = Upstream::ok("sharded");
    let gw = Gateway::start_shards(driver, 2, &proxy_toml(up.addr(), ""));
    let addr = gw.addr();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for c in 0..CONNECTIONS_PER_THREAD {
                    let mut client = Client::connect(addr);
                    for r in 0..REQUESTS_PER_CONNECTION {
                        let resp = client.request(&get("h", &format!("/{t}/{c}/{r}")));
                        assert_eq!((resp.status, resp.text().as_str()), (200, "sharded"));
                    }
                }
            });
        }
    });
    assert_eq!(
        up.requests(),
        THREADS * CONNECTIONS_PER_THREAD * REQUESTS_PER_CONNECTION
    );
});

both_drivers!(start_up_names_the_driver, |driver| {
    let other = if driver == Driver::IoUring {
        Driver::Epoll
    } else {
        Driver::IoUring
    };
    let up = Upstream::ok("x");
    for shards in [1, 2] {
        let gw = Gateway::start_shards(driver, shards, &proxy_toml(up.addr(), ""));
        let log = gw.stderr();
        let ready = log
            .lines()
            .find(|l| l.contains("ringway ready"))
            .expect("the ready line");
        // The driver asked for is the one in use: no silent fallback.
        assert!(
            ready.contains(driver.as_str()) && !ready.contains(other.as_str()),
            "{shards} shard(s): the ready line does not name {driver} alone:\n{log}"
        );
    }
});
