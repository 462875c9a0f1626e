//! Shards: one monoio runtime per core, each with its own listeners (SO_REUSEPORT), upstream
//! pools and balancers. [`start_shards`] starts them all and returns once every shard has bound
//! every listener, or with the first error.

mod accept;
mod runtime;
mod state;

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use ringway_config::{DriverChoice, Shards};

use crate::Epoch;

pub use runtime::DriverKind;
pub use state::{Shard, ShardEpoch};

/// What a started shard reports.
#[derive(Debug, Clone)]
pub struct ShardInfo {
    pub index: usize,
    /// The core it is pinned to, if pinning is on.
    pub core: Option<usize>,
    pub driver: DriverKind,
    /// Why the shard runs on epoll although io_uring was allowed.
    pub fallback: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("shard {shard}: cannot start the {driver} driver: {error}")]
    Runtime {
        shard: usize,
        driver: &'static str,
        error: std::io::Error,
    },
    #[error("shard {shard}: cannot listen on {address} (listener {listener}): {error}")]
    Bind {
        shard: usize,
        listener: String,
        address: std::net::SocketAddr,
        error: std::io::Error,
    },
    #[error("shard {shard} stopped during start-up")]
    Died { shard: usize },
}

pub struct ShardSet {
    pub shards: Vec<ShardInfo>,
    handles: Vec<JoinHandle<()>>,
}

impl ShardSet {
    /// Blocks until every shard thread has ended.
    pub fn join(self) {
        for handle in self.handles {
            let _ = handle.join();
        }
    }
}

/// The number of shards a config asks for.
pub fn shard_count(shards: Shards) -> usize {
    match shards {
        Shards::Count(n) => n.get(),
        Shards::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// Starts the shards of `epoch.config.runtime` and waits until all listen.
pub fn start_shards(epoch: Arc<Epoch>) -> Result<ShardSet, StartError> {
    let runtime = &epoch.config.runtime;
    let count = shard_count(runtime.shards);
    let cores: Vec<usize> = if runtime.pin {
        core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect()
    } else {
        Vec::new()
    };
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut handles = Vec::with_capacity(count);
    for index in 0..count {
        let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
        let epoch = epoch.clone();
        let ready_tx = ready_tx.clone();
        let driver = runtime.driver;
        let entries = runtime.uring_entries;
        let handle = std::thread::Builder::new()
            .name(format!("ringway-shard-{index}"))
            .spawn(move || run_shard(index, core, driver, entries, epoch, ready_tx))
            .expect("spawning a shard thread");
        handles.push(handle);
    }
    drop(ready_tx);
    let mut shards = Vec::with_capacity(count);
    for _ in 0..count {
        match ready_rx.recv() {
            Ok(Ok(info)) => shards.push(info),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(StartError::Died {
                    shard: shards.len(),
                })
            }
        }
    }
    shards.sort_by_key(|s: &ShardInfo| s.index);
    Ok(ShardSet { shards, handles })
}

type Ready = mpsc::Sender<Result<ShardInfo, StartError>>;

fn run_shard(
    index: usize,
    core: Option<usize>,
    choice: DriverChoice,
    entries: u32,
    epoch: Arc<Epoch>,
    ready: Ready,
) {
    if let Some(core) = core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            tracing::warn!(shard = index, core, "could not pin shard to its core");
        }
    }
    let info = |driver, fallback| ShardInfo {
        index,
        core,
        driver,
        fallback,
    };
    match runtime::build(choice, entries) {
        Ok(runtime::Built::Uring(mut rt)) => rt.block_on(accept::run(
            index,
            epoch,
            info(DriverKind::IoUring, None),
            ready,
        )),
        Ok(runtime::Built::Legacy(mut rt, why)) => rt.block_on(accept::run(
            index,
            epoch,
            info(DriverKind::Epoll, why),
            ready,
        )),
        Err((driver, error)) => {
            let _ = ready.send(Err(StartError::Runtime {
                shard: index,
                driver,
                error,
            }));
        }
    }
}
