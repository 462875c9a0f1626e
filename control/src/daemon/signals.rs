//! Signals, turned into control-loop requests by a thread of their own: SIGHUP reloads,
//! SIGTERM drains, SIGINT stops fast, SIGUSR1 reopens the log files (as nginx does). The loop logs each outcome (nobody waits for a reply).

use crossbeam_channel::Sender;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use super::{Command, Request};

/// Installs the handlers; from here on these signals no longer take the default action.
pub fn register() -> std::io::Result<Signals> {
    Signals::new([SIGHUP, SIGTERM, SIGINT, SIGUSR1])
}

pub fn spawn(mut signals: Signals, commands: Sender<Request>) {
    std::thread::Builder::new()
        .name("ringway-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let (command, origin) = match signal {
                    SIGHUP => (Command::Reload { path: None }, "SIGHUP"),
                    SIGTERM => (Command::Drain, "SIGTERM"),
                    SIGINT => (Command::Shutdown, "SIGINT"),
                    SIGUSR1 => (Command::Reopen, "SIGUSR1"),
                    _ => continue,
                };
                tracing::info!(signal = origin, "signal received");
                let request = Request {
                    command,
                    origin,
                    reply: None,
                };
                if commands.send(request).is_err() {
                    return;
                }
            }
        })
        .expect("spawning the signal thread");
}
