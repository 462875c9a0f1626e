//! Signals and systemd notifications: SIGHUP reloads, SIGTERM drains (in-flight requests
//! finish, new connections are refused, idle keep-alives close, exit 0), SIGINT stops fast,
//! and NOTIFY_SOCKET hears READY=1, RELOADING=1 with MONOTONIC_USEC, and STOPPING=1.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::time::{Duration, Instant};

use ringway_tests::{both_drivers, get, wait_for, Client, Gateway, Reply, TempPath, Upstream};

fn direct(body: &str) -> String {
    format!(
        "[[listeners]]\nname = \"main\"\nlisten = \"{{listen}}\"\n\n[[routes]]\nname = \"a\"\nrespond = {{ status = 200, body = \"{body}\" }}\n"
    )
}

/// A listener proxying everything to `up`, with a drain timeout of `drain`.
fn proxied(up: &Upstream, drain: &str) -> String {
    format!(
        "[control]\nsocket = \"{{control_socket}}\"\ndrain_timeout = \"{drain}\"\n\n[[listeners]]\nname = \"main\"\nlisten = \"{{listen}}\"\n\n[[upstreams]]\nname = \"u\"\nendpoints = [{{ address = \"{}\" }}]\n\n[[routes]]\nname = \"all\"\nupstream = \"u\"\n",
        up.addr()
    )
}

/// An upstream that answers `/slow` after `delay` and anything else at once.
fn slow_upstream(delay: Duration) -> Upstream {
    Upstream::start(move |r| {
        if r.target == "/slow" {
            Reply::Delay(delay, Box::new(Reply::ok("slow")))
        } else {
            Reply::ok("fast")
        }
    })
}

fn body(gw: &Gateway) -> String {
    Client::connect(gw.addr()).request(&get("h", "/")).text()
}

both_drivers!(sighup_reloads_the_file, |driver| {
    let gw = Gateway::start(driver, &direct("one"));
    assert_eq!(body(&gw), "one");
    gw.write_config(&direct("two"));
    gw.signal("HUP");
    gw.wait_stderr("reloaded", Duration::from_secs(10));
    assert_eq!(body(&gw), "two");
    let status = gw.ctl(&["status"]).expect_ok("status");
    assert_eq!(status["epoch"], 2, "{status}");
    // A bad file on SIGHUP is logged and changes nothing.
    std::fs::write(gw.config_path(), "[[listeners]]\nbogus = 1\n").unwrap();
    gw.signal("HUP");
    gw.wait_stderr("reload failed", Duration::from_secs(10));
    assert_eq!(body(&gw), "two");
});

both_drivers!(sigterm_drains_then_exits_0, |driver| {
    let up = slow_upstream(Duration::from_millis(1500));
    let mut gw = Gateway::start_shards(driver, 2, &proxied(&up, "10s"));
    let mut idle = Client::connect(gw.addr());
    assert_eq!(idle.request(&get("h", "/x")).text(), "fast");
    let mut busy = Client::connect(gw.addr());
    busy.send(get("h", "/slow").as_bytes());
    up.wait_until("the slow request", Duration::from_secs(5), |u| {
        u.requests() >= 2
    });

    let signalled = Instant::now();
    gw.signal("TERM");
    // New connections are refused once every shard has closed its listener.
    wait_for("the listener to close", Duration::from_secs(5), || {
        Client::try_connect(gw.addr()).is_err()
    });
    // The idle keep-alive connection is closed without a response.
    assert!(
        idle.is_closed(Duration::from_secs(5)),
        "idle keep-alive left open"
    );
    // The in-flight request completes, then its connection closes.
    let resp = busy.read_response();
    assert_eq!((resp.status, resp.text().as_str()), (200, "slow"));
    assert!(
        busy.is_closed(Duration::from_secs(5)),
        "drained connection left open"
    );
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .expect("the gateway exits after its drain");
    assert_eq!(status.code(), Some(0), "{}", gw.stderr());
    assert!(signalled.elapsed() < Duration::from_secs(10));
});

/// Issue 3: a drain answers in-flight requests with `connection: close`. Core decides
/// keep-alive when the request head arrives (`proxy::serve`), so a request already in
/// flight when the drain starts gets a keep-alive response, and the connection is closed
/// after it without notice.
fn in_flight_response_says_connection_close(driver: ringway_tests::Driver) {
    let up = slow_upstream(Duration::from_millis(800));
    let gw = Gateway::start(driver, &proxied(&up, "10s"));
    let mut busy = Client::connect(gw.addr());
    busy.send(get("h", "/slow").as_bytes());
    up.wait_until("the slow request", Duration::from_secs(5), |u| {
        u.requests() >= 1
    });
    gw.signal("TERM");
    let resp = busy.read_response();
    assert_eq!(resp.text(), "slow");
    assert_eq!(
        resp.header("connection"),
        Some("close"),
        "{:?}",
        resp.headers
    );
}

#[test]
fn in_flight_response_says_connection_close_io_uring() {
    in_flight_response_says_connection_close(ringway_tests::Driver::IoUring);
}

#[test]
fn in_flight_response_says_connection_close_epoll() {
    in_flight_response_says_connection_close(ringway_tests::Driver::Epoll);
}

#[test]
fn a_drain_that_times_out_still_exits_0() {
    let up = slow_upstream(Duration::from_secs(30));
    let mut gw = Gateway::start(ringway_tests::Driver::Epoll, &proxied(&up, "500ms"));
    let mut busy = Client::connect(gw.addr());
    busy.send(get("h", "/slow").as_bytes());
    up.wait_until("the slow request", Duration::from_secs(5), |u| {
        u.requests() >= 1
    });
    let started = Instant::now();
    gw.ctl(&["drain"]).expect_ok("drain");
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .expect("the gateway exits after its drain timeout");
    assert_eq!(status.code(), Some(0), "{}", gw.stderr());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "exited after {took:?}, before the timeout"
    );
    assert!(took < Duration::from_secs(5), "exited after {took:?}");
    assert!(busy.is_closed(Duration::from_secs(5)));
}

both_drivers!(sigint_stops_fast, |driver| {
    let up = slow_upstream(Duration::from_secs(30));
    let mut gw = Gateway::start(driver, &proxied(&up, "30s"));
    let mut busy = Client::connect(gw.addr());
    busy.send(get("h", "/slow").as_bytes());
    up.wait_until("the slow request", Duration::from_secs(5), |u| {
        u.requests() >= 1
    });
    let started = Instant::now();
    gw.signal("INT");
    let status = gw
        .wait_exit(Duration::from_secs(5))
        .expect("SIGINT stops the gateway at once");
    assert_eq!(status.code(), Some(0), "{}", gw.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(busy.is_closed(Duration::from_secs(2)));
});

#[test]
fn ctl_shutdown_stops_and_removes_the_socket() {
    let mut gw = Gateway::start(ringway_tests::Driver::Epoll, &direct("x"));
    let reply = gw.ctl(&["shutdown"]).expect_ok("shutdown");
    assert_eq!(reply["state"], "stopping");
    let status = gw.wait_exit(Duration::from_secs(5)).expect("stopped");
    assert_eq!(status.code(), Some(0));
    assert!(
        !gw.control_socket().exists(),
        "the control socket is removed at exit"
    );
}

/// Datagrams received on `socket`, until `want` has been seen or 10 s passed.
fn receive_until(socket: &UnixDatagram, seen: &mut Vec<String>, want: &str) {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while !seen.iter().any(|m| m.contains(want)) {
        assert!(
            Instant::now() < end,
            "no {want:?} on NOTIFY_SOCKET; got {seen:?}"
        );
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

fn notifications(driver: ringway_tests::Driver, socket: UnixDatagram, name: &str) {
    let mut gw = Gateway::start_env(driver, 1, &direct("one"), &[("NOTIFY_SOCKET", name)]);
    let mut seen = Vec::new();
    receive_until(&socket, &mut seen, "READY=1");
    seen.clear();
    gw.write_config(&direct("two"));
    gw.signal("HUP");
    receive_until(&socket, &mut seen, "READY=1");
    let reloading = seen
        .iter()
        .position(|m| m.lines().any(|l| l == "RELOADING=1"))
        .unwrap_or_else(|| panic!("no RELOADING=1 before READY=1: {seen:?}"));
    let usec: u64 = seen[reloading]
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {seen:?}"));
    assert!(usec > 0);
    let ready = seen.iter().rposition(|m| m.contains("READY=1")).unwrap();
    assert!(ready > reloading, "{seen:?}");
    seen.clear();
    gw.signal("TERM");
    receive_until(&socket, &mut seen, "STOPPING=1");
    assert_eq!(
        gw.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn notify_socket_path_hears_ready_reloading_and_stopping() {
    let path = TempPath::new("notify");
    let socket = UnixDatagram::bind(path.path()).unwrap();
    notifications(
        ringway_tests::Driver::Epoll,
        socket,
        path.path().to_str().unwrap(),
    );
}

#[test]
fn notify_socket_abstract_name_works_too() {
    let name = format!("ringway-test-notify-{}", std::process::id());
    let addr = UnixAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    notifications(ringway_tests::Driver::IoUring, socket, &format!("@{name}"));
}

#[test]
fn sigusr1_and_ctl_reopen_reopen_the_log_files() {
    let log = TempPath::new("log");
    let hlog = TempPath::new("hlog");
    let toml = format!(
        "[control]\nsocket = \"{{control_socket}}\"\n[access_log]\npath = \"{}\"\n[metrics]\ninterval = \"100ms\"\ninterval_log = \"{}\"\n{}",
        log.path().display(),
        hlog.path().display(),
        direct("x")
    );
    let gw = Gateway::start(ringway_tests::Driver::Epoll, &toml);
    let lines = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    assert_eq!(
        Client::connect(gw.addr()).request(&get("h", "/")).status,
        200
    );
    wait_for("the first access-log line", Duration::from_secs(10), || {
        lines(log.path()) == 1
    });
    // Rotate as logrotate does: move the files away, then ask for a reopen.
    let rotated = log.path().with_extension("1");
    let rotated_h = hlog.path().with_extension("1");
    std::fs::rename(log.path(), &rotated).unwrap();
    std::fs::rename(hlog.path(), &rotated_h).unwrap();
    gw.signal("SIGUSR1");
    wait_for("the access log reopened", Duration::from_secs(10), || {
        log.path().exists()
    });
    wait_for("the interval log reopened", Duration::from_secs(10), || {
        hlog.path().exists()
    });
    assert_eq!(
        Client::connect(gw.addr()).request(&get("h", "/")).status,
        200
    );
    wait_for(
        "the second line in the new file",
        Duration::from_secs(10),
        || lines(log.path()) == 1,
    );
    assert_eq!(
        lines(&rotated),
        1,
        "the rotated file keeps the first line only"
    );
    // The new interval log starts with a header of its own.
    let text = std::fs::read_to_string(hlog.path()).unwrap();
    assert!(text.contains("#[StartTime: "), "{text}");
    // The same through the control socket.
    let reply = gw.ctl(&["reopen"]).expect_ok("reopen");
    assert_eq!(reply["access_log"], true);
    assert_eq!(reply["interval_log"], true);
    let _ = std::fs::remove_file(&rotated);
    let _ = std::fs::remove_file(&rotated_h);
}
