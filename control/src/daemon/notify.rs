//! systemd's readiness protocol (`Type=notify`): datagrams to `$NOTIFY_SOCKET`, a path or an
//! abstract socket name starting with `@`. READY=1 once serving, RELOADING=1 with
//! MONOTONIC_USEC at a reload's start and READY=1 at its end, STOPPING=1 on drain or stop.
//! Without the variable, nothing is sent.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use nix::time::{clock_gettime, ClockId};

pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier { target: None };
        };
        let bytes = name.as_encoded_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name),
            None => SocketAddr::from_pathname(std::path::Path::new(&name)),
        };
        let target = match (UnixDatagram::unbound(), addr) {
            (Ok(socket), Ok(addr)) => Some((socket, addr)),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, socket = ?name, "cannot use NOTIFY_SOCKET");
                None
            }
        };
        Notifier { target }
    }

    pub fn send(&self, state: &str) {
        if let Some((socket, addr)) = &self.target {
            if let Err(e) = socket.send_to_addr(state.as_bytes(), addr) {
                tracing::debug!(error = %e, "sd_notify failed");
            }
        }
    }

    /// RELOADING=1 with the CLOCK_MONOTONIC time in µs, as `Type=notify-reload` requires.
    pub fn reloading(&self) {
        if self.target.is_some() {
            self.send(&format!(
                "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
                monotonic_usec()
            ));
        }
    }
}

fn monotonic_usec() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        (t.tv_sec() as u64) * 1_000_000 + (t.tv_nsec() as u64) / 1_000
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_time_moves_forward() {
        let a = monotonic_usec();
        let b = monotonic_usec();
        assert!(a > 0 && b >= a);
    }
}
