//! A shard's own state. Single-threaded: `Rc`, `RefCell` and `Cell` only.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use ahash::AHashMap;
use crossbeam_channel::Sender;

use super::access_log::AccessLog;
use super::coarse::CoarseTimers;
use super::link::FromShard;
use super::signal::Signal;
use crate::metrics::{ListenerStats, ShardReport, TrafficStats};
use crate::policy::{RoutePolicies, ShardPolicy};
use crate::proxy::buffers::DownstreamPool;
use crate::proxy::retry::RetryBudget;
use crate::upstream::{Balancer, HealthTable, Pool, UpstreamGuard};
use crate::Epoch;

pub type StatsCell = Rc<RefCell<TrafficStats>>;

/// The epoch as a shard runs it: the shared compiled config plus this shard's balancer state
/// and statistics cells, resolved by index so a request never looks anything up by name.
pub struct ShardEpoch {
    pub epoch: Arc<Epoch>,
    /// One balancer per upstream, by upstream index.
    pub balancers: Vec<Balancer>,
    /// One breaker and endpoint-health state per upstream, by upstream index; kept across
    /// reloads by upstream name.
    pub guards: Vec<Rc<UpstreamGuard>>,
    /// One retry budget per route, by route index; kept across reloads by route name.
    pub retry_budgets: Vec<Rc<RetryBudget>>,
    pub route_stats: Vec<StatsCell>,
    pub upstream_stats: Vec<StatsCell>,
    /// Rate and concurrency limits, by route index.
    pub policies: RoutePolicies,
}

impl ShardEpoch {
    /// The index of the listener called `name` in this epoch, if it still exists.
    pub fn listener_index(&self, name: &str) -> Option<usize> {
        self.epoch
            .config
            .listeners
            .iter()
            .position(|l| l.name == name)
    }
}

/// Statistics cells by stable name, so that they survive reloads.
#[derive(Default)]
struct StatsBook {
    routes: AHashMap<String, StatsCell>,
    upstreams: AHashMap<String, StatsCell>,
    listeners: AHashMap<String, ListenerStats>,
    /// Guards of the upstreams of the current epoch.
    guards: AHashMap<String, Rc<UpstreamGuard>>,
    /// The latest active health table from the control thread, for guards built later.
    health: Arc<HealthTable>,
    retry_budgets: AHashMap<String, Rc<RetryBudget>>,
    unrouted: TrafficStats,
}

fn cell(map: &mut AHashMap<String, StatsCell>, name: &str) -> StatsCell {
    map.entry(name.to_string()).or_default().clone()
}

pub struct Shard {
    pub index: usize,
    /// Cloning this `Rc` per request keeps the epoch alive for the request without touching the
    /// `Arc`'s shared counter.
    current: RefCell<Rc<ShardEpoch>>,
    pub pool: RefCell<Pool>,
    /// Request states lent to connections while they have a request in progress.
    pub downstreams: DownstreamPool,
    /// Raised when the shard drains: listeners stop, idle connections close.
    pub draining: Rc<Signal>,
    /// Deadlines of connections waiting for their next request.
    pub timers: Rc<CoarseTimers>,
    /// Open downstream connections on this shard, all listeners together.
    pub open_connections: Rc<Cell<usize>>,
    /// Open downstream connections per listener name.
    listener_open: RefCell<AHashMap<String, Rc<Cell<usize>>>>,
    stats: RefCell<StatsBook>,
    pub events: Sender<FromShard>,
    pub access_log: Option<AccessLog>,
    /// Rate-limit leases and in-flight counts, across epochs.
    pub policy: ShardPolicy,
    rng: Cell<u64>,
}

impl Shard {
    pub fn new(
        index: usize,
        epoch: Arc<Epoch>,
        events: Sender<FromShard>,
        access_log: Option<AccessLog>,
    ) -> Shard {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ ((index as u64 + 1) << 48)
            ^ u64::from(std::process::id());
        let mut stats = StatsBook::default();
        // `[runtime]` applies at start only: this is the number of shards running.
        let policy = ShardPolicy::new(super::shard_count(epoch.config.runtime.shards));
        let first = Rc::new(Self::compile(&mut stats, &policy, epoch, None));
        let draining = Signal::new();
        let timers = CoarseTimers::new();
        Shard {
            index,
            current: RefCell::new(first),
            pool: RefCell::new(Pool::default()),
            downstreams: DownstreamPool::new(
                access_log.is_some(),
                draining.clone(),
                timers.clone(),
            ),
            draining,
            timers,
            open_connections: Rc::default(),
            listener_open: RefCell::new(AHashMap::new()),
            stats: RefCell::new(stats),
            events,
            access_log,
            policy,
            rng: Cell::new(seed | 1),
        }
    }

    fn compile(
        stats: &mut StatsBook,
        policy: &ShardPolicy,
        epoch: Arc<Epoch>,
        previous: Option<&ShardEpoch>,
    ) -> ShardEpoch {
        let config = &epoch.config;
        let balancers = config
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| {
                // The same upstream in the epoch before, whose balancer state carries over.
                let previous = previous.and_then(|p| {
                    let upstreams = &p.epoch.config.upstreams;
                    let j = upstreams.iter().position(|o| o.name == u.name)?;
                    Some((&upstreams[j], &p.balancers[j]))
                });
                Balancer::new(u, epoch.hash_tables[i].as_ref(), previous)
            })
            .collect();
        let now = std::time::Instant::now();
        let guards: Vec<Rc<UpstreamGuard>> = config
            .upstreams
            .iter()
            .map(|u| {
                let kept = stats.guards.get(&u.name);
                match kept {
                    Some(guard) if guard.fits(u) => guard.clone(),
                    _ => Rc::new(UpstreamGuard::new(
                        u,
                        kept.map(|g| &**g),
                        &stats.health,
                        now,
                    )),
                }
            })
            .collect();
        stats.guards = config
            .upstreams
            .iter()
            .zip(&guards)
            .map(|(u, g)| (u.name.clone(), g.clone()))
            .collect();
        let retry_budgets = config
            .routes
            .iter()
            .map(|r| {
                stats
                    .retry_budgets
                    .entry(r.name.clone())
                    .or_default()
                    .clone()
            })
            .collect();
        let route_stats = config
            .routes
            .iter()
            .map(|r| cell(&mut stats.routes, &r.name))
            .collect();
        let upstream_stats = config
            .upstreams
            .iter()
            .map(|u| cell(&mut stats.upstreams, &u.name))
            .collect();
        let policies = policy.compile(config);
        ShardEpoch {
            epoch,
            balancers,
            guards,
            retry_budgets,
            route_stats,
            upstream_stats,
            policies,
        }
    }

    pub fn epoch(&self) -> Rc<ShardEpoch> {
        self.current.borrow().clone()
    }

    /// Switches to `epoch` for every request routed from now on.
    pub fn install(&self, epoch: Arc<Epoch>) {
        let previous = self.epoch();
        let next = Self::compile(
            &mut self.stats.borrow_mut(),
            &self.policy,
            epoch,
            Some(&previous),
        );
        *self.current.borrow_mut() = Rc::new(next);
    }

    /// Applies the control thread's latest active health table to this shard's guards, and
    /// keeps it for the guards of later epochs.
    pub fn apply_health(&self, table: Arc<HealthTable>) {
        let mut book = self.stats.borrow_mut();
        if table.generation < book.health.generation {
            return;
        }
        let now = std::time::Instant::now();
        for guard in book.guards.values() {
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
        f(&mut self.stats.borrow_mut().unrouted);
    }

    pub fn listener_event(&self, name: &str, f: impl FnOnce(&mut ListenerStats)) {
        let mut stats = self.stats.borrow_mut();
        match stats.listeners.get_mut(name) {
            Some(l) => f(l),
            None => f(stats.listeners.entry(name.to_string()).or_default()),
        }
    }

    /// Everything recorded since the previous report; resets the counters it reports.
    pub fn take_report(&self) -> ShardReport {
        let mut book = self.stats.borrow_mut();
        let take = |map: &AHashMap<String, StatsCell>| {
            let mut out = Vec::new();
            for (name, cell) in map {
                let mut stats = cell.borrow_mut();
                if !stats.is_idle() {
                    out.push((name.clone(), stats.clone()));
                    stats.reset();
                }
            }
            out
        };
        let routes = take(&book.routes);
        let upstreams = take(&book.upstreams);
        let open = self.listener_open.borrow();
        for name in open.keys() {
            book.listeners.entry(name.clone()).or_default();
        }
        let listeners = book
            .listeners
            .iter_mut()
            .map(|(name, l)| {
                let mut report = l.clone();
                report.open = open.get(name).map_or(0, |c| c.get() as u64);
                l.accepted = 0;
                l.refused = 0;
                (name.clone(), report)
            })
            .collect();
        let unrouted = book.unrouted.clone();
        book.unrouted.reset();
        let now = std::time::Instant::now();
        let guards = book
            .guards
            .iter()
            .filter(|(_, g)| g.is_active())
            .map(|(name, g)| (name.clone(), g.report(now)))
            .collect();
        let policy = self.policy.report();
        ShardReport {
            shard: self.index,
            epoch: self.epoch().epoch.id,
            routes,
            upstreams,
            listeners,
            unrouted,
            guards,
            access_log_dropped: self
                .access_log
                .as_ref()
                .map_or(0, AccessLog::take_dropped_lines),
            rate_limits: policy.rate_limits,
            concurrency: policy.concurrency,
        }
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
        Shard::new(0, Arc::new(Epoch::compile(1, config)), tx, None)
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
        first.route_stats[0].borrow_mut().requests = 5;
        let pick = |sep: &ShardEpoch| {
            sep.balancers[0]
                .pick(|| 0, || None, crate::upstream::AllEligible)
                .unwrap()
                .endpoint
        };
        assert_eq!(pick(&first), 0);
        shard.install(Arc::new(Epoch::compile(2, config)));
        let second = shard.epoch();
        assert!(Rc::ptr_eq(&first.route_stats[0], &second.route_stats[0]));
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
            Arc::new(Epoch::compile(id, config))
        };
        let checked = "health_check = { path = \"/h\" }";
        let shard = shard(ringway_config::parse(&toml(checked), "t.toml").unwrap());
        let first = shard.epoch();
        let now = std::time::Instant::now();
        first.guards[0].record(0, crate::upstream::Outcome::Reset, now);
        assert!(!first.guards[0].admit(now), "the breaker opened");
        let mut table = HealthTable {
            generation: 1,
            ..HealthTable::default()
        };
        table
            .down
            .insert("u".into(), vec!["127.0.0.1:3".parse().unwrap()]);
        shard.apply_health(Arc::new(table));
        assert!(!first.guards[0].eligible(1, now));
        // Same settings: the very same guard.
        shard.install(compile(2, checked));
        let second = shard.epoch();
        assert!(Rc::ptr_eq(&first.guards[0], &second.guards[0]));
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
        assert!(!Rc::ptr_eq(&second.guards[0], &third.guards[0]));
        assert!(!third.guards[0].eligible(1, now) && third.guards[0].eligible(0, now));
        assert!(!third.guards[0].admit(now));
    }
}
