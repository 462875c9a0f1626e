//! Active health checks: HTTP requests (or gRPC health calls, `grpc_health`) to every
//! endpoint of each upstream with a `health_check`, run on the control side, never on a shard.
//!
//! Thread: one ("ringway-health") for every check, running a small monoio runtime on epoll
//! with one task per checked endpoint, so thousands of endpoints cost thousands of small
//! tasks, not threads. Each task checks at once, then every `interval`, and sends its result
//! to the control loop over a channel; the control loop starts and stops tasks by command
//! (an endpoint, its upstream or its health check left the config) and the thread ends with
//! the [`HealthChecker`]. The checker belongs to the control loop (`&mut self`, no locks): it
//! counts results against the thresholds and, whenever an endpoint changes state, makes a new
//! [`HealthTable`] for the shards.
//!
//! An endpoint starts healthy; `unhealthy_threshold` failed checks in a row make it unhealthy
//! and `healthy_threshold` passed checks in a row healthy again. A check passes when a response
//! head with a status in `expected_statuses` arrives within `timeout` (1xx heads before it
//! are skipped); a refused or failed connection, a reset, a timeout or a head that the data
//! plane's strict codec (`ringway_core::http::h1`) refuses fail it.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use ringway_config::{Config, HealthCheck, HealthCheckKind, UpstreamTls};
use ringway_core::http::h1::{parse_response, HeaderRef, Method};
use ringway_core::io::Stream;
use ringway_core::tls::ClientTls;
use ringway_core::upstream::HealthTable;
use rustls_pki_types::ServerName;

use crate::observe::EndpointHealth;

/// The longest response head read from a check's answer.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// How often the checking thread looks for commands (a new or stopped check waits at most
/// this long).
const COMMAND_POLL: Duration = Duration::from_millis(20);

/// From the control loop to the checking thread.
enum Command {
    Start {
        id: u64,
        address: SocketAddr,
        config: Box<HealthCheck>,
        /// The upstream's TLS and the endpoint's server name: checks speak what requests do.
        tls: Option<(Arc<ClientTls>, ServerName<'static>)>,
    },
    Stop(u64),
}

/// One check's result, from a checking thread to the control loop.
pub struct Probe {
    /// Which check (a replaced check's late results are ignored).
    id: u64,
    passed: bool,
    detail: String,
}

/// One endpoint under check.
struct Check {
    id: u64,
    config: HealthCheck,
    /// The upstream's `tls` and the endpoint's host name the check was started with.
    tls: Option<UpstreamTls>,
    host: Option<String>,
    healthy: bool,
    /// Passed or failed checks in a row (the one not counting is 0).
    passes: u32,
    failures: u32,
    checks: u64,
    last: String,
}

/// Every endpoint's check and health, by upstream name and address.
pub struct HealthChecker {
    checks: BTreeMap<(String, SocketAddr), Check>,
    next_id: u64,
    results: Receiver<Probe>,
    /// To the checking thread; dropping it ends the thread.
    commands: Sender<Command>,
    table: Arc<HealthTable>,
}

impl HealthChecker {
    /// Starts the checks `config` asks for.
    pub fn new(config: &Config) -> HealthChecker {
        let (results_tx, results) = crossbeam_channel::unbounded();
        let (commands, commands_rx) = crossbeam_channel::unbounded();
        let started = std::thread::Builder::new()
            .name("ringway-health".into())
            .spawn(move || run(commands_rx, results_tx));
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start the health check thread");
        }
        let mut checker = HealthChecker {
            checks: BTreeMap::new(),
            next_id: 0,
            results,
            commands,
            table: Arc::new(HealthTable::default()),
        };
        checker.follow(config);
        checker
    }

    /// Where the checks' results arrive; hand each to [`HealthChecker::absorb`].
    pub fn results(&self) -> Receiver<Probe> {
        self.results.clone()
    }

    /// The table the shards should have now.
    pub fn table(&self) -> Arc<HealthTable> {
        self.table.clone()
    }

    /// Follows a new config: starts checks for the endpoints it adds, stops those of the
    /// endpoints it removes, restarts those whose settings changed (keeping their health).
    /// True when the table changed (an unhealthy endpoint left).
    pub fn follow(&mut self, config: &Config) -> bool {
        let mut wanted = BTreeMap::new();
        for u in &config.upstreams {
            let Some(check) = &u.health_check else {
                continue;
            };
            for e in &u.endpoints {
                wanted.insert((u.name.clone(), e.address), (check, &u.tls, &e.host));
            }
        }
        let commands = &self.commands;
        self.checks.retain(|key, check| {
            let keep = wanted.contains_key(key);
            if !keep {
                let _ = commands.send(Command::Stop(check.id));
            }
            keep
        });
        for (key, (config, tls, host)) in wanted {
            let before = self.checks.get(&key);
            if before.is_some_and(|c| c.config == *config && c.tls == *tls && c.host == *host) {
                continue;
            }
            let client = match tls {
                None => None,
                // Built per check (not shared with the epoch): checks are few and rare, and
                // this way a check never holds an epoch's state alive.
                // A gRPC check speaks HTTP/2, which TLS must agree on by ALPN.
                Some(cfg) => match ClientTls::build(
                    cfg,
                    None,
                    matches!(config.kind, HealthCheckKind::Grpc { .. }),
                ) {
                    Ok(client) => {
                        let name = client.server_name(host.as_deref(), key.1);
                        Some((Arc::new(client), name))
                    }
                    Err(e) => {
                        tracing::warn!(upstream = %key.0, error = %e, "health check without TLS settings");
                        None
                    }
                },
            };
            let healthy = before.is_none_or(|check| check.healthy);
            let id = self.next_id;
            self.next_id += 1;
            if let Some(old) = before {
                let _ = self.commands.send(Command::Stop(old.id));
            }
            let _ = self.commands.send(Command::Start {
                id,
                address: key.1,
                config: Box::new(config.clone()),
                tls: client,
            });
            let check = Check {
                id,
                config: config.clone(),
                tls: tls.clone(),
                host: host.clone(),
                healthy,
                passes: 0,
                failures: 0,
                checks: 0,
                last: String::new(),
            };
            self.checks.insert(key, check);
        }
        self.rebuild()
    }

    /// Counts one result; true when an endpoint changed state (the table changed).
    pub fn absorb(&mut self, probe: Probe) -> bool {
        let Some(((upstream, address), check)) =
            self.checks.iter_mut().find(|(_, c)| c.id == probe.id)
        else {
            return false;
        };
        check.checks += 1;
        check.last = probe.detail;
        if probe.passed {
            check.passes += 1;
            check.failures = 0;
        } else {
            check.failures += 1;
            check.passes = 0;
        }
        let flips = if check.healthy {
            check.failures >= check.config.unhealthy_threshold
        } else {
            check.passes >= check.config.healthy_threshold
        };
        if !flips {
            return false;
        }
        check.healthy = !check.healthy;
        if check.healthy {
            tracing::info!(%upstream, endpoint = %address, "endpoint healthy again");
        } else {
            tracing::warn!(%upstream, endpoint = %address, last = %check.last, "endpoint unhealthy");
        }
        self.rebuild()
    }

    /// Makes the table anew from the checks; true (and a new generation) when it changed.
    fn rebuild(&mut self) -> bool {
        let mut down: BTreeMap<String, Vec<SocketAddr>> = BTreeMap::new();
        for ((upstream, address), check) in &self.checks {
            if !check.healthy {
                down.entry(upstream.clone()).or_default().push(*address);
            }
        }
        for addresses in down.values_mut() {
            addresses.sort();
        }
        if down == self.table.down {
            return false;
        }
        self.table = Arc::new(HealthTable {
            generation: self.table.generation + 1,
            down,
        });
        true
    }

    /// Every checked endpoint's health, per upstream, for `stats` and `/metrics`.
    pub fn view(&self) -> BTreeMap<String, Vec<EndpointHealth>> {
        let mut view: BTreeMap<String, Vec<EndpointHealth>> = BTreeMap::new();
        for ((upstream, address), check) in &self.checks {
            view.entry(upstream.clone())
                .or_default()
                .push(EndpointHealth {
                    address: *address,
                    healthy: check.healthy,
                    checks: check.checks,
                    last: check.last.clone(),
                });
        }
        view
    }
}

/// The checking thread: a task per check, started and stopped by `commands`, until the
/// checker (the sending side) is gone.
fn run(commands: Receiver<Command>, results: Sender<Probe>) {
    let Some(mut rt) = super::small_runtime("health check") else {
        return;
    };
    rt.block_on(async move {
        let mut running: HashMap<u64, Rc<Cell<bool>>> = HashMap::new();
        loop {
            loop {
                match commands.try_recv() {
                    Ok(Command::Start {
                        id,
                        address,
                        config,
                        tls,
                    }) => {
                        let stopped = Rc::new(Cell::new(false));
                        running.insert(id, stopped.clone());
                        let results = results.clone();
                        monoio::spawn(checks(id, address, *config, tls, results, stopped));
                    }
                    Ok(Command::Stop(id)) => {
                        if let Some(stopped) = running.remove(&id) {
                            stopped.set(true);
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    // The checker is gone: so is every check (the runtime drops its tasks).
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            monoio::time::sleep(COMMAND_POLL).await;
        }
    });
}

/// Checks `address` at once and then every `interval`, until `stopped`.
async fn checks(
    id: u64,
    address: SocketAddr,
    config: HealthCheck,
    tls: Option<(Arc<ClientTls>, ServerName<'static>)>,
    results: Sender<Probe>,
    stopped: Rc<Cell<bool>>,
) {
    let tls = tls.as_ref().map(|(client, name)| (&**client, name));
    loop {
        let (passed, detail) = match &config.kind {
            HealthCheckKind::Http => match check(address, &config, tls).await {
                Ok(status) => (config.expects(status), format!("status {status}")),
                Err(why) => (false, why),
            },
            HealthCheckKind::Grpc { service } => {
                match super::grpc_health::check(address, &config, service, tls).await {
                    Ok(()) => (true, "SERVING".to_string()),
                    Err(why) => (false, why),
                }
            }
        };
        if stopped.get() || results.send(Probe { id, passed, detail }).is_err() {
            return;
        }
        monoio::time::sleep(config.interval).await;
        if stopped.get() {
            return;
        }
    }
}

/// A connection for one check: TCP to `address`, then TLS when `tls` is given.
pub(super) async fn connect(
    address: SocketAddr,
    tls: Option<(&ClientTls, &ServerName<'static>)>,
) -> Result<Stream, String> {
    let tcp = TcpStream::connect_addr(address)
        .await
        .map_err(|e| io_failure("connect", e))?;
    let _ = tcp.set_nodelay(true);
    Ok(match tls {
        None => Stream::Plain(tcp),
        Some((client, name)) => {
            let tls = ringway_core::tls::connect(tcp, client, name.clone())
                .await
                .map_err(|e| match ringway_core::tls::tls_error(&e) {
                    Some(e) => format!("tls: {e}"),
                    None => io_failure("tls", e),
                })?;
            Stream::Tls(Box::new(tls))
        }
    })
}

/// An I/O failure as a check's detail: what failed and the error's kind (no OS text).
pub(super) fn io_failure(what: &str, e: std::io::Error) -> String {
    format!("{what}: {}", e.kind())
}

/// One check: `GET path` to `address` (over TLS when `tls` is given); the response's status,
/// or why there is none.
pub async fn check(
    address: SocketAddr,
    config: &HealthCheck,
    tls: Option<(&ClientTls, &ServerName<'static>)>,
) -> Result<u16, String> {
    let io = io_failure;
    let host = config.host.clone().unwrap_or_else(|| address.to_string());
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ringway-health-check\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n",
        config.path
    );
    let exchange = async {
        let mut stream = connect(address, tls).await?;
        let (written, _) = stream.write_all(request.into_bytes()).await;
        written.map_err(|e| io("write", e))?;
        // The response head, parsed by the data plane's strict codec; 1xx heads are skipped.
        let mut head: Vec<u8> = Vec::with_capacity(512);
        let mut fields: Vec<HeaderRef> = Vec::new();
        let mut buf = vec![0u8; 512];
        loop {
            match parse_response(&head, MAX_RESPONSE_HEAD, &mut fields, Method::Get) {
                // It switched protocols unasked: no HTTP answer will follow.
                Ok(Some(parsed)) if parsed.status == 101 => {
                    return Err("unexpected 101 Switching Protocols".to_string())
                }
                Ok(Some(parsed)) if parsed.status < 200 => {
                    head.drain(..parsed.head_len);
                    continue;
                }
                Ok(Some(parsed)) => return Ok(parsed.status),
                Ok(None) => {}
                Err(e) => return Err(format!("bad response head: {}", e.reason())),
            }
            let (read, back) = stream.read(buf).await;
            buf = back;
            match read {
                Ok(0) => return Err("closed before a response head".to_string()),
                Ok(n) => head.extend_from_slice(&buf[..n]),
                Err(e) => return Err(io("read", e)),
            }
        }
    };
    match monoio::time::timeout(config.timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err("timeout".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Instant;

    use super::*;

    /// [`check`] on a runtime of its own.
    fn check_now(address: SocketAddr, config: &HealthCheck) -> Result<u16, String> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(check(address, config, None))
    }

    /// How long a test waits, at most, for the checking threads' results.
    const TEST_WAIT: Duration = Duration::from_secs(5);

    fn config_with(endpoints: &[SocketAddr], check: &str) -> Config {
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|a| format!("{{ address = \"{a}\" }}"))
            .collect();
        let toml = format!(
            "[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\n[[upstreams]]\nname = \"u\"\n\
             endpoints = [{}]\n{check}\n",
            endpoints.join(", ")
        );
        ringway_config::parse(&toml, "t.toml").unwrap()
    }

    /// A server answering every connection with `reply`, `n` times.
    fn server(reply: &'static [u8], n: usize) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(n) {
                let mut stream = stream.unwrap();
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(reply);
            }
        });
        addr
    }

    fn settings(check: &str) -> HealthCheck {
        let dummy: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let config = config_with(&[dummy], &format!("health_check = {{ {check} }}"));
        config.upstreams[0].health_check.clone().unwrap()
    }

    #[test]
    fn a_check_reads_the_status() {
        let cfg = settings("timeout = \"1s\"");
        let ok = server(b"HTTP/1.1 204 No Content\r\n\r\n", 1);
        assert_eq!(check_now(ok, &cfg), Ok(204));
        let bad = server(b"SSH-2.0-OpenSSH\r\n", 1);
        // Not HTTP, and no head ever completes.
        assert_eq!(
            check_now(bad, &cfg),
            Err("closed before a response head".into())
        );
        let closed = server(b"", 1);
        assert_eq!(
            check_now(closed, &cfg),
            Err("closed before a response head".into())
        );
        let nothing: SocketAddr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        assert_eq!(
            check_now(nothing, &cfg),
            Err("connect: connection refused".into())
        );
    }

    #[test]
    fn a_silent_server_times_out() {
        let cfg = settings("timeout = \"200ms\"");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let started = Instant::now();
        assert_eq!(
            check_now(listener.local_addr().unwrap(), &cfg),
            Err("timeout".into())
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn heads_are_parsed_strictly() {
        let cfg = settings("timeout = \"1s\"");
        let interim = server(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n", 1);
        assert_eq!(check_now(interim, &cfg), Ok(503));
        for bad in [
            &b"HTTP/1.1 20 OK\r\n\r\n"[..],
            b"HTTP/2 200\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        ] {
            let e = check_now(server(bad, 1), &cfg).expect_err("a bad head");
            assert!(e.starts_with("bad response head: "), "{e}");
        }
    }

    #[test]
    fn thresholds_flip_health_and_make_new_tables() {
        let a = server(b"HTTP/1.1 500 Oops\r\n\r\n", 100);
        let b = server(b"HTTP/1.1 200 OK\r\n\r\n", 100);
        let config = config_with(
            &[a, b],
            "health_check = { interval = \"50ms\", timeout = \"50ms\", unhealthy_threshold = 2, healthy_threshold = 2 }",
        );
        let mut checker = HealthChecker::new(&config);
        let results = checker.results();
        assert_eq!(checker.table().generation, 0);
        let end = Instant::now() + TEST_WAIT;
        while checker.table().down_of("u").is_empty() {
            let probe = results.recv_deadline(end).expect("results in time");
            checker.absorb(probe);
        }
        let table = checker.table();
        assert_eq!(table.generation, 1);
        assert_eq!(table.down_of("u"), [a]);
        let view = checker.view();
        let a_view = view["u"].iter().find(|e| e.address == a).unwrap();
        assert!(!a_view.healthy && a_view.checks >= 2 && a_view.last == "status 500");
        // A reload without the health check forgets it: every endpoint counts as healthy.
        assert!(checker.follow(&config_with(&[a, b], "")));
        assert!(checker.table().down.is_empty());
        assert_eq!(checker.table().generation, 2);
        assert!(checker.view().is_empty());
    }

    #[test]
    fn many_endpoints_share_one_thread() {
        // 200 endpoints where nothing listens: each check fails at once, on one thread.
        let nothing: Vec<SocketAddr> = (0..200)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 1 + i)))
            .collect();
        let config = config_with(&nothing, "health_check = { interval = \"1h\" }");
        let mut checker = HealthChecker::new(&config);
        let results = checker.results();
        let end = Instant::now() + TEST_WAIT;
        for _ in 0..200 {
            let probe = results
                .recv_deadline(end)
                .expect("every endpoint checked in time");
            checker.absorb(probe);
        }
        let threads = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim() == "ringway-health")
            .count();
        // Other tests of this binary may run a checker of their own meanwhile.
        assert!(threads <= 8, "{threads} health threads for 200 endpoints");
        assert!(checker.view()["u"].iter().all(|e| e.checks == 1));
    }

    #[test]
    fn a_probe_of_a_replaced_check_is_ignored() {
        let nothing: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let config = config_with(&[nothing], "health_check = { interval = \"1h\" }");
        let mut checker = HealthChecker::new(&config);
        let stale = Probe {
            id: 999,
            passed: false,
            detail: "x".into(),
        };
        assert!(!checker.absorb(stale));
        assert_eq!(checker.view()["u"][0].checks, 0);
    }
}
