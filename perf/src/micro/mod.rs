//! Micro-benchmarks of the hot pieces, in-process: request head parsing, routing among
//! 10,000 routes, endpoint picks of each load-balancing policy, histogram recording, and what
//! a reload of 10,000 routes costs a shard. Each case runs in batches for a fixed time; the
//! report is the median and the spread of the batches' ns per operation. `--tls` runs the
//! TLS handshake cases of [`tls`] instead.

mod tls;

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::Result;
use ringway_core::http::h1::{parse_request, HeaderRef, RequestLimits};
use ringway_core::metrics::TrafficStats;
use ringway_core::router::{RequestView, Router};
use ringway_core::upstream::balance::{hash_table, request_key_hash};
use ringway_core::upstream::{AllEligible, Balancer, HealthTable, Outcome, UpstreamGuard};

#[derive(clap::Args)]
pub struct Args {
    /// Time per case.
    #[arg(long, default_value = "2")]
    seconds: u64,
    /// Time TLS handshakes in memory (server CPU per handshake, aws-lc-rs vs ring) instead of
    /// the hot path.
    #[arg(long)]
    tls: bool,
}

const SMALL_HEAD: &[u8] = b"GET /users/42 HTTP/1.1\r\nHost: api.example.com\r\nAccept: */*\r\n\r\n";

const BROWSER_HEAD: &[u8] = b"GET /svc4711/api/v2/orders?limit=20&page=3 HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-GB,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Connection: keep-alive\r\n\
Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark\r\n\
X-Request-Id: 3f2504e0-4f89-11d3-9a0c-0305e82c3301\r\n\
Cache-Control: no-cache\r\n\r\n";

/// Runs `op` in batches for `time`; returns (median, min, max) ns per operation.
fn measure(time: Duration, mut op: impl FnMut(u64)) -> (f64, f64, f64) {
    let mut batch = 1u64;
    // Size batches to about 10 ms.
    loop {
        let start = Instant::now();
        for i in 0..batch {
            op(i);
        }
        if start.elapsed() > Duration::from_millis(10) {
            break;
        }
        batch *= 2;
    }
    let end = Instant::now() + time;
    let mut per_op = Vec::new();
    let mut i = 0u64;
    while Instant::now() < end || per_op.len() < 5 {
        let start = Instant::now();
        for _ in 0..batch {
            op(i);
            i = i.wrapping_add(1);
        }
        per_op.push(start.elapsed().as_nanos() as f64 / batch as f64);
    }
    per_op.sort_by(f64::total_cmp);
    (
        per_op[per_op.len() / 2],
        per_op[0],
        per_op[per_op.len() - 1],
    )
}

fn report(name: &str, (median, min, max): (f64, f64, f64)) {
    println!("{name:<44} {median:>9.1} ns/op   ({min:.1} - {max:.1})");
}

/// 10,000 routes: 1,000 hosts with 4 routes each (exact, two prefixes, a method-restricted
/// prefix), 5,000 host-less prefixes and 1,000 host-less exact paths.
fn ten_thousand_routes() -> Result<Router> {
    let mut toml = String::from("[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\n");
    let route = |toml: &mut String, name: String, extra: String| {
        toml.push_str(&format!(
            "[[routes]]\nname = \"{name}\"\n{extra}respond = {{ status = 200 }}\n"
        ));
    };
    for h in 0..1000 {
        let host = format!("host = \"h{h}.example.com\"\n");
        route(
            &mut toml,
            format!("h{h}-exact"),
            format!("{host}path_exact = \"/health\"\n"),
        );
        route(
            &mut toml,
            format!("h{h}-api"),
            format!("{host}path_prefix = \"/api\"\n"),
        );
        route(
            &mut toml,
            format!("h{h}-v2"),
            format!("{host}path_prefix = \"/api/v2\"\n"),
        );
        route(
            &mut toml,
            format!("h{h}-post"),
            format!("{host}path_prefix = \"/api\"\nmethods = [\"POST\"]\n"),
        );
    }
    for i in 0..5000 {
        route(
            &mut toml,
            format!("p{i}"),
            format!("path_prefix = \"/svc{i}\"\n"),
        );
    }
    for i in 0..1000 {
        route(
            &mut toml,
            format!("e{i}"),
            format!("path_exact = \"/svc{i}/health\"\n"),
        );
    }
    let config = ringway_config::parse(&toml, "micro.toml").map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(config.routes.len(), 10_000);
    Ok(Router::new(&config.routes, &["l".to_string()]))
}

pub fn run(args: Args) -> Result<()> {
    let time = Duration::from_secs(args.seconds);
    if args.tls {
        return tls::run(time);
    }
    let limits = RequestLimits {
        max_request_line: 8192,
        max_head: 32768,
    };
    let mut headers: Vec<HeaderRef> = Vec::with_capacity(100);
    report(
        "parse_request: 3-line GET (64 B)",
        measure(time, |_| {
            black_box(parse_request(black_box(SMALL_HEAD), &limits, &mut headers).ok());
        }),
    );
    report(
        "parse_request: browser GET, 10 headers (590 B)",
        measure(time, |_| {
            black_box(parse_request(black_box(BROWSER_HEAD), &limits, &mut headers).ok());
        }),
    );

    let router = ten_thousand_routes()?;
    let no_headers = |_: &mut dyn FnMut(&[u8], &[u8]) -> bool| false;
    let hosts: Vec<String> = (0..1000).map(|h| format!("h{h}.example.com")).collect();
    let paths: Vec<String> = (0..5000)
        .map(|i| format!("/svc{i}/api/v2/orders"))
        .collect();
    let find = |host: Option<&str>, path: &str, method: &str| {
        let view = RequestView {
            listener: 0,
            host: host.map(str::as_bytes),
            path: path.as_bytes(),
            method: method.as_bytes(),
            headers: &no_headers,
        };
        router.find(&view)
    };
    report(
        "router (10,000 routes): host + prefix",
        measure(time, |i| {
            black_box(find(
                Some(&hosts[(i % 1000) as usize]),
                "/api/v2/users",
                "GET",
            ));
        }),
    );
    report(
        "router (10,000 routes): host-less prefix",
        measure(time, |i| {
            black_box(find(
                Some("other.example.org"),
                &paths[(i % 5000) as usize],
                "GET",
            ));
        }),
    );
    report(
        "router (10,000 routes): no match",
        measure(time, |_| {
            black_box(find(Some("other.example.org"), "/nothing/here", "GET"));
        }),
    );

    balance(time, &limits)?;
    rate_limit(time)?;
    shard_epochs(time)?;

    let mut stats = TrafficStats::default();
    report(
        "histogram: record one latency",
        measure(time, |i| {
            stats
                .total_latency
                .record(black_box(50 + (i * 7919) % 20_000));
        }),
    );
    let mut other = TrafficStats::default();
    for v in 1..100_000u64 {
        other.total_latency.record(v);
    }
    let mut into = TrafficStats::default();
    report(
        "histogram: merge one route's stats (control)",
        measure(time, |_| {
            into.merge(black_box(&other));
        }),
    );
    Ok(())
}

/// A config of `count` proxied routes named `{prefix}{i}`.
fn routes_config(prefix: &str, count: usize) -> Result<ringway_config::Config> {
    let mut toml = String::from(
        "[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\n\
         [[upstreams]]\nname = \"u\"\nendpoints = [{ address = \"127.0.0.1:2\" }]\n",
    );
    for i in 0..count {
        toml.push_str(&format!(
            "[[routes]]\nname = \"{prefix}{i}\"\npath_exact = \"/{i}\"\nupstream = \"u\"\n"
        ));
    }
    ringway_config::parse(&toml, "micro.toml").map_err(|e| anyhow::anyhow!("{e}"))
}

/// What a reload costs a shard's event loop with 10,000 routes: the install itself, the
/// first request of a route in the new epoch, and the report that follows (which hands the
/// statistics over and frees the state of the names the reload removed).
fn shard_epochs(time: Duration) -> Result<()> {
    use ringway_core::shard::Shard;
    use ringway_core::Epoch;
    use std::sync::Arc;

    const ROUTES: usize = 10_000;
    const RENAMED: usize = 2_000;
    let kept = routes_config("r", ROUTES)?;
    let epochs = [
        Arc::new(Epoch::compile(1, kept.clone()).expect("compiles")),
        Arc::new(Epoch::compile(2, kept).expect("compiles")),
    ];
    let (tx, _rx) = crossbeam_channel::unbounded();
    let shard = Shard::new((0, 1), epochs[0].clone(), tx, None);
    // Every route has served a request and reported once: state for all 10,000.
    let record = |shard: &Shard, routes: std::ops::Range<usize>| {
        let sep = shard.epoch();
        for id in routes {
            shard.record_route(&sep.route(shard, id).state, |stats| {
                stats.requests += 1;
                stats.total_latency.record(300 + id as u64 % 500);
            });
        }
    };
    record(&shard, 0..ROUTES);
    let _ = shard.take_report();
    report(
        "shard: install an epoch (10,000 routes)",
        measure(time, |i| shard.install(epochs[(i % 2) as usize].clone())),
    );
    report(
        "shard: a route's first request in an epoch",
        measure(time, |i| {
            if i % ROUTES as u64 == 0 {
                shard.install(epochs[(i / ROUTES as u64 % 2) as usize].clone());
            }
            black_box(shard.epoch().route(&shard, (i % ROUTES as u64) as usize));
        }),
    );
    // Every route resolved in the current epoch: what a report visits each interval.
    record(&shard, 0..ROUTES);
    let _ = shard.take_report();
    report(
        "shard: report, 10,000 routes with state",
        measure(time, |_| {
            black_box(shard.take_report());
        }),
    );
    // The loop time a reload takes from a shard whose 10,000 routes all have state: the
    // install, and the report after it, which frees the state of every route not used since
    // (here all of them: the worst case) or renamed. Timed one by one: between two, every
    // route serves a request again, untimed.
    let renamed: Vec<Arc<Epoch>> = (0..2)
        .map(|k| {
            let mut config = routes_config("r", ROUTES)?;
            for (i, route) in config.routes.iter_mut().take(RENAMED).enumerate() {
                route.name = format!("renamed-{k}-{i}");
            }
            Ok(Arc::new(Epoch::compile(3 + k, config).expect("compiles")))
        })
        .collect::<Result<_>>()?;
    let mut times = Vec::new();
    let end = Instant::now() + time;
    while Instant::now() < end || times.len() < 5 {
        record(&shard, 0..ROUTES);
        let _ = shard.take_report();
        let start = Instant::now();
        shard.install(renamed[times.len() % 2].clone());
        black_box(shard.take_report());
        times.push(start.elapsed().as_nanos() as f64);
    }
    times.sort_by(f64::total_cmp);
    report(
        "shard: reload renaming 2,000 of 10,000 routes",
        (times[times.len() / 2], times[0], times[times.len() - 1]),
    );
    Ok(())
}

/// One pick (and, for least request, the end of its exchange) from an upstream of eight
/// endpoints weighted 1..=8, per policy; the hash key is a cookie of the browser head.
fn balance(time: Duration, limits: &RequestLimits) -> Result<()> {
    let endpoints: Vec<String> = (1..=8)
        .map(|i| format!("{{ address = \"10.0.0.{i}:9000\", weight = {i} }}"))
        .collect();
    let mut headers: Vec<HeaderRef> = Vec::with_capacity(100);
    parse_request(BROWSER_HEAD, limits, &mut headers)
        .ok()
        .flatten()
        .ok_or_else(|| anyhow::anyhow!("the browser head does not parse"))?;
    let peer: std::net::IpAddr = "192.0.2.7".parse()?;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = move || {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    for (name, lines) in [
        ("round_robin", "balance = \"round_robin\""),
        ("random", "balance = \"random\""),
        ("least_request", "balance = \"least_request\""),
        (
            "hash on a cookie",
            "balance = \"hash\"\nhash_key = \"cookie:session\"",
        ),
    ] {
        let toml = format!(
            "[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\n[[upstreams]]\nname = \"u\"\n\
             endpoints = [{}]\n{lines}\n",
            endpoints.join(", ")
        );
        let config =
            ringway_config::parse(&toml, "micro.toml").map_err(|e| anyhow::anyhow!("{e}"))?;
        let upstream = &config.upstreams[0];
        let balancer = Balancer::new(upstream, hash_table(upstream).as_ref(), None);
        let key = || match &upstream.balance {
            ringway_config::Balance::Hash(key) => {
                request_key_hash(key, peer, BROWSER_HEAD, &headers)
            }
            _ => None,
        };
        report(
            &format!("balance (8 weighted endpoints): {name}"),
            measure(time, |_| {
                black_box(
                    balancer
                        .pick(&mut random, key, AllEligible)
                        .map(|p| p.endpoint),
                );
            }),
        );
    }
    guarded_balance(time, &mut random)
}

/// A pick through an upstream guard (outlier detection on), from four endpoints weighted
/// 1..=4: with every endpoint eligible, and with one of the four ejected. The clock is read
/// once per case here; forwarding reads it once per pick.
fn guarded_balance(time: Duration, mut random: impl FnMut() -> u64) -> Result<()> {
    let endpoints: Vec<String> = (1..=4)
        .map(|i| format!("{{ address = \"10.0.0.{i}:9000\", weight = {i} }}"))
        .collect();
    let outlier = "outlier_detection = { consecutive_5xx = 1, base_ejection_time = \"1h\", \
                   max_ejection_time = \"1h\", max_ejection_percent = 25 }";
    for (name, lines) in [
        ("round_robin", "balance = \"round_robin\""),
        ("random", "balance = \"random\""),
        ("least_request", "balance = \"least_request\""),
        ("hash", "balance = \"hash\"\nhash_key = \"client_ip\""),
    ] {
        let toml = format!(
            "[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\n[[upstreams]]\nname = \"u\"\n\
             endpoints = [{}]\n{lines}\n{outlier}\n",
            endpoints.join(", ")
        );
        let config =
            ringway_config::parse(&toml, "micro.toml").map_err(|e| anyhow::anyhow!("{e}"))?;
        let upstream = &config.upstreams[0];
        let balancer = Balancer::new(upstream, hash_table(upstream).as_ref(), None);
        let now = Instant::now();
        let guard = UpstreamGuard::new(upstream, None, &HealthTable::default(), now);
        let mut key = 0u64;
        let mut pick = |guard: &UpstreamGuard| {
            key = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let hashed = key;
            balancer
                .pick(&mut random, || Some(hashed), guard.eligibility(now))
                .map(|p| p.endpoint)
        };
        report(
            &format!("guarded pick (4 endpoints), all eligible: {name}"),
            measure(time, |_| {
                black_box(pick(&guard));
            }),
        );
        guard.record(1, Outcome::Response(500), now);
        assert!(!guard.eligible(1, now), "endpoint 1 ejected");
        report(
            &format!("guarded pick (4 endpoints), 1 of 4 ejected: {name}"),
            measure(time, |_| {
                black_box(pick(&guard));
            }),
        );
    }
    Ok(())
}

/// The rate limit's request-path cost: hashing a client address into its key, and admitting a
/// request of a key that already holds leased tokens on the shard (the common case: a map
/// lookup, an LRU touch, a demand count and a decrement). Without a `rate_limit` the request
/// path pays one `None` check.
fn rate_limit(time: Duration) -> Result<()> {
    use std::rc::Rc;

    use ringway_core::policy::rate_limit::lease::{LeaseGrant, Outbox};
    use ringway_core::policy::rate_limit::{LimiterSpec, RouteLimiter, Verdict};

    let toml = "[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\n[[routes]]\nname = \"r\"\n\
                respond = { status = 200 }\n\
                rate_limit = { rate = 1000000000, burst = 1000000000, key = \"client_ip\" }\n";
    let config = ringway_config::parse(toml, "micro.toml").map_err(|e| anyhow::anyhow!("{e}"))?;
    let spec = LimiterSpec::all(&config)
        .next()
        .ok_or_else(|| anyhow::anyhow!("no limiter"))?;
    let limiter = RouteLimiter::new(spec.clone(), Rc::new(Outbox::default()), 1);
    // 1,000 clients, each already holding more tokens than the run can spend.
    let peers: Vec<std::net::IpAddr> = (0..1000u32)
        .map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i).into())
        .collect();
    let keys: Vec<u64> = peers
        .iter()
        .map(|&p| limiter.key(p, None, b"", &[]))
        .collect();
    let now = std::time::Instant::now();
    for &key in &keys {
        let _ = limiter.admit_now(key, now);
        let grant = LeaseGrant {
            limiter: spec.id,
            key,
            tokens: u32::MAX,
            wait: Duration::ZERO,
        };
        limiter.grant(&grant, now);
    }
    report(
        "rate limit: key of a client address",
        measure(time, |i| {
            black_box(limiter.key(black_box(peers[(i % 1000) as usize]), None, b"", &[]));
        }),
    );
    report(
        "rate limit: admit, existing key (1,000 keys)",
        measure(time, |i| {
            let verdict = limiter.admit_now(black_box(keys[(i % 1000) as usize]), now);
            assert_eq!(verdict, Some(Verdict::Admit));
        }),
    );
    Ok(())
}
