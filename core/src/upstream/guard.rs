//! What protects an upstream on one shard: its circuit breaker ([`breaker`](super::breaker))
//! and the health of each of its endpoints: active checks reported by the control thread
//! ([`health`](super::health)) and passive outlier ejection ([`outlier`](super::outlier)).
//!
//! CONTRACT (the forwarding code in `proxy/forward.rs` relies on exactly this API):
//! - [`UpstreamGuard::admit`] before a request (and before each retry) is sent to the
//!   upstream: `false` means fail fast with 503 (breaker open).
//! - [`UpstreamGuard::eligible`] (or [`UpstreamGuard::eligibility`], what the balancer takes)
//!   filters the endpoints the balancer may pick.
//! - [`UpstreamGuard::record`] after every try to an endpoint, with its [`Outcome`].
//!
//! What counts as a failure, for the breaker and for outlier detection: a 5xx response, a
//! connect failure or timeout, a reset or close before the response head, no head within the
//! timeout, a malformed head. Everything else (1xx to 4xx) is a success.
//!
//! Per shard and per upstream, with its state in `Cell`s: the calls above take no lock, touch
//! nothing shared with another shard and allocate nothing. A guard survives a reload that
//! changes neither the upstream's endpoints nor its protection settings; otherwise the new
//! guard takes over each endpoint's state by address, and the breaker's when its settings
//! stayed the same.

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Instant;

use ringway_config::{OutlierDetection, Upstream};

use super::balance::Eligible;
use super::breaker::{Breaker, BreakerState};
use super::health::HealthTable;
use super::outlier::{max_ejected, Ejection, Verdict};

/// How one try to an endpoint ended, as breakers and outlier detection count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response head arrived with this status (any status, 5xx included).
    Response(u16),
    /// The TCP connection could not be established (refused, unreachable).
    ConnectFailed,
    /// Connecting timed out.
    ConnectTimeout,
    /// The connection was reset or closed before a complete response head.
    Reset,
    /// No response head within the request (or per-try) timeout.
    Timeout,
    /// The response head was malformed.
    BadResponse,
}

/// One endpoint's health: active (from the control thread) and passive (ejection).
struct EndpointGuard {
    address: SocketAddr,
    /// False while active health checks find it unhealthy.
    healthy: Cell<bool>,
    ejection: Ejection,
}

/// One upstream's breaker and endpoint health on one shard.
#[derive(Default)]
pub struct UpstreamGuard {
    upstream: String,
    endpoints: Box<[EndpointGuard]>,
    breaker: Option<Breaker>,
    outlier: Option<OutlierDetection>,
    health_checked: bool,
    /// Endpoints active health marks unhealthy now.
    unhealthy: Cell<u32>,
    /// When the latest-ending ejection ends: past it, no endpoint is ejected.
    ejections_end: Cell<Option<Instant>>,
    /// Ejections since the previous report.
    ejections: Cell<u64>,
    /// The generation of the health table applied last.
    health_generation: Cell<u64>,
}

/// What a shard reports about one guard: the breaker's state now, counts since the previous
/// report, and (with outlier detection) which endpoints are ejected now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuardReport {
    /// `None`: the upstream has no breaker.
    pub breaker: Option<BreakerState>,
    /// Times the breaker opened.
    pub opened: u64,
    /// Requests the open breaker failed fast.
    pub rejected: u64,
    /// Endpoints ejected by outlier detection.
    pub ejections: u64,
    /// With outlier detection: every endpoint, and whether it is ejected now.
    pub endpoints: Vec<(SocketAddr, bool)>,
}

impl UpstreamGuard {
    /// The guard of `upstream` for a new epoch. `previous` is the same upstream's guard in the
    /// epoch before (its endpoints' state carries over by address, its breaker's when the
    /// breaker settings did not change); `health` the latest active health table.
    pub fn new(
        upstream: &Upstream,
        previous: Option<&UpstreamGuard>,
        health: &HealthTable,
        now: Instant,
    ) -> UpstreamGuard {
        let health_checked = upstream.health_check.is_some();
        let endpoints: Box<[EndpointGuard]> = upstream
            .endpoints
            .iter()
            .map(|e| {
                let endpoint = EndpointGuard {
                    address: e.address,
                    healthy: Cell::new(
                        !health_checked || !health.is_down(&upstream.name, e.address),
                    ),
                    ejection: Ejection::default(),
                };
                let before = previous.and_then(|p| p.endpoint_at(e.address));
                if let (Some(before), Some(_)) = (before, &upstream.outlier_detection) {
                    endpoint.ejection.carry(&before.ejection);
                }
                endpoint
            })
            .collect();
        let breaker = upstream.circuit_breaker.as_ref().map(|config| {
            let breaker = Breaker::new(config, now);
            if let Some(old) = previous.and_then(|p| p.breaker.as_ref()) {
                if old.config() == config {
                    breaker.carry(old);
                }
            }
            breaker
        });
        let guard = UpstreamGuard {
            upstream: upstream.name.clone(),
            endpoints,
            breaker,
            outlier: upstream.outlier_detection.clone(),
            health_checked,
            unhealthy: Cell::new(0),
            ejections_end: Cell::new(None),
            ejections: Cell::new(0),
            health_generation: Cell::new(health.generation),
        };
        guard.recount(now);
        guard
    }

    /// Whether this guard still fits `upstream` after a reload: same endpoints in the same
    /// order and the same protection settings.
    pub fn fits(&self, upstream: &Upstream) -> bool {
        self.endpoints.len() == upstream.endpoints.len()
            && self
                .endpoints
                .iter()
                .zip(&upstream.endpoints)
                .all(|(g, e)| g.address == e.address)
            && self.breaker.as_ref().map(Breaker::config) == upstream.circuit_breaker.as_ref()
            && self.outlier == upstream.outlier_detection
            && self.health_checked == upstream.health_check.is_some()
    }

    fn endpoint_at(&self, address: SocketAddr) -> Option<&EndpointGuard> {
        self.endpoints.iter().find(|e| e.address == address)
    }

    /// Recomputes the unhealthy count and the end of the ejections (after building or
    /// applying health).
    fn recount(&self, now: Instant) {
        let unhealthy = self.endpoints.iter().filter(|e| !e.healthy.get()).count();
        self.unhealthy.set(unhealthy as u32);
        let end = self
            .endpoints
            .iter()
            .filter_map(|e| e.ejection.ejected_until(now))
            .max();
        self.ejections_end.set(end);
    }

    /// Whether a request may be sent to the upstream now.
    pub fn admit(&self, now: Instant) -> bool {
        self.breaker.as_ref().is_none_or(|b| b.admit(now))
    }

    /// True when every endpoint may be picked now (no unhealthy one, no ejection running).
    pub fn all_eligible(&self, now: Instant) -> bool {
        self.unhealthy.get() == 0 && self.ejections_end.get().is_none_or(|end| now >= end)
    }

    /// Whether endpoint `endpoint` (index in the upstream's `endpoints`) may be picked now.
    pub fn eligible(&self, endpoint: usize, now: Instant) -> bool {
        self.all_eligible(now)
            || self
                .endpoints
                .get(endpoint)
                .is_none_or(|e| e.healthy.get() && !e.ejection.is_ejected(now))
    }

    /// What the balancer takes to skip ineligible endpoints at `now`.
    pub fn eligibility(&self, now: Instant) -> Eligibility<'_> {
        Eligibility { guard: self, now }
    }

    /// Records how a try to `endpoint` ended.
    pub fn record(&self, endpoint: usize, outcome: Outcome, now: Instant) {
        let verdict = Verdict::of(outcome);
        if let Some(breaker) = &self.breaker {
            breaker.record(verdict.failed(), now);
        }
        let (Some(config), Some(e)) = (&self.outlier, self.endpoints.get(endpoint)) else {
            return;
        };
        // Tries that were under way when it was ejected change nothing.
        if e.ejection.is_ejected(now) || !e.ejection.count(config, verdict) {
            return;
        }
        let ejected_now = self
            .endpoints
            .iter()
            .filter(|e| e.ejection.is_ejected(now))
            .count();
        if ejected_now >= max_ejected(config, self.endpoints.len()) {
            return;
        }
        let until = e.ejection.eject(config, now);
        let end = self.ejections_end.get().filter(|&end| end > until);
        self.ejections_end.set(Some(end.unwrap_or(until)));
        self.ejections.set(self.ejections.get() + 1);
        tracing::debug!(upstream = %self.upstream, endpoint = %e.address, ?until, "endpoint ejected");
    }

    /// Applies the active health checks' latest results (a table older than the one applied
    /// is ignored).
    pub fn apply_health(&self, table: &HealthTable, now: Instant) {
        if !self.health_checked || table.generation < self.health_generation.get() {
            return;
        }
        self.health_generation.set(table.generation);
        let down = table.down_of(&self.upstream);
        for e in self.endpoints.iter() {
            e.healthy.set(!down.contains(&e.address));
        }
        self.recount(now);
    }

    /// Whether the upstream has a breaker or outlier detection (what a report shows).
    pub fn is_active(&self) -> bool {
        self.breaker.is_some() || self.outlier.is_some()
    }

    /// The state now and the counts since the previous report (which it resets).
    pub fn report(&self, now: Instant) -> GuardReport {
        let (opened, rejected) = self.breaker.as_ref().map_or((0, 0), Breaker::take_counts);
        GuardReport {
            breaker: self.breaker.as_ref().map(|b| b.state(now)),
            opened,
            rejected,
            ejections: self.ejections.replace(0),
            endpoints: match self.outlier {
                Some(_) => self
                    .endpoints
                    .iter()
                    .map(|e| (e.address, e.ejection.is_ejected(now)))
                    .collect(),
                None => Vec::new(),
            },
        }
    }
}

/// The endpoints of one guard a pick may choose at one instant.
#[derive(Clone, Copy)]
pub struct Eligibility<'a> {
    guard: &'a UpstreamGuard,
    now: Instant,
}

impl Eligible for Eligibility<'_> {
    fn all(&self) -> bool {
        self.guard.all_eligible(self.now)
    }

    fn eligible(&self, endpoint: usize) -> bool {
        self.guard.eligible(endpoint, self.now)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn upstream(endpoints: usize, extra: &str) -> Upstream {
        let endpoints: Vec<String> = (0..endpoints)
            .map(|i| format!("{{ address = \"127.0.0.1:{}\" }}", 9000 + i))
            .collect();
        let toml = format!(
            "[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\n[[upstreams]]\nname = \"u\"\n\
             endpoints = [{}]\n{extra}\n",
            endpoints.join(", ")
        );
        ringway_config::parse(&toml, "t.toml").unwrap().upstreams[0].clone()
    }

    const S: Duration = Duration::from_secs(1);

    fn guard(u: &Upstream, now: Instant) -> UpstreamGuard {
        UpstreamGuard::new(u, None, &HealthTable::default(), now)
    }

    #[test]
    fn without_settings_everything_goes() {
        let u = upstream(2, "");
        let t = Instant::now();
        let g = guard(&u, t);
        for _ in 0..100 {
            g.record(0, Outcome::ConnectFailed, t);
        }
        assert!(g.admit(t) && g.all_eligible(t) && g.eligible(0, t));
        assert!(!g.is_active());
    }

    #[test]
    fn breaker_fails_fast_and_reports() {
        let u = upstream(
            1,
            "circuit_breaker = { consecutive_failures = 2, open_for = \"1s\" }",
        );
        let t = Instant::now();
        let g = guard(&u, t);
        g.record(0, Outcome::Response(503), t);
        g.record(0, Outcome::Response(404), t);
        g.record(0, Outcome::Timeout, t);
        assert!(g.admit(t), "a 404 broke the run");
        g.record(0, Outcome::Reset, t);
        assert!(!g.admit(t));
        let report = g.report(t);
        assert_eq!(report.breaker, Some(BreakerState::Open));
        assert_eq!((report.opened, report.rejected), (1, 1));
        assert!(g.admit(t + S), "a probe after open_for");
    }

    #[test]
    fn outlier_ejects_within_the_share() {
        let u = upstream(
            4,
            "outlier_detection = { consecutive_5xx = 2, base_ejection_time = \"10s\", max_ejection_percent = 25 }",
        );
        let t = Instant::now();
        let g = guard(&u, t);
        g.record(1, Outcome::Response(500), t);
        g.record(1, Outcome::ConnectFailed, t);
        assert!(!g.all_eligible(t));
        assert!(!g.eligible(1, t) && g.eligible(0, t));
        // A second endpoint over the 25% share (one of four) stays in.
        g.record(2, Outcome::Response(502), t);
        g.record(2, Outcome::Response(502), t);
        assert!(g.eligible(2, t));
        let report = g.report(t);
        assert_eq!(report.ejections, 1);
        let ejected: Vec<bool> = report.endpoints.iter().map(|e| e.1).collect();
        assert_eq!(ejected, [false, true, false, false]);
        // Once the first ejection ends, the next failure of endpoint 2 ejects it.
        let later = t + 10 * S;
        assert!(g.all_eligible(later) && g.eligible(1, later));
        g.record(2, Outcome::Response(502), later);
        assert!(!g.eligible(2, later) && g.eligible(1, later));
    }

    #[test]
    fn health_marks_endpoints_down_and_up() {
        let u = upstream(3, "health_check = { path = \"/h\" }");
        let t = Instant::now();
        let g = guard(&u, t);
        assert!(g.all_eligible(t));
        let mut table = HealthTable {
            generation: 1,
            ..HealthTable::default()
        };
        table
            .down
            .insert("u".into(), vec!["127.0.0.1:9001".parse().unwrap()]);
        g.apply_health(&table, t);
        assert!(!g.all_eligible(t));
        assert!(g.eligible(0, t) && !g.eligible(1, t) && g.eligible(2, t));
        // An older table changes nothing; a newer one without it brings it back.
        g.apply_health(&HealthTable::default(), t);
        assert!(!g.eligible(1, t));
        g.apply_health(
            &HealthTable {
                generation: 2,
                ..HealthTable::default()
            },
            t,
        );
        assert!(g.all_eligible(t));
        // A new guard starts from the table it is given.
        let g2 = UpstreamGuard::new(&u, None, &table, t);
        assert!(!g2.eligible(1, t));
    }

    #[test]
    fn a_reload_keeps_the_state_of_endpoints_that_stay() {
        let settings = "outlier_detection = { consecutive_5xx = 1 }\n\
                        circuit_breaker = { consecutive_failures = 3 }";
        let before = upstream(3, settings);
        let t = Instant::now();
        let old = guard(&before, t);
        assert!(old.fits(&before));
        old.record(2, Outcome::Response(500), t);
        old.record(0, Outcome::Response(500), t);
        old.record(0, Outcome::Response(500), t);
        assert!(!old.admit(t), "three failures in a row opened the breaker");
        // Endpoint 9000 leaves; 9002 (ejected) stays, now at index 1.
        let mut after = upstream(3, settings);
        after.endpoints.remove(0);
        assert!(!old.fits(&after));
        let new = UpstreamGuard::new(&after, Some(&old), &HealthTable::default(), t);
        assert!(!new.eligible(1, t), "9002 is still ejected");
        assert!(new.eligible(0, t));
        assert!(!new.admit(t), "the breaker stays open");
    }
}
