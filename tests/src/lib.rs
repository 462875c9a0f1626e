//! The integration-test harness: it starts the real `ringway` binary on 127.0.0.1 with ports it
//! picks, real upstreams ([`Upstream`], a small hand-written HTTP/1.1 server whose replies each
//! test scripts) and a raw-socket [`Client`], so the tests in `tests/tests/` see the gateway
//! exactly as a user's clients and services do. [`tls`] adds the same over TLS: certificates
//! made at test time, a rustls client, a TLS upstream, and the OpenSSL command-line tools.
//!
//! Threading model: plain std threads and blocking sockets, no async runtime. The upstream
//! runs one thread per accepted connection; the gateway's stderr is drained by one thread.
//! Shared harness state sits behind `Mutex`/atomics (this is test code, not a shard).
//!
//! Error policy: the harness panics, with a message that says what it waited for and what it
//! saw (the gateway's stderr included), because a test failure is the only useful outcome of
//! a broken precondition. Waits are bounded: readiness lines or deadline loops polling a
//! condition, never a bare sleep standing in for synchronisation.
//!
//! Every I/O test runs on both drivers through [`both_drivers!`].

#![forbid(unsafe_code)]

mod client;
mod control;
pub mod dns;
pub mod faults;
mod gateway;
pub mod grpc;
pub mod h2client;
pub mod h2raw;
pub mod h2upstream;
mod reply;
#[cfg(test)]
mod selftest;
pub mod tls;
mod upstream;

pub use client::{get, Client, Response, Transport};
pub use control::{run_ctl, CtlOutput};
pub use gateway::{gateway_bin, Gateway};
pub use reply::{reason, Reply};
pub use tls::{CertFiles, Pki, TlsClient, TlsConn, TlsUpstream};
pub use upstream::{Blackhole, Received, Upstream};

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The shard I/O driver a gateway is started with (`[runtime] driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    IoUring,
    Epoll,
}

impl Driver {
    pub const ALL: [Driver; 2] = [Driver::IoUring, Driver::Epoll];

    /// The value of `[runtime] driver` for this driver.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Expands to a module `name` holding two `#[test]` functions, `io_uring` and `epoll`, each
/// running the body with its [`Driver`] bound to the closure's parameter:
///
/// ```text
/// both_drivers!(direct_response, |driver| {
///     let gw = Gateway::start(driver, "...");
/// });
/// ```
///
/// The module does `use super::*;`, so the test file's imports are visible inside the body.
#[macro_export]
macro_rules! both_drivers {
    ($name:ident, |$driver:ident $(: $ty:ty)?| $body:expr $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($driver: $crate::Driver) {
                $body
            }

            #[test]
            fn io_uring() {
                run($crate::Driver::IoUring)
            }

            #[test]
            fn epoll() {
                run($crate::Driver::Epoll)
            }
        }
    };
}

/// Ports handed out by [`free_port`] in this process, so two tests never get the same one
/// even when the kernel offers a just-released port again.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port on 127.0.0.1 that nothing listens on right now: binds port 0, notes the port the
/// kernel chose and releases it. No other call in this process returns the same port.
pub fn free_port() -> u16 {
    for _ in 0..64 {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind 127.0.0.1:0")
            .local_addr()
            .expect("local_addr")
            .port();
        let mut seen = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if seen.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("free_port: the kernel kept offering ports this process already handed out");
}

/// Polls `cond` every few milliseconds until it holds, panicking with `what` once `deadline`
/// has passed. The building block for every wait in the harness and the tests.
pub fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `check` every 50 ms until it returns `Ok`, panicking with `what` and the last `Err`
/// (the state seen) once `deadline` has passed: [`wait_for`] for waits whose failure should
/// say what was seen instead.
#[track_caller]
pub fn poll_until<T>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let end = Instant::now() + deadline;
    loop {
        match check() {
            Ok(value) => return value,
            Err(state) if Instant::now() >= end => {
                panic!("timed out after {deadline:?} waiting for {what}; last seen: {state}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A file in the temp dir with a name unique to this process and call, removed on drop.
#[derive(Debug)]
pub struct TempPath {
    path: PathBuf,
}

impl TempPath {
    /// A fresh path `ringway-test-PID-N.EXT` (nothing is created).
    pub fn new(ext: &str) -> TempPath {
        TempPath {
            path: unique_temp_path(ext),
        }
    }

    /// The same name in `dir` instead of the temp dir.
    pub fn new_in(dir: &std::path::Path, ext: &str) -> TempPath {
        let path = unique_temp_path(ext);
        TempPath {
            path: dir.join(path.file_name().expect("a file name")),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `ringway-test-PID-N.EXT` in the temp dir, N counting the calls in this process.
fn unique_temp_path(ext: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("ringway-test-{}-{n}.{ext}", std::process::id());
    std::env::temp_dir().join(name)
}

/// A directory in the temp dir with a name unique to this process and call, created empty
/// and removed with everything in it on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `ringway-test-PID-N.EXT/` (e.g. `ext` = `"pki"`), or panics.
    pub fn new(ext: &str) -> TempDir {
        let path = unique_temp_path(ext);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A `[[listeners]]` table named `main` on `{listen}`, with `extra` lines (e.g.
/// `max_request_body = 1024`) added to it.
pub fn listener_toml(extra: &str) -> String {
    format!("[[listeners]]\nname = \"main\"\nlisten = \"{{listen}}\"\n{extra}\n\n")
}

/// An `[[upstreams]]` table with weighted endpoints and `extra` lines (e.g.
/// `request_timeout = "300ms"`).
pub fn upstream_toml(name: &str, endpoints: &[(SocketAddr, u32)], extra: &str) -> String {
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|(addr, weight)| format!("{{ address = \"{addr}\", weight = {weight} }}"))
        .collect();
    format!(
        "[[upstreams]]\nname = \"{name}\"\nendpoints = [{}]\n{extra}\n\n",
        endpoints.join(", ")
    )
}

/// A `[[routes]]` table sending every request to `upstream`.
pub fn route_toml(name: &str, upstream: &str) -> String {
    format!("[[routes]]\nname = \"{name}\"\nupstream = \"{upstream}\"\n\n")
}

/// The common case: one listener, one upstream `backend` at `addr` (with `upstream_extra`
/// lines), one catch-all route to it.
pub fn proxy_toml(addr: SocketAddr, upstream_extra: &str) -> String {
    listener_toml("")
        + &upstream_toml("backend", &[(addr, 1)], upstream_extra)
        + &route_toml("all", "backend")
}

/// Asserts `resp` is the gateway's own error `code`: a short plain body naming the code
/// (`"502 Bad Gateway\n"`) and no internals (addresses, OS error text).
pub fn assert_gateway_error(resp: &Response, code: u16) {
    let body = resp.text();
    assert_eq!(resp.status, code, "status (body {body:?})");
    assert!(resp.body.len() < 64, "error body too long: {body:?}");
    assert!(body.starts_with(&code.to_string()), "error body {body:?}");
    for internal in ["127.0.0.1", "os error", "Os {", "errno"] {
        assert!(
            !body.contains(internal),
            "error body leaks {internal:?}: {body:?}"
        );
    }
    if matches!(code, 404 | 502 | 503 | 504) {
        assert_eq!(body, format!("{code} {}\n", reason(code)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_unbound() {
        let ports: Vec<u16> = (0..32).map(|_| free_port()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        for port in ports {
            TcpListener::bind(("127.0.0.1", port)).expect("a free port binds");
        }
    }

    #[test]
    fn temp_dirs_are_removed_with_their_files() {
        let dir = TempDir::new("d");
        std::fs::write(dir.path().join("f"), "x").unwrap();
        let kept = dir.path().to_path_buf();
        drop(dir);
        assert!(!kept.exists());
    }

    #[test]
    fn temp_paths_are_unique_and_removed() {
        let a = TempPath::new("toml");
        let b = TempPath::new("toml");
        assert_ne!(a.path(), b.path());
        std::fs::write(a.path(), "x").unwrap();
        let kept = a.path().to_path_buf();
        drop(a);
        assert!(!kept.exists());
    }

    both_drivers!(macro_binds_the_driver, |driver| {
        assert!(Driver::ALL.contains(&driver));
    });

    #[test]
    fn driver_names_match_the_config_values() {
        assert_eq!(Driver::IoUring.as_str(), "io_uring");
        assert_eq!(Driver::Epoll.to_string(), "epoll");
    }
}
