//! ringway-core: the data plane.
//!
//! Threading: one shard per core, each a single-threaded monoio runtime (io_uring, or epoll
//! where io_uring cannot start). Per-shard state (connections, upstream pools, balancers,
//! rate-limit leases, in-flight counts) lives in `Rc`/`RefCell`/`Cell`; shards share only
//! immutable, compiled [`Epoch`]s. Nothing on the request path takes a lock or touches an
//! atomic shared with another shard; a node-wide rate limit is kept by leasing tokens from the
//! control thread ahead of need ([`policy::rate_limit`]).
//!
//! Error policy: input from the network never panics. A malformed request becomes a 4xx and a
//! close, an upstream failure a 502/503/504; both are logged at debug level and counted.
//! `unsafe` lives only in [`sys`].

pub mod epoch;
pub mod error;
pub mod http;
pub mod io;
pub mod link;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod proxy_protocol;
pub mod router;
pub mod rt;
pub mod shard;
pub mod state;
pub mod sys;
pub mod tls;
pub mod upstream;

pub use epoch::Epoch;
pub use shard::{
    start_shards, DriverKind, FromShard, ShardInfo, ShardLink, ShardSet, Sinks, StartError, ToShard,
};
