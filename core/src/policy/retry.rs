//! When a failed try is sent again: the route's retry policy, the per-shard retry budget and
//! the back-off between tries. Pure decisions; `forward` does the I/O.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringway_config::Retry;

use crate::error::ProxyError;
use crate::http::h1::Method;
use crate::metrics::ErrorCause;

/// RFC 9110 section 9.2.2: a request with one of these methods may be repeated.
pub fn is_idempotent(method: Method) -> bool {
    matches!(
        method,
        Method::Get | Method::Head | Method::Put | Method::Delete | Method::Options | Method::Trace
    )
}

/// What made a try fail, as far as retrying is concerned.
pub enum Failure<'a> {
    /// The try ended with an error before a response head.
    Error(&'a ProxyError),
    /// A response head with this status arrived.
    Status(u16),
}

/// The request's properties that decide whether it may be sent again.
#[derive(Clone, Copy)]
pub struct Replay {
    pub method: Method,
    /// The whole request (head and body) is still at hand to send again.
    pub replayable: bool,
}

/// Whether `policy` retries this failure of this request (retries left, budget and deadline
/// are checked separately).
pub fn retries_failure(policy: &Retry, request: Replay, failure: &Failure<'_>) -> bool {
    let method_ok = policy.non_idempotent || is_idempotent(request.method);
    match failure {
        // Nothing reached the upstream: safe whatever the method.
        Failure::Error(e)
            if matches!(
                e.cause,
                ErrorCause::ConnectFailed | ErrorCause::ConnectTimeout
            ) =>
        {
            policy.on.connect_failure
        }
        // `retryable`: no response byte arrived and the request can be sent whole again.
        Failure::Error(e) if e.cause == ErrorCause::UpstreamClosed => {
            policy.on.reset && e.retryable && method_ok
        }
        Failure::Error(e) if e.cause == ErrorCause::UpstreamTimeout => {
            policy.on.timeout && e.retryable && method_ok
        }
        Failure::Error(_) => false,
        Failure::Status(status) => {
            request.replayable && method_ok && policy.statuses.contains(status)
        }
    }
}

/// Jittered exponential back-off before retry number `retry` (1 for the first): a uniform
/// draw in `[0, min(base * 2^(retry-1), 10 * base)]` ("full jitter"), from `random`.
pub fn backoff(base: Duration, retry: u32, random: u64) -> Duration {
    let cap = base.saturating_mul(10);
    let ceiling = base
        .saturating_mul(1u32 << (retry.saturating_sub(1)).min(16))
        .min(cap);
    let nanos = ceiling.as_nanos() as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(random % (nanos + 1))
}

/// A route's retry budget on one shard: retries in flight may be at most `budget_percent` of
/// the requests in flight on the route, or `min_retries`, whichever is more. Kept across
/// reloads by route name (the counts follow their requests).
#[derive(Default)]
pub struct RetryBudget {
    /// Requests of the route in flight to an upstream on this shard.
    active: Cell<u32>,
    /// Of those, the ones that are retrying.
    retrying: Cell<u32>,
}

impl RetryBudget {
    /// Nothing in flight: the same as a new budget.
    pub fn is_idle(&self) -> bool {
        self.active.get() == 0 && self.retrying.get() == 0
    }

    /// Counts a request as in flight until the guard drops.
    pub fn start(self: &Rc<Self>) -> Active {
        self.active.set(self.active.get() + 1);
        Active {
            budget: self.clone(),
            retrying: false,
        }
    }

    fn allows(&self, policy: &Retry) -> bool {
        let share = u64::from(self.active.get()) * u64::from(policy.budget_percent) / 100;
        u64::from(self.retrying.get()) < share.max(u64::from(policy.min_retries))
    }
}

/// One request in flight on a route; marks itself retrying on its first retry.
pub struct Active {
    budget: Rc<RetryBudget>,
    retrying: bool,
}

impl Active {
    /// Asks the budget for a retry: true when allowed (the request then counts as retrying
    /// until it ends).
    pub fn try_retry(&mut self, policy: &Retry) -> bool {
        if self.retrying {
            return true;
        }
        if !self.budget.allows(policy) {
            return false;
        }
        self.retrying = true;
        self.budget.retrying.set(self.budget.retrying.get() + 1);
        true
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let b = &self.budget;
        b.active.set(b.active.get().saturating_sub(1));
        if self.retrying {
            b.retrying.set(b.retrying.get().saturating_sub(1));
        }
    }
}

/// The deadline of one try: the per-try timeout (else the upstream's request timeout), never
/// past the route's total deadline.
pub fn try_deadline(
    now: Instant,
    per_try: Option<Duration>,
    request_timeout: Duration,
    total: Option<Instant>,
) -> Instant {
    let own = now + per_try.unwrap_or(request_timeout);
    total.map_or(own, |total| own.min(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringway_config::RetryOn;

    fn policy() -> Retry {
        Retry {
            retries: 2,
            on: RetryOn {
                connect_failure: true,
                reset: true,
                timeout: false,
            },
            statuses: vec![503],
            non_idempotent: false,
            per_try_timeout: None,
            backoff: Duration::from_millis(25),
            max_buffered_body: 1024,
            budget_percent: 20,
            min_retries: 1,
        }
    }

    fn error(cause: ErrorCause, retryable: bool) -> Box<ProxyError> {
        let e = ProxyError::new(cause, "test", None);
        if retryable {
            e.retryable()
        } else {
            e
        }
    }

    const GET: Replay = Replay {
        method: Method::Get,
        replayable: true,
    };
    const POST: Replay = Replay {
        method: Method::Post,
        replayable: true,
    };

    #[test]
    fn which_failures_are_retried() {
        let p = policy();
        let refused = error(ErrorCause::ConnectFailed, false);
        let reset = error(ErrorCause::UpstreamClosed, true);
        let reset_after_bytes = error(ErrorCause::UpstreamClosed, false);
        let timeout = error(ErrorCause::UpstreamTimeout, true);
        assert!(retries_failure(&p, GET, &Failure::Error(&refused)));
        assert!(
            retries_failure(&p, POST, &Failure::Error(&refused)),
            "a connect failure sent nothing"
        );
        assert!(retries_failure(&p, GET, &Failure::Error(&reset)));
        assert!(!retries_failure(&p, POST, &Failure::Error(&reset)));
        assert!(!retries_failure(
            &p,
            GET,
            &Failure::Error(&reset_after_bytes)
        ));
        assert!(
            !retries_failure(&p, GET, &Failure::Error(&timeout)),
            "not in `on`"
        );
        assert!(retries_failure(&p, GET, &Failure::Status(503)));
        assert!(!retries_failure(&p, GET, &Failure::Status(502)));
        assert!(!retries_failure(&p, POST, &Failure::Status(503)));
        let streamed = Replay {
            method: Method::Get,
            replayable: false,
        };
        assert!(!retries_failure(&p, streamed, &Failure::Status(503)));
        let mut all = policy();
        all.non_idempotent = true;
        all.on.timeout = true;
        assert!(retries_failure(&all, POST, &Failure::Error(&reset)));
        assert!(retries_failure(&all, POST, &Failure::Status(503)));
        assert!(retries_failure(&all, GET, &Failure::Error(&timeout)));
    }

    #[test]
    fn backoff_is_jittered_exponential_and_capped() {
        let base = Duration::from_millis(10);
        assert_eq!(
            backoff(base, 1, u64::MAX),
            Duration::from_nanos(u64::MAX % 10_000_001)
        );
        for retry in 1..40 {
            for random in [0, 1, 12345, u64::MAX / 3, u64::MAX] {
                let b = backoff(base, retry, random);
                let ceiling = (base * 2u32.pow(retry.min(16) - 1)).min(base * 10);
                assert!(b <= ceiling, "retry {retry}: {b:?} > {ceiling:?}");
            }
        }
        assert_eq!(backoff(Duration::ZERO, 3, 7), Duration::ZERO);
    }

    #[test]
    fn budget_bounds_retries_in_flight() {
        let p = policy(); // 20%, at least 1
        let budget = Rc::new(RetryBudget::default());
        let mut requests: Vec<Active> = (0..10).map(|_| budget.start()).collect();
        // 10 in flight: 20% is 2 retries.
        assert!(requests[0].try_retry(&p));
        assert!(
            requests[0].try_retry(&p),
            "a retrying request keeps its slot"
        );
        assert!(requests[1].try_retry(&p));
        assert!(!requests[2].try_retry(&p));
        drop(requests.remove(0));
        // 9 in flight, 1 retrying: 20% of 9 is 1, so no new retry.
        assert!(!requests[1].try_retry(&p));
        drop(requests);
        assert_eq!((budget.active.get(), budget.retrying.get()), (0, 0));
        // Few requests: min_retries applies.
        let mut one = budget.start();
        assert!(one.try_retry(&p));
    }

    #[test]
    fn try_deadline_is_bounded_by_the_total() {
        let now = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(try_deadline(now, None, s(60), None), now + s(60));
        assert_eq!(try_deadline(now, Some(s(2)), s(60), None), now + s(2));
        assert_eq!(
            try_deadline(now, Some(s(2)), s(60), Some(now + s(1))),
            now + s(1)
        );
    }
}
