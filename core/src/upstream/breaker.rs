//! One upstream's circuit breaker on one shard.
//!
//! Closed: every request goes through, and each try's outcome is counted (failures in a row,
//! and failures in a sliding window of ten buckets). It opens after `consecutive_failures`
//! failures in a row, or when the window holds at least `min_requests` tries of which
//! `error_percent` or more failed. Open: every request fails fast (503) until the open time
//! has passed. Then half-open: `half_open_probes` requests go through; when they all succeed
//! the breaker closes, the first failure opens it again for twice as long as before (at most
//! `max_open_for`). Probes that never report (the client went away, no endpoint was eligible)
//! are given up after another open time, and new probes go.
//!
//! State is in `Cell`s: per shard, no sharing, no allocation after construction.

use std::cell::Cell;
use std::time::{Duration, Instant};

use ringway_config::CircuitBreaker;

/// The breaker's state as reported in metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    /// The label value in metrics and the key in `ctl stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        /// Probes let through since `since`.
        admitted: u32,
        /// Of them, those that succeeded.
        succeeded: u32,
        since: Instant,
    },
}

/// Buckets of the error-rate window.
const BUCKETS: u64 = 10;

/// Tries and failures during one tenth of the window.
#[derive(Clone, Copy, Default)]
struct Bucket {
    /// Which tenth (counted from the breaker's start) these counts belong to.
    tick: u64,
    tries: u32,
    failures: u32,
}

pub struct Breaker {
    config: CircuitBreaker,
    state: Cell<State>,
    /// Failures in a row while closed.
    consecutive: Cell<u32>,
    /// How long the next opening lasts: `open_for`, doubled by each failed half-open round.
    open_time: Cell<Duration>,
    /// The error-rate window (used only with `error_percent`).
    buckets: [Cell<Bucket>; BUCKETS as usize],
    /// Where the window's buckets count from.
    started: Cell<Instant>,
    bucket_ns: u64,
    /// Times it opened, and requests it refused, since the previous report.
    opened: Cell<u64>,
    rejected: Cell<u64>,
}

impl Breaker {
    pub fn new(config: &CircuitBreaker, now: Instant) -> Breaker {
        let bucket_ns = (config.window.as_nanos() / u128::from(BUCKETS)).max(1);
        Breaker {
            config: config.clone(),
            state: Cell::new(State::Closed),
            consecutive: Cell::new(0),
            open_time: Cell::new(config.open_for),
            buckets: Default::default(),
            started: Cell::new(now),
            bucket_ns: u64::try_from(bucket_ns).unwrap_or(u64::MAX),
            opened: Cell::new(0),
            rejected: Cell::new(0),
        }
    }

    /// The config it was built with.
    pub fn config(&self) -> &CircuitBreaker {
        &self.config
    }

    /// Takes over the state of `from`, a breaker with the same settings (across a reload).
    pub fn carry(&self, from: &Breaker) {
        self.state.set(from.state.get());
        self.consecutive.set(from.consecutive.get());
        self.open_time.set(from.open_time.get());
        self.started.set(from.started.get());
        for (to, from) in self.buckets.iter().zip(&from.buckets) {
            to.set(from.get());
        }
    }

    /// Whether a request may go to the upstream now; a `true` in half-open takes a probe.
    pub fn admit(&self, now: Instant) -> bool {
        match self.state.get() {
            State::Closed => true,
            State::Open { until } if now < until => self.reject(),
            State::Open { .. } => self.start_probing(now),
            State::HalfOpen {
                admitted,
                succeeded,
                since,
            } => {
                if admitted < self.config.half_open_probes {
                    self.state.set(State::HalfOpen {
                        admitted: admitted + 1,
                        succeeded,
                        since,
                    });
                    true
                } else if now >= since + self.open_time.get() {
                    // The probes never reported: try again with fresh ones.
                    self.start_probing(now)
                } else {
                    self.reject()
                }
            }
        }
    }

    fn reject(&self) -> bool {
        self.rejected.set(self.rejected.get() + 1);
        false
    }

    fn start_probing(&self, now: Instant) -> bool {
        self.state.set(State::HalfOpen {
            admitted: 1,
            succeeded: 0,
            since: now,
        });
        true
    }

    /// Counts one try's outcome.
    pub fn record(&self, failed: bool, now: Instant) {
        match self.state.get() {
            State::Closed => {
                let consecutive = if failed {
                    self.consecutive.get() + 1
                } else {
                    0
                };
                self.consecutive.set(consecutive);
                let rate_tripped = self.count_in_window(failed, now);
                let limit = self.config.consecutive_failures;
                if (limit > 0 && consecutive >= limit) || rate_tripped {
                    self.open_time.set(self.config.open_for);
                    self.open(now);
                }
            }
            // Requests admitted before it opened: they change nothing.
            State::Open { .. } => {}
            State::HalfOpen {
                admitted,
                succeeded,
                since,
            } => {
                if failed {
                    let longer = (self.open_time.get() * 2).min(self.config.max_open_for);
                    self.open_time.set(longer);
                    self.open(now);
                } else if succeeded + 1 >= self.config.half_open_probes {
                    self.close();
                } else {
                    self.state.set(State::HalfOpen {
                        admitted,
                        succeeded: succeeded + 1,
                        since,
                    });
                }
            }
        }
    }

    fn open(&self, now: Instant) {
        self.state.set(State::Open {
            until: now + self.open_time.get(),
        });
        self.opened.set(self.opened.get() + 1);
    }

    fn close(&self) {
        self.state.set(State::Closed);
        self.consecutive.set(0);
        self.open_time.set(self.config.open_for);
        for bucket in &self.buckets {
            bucket.set(Bucket::default());
        }
    }

    /// Adds the try to the window; true when the window's failure share trips the breaker.
    fn count_in_window(&self, failed: bool, now: Instant) -> bool {
        let Some(percent) = self.config.error_percent else {
            return false;
        };
        let elapsed = u64::try_from(now.saturating_duration_since(self.started.get()).as_nanos())
            .unwrap_or(u64::MAX);
        let tick = elapsed / self.bucket_ns;
        let cell = &self.buckets[(tick % BUCKETS) as usize];
        let mut bucket = cell.get();
        if bucket.tick != tick {
            bucket = Bucket {
                tick,
                tries: 0,
                failures: 0,
            };
        }
        bucket.tries += 1;
        bucket.failures += u32::from(failed);
        cell.set(bucket);
        // Only a failure can push the share over the threshold.
        if !failed {
            return false;
        }
        let (mut tries, mut failures) = (0u64, 0u64);
        for cell in &self.buckets {
            let b = cell.get();
            if tick - b.tick.min(tick) < BUCKETS && (b.tries > 0) {
                tries += u64::from(b.tries);
                failures += u64::from(b.failures);
            }
        }
        tries >= u64::from(self.config.min_requests) && failures * 100 >= u64::from(percent) * tries
    }

    /// The state as metrics show it: open past its time counts as half-open (the next
    /// request is a probe).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.state.get() {
            State::Closed => BreakerState::Closed,
            State::Open { until } if now < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Times opened and requests refused since the previous call.
    pub fn take_counts(&self) -> (u64, u64) {
        (self.opened.replace(0), self.rejected.replace(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(consecutive: u32, percent: Option<u32>) -> CircuitBreaker {
        CircuitBreaker {
            consecutive_failures: consecutive,
            error_percent: percent,
            window: Duration::from_secs(10),
            min_requests: 10,
            open_for: Duration::from_secs(5),
            max_open_for: Duration::from_secs(12),
            half_open_probes: 2,
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn opens_after_consecutive_failures_and_a_success_resets_the_count() {
        let t0 = Instant::now();
        let b = Breaker::new(&config(3, None), t0);
        for _ in 0..2 {
            b.record(true, t0);
        }
        b.record(false, t0);
        b.record(true, t0);
        b.record(true, t0);
        assert_eq!(b.state(t0), BreakerState::Closed);
        assert!(b.admit(t0));
        b.record(true, t0);
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(!b.admit(t0));
        assert!(!b.admit(t0 + 4 * S));
        assert_eq!(b.take_counts(), (1, 2));
        assert_eq!(b.take_counts(), (0, 0));
    }

    #[test]
    fn half_open_lets_probes_through_and_closes_when_all_succeed() {
        let t0 = Instant::now();
        let b = Breaker::new(&config(1, None), t0);
        b.record(true, t0);
        let t = t0 + 5 * S;
        assert_eq!(b.state(t), BreakerState::HalfOpen);
        assert!(b.admit(t));
        assert!(b.admit(t));
        assert!(!b.admit(t), "only two probes");
        b.record(false, t);
        assert_eq!(b.state(t), BreakerState::HalfOpen);
        assert!(!b.admit(t));
        b.record(false, t);
        assert_eq!(b.state(t), BreakerState::Closed);
        assert!(b.admit(t));
    }

    #[test]
    fn a_failed_probe_reopens_for_longer_up_to_the_cap() {
        let t0 = Instant::now();
        let b = Breaker::new(&config(1, None), t0);
        b.record(true, t0);
        let mut t = t0;
        // Open for 5s, then 10s, then 12s (the cap), then 12s.
        for open in [5, 10, 12, 12] {
            assert!(!b.admit(t + (open - 1) * S), "still open {open}s");
            t += open * S;
            assert!(b.admit(t), "a probe after {open}s");
            b.record(true, t);
            assert_eq!(b.state(t), BreakerState::Open);
        }
        // Success closes and forgets the back-off.
        t += 12 * S;
        assert!(b.admit(t) && b.admit(t));
        b.record(false, t);
        b.record(false, t);
        b.record(true, t);
        assert!(!b.admit(t + 4 * S));
        assert!(b.admit(t + 5 * S), "back to open_for after closing");
    }

    #[test]
    fn probes_that_never_report_are_replaced() {
        let t0 = Instant::now();
        let b = Breaker::new(&config(1, None), t0);
        b.record(true, t0);
        let t = t0 + 5 * S;
        assert!(b.admit(t) && b.admit(t));
        assert!(!b.admit(t + 4 * S));
        assert!(b.admit(t + 5 * S), "fresh probes after another open time");
    }

    #[test]
    fn error_rate_opens_once_min_requests_are_in_the_window() {
        let t0 = Instant::now();
        let b = Breaker::new(&config(0, Some(50)), t0);
        // 4 of 8 failed: half, but under min_requests.
        for i in 0..8 {
            b.record(i % 2 == 0, t0 + i * S / 10);
        }
        assert_eq!(b.state(t0 + S), BreakerState::Closed);
        b.record(false, t0 + S);
        // 5 of 10 failed: trips.
        b.record(true, t0 + S);
        assert_eq!(b.state(t0 + S), BreakerState::Open);
    }

    #[test]
    fn old_tries_leave_the_window() {
        let t0 = Instant::now();
        let b = Breaker::new(&config(0, Some(50)), t0);
        for _ in 0..9 {
            b.record(true, t0);
        }
        // Eleven seconds later the nine failures are out of the window: 1 try, under min.
        b.record(true, t0 + 11 * S);
        assert_eq!(b.state(t0 + 11 * S), BreakerState::Closed);
        // Successes dilute: 3 failures of 10 is under 50%.
        let t = t0 + 12 * S;
        for _ in 0..7 {
            b.record(false, t);
        }
        b.record(true, t);
        b.record(true, t);
        assert_eq!(b.state(t), BreakerState::Closed);
    }
}
