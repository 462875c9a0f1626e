//! The admin listener: `/healthz`, `/ready` (503 while draining), `/metrics`, on keep-alive
//! connections, on the control side of the process.

use std::time::Duration;

use ringway_tests::{both_drivers, get, wait_for, Client, Gateway, Reply, Upstream};

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
