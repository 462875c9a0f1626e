//! Upstreams on a shard: endpoint choice and pooled keep-alive connections.

pub mod balance;
pub mod pool;

pub use balance::{Balancer, Pick};
pub use pool::{Pool, UpstreamConn};
