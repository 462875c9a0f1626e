//! What a shard reports about its traffic policies: rate-limit decisions and concurrency-limit
//! refusals per route. Counters are deltas since the previous report; `keys` and `in_flight`
//! are gauges (the value now).

/// One route's rate limiter on one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateLimitStats {
    /// The kind of key: `route`, `client_ip` or `header` (never a key's value).
    pub key: &'static str,
    /// Requests admitted, `borrowed` ones included.
    pub admitted: u64,
    /// Requests refused with 429.
    pub rejected: u64,
    /// Requests admitted without a leased token because the control thread did not answer in
    /// time (paid back from later grants).
    pub borrowed: u64,
    /// Keys the shard holds state for now (a gauge), at most `max_keys`.
    pub keys: u64,
    pub max_keys: u64,
}

/// One route's concurrency limit on one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConcurrencyStats {
    /// Requests refused with 503 at the cap.
    pub rejected: u64,
    /// Requests in flight now (a gauge).
    pub in_flight: u64,
    /// The route's `max_in_flight` (0 once a reload removed it).
    pub max: u64,
}
