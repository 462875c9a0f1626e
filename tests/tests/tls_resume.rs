//! TLS session resumption across the shards of one gateway: the ticket keys and
//! the session cache are shared by every shard, and kept by a reload of a listener with the
//! same name. Connections land on shards by the kernel's SO_REUSEPORT hash of the client's
//! port, so each case makes [`CONNECTIONS`] connections (both shards serve some unless the
//! hash sent all of them to one, a chance of 2 in 2^20), and the access log's `shard` field
//! shows that both did.

mod tls_common;

use ringway_tests::tls::{tls_proxy_toml, HandshakeKind, TlsVersion};
use ringway_tests::{both_drivers, get, Driver, Gateway, Pki, TempPath, TlsClient, Upstream};
use std::collections::BTreeSet;
use tls_common::{access_log_lines, access_log_toml, ctl_stats, echo, poll, wait_metrics, OBSERVE};

/// Connections per round: enough for both of two shards to serve some.
const CONNECTIONS: usize = 20;

/// `CONNECTIONS` sequential connections from `client`, each with one request (which also
/// reads the TLS 1.3 tickets sent after the handshake): how each handshake went.
fn connect_many(gw: &Gateway, client: &TlsClient, version: TlsVersion) -> Vec<HandshakeKind> {
    (0..CONNECTIONS)
        .map(|i| {
            let mut conn = client
                .connect(gw.addr())
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            assert_eq!(conn.protocol_version(), version, "connection {i}");
            let path = format!("/{i}");
            assert_eq!(
                conn.request(&get("r.test", &path)).text(),
                format!("GET {path}")
            );
            // Both sides see the session's certificate, resumed or not.
            assert_eq!(conn.peer_names(), ["r.test"], "connection {i}");
            conn.handshake_kind()
        })
        .collect()
}

/// One gateway with 2 shards and `session_tickets = tickets`, a client pinned to `version`:
/// every connection after the first resumes, before and after a reload of the same config.
fn resumes_across_shards(driver: Driver, version: TlsVersion, tickets: bool) {
    let pki = Pki::new("resume");
    let cert = pki.issue_server(&["r.test"]);
    let up = Upstream::start(echo);
    let log = TempPath::new("log");
    let tls = format!("session_tickets = {tickets}");
    let toml = format!(
        "{OBSERVE}{}{}",
        access_log_toml(log.path()),
        tls_proxy_toml(&[&cert], &tls, up.addr(), "")
    );
    let gw = Gateway::start_shards(driver, 2, &toml);
    let client = TlsClient::builder()
        .trust(&pki)
        .server_name("r.test")
        .version(version)
        .build();
    let case = format!("{version:?}, session_tickets = {tickets}");

    let kinds = connect_many(&gw, &client, version);
    let mut expected = vec![HandshakeKind::Resumed; CONNECTIONS];
    expected[0] = HandshakeKind::Full;
    assert_eq!(kinds, expected, "{case}");
    let shards: BTreeSet<u64> = access_log_lines(log.path(), CONNECTIONS)
        .iter()
        .map(|line| line["shard"].as_u64().expect("a shard number"))
        .collect();
    assert_eq!(
        shards,
        BTreeSet::from([0, 1]),
        "{case}: both shards served (and resumed) connections"
    );
    let resumed = (CONNECTIONS - 1) as f64;
    let handshakes = |full: f64, resumed: f64| {
        wait_metrics(
            &gw,
            &[
                (
                    "ringway_tls_handshakes_total",
                    &[("listener", "main"), ("resumed", "false")],
                    full,
                ),
                (
                    "ringway_tls_handshakes_total",
                    &[("listener", "main"), ("resumed", "true")],
                    resumed,
                ),
            ],
        );
    };
    handshakes(1.0, resumed);
    let stats = poll("ctl stats to count the handshakes", || {
        let stats = ctl_stats(&gw);
        let tls = &stats["listeners"]["main"]["tls"];
        if tls["handshakes"] == CONNECTIONS && tls["resumed"] == CONNECTIONS - 1 {
            Ok(stats)
        } else {
            Err(stats.to_string())
        }
    });
    let failures = &stats["listeners"]["main"]["tls"]["failures"];
    assert!(
        failures.as_object().is_some_and(|f| f.is_empty()),
        "{case}: {stats}"
    );

    // The same config again: the listener keeps its ticket keys and session cache.
    let reply = gw.ctl(&["reload"]).expect_ok("reload of the same config");
    assert_eq!(reply["epoch"], 2, "{reply}");
    let kinds = connect_many(&gw, &client, version);
    assert_eq!(
        kinds,
        vec![HandshakeKind::Resumed; CONNECTIONS],
        "{case}: after the reload"
    );
    handshakes(1.0, resumed + CONNECTIONS as f64);
}

both_drivers!(tls13_tickets_resume_across_shards_and_reloads, |driver| {
    resumes_across_shards(driver, TlsVersion::Tls13, true);
});

both_drivers!(
    tls12_session_ids_resume_across_shards_and_reloads,
    |driver| {
        resumes_across_shards(driver, TlsVersion::Tls12, false);
    }
);

// Tickets off: TLS 1.3 resumes by an id into the shared session cache (stateful tickets).
both_drivers!(tls13_without_ticket_keys_resumes_from_the_cache, |driver| {
    resumes_across_shards(driver, TlsVersion::Tls13, false);
});

both_drivers!(tls12_tickets_resume_across_shards_and_reloads, |driver| {
    resumes_across_shards(driver, TlsVersion::Tls12, true);
});

both_drivers!(another_gateway_does_not_resume_the_sessions, |driver| {
    // A client's sessions from one gateway are not resumed by another (other ticket keys and
    // cache), so the resumptions above are the gateway's doing, not the client's.
    let pki = Pki::new("resume");
    let cert = pki.issue_server(&["r.test"]);
    let up = Upstream::start(echo);
    let toml = tls_proxy_toml(&[&cert], "", up.addr(), "");
    let (one, two) = (Gateway::start(driver, &toml), Gateway::start(driver, &toml));
    let client = TlsClient::new(&pki, "r.test");
    let mut conn = client.connect(one.addr()).unwrap();
    assert_eq!(conn.request(&get("r.test", "/")).status, 200);
    assert_eq!(
        client.connect(one.addr()).unwrap().handshake_kind(),
        HandshakeKind::Resumed
    );
    let mut conn = client.connect(two.addr()).unwrap();
    assert_eq!(conn.handshake_kind(), HandshakeKind::Full);
    assert_eq!(conn.request(&get("r.test", "/")).status, 200);
});

both_drivers!(no_tickets_and_no_cache_means_no_resumption, |driver| {
    let pki = Pki::new("resume");
    let cert = pki.issue_server(&["r.test"]);
    let up = Upstream::start(echo);
    let tls = "session_tickets = false\nsession_cache = 0";
    let gw = Gateway::start(driver, &tls_proxy_toml(&[&cert], tls, up.addr(), ""));
    for version in [TlsVersion::Tls12, TlsVersion::Tls13] {
        let client = TlsClient::builder()
            .trust(&pki)
            .server_name("r.test")
            .version(version)
            .build();
        for i in 0..3 {
            let mut conn = client.connect(gw.addr()).unwrap();
            assert_eq!(conn.request(&get("r.test", "/")).status, 200);
            assert_eq!(
                conn.handshake_kind(),
                HandshakeKind::Full,
                "{version:?} {i}"
            );
            assert_eq!(conn.tickets_received(), 0, "{version:?} {i}");
        }
    }
});
