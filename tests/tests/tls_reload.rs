//! Certificate reloads: `ctl reload` and SIGHUP re-read the certificate and key
//! files; new handshakes get the new certificate at once while open keep-alive connections
//! carry on; a missing or broken file fails the reload, naming the file, and the running
//! certificates stay; `ctl status` and `/metrics` list each certificate with its expiry; and
//! reloads between two certificates under TLS keep-alive load lose no request.

mod tls_common;

use ringway_tests::tls::{tls_proxy_toml, CertSpec};
use ringway_tests::{
    both_drivers, get, wait_for, CertFiles, Gateway, Pki, TlsClient, TlsConn, Upstream,
};
use serde_json::Value as Json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tls_common::{echo, poll, sample, scrape, OBSERVE};

/// The notAfter of every certificate the harness issues: 2100-01-01T00:00:00Z.
const NOT_AFTER_UNIX_S: i64 = 4_102_444_800;

/// A client for `r.test` that never resumes, so each connection shows the certificate the
/// gateway serves now (a resumed session shows that of its first handshake).
fn fresh_client(pki: &Pki) -> TlsClient {
    TlsClient::builder()
        .trust(pki)
        .server_name("r.test")
        .no_resumption()
        .build()
}

/// One request on `conn`, which must succeed.
#[track_caller]
fn assert_serves(conn: &mut TlsConn, what: &str) {
    let resp = conn.request(&get("r.test", "/"));
    assert_eq!(resp.status, 200, "{what}: {}", resp.text());
}

/// The serial number of the certificate a new connection gets, after one request on it.
fn serial_now(gw: &Gateway, client: &TlsClient) -> String {
    let mut conn = client.connect(gw.addr()).expect("a new connection");
    assert_serves(&mut conn, "a new connection");
    conn.peer_cert().serial
}

/// The error strings of a failed reload.
fn reload_errors(gw: &Gateway, what: &str) -> Vec<String> {
    let out = gw.ctl(&["reload"]);
    assert!(!out.is_ok(), "{what}: the reload succeeded: {out:#?}");
    assert_eq!(out.reply["ok"], false, "{what}: {out:#?}");
    let errors: Vec<String> = out.reply["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no errors listed: {out:#?}"))
        .iter()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    assert!(!errors.is_empty(), "{what}: {out:#?}");
    errors
}

both_drivers!(
    reload_serves_new_certificates_and_keeps_old_connections,
    |driver| {
        let pki = Pki::new("reload");
        let old = pki.issue(&CertSpec::server(&["r.test"]).file_stem("edge"));
        let up = Upstream::start(echo);
        let gw = Gateway::start(driver, &tls_proxy_toml(&[&old], "", up.addr(), ""));
        let client = fresh_client(&pki);

        let mut keep = client.connect(gw.addr()).unwrap();
        assert_serves(&mut keep, "before any reload");
        assert_eq!(keep.peer_cert().serial, old.serial());

        // ctl reload after new files were put in place.
        let new = pki.reissue(&old);
        assert_ne!(new.serial(), old.serial());
        gw.ctl(&["reload"]).expect_ok("reload with renewed files");
        let mut conn = client.connect(gw.addr()).unwrap();
        assert_eq!(conn.peer_cert().sha256, new.sha256(), "a new connection");
        assert_serves(&mut conn, "after the reload");
        assert_serves(&mut keep, "the connection opened before the reload");
        assert_eq!(keep.peer_cert().serial, old.serial());

        // A key file that is not PEM: the reload fails naming it; the renewed certificate stays.
        std::fs::write(&new.key, "this is not a key\n").unwrap();
        let key_path = new.key.display().to_string();
        let errors = reload_errors(&gw, "garbage key");
        assert!(
            errors.iter().any(|e| e.contains(&key_path)),
            "no error names {key_path}: {errors:#?}"
        );
        assert_eq!(
            serial_now(&gw, &client),
            new.serial(),
            "after the failed reload"
        );
        assert_serves(&mut keep, "after the failed reload");

        // A missing certificate file: the same.
        let kept_pem = std::fs::read(&new.cert).unwrap();
        std::fs::remove_file(&new.cert).unwrap();
        let cert_path = new.cert.display().to_string();
        let errors = reload_errors(&gw, "missing certificate");
        assert!(
            errors.iter().any(|e| e.contains(&cert_path)),
            "no error names {cert_path}: {errors:#?}"
        );
        assert_eq!(
            serial_now(&gw, &client),
            new.serial(),
            "after the failed reload"
        );
        std::fs::write(&new.cert, kept_pem).unwrap();

        // SIGHUP re-reads the files too.
        let newer = pki.reissue(&old);
        gw.signal("HUP");
        poll("the SIGHUP reload", || {
            let status = gw.ctl(&["status"]).expect_ok("status");
            if status["reloads"]["ok"] == 2 {
                Ok(())
            } else {
                Err(status["reloads"].to_string())
            }
        });
        assert_eq!(serial_now(&gw, &client), newer.serial(), "after SIGHUP");
        let status = gw.ctl(&["status"]).expect_ok("status");
        assert_eq!(status["reloads"]["failed"], 2, "{status}");
        assert_serves(&mut keep, "after every reload");
        assert_eq!(up.requests(), 8);
    }
);

/// The `ctl status` entries of `listener`'s certificates.
fn listed(status: &Json, listener: &str) -> Vec<Json> {
    status["certificates"]
        .as_array()
        .unwrap_or_else(|| panic!("no certificates in {status}"))
        .iter()
        .filter(|c| c["listener"] == listener)
        .cloned()
        .collect()
}

/// The status entry and the expiry gauge for `cert` of listener `main`.
#[track_caller]
fn assert_listed(gw: &Gateway, status: &Json, cert: &CertFiles, subject: &str) {
    let file = cert.cert.display().to_string();
    let entry = listed(status, "main")
        .into_iter()
        .find(|c| c["file"] == file.as_str())
        .unwrap_or_else(|| panic!("{file} not listed: {status}"));
    assert_eq!(
        entry["names"],
        serde_json::json!(cert.spec.names),
        "{entry}"
    );
    assert_eq!(entry["subject"], subject, "{entry}");
    assert_eq!(entry["not_after_unix_s"], NOT_AFTER_UNIX_S, "{entry}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    let days = (NOT_AFTER_UNIX_S as f64 - now) / 86_400.0;
    let shown = entry["expires_in_days"].as_f64().expect("expires_in_days");
    assert!(
        (shown - days).abs() < 1.0,
        "{shown} days, not {days}: {entry}"
    );

    let names = cert.spec.names.join(",");
    let labels = [
        ("listener", "main"),
        ("file", file.as_str()),
        ("names", names.as_str()),
    ];
    poll("the certificate's expiry gauge", || {
        let (scrape, text) = scrape(gw);
        match sample(&scrape, "ringway_tls_certificate_expiry_seconds", &labels) {
            Some(v) if v == NOT_AFTER_UNIX_S as f64 => Ok(()),
            other => Err(format!("{other:?}\n{text}")),
        }
    });
}

both_drivers!(status_and_metrics_list_the_certificates, |driver| {
    let pki = Pki::new("listed");
    let a = pki.issue(&CertSpec::server(&["r.test"]).file_stem("a"));
    let b = pki.issue(&CertSpec::server(&["s.test", "*.s.test"]).file_stem("b"));
    let up = Upstream::start(echo);
    let toml =
        |certs: &[&CertFiles]| OBSERVE.to_string() + &tls_proxy_toml(certs, "", up.addr(), "");
    let gw = Gateway::start(driver, &toml(&[&a, &b]));

    let status = gw.ctl(&["status"]).expect_ok("status");
    assert_eq!(listed(&status, "main").len(), 2, "{status}");
    // RFC 4514: the last RDN first.
    assert_listed(&gw, &status, &a, "O=ringway tests,CN=r.test");
    assert_listed(&gw, &status, &b, "O=ringway tests,CN=s.test");

    // A reload that drops b: its entry and its gauge go.
    gw.write_config(&toml(&[&a]));
    gw.ctl(&["reload"]).expect_ok("reload without b");
    let status = gw.ctl(&["status"]).expect_ok("status");
    assert_eq!(listed(&status, "main").len(), 1, "{status}");
    assert_listed(&gw, &status, &a, "O=ringway tests,CN=r.test");
    let b_file = b.cert.display().to_string();
    poll("b's expiry gauge to go", || {
        let (scrape, text) = scrape(&gw);
        let labels = [("file", b_file.as_str())];
        match sample(&scrape, "ringway_tls_certificate_expiry_seconds", &labels) {
            None => Ok(()),
            Some(_) => Err(text),
        }
    });
});

/// What the load threads of the reload test share.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    sent: AtomicU64,
    answered: AtomicU64,
    errors: Mutex<Vec<String>>,
    /// Serials of the certificates that new connections were given.
    serials: Mutex<Vec<String>>,
}

impl Load {
    fn fail(&self, what: String) {
        self.errors.lock().unwrap().push(what);
        self.stop.store(true, Ordering::Relaxed);
    }

    /// One request on `conn`: whether it got its 200.
    fn exchange(&self, conn: &mut TlsConn, who: &str, n: u64) -> bool {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let path = format!("/{who}/{n}");
        let resp = conn
            .try_send(get("r.test", &path).as_bytes())
            .and_then(|()| conn.try_read_response_to("GET"));
        match resp {
            Ok(r) if r.status == 200 && r.text() == format!("GET {path}") => {
                self.answered.fetch_add(1, Ordering::Relaxed);
                true
            }
            Ok(r) => {
                self.fail(format!("{who} request {n}: {} {:?}", r.status, r.text()));
                false
            }
            Err(e) => {
                self.fail(format!("{who} request {n}: {e}"));
                false
            }
        }
    }
}

both_drivers!(reloads_under_tls_keep_alive_load_lose_nothing, |driver| {
    const KEEP_ALIVE_CLIENTS: usize = 3;
    const RELOADS: usize = 10;
    // Paced, so that debug-build clients on two shared cores leave room for the reloads.
    const PERIOD: Duration = Duration::from_millis(5);
    let pki = Pki::new("load");
    let certs = [
        pki.issue(&CertSpec::server(&["r.test"]).file_stem("one")),
        pki.issue(&CertSpec::server(&["r.test"]).file_stem("two")),
    ];
    let up = Upstream::start(echo);
    let toml = |i: usize| tls_proxy_toml(&[&certs[i % 2]], "", up.addr(), "");
    let gw = Gateway::start_shards(driver, 2, &toml(0));
    let addr = gw.addr();
    let load = Load::default();
    let started = Instant::now();

    std::thread::scope(|s| {
        for t in 0..KEEP_ALIVE_CLIENTS {
            let (load, client) = (&load, TlsClient::new(&pki, "r.test"));
            s.spawn(move || {
                let who = format!("keep-alive-{t}");
                let mut conn = match client.connect(addr) {
                    Ok(conn) => conn,
                    Err(e) => return load.fail(format!("{who}: {e}")),
                };
                let mut n = 0;
                while !load.stop.load(Ordering::Relaxed) && load.exchange(&mut conn, &who, n) {
                    n += 1;
                    std::thread::sleep(PERIOD);
                }
            });
        }
        // And a handshake per request, to see each certificate go into service.
        let (load, client) = (&load, fresh_client(&pki));
        s.spawn(move || {
            let mut n = 0;
            while !load.stop.load(Ordering::Relaxed) {
                let mut conn = match client.connect(addr) {
                    Ok(conn) => conn,
                    Err(e) => return load.fail(format!("new connection {n}: {e}")),
                };
                if !load.exchange(&mut conn, "new", n) {
                    return;
                }
                load.serials.lock().unwrap().push(conn.peer_cert().serial);
                n += 1;
            }
        });

        wait_for("traffic", Duration::from_secs(10), || {
            load.answered.load(Ordering::Relaxed) >= 50 || load.stop.load(Ordering::Relaxed)
        });
        for i in 1..=RELOADS {
            if load.stop.load(Ordering::Relaxed) {
                break;
            }
            gw.write_config(&toml(i));
            let reply = gw.ctl(&["reload"]);
            if !reply.is_ok() {
                load.fail(format!("reload {i}: {reply:#?}"));
                break;
            }
            let mark = load.answered.load(Ordering::Relaxed);
            wait_for("traffic between reloads", Duration::from_secs(10), || {
                load.answered.load(Ordering::Relaxed) >= mark + 20
                    || load.stop.load(Ordering::Relaxed)
            });
        }
        load.stop.store(true, Ordering::Relaxed);
    });
    let took = started.elapsed();
    let errors = load.errors.into_inner().unwrap();
    assert!(errors.is_empty(), "failures during reloads: {errors:#?}");
    let (sent, answered) = (load.sent.into_inner(), load.answered.into_inner());
    assert_eq!(sent, answered, "every request got its 200");
    assert!(
        took < Duration::from_secs(20),
        "{answered} requests took {took:?}"
    );
    let serials = load.serials.into_inner().unwrap();
    for cert in &certs {
        assert!(
            serials.contains(&cert.serial()),
            "no new connection got {}: {serials:?}",
            cert.spec.file_stem.as_deref().unwrap_or_default()
        );
    }
    let status = gw.ctl(&["status"]).expect_ok("status");
    assert_eq!(status["epoch"], RELOADS as u64 + 1, "{status}");
    eprintln!("{answered} requests over {RELOADS} reloads in {took:?}");
});
