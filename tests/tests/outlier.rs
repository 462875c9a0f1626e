//! Passive outlier detection (docs/config.md, `outlier_detection`): an endpoint whose tries
//! fail in a row is ejected (gets no requests) for a back-off time, then gets requests again;
//! never more than `max_ejection_percent` of the endpoints are out at once.
//!
//! One shard throughout: ejection is per shard, so the counts below are exact only with one.

use std::time::Duration;

use ringway_tests::faults::{Fault, Faulty};
use ringway_tests::{
    both_drivers, get, listener_toml, route_toml, upstream_toml, wait_for, Client, Gateway,
};
use serde_json::Value;

fn pool_toml(endpoints: &[&Faulty], extra: &str) -> String {
    let endpoints: Vec<_> = endpoints.iter().map(|up| (up.addr(), 1)).collect();
    listener_toml("") + &upstream_toml("pool", &endpoints, extra) + &route_toml("all", "pool")
}

/// Sends `n` requests, each on a new connection (a gateway error closes its connection);
/// their statuses.
fn send(gw: &Gateway, n: usize) -> Vec<u16> {
    (0..n)
        .map(|i| {
            let mut client = Client::connect(gw.addr());
            client.request(&get("h", &format!("/{i}"))).status
        })
        .collect()
}

/// The endpoints `ctl stats` shows ejected on shard 0.
fn ejected(gw: &Gateway) -> Vec<String> {
    let stats = gw.ctl(&["stats"]).expect_ok("stats");
    let outlier = &stats["upstreams"]["pool"]["outlier"];
    let Some(map) = outlier["ejected"].as_object() else {
        panic!("no outlier stats: {stats}");
    };
    map.iter()
        .filter(|(_, shards)| {
            shards
                .as_array()
                .is_some_and(|s| s.contains(&Value::from(0)))
        })
        .map(|(address, _)| address.clone())
        .collect()
}

both_drivers!(consecutive_5xx_eject_until_the_back_off_ends, |driver| {
    let mut bad = Faulty::start("bad");
    let good = [Faulty::start("b"), Faulty::start("c"), Faulty::start("d")];
    bad.set(Fault::Status(500));
    let extra = "outlier_detection = { consecutive_5xx = 3, base_ejection_time = \"700ms\", max_ejection_percent = 50 }";
    let gw = Gateway::start(
        driver,
        &pool_toml(&[&bad, &good[0], &good[1], &good[2]], extra),
    );
    // Round robin: the bad endpoint's third failure is the 9th request at the latest.
    send(&gw, 12);
    assert_eq!(bad.requests(), 3);
    assert_eq!(ejected(&gw), [bad.addr().to_string()]);
    let statuses = send(&gw, 30);
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(bad.requests(), 3, "an ejected endpoint got requests");
    // After the ejection it is back in the rotation.
    bad.set(Fault::Ok);
    wait_for("the ejected endpoint back", Duration::from_secs(5), || {
        send(&gw, 4);
        bad.requests() > 3
    });
    assert!(ejected(&gw).is_empty());
    let stats = gw.ctl(&["stats"]).expect_ok("stats");
    assert_eq!(stats["upstreams"]["pool"]["outlier"]["ejections"], 1);
});

both_drivers!(
    connect_failures_eject_with_consecutive_gateway_failure,
    |driver| {
        let mut bad = Faulty::start("bad");
        let good = Faulty::start("good");
        bad.set(Fault::Refuse);
        let extra = "outlier_detection = { consecutive_5xx = 0, consecutive_gateway_failure = 2, \
                 base_ejection_time = \"30s\", max_ejection_percent = 50 }";
        let gw = Gateway::start(driver, &pool_toml(&[&bad, &good], extra));
        // Two refused connections (502), then only the good endpoint answers.
        let statuses = send(&gw, 4);
        assert_eq!(
            statuses.iter().filter(|&&s| s == 502).count(),
            2,
            "{statuses:?}"
        );
        let statuses = send(&gw, 20);
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
        assert_eq!(ejected(&gw), [bad.addr().to_string()]);
    }
);

both_drivers!(never_more_than_the_share_is_ejected, |driver| {
    let mut bad = [Faulty::start("a"), Faulty::start("b"), Faulty::start("c")];
    let good = Faulty::start("d");
    for up in &mut bad {
        up.set(Fault::Status(503));
    }
    let extra = "outlier_detection = { consecutive_5xx = 2, base_ejection_time = \"30s\", max_ejection_percent = 50 }";
    let gw = Gateway::start(
        driver,
        &pool_toml(&[&bad[0], &bad[1], &bad[2], &good], extra),
    );
    send(&gw, 40);
    // Half of four: two are ejected, the third failing one stays in and keeps getting its
    // requests.
    let out = ejected(&gw);
    assert_eq!(out.len(), 2, "{out:?}");
    let kept: Vec<&Faulty> = bad
        .iter()
        .filter(|up| !out.contains(&up.addr().to_string()))
        .collect();
    assert_eq!(kept.len(), 1);
    let before = kept[0].requests();
    send(&gw, 10);
    assert_eq!(
        kept[0].requests(),
        before + 5,
        "the endpoint over the share is picked"
    );
});
