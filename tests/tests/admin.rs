//! The admin listener: `/healthz`, `/ready` (503 while draining), `/metrics`, on keep-alive
//! connections, on the control side of the process; and the lock-outs it resists: idle and
//! dripping connections (a deadline for the whole head), and a connection cap that answers 503.
//!
//! The admin listener runs its own epoll runtime whatever `[runtime] driver` says, so the
//! lock-out tests run once, on the epoll driver.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringway_tests::{both_drivers, get, wait_for, Client, Driver, Gateway, Reply, Upstream};

fn config(up: &Upstream) -> String {
    format!(
        "[control]\nsocket = \"{{control_socket}}\"\ndrain_timeout = \"20s\"\n\n[admin]\nlisten = \"{{admin}}\"\n\n[[listeners]]\nname = \"main\"\nlisten = \"{{listen}}\"\n\n[[upstreams]]\nname = \"u\"\nendpoints = [{{ address = \"{}\" }}]\n\n[[routes]]\nname = \"all\"\nupstream = \"u\"\n",
        up.addr()
    )
}

both_drivers!(health_ready_and_metrics_over_keep_alive, |driver| {
    let up = Upstream::ok("up");
    let gw = Gateway::start(driver, &config(&up));
    assert_eq!(
        Client::connect(gw.addr()).request(&get("h", "/")).text(),
        "up"
    );
    let mut admin = Client::connect(gw.admin_addr());
    let resp = admin.request(&get("h", "/healthz"));
    assert_eq!(resp.status, 200);
    let resp = admin.request(&get("h", "/ready"));
    assert_eq!(resp.status, 200);
    let resp = admin.request(&get("h", "/metrics"));
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        resp.headers
    );
    let resp = admin.request(&get("h", "/nope"));
    assert_eq!(resp.status, 404);
    let resp = admin.request("POST /ready HTTP/1.1\r\nHost: h\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(resp.status, 405);
    let resp = admin.request("GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert_eq!(resp.status, 200);
    assert!(admin.is_closed(Duration::from_secs(5)));
});

#[test]
fn ready_is_503_while_draining() {
    let up = Upstream::start(|r| {
        if r.target == "/slow" {
            Reply::Delay(Duration::from_secs(3), Box::new(Reply::ok("slow")))
        } else {
            Reply::ok("up")
        }
    });
    let mut gw = Gateway::start(ringway_tests::Driver::Epoll, &config(&up));
    let mut busy = Client::connect(gw.addr());
    busy.send(get("h", "/slow").as_bytes());
    up.wait_until("the slow request", Duration::from_secs(5), |u| {
        u.requests() >= 1
    });
    let mut admin = Client::connect(gw.admin_addr());
    assert_eq!(admin.request(&get("h", "/ready")).status, 200);
    gw.signal("TERM");
    wait_for("/ready to answer 503", Duration::from_secs(5), || {
        admin.request(&get("h", "/ready")).status == 503
    });
    assert_eq!(admin.request(&get("h", "/healthz")).status, 200);
    assert_eq!(busy.read_response().text(), "slow");
    assert_eq!(
        gw.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
}

/// A fresh connection's `GET /healthz`: its status, and how long it took.
fn healthz(gw: &Gateway) -> (u16, Duration) {
    let started = Instant::now();
    let mut c = Client::connect(gw.admin_addr());
    let status = c.request(&get("h", "/healthz")).status;
    (status, started.elapsed())
}

/// Reads until the peer closes (or `within` passes): what it sent.
fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let end = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&out).into_owned())
            }
            Err(_) => return None,
        }
    }
}

#[test]
fn healthz_answers_while_a_thousand_connections_idle_or_drip() {
    let up = Upstream::ok("up");
    let gw = Gateway::start_env(
        Driver::Epoll,
        1,
        &config(&up),
        &[("RINGWAY_ADMIN_HEAD_TIMEOUT_MS", "8000")],
    );
    let head_timeout = Duration::from_secs(8);
    let started = Instant::now();
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(gw.admin_addr()).unwrap())
        .collect();
    let dripping: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(gw.admin_addr()).unwrap())
        .collect();
    // Each dripper sends a byte of a head every 100 ms, never finishing it.
    let stop = Arc::new(AtomicBool::new(false));
    let dripper = {
        let mut streams: Vec<TcpStream> = dripping.iter().map(|s| s.try_clone().unwrap()).collect();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let head = b"GET /healthz HTTP/1.1\r\nHost: h\r\nX-Pad: ";
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let byte = head.get(i).copied().unwrap_or(b'a');
                for s in &mut streams {
                    let _ = s.write_all(&[byte]);
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // While they are all open (the first closes at the head deadline), fresh probes are
    // answered.
    for _ in 0..5 {
        let (status, took) = healthz(&gw);
        assert_eq!(status, 200);
        assert!(took < Duration::from_secs(3), "/healthz took {took:?}");
    }
    assert!(
        started.elapsed() < head_timeout,
        "the probes ended {:?} after the first connection: too slow to tell",
        started.elapsed()
    );
    // The head deadline closes every one of them, dripping or not, with a 408.
    for (i, mut s) in dripping.into_iter().chain(idle).enumerate() {
        let answer = read_to_close(&mut s, Duration::from_secs(20)).unwrap_or_else(|| {
            panic!(
                "connection {i} still open {:?} after its start",
                started.elapsed()
            )
        });
        assert!(
            answer.starts_with("HTTP/1.1 408 "),
            "connection {i}: {answer:?}"
        );
    }
    assert!(
        started.elapsed() < head_timeout * 3,
        "{:?}",
        started.elapsed()
    );
    stop.store(true, Ordering::SeqCst);
    dripper.join().unwrap();
    assert_eq!(healthz(&gw).0, 200);
}

#[test]
fn past_the_connection_cap_new_connections_get_503() {
    let up = Upstream::ok("up");
    let gw = Gateway::start_env(
        Driver::Epoll,
        1,
        &config(&up),
        &[("RINGWAY_ADMIN_MAX_CONNECTIONS", "4")],
    );
    // Four keep-alive connections, each served once, so each holds its slot.
    let mut held: Vec<Client> = (0..4)
        .map(|_| {
            let mut c = Client::connect(gw.admin_addr());
            assert_eq!(c.request(&get("h", "/healthz")).status, 200);
            c
        })
        .collect();
    let mut fifth = Client::connect(gw.admin_addr());
    let resp = fifth.request(&get("h", "/healthz"));
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(fifth.is_closed(Duration::from_secs(5)));
    // The held ones still work; once one goes, a new connection is served again.
    assert_eq!(held[0].request(&get("h", "/ready")).status, 200);
    held.pop();
    wait_for("a freed slot", Duration::from_secs(5), || {
        healthz(&gw).0 == 200
    });
}
