//! A shard's own state. Single-threaded: `Rc`, `RefCell` and `Cell` only.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use ahash::AHashMap;
use crossbeam_channel::Sender;

pub mod access_log;
mod book;

use crate::link::FromShard;
use crate::metrics::{ListenerStats, ShardReport, TrafficStats};
use crate::policy::ShardPolicy;
use crate::rt::coarse::CoarseTimers;
use crate::rt::signal::Signal;
use crate::upstream::{H2Pool, HealthTable, Pool};
use crate::Epoch;
pub use access_log::AccessLog;
use book::{Book, Resolved, FREED_PER_REPORT};
pub use book::{RouteSlot, RouteState, UpstreamSlot};

/// The epoch as a shard runs it: the shared compiled config, and the routes and upstreams its
/// requests have needed so far on this shard, resolved by index so that a request looks
/// nothing up by name after the first of its route. Made in O(1) when the epoch arrives.
pub struct ShardEpoch {
    pub epoch: Arc<Epoch>,
    resolved: Resolved,
}

impl ShardEpoch {
    fn new(epoch: Arc<Epoch>) -> ShardEpoch {
        ShardEpoch {
            epoch,
            resolved: Resolved::default(),
        }
    }

    /// The index of the listener called `name` in this epoch, if it still exists.
    pub fn listener_index(&self, name: &str) -> Option<usize> {
        self.epoch
            .config
            .listeners
            .iter()
            .position(|l| l.name == name)
    }

    /// Route `id` of this epoch on `shard`: statistics, retry budget and policies.
    pub fn route(&self, shard: &Shard, id: usize) -> Rc<RouteSlot> {
        self.resolved
            .route(&shard.book, &shard.policy, &self.epoch, id)
    }

    /// Upstream `id` of this epoch on `shard`: balancer, guard and statistics.
    pub fn upstream(&self, shard: &Shard, id: usize) -> Rc<UpstreamSlot> {
        self.resolved.upstream(&shard.book, &self.epoch, id)
    }
}

pub struct Shard {
    pub index: usize,
    /// Cloning this `Rc` per request keeps the epoch alive for the request without touching the
    /// `Arc`'s shared counter.
    current: RefCell<Rc<ShardEpoch>>,
    pub pool: RefCell<Pool>,
    /// HTTP/2 connections to upstreams, each shared by the streams in flight on it.
    pub h2pool: H2Pool,
    /// Raised when the shard drains: listeners stop, idle connections close.
    pub draining: Rc<Signal>,
    /// Deadlines of connections waiting for their next request.
    pub timers: Rc<CoarseTimers>,
    /// Open downstream connections on this shard, all listeners together.
    pub open_connections: Rc<Cell<usize>>,
    /// Open downstream connections per listener name.
    listener_open: RefCell<AHashMap<String, Rc<Cell<usize>>>>,
    /// Route and upstream state by name, made on first use.
    book: RefCell<Book>,
    /// Epochs replaced by an install, kept until no request holds them and their resolved
    /// routes have been forgotten a few at a time at reports (see `take_report`).
    retired: RefCell<Vec<Rc<ShardEpoch>>>,
    listener_stats: RefCell<AHashMap<String, ListenerStats>>,
    unrouted: RefCell<TrafficStats>,
    pub events: Sender<FromShard>,
    pub access_log: Option<AccessLog>,
    /// Rate limiters and their leases, across epochs.
    pub policy: ShardPolicy,
    /// Credentials this shard checked lately: basic-auth passwords and verified JWTs.
    pub auth_cache: RefCell<crate::policy::identity::AuthCache>,
    rng: Cell<u64>,
}

impl Shard {
    /// Shard `index` of `shards`.
    pub fn new(
        (index, shards): (usize, usize),
        epoch: Arc<Epoch>,
        events: Sender<FromShard>,
        access_log: Option<AccessLog>,
    ) -> Shard {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ ((index as u64 + 1) << 48)
            ^ u64::from(std::process::id());
        let policy = ShardPolicy::new(shards);
        let first = Rc::new(ShardEpoch::new(epoch));
        let draining = Signal::new();
        let timers = CoarseTimers::new();
        Shard {
            index,
            current: RefCell::new(first),
            pool: RefCell::new(Pool::default()),
            h2pool: H2Pool::new(),
            draining,
            timers,
            open_connections: Rc::default(),
            listener_open: RefCell::new(AHashMap::new()),
            book: RefCell::default(),
            retired: RefCell::default(),
            listener_stats: RefCell::default(),
            unrouted: RefCell::default(),
            events,
            access_log,
            policy,
            auth_cache: RefCell::default(),
            rng: Cell::new(seed | 1),
        }
    }

    pub fn epoch(&self) -> Rc<ShardEpoch> {
        self.current.borrow().clone()
    }

    /// Switches to `epoch` for every request routed from now on: O(1), whatever the size of
    /// the config. The previous epoch's `Arc` goes when its last request ends; the control
    /// thread holds every epoch until then, so the heavy free of a route table happens there.
    pub fn install(&self, epoch: Arc<Epoch>) {
        let next = Rc::new(ShardEpoch::new(epoch));
        let old = std::mem::replace(&mut *self.current.borrow_mut(), next);
        self.retired.borrow_mut().push(old);
    }

    /// Applies the control thread's latest active health table to this shard's guards, and
    /// keeps it for the guards made later.
    pub fn apply_health(&self, table: Arc<HealthTable>) {
        let mut book = self.book.borrow_mut();
        if table.generation < book.health.generation {
            return;
        }
        let now = std::time::Instant::now();
        for (_, guard) in book.guards() {
            guard.apply_health(&table, now);
        }
        book.health = table;
    }

    pub fn is_draining(&self) -> bool {
        self.draining.is_raised()
    }

    /// The open-connection counter of the listener called `name`.
    pub fn listener_open(&self, name: &str) -> Rc<Cell<usize>> {
        self.listener_open
            .borrow_mut()
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    pub fn record_unrouted(&self, f: impl FnOnce(&mut TrafficStats)) {
        f(&mut self.unrouted.borrow_mut());
    }

    pub fn listener_event(&self, name: &str, f: impl FnOnce(&mut ListenerStats)) {
        let mut stats = self.listener_stats.borrow_mut();
        match stats.get_mut(name) {
            Some(l) => f(l),
            None => f(stats.entry(name.to_string()).or_default()),
        }
    }

    /// Everything recorded since the previous report; resets the counters it reports and
    /// hands over the histograms, then drops the state of names the current epoch lost.
    pub fn take_report(&self) -> ShardReport {
        let current = self.epoch();
        // What an old epoch resolved is forgotten (and the states it held freed) over a few
        // reports once no request holds the epoch: `FREED_PER_REPORT` at a time, or half of
        // what waits when more does (reloads faster than that, of configs whose routes all
        // see traffic), so that old epochs never pile up.
        let mut retired = self.retired.borrow_mut();
        let unheld = |old: &Rc<ShardEpoch>| Rc::strong_count(old) == 1;
        let waiting: usize = retired
            .iter()
            .filter(|old| unheld(old))
            .map(|old| old.resolved.len())
            .sum();
        let mut budget = FREED_PER_REPORT.max(waiting / 2);
        retired.retain(|old| {
            if !unheld(old) || budget == 0 {
                return true;
            }
            budget -= old.resolved.shed(budget);
            old.resolved.len() > 0
        });
        drop(retired);
        let mut book = self.book.borrow_mut();
        let taken = book.take(&current.epoch, budget);
        let epoch = &current.epoch;
        self.policy.retain(|route| {
            let &index = epoch.route_ids.get(route)?;
            epoch.limiters[index].as_ref().map(|spec| spec.id)
        });
        let open = self.listener_open.borrow();
        let mut listener_stats = self.listener_stats.borrow_mut();
        for name in open.keys() {
            listener_stats.entry(name.clone()).or_default();
        }
        let listeners = listener_stats
            .iter_mut()
            .map(|(name, l)| {
                let mut report = l.clone();
                report.open = open.get(name).map_or(0, |c| c.get() as u64);
                *l = ListenerStats::default();
                (name.clone(), report)
            })
            .collect();
        let unrouted = std::mem::take(&mut *self.unrouted.borrow_mut());
        let now = std::time::Instant::now();
        let guards = book
            .guards()
            .filter(|(_, g)| g.is_active())
            .map(|(name, g)| (name.to_owned(), g.report(now)))
            .collect();
        let policy = self.policy.report();
        ShardReport {
            shard: self.index,
            epoch: current.epoch.id,
            routes: taken.routes,
            upstreams: taken.upstreams,
            listeners,
            unrouted,
            guards,
            access_log_dropped: self
                .access_log
                .as_ref()
                .map_or(0, AccessLog::take_dropped_lines),
            rate_limits: policy.rate_limits,
            concurrency: taken.concurrency,
        }
    }

    /// Records into a route's statistics (listing the route for the next report).
    pub fn record_route(&self, state: &Rc<RouteState>, f: impl FnOnce(&mut TrafficStats)) {
        self.book.borrow_mut().record_route(state, f);
    }

    /// Routes and upstreams with state on this shard (for tests of what a shard keeps).
    pub fn book_len(&self) -> (usize, usize) {
        self.book.borrow().len()
    }

    /// xorshift64*: fast, per shard, good enough for request ids (not for secrets).
    pub fn next_random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// 32 lower-case hex digits.
    pub fn request_id(&self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut id = [0u8; 32];
        for (half, word) in id
            .chunks_exact_mut(16)
            .zip([self.next_random(), self.next_random()])
        {
            for (i, c) in half.iter_mut().enumerate() {
                *c = HEX[((word >> ((15 - i) * 4)) & 0xf) as usize];
            }
        }
        out.extend_from_slice(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(config: ringway_config::Config) -> Shard {
        let (tx, _rx) = crossbeam_channel::bounded(1);
        Shard::new(
            (0, 1),
            Arc::new(Epoch::compile(1, config).expect("compiles")),
            tx,
            None,
        )
    }

    #[test]
    fn request_ids_are_32_hex_and_differ() {
        let shard = shard(ringway_config::default_config());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        shard.request_id(&mut a);
        shard.request_id(&mut b);
        assert_eq!(a.len(), 32);
        assert!(a
            .iter()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn stats_and_balancers_survive_an_unchanged_reload() {
        let toml = r#"
            [[listeners]]
            name = "l"
            listen = "127.0.0.1:1"
            [[upstreams]]
            name = "u"
            endpoints = [{ address = "127.0.0.1:2", weight = 2 }, { address = "127.0.0.1:3" }]
            [[routes]]
            name = "r"
            upstream = "u"
        "#;
        let config = ringway_config::parse(toml, "t.toml").unwrap();
        let shard = shard(config.clone());
        let first = shard.epoch();
        shard.record_route(&first.route(&shard, 0).state, |s| s.requests = 5);
        let pick = |sep: &ShardEpoch| {
            sep.upstream(&shard, 0)
                .balancer
                .pick(|| 0, || None, crate::upstream::AllEligible)
                .unwrap()
                .endpoint
        };
        assert_eq!(pick(&first), 0);
        shard.install(Arc::new(Epoch::compile(2, config).expect("compiles")));
        let second = shard.epoch();
        assert!(Rc::ptr_eq(
            &first.route(&shard, 0).state,
            &second.route(&shard, 0).state
        ));
        assert!(Rc::ptr_eq(
            &first.upstream(&shard, 0),
            &second.upstream(&shard, 0)
        ));
        // The balancer continues where it was: weights 2:1 give 0, 1, 0 from the start.
        assert_eq!(pick(&second), 1);
        let report = shard.take_report();
        assert_eq!(report.epoch, 2);
        assert_eq!(report.routes.len(), 1);
        assert!(
            shard.take_report().routes.is_empty(),
            "a report resets what it reported"
        );
    }

    #[test]
    fn guards_survive_a_reload_that_keeps_them_and_take_the_latest_health() {
        let toml = |check: &str| {
            format!(
                "[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\n[[upstreams]]\nname = \"u\"\n\
                 endpoints = [{{ address = \"127.0.0.1:2\" }}, {{ address = \"127.0.0.1:3\" }}]\n\
                 circuit_breaker = {{ consecutive_failures = 1 }}\n{check}\n"
            )
        };
        let compile = |id, check: &str| {
            let config = ringway_config::parse(&toml(check), "t.toml").unwrap();
            Arc::new(Epoch::compile(id, config).expect("compiles"))
        };
        let checked = "health_check = { path = \"/h\" }";
        let shard = shard(ringway_config::parse(&toml(checked), "t.toml").unwrap());
        let first = shard.epoch();
        let now = std::time::Instant::now();
        let guard = |sep: &ShardEpoch| sep.upstream(&shard, 0).guard.clone();
        guard(&first).record(0, crate::upstream::Outcome::Reset, now);
        assert!(!guard(&first).admit(now), "the breaker opened");
        let mut table = HealthTable {
            generation: 1,
            ..HealthTable::default()
        };
        table
            .down
            .insert("u".into(), vec!["127.0.0.1:3".parse().unwrap()]);
        shard.apply_health(Arc::new(table));
        assert!(!guard(&first).eligible(1, now));
        // Same settings: the very same guard.
        shard.install(compile(2, checked));
        let second = shard.epoch();
        assert!(Rc::ptr_eq(&guard(&first), &guard(&second)));
        let report = shard.take_report();
        assert_eq!(report.guards.len(), 1);
        assert_eq!(report.guards[0].1.opened, 1);
        // Other settings: a new guard, still with the latest health and the open breaker
        // (the breaker's own settings did not change).
        shard.install(compile(
            3,
            "health_check = { path = \"/other\" }\noutlier_detection = {}",
        ));
        let third = shard.epoch();
        assert!(!Rc::ptr_eq(&guard(&second), &guard(&third)));
        assert!(!guard(&third).eligible(1, now) && guard(&third).eligible(0, now));
        assert!(!guard(&third).admit(now));
    }

    /// `count` routes named `{prefix}{i}` proxied to one upstream.
    fn many_routes(prefix: &str, count: usize) -> ringway_config::Config {
        let mut toml = String::from(
            "[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\n\
             [[upstreams]]\nname = \"u\"\nendpoints = [{ address = \"127.0.0.1:2\" }]\n",
        );
        for i in 0..count {
            toml.push_str(&format!(
                "[[routes]]\nname = \"{prefix}{i}\"\npath_exact = \"/{i}\"\nupstream = \"u\"\n\
                 max_in_flight = 10\nrate_limit = {{ rate = 10 }}\n"
            ));
        }
        ringway_config::parse(&toml, "t.toml").unwrap()
    }

    #[test]
    fn routes_without_traffic_hold_nothing_and_reports_hand_over_histograms() {
        let shard = shard(many_routes("r", 1000));
        assert_eq!(shard.book_len(), (0, 0), "nothing is made before a request");
        let sep = shard.epoch();
        shard.record_route(&sep.route(&shard, 7).state, |stats| {
            stats.requests = 1;
            stats.total_latency.record(250);
        });
        assert_eq!(shard.book_len(), (1, 0));
        let report = shard.take_report();
        assert_eq!(report.routes.len(), 1);
        assert_eq!(report.routes[0].0, "r7");
        assert_eq!(report.routes[0].1.total_latency.len(), 1);
        let slot = sep.route(&shard, 7);
        assert_eq!(slot.state.stats().heap_bytes(), 0, "handed over");
        assert_eq!(report.concurrency.len(), 1);
        assert_eq!(report.rate_limits.len(), 1, "one limiter made, not 1000");
    }

    #[test]
    fn an_install_makes_nothing_and_state_of_lost_names_is_freed_once_unused() {
        let shard = shard(many_routes("a", 100));
        let old = shard.epoch();
        for id in 0..10 {
            old.route(&shard, id);
            old.upstream(&shard, 0);
        }
        assert_eq!(shard.book_len(), (10, 1));
        // Every route renamed: the install itself makes and frees nothing.
        shard.install(Arc::new(
            Epoch::compile(2, many_routes("b", 100)).expect("compiles"),
        ));
        assert_eq!(shard.book_len(), (10, 1));
        // A request of the old epoch still holds it: its routes' state stays.
        let _ = shard.take_report();
        assert_eq!(shard.book_len(), (10, 1));
        drop(old);
        let _ = shard.take_report();
        assert_eq!(shard.book_len(), (0, 1), "the upstream kept its name");
        shard.epoch().route(&shard, 0);
        assert_eq!(shard.book_len(), (1, 1));
    }
}
