//! The quota lease protocol between shards and the control thread, and its numbers.
//!
//! A shard asks ([`LeaseAsk`]) for tokens of one (limiter, key) when its stock runs low, sized
//! by the key's recent demand on that shard, and gives back tokens it no longer needs in the
//! same message type. The control thread answers from the node's bucket of that key
//! ([`LeaseGrant`]): some tokens, or none and how long until the bucket has a batch again.
//! Asks and grants travel in batches, one message per event-loop turn on the shard and one per
//! burst of events on the control thread, so message counts stay bounded by the number of
//! active (key, shard) pairs, not by the request rate.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::super::notify::Notify;

/// An ask for tokens, or a return of unused ones (`want` 0), for one key of one limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseAsk {
    /// The limiter: a stable hash of its route's name and `rate_limit` settings.
    pub limiter: u64,
    /// The hash of the request key (0 for `key = "route"`).
    pub key: u64,
    /// Tokens wanted; 0: no answer expected.
    pub want: u32,
    /// Leased tokens the shard gives back, unused.
    pub give_back: u32,
}

/// The answer to an ask with `want > 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseGrant {
    pub limiter: u64,
    pub key: u64,
    /// Tokens now owned by the shard, until they are used or the lease expires.
    pub tokens: u32,
    /// With `tokens` 0: how long until the node's bucket has a batch to lease again.
    pub wait: Duration,
}

/// An ask asks for this much of the key's recent demand on the shard.
pub const HORIZON: Duration = Duration::from_millis(100);
/// Leased tokens not used within this time go back to the node's bucket, so that a shard whose
/// traffic moved elsewhere does not sit on quota.
pub const LEASE_TTL: Duration = Duration::from_millis(500);
/// How long a request with no tokens on its shard waits for the answer to an ask in flight.
pub const LEASE_WAIT: Duration = Duration::from_millis(50);
/// An ask unanswered for this long counts as lost (a full channel): the next request asks again.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a shard gives back expired leases.
pub const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// When its bucket runs low, the node leases no less than this much of the rate at a time
/// (and makes shards wait for it), so that a saturated key costs at most one ask per shard
/// every few milliseconds, not one per request.
pub const MIN_BATCH: Duration = Duration::from_millis(5);

/// A shard's asks waiting to be sent, and the wake-up of the task that sends them.
#[derive(Default)]
pub struct Outbox {
    asks: RefCell<Vec<LeaseAsk>>,
    pub wake: Rc<Notify>,
}

impl Outbox {
    pub fn push(&self, ask: LeaseAsk) {
        let mut asks = self.asks.borrow_mut();
        asks.push(ask);
        if asks.len() == 1 {
            drop(asks);
            self.wake.notify();
        }
    }

    /// Everything queued, leaving an empty queue.
    pub fn take(&self) -> Vec<LeaseAsk> {
        std::mem::take(&mut *self.asks.borrow_mut())
    }

    pub fn is_empty(&self) -> bool {
        self.asks.borrow().is_empty()
    }
}
