//! The gateway under test: the real `ringway` binary, started with a generated config on
//! ports the harness picks, ready once it logs `ringway ready`.

use crate::{free_port, Driver, TempPath};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a gateway may take from spawn to `ringway ready`.
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// The line every shard-complete start logs on stderr.
const READY_LINE: &str = "ringway ready";
/// Starts retried when the gateway lost the race for a port [`free_port`] picked.
const START_ATTEMPTS: usize = 3;

/// Where the `ringway` binary is: `$RINGWAY_BIN`, else `ringway` beside the directory of the
/// running test executable (`target/debug/deps/..` gives `target/debug/ringway`). Panics with
/// what to do when it is not there.
pub fn gateway_bin() -> PathBuf {
    let path = match std::env::var_os("RINGWAY_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => {
            let exe = std::env::current_exe().expect("current_exe");
            let deps = exe.parent().expect("the test executable has a directory");
            deps.parent().unwrap_or(deps).join("ringway")
        }
    };
    if !path.is_file() {
        panic!(
            "the ringway binary is not at {}: run `cargo build -p ringway-control` \
             (or `cargo test --workspace`, which builds it), or set RINGWAY_BIN",
            path.display()
        );
    }
    path
}

/// Everything the gateway wrote to stderr and stdout, shared with the threads draining them.
#[derive(Default)]
struct Log {
    state: Mutex<LogState>,
    changed: Condvar,
}

#[derive(Default)]
struct LogState {
    text: String,
    ready: bool,
    /// Output streams that reached end of file (2 = the process is gone).
    closed: usize,
}

impl Log {
    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn drain(self: Arc<Self>, stream: impl Read + Send + 'static) {
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        let mut state = self.lock();
                        state.ready |= text.contains(READY_LINE);
                        state.text.push_str(&text);
                        drop(state);
                        self.changed.notify_all();
                    }
                }
            }
            self.lock().closed += 1;
            self.changed.notify_all();
        });
    }

    /// Waits until `done` holds for the log, or the process closed its output, or the
    /// deadline passed; returns whether `done` held.
    fn wait(&self, deadline: Duration, done: impl Fn(&LogState) -> bool) -> bool {
        let end = Instant::now() + deadline;
        let mut state = self.lock();
        loop {
            if done(&state) {
                return true;
            }
            let now = Instant::now();
            if state.closed == 2 || now >= end {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, end - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A running `ringway run -c FILE`; dropping it kills the process and removes its files.
pub struct Gateway {
    child: Child,
    addr: SocketAddr,
    addr2: SocketAddr,
    admin: SocketAddr,
    log: Arc<Log>,
    pub(crate) config: TempPath,
    pub(crate) control_socket: TempPath,
    /// What it was started with, for [`Gateway::config_text`] (tests/src/control.rs).
    pub(crate) driver: Driver,
    pub(crate) shards: usize,
    /// Whether the test's toml brought its own `[control]` table.
    pub(crate) own_control: bool,
}

impl Gateway {
    /// One shard. See [`Gateway::start_shards`].
    pub fn start(driver: Driver, toml: &str) -> Gateway {
        Gateway::start_shards(driver, 1, toml)
    }

    /// Writes `[runtime]` (`shards`, `driver`) followed by `toml` to a temp file, with every
    /// `{listen}` replaced by a fresh `127.0.0.1:PORT`, `{listen2}` by a second one and
    /// `{admin}` by a third (for `[admin] listen`); adds a
    /// `[control]` socket in the temp dir unless `toml` has its own `[control]` table. Spawns
    /// `ringway run -c FILE` and waits up to 20 s for `ringway ready` on stderr. Panics with
    /// the captured output when the gateway exits or does not become ready.
    pub fn start_shards(driver: Driver, shards: usize, toml: &str) -> Gateway {
        Gateway::start_bin(&gateway_bin(), driver, shards, toml, &[])
    }

    /// [`Gateway::start_shards`] with the config file written into `dir` (e.g. a Pki's
    /// directory, so the config names certificate files relative to itself) instead of the
    /// temp dir. The file is removed on drop; `dir` is left as it is.
    pub fn start_in(driver: Driver, shards: usize, dir: &Path, toml: &str) -> Gateway {
        Gateway::start_bin_in(&gateway_bin(), Some(dir), driver, shards, toml, &[])
    }

    /// The text written for `toml`: `[runtime]`, the `[control]` socket (unless `toml` has
    /// its own table), then `toml` with `{listen}`, `{listen2}` and `{admin}` replaced, and
    /// `{control_socket}` by the socket path the harness picked (for a test's own `[control]`
    /// table, e.g. with a `drain_timeout`).
    pub(crate) fn render(
        toml: &str,
        driver: Driver,
        shards: usize,
        control_socket: &Path,
        [addr, addr2, admin]: [SocketAddr; 3],
    ) -> String {
        let mut text = format!(
            "[runtime]\nshards = {shards}\ndriver = \"{}\"\n\n",
            driver.as_str()
        );
        if !toml.contains("[control]") {
            text.push_str(&format!(
                "[control]\nsocket = \"{}\"\n\n",
                control_socket.display()
            ));
        }
        text.push_str(
            &toml
                .replace("{listen}", &addr.to_string())
                .replace("{listen2}", &addr2.to_string())
                .replace("{admin}", &admin.to_string())
                .replace("{control_socket}", &control_socket.display().to_string()),
        );
        text
    }

    /// [`Gateway::start_shards`] with the binary given (the harness's own tests use a script)
    /// and extra environment variables for it.
    pub(crate) fn start_bin(
        bin: &Path,
        driver: Driver,
        shards: usize,
        toml: &str,
        env: &[(&str, &str)],
    ) -> Gateway {
        Gateway::start_bin_in(bin, None, driver, shards, toml, env)
    }

    /// [`Gateway::start_bin`] with the config file in `config_dir` (default: the temp dir).
    fn start_bin_in(
        bin: &Path,
        config_dir: Option<&Path>,
        driver: Driver,
        shards: usize,
        toml: &str,
        env: &[(&str, &str)],
    ) -> Gateway {
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let addr2: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let control_socket = TempPath::new("sock");
            let addrs = [addr, addr2, admin];
            let text = Gateway::render(toml, driver, shards, control_socket.path(), addrs);
            let config = match config_dir {
                Some(dir) => TempPath::new_in(dir, "toml"),
                None => TempPath::new("toml"),
            };
            std::fs::write(config.path(), &text).expect("write the gateway config");

            let mut gateway = Gateway::spawn(bin, config, control_socket, addrs, env);
            gateway.driver = driver;
            gateway.shards = shards;
            gateway.own_control = toml.contains("[control]");
            if gateway.log.wait(READY_DEADLINE, |s| s.ready) {
                return gateway;
            }
            // Output closed means the process is on its way out; give it a moment to be
            // reaped so the two failures below are told apart.
            let output_closed = gateway.log.lock().closed == 2;
            let exited = output_closed && gateway.wait_exit(Duration::from_secs(5)).is_some();
            last_log = gateway.stderr();
            let lost_port_race = last_log.contains("in use") || last_log.contains("AddrInUse");
            drop(gateway);
            if !(exited && lost_port_race) {
                let why = if exited {
                    "exited before it was ready"
                } else {
                    "did not log `ringway ready` within 20 s"
                };
                panic!("the gateway {why}.\n--- config ---\n{text}\n--- output ---\n{last_log}");
            }
        }
        panic!("the gateway could not bind fresh ports in {START_ATTEMPTS} tries:\n{last_log}");
    }

    fn spawn(
        bin: &Path,
        config: TempPath,
        control: TempPath,
        [addr, addr2, admin]: [SocketAddr; 3],
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(bin);
        command.envs(env.iter().copied());
        command
            .arg("run")
            .arg("-c")
            .arg(config.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let log = Arc::new(Log::default());
        Arc::clone(&log).drain(child.stderr.take().expect("piped stderr"));
        Arc::clone(&log).drain(child.stdout.take().expect("piped stdout"));
        Gateway {
            child,
            addr,
            addr2,
            admin,
            log,
            config,
            control_socket: control,
            driver: Driver::Epoll,
            shards: 1,
            own_control: false,
        }
    }

    /// The first listener's address (`{listen}`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The second listener's address (`{listen2}`).
    pub fn addr2(&self) -> SocketAddr {
        self.addr2
    }

    /// The address `{admin}` stood for (the admin listener, when the config uses it).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config file the gateway was started with.
    pub fn config_path(&self) -> &Path {
        self.config.path()
    }

    /// Resident set size from `/proc/PID/status` (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.proc_status_kib("VmRSS:")
    }

    /// The highest resident set size so far (`VmHWM`), in KiB: what a transfer cost at its
    /// peak, even when the memory was given back afterwards.
    pub fn peak_rss_kib(&self) -> u64 {
        self.proc_status_kib("VmHWM:")
    }

    fn proc_status_kib(&self, key: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {path}:\n{status}"))
    }

    /// Everything the gateway logged (stderr, then stdout lines as they came) so far.
    pub fn stderr(&self) -> String {
        self.log.lock().text.clone()
    }

    /// Waits until the gateway's output contains `needle`; panics with the output otherwise.
    pub fn wait_stderr(&self, needle: &str, deadline: Duration) {
        if !self.log.wait(deadline, |s| s.text.contains(needle)) {
            panic!(
                "the gateway did not log {needle:?} within {deadline:?}:\n{}",
                self.stderr()
            );
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit by itself; `None` when it still runs at the deadline.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + deadline;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- ringway output (pid {}) ---\n{}",
                self.child.id(),
                self.stderr()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in for `ringway`: an executable shell script.
    fn script(body: &str) -> TempPath {
        let file = TempPath::new("sh");
        std::fs::write(file.path(), format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        file
    }

    #[test]
    fn waits_for_ready_and_writes_the_config() {
        // `$3` is the config path (`run -c FILE`).
        let bin = script("cat \"$3\" >&2; echo 'INFO ringway ready' >&2; exec sleep 30");
        let toml = "[[listeners]]\nname = \"a\"\nlisten = \"{listen}\"\n# {listen2}\n# {admin}\n";
        let mut gw = Gateway::start_bin(bin.path(), Driver::Epoll, 2, toml, &[]);
        let log = gw.stderr();
        assert!(
            log.starts_with("[runtime]\nshards = 2\ndriver = \"epoll\"\n"),
            "{log}"
        );
        assert!(
            log.contains(&format!("listen = \"{}\"", gw.addr())),
            "{log}"
        );
        assert!(log.contains(&format!("# {}", gw.addr2())), "{log}");
        assert!(log.contains(&format!("# {}", gw.admin_addr())), "{log}");
        assert!(log.contains("[control]\nsocket = "), "{log}");
        assert_ne!(gw.addr(), gw.addr2());
        assert_ne!(gw.addr2(), gw.admin_addr());
        assert!(gw.is_running());
        assert!(gw.rss_kib() > 0);
        assert!(gw.peak_rss_kib() > 0);
        let config = gw.config_path().to_path_buf();
        assert!(config.exists());
        drop(gw);
        assert!(!config.exists(), "the config file is removed on drop");
    }

    #[test]
    fn the_config_can_be_written_into_a_directory() {
        let dir = crate::TempDir::new("d");
        let bin = script("echo 'ringway ready' >&2; exec sleep 30");
        let gw = Gateway::start_bin_in(bin.path(), Some(dir.path()), Driver::Epoll, 1, "", &[]);
        assert_eq!(gw.config_path().parent(), Some(dir.path()));
        assert!(gw.config_path().exists());
    }

    #[test]
    #[should_panic(expected = "exited before it was ready")]
    fn an_early_exit_panics_with_the_output() {
        let bin = script("echo 'cfg.toml:3:1: listeners: bad' >&2; exit 2");
        Gateway::start_bin(bin.path(), Driver::IoUring, 1, "", &[]);
    }

    #[test]
    fn wait_exit_reports_the_status() {
        let bin = script("echo 'ringway ready' >&2; exit 3");
        let mut gw = Gateway::start_bin(bin.path(), Driver::Epoll, 1, "", &[]);
        let status = gw
            .wait_exit(Duration::from_secs(10))
            .expect("the script exits");
        assert_eq!(status.code(), Some(3));
        assert!(!gw.is_running());
    }
}
