//! A shard's per-route and per-upstream state, made on first use and kept by stable name.
//!
//! A config may hold 10,000 routes; most see little traffic and many none. So nothing here is
//! made when an epoch is installed (that stays O(1) on the shard's loop): an epoch resolves a
//! route or an upstream the first time one of its requests needs it, from the state the
//! shard keeps by name (so that statistics, retry budgets, in-flight counts, balancers and
//! breakers carry over a reload that keeps the name), and caches the result for its other
//! requests. Statistics are handed to the control thread at each report, histograms and all,
//! so an idle route holds no histogram. A route's state that no epoch holds and that holds
//! nothing (no statistics, nothing in flight) is dropped at a report, so the state of a
//! removed name goes after the last request that could use it; an upstream's state goes once
//! the current epoch has no upstream of its name (its balancer and breaker must last).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use ahash::AHashMap;
use ringway_config::Upstream;

use crate::metrics::{ConcurrencyStats, TrafficStats};
use crate::policy::concurrency::{ConcurrencyLimit, InFlight};
use crate::policy::rate_limit::RouteLimiter;
use crate::policy::retry::RetryBudget;
use crate::policy::ShardPolicy;
use crate::upstream::{Balancer, HealthTable, UpstreamGuard};
use crate::Epoch;

/// Most resolved routes of old epochs and route states one report frees: about 0.2 ms of a
/// shard's loop.
pub const FREED_PER_REPORT: usize = 1000;

/// A route's state on this shard, across the epochs that have a route of this name.
pub struct RouteState {
    name: String,
    /// Recorded since the previous report (see [`Shard::record_route`](super::Shard)).
    stats: RefCell<TrafficStats>,
    /// On the book's list of routes to report.
    listed: Cell<bool>,
    pub retry_budget: Rc<RetryBudget>,
    pub in_flight: Rc<InFlight>,
}

impl RouteState {
    fn new(name: &str) -> RouteState {
        RouteState {
            name: name.to_owned(),
            stats: RefCell::default(),
            listed: Cell::new(false),
            retry_budget: Rc::default(),
            in_flight: Rc::default(),
        }
    }

    /// Holds nothing that a new state would not: no statistics to report, nothing in flight.
    /// Such a state that no epoch holds is dropped, and made again if its route is used.
    fn is_idle(&self) -> bool {
        !self.listed.get() && self.retry_budget.is_idle() && self.in_flight.count() == 0
    }

    /// The statistics recorded since the previous report, for reading.
    pub fn stats(&self) -> std::cell::Ref<'_, TrafficStats> {
        self.stats.borrow()
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
    /// Routes with statistics recorded since the previous report: a report visits these, not
    /// every route with state.
    recorded: Vec<Rc<RouteState>>,
    upstreams: AHashMap<String, UpstreamEntry>,
    /// The latest active health table from the control thread, for guards made later.
    pub health: Arc<HealthTable>,
}

/// What an epoch resolved so far on this shard, by route and upstream index. The tables are
/// made (zeroed, one pointer per route) by the epoch's first request on the shard, not by
/// the install, and a lookup is an index.
#[derive(Default)]
pub struct Resolved {
    routes: Table<RouteSlot>,
    upstreams: Table<UpstreamSlot>,
}

/// Slots by index, and how many are filled.
struct Table<T> {
    slots: RefCell<Vec<Option<Rc<T>>>>,
    filled: Cell<usize>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            slots: RefCell::new(Vec::new()),
            filled: Cell::new(0),
        }
    }
}

impl<T> Table<T> {
    #[inline]
    fn get(&self, id: usize) -> Option<Rc<T>> {
        self.slots.borrow().get(id).and_then(Clone::clone)
    }

    fn insert(&self, id: usize, len: usize, slot: Rc<T>) {
        let mut slots = self.slots.borrow_mut();
        if slots.len() < len {
            slots.resize(len, None);
        }
        if slots[id].replace(slot).is_none() {
            self.filled.set(self.filled.get() + 1);
        }
    }

    /// Empties at most `budget` slots, from the end; how many.
    fn shed(&self, budget: usize) -> usize {
        let mut slots = self.slots.borrow_mut();
        let mut shed = 0;
        while shed < budget {
            match slots.pop() {
                Some(Some(_)) => shed += 1,
                Some(None) => {}
                None => break,
            }
        }
        if slots.is_empty() {
            *slots = Vec::new();
        }
        self.filled.set(self.filled.get() - shed);
        shed
    }
}

impl Resolved {
    /// Forgets at most `budget` resolved routes and upstreams (of an epoch no request holds
    /// any more); how many it forgot.
    pub fn shed(&self, budget: usize) -> usize {
        let shed = self.routes.shed(budget);
        shed + self.upstreams.shed(budget - shed)
    }

    /// Resolved routes and upstreams.
    pub fn len(&self) -> usize {
        self.routes.filled.get() + self.upstreams.filled.get()
    }

    /// Route `id` of `epoch`, resolved once per epoch.
    pub fn route(
        &self,
        book: &RefCell<Book>,
        policy: &ShardPolicy,
        epoch: &Epoch,
        id: usize,
    ) -> Rc<RouteSlot> {
        if let Some(slot) = self.routes.get(id) {
            return slot;
        }
        let route = &epoch.config.routes[id];
        let state = {
            let mut book = book.borrow_mut();
            match book.routes.get(&route.name) {
                Some(state) => state.clone(),
                None => {
                    let state = Rc::new(RouteState::new(&route.name));
                    book.routes.insert(route.name.clone(), state.clone());
                    state
                }
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
        self.routes
            .insert(id, epoch.config.routes.len(), slot.clone());
        slot
    }

    /// Upstream `id` of `epoch`, resolved once per epoch: the name's state if its config did
    /// not change, else a new balancer and guard carrying over what they can.
    pub fn upstream(&self, book: &RefCell<Book>, epoch: &Epoch, id: usize) -> Rc<UpstreamSlot> {
        if let Some(slot) = self.upstreams.get(id) {
            return slot;
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
        self.upstreams
            .insert(id, epoch.config.upstreams.len(), slot.clone());
        slot
    }
}

impl Book {
    /// Records into `state`'s statistics, listing it for the next report.
    pub fn record_route(&mut self, state: &Rc<RouteState>, f: impl FnOnce(&mut TrafficStats)) {
        if !state.listed.replace(true) {
            self.recorded.push(state.clone());
        }
        f(&mut state.stats.borrow_mut());
    }

    /// Hands over the statistics recorded since the previous report (the shard keeps no
    /// histogram), then drops the state of routes that nothing holds and that hold nothing,
    /// and of upstreams the current epoch lost. Visits the routes recorded since the previous
    /// report, the limited routes of `current` and every state's reference count: no name is
    /// hashed for a route without a limit.
    pub fn take(&mut self, current: &Epoch, free_budget: usize) -> Taken {
        let mut taken = Taken::default();
        for state in self.recorded.drain(..) {
            state.listed.set(false);
            let stats = std::mem::take(&mut *state.stats.borrow_mut());
            if !stats.is_idle() {
                taken.routes.push((state.name.clone(), stats));
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
        for &id in &current.concurrency_limited {
            let route = &current.config.routes[id];
            let (Some(max), Some(state)) = (route.max_in_flight, self.routes.get(&route.name))
            else {
                continue;
            };
            taken.concurrency.push((
                route.name.clone(),
                ConcurrencyStats {
                    rejected: state.in_flight.take_rejected(),
                    in_flight: state.in_flight.count() as u64,
                    max: max.get() as u64,
                },
            ));
        }
        // A route state held only here and holding nothing is the same as a new one. At most
        // `free_budget` go per report, so that a reload after which thousands of routes are
        // unused frees them over a few intervals rather than in one turn of the loop.
        let unused = |_: &String, state: &mut Rc<RouteState>| {
            Rc::strong_count(state) == 1 && state.is_idle()
        };
        for freed in self.routes.extract_if(unused).take(free_budget) {
            drop(freed);
        }
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
