//! The access-log writer thread: shards hand it batches of complete JSON lines over a bounded
//! channel (dropping and counting a batch when it is full, see `ringway_core`'s
//! `state::access_log`); this thread appends them to the file, one `write` per batch.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

/// Batches waiting for the writer; a shard's batch is up to 64 KiB, so this bounds the queue
/// to a few MiB.
const QUEUE: usize = 64;

/// Mode of a newly created access log: the gateway's user reads and writes, its group reads.
const MODE: u32 = 0o640;
/// How soon the writer acts on a reopen request when no lines arrive.
const REOPEN_CHECK: Duration = Duration::from_millis(100);

/// Raised by `ringway ctl reopen` or SIGUSR1: the writer closes the file and opens its path
/// again (after logrotate moved it away), within [`REOPEN_CHECK`].
pub type Reopen = Arc<AtomicBool>;

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(MODE)
        .open(path)
}

/// Opens `path` (create, append, mode 0640) and starts the writer thread. The thread ends,
/// having written every batch sent, once every sender is dropped; join the handle to wait for
/// that. Raising the returned flag makes it reopen `path`.
pub fn spawn_access_log_writer(
    path: &Path,
) -> io::Result<(Sender<Vec<u8>>, Reopen, JoinHandle<()>)> {
    let file = open(path)?;
    let (tx, rx) = crossbeam_channel::bounded(QUEUE);
    let reopen = Reopen::default();
    let flag = reopen.clone();
    let path = path.to_path_buf();
    let thread = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || write_batches(file, rx, &path, &flag))?;
    Ok((tx, reopen, thread))
}

fn write_batches(mut file: File, rx: Receiver<Vec<u8>>, path: &Path, reopen: &AtomicBool) {
    // Warn once per run of failures (a full disk fails every batch), again after a success.
    let mut failing = false;
    let display = path.display().to_string();
    let path_str = display.as_str();
    loop {
        let batch = rx.recv_timeout(REOPEN_CHECK);
        if reopen.swap(false, Ordering::SeqCst) {
            match open(path) {
                Ok(new) => {
                    file = new;
                    tracing::info!(path = path_str, "access log reopened");
                }
                Err(e) => {
                    tracing::warn!(path = path_str, error = %e, "access log: cannot reopen, writing on to the old file");
                }
            }
        }
        let batch = match batch {
            Ok(batch) => batch,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        let path = path_str;
        match file.write_all(&batch).and_then(|()| file.flush()) {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(path, error = %e, "access log: write failed, lines lost");
            }
            Err(_) => {}
        }
    }
}
