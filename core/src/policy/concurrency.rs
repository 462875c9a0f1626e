//! `max_in_flight`: a cap on a route's requests in flight at once, counted per shard.
//!
//! Per shard because a shard's count is exact and free (a `Cell`, no atomic, no message): a
//! node-wide cap would need leases as the rate limit does, and a concurrency cap guards the
//! memory and the upstream connections of the shard that holds the requests anyway. With N
//! shards the node holds at most N × `max_in_flight` requests of the route.

use std::cell::Cell;
use std::rc::Rc;

/// One route's in-flight count on a shard; kept across reloads by route name, so requests
/// that started under an earlier epoch still count.
#[derive(Debug, Default)]
pub struct InFlight {
    count: Cell<usize>,
    /// Requests refused with 503 since the previous report.
    rejected: Cell<u64>,
}

impl InFlight {
    pub fn count(&self) -> usize {
        self.count.get()
    }

    /// Requests refused since the previous call.
    pub fn take_rejected(&self) -> u64 {
        self.rejected.replace(0)
    }
}

/// A route's cap in the epoch that routed the request.
#[derive(Clone, Debug)]
pub struct ConcurrencyLimit {
    pub max: usize,
    pub counter: Rc<InFlight>,
}

impl ConcurrencyLimit {
    /// A slot for one more request, held until the guard drops; `None` (counted) at the cap.
    pub fn enter(&self) -> Option<InFlightGuard> {
        let counter = &self.counter;
        if counter.count.get() >= self.max {
            counter.rejected.set(counter.rejected.get() + 1);
            return None;
        }
        counter.count.set(counter.count.get() + 1);
        Some(InFlightGuard {
            counter: counter.clone(),
        })
    }
}

/// One request in flight; dropping it (however the request ends) frees the slot.
#[derive(Debug)]
pub struct InFlightGuard {
    counter: Rc<InFlight>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.counter.count.set(self.counter.count.get() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_frees_slots() {
        let limit = ConcurrencyLimit {
            max: 2,
            counter: Rc::new(InFlight::default()),
        };
        let a = limit.enter().expect("first");
        let b = limit.enter().expect("second");
        assert!(limit.enter().is_none());
        assert_eq!(limit.counter.count(), 2);
        drop(a);
        let c = limit.enter().expect("a slot was freed");
        drop((b, c));
        assert_eq!(limit.counter.count(), 0);
        assert_eq!(limit.counter.take_rejected(), 1);
        assert_eq!(limit.counter.take_rejected(), 0);
    }
}
