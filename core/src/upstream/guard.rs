//! What protects an upstream on one shard: its circuit breaker and the health of each of its
//! endpoints (active checks reported by the control thread, passive outlier ejection).
//!
//! CONTRACT (the forwarding code in `proxy/forward.rs` relies on exactly this API):
//! - [`UpstreamGuard::admit`] before a request (and before each retry) is sent to the
//!   upstream: `false` means fail fast with 503 (breaker open).
//! - [`UpstreamGuard::eligible`] filters the endpoints the balancer may pick.
//! - [`UpstreamGuard::record`] after every try to an endpoint, with its [`Outcome`].
//!
//! This first version admits everything and records nothing: breakers, health and outlier
//! detection are built on it.

use std::time::Instant;

/// How one try to an endpoint ended, as breakers and outlier detection count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response head arrived with this status (any status, 5xx included).
    Response(u16),
    /// The TCP connection could not be established (refused, unreachable).
    ConnectFailed,
    /// Connecting timed out.
    ConnectTimeout,
    /// The connection was reset or closed before a complete response head.
    Reset,
    /// No response head within the request (or per-try) timeout.
    Timeout,
    /// The response head was malformed.
    BadResponse,
}

/// One upstream's breaker and endpoint health on one shard.
#[derive(Default)]
pub struct UpstreamGuard {}

impl UpstreamGuard {
    /// Whether a request may be sent to the upstream now.
    pub fn admit(&self, _now: Instant) -> bool {
        true
    }

    /// Whether endpoint `endpoint` (index in the upstream's `endpoints`) may be picked now.
    pub fn eligible(&self, _endpoint: usize, _now: Instant) -> bool {
        true
    }

    /// Records how a try to `endpoint` ended.
    pub fn record(&self, _endpoint: usize, _outcome: Outcome, _now: Instant) {}
}
