//! Endpoint host names followed while the gateway runs: `[resolver] servers` points the
//! gateway at a test DNS server, whose answer for a name moves from 127.0.0.1 to 127.0.0.2
//! (two test upstreams on the same port) while requests keep flowing. Traffic follows the
//! name; a failing lookup keeps the last good address and is logged once; each upstream's
//! `resolve_interval` sets how often its names are asked, and "off" asks only at load.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use ringway_tests::dns::{Answer, DnsServer};
use ringway_tests::{
    both_drivers, get, listener_toml, poll_until, Client, Gateway, Reply, Upstream,
};

const LOCAL_A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const LOCAL_B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Two upstreams on one port, one on 127.0.0.1 answering "a" and one on 127.0.0.2 answering
/// "b" (a DNS A record carries no port), and that port.
fn upstream_pair() -> (Upstream, Upstream, u16) {
    for _ in 0..20 {
        let a = TcpListener::bind((LOCAL_A, 0)).expect("bind 127.0.0.1");
        let port = a.local_addr().expect("local_addr").port();
        let Ok(b) = TcpListener::bind((LOCAL_B, port)) else {
            continue;
        };
        let a = Upstream::start_with(a, |_| Reply::ok("a")).expect("start a");
        let b = Upstream::start_with(b, |_| Reply::ok("b")).expect("start b");
        return (a, b, port);
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

/// `[resolver]` asking only `dns`, quickly.
fn resolver_toml(dns: SocketAddr) -> String {
    format!("[resolver]\nservers = [\"{dns}\"]\ntimeout = \"200ms\"\n\n")
}

fn text(client: &mut Client, path: &str) -> String {
    let resp = client.request(&get("example.com", path));
    assert_eq!(resp.status, 200, "{path}: {}", resp.text());
    resp.text()
}

both_drivers!(
    traffic_follows_the_name_and_survives_a_failing_dns,
    |driver| {
        let dns = DnsServer::start();
        dns.set("backend.test", Answer::A(LOCAL_A));
        let (a, b, port) = upstream_pair();
        let toml = resolver_toml(dns.addr())
        + &listener_toml("")
        + &format!(
            "[[upstreams]]\nname = \"backend\"\nendpoints = [{{ address = \"backend.test:{port}\" }}]\n\
             resolve_interval = \"200ms\"\n\n[[routes]]\nname = \"all\"\nupstream = \"backend\"\n"
        );
        let gw = Gateway::start(driver, &toml);
        // One keep-alive connection throughout: it picks up each new address at its next request.
        let mut client = Client::connect(gw.addr());
        assert_eq!(text(&mut client, "/"), "a");

        dns.set("backend.test", Answer::A(LOCAL_B));
        poll_until(
            "traffic to move to 127.0.0.2",
            Duration::from_secs(10),
            || match text(&mut client, "/") {
                b if b == "b" => Ok(()),
                other => Err(other),
            },
        );
        gw.wait_stderr(
            "endpoint name resolves to a new address",
            Duration::from_secs(5),
        );
        let served_by_a = a.requests();
        let status = gw.ctl(&["status"]).expect_ok("status");
        let name = &status["resolver"]["names"][0];
        assert_eq!(name["host"], "backend.test", "{status}");
        assert_eq!(
            name["addresses"],
            serde_json::json!(["127.0.0.2"]),
            "{status}"
        );
        assert!(name["error"].is_null(), "{status}");

        // The DNS server fails: the endpoint keeps 127.0.0.2, and the failure is logged once,
        // however many lookups fail.
        dns.set("backend.test", Answer::ServFail);
        let asked = dns.queries("backend.test");
        poll_until("three failed lookups", Duration::from_secs(10), || {
            let now = dns.queries("backend.test");
            if now >= asked + 3 {
                Ok(())
            } else {
                Err(format!("{} lookups", now - asked))
            }
        });
        for _ in 0..5 {
            assert_eq!(text(&mut client, "/"), "b");
        }
        gw.wait_stderr("cannot resolve endpoint name", Duration::from_secs(5));
        let log = gw.stderr();
        assert_eq!(
            log.matches("cannot resolve endpoint name").count(),
            1,
            "{log}"
        );
        let warning = log
            .lines()
            .find(|l| l.contains("cannot resolve endpoint name"))
            .unwrap();
        assert!(
            warning.contains("backend.test") && warning.contains("Server Failure"),
            "{warning}"
        );
        assert!(
            warning.contains("127.0.0.2"),
            "the warning names the address kept: {warning}"
        );
        let status = gw.ctl(&["status"]).expect_ok("status");
        let name = &status["resolver"]["names"][0];
        assert_eq!(status["resolver"]["failing"], 1, "{status}");
        assert_eq!(
            name["addresses"],
            serde_json::json!(["127.0.0.2"]),
            "{status}"
        );
        assert!(
            name["error"].as_str().unwrap().contains("Server Failure"),
            "{status}"
        );

        // It stops answering at all: still 127.0.0.2. A reload, which looks names up afresh
        // as a start does, fails and leaves the running config (and its address) in place.
        dns.set("backend.test", Answer::Silent);
        let asked = dns.queries("backend.test");
        poll_until("two unanswered lookups", Duration::from_secs(10), || {
            let now = dns.queries("backend.test");
            if now >= asked + 2 {
                Ok(())
            } else {
                Err(format!("{} lookups", now - asked))
            }
        });
        assert_eq!(text(&mut client, "/"), "b");
        let reload = gw.ctl(&["reload"]);
        assert!(!reload.is_ok(), "{}", reload.stdout);
        let errors = reload.reply["errors"].to_string();
        assert!(
            errors.contains("cannot resolve host \\\"backend.test\\\""),
            "{errors}"
        );
        assert_eq!(text(&mut client, "/"), "b");
        assert_eq!(
            a.requests(),
            served_by_a,
            "nothing went back to the old address"
        );

        // It answers again, with the first address: traffic moves back, and the recovery is logged.
        dns.set("backend.test", Answer::A(LOCAL_A));
        poll_until(
            "traffic to move back to 127.0.0.1",
            Duration::from_secs(10),
            || match text(&mut client, "/") {
                a if a == "a" => Ok(()),
                other => Err(other),
            },
        );
        gw.wait_stderr("endpoint name resolves again", Duration::from_secs(5));
        assert!(
            b.requests() >= 8,
            "b served while it was the address: {}",
            b.requests()
        );
    }
);

both_drivers!(
    the_interval_sets_how_often_and_off_asks_only_at_load,
    |driver| {
        let dns = DnsServer::start();
        dns.set("fast.test", Answer::A(LOCAL_A));
        dns.set("still.test", Answer::A(LOCAL_A));
        let (_a, _b, port) = upstream_pair();
        let interval = Duration::from_millis(300);
        let toml = resolver_toml(dns.addr())
            + &listener_toml("")
            + &format!(
            "[[upstreams]]\nname = \"fast\"\nendpoints = [{{ address = \"fast.test:{port}\" }}]\n\
             resolve_interval = \"300ms\"\n\n\
             [[upstreams]]\nname = \"still\"\nendpoints = [{{ address = \"still.test:{port}\" }}]\n\
             resolve_interval = \"off\"\n\n\
             [[routes]]\nname = \"fast\"\npath_prefix = \"/fast\"\nupstream = \"fast\"\n\n\
             [[routes]]\nname = \"still\"\npath_prefix = \"/still\"\nupstream = \"still\"\n"
        );
        let gw = Gateway::start(driver, &toml);
        // What the load asked (a start that lost a race for its port and was retried asked
        // too).
        let (fast_at_load, still_at_load) = (dns.queries("fast.test"), dns.queries("still.test"));
        let mut client = Client::connect(gw.addr());
        assert_eq!(text(&mut client, "/fast"), "a");
        assert_eq!(text(&mut client, "/still"), "a");

        dns.set("fast.test", Answer::A(LOCAL_B));
        dns.set("still.test", Answer::A(LOCAL_B));
        poll_until(
            "fast to move to 127.0.0.2",
            Duration::from_secs(10),
            || match text(&mut client, "/fast") {
                b if b == "b" => Ok(()),
                other => Err(other),
            },
        );
        poll_until(
            "five lookups of fast.test after the load",
            Duration::from_secs(10),
            || match dns.queries("fast.test") - fast_at_load {
                n if n >= 5 => Ok(()),
                n => Err(format!("{n} lookups")),
            },
        );
        assert_eq!(
            text(&mut client, "/still"),
            "a",
            "\"off\": the name is not followed"
        );
        assert_eq!(
            dns.queries("still.test"),
            still_at_load,
            "asked at load only"
        );
        // The lookups after the load come one interval apart, counted from the end of the
        // lookup before (so never sooner than the interval).
        let times = dns.query_times("fast.test");
        for pair in times[fast_at_load..].windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= interval - Duration::from_millis(20)
                    && gap < interval + Duration::from_secs(2),
                "lookups {gap:?} apart with resolve_interval = {interval:?}: {times:?}"
            );
        }
    }
);
