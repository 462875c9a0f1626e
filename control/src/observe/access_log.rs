//! The access-log writer thread: shards hand it batches of complete JSON lines over a bounded
//! channel (dropping and counting a batch when it is full, see `ringway_core`'s
//! `shard::access_log`); this thread appends them to the file, one `write` per batch.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

/// Batches waiting for the writer; a shard's batch is up to 64 KiB, so this bounds the queue
/// to a few MiB.
const QUEUE: usize = 64;

/// Mode of a newly created access log: the gateway's user reads and writes, its group reads.
const MODE: u32 = 0o640;

/// Opens `path` (create, append, mode 0640) and starts the writer thread. The thread ends,
/// having written every batch sent, once every sender is dropped; join the handle to wait for
/// that.
pub fn spawn_access_log_writer(path: &Path) -> io::Result<(Sender<Vec<u8>>, JoinHandle<()>)> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(MODE)
        .open(path)?;
    let (tx, rx) = crossbeam_channel::bounded(QUEUE);
    let display = path.display().to_string();
    let thread = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || write_batches(file, rx, &display))?;
    Ok((tx, thread))
}

fn write_batches(mut file: File, rx: Receiver<Vec<u8>>, path: &str) {
    // Warn once per run of failures (a full disk fails every batch), again after a success.
    let mut failing = false;
    for batch in rx {
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
