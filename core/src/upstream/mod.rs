//! Upstreams on a shard: endpoint choice, protection (breaker, health) and pooled keep-alive
//! connections.

pub mod balance;
pub mod guard;
pub mod pool;

pub use balance::{Balancer, Pick};
pub use guard::{Outcome, UpstreamGuard};
pub use pool::{Pool, UpstreamConn};
