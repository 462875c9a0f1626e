//! The control socket and `ringway ctl`: status, config, stats, exit codes, mode 0600, one
//! gateway per socket, and bad clients (garbage, a 1 MiB line, silence) that get an error or
//! a close while the data plane keeps answering; clients that drip a byte at a time are
//! closed at their line's deadline, and `ringway ctl` shows the refusal it gets meanwhile.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringway_tests::{both_drivers, gateway_bin, get, run_ctl, Client, Driver, Gateway, TempPath};
use serde_json::Value;

const CONFIG: &str = r#"
[[listeners]]
name = "main"
listen = "{listen}"

[[routes]]
name = "hello"
respond = { status = 200, headers = { x-api-key = "s3cr3t-value" }, body = "hello" }
"#;

fn hello(gw: &Gateway) {
    let mut c = Client::connect(gw.addr());
    let resp = c.request(&get("h", "/"));
    assert_eq!((resp.status, resp.text().as_str()), (200, "hello"));
}

/// One request line, one reply line.
fn exchange(stream: &mut UnixStream, line: &[u8]) -> Value {
    stream.write_all(line).unwrap();
    let mut reply = String::new();
    BufReader::new(stream.try_clone().unwrap())
        .read_line(&mut reply)
        .unwrap();
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("reply {reply:?}: {e}"))
}

/// Reads until EOF (or a reset); panics if the peer keeps the connection open past `within`.
fn read_to_close(stream: &mut UnixStream, within: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("the control socket did not close within {within:?}: {e}"),
        }
    }
}

both_drivers!(
    status_names_epoch_shards_drivers_and_connections,
    |driver| {
        let gw = Gateway::start_shards(driver, 2, CONFIG);
        hello(&gw);
        let status = gw.ctl(&["status"]).expect_ok("status");
        assert_eq!(status["epoch"], 1, "{status}");
        assert_eq!(status["state"], "serving", "{status}");
        assert_eq!(status["pid"], gw.pid(), "{status}");
        assert!(status["uptime_s"].as_f64().unwrap() >= 0.0, "{status}");
        let shards = status["shards"].as_array().unwrap();
        assert_eq!(shards.len(), 2, "{status}");
        for (i, shard) in shards.iter().enumerate() {
            assert_eq!(shard["shard"], i, "{status}");
            assert_eq!(shard["epoch"], 1, "{status}");
            assert_eq!(shard["driver"], driver.as_str(), "{status}");
        }
        assert_eq!(status["listeners"][0]["name"], "main", "{status}");
        assert_eq!(status["listeners"][0]["listen"], gw.addr().to_string());
        assert!(status["connections"].is_object(), "{status}");
    }
);

#[test]
fn the_socket_is_0600_and_a_second_gateway_on_it_refuses_to_start() {
    let gw = Gateway::start(Driver::Epoll, CONFIG);
    let mode = std::fs::metadata(gw.control_socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    // Same socket, other ports: the control socket is checked before anything binds.
    let second = TempPath::new("toml");
    let text = gw
        .config_text(CONFIG)
        .replace(&gw.addr().to_string(), &gw.addr2().to_string());
    std::fs::write(second.path(), text).unwrap();
    let out = Command::new(gateway_bin())
        .args(["run", "-c"])
        .arg(second.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("another gateway"), "{stderr}");
    // The first one is undisturbed.
    gw.ctl(&["status"]).expect_ok("status of the first gateway");
    hello(&gw);
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let socket = TempPath::new("sock");
    // A socket file nobody answers on, as a crashed gateway leaves behind.
    drop(std::os::unix::net::UnixListener::bind(socket.path()).unwrap());
    assert!(socket.path().exists());
    let toml = format!(
        "[control]\nsocket = \"{}\"\n{CONFIG}",
        socket.path().display()
    );
    let gw = Gateway::start(Driver::Epoll, &toml);
    run_ctl(socket.path(), &["status"]).expect_ok("status");
    hello(&gw);
}

#[test]
fn ctl_exit_codes_and_config_lookup() {
    let gw = Gateway::start(Driver::Epoll, CONFIG);
    // 2: nobody there.
    let missing = TempPath::new("sock");
    let out = run_ctl(missing.path(), &["status"]);
    assert_eq!(out.code, Some(2), "{out:#?}");
    // 1: an error reply.
    let out = gw.ctl(&["reload", "/nonexistent/ringway.toml"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert_eq!(out.reply["ok"], false);
    assert!(
        out.reply["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("/nonexistent/ringway.toml:1:1: (file):"),
        "{out:#?}"
    );
    // -c CONFIG: the socket comes from the file's [control] table.
    let out = Command::new(gateway_bin())
        .args(["ctl", "-c"])
        .arg(gw.config_path())
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["ok"], true);
}

#[test]
fn config_is_shown_with_secrets_redacted() {
    let gw = Gateway::start(Driver::Epoll, CONFIG);
    let out = gw.ctl(&["config"]);
    assert!(!out.stdout.contains("s3cr3t-value"), "{}", out.stdout);
    let reply = out.expect_ok("config");
    assert_eq!(reply["file"], gw.config_path().display().to_string());
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.contains("hello") && text.contains("<redacted>"),
        "{text}"
    );
    assert_eq!(reply["config"]["routes"][0]["name"], "hello");
    assert_eq!(
        reply["config"]["routes"][0]["respond"]["headers"]["x-api-key"],
        "<redacted>"
    );
}

#[test]
fn stats_answers_after_a_flush() {
    let gw = Gateway::start_shards(Driver::Epoll, 2, CONFIG);
    hello(&gw);
    gw.ctl(&["stats"]).expect_ok("stats");
}

both_drivers!(
    bad_clients_get_errors_or_closes_and_traffic_flows,
    |driver| {
        let gw = Gateway::start_env(
            driver,
            1,
            CONFIG,
            &[("RINGWAY_CONTROL_READ_TIMEOUT_MS", "300")],
        );
        let mut traffic = Client::connect(gw.addr());
        let mut serve = || {
            let resp = traffic.request(&get("h", "/"));
            assert_eq!((resp.status, resp.text().as_str()), (200, "hello"));
        };

        // Garbage: an error reply, and the connection still serves the next line.
        let mut c = UnixStream::connect(gw.control_socket()).unwrap();
        for garbage in [
            &b"hello\n"[..],
            b"{\"cmd\":\"explode\"}\n",
            b"[]\n",
            b"\xff\xfe\n",
        ] {
            let reply = exchange(&mut c, garbage);
            assert_eq!(reply["ok"], false, "{reply}");
            assert!(
                reply["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{reply}"
            );
        }
        assert_eq!(exchange(&mut c, b"{\"cmd\":\"status\"}\n")["ok"], true);
        serve();

        // A silent client, and one that never finishes its line: closed after the read timeout.
        let mut silent = UnixStream::connect(gw.control_socket()).unwrap();
        let mut partial = UnixStream::connect(gw.control_socket()).unwrap();
        partial.write_all(b"{\"cmd\":\"sta").unwrap();
        serve();
        gw.ctl(&["status"])
            .expect_ok("status beside the silent clients");
        for stream in [&mut silent, &mut partial] {
            let rest = read_to_close(stream, Duration::from_secs(10));
            let rest = String::from_utf8_lossy(&rest);
            assert!(rest.is_empty() || rest.contains("\"ok\":false"), "{rest}");
        }

        // A 1 MiB line: an error and a close, whatever the client still sends.
        let mut big = UnixStream::connect(gw.control_socket()).unwrap();
        let writer = {
            let mut w = big.try_clone().unwrap();
            std::thread::spawn(move || {
                let line = vec![b'x'; 1 << 20];
                let _ = w.write_all(&line);
            })
        };
        let reply = read_to_close(&mut big, Duration::from_secs(10));
        let reply = String::from_utf8_lossy(&reply);
        assert!(
            reply.contains("\"ok\":false") && reply.contains("64 KiB"),
            "{reply}"
        );
        writer.join().unwrap();
        serve();

        // Afterwards everything still works.
        let started = Instant::now();
        gw.ctl(&["status"])
            .expect_ok("status after the bad clients");
        assert!(started.elapsed() < Duration::from_secs(5));
        serve();
    }
);

#[test]
fn dripping_clients_are_closed_per_line_and_ctl_shows_the_refusal() {
    let timeout = Duration::from_millis(1500);
    let gw = Gateway::start_env(
        Driver::Epoll,
        1,
        CONFIG,
        &[("RINGWAY_CONTROL_READ_TIMEOUT_MS", "1500")],
    );
    // Every client slot (16) taken by a client that sends a byte every 100 ms and never a
    // whole line (JSON allows any amount of white space).
    let started = Instant::now();
    let mut dripping: Vec<UnixStream> = (0..16)
        .map(|_| UnixStream::connect(gw.control_socket()).unwrap())
        .collect();
    let dripper = {
        let mut streams: Vec<UnixStream> =
            dripping.iter().map(|s| s.try_clone().unwrap()).collect();
        std::thread::spawn(move || {
            for s in &mut streams {
                let _ = s.write_all(b"{\"cmd\":\"status\"");
            }
            while !streams.is_empty() && started.elapsed() < Duration::from_secs(20) {
                streams.retain_mut(|s| s.write_all(b" ").is_ok());
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // `ringway ctl` is refused, and says so: the gateway's reply, exit 1.
    let out = gw.ctl(&["status"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert_eq!(out.reply["ok"], false, "{out:#?}");
    assert!(
        out.reply["error"]
            .as_str()
            .is_some_and(|e| e.contains("too many control connections")),
        "{out:#?}"
    );
    // A byte every 100 ms does not extend the line's deadline: each is closed after it.
    for (i, s) in dripping.iter_mut().enumerate() {
        let rest = read_to_close(s, Duration::from_secs(10));
        let rest = String::from_utf8_lossy(&rest);
        assert!(rest.contains("in time"), "client {i}: {rest}");
    }
    let took = started.elapsed();
    assert!(
        took >= timeout && took < timeout * 4,
        "closed after {took:?}"
    );
    dripper.join().unwrap();
    gw.ctl(&["status"])
        .expect_ok("status once the drippers are gone");
}
