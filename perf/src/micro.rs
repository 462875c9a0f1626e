//! Micro-benchmarks of the hot pieces, in-process: request head parsing, routing among
//! 10,000 routes, endpoint picks of each load-balancing policy, histogram recording. Each case runs in batches for a fixed time; the report
//! is the median and the spread of the batches' ns per operation.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::Result;
use ringway_core::http::h1::{parse_request, HeaderRef, RequestLimits};
use ringway_core::metrics::TrafficStats;
use ringway_core::router::{RequestView, Router};
use ringway_core::upstream::balance::{hash_table, request_key_hash};
use ringway_core::upstream::Balancer;

#[derive(clap::Args)]
pub struct Args {
    /// Time per case.
    #[arg(long, default_value = "2")]
    seconds: u64,
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

    let mut stats = TrafficStats::default();
    report(
        "histogram: record one latency",
        measure(time, |i| {
            stats
                .total_latency
                .saturating_record(black_box(50 + (i * 7919) % 20_000));
        }),
    );
    let mut other = TrafficStats::default();
    for v in 1..100_000u64 {
        other.total_latency.saturating_record(v);
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
                black_box(balancer.pick(&mut random, key).map(|p| p.endpoint));
            }),
        );
    }
    Ok(())
}
