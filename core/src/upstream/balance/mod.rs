//! Choosing an upstream's endpoint for each request, on one shard, by the upstream's `balance`:
//! smooth weighted round robin, weighted random, least request (power of two choices over the
//! requests this shard has in flight) or consistent hashing (Maglev) on a request key.
//!
//! A [`Balancer`] is per shard and per epoch, with its state in `Cell`/`RefCell`; what it keeps
//! across a reload (round robin position, in-flight counts) is carried over by
//! [`Balancer::new`]. The Maglev table is the one exception: immutable, built once per epoch
//! (see [`hash_table`]) and shared by every shard. A pick allocates nothing.

mod key;
mod maglev;
mod smooth;
mod weighted;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use ringway_config::{Balance, Upstream};

pub use key::request_key_hash;
pub use maglev::{hash64, Maglev, TABLE_SIZE};
pub use smooth::SmoothWeighted;
pub use weighted::WeightedRandom;

/// Which endpoints a pick may choose (see `UpstreamGuard::eligibility`).
pub trait Eligible {
    /// True when every endpoint may be picked: the pick then asks nothing per endpoint.
    fn all(&self) -> bool;
    /// Whether endpoint `endpoint` (index in the upstream's `endpoints`) may be picked.
    fn eligible(&self, endpoint: usize) -> bool;
}

/// Every endpoint may be picked (an upstream with nothing that makes one ineligible).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllEligible;

impl Eligible for AllEligible {
    fn all(&self) -> bool {
        true
    }

    fn eligible(&self, _endpoint: usize) -> bool {
        true
    }
}

/// The Maglev table of a `"hash"` upstream (its endpoints by address and weight); `None` for
/// the other policies. Built by `Epoch::compile`, not per shard or per request.
pub fn hash_table(upstream: &Upstream) -> Option<Arc<Maglev>> {
    let Balance::Hash(_) = upstream.balance else {
        return None;
    };
    let ids: Vec<(String, u32)> = upstream
        .endpoints
        .iter()
        .map(|e| (e.address.to_string(), e.weight.get()))
        .collect();
    let endpoints = ids.iter().map(|(id, w)| (id.as_bytes(), *w));
    Some(Arc::new(Maglev::new(endpoints, TABLE_SIZE)))
}

pub struct Balancer {
    policy: Policy,
}

enum Policy {
    RoundRobin(RefCell<SmoothWeighted>),
    Random(WeightedRandom),
    LeastRequest {
        weights: WeightedRandom,
        /// Requests in flight from this shard, per endpoint.
        in_flight: Vec<Rc<Cell<u32>>>,
    },
    Hash {
        table: Arc<Maglev>,
        /// For requests without the key.
        fallback: RefCell<SmoothWeighted>,
    },
}

/// The chosen endpoint, and what counts it as in flight until dropped.
pub struct Pick {
    pub endpoint: usize,
    pub in_flight: Option<InFlight>,
}

/// One request in flight to an endpoint (least request only): counted while this lives, so
/// the count goes down however the exchange ends, errors and cancellation included.
pub struct InFlight(Rc<Cell<u32>>);

impl InFlight {
    fn start(count: &Rc<Cell<u32>>) -> InFlight {
        count.set(count.get() + 1);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl Balancer {
    /// The balancer of `upstream` for a new epoch. `table` is the epoch's [`hash_table`] of
    /// it. `previous` is the same upstream's config and balancer in the epoch before: the
    /// round robin position is kept when neither the endpoints nor the policy changed, and
    /// in-flight counts follow their endpoint's address.
    pub fn new(
        upstream: &Upstream,
        table: Option<&Arc<Maglev>>,
        previous: Option<(&Upstream, &Balancer)>,
    ) -> Balancer {
        let weights = || upstream.endpoints.iter().map(|e| e.weight.get());
        let unchanged = previous
            .filter(|(p, _)| p.endpoints == upstream.endpoints && p.balance == upstream.balance);
        let round_robin = || {
            let kept = unchanged.and_then(|(_, b)| match &b.policy {
                Policy::RoundRobin(rr) | Policy::Hash { fallback: rr, .. } => {
                    Some(rr.borrow().clone())
                }
                _ => None,
            });
            RefCell::new(kept.unwrap_or_else(|| SmoothWeighted::new(weights())))
        };
        let policy = match &upstream.balance {
            Balance::RoundRobin => Policy::RoundRobin(round_robin()),
            Balance::Random => Policy::Random(WeightedRandom::new(weights())),
            Balance::LeastRequest => {
                let old_count = |address| {
                    let (p, b) = previous?;
                    let Policy::LeastRequest { in_flight, .. } = &b.policy else {
                        return None;
                    };
                    let i = p.endpoints.iter().position(|e| e.address == address)?;
                    Some(in_flight[i].clone())
                };
                Policy::LeastRequest {
                    weights: WeightedRandom::new(weights()),
                    in_flight: upstream
                        .endpoints
                        .iter()
                        .map(|e| old_count(e.address).unwrap_or_default())
                        .collect(),
                }
            }
            Balance::Hash(_) => Policy::Hash {
                table: table
                    .cloned()
                    .unwrap_or_else(|| hash_table(upstream).expect("a hash upstream")),
                fallback: round_robin(),
            },
        };
        Balancer { policy }
    }

    /// The endpoint for one request, among those `eligible` allows; `None` when the upstream
    /// has no eligible endpoint. `random` is the shard's generator; `key` gives the hash of
    /// the request's key, asked for only by a `"hash"` upstream (`None`: the request has no
    /// key, round robin decides). With every endpoint eligible, each policy picks exactly as
    /// it would without a guard; otherwise the ineligible endpoints are left out of the draw
    /// (weights of the others kept), and a hashed key whose endpoint is ineligible goes to
    /// the next eligible one in the Maglev table (the keys of eligible endpoints stay put).
    pub fn pick(
        &self,
        mut random: impl FnMut() -> u64,
        key: impl FnOnce() -> Option<u64>,
        eligible: impl Eligible,
    ) -> Option<Pick> {
        let endpoint = |endpoint| Pick {
            endpoint,
            in_flight: None,
        };
        let all = eligible.all();
        let allowed = |i| eligible.eligible(i);
        let round_robin = |rr: &RefCell<SmoothWeighted>| {
            let mut rr = rr.borrow_mut();
            if all {
                rr.pick()
            } else {
                rr.pick_among(allowed)
            }
        };
        match &self.policy {
            Policy::RoundRobin(rr) => round_robin(rr).map(endpoint),
            Policy::Random(weights) => match weights.pick(random())? {
                first if all || allowed(first) => Some(endpoint(first)),
                _ => weights.pick_among(random(), allowed).map(endpoint),
            },
            Policy::LeastRequest { weights, in_flight } => {
                let load = |i: usize| in_flight[i].get();
                let chosen = if all {
                    weights.pick_less_loaded(random, load)?
                } else {
                    weights.pick_less_loaded_among(random, load, allowed)?
                };
                Some(Pick {
                    endpoint: chosen,
                    in_flight: Some(InFlight::start(&in_flight[chosen])),
                })
            }
            Policy::Hash { table, fallback } => match key() {
                Some(hash) if all => table.lookup(hash).map(endpoint),
                Some(hash) => table.lookup_among(hash, allowed).map(endpoint),
                None => round_robin(fallback).map(endpoint),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(balance: &str, endpoints: &[(&str, u32)]) -> Upstream {
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|(a, w)| format!("{{ address = \"{a}\", weight = {w} }}"))
            .collect();
        let toml = format!(
            "[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\n[[upstreams]]\nname = \"u\"\n\
             endpoints = [{}]\n{balance}\n",
            endpoints.join(", ")
        );
        let config = ringway_config::parse(&toml, "t.toml").unwrap();
        config.upstreams[0].clone()
    }

    fn counter() -> impl FnMut() -> u64 {
        let mut n = 0u64;
        move || {
            n = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
            n
        }
    }

    #[test]
    fn least_request_counts_in_flight_until_the_guard_drops() {
        let u = upstream(
            "balance = \"least_request\"",
            &[("127.0.0.1:2", 1), ("127.0.0.1:3", 1)],
        );
        let b = Balancer::new(&u, None, None);
        let mut random = counter();
        let first = b.pick(&mut random, || None, AllEligible).unwrap();
        // The loaded endpoint loses every draw (two endpoints: both are always drawn).
        for _ in 0..10 {
            let next = b.pick(&mut random, || None, AllEligible).unwrap();
            assert_ne!(next.endpoint, first.endpoint);
        }
        drop(first);
        let Policy::LeastRequest { in_flight, .. } = &b.policy else {
            unreachable!()
        };
        assert!(in_flight.iter().all(|c| c.get() == 0));
    }

    #[test]
    fn in_flight_counts_follow_the_address_across_a_reload() {
        let before = upstream(
            "balance = \"least_request\"",
            &[("127.0.0.1:2", 1), ("127.0.0.1:3", 1)],
        );
        let old = Balancer::new(&before, None, None);
        let held = old.pick(counter(), || None, AllEligible).unwrap();
        let held_address = before.endpoints[held.endpoint].address;
        let after = upstream(
            "balance = \"least_request\"",
            &[("127.0.0.1:4", 1), (&held_address.to_string(), 1)],
        );
        let new = Balancer::new(&after, None, Some((&before, &old)));
        let Policy::LeastRequest { in_flight, .. } = &new.policy else {
            unreachable!()
        };
        assert_eq!((in_flight[0].get(), in_flight[1].get()), (0, 1));
        drop(held);
        assert_eq!(in_flight[1].get(), 0);
    }

    #[test]
    fn hash_uses_the_key_and_falls_back_to_round_robin() {
        let u = upstream(
            "balance = \"hash\"\nhash_key = \"header:x-user\"",
            &[("127.0.0.1:2", 1), ("127.0.0.1:3", 1), ("127.0.0.1:4", 1)],
        );
        let table = hash_table(&u).unwrap();
        let b = Balancer::new(&u, Some(&table), None);
        let key = hash64(b"alice", 1);
        let first = b
            .pick(counter(), || Some(key), AllEligible)
            .unwrap()
            .endpoint;
        assert!((0..20).all(|_| b
            .pick(counter(), || Some(key), AllEligible)
            .unwrap()
            .endpoint
            == first));
        let keyless: Vec<usize> = (0..3)
            .map(|_| b.pick(counter(), || None, AllEligible).unwrap().endpoint)
            .collect();
        assert_eq!(keyless, [0, 1, 2]);
    }

    #[test]
    fn round_robin_position_survives_only_an_unchanged_upstream() {
        let u = upstream("", &[("127.0.0.1:2", 1), ("127.0.0.1:3", 1)]);
        let old = Balancer::new(&u, None, None);
        assert_eq!(
            old.pick(counter(), || None, AllEligible).unwrap().endpoint,
            0
        );
        let kept = Balancer::new(&u, None, Some((&u, &old)));
        assert_eq!(
            kept.pick(counter(), || None, AllEligible).unwrap().endpoint,
            1
        );
        let random = upstream(
            "balance = \"random\"",
            &[("127.0.0.1:2", 1), ("127.0.0.1:3", 1)],
        );
        assert!(hash_table(&random).is_none());
        let changed = Balancer::new(&u, None, Some((&random, &old)));
        assert_eq!(
            changed
                .pick(counter(), || None, AllEligible)
                .unwrap()
                .endpoint,
            0
        );
    }

    /// Endpoints allowed by a fixed mask.
    struct Mask(Vec<bool>);

    impl Eligible for &Mask {
        fn all(&self) -> bool {
            self.0.iter().all(|&e| e)
        }

        fn eligible(&self, endpoint: usize) -> bool {
            self.0[endpoint]
        }
    }

    #[test]
    fn every_policy_skips_ineligible_endpoints() {
        let endpoints = [
            ("127.0.0.1:2", 3),
            ("127.0.0.1:3", 1),
            ("127.0.0.1:4", 1),
            ("127.0.0.1:5", 2),
        ];
        for balance in [
            "",
            "balance = \"random\"",
            "balance = \"least_request\"",
            "balance = \"hash\"\nhash_key = \"client_ip\"",
        ] {
            let u = upstream(balance, &endpoints);
            let b = Balancer::new(&u, hash_table(&u).as_ref(), None);
            let mut random = counter();
            let mask = Mask(vec![true, false, true, false]);
            let mut seen = [0; 4];
            for k in 0..400u64 {
                let key = hash64(&k.to_le_bytes(), 3);
                let keyed = b.pick(&mut random, || Some(key), &mask).unwrap().endpoint;
                let keyless = b.pick(&mut random, || None, &mask).unwrap().endpoint;
                seen[keyed] += 1;
                seen[keyless] += 1;
            }
            assert_eq!((seen[1], seen[3]), (0, 0), "{balance}: {seen:?}");
            assert!(seen[0] > 0 && seen[2] > 0, "{balance}: {seen:?}");
            let none = Mask(vec![false; 4]);
            assert!(
                b.pick(&mut random, || Some(9), &none).is_none(),
                "{balance}"
            );
            assert!(b.pick(&mut random, || None, &none).is_none(), "{balance}");
        }
    }

    #[test]
    fn hash_keys_of_eligible_endpoints_stay_put() {
        let endpoints = [
            ("127.0.0.1:2", 1),
            ("127.0.0.1:3", 1),
            ("127.0.0.1:4", 1),
            ("127.0.0.1:5", 1),
        ];
        let u = upstream("balance = \"hash\"\nhash_key = \"client_ip\"", &endpoints);
        let b = Balancer::new(&u, hash_table(&u).as_ref(), None);
        let mask = Mask(vec![true, true, false, true]);
        for k in 0..2000u64 {
            let key = hash64(&k.to_le_bytes(), 5);
            let home = b
                .pick(counter(), || Some(key), AllEligible)
                .unwrap()
                .endpoint;
            let now = b.pick(counter(), || Some(key), &mask).unwrap().endpoint;
            if home != 2 {
                assert_eq!(now, home, "key {k}");
            } else {
                assert_ne!(now, 2);
            }
        }
    }

    #[test]
    fn no_endpoints_no_pick() {
        for balance in [
            "",
            "balance = \"random\"",
            "balance = \"least_request\"",
            "balance = \"hash\"\nhash_key = \"client_ip\"",
        ] {
            let u = upstream(balance, &[]);
            let b = Balancer::new(&u, hash_table(&u).as_ref(), None);
            assert!(
                b.pick(counter(), || Some(1), AllEligible).is_none(),
                "{balance}"
            );
            assert!(
                b.pick(counter(), || None, AllEligible).is_none(),
                "{balance}"
            );
        }
    }
}
