//! A shard's per-route and per-upstream state, made on first use and kept by stable name.
//!
//! A config may hold 10,000 routes; most see little traffic and many none. So nothing here is
//! made when an epoch is installed (that stays O(1) on the shard's loop): an epoch resolves a
//! route or an upstream the first time one of its requests needs it, from the state the
//! shard keeps by name (so that statistics, retry budgets, in-flight counts, balancers and
//! breakers carry over a reload that keeps the name), and caches the result for its other
//! requests. Statistics are handed to the control thread at each report, histograms and all,
//! so an idle route holds no histogram; the state of a name the current epoch no longer has
//! is dropped at the first report after the last request that could use it.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use ahash::AHashMap;
use ringway_config::Upstream;

use crate::metrics::{ConcurrencyStats, TrafficStats};
use crate::policy::concurrency::{ConcurrencyLimit, InFlight};
use crate::policy::rate_limit::RouteLimiter;
use crate::policy::ShardPolicy;
use crate::proxy::retry::RetryBudget;
use crate::upstream::{Balancer, HealthTable, UpstreamGuard};
use crate::Epoch;

/// A route's state on this shard, across the epochs that have a route of this name.
#[derive(Default)]
pub struct RouteState {
    /// Recorded since the previous report.
    pub stats: RefCell<TrafficStats>,
    pub retry_budget: Rc<RetryBudget>,
    pub in_flight: Rc<InFlight>,
}

impl RouteState {
    /// Holds nothing that a fresh state would not: no statistics to report, nothing in flight.
    fn is_idle(&self) -> bool {
        self.stats.borrow().is_idle() && self.retry_budget.is_idle() && self.in_flight.count() == 0
    }
}

/// A route as one epoch runs it on this shard.
pub struct RouteSlot {
    pub state: Rc<RouteState>,
    /// The epoch's rate limit of the route, with its buckets and leased tokens.
    pub limiter: Option<Rc<RouteLimiter>>,
    /// The epoch's `max_in_flight` of the route, counting in the name's in-flight count.
    pub concurrency: Option<ConcurrencyLimit>,
}

/// An upstream as one epoch runs it on this shard.
pub struct UpstreamSlot {
    pub balancer: Balancer,
    pub guard: Rc<UpstreamGuard>,
    /// Recorded since the previous report; shared by every slot of the name.
    pub stats: Rc<RefCell<TrafficStats>>,
}

/// The latest slot of an upstream name, and the config it was built for.
struct UpstreamEntry {
    config: Upstream,
    slot: Rc<UpstreamSlot>,
}

/// Per-name state of one shard.
#[derive(Default)]
pub struct Book {
    routes: AHashMap<String, Rc<RouteState>>,
    upstreams: AHashMap<String, UpstreamEntry>,
    /// The latest active health table from the control thread, for guards made later.
    pub health: Arc<HealthTable>,
}

/// What an epoch resolved so far on this shard, by route and upstream index.
#[derive(Default)]
pub struct Resolved {
    routes: RefCell<AHashMap<usize, Rc<RouteSlot>>>,
    upstreams: RefCell<AHashMap<usize, Rc<UpstreamSlot>>>,
}

impl Resolved {
    /// Route `id` of `epoch`, resolved once per epoch.
    pub fn route(
        &self,
        book: &RefCell<Book>,
        policy: &ShardPolicy,
        epoch: &Epoch,
        id: usize,
    ) -> Rc<RouteSlot> {
        if let Some(slot) = self.routes.borrow().get(&id) {
            return slot.clone();
        }
        let route = &epoch.config.routes[id];
        let state = {
            let mut book = book.borrow_mut();
            match book.routes.get(&route.name) {
                Some(state) => state.clone(),
                None => book.routes.entry(route.name.clone()).or_default().clone(),
            }
        };
        let slot = Rc::new(RouteSlot {
            limiter: epoch.limiters[id].as_ref().map(|spec| policy.limiter(spec)),
            concurrency: route.max_in_flight.map(|max| ConcurrencyLimit {
                max: max.get(),
                counter: state.in_flight.clone(),
            }),
            state,
        });
        self.routes.borrow_mut().insert(id, slot.clone());
        slot
    }

    /// Upstream `id` of `epoch`, resolved once per epoch: the name's state if its config did
    /// not change, else a new balancer and guard carrying over what they can.
    pub fn upstream(&self, book: &RefCell<Book>, epoch: &Epoch, id: usize) -> Rc<UpstreamSlot> {
        if let Some(slot) = self.upstreams.borrow().get(&id) {
            return slot.clone();
        }
        let config = &epoch.config.upstreams[id];
        let mut book = book.borrow_mut();
        let health = book.health.clone();
        let slot = match book.upstreams.get(&config.name) {
            Some(entry) if entry.config == *config => entry.slot.clone(),
            kept => {
                let previous = kept.map(|e| (&e.config, &e.slot));
                let balancer = Balancer::new(
                    config,
                    epoch.hash_tables[id].as_ref(),
                    previous.map(|(c, s)| (c, &s.balancer)),
                );
                let guard = match previous {
                    Some((_, s)) if s.guard.fits(config) => s.guard.clone(),
                    _ => Rc::new(UpstreamGuard::new(
                        config,
                        previous.map(|(_, s)| &*s.guard),
                        &health,
                        Instant::now(),
                    )),
                };
                let stats = previous.map_or_else(Rc::default, |(_, s)| s.stats.clone());
                let slot = Rc::new(UpstreamSlot {
                    balancer,
                    guard,
                    stats,
                });
                let entry = UpstreamEntry {
                    config: config.clone(),
                    slot: slot.clone(),
                };
                book.upstreams.insert(config.name.clone(), entry);
                slot
            }
        };
        self.upstreams.borrow_mut().insert(id, slot.clone());
        slot
    }
}

impl Book {
    /// Hands over the statistics recorded since the previous report (the shard keeps no
    /// histogram), then drops the state of names that `current` no longer has and that
    /// nothing holds any more.
    pub fn take(&mut self, current: &Epoch) -> Taken {
        let mut taken = Taken::default();
        for (name, state) in &self.routes {
            let mut stats = state.stats.borrow_mut();
            if !stats.is_idle() {
                taken
                    .routes
                    .push((name.clone(), std::mem::take(&mut *stats)));
            }
        }
        for (name, entry) in &self.upstreams {
            let mut stats = entry.slot.stats.borrow_mut();
            if !stats.is_idle() {
                taken
                    .upstreams
                    .push((name.clone(), std::mem::take(&mut *stats)));
            }
        }
        for (name, state) in &self.routes {
            let Some(&id) = current.route_ids.get(name) else {
                continue;
            };
            if let Some(max) = current.config.routes[id].max_in_flight {
                taken.concurrency.push((
                    name.clone(),
                    ConcurrencyStats {
                        rejected: state.in_flight.take_rejected(),
                        in_flight: state.in_flight.count() as u64,
                        max: max.get() as u64,
                    },
                ));
            }
        }
        self.routes.retain(|name, state| {
            current.route_ids.contains_key(name) || Rc::strong_count(state) > 1 || !state.is_idle()
        });
        self.upstreams.retain(|name, entry| {
            current.upstream_ids.contains_key(name) || Rc::strong_count(&entry.slot) > 1
        });
        taken
    }

    /// The guards of the upstreams resolved so far (the latest of each name).
    pub fn guards(&self) -> impl Iterator<Item = (&str, &Rc<UpstreamGuard>)> {
        self.upstreams
            .iter()
            .map(|(name, entry)| (name.as_str(), &entry.slot.guard))
    }

    /// Routes and upstreams with state on this shard.
    pub fn len(&self) -> (usize, usize) {
        (self.routes.len(), self.upstreams.len())
    }
}

/// What [`Book::take`] hands over.
#[derive(Default)]
pub struct Taken {
    pub routes: Vec<(String, TrafficStats)>,
    pub upstreams: Vec<(String, TrafficStats)>,
    pub concurrency: Vec<(String, ConcurrencyStats)>,
}
