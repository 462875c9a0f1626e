//! Rate limiting: a token bucket per (route, key) for the whole node, enforced by shards that
//! share nothing.
//!
//! The node's buckets live on the control thread. Shards hold *leases*: tokens taken from a
//! node bucket ahead of need, spent locally with no lock or atomic on the request path. A
//! shard asks for more when a key's stock runs low, sized by that key's recent demand on the
//! shard (see [`lease`]), and gives back what it has not used within [`lease::LEASE_TTL`].
//! Every admitted request spends a token that left the node bucket, so the node admits no more
//! than the bucket lets out (`burst` plus `rate` per `per`), however the load is spread over
//! the shards, and a single busy shard can have the whole rate.
//!
//! The exceptions, both bounded: a request that finds no token on its shard while an ask is in
//! flight waits for the grant at most [`lease::LEASE_WAIT`], and if the control thread has not
//! answered by then the shard *borrows* (admits against the next grant, up to its even share
//! of the burst); and tokens leased to a key that a shard then evicts from its bounded map
//! are lost to the node (under-admission, not over).

pub mod bucket;
pub mod lease;
mod limiter;
pub mod lru;
pub mod response;

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use ringway_config::{Config, RateLimit, Route};

pub use limiter::{LimiterCounts, RouteLimiter, Verdict};

/// A route's limiter as the shards and the control thread both know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimiterSpec {
    /// A hash of the route's name and its `rate_limit` settings: stable across reloads that
    /// change neither, so that such a reload keeps the buckets, and different otherwise, so that
    /// a changed limit starts afresh and no message about the old one is taken for the new.
    pub id: u64,
    pub route: String,
    pub limit: RateLimit,
}

impl LimiterSpec {
    pub fn new(route: &str, limit: &RateLimit) -> LimiterSpec {
        // `DefaultHasher::new` has fixed keys: the same id on every thread of the process.
        let mut hasher = std::hash::DefaultHasher::new();
        route.hash(&mut hasher);
        limit.hash(&mut hasher);
        LimiterSpec {
            id: hasher.finish(),
            route: route.to_string(),
            limit: limit.clone(),
        }
    }

    pub fn of(route: &Route) -> Option<LimiterSpec> {
        route
            .rate_limit
            .as_ref()
            .map(|limit| LimiterSpec::new(&route.name, limit))
    }

    /// The limiters of every rate-limited route of `config`.
    pub fn all(config: &Config) -> impl Iterator<Item = LimiterSpec> + '_ {
        config.routes.iter().filter_map(LimiterSpec::of)
    }
}

/// The seeds request keys are hashed with: random per process (a client cannot aim at another
/// client's bucket), the same on every shard (one key, one node bucket). Each limiter keeps
/// its own copy, so the request path reads nothing shared.
fn key_seeds() -> ahash::RandomState {
    static SEEDS: OnceLock<ahash::RandomState> = OnceLock::new();
    SEEDS.get_or_init(ahash::RandomState::new).clone()
}
