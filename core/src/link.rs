//! The channels between the control thread and the shards.
//!
//! Control -> shard: a bounded crossbeam channel per shard plus a wake-up byte on a socket
//! pair, so a shard parked in its event loop notices the message at once. Shard -> control: one
//! bounded crossbeam channel shared by all shards (never used on the request path: shards send
//! only acknowledgements and periodic reports).

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::metrics::ShardReport;
use crate::policy::rate_limit::lease::{LeaseAsk, LeaseGrant};
use crate::upstream::HealthTable;
use crate::Epoch;

/// What the control thread tells a shard.
pub enum ToShard {
    /// Run this epoch from the next request on; answer with [`FromShard::Ack`].
    Epoch(Arc<Epoch>),
    /// Send a [`FromShard::Report`] of everything since the previous one.
    Flush,
    /// The active health checks' latest results: apply them to every upstream guard, and to
    /// the guards of epochs installed later (no answer).
    Health(Arc<HealthTable>),
    /// Stop accepting, close idle keep-alive connections, answer in-flight requests with
    /// `connection: close`, and stop when all connections are gone or after `timeout`;
    /// then send [`FromShard::Stopped`].
    Drain { timeout: Duration },
    /// Stop now, dropping every connection; then send [`FromShard::Stopped`].
    Stop,
    /// Rate-limit quota from the node's buckets, answering [`FromShard::Lease`] asks.
    Lease(Vec<LeaseGrant>),
}

/// What a shard tells the control thread.
pub enum FromShard {
    /// The shard runs `epoch` now, or could not switch to it (`error`, e.g. a new listener
    /// that did not bind; it keeps running its previous epoch).
    Ack {
        shard: usize,
        epoch: u64,
        error: Option<String>,
    },
    Report(Box<ShardReport>),
    /// The shard's event loop ended after a drain or a stop.
    Stopped {
        shard: usize,
    },
    /// Rate-limit quota asked for, and leased tokens given back, in one batch.
    Lease {
        shard: usize,
        asks: Vec<LeaseAsk>,
    },
}

/// The control thread's handle on one shard.
pub struct ShardLink {
    pub shard: usize,
    tx: Sender<ToShard>,
    wake: UnixStream,
}

/// The shard's end of its link.
pub struct ShardInbox {
    pub rx: Receiver<ToShard>,
    pub wake: UnixStream,
}

/// Messages a shard may have queued before it must read them.
const INBOX: usize = 64;

pub fn link(shard: usize) -> std::io::Result<(ShardLink, ShardInbox)> {
    let (tx, rx) = crossbeam_channel::bounded(INBOX);
    let (control_end, shard_end) = UnixStream::pair()?;
    control_end.set_nonblocking(true)?;
    shard_end.set_nonblocking(true)?;
    Ok((
        ShardLink {
            shard,
            tx,
            wake: control_end,
        },
        ShardInbox {
            rx,
            wake: shard_end,
        },
    ))
}

impl ShardLink {
    /// Messages queued for the shard and not read yet.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Room that lease grants may not take, so that an epoch or a stop always fits.
    pub const RESERVED: usize = INBOX / 2;

    /// Queues `msg` and wakes the shard. False when the shard is gone or its inbox is full.
    pub fn send(&self, msg: ToShard) -> bool {
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => return false,
        }
        // A full socket buffer means a wake-up is already pending: nothing to do.
        let _ = (&self.wake).write(&[1]);
        true
    }
}
