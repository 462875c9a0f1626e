//! `ringway-perf h2`: the HTTP/2 load generator, h2c by prior knowledge. What h2load lacks
//! for the comparisons: an open loop with latency counted from each request's due time, and
//! percentiles.
//!
//! A thread per `--threads`, each a glommio executor (pinned with `--cores`) owning its share
//! of the connections and its own counters; nothing is shared between threads until the merge
//! at the end. The h2 crate speaks tokio's I/O traits, adapted from glommio's by tokio-util's
//! compat layer; glommio's timers are precise to microseconds, where tokio's tick in
//! milliseconds and would add up to a millisecond to every open-loop latency. Each connection carries up to
//! `--streams` requests at once. Open loop (`--rate`): requests fall due on the run's schedule
//! ([`Schedule`]), spread over the connections as in `load`; a request due while its
//! connection has no free stream waits for one, and its latency still counts from when it
//! was due. Closed loop: every stream slot sends its next request as soon as its response is
//! in. `--grpc` makes each request a gRPC-shaped unary call (POST, `application/grpc`, an empty
//! message) and counts one whose `grpc-status` is not 0 as a failed status.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use glommio::timer::sleep;
use glommio::{spawn_local, LocalExecutorBuilder};
use h2::client::SendRequest;
use tokio_util::compat::FuturesAsyncReadCompatExt;

use super::report::Summary;
use super::schedule::{latency_us, Schedule};
use super::stats::{ErrorKind, Stats};
use crate::target::{parse_cores, parse_duration, Cores, Target};

/// Pause after a failed connect, so a refused port is not hammered in a tight loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);
/// An empty gRPC message: not compressed, length 0.
const GRPC_EMPTY: &[u8] = &[0, 0, 0, 0, 0];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Target URL, http://HOST:PORT/PATH (h2c by prior knowledge).
    #[arg(long)]
    url: String,
    /// Connections, over all threads.
    #[arg(long, default_value_t = 4)]
    connections: u64,
    /// Concurrent streams per connection, at most.
    #[arg(long, default_value_t = 100)]
    streams: usize,
    /// Threads (glommio executors).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// CPUs to pin the threads to, in order (0 or 0,2 or 0-3); unpinned without it.
    #[arg(long, value_parser = parse_cores)]
    cores: Option<Cores>,
    /// Measured time, after the warm-up: 500ms, 10s, 1m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Time before the measured window: sent but not recorded.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    warmup: Duration,
    /// Total requests per second (open loop). Without it: closed loop, as fast as it goes.
    #[arg(long)]
    rate: Option<u64>,
    /// gRPC-shaped unary calls: POST, content-type application/grpc, te: trailers, an empty
    /// message; a grpc-status other than 0 counts as a failed status.
    #[arg(long)]
    grpc: bool,
    /// Connect timeout, and the time one request may take.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print a one-line JSON summary on stdout (the human summary goes to stderr).
    #[arg(long)]
    json: bool,
}

/// What every thread of a run knows.
struct Plan {
    target: Target,
    uri: http::Uri,
    grpc: bool,
    rate: Option<u64>,
    connections: u64,
    streams: usize,
    timeout: Duration,
    start: Instant,
    window_start: Instant,
    end: Instant,
}

pub fn run(args: Args) -> Result<()> {
    let target = Target::parse(&args.url, 0)?;
    if target.tls {
        bail!("{}: only h2c (http://) is supported", args.url);
    }
    if args.threads == 0 || args.connections < args.threads as u64 {
        bail!("need at least one thread and one connection per thread");
    }
    if args.streams == 0 || args.rate == Some(0) {
        bail!("--streams and --rate must be above 0");
    }
    let uri: http::Uri = args.url.parse().context("the URL as an HTTP/2 :path")?;
    crate::raise_fd_limit(args.connections + 64);
    let (start, window_start) = super::start_times(args.connections, args.warmup);
    let plan = Arc::new(Plan {
        target,
        uri,
        grpc: args.grpc,
        rate: args.rate,
        connections: args.connections,
        streams: args.streams,
        timeout: args.timeout,
        start,
        window_start,
        end: window_start + args.duration,
    });
    let cpu_before = super::process_cpu();
    let mut handles = Vec::with_capacity(args.threads);
    for t in 0..args.threads {
        let plan = plan.clone();
        let threads = args.threads;
        let handle = LocalExecutorBuilder::new(super::placement(&args.cores, t))
            .name(&format!("h2load-{t}"))
            .spawn(move || thread_main(plan, t, threads))
            .map_err(|e| anyhow::anyhow!("starting load thread {t}: {e}"))?;
        handles.push(handle);
    }
    let total = super::join_all(handles)?;
    let cpu = super::process_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let summary = Summary {
        url: &args.url,
        connections: args.connections,
        threads: args.threads,
        rate: args.rate,
        duration: args.duration,
        warmup: args.warmup,
        requests_per_connection: None,
        tls: false,
        busy: cpu.map(|cpu| cpu.as_secs_f64() / (plan.end - plan.start).as_secs_f64()),
        stats: &total,
    };
    eprintln!("HTTP/2: {} streams per connection at most", args.streams);
    summary.print(args.json);
    Ok(())
}

/// One thread: its connections are `thread`, `thread + threads`, ... of the run's.
async fn thread_main(plan: Arc<Plan>, thread: usize, threads: usize) -> Stats {
    let stats = Rc::new(RefCell::new(Stats::default()));
    let tasks: Vec<_> = (thread as u64..plan.connections)
        .step_by(threads)
        .map(|i| spawn_local(connection(plan.clone(), i, stats.clone())))
        .collect();
    for task in tasks {
        task.await;
    }
    stats.replace(Stats::default())
}

/// What the streams of one connection share.
struct Conn {
    plan: Arc<Plan>,
    stats: Rc<RefCell<Stats>>,
    /// Set when a stream finds the connection broken: the next request goes on a new one.
    broken: Cell<bool>,
}

impl Conn {
    fn error(&self, kind: ErrorKind) {
        if Instant::now() >= self.plan.window_start {
            self.stats.borrow_mut().errors.add(kind);
        }
    }

    fn record(&self, counted_from: Instant, status: u16, body: u64) {
        let mut stats = self.stats.borrow_mut();
        stats.responses_total += 1;
        if counted_from >= self.plan.window_start {
            stats.record(latency_us(counted_from, Instant::now()), status, body);
        }
    }
}

/// One connection: opens it (again after a failure), then sends each request when it is due
/// (open loop) or when a stream slot frees up (closed loop), until the end of the run.
async fn connection(plan: Arc<Plan>, index: u64, stats: Rc<RefCell<Stats>>) {
    let schedule = plan
        .rate
        .map(|rate| Schedule::new(plan.start, rate, plan.connections, index));
    sleep_until(plan.start).await;
    let mut sent = 0u64;
    let conn = Rc::new(Conn {
        plan: plan.clone(),
        stats,
        broken: Cell::new(false),
    });
    let slots = Rc::new(Semaphore::new(plan.streams as u64));
    'connect: while Instant::now() < plan.end {
        let Some(send) = open(&plan).await else {
            conn.error(ErrorKind::Connect);
            sleep(CONNECT_BACKOFF).await;
            continue;
        };
        conn.broken.set(false);
        loop {
            let due = match &schedule {
                Some(schedule) => {
                    let due = schedule.due(sent);
                    if due >= plan.end {
                        break 'connect;
                    }
                    sleep_until(due).await;
                    Some(due)
                }
                None if Instant::now() >= plan.end => break 'connect,
                None => None,
            };
            let Ok(permit) = slots.acquire_static_permit(1).await else {
                break 'connect;
            };
            if conn.broken.get() {
                continue 'connect;
            }
            sent += 1;
            let counted_from = due.unwrap_or_else(Instant::now);
            let (send, conn) = (send.clone(), conn.clone());
            spawn_local(async move {
                let result = timeout(conn.plan.timeout, exchange(send, &conn.plan)).await;
                match result {
                    Ok(Ok((status, body))) => conn.record(counted_from, status, body),
                    Ok(Err(kind)) => {
                        conn.broken.set(true);
                        conn.error(kind);
                    }
                    Err(_) => conn.error(ErrorKind::Timeout),
                }
                drop(permit);
            })
            .detach();
        }
    }
    // Let the requests in flight finish (each is bounded by the timeout).
    let _ = slots.acquire(plan.streams as u64).await;
    if let Some(schedule) = schedule {
        let due = schedule.due_before(plan.end);
        conn.stats.borrow_mut().unsent += due.saturating_sub(sent);
    }
}

/// A new h2c connection, its driver running on this thread.
async fn open(plan: &Plan) -> Option<SendRequest<Bytes>> {
    let tcp = timeout(plan.timeout, TcpStream::connect(plan.target.addr))
        .await
        .ok()?
        .ok()?;
    let _ = tcp.set_nodelay(true);
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 24)
        .handshake::<_, Bytes>(tcp.compat())
        .await
        .ok()?;
    spawn_local(async move {
        let _ = connection.await;
    })
    .detach();
    Some(send)
}

async fn sleep_until(when: Instant) {
    let now = Instant::now();
    if when > now {
        sleep(when - now).await;
    }
}

/// `future`, or `Err(())` once `limit` has passed.
async fn timeout<T>(limit: Duration, future: impl Future<Output = T>) -> Result<T, ()> {
    futures_lite::future::or(async { Ok(future.await) }, async {
        sleep(limit).await;
        Err(())
    })
    .await
}

/// One request and its whole response; the status, and the response body's length.
async fn exchange(send: SendRequest<Bytes>, plan: &Plan) -> Result<(u16, u64), ErrorKind> {
    let mut send = send.ready().await.map_err(|_| ErrorKind::Write)?;
    let mut request = http::Request::builder().uri(plan.uri.clone());
    if plan.grpc {
        request = request
            .method("POST")
            .header("content-type", "application/grpc")
            .header("te", "trailers");
    }
    let request = request.body(()).map_err(|_| ErrorKind::Write)?;
    let (response, mut body) = send
        .send_request(request, !plan.grpc)
        .map_err(|_| ErrorKind::Write)?;
    if plan.grpc {
        body.send_data(Bytes::from_static(GRPC_EMPTY), true)
            .map_err(|_| ErrorKind::Write)?;
    }
    let response = response.await.map_err(|_| ErrorKind::Read)?;
    let mut status = response.status().as_u16();
    let head_status = response.headers().get("grpc-status").cloned();
    let mut recv = response.into_body();
    let mut length = 0u64;
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(|_| ErrorKind::Read)?;
        length += chunk.len() as u64;
        let _ = recv.flow_control().release_capacity(chunk.len());
    }
    let trailers = recv.trailers().await.map_err(|_| ErrorKind::Read)?;
    if plan.grpc {
        let grpc_status = trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status").cloned())
            .or(head_status);
        if grpc_status.as_ref().map(|s| s.as_bytes()) != Some(b"0") {
            // Counted with the non-2xx statuses.
            status = 599;
        }
    }
    Ok((status, length))
}
