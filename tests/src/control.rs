//! Operating a [`Gateway`] under test: `ringway ctl` over its control socket, a new config
//! file for a reload, signals, and gateways started with extra environment variables.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{gateway_bin, Driver, Gateway};

/// How long one `ringway ctl` may take.
const CTL_DEADLINE: Duration = Duration::from_secs(30);

/// What `ringway ctl` printed and how it exited.
#[derive(Debug)]
pub struct CtlOutput {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// The reply parsed from stdout; `Null` when stdout was not JSON.
    pub reply: serde_json::Value,
    pub stdout: String,
    pub stderr: String,
}

impl CtlOutput {
    /// Exit 0 and `"ok": true`.
    pub fn is_ok(&self) -> bool {
        self.code == Some(0) && self.reply["ok"] == serde_json::Value::Bool(true)
    }

    /// The reply; panics (with everything ctl printed) unless [`CtlOutput::is_ok`].
    pub fn expect_ok(self, what: &str) -> serde_json::Value {
        assert!(self.is_ok(), "{what}: ringway ctl failed: {self:#?}");
        self.reply
    }
}

/// Runs `ringway ctl --socket SOCKET ARGS...`; panics if it has not exited within 30 s.
pub fn run_ctl(socket: &Path, args: &[&str]) -> CtlOutput {
    let mut child = Command::new(gateway_bin())
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringway ctl");
    let end = Instant::now() + CTL_DEADLINE;
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() >= end {
            let _ = child.kill();
            let out = child.wait_with_output().expect("ctl output");
            panic!(
                "ringway ctl {args:?} still running after {CTL_DEADLINE:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("ctl output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    CtlOutput {
        code: out.status.code(),
        reply: serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Gateway {
    /// [`Gateway::start_shards`] with extra environment variables for the gateway, such as
    /// `NOTIFY_SOCKET`.
    pub fn start_env(driver: Driver, shards: usize, toml: &str, env: &[(&str, &str)]) -> Gateway {
        Gateway::start_bin(&gateway_bin(), driver, shards, toml, env)
    }

    /// The control socket the harness put in the config (used unless the test's toml has a
    /// `[control]` table of its own).
    pub fn control_socket(&self) -> &Path {
        self.control_socket.path()
    }

    /// What [`Gateway::start_shards`] would have written for `toml`, with this gateway's
    /// runtime, control socket and addresses: a config to reload.
    pub fn config_text(&self, toml: &str) -> String {
        assert!(
            !self.own_control || toml.contains("[control]"),
            "this gateway's toml had its own [control] table: give the new one one too"
        );
        Gateway::render(
            toml,
            self.driver,
            self.shards,
            self.control_socket.path(),
            [self.addr(), self.addr2(), self.admin_addr()],
        )
    }

    /// Replaces the gateway's config file with [`Gateway::config_text`] of `toml`: what a
    /// plain `reload` or SIGHUP reads next.
    pub fn write_config(&self, toml: &str) {
        std::fs::write(self.config.path(), self.config_text(toml))
            .expect("rewrite the gateway config");
    }

    /// Runs `ringway ctl --socket SOCKET ARGS...` against this gateway.
    pub fn ctl(&self, args: &[&str]) -> CtlOutput {
        run_ctl(self.control_socket(), args)
    }

    /// Sends a signal by name: `"HUP"`, `"TERM"`, `"INT"` (with or without `SIG`).
    pub fn signal(&self, name: &str) {
        use nix::sys::signal::{kill, Signal};
        use std::str::FromStr;
        let full = if name.starts_with("SIG") {
            name.to_string()
        } else {
            format!("SIG{name}")
        };
        let signal = Signal::from_str(&full).unwrap_or_else(|_| panic!("no signal {name}"));
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        kill(pid, signal).unwrap_or_else(|e| panic!("kill -{full} {pid}: {e}"));
    }
}
