//! Passive outlier detection on one shard: each endpoint's failures in a row, and its
//! ejection.
//!
//! An endpoint whose tries failed `consecutive_5xx` times in a row (5xx responses and errors
//! without a usable response), or `consecutive_gateway_failure` times (502, 503, 504 and those
//! errors), is ejected: the balancer skips it for `base_ejection_time` times the number of
//! ejections in a row, at most `max_ejection_time`. The count of ejections in a row starts
//! over when an endpoint stays uneject for `max_ejection_time` after its last ejection ended.
//! At most `max_ejection_percent` of the upstream's endpoints (rounded down, but at least one
//! when it has two or more) are ejected at once; an endpoint over the share stays in and is
//! ejected at its next failure once there is room. An upstream of one endpoint never ejects
//! it (its breaker is the tool for that).

use std::cell::Cell;
use std::time::Instant;

use ringway_config::OutlierDetection;

use super::guard::Outcome;

/// How an outcome counts for outlier detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// A 5xx other than 502, 503 and 504.
    ServerError,
    /// 502, 503, 504, or no usable response at all (connect failure, reset, timeout, bad
    /// response head).
    GatewayFailure,
}

impl Verdict {
    pub fn of(outcome: Outcome) -> Verdict {
        match outcome {
            Outcome::Response(502..=504) => Verdict::GatewayFailure,
            Outcome::Response(500..=599) => Verdict::ServerError,
            Outcome::Response(_) => Verdict::Success,
            Outcome::ConnectFailed
            | Outcome::ConnectTimeout
            | Outcome::Reset
            | Outcome::Timeout
            | Outcome::BadResponse => Verdict::GatewayFailure,
        }
    }

    pub fn failed(self) -> bool {
        self != Verdict::Success
    }
}

/// One endpoint's outlier state.
#[derive(Default)]
pub struct Ejection {
    consecutive_5xx: Cell<u32>,
    consecutive_gateway: Cell<u32>,
    /// When the current (or the last) ejection ends.
    until: Cell<Option<Instant>>,
    /// Ejections in a row.
    times: Cell<u32>,
}

impl Ejection {
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.until.get().is_some_and(|until| now < until)
    }

    /// When the current ejection ends, if there is one.
    pub fn ejected_until(&self, now: Instant) -> Option<Instant> {
        self.until.get().filter(|&until| now < until)
    }

    /// Counts `verdict`; true when the endpoint reached a threshold and should be ejected.
    pub fn count(&self, config: &OutlierDetection, verdict: Verdict) -> bool {
        let bump = |cell: &Cell<u32>, limit: u32, counts: bool| {
            if counts {
                let n = cell.get() + 1;
                cell.set(n);
                limit > 0 && n >= limit
            } else {
                if cell.get() != 0 {
                    cell.set(0);
                }
                false
            }
        };
        let by_5xx = bump(
            &self.consecutive_5xx,
            config.consecutive_5xx,
            verdict.failed(),
        );
        let by_gateway = bump(
            &self.consecutive_gateway,
            config.consecutive_gateway_failure,
            verdict == Verdict::GatewayFailure,
        );
        by_5xx || by_gateway
    }

    /// Ejects the endpoint from `now`; returns when the ejection ends.
    pub fn eject(&self, config: &OutlierDetection, now: Instant) -> Instant {
        let again = self
            .until
            .get()
            .is_some_and(|last| now < last + config.max_ejection_time);
        let times = if again { self.times.get() + 1 } else { 1 };
        self.times.set(times);
        let time = config
            .base_ejection_time
            .saturating_mul(times)
            .min(config.max_ejection_time);
        let until = now + time;
        self.until.set(Some(until));
        self.consecutive_5xx.set(0);
        self.consecutive_gateway.set(0);
        until
    }

    /// Carries the state of the same endpoint from a guard built for the previous epoch.
    pub fn carry(&self, from: &Ejection) {
        self.consecutive_5xx.set(from.consecutive_5xx.get());
        self.consecutive_gateway.set(from.consecutive_gateway.get());
        self.until.set(from.until.get());
        self.times.set(from.times.get());
    }
}

/// Most endpoints of `endpoints` that may be ejected at once.
pub fn max_ejected(config: &OutlierDetection, endpoints: usize) -> usize {
    if endpoints < 2 || config.max_ejection_percent == 0 {
        return 0;
    }
    (endpoints * config.max_ejection_percent as usize / 100).max(1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config() -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx: 3,
            consecutive_gateway_failure: 0,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(25),
            max_ejection_percent: 50,
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn verdicts() {
        assert_eq!(Verdict::of(Outcome::Response(200)), Verdict::Success);
        assert_eq!(Verdict::of(Outcome::Response(404)), Verdict::Success);
        assert_eq!(Verdict::of(Outcome::Response(500)), Verdict::ServerError);
        assert_eq!(Verdict::of(Outcome::Response(503)), Verdict::GatewayFailure);
        assert_eq!(Verdict::of(Outcome::Reset), Verdict::GatewayFailure);
        assert_eq!(Verdict::of(Outcome::ConnectFailed), Verdict::GatewayFailure);
    }

    #[test]
    fn failures_in_a_row_reach_the_threshold_and_a_success_resets() {
        let c = config();
        let e = Ejection::default();
        assert!(!e.count(&c, Verdict::ServerError));
        assert!(!e.count(&c, Verdict::GatewayFailure));
        assert!(!e.count(&c, Verdict::Success));
        assert!(!e.count(&c, Verdict::ServerError));
        assert!(!e.count(&c, Verdict::ServerError));
        assert!(e.count(&c, Verdict::ServerError));
        let gateway_only = OutlierDetection {
            consecutive_5xx: 0,
            consecutive_gateway_failure: 2,
            ..c
        };
        let e = Ejection::default();
        assert!(!e.count(&gateway_only, Verdict::GatewayFailure));
        assert!(
            !e.count(&gateway_only, Verdict::ServerError),
            "500 breaks the run"
        );
        assert!(!e.count(&gateway_only, Verdict::GatewayFailure));
        assert!(e.count(&gateway_only, Verdict::GatewayFailure));
    }

    #[test]
    fn ejection_time_grows_to_the_cap_and_starts_over_after_a_quiet_spell() {
        let c = config();
        let e = Ejection::default();
        let t0 = Instant::now();
        assert_eq!(e.eject(&c, t0), t0 + 10 * S);
        assert!(e.is_ejected(t0 + 9 * S) && !e.is_ejected(t0 + 10 * S));
        // Ejected again soon after: twice as long, then capped at 25s.
        assert_eq!(e.eject(&c, t0 + 12 * S), t0 + 32 * S);
        assert_eq!(e.eject(&c, t0 + 40 * S), t0 + 65 * S);
        // 25s (max_ejection_time) after the last one ended: the count starts over.
        assert_eq!(e.eject(&c, t0 + 90 * S), t0 + 100 * S);
    }

    #[test]
    fn share_rounds_down_but_allows_one_of_two_or_more() {
        let mut c = config();
        assert_eq!(max_ejected(&c, 1), 0);
        assert_eq!(max_ejected(&c, 2), 1);
        assert_eq!(max_ejected(&c, 5), 2);
        c.max_ejection_percent = 10;
        assert_eq!(max_ejected(&c, 4), 1);
        assert_eq!(max_ejected(&c, 25), 2);
        c.max_ejection_percent = 100;
        assert_eq!(max_ejected(&c, 4), 4);
        c.max_ejection_percent = 0;
        assert_eq!(max_ejected(&c, 4), 0);
    }
}
