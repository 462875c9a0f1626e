//! The node's rate-limit buckets: one token bucket per (limiter, key), owned by the control
//! thread, leased to shards on demand (see `ringway_core::policy::rate_limit`).
//!
//! A shard asks for tokens when its stock of a key runs low; the answer is taken from the
//! key's node bucket: at least the shard's even share of the burst when the bucket has it (so a
//! quiet key costs few messages), at most the burst. When the bucket holds less than
//! [`MIN_BATCH`] worth of the rate the answer is no tokens and how long until it will, which
//! the shard uses for `Retry-After` and to hold its next ask: a saturated key costs each shard
//! about one ask per [`MIN_BATCH`], whatever the request rate. Every token a shard spends left
//! a node bucket, so the node admits at most `burst` plus `rate` per `per`.
//!
//! Bounds: buckets per limiter are an LRU of `max_keys` × shards entries (a shard holds at most
//! `max_keys` keys), and grants go out in one message per shard per burst of asks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ringway_core::policy::rate_limit::bucket::TokenBucket;
use ringway_core::policy::rate_limit::lease::{LeaseAsk, LeaseGrant, MIN_BATCH};
use ringway_core::policy::rate_limit::lru::Lru;
use ringway_core::policy::rate_limit::LimiterSpec;
use ringway_core::Epoch;

/// Grants queued that are sent even while more asks wait to be read.
const MANY_GRANTS: usize = 256;

pub struct Quota {
    origin: Instant,
    shards: usize,
    limiters: HashMap<u64, NodeLimiter>,
    /// Grants not sent yet, by shard.
    outbox: Vec<Vec<LeaseGrant>>,
}

struct NodeLimiter {
    spec: LimiterSpec,
    buckets: Lru<TokenBucket>,
    /// A shard's even share of the burst: the least a grant gives when the bucket has it.
    share: u64,
    /// The least a grant gives when the bucket runs low ([`MIN_BATCH`] of the rate).
    min_batch: u64,
}

impl NodeLimiter {
    fn new(spec: LimiterSpec, shards: usize) -> NodeLimiter {
        let limit = &spec.limit;
        let burst = u64::from(limit.burst.get());
        let shards = u64::try_from(shards.max(1)).unwrap_or(1);
        let per_batch = u128::from(limit.rate.get()) * MIN_BATCH.as_nanos();
        let min_batch = u64::try_from(per_batch.div_ceil(limit.per.as_nanos().max(1)))
            .unwrap_or(u64::MAX)
            .clamp(1, burst);
        let capacity = limit.max_keys.get().saturating_mul(shards as usize);
        NodeLimiter {
            buckets: Lru::new(capacity),
            share: burst.div_ceil(shards),
            min_batch,
            spec,
        }
    }

    fn lease(&mut self, ask: &LeaseAsk, now_ns: u64) -> Option<LeaseGrant> {
        let limit = &self.spec.limit;
        let (rate, per, burst) = (limit.rate, limit.per, limit.burst);
        // An evicted key's bucket is forgotten: it was the least recently used of them all.
        let (bucket, _evicted) = self
            .buckets
            .get_or_insert_with(ask.key, || TokenBucket::full(rate, per, burst, now_ns));
        if ask.give_back > 0 {
            bucket.give_back(now_ns, u64::from(ask.give_back));
        }
        if ask.want == 0 {
            return None;
        }
        let size = u64::from(ask.want)
            .max(self.share)
            .min(u64::from(burst.get()));
        let least = self.min_batch.min(size);
        let (tokens, wait) = if bucket.available(now_ns) >= least {
            (bucket.take_up_to(now_ns, size), Duration::ZERO)
        } else {
            (0, bucket.time_until(now_ns, least))
        };
        Some(LeaseGrant {
            limiter: ask.limiter,
            key: ask.key,
            tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
            wait,
        })
    }
}

impl Quota {
    pub fn new(epoch: &Epoch, shards: usize) -> Quota {
        let mut quota = Quota {
            origin: Instant::now(),
            shards,
            limiters: HashMap::new(),
            outbox: vec![Vec::new(); shards],
        };
        quota.add_epoch(epoch);
        quota
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Adds the limiters of `epoch` that are new; the others keep their buckets. Called before
    /// the epoch goes out, so that the asks of shards that switched early find their limiter.
    pub fn add_epoch(&mut self, epoch: &Epoch) {
        for spec in LimiterSpec::all(&epoch.config) {
            let shards = self.shards;
            self.limiters
                .entry(spec.id)
                .or_insert_with(|| NodeLimiter::new(spec, shards));
        }
    }

    /// Drops the limiters `epoch` does not have (once every shard runs it, or after a
    /// rollback to it).
    pub fn retain_epoch(&mut self, epoch: &Epoch) {
        let keep: Vec<u64> = LimiterSpec::all(&epoch.config).map(|s| s.id).collect();
        self.limiters.retain(|id, _| keep.contains(id));
    }

    /// Takes back given-back tokens and answers the asks of `shard` (queued for
    /// [`Quota::take_grants`]). Asks for an unknown limiter (changed by a reload) are dropped.
    pub fn absorb(&mut self, shard: usize, asks: &[LeaseAsk]) {
        let now_ns = self.now_ns();
        let Some(outbox) = self.outbox.get_mut(shard) else {
            return;
        };
        for ask in asks {
            if let Some(limiter) = self.limiters.get_mut(&ask.limiter) {
                outbox.extend(limiter.lease(ask, now_ns));
            }
        }
    }

    pub fn has_grants(&self) -> bool {
        self.outbox.iter().any(|grants| !grants.is_empty())
    }

    /// Enough grants queued to send them without waiting for the end of a burst of asks.
    pub fn many_grants(&self) -> bool {
        self.outbox.iter().map(Vec::len).sum::<usize>() >= MANY_GRANTS
    }

    /// Grants queued since the previous call, one batch per shard that has any.
    pub fn take_grants(&mut self) -> Vec<(usize, Vec<LeaseGrant>)> {
        self.outbox
            .iter_mut()
            .enumerate()
            .filter(|(_, grants)| !grants.is_empty())
            .map(|(shard, grants)| (shard, std::mem::take(grants)))
            .collect()
    }

    /// Grants that could not be sent: their tokens go back to the buckets.
    pub fn undo(&mut self, grants: &[LeaseGrant]) {
        let now_ns = self.now_ns();
        for grant in grants.iter().filter(|g| g.tokens > 0) {
            if let Some(limiter) = self.limiters.get_mut(&grant.limiter) {
                if let Some(bucket) = limiter.buckets.peek_mut(grant.key) {
                    bucket.give_back(now_ns, u64::from(grant.tokens));
                }
            }
        }
    }

    /// Keys with a node bucket, by route name.
    pub fn keys(&self) -> Vec<(String, u64)> {
        self.limiters
            .values()
            .map(|l| (l.spec.route.clone(), l.buckets.len() as u64))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn epoch(limit: &str) -> Arc<Epoch> {
        let toml = format!(
            "[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\n[[routes]]\nname = \"r\"\n\
             respond = {{ status = 200 }}\nrate_limit = {limit}\n"
        );
        let config = ringway_config::parse(&toml, "t.toml").unwrap();
        Arc::new(Epoch::compile(1, config).expect("compiles"))
    }

    fn id(epoch: &Epoch) -> u64 {
        LimiterSpec::all(&epoch.config).next().unwrap().id
    }

    fn ask(limiter: u64, want: u32, give_back: u32) -> LeaseAsk {
        LeaseAsk {
            limiter,
            key: 42,
            want,
            give_back,
        }
    }

    #[test]
    fn grants_a_share_then_batches_then_nothing_with_a_wait() {
        let e = epoch("{ rate = 500, burst = 100 }");
        let mut q = Quota::new(&e, 2);
        let l = id(&e);
        // A small ask still gets the shard's share of the burst.
        q.absorb(0, &[ask(l, 1, 0)]);
        q.absorb(1, &[ask(l, 80, 0)]);
        let grants = q.take_grants();
        assert_eq!(grants[0].1[0].tokens, 50);
        assert_eq!(grants[1].1[0].tokens, 50, "what is left, not the 80 asked");
        // Empty: no tokens, and the wait for a batch of 5 ms of the rate (3 tokens).
        q.absorb(0, &[ask(l, 10, 0)]);
        let grant = q.take_grants()[0].1[0];
        assert_eq!(grant.tokens, 0);
        assert!(
            grant.wait > Duration::from_millis(4) && grant.wait <= Duration::from_millis(6),
            "{:?}",
            grant.wait
        );
        assert!(q.take_grants().is_empty());
    }

    #[test]
    fn given_back_and_undone_tokens_return_to_the_bucket() {
        let e = epoch("{ rate = 1, per = \"1h\", burst = 10 }");
        let mut q = Quota::new(&e, 1);
        let l = id(&e);
        q.absorb(0, &[ask(l, 10, 0)]);
        let grants = q.take_grants().remove(0).1;
        assert_eq!(grants[0].tokens, 10);
        q.undo(&grants);
        q.absorb(0, &[ask(l, 4, 0)]);
        assert_eq!(
            q.take_grants()[0].1[0].tokens,
            10,
            "the share is the whole burst"
        );
        q.absorb(0, &[ask(l, 0, 3)]);
        assert!(
            q.take_grants().is_empty(),
            "a give-back alone has no answer"
        );
        q.absorb(0, &[ask(l, 1, 0)]);
        assert_eq!(q.take_grants()[0].1[0].tokens, 3);
    }

    #[test]
    fn a_reload_keeps_unchanged_limiters_and_drops_changed_ones() {
        let first = epoch("{ rate = 1, per = \"1h\", burst = 2 }");
        let same = epoch("{ rate = 1, per = \"1h\", burst = 2 }");
        let changed = epoch("{ rate = 1, per = \"1h\", burst = 3 }");
        assert_eq!(id(&first), id(&same));
        assert_ne!(id(&first), id(&changed));
        let mut q = Quota::new(&first, 1);
        q.absorb(0, &[ask(id(&first), 2, 0)]);
        assert_eq!(q.take_grants()[0].1[0].tokens, 2);
        q.add_epoch(&same);
        q.retain_epoch(&same);
        q.absorb(0, &[ask(id(&same), 1, 0)]);
        assert_eq!(
            q.take_grants()[0].1[0].tokens,
            0,
            "the bucket was kept, empty"
        );
        q.add_epoch(&changed);
        q.retain_epoch(&changed);
        q.absorb(0, &[ask(id(&first), 1, 0)]);
        assert!(q.take_grants().is_empty(), "the old limiter is gone");
        q.absorb(0, &[ask(id(&changed), 1, 0)]);
        assert_eq!(q.take_grants()[0].1[0].tokens, 3, "a fresh, full bucket");
        assert_eq!(q.keys(), [("r".to_string(), 1)]);
    }

    #[test]
    fn node_buckets_are_bounded() {
        let e = epoch("{ rate = 5, key = \"client_ip\", max_keys = 10 }");
        let mut q = Quota::new(&e, 2);
        let l = id(&e);
        let asks: Vec<LeaseAsk> = (0..1000)
            .map(|key| LeaseAsk {
                limiter: l,
                key,
                want: 1,
                give_back: 0,
            })
            .collect();
        q.absorb(0, &asks);
        assert_eq!(q.take_grants()[0].1.len(), 1000);
        assert_eq!(q.keys(), [("r".to_string(), 20)]);
    }
}
