//! One route's rate limiter on one shard: leased tokens per key in a bounded LRU map.
//!
//! The request path ([`RouteLimiter::admit`]) takes a token from the key's stock when there is
//! one: a map lookup and a few field updates, no lock, no atomic, no allocation (a new key may
//! allocate until the map is at its bound). When the stock runs low it queues an ask for more
//! (sent by the shard's lease task, see `policy::run_leases`), early enough that the answer is
//! usually back before the stock is gone.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringway_config::{RateLimit, RateLimitKey};

use super::lease::{LeaseAsk, LeaseGrant, Outbox, ASK_TIMEOUT, HORIZON, LEASE_TTL, LEASE_WAIT};
use super::lru::Lru;
use super::{key_seeds, LimiterSpec};
use crate::http::h1::HeaderRef;
use crate::policy::notify::Notify;

/// What a request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    /// 429: no token, and the node's bucket has none to lease for `reset`.
    Limited {
        limit: u32,
        reset: Duration,
    },
}

/// One key's state on this shard.
#[derive(Clone, Debug)]
struct Entry {
    /// Leased tokens not used yet; negative while borrowing because the control thread did not
    /// answer in time (paid back from the next grant).
    stock: i64,
    /// When the tokens of the last grant go back to the node's bucket if still unused.
    expires: Instant,
    /// An ask is in flight since then.
    asked_at: Option<Instant>,
    /// The node's bucket had nothing to lease; until then requests are refused without asking.
    empty_until: Option<Instant>,
    /// Requests (admitted or not) in the current demand window, and when it started.
    window_start: Instant,
    window_requests: u32,
    /// Requests per second over the last complete window.
    demand: f32,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            stock: 0,
            expires: now,
            asked_at: None,
            empty_until: None,
            window_start: now,
            window_requests: 0,
            demand: 0.0,
        }
    }

    fn count_request(&mut self, now: Instant) {
        self.window_requests = self.window_requests.saturating_add(1);
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= HORIZON {
            self.demand = self.window_requests as f32 / elapsed.as_secs_f32();
            self.window_requests = 0;
            self.window_start = now;
        }
    }

    /// Tokens to ask for: the demand of the next [`HORIZON`], at least one, plus any debt.
    fn want(&self, burst: u32) -> u32 {
        let ahead = (self.demand * HORIZON.as_secs_f32()).ceil() as u32;
        let debt = u32::try_from(-self.stock.min(0)).unwrap_or(u32::MAX);
        ahead.clamp(1, burst).saturating_add(debt)
    }

    fn may_ask(&self, now: Instant) -> bool {
        self.asked_at.is_none() && self.empty_until.is_none_or(|until| now >= until)
    }
}

enum Step {
    Done(Verdict),
    /// An ask is in flight: wait for its grant until then.
    Wait(Instant),
}

pub struct RouteLimiter {
    pub spec: LimiterSpec,
    seeds: ahash::RandomState,
    entries: RefCell<Lru<Entry>>,
    outbox: Rc<Outbox>,
    /// Woken by every grant for this limiter.
    granted: Rc<Notify>,
    /// Most tokens a key may borrow on this shard while the control thread does not answer:
    /// its even share of the burst.
    max_debt: i64,
    admitted: Cell<u64>,
    rejected: Cell<u64>,
    borrowed: Cell<u64>,
}

/// Counters since the previous report, and the keys held now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimiterCounts {
    pub admitted: u64,
    pub rejected: u64,
    pub borrowed: u64,
    pub keys: u64,
}

impl RouteLimiter {
    pub fn new(spec: LimiterSpec, outbox: Rc<Outbox>, shards: usize) -> RouteLimiter {
        let burst = i64::from(spec.limit.burst.get());
        let shards = i64::try_from(shards.max(1)).unwrap_or(1);
        RouteLimiter {
            seeds: key_seeds(),
            entries: RefCell::new(Lru::new(spec.limit.max_keys.get())),
            max_debt: (burst + shards - 1) / shards,
            spec,
            outbox,
            granted: Notify::new(),
            admitted: Cell::new(0),
            rejected: Cell::new(0),
            borrowed: Cell::new(0),
        }
    }

    pub fn limit(&self) -> &RateLimit {
        &self.spec.limit
    }

    /// The key of a request: 0 for the whole route, else a hash of the client address or of
    /// the header's value (an absent header hashes as an empty value).
    pub fn key(
        &self,
        peer: IpAddr,
        consumer: Option<&str>,
        src: &[u8],
        headers: &[HeaderRef],
    ) -> u64 {
        match &self.spec.limit.key {
            // By name, the same on every shard and across reloads.
            RateLimitKey::Consumer => self.seeds.hash_one(consumer.unwrap_or("").as_bytes()),
            RateLimitKey::Route => 0,
            RateLimitKey::ClientIp => match peer.to_canonical() {
                IpAddr::V4(ip) => self.seeds.hash_one(ip.octets()),
                IpAddr::V6(ip) => self.seeds.hash_one(ip.octets()),
            },
            RateLimitKey::Header(name) => {
                let value = headers
                    .iter()
                    .find(|h| h.name.get(src).eq_ignore_ascii_case(name.as_bytes()))
                    .map_or(&b""[..], |h| h.value.get(src));
                self.seeds.hash_one(value)
            }
        }
    }

    /// Admits the request of `key` arriving at `now`, or says why not. Waits (at most
    /// [`LEASE_WAIT`]) only when the shard has no token for the key and an ask is in flight.
    pub async fn admit(&self, key: u64, now: Instant) -> Verdict {
        let mut now = now;
        // A wake-up may be another key's grant, or this key's entry may have been evicted and
        // asked again: a few rounds, then decide without waiting.
        for _ in 0..4 {
            match self.step(key, now, true) {
                Step::Done(verdict) => return verdict,
                Step::Wait(until) => {
                    let granted = self.granted.notified();
                    // Boxed: held inline, monoio's timer (aligned to 128 bytes) would make every
                    // request's state machine an over-aligned allocation.
                    let _ = Box::pin(monoio::time::timeout_at(until.into(), granted)).await;
                    now = Instant::now();
                }
            }
        }
        match self.step(key, now, false) {
            Step::Done(verdict) => verdict,
            Step::Wait(_) => unreachable!("a step that may not wait does not"),
        }
    }

    /// The verdict when it needs no wait (the key has tokens on this shard, or the node said
    /// it has none); `None` when [`RouteLimiter::admit`] would wait for a grant. The request
    /// path's fast case, without the future around it.
    pub fn admit_now(&self, key: u64, now: Instant) -> Option<Verdict> {
        match self.step(key, now, true) {
            Step::Done(verdict) => Some(verdict),
            Step::Wait(_) => None,
        }
    }

    fn step(&self, key: u64, now: Instant, may_wait: bool) -> Step {
        let mut entries = self.entries.borrow_mut();
        // An evicted key's leased tokens are lost; it was the least recently used of
        // `max_keys`, and its lease would soon have expired.
        let (e, _evicted) = entries.get_or_insert_with(key, || Entry::new(now));
        e.count_request(now);
        let burst = self.spec.limit.burst.get();
        if e.stock > 0 {
            e.stock -= 1;
            self.admitted.set(self.admitted.get() + 1);
            // Ask again while half of the next horizon's demand is still in stock.
            if e.may_ask(now) && e.stock <= i64::from(e.want(burst) / 2) {
                self.ask(key, e, now);
            }
            return Step::Done(Verdict::Admit);
        }
        if let Some(until) = e.empty_until {
            if now < until {
                return Step::Done(self.limited(until - now));
            }
            e.empty_until = None;
        }
        match e.asked_at {
            Some(at) if now.saturating_duration_since(at) >= ASK_TIMEOUT => {
                self.ask(key, e, now);
            }
            Some(_) => {}
            None => self.ask(key, e, now),
        }
        if let Some(at) = e.asked_at {
            let until = at + LEASE_WAIT;
            if may_wait && now < until {
                return Step::Wait(until);
            }
        }
        // The control thread has not answered in time (it may be busy with a reload): borrow
        // against the next grant, up to this shard's share of the burst, rather than refuse
        // traffic the node may well have quota for.
        if e.stock > -self.max_debt {
            e.stock -= 1;
            self.admitted.set(self.admitted.get() + 1);
            self.borrowed.set(self.borrowed.get() + 1);
            return Step::Done(Verdict::Admit);
        }
        Step::Done(self.limited(LEASE_WAIT))
    }

    fn ask(&self, key: u64, e: &mut Entry, now: Instant) {
        e.asked_at = Some(now);
        self.outbox.push(LeaseAsk {
            limiter: self.spec.id,
            key,
            want: e.want(self.spec.limit.burst.get()),
            give_back: 0,
        });
    }

    fn limited(&self, reset: Duration) -> Verdict {
        self.rejected.set(self.rejected.get() + 1);
        Verdict::Limited {
            limit: self.spec.limit.rate.get(),
            reset,
        }
    }

    /// Applies a grant from the control thread and wakes the requests waiting for one.
    pub fn grant(&self, grant: &LeaseGrant, now: Instant) {
        match self.entries.borrow_mut().peek_mut(grant.key) {
            Some(e) => {
                e.asked_at = None;
                e.stock += i64::from(grant.tokens);
                if grant.tokens > 0 {
                    e.expires = now + LEASE_TTL;
                    e.empty_until = None;
                } else {
                    e.empty_until = Some(now + grant.wait);
                }
            }
            // The key was evicted meanwhile: the tokens go straight back.
            None if grant.tokens > 0 => self.outbox.push(LeaseAsk {
                limiter: self.spec.id,
                key: grant.key,
                want: 0,
                give_back: grant.tokens,
            }),
            None => {}
        }
        self.granted.notify();
    }

    /// Gives back the tokens of expired leases, and forgets asks that were never answered.
    pub fn sweep(&self, now: Instant) {
        for (key, e) in self.entries.borrow_mut().iter_mut() {
            if e.stock > 0 && now >= e.expires {
                self.outbox.push(LeaseAsk {
                    limiter: self.spec.id,
                    key,
                    want: 0,
                    give_back: u32::try_from(e.stock).unwrap_or(u32::MAX),
                });
                e.stock = 0;
            }
            if e.asked_at
                .is_some_and(|at| now.saturating_duration_since(at) >= ASK_TIMEOUT)
            {
                e.asked_at = None;
            }
        }
    }

    /// The counters since the previous call, and the number of keys held now.
    pub fn take_counts(&self) -> LimiterCounts {
        LimiterCounts {
            admitted: self.admitted.replace(0),
            rejected: self.rejected.replace(0),
            borrowed: self.borrowed.replace(0),
            keys: self.entries.borrow().len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::{NonZeroU32, NonZeroUsize};

    use super::*;

    fn limiter(burst: u32, max_keys: usize) -> RouteLimiter {
        let limit = RateLimit {
            rate: NonZeroU32::new(100).unwrap(),
            per: Duration::from_secs(1),
            burst: NonZeroU32::new(burst).unwrap(),
            key: RateLimitKey::Header("x-key".into()),
            max_keys: NonZeroUsize::new(max_keys).unwrap(),
        };
        let spec = LimiterSpec::new("r", &limit);
        RouteLimiter::new(spec, Rc::new(Outbox::default()), 2)
    }

    fn grant(l: &RouteLimiter, key: u64, tokens: u32, wait_ms: u64, now: Instant) {
        let g = LeaseGrant {
            limiter: l.spec.id,
            key,
            tokens,
            wait: Duration::from_millis(wait_ms),
        };
        l.grant(&g, now);
    }

    #[test]
    fn a_new_key_asks_and_waits_then_spends_its_grant() {
        let l = limiter(10, 100);
        let t0 = Instant::now();
        assert!(matches!(l.step(7, t0, true), Step::Wait(_)));
        let asks = l.outbox.take();
        assert_eq!(asks.len(), 1);
        assert_eq!((asks[0].key, asks[0].want, asks[0].give_back), (7, 1, 0));
        grant(&l, 7, 3, 0, t0);
        for _ in 0..3 {
            assert!(matches!(l.step(7, t0, true), Step::Done(Verdict::Admit)));
        }
        // Low stock asked for more along the way: one ask in flight, not one per request.
        assert_eq!(l.outbox.take().len(), 1);
        assert!(matches!(l.step(7, t0, true), Step::Wait(_)));
        grant(&l, 7, 0, 2500, t0);
        match l.step(7, t0, true) {
            Step::Done(Verdict::Limited { limit, reset }) => {
                assert_eq!((limit, reset), (100, Duration::from_millis(2500)));
            }
            _ => panic!("expected 429"),
        }
        // No new ask before the node said it has tokens again.
        assert!(l.outbox.is_empty());
        let counts = l.take_counts();
        assert_eq!((counts.admitted, counts.rejected, counts.keys), (3, 1, 1));
    }

    #[test]
    fn unanswered_asks_borrow_a_bounded_share_then_refuse() {
        // Burst 10 on 2 shards: a key may borrow 5 here.
        let l = limiter(10, 100);
        let t0 = Instant::now();
        assert!(matches!(l.step(1, t0, true), Step::Wait(_)));
        let late = t0 + LEASE_WAIT;
        for _ in 0..5 {
            assert!(matches!(l.step(1, late, true), Step::Done(Verdict::Admit)));
        }
        assert!(matches!(
            l.step(1, late, true),
            Step::Done(Verdict::Limited { .. })
        ));
        assert_eq!(l.take_counts().borrowed, 5);
        // The debt is asked for on top of the demand, and paid from the grant.
        l.outbox.take();
        l.sweep(t0 + ASK_TIMEOUT);
        assert!(matches!(l.step(1, t0 + ASK_TIMEOUT, true), Step::Wait(_)));
        assert!(l.outbox.take()[0].want >= 6);
        grant(&l, 1, 6, 0, t0 + ASK_TIMEOUT);
        assert!(matches!(
            l.step(1, t0 + ASK_TIMEOUT, true),
            Step::Done(Verdict::Admit)
        ));
        assert!(matches!(l.step(1, t0 + ASK_TIMEOUT, false), Step::Done(_)));
    }

    #[test]
    fn expired_leases_go_back() {
        let l = limiter(50, 100);
        let t0 = Instant::now();
        l.step(9, t0, true);
        l.outbox.take();
        grant(&l, 9, 20, 0, t0);
        assert!(matches!(l.step(9, t0, true), Step::Done(Verdict::Admit)));
        l.outbox.take();
        l.sweep(t0 + LEASE_TTL / 2);
        assert!(l.outbox.is_empty(), "not expired yet");
        l.sweep(t0 + LEASE_TTL);
        let back = l.outbox.take();
        assert_eq!((back[0].key, back[0].want, back[0].give_back), (9, 0, 19));
    }

    #[test]
    fn keys_are_bounded_and_a_grant_for_an_evicted_key_goes_back() {
        let l = limiter(10, 8);
        let t0 = Instant::now();
        for key in 0..1000 {
            l.step(key, t0, true);
        }
        assert_eq!(l.take_counts().keys, 8);
        l.outbox.take();
        grant(&l, 3, 4, 0, t0);
        assert_eq!(
            l.outbox.take(),
            [LeaseAsk {
                limiter: l.spec.id,
                key: 3,
                want: 0,
                give_back: 4
            }]
        );
    }

    #[test]
    fn keys_hash_the_client_address_or_the_header() {
        let l = limiter(10, 8);
        let key = |head: &str, peer: &str| {
            let mut headers = Vec::new();
            let limits = crate::http::h1::RequestLimits {
                max_request_line: 8192,
                max_head: 65536,
            };
            crate::http::h1::parse_request(head.as_bytes(), &limits, &mut headers)
                .expect("valid head")
                .expect("complete head");
            l.key(peer.parse().unwrap(), None, head.as_bytes(), &headers)
        };
        let a = key(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Key: abc\r\nx-key: b\r\n\r\n",
            "192.0.2.1",
        );
        assert_eq!(
            a,
            key(
                "GET / HTTP/1.1\r\nx-KEY: abc\r\nHost: h\r\n\r\n",
                "10.0.0.1"
            ),
            "the first field counts, whatever the peer"
        );
        assert_ne!(
            a,
            key("GET / HTTP/1.1\r\nHost: h\r\nX-Key: b\r\n\r\n", "192.0.2.1")
        );
        assert_eq!(
            key("GET / HTTP/1.1\r\nHost: h\r\n\r\n", "192.0.2.1"),
            key("GET / HTTP/1.1\r\nHost: h\r\nX-Key: \r\n\r\n", "192.0.2.2"),
            "absent and empty share a bucket"
        );
    }
}
