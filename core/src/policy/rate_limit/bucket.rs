//! An exact token bucket: `rate` tokens every `per`, at most `burst` held.
//!
//! The level is kept in integer units of `1 / per_ns` token, so refilling `elapsed_ns * rate`
//! is exact: no float drift, however often or rarely the bucket is looked at. Time is a count
//! of nanoseconds from an origin the owner picks (a monotonic clock), which keeps the bucket
//! free of `Instant` and easy to test. The node's buckets live on the control thread
//! (`ringway-control`'s quota), which leases their tokens to shards.

use std::num::NonZeroU32;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Tokens added per `per_ns`.
    rate: u64,
    per_ns: u64,
    /// `burst * per_ns`.
    capacity: u128,
    /// Tokens held, times `per_ns`.
    level: u128,
    /// When `level` was last brought up to date.
    at_ns: u64,
}

impl TokenBucket {
    /// A full bucket at `now_ns`.
    pub fn full(rate: NonZeroU32, per: Duration, burst: NonZeroU32, now_ns: u64) -> TokenBucket {
        // Validation bounds `per` to a year (3.2e16 ns), well inside u64.
        let per_ns = u64::try_from(per.as_nanos()).unwrap_or(u64::MAX).max(1);
        let capacity = u128::from(burst.get()) * u128::from(per_ns);
        TokenBucket {
            rate: u64::from(rate.get()),
            per_ns,
            capacity,
            level: capacity,
            at_ns: now_ns,
        }
    }

    fn refill(&mut self, now_ns: u64) {
        if now_ns > self.at_ns {
            let added = u128::from(now_ns - self.at_ns) * u128::from(self.rate);
            self.level = self.capacity.min(self.level.saturating_add(added));
            self.at_ns = now_ns;
        }
    }

    /// Whole tokens held at `now_ns`.
    pub fn available(&mut self, now_ns: u64) -> u64 {
        self.refill(now_ns);
        (self.level / u128::from(self.per_ns)) as u64
    }

    /// Most tokens the bucket holds.
    pub fn burst(&self) -> u64 {
        (self.capacity / u128::from(self.per_ns)) as u64
    }

    /// Takes up to `n` whole tokens; how many were taken.
    pub fn take_up_to(&mut self, now_ns: u64, n: u64) -> u64 {
        let taken = self.available(now_ns).min(n);
        self.level -= u128::from(taken) * u128::from(self.per_ns);
        taken
    }

    /// Puts back `n` tokens taken earlier and not used; the bucket still holds at most `burst`.
    pub fn give_back(&mut self, now_ns: u64, n: u64) {
        self.refill(now_ns);
        let back = u128::from(n) * u128::from(self.per_ns);
        self.level = self.capacity.min(self.level.saturating_add(back));
    }

    /// How long until the bucket holds `n` tokens (`n` capped at `burst`); zero when it does.
    pub fn time_until(&mut self, now_ns: u64, n: u64) -> Duration {
        self.refill(now_ns);
        let need = u128::from(n) * u128::from(self.per_ns);
        let need = need.min(self.capacity);
        if self.level >= need {
            return Duration::ZERO;
        }
        let ns = (need - self.level).div_ceil(u128::from(self.rate));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn bucket(rate: u32, per_ms: u64, burst: u32) -> TokenBucket {
        TokenBucket::full(
            NonZeroU32::new(rate).unwrap(),
            Duration::from_millis(per_ms),
            NonZeroU32::new(burst).unwrap(),
            0,
        )
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn starts_full_and_refills_at_the_rate() {
        let mut b = bucket(500, 1000, 100);
        assert_eq!(b.take_up_to(0, 1000), 100);
        assert_eq!(b.available(0), 0);
        assert_eq!(b.available(10 * MS), 5);
        assert_eq!(b.available(1000 * MS), 100, "capped at burst");
        assert_eq!(b.burst(), 100);
    }

    #[test]
    fn fractions_accumulate_exactly() {
        // 1 token per 3 ms, looked at every millisecond.
        let mut b = bucket(1, 3, 1);
        assert_eq!(b.take_up_to(0, 1), 1);
        let mut got = 0;
        for ms in 1..=3000 {
            got += b.take_up_to(ms * MS, 1);
        }
        assert_eq!(got, 1000);
    }

    #[test]
    fn time_until_tokens() {
        let mut b = bucket(500, 1000, 100);
        b.take_up_to(0, 100);
        assert_eq!(b.time_until(0, 5), Duration::from_millis(10));
        assert_eq!(
            b.time_until(0, 1000),
            Duration::from_millis(200),
            "capped at burst"
        );
        assert_eq!(b.time_until(10 * MS, 5), Duration::ZERO);
    }

    #[test]
    fn give_back_stays_within_burst() {
        let mut b = bucket(10, 1000, 10);
        assert_eq!(b.take_up_to(0, 4), 4);
        b.give_back(0, 3);
        assert_eq!(b.available(0), 9);
        b.give_back(0, 50);
        assert_eq!(b.available(0), 10);
    }

    proptest! {
        /// Whatever is asked when, the bucket never hands out more than `burst` plus what
        /// `rate` added over the elapsed time.
        #[test]
        fn never_more_than_burst_plus_refill(
            rate in 1u32..100_000,
            per_ms in 1u64..60_000,
            burst in 1u32..10_000,
            steps in proptest::collection::vec((0u64..2_000 * MS, 0u64..20_000), 1..200),
        ) {
            let mut b = bucket(rate, per_ms, burst);
            let (mut now, mut taken) = (0u64, 0u64);
            for (dt, n) in steps {
                now += dt;
                taken += b.take_up_to(now, n);
                let refill = u128::from(now) * u128::from(rate) / u128::from(per_ms * MS);
                prop_assert!(u128::from(taken) <= u128::from(burst) + refill);
            }
        }

        /// A taker that takes everything, often enough that the bucket never overflows, gets
        /// exactly `burst` plus the whole tokens `rate` added: nothing is lost to rounding.
        #[test]
        fn a_greedy_taker_gets_every_token(
            rate in 1u32..100_000,
            per_ms in 1u64..60_000,
            burst in 2u32..10_000,
            gaps in proptest::collection::vec(0u64..1_000_000, 1..200),
        ) {
            let mut b = bucket(rate, per_ms, burst);
            let per_ns = per_ms * MS;
            // Longest gap that cannot overflow: (burst - 1) tokens' worth of refill.
            let max_gap = u64::try_from(
                u128::from(burst - 1) * u128::from(per_ns) / u128::from(rate),
            ).unwrap_or(u64::MAX).max(1);
            let (mut now, mut taken) = (0u64, b.take_up_to(0, u64::MAX));
            for gap in gaps {
                now += gap % max_gap;
                taken += b.take_up_to(now, u64::MAX);
            }
            let want = u128::from(burst) + u128::from(now) * u128::from(rate) / u128::from(per_ns);
            prop_assert_eq!(u128::from(taken), want);
        }

        /// After `time_until(n)` has passed, `n` tokens (at most `burst`) are there.
        #[test]
        fn time_until_is_enough(
            rate in 1u32..100_000,
            per_ms in 1u64..60_000,
            burst in 1u32..10_000,
            drained in 0u64..10_000,
            n in 1u64..20_000,
        ) {
            let mut b = bucket(rate, per_ms, burst);
            b.take_up_to(0, drained);
            let wait = b.time_until(0, n);
            let at = u64::try_from(wait.as_nanos()).unwrap();
            let mut early = b.clone();
            prop_assert!(b.available(at) >= n.min(u64::from(burst)));
            if at > 0 {
                prop_assert!(early.available(at - 1) < n.min(u64::from(burst)));
            }
        }
    }
}
