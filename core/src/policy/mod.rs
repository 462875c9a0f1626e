//! Traffic policies applied to a routed request before it is answered: the rate limit
//! ([`rate_limit`]: 429) and then the concurrency limit ([`concurrency`]: 503). A request
//! refused for its rate never takes an in-flight slot.
//!
//! Per-shard state lives in [`ShardPolicy`], keyed by stable identities so that it survives
//! reloads: rate limiters by their [`LimiterSpec`] id (route name and `rate_limit` settings),
//! in-flight counts by route name. Each epoch resolves it by route index once
//! ([`RoutePolicies`]), so a request looks nothing up by name.

pub mod concurrency;
pub mod notify;
pub mod rate_limit;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use ahash::AHashMap;
use ringway_config::Config;

use crate::metrics::{ConcurrencyStats, RateLimitStats};
use crate::shard::{FromShard, Shard};
use concurrency::{ConcurrencyLimit, InFlight};
use rate_limit::lease::{LeaseGrant, Outbox, SWEEP_EVERY};
use rate_limit::{LimiterSpec, RouteLimiter};

/// The policies of an epoch's routes, by route index.
#[derive(Default)]
pub struct RoutePolicies {
    pub rate_limits: Vec<Option<Rc<RouteLimiter>>>,
    pub concurrency: Vec<Option<ConcurrencyLimit>>,
}

/// What [`ShardPolicy::report`] hands to the shard's report.
pub struct PolicyReport {
    pub rate_limits: Vec<(String, RateLimitStats)>,
    pub concurrency: Vec<(String, ConcurrencyStats)>,
}

/// A shard's policy state across epochs.
pub struct ShardPolicy {
    /// Shards in the process: a key borrows at most its even share of the burst.
    shards: usize,
    pub outbox: Rc<Outbox>,
    /// The limiters of the current epoch, by id: where grants go.
    limiters: RefCell<AHashMap<u64, Rc<RouteLimiter>>>,
    /// In-flight counts by route name, with the route's `max_in_flight` in the current epoch
    /// (0: none now; the count is kept while requests still hold it).
    in_flight: RefCell<AHashMap<String, (Rc<InFlight>, usize)>>,
}

impl ShardPolicy {
    pub fn new(shards: usize) -> ShardPolicy {
        ShardPolicy {
            shards,
            outbox: Rc::new(Outbox::default()),
            limiters: RefCell::new(AHashMap::new()),
            in_flight: RefCell::new(AHashMap::new()),
        }
    }

    /// The policies of `config`'s routes. A limiter whose route name and settings did not
    /// change is the same one, with its keys and leased tokens; any other is dropped.
    pub fn compile(&self, config: &Config) -> RoutePolicies {
        let mut limiters = self.limiters.borrow_mut();
        let mut next = AHashMap::with_capacity(limiters.len());
        let rate_limits = config
            .routes
            .iter()
            .map(|route| {
                let spec = LimiterSpec::of(route)?;
                let limiter = limiters.remove(&spec.id).unwrap_or_else(|| {
                    Rc::new(RouteLimiter::new(spec, self.outbox.clone(), self.shards))
                });
                next.insert(limiter.spec.id, limiter.clone());
                Some(limiter)
            })
            .collect();
        *limiters = next;
        let mut in_flight = self.in_flight.borrow_mut();
        for (_, max) in in_flight.values_mut() {
            *max = 0;
        }
        let concurrency = config
            .routes
            .iter()
            .map(|route| {
                let max = route.max_in_flight?.get();
                let (counter, current) = in_flight.entry(route.name.clone()).or_default();
                *current = max;
                Some(ConcurrencyLimit {
                    max,
                    counter: counter.clone(),
                })
            })
            .collect();
        in_flight.retain(|_, (counter, max)| *max > 0 || counter.count() > 0);
        RoutePolicies {
            rate_limits,
            concurrency,
        }
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

    fn sweep(&self, now: Instant) {
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
        let concurrency = self
            .in_flight
            .borrow()
            .iter()
            .map(|(route, (counter, max))| {
                let stats = ConcurrencyStats {
                    rejected: counter.take_rejected(),
                    in_flight: counter.count() as u64,
                    max: *max as u64,
                };
                (route.clone(), stats)
            })
            .collect();
        PolicyReport {
            rate_limits,
            concurrency,
        }
    }
}

/// The shard's lease task: sends queued asks to the control thread, one message per batch,
/// and gives back expired leases every [`SWEEP_EVERY`].
pub async fn run_leases(shard: Rc<Shard>) {
    let policy = &shard.policy;
    let mut next_sweep = Instant::now() + SWEEP_EVERY;
    loop {
        if policy.outbox.is_empty() {
            let wake = policy.outbox.wake.notified();
            let _ = monoio::time::timeout_at(next_sweep.into(), wake).await;
        }
        let now = Instant::now();
        if now >= next_sweep {
            policy.sweep(now);
            next_sweep = now + SWEEP_EVERY;
        }
        let asks = policy.outbox.take();
        if !asks.is_empty() {
            // Never block the shard on a full channel: the batch is dropped, its asks count as
            // lost after `ASK_TIMEOUT` and are made again, and tokens it gave back are lost.
            let message = FromShard::Lease {
                shard: shard.index,
                asks,
            };
            if shard.events.try_send(message).is_err() {
                tracing::debug!(
                    shard = shard.index,
                    "lease asks dropped: control channel full"
                );
            }
        }
    }
}
