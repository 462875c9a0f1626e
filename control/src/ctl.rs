//! `ringway ctl`: the control socket's client. Sends one JSON request line, prints the JSON
//! reply pretty, and exits 0 on `"ok": true`, 1 on an error reply, 2 when it cannot talk to
//! the gateway at all.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cli::{CtlArgs, CtlCommand};

/// Where `ringway ctl` looks without `--socket` or `-c`.
pub const DEFAULT_SOCKET: &str = "/run/ringway/control.sock";

/// Longest a reply may take: a reload waits up to 5 s for acknowledgements, a drain returns
/// at once; this only guards against a wedged gateway.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

pub fn main(args: CtlArgs) -> ExitCode {
    let socket = match socket_path(&args) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("ringway ctl: {e}");
            return ExitCode::from(2);
        }
    };
    let request = match request(&args.command) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("ringway ctl: {e}");
            return ExitCode::from(2);
        }
    };
    let reply = match exchange(&socket, &request) {
        Ok(reply) => reply,
        Err(e) => {
            eprintln!("ringway ctl: {}: {e}", socket.display());
            return ExitCode::from(2);
        }
    };
    let ok = reply.get("ok").and_then(Value::as_bool) == Some(true);
    println!(
        "{}",
        serde_json::to_string_pretty(&reply).unwrap_or_else(|_| reply.to_string())
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `--socket`, else `[control] socket` of `-c FILE` (or [`DEFAULT_SOCKET`] when the file has
/// none), else the bundled default config's socket, which is what `ringway run` without `-c`
/// listens on. Only that one key is read from the file, so `ringway ctl -c FILE reload` works
/// even when the rest of the file does not validate (the reload itself then reports every
/// error).
fn socket_path(args: &CtlArgs) -> anyhow::Result<PathBuf> {
    if let Some(socket) = &args.socket {
        return Ok(socket.clone());
    }
    let Some(config) = &args.config else {
        return Ok(ringway_config::default_config().control.socket);
    };
    let text = std::fs::read_to_string(config)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", config.display()))?;
    let value: toml::Table = text
        .parse()
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
    Ok(value
        .get("control")
        .and_then(|c| c.get("socket"))
        .and_then(|s| s.as_str())
        .map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from))
}

/// The request line for `command`. A reload's file is made absolute here: the gateway's
/// working directory is not the caller's.
fn request(command: &CtlCommand) -> anyhow::Result<Value> {
    Ok(match command {
        CtlCommand::Status => json!({ "cmd": "status" }),
        CtlCommand::Reload { file: None } => json!({ "cmd": "reload" }),
        CtlCommand::Reload { file: Some(file) } => {
            let path = absolute(file)?;
            json!({ "cmd": "reload", "path": path.to_string_lossy() })
        }
        CtlCommand::Config => json!({ "cmd": "config" }),
        CtlCommand::Stats => json!({ "cmd": "stats" }),
        CtlCommand::Histograms => json!({ "cmd": "histograms" }),
        CtlCommand::Drain => json!({ "cmd": "drain" }),
        CtlCommand::Shutdown => json!({ "cmd": "shutdown" }),
        CtlCommand::Reopen => json!({ "cmd": "reopen" }),
    })
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir()?.join(path))
}

/// Sends `request` and reads the reply line. A gateway that refuses the connection (too many
/// clients) writes its refusal and closes, possibly before the request is sent: the write
/// then fails, and the refusal is still read and returned.
fn exchange(socket: &Path, request: &Value) -> std::io::Result<Value> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    let mut line = request.to_string();
    line.push('\n');
    let sent = stream.write_all(line.as_bytes());
    let mut reply = String::new();
    let read = BufReader::new(stream).read_line(&mut reply);
    if reply.is_empty() {
        sent?;
        read?;
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the gateway closed the connection without a reply",
        ));
    }
    serde_json::from_str(&reply).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the reply is not JSON ({e}): {reply:?}"),
        )
    })
}
