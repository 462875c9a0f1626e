//! Shards: one monoio runtime per core, each with its own listeners (SO_REUSEPORT), upstream
//! pools, balancers and statistics. [`start_shards`] starts them all and returns once every
//! shard has bound every listener, or with the first error. Afterwards the control thread
//! talks to each shard through its [`ShardLink`].

mod leases;
mod run;

use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use ringway_config::{DriverChoice, Shards};

use crate::Epoch;

pub use crate::link::{FromShard, ShardLink, ToShard};
pub use crate::rt::DriverKind;
pub use crate::state::{Shard, ShardEpoch};

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
    #[error("shard {shard}: cannot create its control channel: {error}")]
    Link { shard: usize, error: std::io::Error },
    #[error("shard {shard} stopped during start-up")]
    Died { shard: usize },
}

/// Where shards send what they produce.
#[derive(Clone)]
pub struct Sinks {
    /// Acknowledgements, reports and stop notices for the control thread.
    pub events: Sender<FromShard>,
    /// Batches of access-log lines for the writer thread; None: no access log.
    pub access_log: Option<Sender<Vec<u8>>>,
}

pub struct ShardSet {
    pub shards: Vec<ShardInfo>,
    pub links: Vec<ShardLink>,
    threads: Vec<JoinHandle<()>>,
}

impl ShardSet {
    /// Blocks until every shard thread has ended.
    pub fn join(self) {
        for handle in self.threads {
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
pub fn start_shards(epoch: Arc<Epoch>, sinks: Sinks) -> Result<ShardSet, StartError> {
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
    let mut threads = Vec::with_capacity(count);
    let mut links = Vec::with_capacity(count);
    for index in 0..count {
        let (link, inbox) = crate::link::link(index).map_err(|error| StartError::Link {
            shard: index,
            error,
        })?;
        links.push(link);
        let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
        let start = ShardStart {
            index,
            count,
            core,
            driver: runtime.driver,
            entries: runtime.uring_entries,
            epoch: epoch.clone(),
            sinks: sinks.clone(),
            inbox,
        };
        let ready_tx = ready_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ringway-shard-{index}"))
            .spawn(move || start.run(ready_tx))
            .expect("spawning a shard thread");
        threads.push(thread);
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
    Ok(ShardSet {
        shards,
        links,
        threads,
    })
}

type Ready = mpsc::Sender<Result<ShardInfo, StartError>>;

struct ShardStart {
    index: usize,
    /// Shards started (`[runtime]` applies at start only).
    count: usize,
    core: Option<usize>,
    driver: DriverChoice,
    entries: u32,
    epoch: Arc<Epoch>,
    sinks: Sinks,
    inbox: crate::link::ShardInbox,
}

impl ShardStart {
    fn run(self, ready: Ready) {
        let ShardStart {
            index,
            count,
            core,
            driver,
            entries,
            epoch,
            sinks,
            inbox,
        } = self;
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
        let body = |info: ShardInfo| {
            let access_log = sinks.access_log.clone().map(crate::state::AccessLog::new);
            let shard = Rc::new(Shard::new(
                (index, count),
                epoch.clone(),
                sinks.events.clone(),
                access_log,
            ));
            // Moved, not cloned: the first epoch must not outlive its last request here.
            run::run(shard, epoch, info, ready.clone(), inbox)
        };
        match crate::rt::runtime::build(driver, entries) {
            Ok(crate::rt::runtime::Built::Uring(mut rt)) => {
                rt.block_on(body(info(DriverKind::IoUring, None)))
            }
            Ok(crate::rt::runtime::Built::Legacy(mut rt, why)) => {
                rt.block_on(body(info(DriverKind::Epoll, why)))
            }
            Err((driver, error)) => {
                let _ = ready.send(Err(StartError::Runtime {
                    shard: index,
                    driver,
                    error,
                }));
            }
        }
    }
}
