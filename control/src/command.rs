//! What the control loop can be asked to do, and the control socket's request decoding: one
//! JSON object per line, such as `{"cmd":"status"}` or `{"cmd":"reload","path":"/x.toml"}`.
//! A plain function of the line's bytes, so the fuzz target in tests/fuzz can reach it.

use std::path::PathBuf;

use serde_json::Value;

/// What the socket, admin and signal threads ask of the control loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Status,
    /// Reload the current file, or switch to `path`.
    Reload {
        path: Option<PathBuf>,
    },
    Config,
    Stats,
    /// The merged latency histograms, encoded (after a fresh flush round).
    Histograms,
    /// Prometheus text, after a fresh flush round (the admin listener's `/metrics`).
    Metrics,
    Drain,
    Shutdown,
    /// Reopen the access log and the interval log at their paths (after log rotation).
    Reopen,
}

/// Decodes one control-socket request line (without its newline). The error is the message
/// the client gets back; it never panics, whatever the bytes.
pub fn parse(line: &[u8]) -> Result<Command, String> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| format!("the request is not JSON: {e}"))?;
    let object = value
        .as_object()
        .ok_or("the request must be a JSON object such as {\"cmd\":\"status\"}")?;
    let cmd = object
        .get("cmd")
        .and_then(Value::as_str)
        .ok_or("the request has no string \"cmd\"")?;
    let allowed: &[&str] = match cmd {
        "reload" => &["cmd", "path"],
        _ => &["cmd"],
    };
    if let Some(extra) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("unknown field {extra:?} for {cmd:?}"));
    }
    Ok(match cmd {
        "status" => Command::Status,
        "reload" => Command::Reload {
            path: match object.get("path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) if !p.is_empty() => Some(PathBuf::from(p)),
                Some(_) => return Err("\"path\" must be a non-empty string".into()),
            },
        },
        "config" => Command::Config,
        "stats" => Command::Stats,
        "histograms" => Command::Histograms,
        "drain" => Command::Drain,
        "shutdown" => Command::Shutdown,
        "reopen" => Command::Reopen,
        other => {
            return Err(format!(
                "unknown command {other:?}: try status, reload, config, stats, histograms, reopen, drain or shutdown"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        assert_eq!(parse(br#"{"cmd":"status"}"#), Ok(Command::Status));
        assert_eq!(
            parse(br#"{"cmd":"reload"}"#),
            Ok(Command::Reload { path: None })
        );
        assert_eq!(
            parse(br#"{"cmd":"reload","path":"/x.toml"}"#),
            Ok(Command::Reload {
                path: Some("/x.toml".into())
            })
        );
        for (cmd, want) in [
            ("config", Command::Config),
            ("stats", Command::Stats),
            ("histograms", Command::Histograms),
            ("drain", Command::Drain),
            ("shutdown", Command::Shutdown),
            ("reopen", Command::Reopen),
        ] {
            assert_eq!(parse(format!(r#"{{"cmd":"{cmd}"}}"#).as_bytes()), Ok(want));
        }
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for bad in [
            &b"hello"[..],
            b"[1,2]",
            br#"{"cmd":5}"#,
            br#"{"cmd":"explode"}"#,
            br#"{"cmd":"status","x":1}"#,
            br#"{"cmd":"reload","path":3}"#,
            b"\xff\xfe",
        ] {
            let e = parse(bad).expect_err("garbage");
            assert!(!e.is_empty());
        }
    }
}
