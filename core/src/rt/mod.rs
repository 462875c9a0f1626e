//! What every part of a shard's single-threaded runtime shares, and depends on nothing of the
//! gateway: building the monoio runtime on the driver asked for, the coarse timers that bound
//! requests, one-shot signals and the waker slots behind them.

pub mod coarse;
pub(crate) mod runtime;
pub mod signal;
pub(crate) mod wakers;

pub use runtime::DriverKind;
