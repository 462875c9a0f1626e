//! The `openssl s_client` and `curl` command-line tools, a second TLS stack (OpenSSL) against
//! the gateway. Each helper returns `None` when its tool is not installed, so a test can
//! skip that part and still run its rustls checks.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one run of a tool may take before it is killed.
const TOOL_DEADLINE: Duration = Duration::from_secs(30);

/// What a tool printed and how it exited.
#[derive(Debug, Clone)]
struct ToolOutput {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `program args...` with stdin closed; `None` when the program is not installed.
/// Panics when it runs past [`TOOL_DEADLINE`].
fn run_tool(program: &str, args: &[String]) -> Option<ToolOutput> {
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("spawn {program}: {e}"),
    };
    // Drained by threads, so a chatty tool never blocks on a full pipe while we wait.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let end = Instant::now() + TOOL_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the tool") {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} {args:?} still running after {TOOL_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Some(ToolOutput {
        code: status.code(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// `openssl s_client -connect ADDR -servername NAME EXTRA...` (`-noservername` without a
/// name) with stdin closed, so it handshakes, prints and quits. Returns stdout then stderr
/// (the certificate chain, `Verify return code: 0 (ok)`, `Protocol: TLSv1.3`, or the
/// handshake's failure); `None` when `openssl` is not installed. Useful extra arguments:
/// `-CAfile PATH`, `-cert PATH -key PATH`, `-tls1_2`, `-alpn http/1.1`, `-brief`.
pub fn openssl_s_client(
    addr: SocketAddr,
    servername: Option<&str>,
    extra_args: &[&str],
) -> Option<String> {
    let mut args = vec!["s_client".to_string(), "-connect".into(), addr.to_string()];
    match servername {
        Some(name) => args.extend(["-servername".to_string(), name.to_string()]),
        None => args.push("-noservername".into()),
    }
    args.extend(extra_args.iter().map(|a| a.to_string()));
    let out = run_tool("openssl", &args)?;
    Some(format!(
        "{}\n{}\nexit code: {:?}",
        out.stdout, out.stderr, out.code
    ))
}

/// What `curl` printed and how it exited.
#[derive(Debug, Clone)]
pub struct CurlOutput {
    /// curl's exit code: 0, or e.g. 35 (handshake failed), 60 (certificate not trusted).
    pub code: Option<i32>,
    /// The response heads (`-i`) and body.
    pub stdout: String,
    /// curl's error message, if any (`-sS`).
    pub stderr: String,
}

impl CurlOutput {
    /// The final response's status (after any 1xx), when there was a response.
    pub fn status(&self) -> Option<u16> {
        self.split().0
    }

    /// The final response's body.
    pub fn body(&self) -> &str {
        self.split().1
    }

    /// Walks past every head in stdout: the last status, and what follows the last head.
    fn split(&self) -> (Option<u16>, &str) {
        let mut rest = self.stdout.as_str();
        let mut status = None;
        while rest.starts_with("HTTP/") {
            let Some((head, body)) = rest.split_once("\r\n\r\n") else {
                break;
            };
            status = head.split(' ').nth(1).and_then(|code| code.parse().ok());
            rest = body;
        }
        (status, rest)
    }
}

/// `curl -sS -i --http1.1 https://HOST:PORT/PATH`, connecting to `addr` whatever `host`
/// resolves to (`--resolve`), so `host` is what goes out as SNI and Host; `--cacert ca`
/// when given (without it curl trusts the system roots, which trust no test Pki). `None`
/// when `curl` is not installed. Useful extra arguments: `--cert PATH --key PATH`,
/// `--tlsv1.3`, `--tls-max 1.2`, `-H 'name: value'`, `-k`.
pub fn curl_https(
    addr: SocketAddr,
    host: &str,
    path: &str,
    ca: Option<&Path>,
    extra_args: &[&str],
) -> Option<CurlOutput> {
    let port = addr.port();
    let mut args: Vec<String> = ["-sS", "-i", "--http1.1", "--max-time", "20"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    if host.parse::<IpAddr>().is_err() {
        args.extend([
            "--resolve".to_string(),
            format!("{host}:{port}:{}", addr.ip()),
        ]);
    }
    if let Some(ca) = ca {
        args.extend(["--cacert".to_string(), ca.display().to_string()]);
    }
    args.extend(extra_args.iter().map(|a| a.to_string()));
    args.push(format!("https://{host}:{port}{path}"));
    let out = run_tool("curl", &args)?;
    Some(CurlOutput {
        code: out.code,
        stdout: out.stdout,
        stderr: out.stderr,
    })
}
