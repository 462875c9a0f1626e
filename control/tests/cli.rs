//! The `ringway` command line: `--version`, `--help`, `check` and `run` with good and bad
//! configuration files (notes/contracts.md, "Binary").

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringway");

/// A file under the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "ringway-cli-{}-{}-{name}",
            std::process::id(),
            // Tests run in parallel threads of one process.
            thread::current()
                .name()
                .unwrap_or("main")
                .replace("::", "-")
        ));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the binary, killing it (and failing) if it has not exited within 20 s.
fn ringway(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning ringway");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "ringway {args:?} still running after 20 s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn good_toml(listen: &str) -> String {
    format!(
        r#"[runtime]
shards = 1

[[listeners]]
name = "main"
listen = "{listen}"

[[upstreams]]
name = "backend"
endpoints = [{{ address = "127.0.0.1:9" }}]

[[routes]]
name = "all"
path_prefix = "/"
upstream = "backend"
"#
    )
}

/// Three errors, on known lines: an unknown key (line 5), a bad duration (line 6) and a route
/// to an upstream that does not exist (line 16).
const BAD_TOML: &str = r#"[runtime]
shards = 1

[[listeners]]
bogus_key = 1
header_timeout = "ten seconds"
name = "main"
listen = "127.0.0.1:1"

[[upstreams]]
name = "backend"
endpoints = [{ address = "127.0.0.1:9" }]

[[routes]]
name = "all"
upstream = "missing"
"#;

/// One `file:line:column: key: message` diagnostic.
#[derive(Debug)]
struct Diagnostic {
    line: usize,
    column: usize,
    key: String,
    message: String,
}

/// Every line of `out` that starts with `file:` parsed as a diagnostic; panics on lines that
/// start with it but do not have the shape.
fn diagnostics(out: &str, file: &Path) -> Vec<Diagnostic> {
    let prefix = format!("{}:", file.display());
    out.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|rest| {
            let parts: Vec<&str> = rest.splitn(4, ':').collect();
            assert_eq!(parts.len(), 4, "diagnostic shape: {rest:?}");
            let line = parts[0]
                .parse()
                .unwrap_or_else(|_| panic!("line in {rest:?}"));
            let column = parts[1]
                .parse()
                .unwrap_or_else(|_| panic!("column in {rest:?}"));
            assert!(parts[2].starts_with(' '), "space before the key: {rest:?}");
            assert!(
                parts[3].starts_with(' '),
                "space before the message: {rest:?}"
            );
            Diagnostic {
                line,
                column,
                key: parts[2].trim().to_string(),
                message: parts[3].trim().to_string(),
            }
        })
        .collect()
}

#[test]
fn version_prints_the_version() {
    let out = ringway(&["--version"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ringway"), "{stdout}");
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout}");
}

#[test]
fn help_mentions_commands_and_signals() {
    let out = ringway(&["--help"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for word in [
        "run", "check", "ctl", "status", "reload", "drain", "shutdown", "SIGHUP", "SIGTERM",
        "SIGINT",
    ] {
        assert!(
            stdout.contains(word),
            "--help does not mention {word}:\n{stdout}"
        );
    }
}

#[test]
fn check_good_config_exits_0_and_binds_nothing() {
    // Hold the listener's port: a `check` that tried to bind it would fail.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = held.local_addr().unwrap().to_string();
    let file = TempFile::new("good.toml", &good_toml(&listen));
    let out = ringway(&["check", "-c", file.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Nothing connected to or took over the held port either.
    held.set_nonblocking(true).unwrap();
    assert!(held.accept().is_err());
}

#[test]
fn check_bad_config_reports_every_error_and_exits_2() {
    let file = TempFile::new("bad.toml", BAD_TOML);
    let out = ringway(&["check", "-c", file.path().to_str().unwrap()]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    let diags = diagnostics(&all, file.path());
    assert_eq!(diags.len(), 3, "three diagnostics expected:\n{all}");
    for d in &diags {
        assert!(d.column >= 1, "{d:?}");
        assert!(!d.message.is_empty(), "{d:?}");
    }
    let find = |line: usize| {
        diags
            .iter()
            .find(|d| d.line == line)
            .unwrap_or_else(|| panic!("no diagnostic on line {line}:\n{all}"))
    };
    // The key path names the table and the key (e.g. `listeners[0].bogus_key`).
    let unknown = find(5);
    assert!(unknown.key.starts_with("listeners"), "{unknown:?}");
    assert!(unknown.key.ends_with("bogus_key"), "{unknown:?}");
    assert_eq!(unknown.column, 1, "{unknown:?}");
    let duration = find(6);
    assert!(duration.key.starts_with("listeners"), "{duration:?}");
    assert!(duration.key.ends_with("header_timeout"), "{duration:?}");
    let missing = find(16);
    assert!(missing.key.starts_with("routes"), "{missing:?}");
    assert!(missing.key.ends_with("upstream"), "{missing:?}");
    assert!(missing.message.contains("missing"), "{missing:?}");
}

#[test]
fn run_bad_config_exits_2() {
    let file = TempFile::new("bad-run.toml", BAD_TOML);
    let out = ringway(&["run", "-c", file.path().to_str().unwrap()]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(!diagnostics(&all, file.path()).is_empty(), "{all}");
}
