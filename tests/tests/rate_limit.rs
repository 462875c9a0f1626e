//! Route limits: the node-wide rate limit (accurate within 5% of the configured rate whether
//! the load is spread over the shards or lands on one), its 429 and `RateLimit-*` fields, keys
//! by client address and header, the bound on keys a shard holds, reloads that keep the
//! buckets, and the per-shard concurrency limit (503).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringway_tests::{
    assert_gateway_error, both_drivers, get, listener_toml, route_toml, upstream_toml, wait_for,
    Client, Driver, Gateway, Reply, Upstream,
};

/// One listener, upstream `backend` at `up`, and route `limited` to it with `extra` lines.
fn limited_toml(up: &Upstream, extra: &str) -> String {
    listener_toml("")
        + &upstream_toml("backend", &[(up.addr(), 1)], "")
        + &route_toml("limited", "backend")
        + extra
        + "\n"
}

fn stats(gw: &Gateway) -> serde_json::Value {
    gw.ctl(&["stats"]).expect_ok("stats")
}

const RATE: f64 = 500.0;
/// Half a second's worth: a stall of the test machine shorter than that (the load generator,
/// the upstream or a gateway thread not scheduled on the two cores) costs no tokens, so the
/// test measures the limiter rather than the scheduler. It is subtracted from the count.
const BURST: usize = 250;
/// How long each accuracy run offers load.
const RUN: Duration = Duration::from_secs(4);

/// Route `limited` at 500/s with a burst of 250, and route `probe` (`/probe`) whose own
/// generous limit only serves to tell, from the per-shard counts in `stats`, which shard
/// served a connection.
fn accuracy_toml(up: &Upstream) -> String {
    let limit = format!("rate_limit = {{ rate = {RATE}, per = \"1s\", burst = {BURST} }}");
    limited_toml(up, &limit)
        + "[[routes]]\nname = \"probe\"\npath_exact = \"/probe\"\n\
           respond = { status = 200 }\nrate_limit = { rate = 1000000 }\n"
}

/// Requests the probe route served, per shard.
fn probes_by_shard(gw: &Gateway) -> [u64; 2] {
    let stats = stats(gw);
    let shards = &stats["rate_limits"]["probe"]["shards"];
    [0, 1].map(|s: usize| shards[s.to_string()]["admitted"].as_u64().unwrap_or(0))
}

/// `n` connections that the same shard serves: each new connection sends a probe, and
/// `stats` tells which shard answered it (SO_REUSEPORT picks by the address pair).
fn connections_on_one_shard(gw: &Gateway, n: usize) -> Vec<Client> {
    let mut on: [Vec<Client>; 2] = [Vec::new(), Vec::new()];
    let mut before = probes_by_shard(gw);
    for _ in 0..64 {
        let mut client = Client::connect(gw.addr());
        assert_eq!(client.request(&get("h", "/probe")).status, 200);
        let after = probes_by_shard(gw);
        let shard = usize::from(after[1] > before[1]);
        before = after;
        on[shard].push(client);
        if on[shard].len() == n {
            return std::mem::take(&mut on[shard]);
        }
    }
    panic!("64 connections and no shard got {n} of them");
}

/// Sends requests from `threads` threads over `clients` (keep-alive connections, dealt to the
/// threads in turn), paced so that all together offer `offered` requests per second for
/// [`RUN`]. Returns (200s, 429s, seconds from the first request to the last response).
fn offer(clients: Vec<Client>, threads: usize, offered: f64) -> (usize, usize, f64) {
    let mut dealt: Vec<Vec<Client>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, client) in clients.into_iter().enumerate() {
        dealt[i % threads].push(client);
    }
    let interval = Duration::from_secs_f64(threads as f64 / offered);
    let start = Instant::now();
    let counts: Vec<(usize, usize)> = std::thread::scope(|s| {
        let workers: Vec<_> = dealt
            .into_iter()
            .enumerate()
            .map(|(t, mut clients)| {
                s.spawn(move || {
                    let (mut ok, mut limited) = (0, 0);
                    let mut next = start + interval.mul_f64(t as f64 / threads as f64);
                    let mut i = 0usize;
                    while next < start + RUN {
                        let now = Instant::now();
                        if next > now {
                            // Pacing the open-loop schedule, not waiting for readiness.
                            std::thread::sleep(next - now);
                        }
                        next += interval;
                        let n = clients.len();
                        let client = &mut clients[i % n];
                        i += 1;
                        match client.request(&get("h", "/")).status {
                            200 => ok += 1,
                            429 => limited += 1,
                            other => panic!("unexpected status {other}"),
                        }
                    }
                    (ok, limited)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let ok = counts.iter().map(|c| c.0).sum();
    let limited = counts.iter().map(|c| c.1).sum();
    (ok, limited, elapsed)
}

/// Offers twice the limit over `clients` from 2 threads, checks the admitted rate, counted at
/// the upstream and net of the burst, and returns the per-shard counts from `stats`.
fn accuracy(
    driver: Driver,
    gw: &Gateway,
    up: &Upstream,
    case: &str,
    clients: Vec<Client>,
) -> serde_json::Value {
    let (ok, limited, elapsed) = offer(clients, 2, 2.0 * RATE);
    let admitted = up.requests();
    let stats = stats(gw);
    let route = &stats["rate_limits"]["limited"];
    let rate = (admitted - BURST.min(admitted)) as f64 / elapsed;
    println!(
        "{driver} {case}: {admitted} admitted, {limited} limited in {elapsed:.2} s: \
         {rate:.1}/s admitted beyond the burst (limit {RATE}/s); borrowed (control thread \
         late): {}; per shard: {}",
        route["borrowed"], route["shards"]
    );
    assert_eq!(
        admitted, ok,
        "every 200 reached the upstream, nothing else did"
    );
    assert!(
        (rate - RATE).abs() <= RATE * 0.05,
        "{case}: admitted {rate:.1}/s, limit {RATE}/s"
    );
    assert!(limited > 0, "the load was over the limit");
    assert_eq!(route["admitted"], admitted as u64, "{route}");
    assert_eq!(route["rejected"], limited as u64, "{route}");
    route["shards"].clone()
}

both_drivers!(accuracy_with_load_spread_over_two_shards, |driver| {
    let up = Upstream::ok("ok");
    let gw = Gateway::start_shards(driver, 2, &accuracy_toml(&up));
    // 16 connections: SO_REUSEPORT spreads them over both shards (all on one: 1 in 32768).
    let clients = (0..16).map(|_| Client::connect(gw.addr())).collect();
    let shards = accuracy(driver, &gw, &up, "spread over 2 shards", clients);
    for shard in ["0", "1"] {
        let admitted = shards[shard]["admitted"].as_u64().unwrap_or(0);
        assert!(admitted > 0, "shard {shard} admitted nothing: {shards}");
    }
});

both_drivers!(accuracy_with_all_load_on_one_shard, |driver| {
    let up = Upstream::ok("ok");
    let gw = Gateway::start_shards(driver, 2, &accuracy_toml(&up));
    // Four connections that one shard serves: it gets everything, and still the whole rate.
    let clients = connections_on_one_shard(&gw, 4);
    let shards = accuracy(driver, &gw, &up, "all on 1 of 2 shards", clients);
    let busy: Vec<&String> = shards
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, s)| s["admitted"].as_u64() > Some(0) || s["rejected"].as_u64() > Some(0))
        .map(|(shard, _)| shard)
        .collect();
    assert_eq!(busy.len(), 1, "{shards}");
});

both_drivers!(rejections_carry_rate_limit_fields, |driver| {
    let up = Upstream::ok("ok");
    let limit = "rate_limit = { rate = 3, per = \"10s\", burst = 3, key = \"header:X-Key\" }";
    let gw = Gateway::start(driver, &limited_toml(&up, limit));
    let mut client = Client::connect(gw.addr());
    let keyed = |key: &str| format!("GET / HTTP/1.1\r\nHost: h\r\nX-Key: {key}\r\n\r\n");
    for i in 0..3 {
        assert_eq!(client.request(&keyed("a")).status, 200, "request {i}");
    }
    // A body the gateway reads whole: the connection stays open after the 429.
    let post = "POST / HTTP/1.1\r\nHost: h\r\nX-Key: a\r\ncontent-length: 5\r\n\r\nhello";
    let resp = client.request(post);
    assert_eq!(resp.status, 429);
    assert_eq!(resp.text(), "429 Too Many Requests\n");
    let retry: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry), "retry-after {retry}");
    assert_eq!(
        resp.header("ratelimit-reset"),
        Some(retry.to_string().as_str())
    );
    assert_eq!(resp.header("ratelimit-limit"), Some("3"));
    assert_eq!(resp.header("ratelimit-remaining"), Some("0"));
    assert_eq!(resp.header("ratelimit-policy"), Some("3;w=10"));
    assert_eq!(resp.header("connection"), None);
    // Another key has its own bucket, on the same connection.
    assert_eq!(client.request(&keyed("b")).status, 200);
    let head = client.request("HEAD / HTTP/1.1\r\nHost: h\r\nX-Key: a\r\n\r\n");
    assert_eq!((head.status, head.body.len()), (429, 0));
    assert_eq!(
        up.requests(),
        4,
        "limited requests never reach the upstream"
    );
    let stats = stats(&gw);
    let route = &stats["rate_limits"]["limited"];
    assert_eq!(
        (&route["key"], &route["admitted"], &route["rejected"]),
        (&"header".into(), &4.into(), &2.into()),
        "{route}"
    );
    assert_eq!(
        stats["routes"]["limited"]["errors"]["rate_limited"], 2,
        "{stats}"
    );
});

both_drivers!(client_addresses_have_their_own_buckets, |driver| {
    let up = Upstream::ok("ok");
    let limit = "rate_limit = { rate = 2, per = \"1h\", key = \"client_ip\" }";
    let gw = Gateway::start(driver, &limited_toml(&up, limit));
    let from = |ip: &str| Client::connect_from(gw.addr(), ip.parse::<IpAddr>().unwrap());
    let mut a = from("127.0.0.2");
    assert_eq!(a.request(&get("h", "/")).status, 200);
    assert_eq!(a.request(&get("h", "/")).status, 200);
    assert_eq!(a.request(&get("h", "/")).status, 429);
    // The same address on another connection shares the bucket; another address does not.
    assert_eq!(from("127.0.0.2").request(&get("h", "/")).status, 429);
    assert_eq!(from("127.0.0.3").request(&get("h", "/")).status, 200);
});

both_drivers!(a_flood_of_keys_stays_within_max_keys, |driver| {
    let up = Upstream::ok("ok");
    let limit = "rate_limit = { rate = 100, key = \"header:x-key\", max_keys = 50 }";
    let gw = Gateway::start(driver, &limited_toml(&up, limit));
    let mut client = Client::connect(gw.addr());
    for i in 0..400 {
        let req = format!("GET / HTTP/1.1\r\nHost: h\r\nx-key: flood-{i}\r\n\r\n");
        assert_eq!(
            client.request(&req).status,
            200,
            "key {i} is new: a full bucket"
        );
    }
    let stats = stats(&gw);
    let route = &stats["rate_limits"]["limited"];
    assert_eq!(route["keys"], 50, "{route}");
    assert_eq!(route["max_keys"], 50, "{route}");
    assert_eq!(route["node_keys"], 50, "one shard: the node keeps as many");
    assert_eq!(route["admitted"], 400, "{route}");
});

both_drivers!(
    a_reload_keeps_an_unchanged_limit_and_resets_a_changed_one,
    |driver| {
        let up = Upstream::ok("ok");
        let limited = |burst: u32, extra_route: bool| {
            let mut toml = limited_toml(
                &up,
                &format!("rate_limit = {{ rate = 1, per = \"1h\", burst = {burst} }}"),
            );
            if extra_route {
                toml += "[[routes]]\nname = \"hello\"\npath_exact = \"/hello\"\nrespond = { status = 200 }\n";
            }
            toml
        };
        let gw = Gateway::start(driver, &limited(2, false));
        let mut client = Client::connect(gw.addr());
        assert_eq!(client.request(&get("h", "/")).status, 200);
        assert_eq!(client.request(&get("h", "/")).status, 200);
        assert_eq!(client.request(&get("h", "/")).status, 429);
        // Another route added, this one untouched: the bucket is still empty.
        gw.write_config(&limited(2, true));
        gw.ctl(&["reload"]).expect_ok("reload with another route");
        assert_eq!(client.request(&get("h", "/")).status, 429);
        assert_eq!(client.request(&get("h", "/hello")).status, 200);
        // The limit changed: a new, full bucket.
        gw.write_config(&limited(3, true));
        gw.ctl(&["reload"]).expect_ok("reload with a larger burst");
        for i in 0..3 {
            assert_eq!(client.request(&get("h", "/")).status, 200, "request {i}");
        }
        assert_eq!(client.request(&get("h", "/")).status, 429);
    }
);

both_drivers!(max_in_flight_refuses_past_the_cap, |driver| {
    let release = Arc::new(AtomicBool::new(false));
    let gate = release.clone();
    let up = Upstream::start(move |req| {
        if req.target == "/slow" {
            // Holds the request until the test lets it go (bounded, as every wait).
            wait_for(
                "the test to release slow requests",
                Duration::from_secs(10),
                || gate.load(Ordering::SeqCst),
            );
        }
        Reply::ok("done")
    });
    let gw = Gateway::start(driver, &limited_toml(&up, "max_in_flight = 2"));
    let mut slow: Vec<Client> = (0..2).map(|_| Client::connect(gw.addr())).collect();
    for client in &mut slow {
        client.send(get("h", "/slow").as_bytes());
    }
    up.wait_until(
        "both slow requests at the upstream",
        Duration::from_secs(10),
        |u| u.requests() == 2,
    );
    let mut third = Client::connect(gw.addr());
    let resp = third.request(&get("h", "/fast"));
    assert_gateway_error(&resp, 503);
    assert_eq!(
        up.requests(),
        2,
        "the refused request never reached the upstream"
    );
    let stats = stats(&gw);
    let concurrency = &stats["concurrency_limits"]["limited"];
    assert_eq!(
        (
            &concurrency["max_in_flight"],
            &concurrency["in_flight"],
            &concurrency["rejected"]
        ),
        (&2.into(), &2.into(), &1.into()),
        "{concurrency}"
    );
    assert_eq!(
        stats["routes"]["limited"]["errors"]["concurrency_limited"], 1,
        "{stats}"
    );
    release.store(true, Ordering::SeqCst);
    for client in &mut slow {
        assert_eq!(client.read_response().text(), "done");
    }
    // The slots are free again, on the connection that was refused.
    assert_eq!(third.request(&get("h", "/fast")).status, 200);
    let stats = gw.ctl(&["stats"]).expect_ok("stats after");
    assert_eq!(stats["concurrency_limits"]["limited"]["in_flight"], 0);
});
