//! When io_uring cannot start (here: a seccomp filter refuses `io_uring_setup`, as container
//! runtimes' default profiles do), `driver = "auto"` falls back to epoll, says so and why at
//! start-up, and serves; `driver = "io_uring"` refuses to start instead.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ringway_tests::{free_port, gateway_bin, get, Client, TempPath};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};

/// Spawns the gateway from a thread whose seccomp filter makes `io_uring_setup` fail with
/// EPERM; the child inherits the filter. Returns the child and its stderr lines as they come.
fn spawn_without_io_uring(config: &std::path::Path) -> (Child, mpsc::Receiver<String>) {
    let config = config.to_path_buf();
    std::thread::spawn(move || {
        let filter = SeccompFilter::new(
            [(libc::SYS_io_uring_setup, vec![])].into_iter().collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            std::env::consts::ARCH
                .try_into()
                .expect("a supported architecture"),
        )
        .expect("a valid filter");
        let program: BpfProgram = filter.try_into().expect("a compilable filter");
        seccompiler::apply_filter(&program).expect("installing the filter on this thread");
        let mut child = Command::new(gateway_bin())
            .args(["run", "-c"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning the gateway");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (child, rx)
    })
    .join()
    .expect("the filtered spawner thread")
}

/// The config file and the control socket's path (both removed on drop).
fn config(driver: &str, port: u16) -> (TempPath, TempPath) {
    let socket = TempPath::new("sock");
    let text = format!(
        "[runtime]\nshards = 2\ndriver = \"{driver}\"\n\n[control]\nsocket = \"{}\"\n\n\
         [[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:{port}\"\n\n\
         [[routes]]\nname = \"r\"\nrespond = {{ status = 200, body = \"on epoll\" }}\n",
        socket.path().display()
    );
    let file = TempPath::new("toml");
    std::fs::write(file.path(), text).expect("writing the config");
    (file, socket)
}

/// Every line until one contains `needle`, or panics after `deadline` with what came.
fn lines_until(rx: &mpsc::Receiver<String>, needle: &str, deadline: Duration) -> Vec<String> {
    let end = std::time::Instant::now() + deadline;
    let mut seen = Vec::new();
    while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains(needle);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(_) => break,
        }
    }
    panic!(
        "no line with {needle:?} within {deadline:?}; stderr:\n{}",
        seen.join("\n")
    );
}

#[test]
fn auto_falls_back_to_epoll_and_says_why() {
    let port = free_port();
    let (file, _socket) = config("auto", port);
    let (mut child, rx) = spawn_without_io_uring(file.path());
    let lines = lines_until(&rx, "ringway ready", Duration::from_secs(20));
    let log = lines.join("\n");
    let fallbacks = lines
        .iter()
        .filter(|l| l.contains("shard runs on epoll: io_uring could not start"))
        .count();
    assert_eq!(
        fallbacks, 2,
        "each shard says it fell back, and why:\n{log}"
    );
    assert!(
        log.contains("Operation not permitted"),
        "the reason is given:\n{log}"
    );
    let ready = lines.last().expect("the ready line");
    assert!(
        ready.contains("epoll") && !ready.contains("io_uring"),
        "{ready}"
    );
    let mut client = Client::connect(format!("127.0.0.1:{port}").parse().expect("an address"));
    assert_eq!(client.request(&get("h", "/")).text(), "on epoll");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn forced_io_uring_refuses_to_start_without_it() {
    let (file, _socket) = config("io_uring", free_port());
    let (mut child, rx) = spawn_without_io_uring(file.path());
    let status = child.wait().expect("waiting for the gateway");
    assert_eq!(status.code(), Some(1), "exit code 1: could not start");
    // The reader thread ends with the pipe: collect until it hangs up.
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        lines.push(line);
    }
    let log = lines.join("\n");
    assert!(
        log.contains("cannot start the io_uring driver"),
        "the error names the driver:\n{log}"
    );
}
