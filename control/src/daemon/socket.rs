//! The control socket: a Unix stream socket, mode 0600, one JSON request per line and one
//! JSON reply per line. An accept thread hands each client to a thread of its own (at most
//! [`MAX_CLIENTS`] at once); a client thread parses lines, forwards commands to the control
//! loop and waits for the reply, so no client can stall the loop, let alone a shard.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use nix::sys::stat::{umask, Mode};
use serde_json::{json, Value};

use ringway_control::command::parse;

use super::Request;

/// Longest request line; past it the client gets an error and the connection closes.
pub const MAX_LINE: usize = 64 * 1024;
/// Clients served at once; more get an error and a close.
const MAX_CLIENTS: usize = 16;
/// The refusal a client past [`MAX_CLIENTS`] gets.
const TOO_MANY_CLIENTS: &str = "too many control connections (at most 16 at once): try again";
/// How long a client may take to send a complete line, from the connection's start for the
/// first line and from its first byte for a later one; also the idle time between lines.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Overrides [`READ_TIMEOUT`], in milliseconds (the tests use a short one).
const READ_TIMEOUT_ENV: &str = "RINGWAY_CONTROL_READ_TIMEOUT_MS";
/// How long a client waits for the loop's answer (a reload waits up to 5 s for its acks).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Requests sent to the control loop whose reply is not yet written back.
static REPLYING: AtomicUsize = AtomicUsize::new(0);

/// Waits (at most `deadline`) until every reply the loop gave is written to its client: a
/// `shutdown` reply must reach `ringway ctl` before the process exits.
pub fn flush_replies(deadline: Duration) {
    let end = Instant::now() + deadline;
    while REPLYING.load(Ordering::SeqCst) > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Binds the control socket at `path` with mode 0600. A socket file nobody answers on is a
/// leftover of a gateway that died: it is replaced. One a live process answers on is not.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    let shown = path.display();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            format!(
                "cannot create the control socket's directory {}: {e}",
                parent.display()
            )
        })?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!(
                "the control socket {shown} exists and is not a socket"
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another gateway answers on the control socket {shown}: stop it, or give this one \
                 another [control] socket"
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove the stale control socket {shown}: {e}"))?;
        tracing::info!(socket = %shown, "removed a stale control socket");
    }
    // The umask makes the socket 0600 from its first moment; the chmod says so explicitly.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old);
    let listener = bound.map_err(|e| format!("cannot bind the control socket {shown}: {e}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot set the control socket's mode: {e}"))?;
    Ok(listener)
}

pub fn spawn(listener: UnixListener, commands: Sender<Request>) {
    let read_timeout = std::env::var(READ_TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(READ_TIMEOUT, Duration::from_millis);
    let path: Option<PathBuf> = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf));
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("ringway-control-socket".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let stream = match stream {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket accept failed");
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    refuse(stream);
                    continue;
                }
                let commands = commands.clone();
                let active = active.clone();
                let spawned = std::thread::Builder::new()
                    .name("ringway-control-client".into())
                    .spawn(move || {
                        serve(stream, &commands, read_timeout);
                        active.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    // The closure (and the client) went with the failed spawn.
                    tracing::warn!("cannot start a control client thread");
                }
            }
            tracing::debug!(socket = ?path, "control socket closed");
        })
        .expect("spawning the control socket thread");
}

/// Past [`MAX_CLIENTS`], on the accept thread: the refusal, then whatever the client already
/// sent is read (without waiting) so the close does not turn into a reset that loses it.
fn refuse(mut stream: UnixStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = write_reply(&mut stream, &error(TOO_MANY_CLIENTS));
    let _ = stream.shutdown(std::net::Shutdown::Write);
    if stream.set_nonblocking(true).is_ok() {
        let mut sink = [0u8; 4096];
        for _ in 0..MAX_LINE / sink.len() {
            if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
                break;
            }
        }
    }
}

/// Closes after a final reply while the client may still be sending: stop writing, then
/// read and drop what comes for a moment, so the reply is not lost to a reset.
fn close_gracefully(mut stream: UnixStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 16 * 1024];
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

fn error(message: &str) -> Value {
    json!({ "ok": false, "error": message })
}

fn write_reply(stream: &mut UnixStream, reply: &Value) -> std::io::Result<()> {
    let mut line = reply.to_string();
    line.push('\n');
    stream.write_all(line.as_bytes())
}

/// Serves one client until it closes, misbehaves or runs out of time. Each line has
/// `read_timeout` to arrive whole: the first from the connection's start, a later one from
/// its first byte (after an idle wait of at most `read_timeout`). The deadline is the line's,
/// not the read's, so a client dripping a byte at a time is closed like a silent one.
fn serve(mut stream: UnixStream, commands: &Sender<Request>, read_timeout: Duration) {
    let _ = stream.set_write_timeout(Some(read_timeout));
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let mut deadline = Instant::now() + read_timeout;
    // Waiting for a later line's first byte: the deadline is then the idle limit.
    let mut idle = false;
    loop {
        // Serve every complete line already read.
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            REPLYING.fetch_add(1, Ordering::SeqCst);
            let reply = answer(&line[..end], commands);
            let written = write_reply(&mut stream, &reply);
            REPLYING.fetch_sub(1, Ordering::SeqCst);
            if written.is_err() {
                return;
            }
            if reply.get("state").and_then(Value::as_str) == Some("stopping") {
                return;
            }
            deadline = Instant::now() + read_timeout;
            idle = buf.is_empty();
        }
        if buf.len() > MAX_LINE {
            let _ = write_reply(&mut stream, &error("request line longer than 64 KiB"));
            close_gracefully(stream);
            return;
        }
        let read = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(ErrorKind::TimedOut.into());
            }
            let _ = stream.set_read_timeout(Some(left));
            match stream.read(&mut chunk) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match read {
            Ok(0) => return,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if idle {
                    // A later line's time runs from its first byte.
                    deadline = Instant::now() + read_timeout;
                    idle = false;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if !idle {
                    let _ = write_reply(&mut stream, &error("no complete request line in time"));
                }
                return;
            }
            Err(_) => return,
        }
    }
}

/// The reply to one request line.
fn answer(line: &[u8], commands: &Sender<Request>) -> Value {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let command = match parse(line) {
        Ok(command) => command,
        Err(e) => return error(&e),
    };
    let (tx, rx) = crossbeam_channel::bounded(1);
    let request = Request {
        command,
        origin: "socket",
        reply: Some(tx),
    };
    if commands.send(request).is_err() {
        return error("the gateway is stopping");
    }
    match rx.recv_timeout(REPLY_TIMEOUT) {
        Ok(reply) => reply,
        Err(_) => error("the gateway did not answer in time"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_socket_is_not_taken_over_and_a_stale_one_is() {
        let path = std::env::temp_dir().join(format!("ringway-sock-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let live = bind(&path).expect("first bind");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let e = bind(&path).expect_err("a live socket");
        assert!(e.contains("another gateway"), "{e}");
        drop(live);
        // The file stays behind, as after a crash: nobody answers, so it is replaced.
        assert!(path.exists());
        let again = bind(&path).expect("stale socket replaced");
        drop(again);
        let _ = std::fs::remove_file(&path);
    }
}
