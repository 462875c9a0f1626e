//! Upstreams on a shard: endpoint choice, protection (breaker, health) and pooled keep-alive
//! connections.

pub mod balance;
pub mod breaker;
pub mod guard;
pub mod h2pool;
pub mod health;
pub mod outlier;
pub mod pool;

pub use balance::{AllEligible, Balancer, Eligible, Pick};
pub use breaker::BreakerState;
pub use guard::{Eligibility, GuardReport, Outcome, UpstreamGuard};
pub use h2pool::{H2Lease, H2Limits, H2Pool, StreamSlot};
pub use health::HealthTable;
pub use pool::{Pool, PoolKey, UpstreamConn};
