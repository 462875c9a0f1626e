//! A reload's preparation, before any shard hears of it: the file goes through exactly the
//! start-up path (read, validate, resolve), then every listener address the running epoch
//! does not already have is test-bound, so that a port taken by another process is reported
//! here, with the old epoch untouched, rather than by the shards.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ringway_config::Config;
use ringway_core::Epoch;
use socket2::{Domain, Socket, Type};

use super::background::Background;

/// [`prepare`] and [`Epoch::compile_after`] of the file at `path` as epoch `id`, on the
/// background thread: the new epoch and the warnings, or the errors.
pub fn load_epoch(
    background: &Background,
    path: PathBuf,
    running: Arc<Epoch>,
    id: u64,
) -> Result<(Arc<Epoch>, Vec<String>), Vec<String>> {
    background.run(move || {
        let loaded = prepare(&path, &running.config).and_then(|prepared| {
            let source = prepared.config.source.clone();
            let epoch = Epoch::compile_after(id, prepared.config, Some(&running))
                .map_err(|e| vec![format!("{source}: {e}")])?;
            Ok((Arc::new(epoch), prepared.warnings))
        });
        // The parse's garbage (the TOML document is several times the file) goes back.
        ringway_core::sys::release_free_memory();
        loaded
    })
}

/// Most config errors a reload's reply (and its log line) lists; a file where every one of
/// 10,000 routes is wrong would otherwise give a reply of a megabyte.
const MAX_ERRORS: usize = 50;

pub struct Prepared {
    pub config: Config,
    /// Changes that a reload cannot apply (they need a restart).
    pub warnings: Vec<String>,
}

/// Loads and checks the file at `path` against the running config. Errors are whole lines:
/// `file:line:column: key: message` for validation, `file: key: message` for the bind check.
pub fn prepare(path: &Path, running: &Config) -> Result<Prepared, Vec<String>> {
    let config = ringway_config::load_replacing(path, Some(running)).map_err(|errors| {
        let mut lines: Vec<String> = errors
            .0
            .iter()
            .take(MAX_ERRORS)
            .map(|e| e.to_string())
            .collect();
        if errors.0.len() > MAX_ERRORS {
            lines.push(format!(
                "... and {} more errors (`ringway check -c {}` lists them all)",
                errors.0.len() - MAX_ERRORS,
                path.display()
            ));
        }
        lines
    })?;
    let mut errors = Vec::new();
    for (i, l) in config.listeners.iter().enumerate() {
        if running.listeners.iter().any(|r| r.listen == l.listen) {
            continue;
        }
        if let Err(e) = try_bind(l.listen) {
            errors.push(format!(
                "{}: listeners[{i}].listen: cannot listen on {} (listener {}): {e}",
                config.source, l.listen, l.name
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let warnings = restart_only_changes(running, &config);
    for w in &warnings {
        tracing::warn!("reload: {w}");
    }
    Ok(Prepared { config, warnings })
}

/// Binds `addr` the way a shard does (SO_REUSEPORT, SO_REUSEADDR) and lets it go.
fn try_bind(addr: SocketAddr) -> std::io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1)?;
    Ok(())
}

/// What differs between `old` and `new` but only takes effect at the next start.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    if old.runtime != new.runtime {
        warnings.push("[runtime] changed: it applies at the next start".to_string());
    }
    if old.control.socket != new.control.socket {
        warnings.push(
            "control.socket changed: the control socket stays where it is until the next start"
                .to_string(),
        );
    }
    if old.metrics.interval != new.metrics.interval
        || old.metrics.interval_log != new.metrics.interval_log
    {
        warnings.push("[metrics] changed: it applies at the next start".to_string());
    }
    if old.access_log != new.access_log {
        warnings.push("[access_log] changed: it applies at the next start".to_string());
    }
    if old.admin != new.admin {
        warnings.push(
            "[admin] changed: the admin listener stays where it is until the next start"
                .to_string(),
        );
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str) -> Config {
        let toml = format!("[[listeners]]\nname = \"l\"\nlisten = \"{listen}\"\n");
        ringway_config::parse(&toml, "t.toml").unwrap()
    }

    #[test]
    fn a_taken_port_is_reported_with_the_old_config_untouched() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = held.local_addr().unwrap().to_string();
        let running = config("127.0.0.1:1");
        let file = std::env::temp_dir().join(format!("ringway-reload-{}.toml", std::process::id()));
        std::fs::write(
            &file,
            format!("[[listeners]]\nname = \"l\"\nlisten = \"{taken}\"\n"),
        )
        .unwrap();
        let errors = prepare(&file, &running).err().expect("the port is taken");
        let _ = std::fs::remove_file(&file);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("listeners[0].listen"), "{errors:?}");
        assert!(errors[0].contains(&taken), "{errors:?}");
    }

    #[test]
    fn an_address_already_running_is_not_test_bound() {
        // The running gateway holds this address itself: binding it again is no test.
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap().to_string();
        let running = config(&addr);
        let file =
            std::env::temp_dir().join(format!("ringway-reload-same-{}.toml", std::process::id()));
        std::fs::write(
            &file,
            format!("[[listeners]]\nname = \"l\"\nlisten = \"{addr}\"\n"),
        )
        .unwrap();
        let prepared = prepare(&file, &running);
        let _ = std::fs::remove_file(&file);
        let prepared = prepared.unwrap_or_else(|e| panic!("{e:?}"));
        assert!(prepared.warnings.is_empty());
    }

    #[test]
    fn a_reply_lists_the_first_errors_and_counts_the_rest() {
        let running = config("127.0.0.1:1");
        let file =
            std::env::temp_dir().join(format!("ringway-reload-many-{}.toml", std::process::id()));
        let mut toml = String::from("[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\n");
        for i in 0..MAX_ERRORS + 10 {
            toml.push_str(&format!(
                "[[routes]]\nname = \"r{i}\"\nupstream = \"none\"\n"
            ));
        }
        std::fs::write(&file, toml).unwrap();
        let errors = prepare(&file, &running).err().expect("invalid");
        let _ = std::fs::remove_file(&file);
        assert_eq!(errors.len(), MAX_ERRORS + 1, "{errors:?}");
        assert!(errors[0].contains("routes[0].upstream"), "{errors:?}");
        let last = errors.last().unwrap();
        assert!(last.starts_with("... and 10 more errors"), "{last}");
        assert!(last.contains("ringway check -c"), "{last}");
    }

    #[test]
    fn validation_errors_keep_their_position() {
        let running = config("127.0.0.1:1");
        let file =
            std::env::temp_dir().join(format!("ringway-reload-bad-{}.toml", std::process::id()));
        std::fs::write(
            &file,
            "[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\nbogus = 1\n",
        )
        .unwrap();
        let errors = prepare(&file, &running).err().expect("invalid");
        let _ = std::fs::remove_file(&file);
        let want = format!("{}:4:1: listeners[0].bogus:", file.display());
        assert!(errors[0].starts_with(&want), "{errors:?}");
    }
}
