//! Following endpoint host names while a config runs: each upstream's `resolve_interval`.
//!
//! Thread: one ("ringway-resolve") for every name, because a lookup blocks (`getaddrinfo`,
//! or a UDP query waiting for its answer) and must never run on a shard or hold up the
//! control loop. It keeps one schedule of the names the running config writes (each distinct
//! name once, at the shortest interval of the upstreams that use it), looks up one name at
//! a time when it is due, and sends what it found to the control loop. A config of 10,000
//! upstreams is one thread and one heap of names, not a thread or a timer per endpoint.
//!
//! The control loop owns [`Names`] (no locks): it keeps each name's latest addresses and
//! error (for `ringway ctl status`), and when an endpoint's name no longer has the address
//! the endpoint uses, [`Names::patch`] gives the config to run instead, which the loop
//! compiles and sends to the shards as a new epoch, the way a reload does: in-flight requests
//! finish on the old one, and per-endpoint state (health, ejection, pools, keyed by address)
//! carries over for the endpoints that did not move. A failed lookup changes nothing: the
//! endpoints keep their last good addresses, and a warning is logged, at most once a minute
//! per name and [`MAX_WARNINGS`] a minute in all, so a dead DNS server does not flood the log.
//!
//! Endpoints written as IP addresses are never looked up; names are looked up afresh by
//! every reload (in validation, as at start).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use ringway_config::resolve::{choose, lookup};
use ringway_config::{Config, Resolver};
use serde_json::{json, Value};

/// How long a name that keeps failing waits before its failure is logged again.
const REPEAT_WARNING: Duration = Duration::from_secs(60);
/// Most lookup warnings logged a minute, every name together; the rest are counted and the
/// count is logged with the next warning.
const MAX_WARNINGS: u32 = 20;
/// Most names `ringway ctl status` lists (failing ones first).
const MAX_LISTED: usize = 100;

/// From the control loop to the lookup thread: the names to follow from now on.
struct Watch {
    generation: u64,
    resolver: Resolver,
    /// Each distinct name and its interval.
    names: Vec<(String, Duration)>,
}

/// What one lookup found, from the lookup thread to the control loop.
pub struct Found {
    /// The watch it was made for (a lookup for a replaced watch is ignored).
    generation: u64,
    host: String,
    result: Result<Vec<IpAddr>, String>,
}

/// One followed name, as the control loop knows it.
struct Name {
    /// What the latest good lookup found (the load's lookup before the first).
    addresses: Vec<IpAddr>,
    /// The latest lookup failed with this.
    error: Option<String>,
    /// When it started failing (`None`: the latest lookup succeeded).
    failing_since: Option<Instant>,
    /// When its failure was last logged.
    warned: Option<Instant>,
    /// When it was last looked up (`None`: only at load).
    checked: Option<SystemTime>,
    lookups: u64,
    failures: u64,
    /// A lookup found addresses that an endpoint may have to move to.
    dirty: bool,
}

/// The control loop's side: the names of the running config and their latest lookups.
pub struct Names {
    /// To the lookup thread; dropping it ends the thread.
    watch: Sender<Watch>,
    found: Receiver<Found>,
    generation: u64,
    resolver: Resolver,
    names: BTreeMap<String, Name>,
    /// The endpoints written with each followed name: (upstream index, endpoint index) in the
    /// running config.
    endpoints: HashMap<String, Vec<(usize, usize)>>,
    warnings: WarningLimit,
}

impl Names {
    /// Starts the lookup thread and follows the names of `config`.
    pub fn new(config: &Config) -> Names {
        let (watch, watches) = crossbeam_channel::unbounded();
        let (found_tx, found) = crossbeam_channel::unbounded();
        let started = std::thread::Builder::new()
            .name("ringway-resolve".into())
            .spawn(move || run(watches, found_tx));
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start the name lookup thread: endpoint names are looked up only at load");
        }
        let mut names = Names {
            watch,
            found,
            generation: 0,
            resolver: config.resolver.clone(),
            names: BTreeMap::new(),
            endpoints: HashMap::new(),
            warnings: WarningLimit::default(),
        };
        names.follow(config);
        names
    }

    /// Where lookups arrive; hand each to [`Names::absorb`].
    pub fn found(&self) -> Receiver<Found> {
        self.found.clone()
    }

    /// Follows the names of `config`, which runs now (after start or a reload, whose
    /// validation has just looked every name up): each is next looked up one interval from
    /// now. What is known of a name that stays is kept.
    pub fn follow(&mut self, config: &Config) {
        self.generation += 1;
        self.resolver = config.resolver.clone();
        self.endpoints.clear();
        let mut intervals: HashMap<&str, Duration> = HashMap::new();
        let mut addresses: HashMap<&str, Vec<IpAddr>> = HashMap::new();
        for (u, upstream) in config.upstreams.iter().enumerate() {
            let Some(interval) = upstream.resolve_interval else {
                continue;
            };
            for (e, endpoint) in upstream.endpoints.iter().enumerate() {
                let Some(host) = endpoint.host.as_deref() else {
                    continue;
                };
                let shortest = intervals.entry(host).or_insert(interval);
                *shortest = (*shortest).min(interval);
                let known = addresses.entry(host).or_default();
                if !known.contains(&endpoint.address.ip()) {
                    known.push(endpoint.address.ip());
                }
                match self.endpoints.get_mut(host) {
                    Some(list) => list.push((u, e)),
                    None => {
                        self.endpoints.insert(host.to_owned(), vec![(u, e)]);
                    }
                }
            }
        }
        self.names
            .retain(|host, _| intervals.contains_key(host.as_str()));
        for (host, found) in addresses {
            let name = self.names.entry(host.to_owned()).or_insert_with(|| Name {
                addresses: Vec::new(),
                error: None,
                failing_since: None,
                warned: None,
                checked: None,
                lookups: 0,
                failures: 0,
                dirty: false,
            });
            // The load has just looked it up and it resolved.
            name.addresses = found;
            name.error = None;
            name.failing_since = None;
            name.dirty = false;
        }
        let names = intervals
            .into_iter()
            .map(|(host, interval)| (host.to_owned(), interval))
            .collect();
        let _ = self.watch.send(Watch {
            generation: self.generation,
            resolver: self.resolver.clone(),
            names,
        });
    }

    /// Takes in one lookup: records its addresses or its error (logging the error, within
    /// limits). True when an endpoint may have to move (call [`Names::patch`]).
    pub fn absorb(&mut self, found: Found) -> bool {
        self.absorb_at(found, Instant::now())
    }

    fn absorb_at(&mut self, found: Found, now: Instant) -> bool {
        if found.generation != self.generation {
            return false;
        }
        let Some(name) = self.names.get_mut(&found.host) else {
            return false;
        };
        name.lookups += 1;
        name.checked = Some(SystemTime::now());
        match found.result {
            Ok(addresses) => {
                if let Some(since) = name.failing_since.take() {
                    tracing::info!(
                        host = %found.host,
                        addresses = %list(&addresses),
                        failed_for = ?now.duration_since(since),
                        "endpoint name resolves again"
                    );
                }
                name.error = None;
                name.warned = None;
                let changed = name.addresses != addresses;
                name.addresses = addresses;
                name.dirty |= changed;
                changed
            }
            Err(error) => {
                name.failures += 1;
                name.failing_since.get_or_insert(now);
                let due = name
                    .warned
                    .is_none_or(|at| now.duration_since(at) >= REPEAT_WARNING);
                if due {
                    name.warned = Some(now);
                    if let Some(suppressed) = self.warnings.admit(now) {
                        let since = name.failing_since.map_or(Duration::ZERO, |s| now - s);
                        tracing::warn!(
                            host = %found.host,
                            error = %error,
                            keeping = %list(&name.addresses),
                            failing_for = ?since,
                            suppressed,
                            "cannot resolve endpoint name; its endpoints keep their last good addresses"
                        );
                    }
                }
                name.error = Some(error);
                false
            }
        }
    }

    /// `config` (the running one) with every endpoint whose name no longer has its address
    /// moved to one the name has now (see [`choose`]); `None` when no endpoint moves.
    pub fn patch(&mut self, config: &Config) -> Option<Config> {
        let mut patched: Option<Config> = None;
        for (host, name) in self.names.iter_mut() {
            if !std::mem::take(&mut name.dirty) {
                continue;
            }
            let Some(endpoints) = self.endpoints.get(host) else {
                continue;
            };
            let in_use: Vec<IpAddr> = endpoints
                .iter()
                .filter_map(|&(u, e)| Some(config.upstreams.get(u)?.endpoints.get(e)?.address.ip()))
                .collect();
            let Some(ip) = choose(&name.addresses, &in_use) else {
                continue;
            };
            for &(u, e) in endpoints {
                let Some(endpoint) = config.upstreams.get(u).and_then(|up| up.endpoints.get(e))
                else {
                    continue;
                };
                if endpoint.address.ip() == ip {
                    continue;
                }
                let to = SocketAddr::new(ip, endpoint.address.port());
                tracing::info!(
                    host = %host,
                    upstream = %config.upstreams[u].name,
                    from = %endpoint.address,
                    to = %to,
                    "endpoint name resolves to a new address: the endpoint moves"
                );
                let next = patched.get_or_insert_with(|| config.clone());
                next.upstreams[u].endpoints[e].address = to;
            }
        }
        patched
    }

    /// `ringway ctl status`'s `resolver`: the servers, and the followed names with their
    /// addresses and latest error, failing names first.
    pub fn view(&self) -> Value {
        let now = Instant::now();
        let failing = self.names.values().filter(|n| n.error.is_some()).count();
        let mut listed: Vec<(&String, &Name)> = self.names.iter().collect();
        listed.sort_by_key(|(_, n)| n.error.is_none());
        let names: Vec<Value> = listed
            .into_iter()
            .take(MAX_LISTED)
            .map(|(host, n)| {
                json!({
                    "host": host,
                    "addresses": n.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "error": n.error,
                    "failing_for_s": n.failing_since.map(|s| now.duration_since(s).as_secs_f64()),
                    "checked_unix_s": n.checked.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| d.as_secs()),
                    "lookups": n.lookups,
                    "failures": n.failures,
                })
            })
            .collect();
        let servers: Value = if self.resolver.servers.is_empty() {
            json!("system")
        } else {
            json!(self
                .resolver
                .servers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>())
        };
        json!({
            "servers": servers,
            "followed": self.names.len(),
            "failing": failing,
            "names": names,
        })
    }
}

/// Addresses as one comma-separated string, for the log.
fn list(addresses: &[IpAddr]) -> String {
    let text: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    text.join(",")
}

/// At most [`MAX_WARNINGS`] warnings a minute.
#[derive(Default)]
struct WarningLimit {
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl WarningLimit {
    /// `Some(warnings suppressed since the last one logged)` when one may be logged now.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        let fresh = self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(60));
        if fresh {
            self.window_start = Some(now);
            self.logged = 0;
        }
        if self.logged >= MAX_WARNINGS {
            self.suppressed += 1;
            return None;
        }
        self.logged += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The lookup thread: looks each name up when it is due, one at a time, until the control
/// loop drops its sender. A new watch replaces the schedule.
fn run(watches: Receiver<Watch>, found: Sender<Found>) {
    let mut watch: Option<Watch> = None;
    // (when, index into the watch's names)
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    loop {
        // A waiting watch comes before lookups that are due.
        let next = match due.peek() {
            Some(Reverse((at, _))) => watches.recv_deadline(*at),
            None => watches.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(new) => {
                let now = Instant::now();
                due = new
                    .names
                    .iter()
                    .enumerate()
                    .map(|(i, (_, interval))| Reverse((now + *interval, i)))
                    .collect();
                watch = Some(new);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let (Some(watch), Some(Reverse((_, i)))) = (&watch, due.pop()) else {
            continue;
        };
        let (host, interval) = &watch.names[i];
        let result = lookup(host, &watch.resolver);
        let sent = found.send(Found {
            generation: watch.generation,
            host: host.clone(),
            result,
        });
        if sent.is_err() {
            return;
        }
        // From the end of this lookup: a slow server never makes lookups pile up.
        due.push(Reverse((Instant::now() + *interval, i)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoints: &str, interval: &str) -> Config {
        let toml = format!(
            "[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\n\
             [[upstreams]]\nname = \"a\"\nendpoints = [{endpoints}]\n{interval}\n\
             [[upstreams]]\nname = \"b\"\nendpoints = [{{ address = \"localhost:7\" }}]\n\
             resolve_interval = \"1h\"\n"
        );
        ringway_config::parse(&toml, "t.toml").unwrap()
    }

    fn found(names: &Names, host: &str, result: Result<Vec<IpAddr>, String>) -> Found {
        Found {
            generation: names.generation,
            host: host.into(),
            result,
        }
    }

    #[test]
    fn only_names_of_upstreams_that_follow_them_are_followed() {
        let both = config(
            "{ address = \"localhost:5\" }, { address = \"127.0.0.1:6\" }",
            "resolve_interval = \"1s\"",
        );
        let names = Names::new(&both);
        assert_eq!(names.names.len(), 1);
        assert_eq!(names.endpoints["localhost"], [(0, 0), (1, 0)]);
        let off = config(
            "{ address = \"localhost:5\" }",
            "resolve_interval = \"off\"",
        );
        let names = Names::new(&off);
        assert_eq!(names.endpoints["localhost"], [(1, 0)], "only b follows it");
        let literal = config("{ address = \"127.0.0.1:5\" }", "");
        let names = Names::new(&literal);
        assert_eq!(
            names.endpoints["localhost"],
            [(1, 0)],
            "IP literals are not followed"
        );
    }

    #[test]
    fn a_new_address_moves_every_endpoint_of_the_name_and_nothing_else() {
        let running = config(
            "{ address = \"localhost:5\" }, { address = \"127.0.0.1:6\" }",
            "",
        );
        let mut names = Names::new(&running);
        let moved: IpAddr = [127, 0, 0, 2].into();
        assert!(names.absorb(found(&names, "localhost", Ok(vec![moved]))));
        let next = names.patch(&running).expect("the endpoints move");
        assert_eq!(
            next.upstreams[0].endpoints[0].address,
            "127.0.0.2:5".parse().unwrap()
        );
        assert_eq!(
            next.upstreams[0].endpoints[1].address,
            "127.0.0.1:6".parse().unwrap()
        );
        assert_eq!(
            next.upstreams[1].endpoints[0].address,
            "127.0.0.2:7".parse().unwrap()
        );
        assert_eq!(
            next.upstreams[0].endpoints[0].host.as_deref(),
            Some("localhost")
        );
        assert!(names.patch(&next).is_none(), "patched once");
        // The same answer again, or one that still has the address in use: nothing moves.
        assert!(!names.absorb(found(&names, "localhost", Ok(vec![moved]))));
        let rotated = vec![[127, 0, 0, 9].into(), moved];
        assert!(names.absorb(found(&names, "localhost", Ok(rotated))));
        assert!(names.patch(&next).is_none());
    }

    #[test]
    fn a_failed_lookup_keeps_the_addresses_and_shows_in_the_view() {
        let running = config("{ address = \"localhost:5\" }", "");
        let mut names = Names::new(&running);
        assert!(!names.absorb(found(
            &names,
            "localhost",
            Err("answered Server Failure".into())
        )));
        assert!(names.patch(&running).is_none());
        let view = names.view();
        assert_eq!(view["servers"], "system");
        assert_eq!(view["failing"], 1);
        assert_eq!(view["names"][0]["host"], "localhost");
        assert_eq!(view["names"][0]["error"], "answered Server Failure");
        assert_eq!(view["names"][0]["addresses"][0], "127.0.0.1");
        // A lookup made for the config before a reload is ignored.
        let stale = Found {
            generation: names.generation - 1,
            host: "localhost".into(),
            result: Ok(vec![[127, 0, 0, 3].into()]),
        };
        names.follow(&running);
        assert!(!names.absorb(stale));
        assert_eq!(names.view()["failing"], 0, "the reload resolved it");
    }

    #[test]
    fn warnings_are_limited_per_name_and_in_all() {
        let running = config("{ address = \"localhost:5\" }", "");
        let mut names = Names::new(&running);
        let start = Instant::now();
        let fail = |names: &Names| found(names, "localhost", Err("timeout".into()));
        names.absorb_at(fail(&names), start);
        let warned = names.names["localhost"].warned;
        assert_eq!(warned, Some(start));
        names.absorb_at(fail(&names), start + Duration::from_secs(30));
        assert_eq!(
            names.names["localhost"].warned, warned,
            "not again within a minute"
        );
        names.absorb_at(fail(&names), start + Duration::from_secs(61));
        assert_eq!(
            names.names["localhost"].warned,
            Some(start + Duration::from_secs(61))
        );
        assert_eq!(names.names["localhost"].failures, 3);

        let mut limit = WarningLimit::default();
        for _ in 0..MAX_WARNINGS {
            assert_eq!(limit.admit(start), Some(0));
        }
        assert_eq!(limit.admit(start), None);
        assert_eq!(limit.admit(start + Duration::from_secs(1)), None);
        assert_eq!(limit.admit(start + Duration::from_secs(60)), Some(2));
    }
}
