//! Traffic policies applied to a routed request before it is answered: the rate limit
//! ([`rate_limit`]: 429) and then the concurrency limit ([`concurrency`]: 503). A request
//! refused for its rate never takes an in-flight slot.
//!
//! Per-shard state is keyed by stable identities so that it survives reloads: rate limiters
//! by their [`LimiterSpec`] id (route name and `rate_limit` settings) in [`ShardPolicy`],
//! in-flight counts by route name with the route's other state (`state::book`). An epoch
//! resolves them on a route's first request and keeps them by route index, so a request
//! looks nothing up by name.

pub mod basic;
pub mod concurrency;
pub mod identity;
pub mod jwt;
pub mod notify;
pub mod rate_limit;
pub mod retry;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use ahash::AHashMap;

use crate::metrics::RateLimitStats;
use rate_limit::lease::{LeaseGrant, Outbox};
use rate_limit::{LimiterSpec, RouteLimiter};

/// What [`ShardPolicy::report`] hands to the shard's report.
pub struct PolicyReport {
    pub rate_limits: Vec<(String, RateLimitStats)>,
}

/// A shard's rate limiters across epochs.
pub struct ShardPolicy {
    /// Shards in the process: a key borrows at most its even share of the burst.
    shards: usize,
    pub outbox: Rc<Outbox>,
    /// The limiters made so far, by id: where grants go. Made on a route's first request in
    /// an epoch, dropped at a report once the current epoch no longer has their id.
    limiters: RefCell<AHashMap<u64, Rc<RouteLimiter>>>,
}

impl ShardPolicy {
    pub fn new(shards: usize) -> ShardPolicy {
        ShardPolicy {
            shards,
            outbox: Rc::new(Outbox::default()),
            limiters: RefCell::new(AHashMap::new()),
        }
    }

    /// The limiter of `spec`: the one made before for the same id (same route name and
    /// settings), with its keys and leased tokens, else a new one.
    pub fn limiter(&self, spec: &LimiterSpec) -> Rc<RouteLimiter> {
        let mut limiters = self.limiters.borrow_mut();
        limiters
            .entry(spec.id)
            .or_insert_with(|| {
                Rc::new(RouteLimiter::new(
                    spec.clone(),
                    self.outbox.clone(),
                    self.shards,
                ))
            })
            .clone()
    }

    /// Drops the limiters whose id the current epoch does not give their route any more
    /// (`current_id`: a route's limiter id by route name; a changed or removed limit); a
    /// request still holding one finishes with it.
    pub fn retain(&self, current_id: impl Fn(&str) -> Option<u64>) {
        self.limiters
            .borrow_mut()
            .retain(|&id, limiter| current_id(&limiter.spec.route) == Some(id));
    }

    /// Grants from the control thread.
    pub fn grant(&self, grants: &[LeaseGrant]) {
        let now = Instant::now();
        let limiters = self.limiters.borrow();
        for grant in grants {
            // A grant for a limiter no longer in use (changed by a reload) is dropped; the
            // node's bucket it came from is gone too.
            if let Some(limiter) = limiters.get(&grant.limiter) {
                limiter.grant(grant, now);
            }
        }
    }

    pub fn sweep(&self, now: Instant) {
        for limiter in self.limiters.borrow().values() {
            limiter.sweep(now);
        }
    }

    /// Counters since the previous report, by route name.
    pub fn report(&self) -> PolicyReport {
        let rate_limits = self
            .limiters
            .borrow()
            .values()
            .map(|l| {
                let counts = l.take_counts();
                let stats = RateLimitStats {
                    key: l.limit().key.kind(),
                    admitted: counts.admitted,
                    rejected: counts.rejected,
                    borrowed: counts.borrowed,
                    keys: counts.keys,
                    max_keys: l.limit().max_keys.get() as u64,
                };
                (l.spec.route.clone(), stats)
            })
            .collect();
        PolicyReport { rate_limits }
    }
}
