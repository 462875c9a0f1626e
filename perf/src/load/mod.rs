//! `ringway-perf load`: the HTTP/1.1 load generator. Thread per core: each thread is a glommio
//! executor (pinned with `--cores`) that owns its share of the keep-alive connections and its
//! own counters and histograms (`Rc`/`RefCell`, nothing shared); the main thread only starts
//! them, writes the interval log from what they send each second, and merges their results
//! at the end.
//!
//! Open loop with `--rate` (latency from each request's due time: see [`schedule`]), closed
//! loop without. A run is `--warmup` (not recorded) then `--duration` (recorded).
//! `https://` URLs go over TLS ([`crate::tls`]); `--requests-per-connection 1` makes every
//! request open a connection of its own (on TLS: a handshake per request, full or, with
//! `--resume`, resumed).

mod conn;
pub mod h2;
mod report;
pub mod response;
pub mod schedule;
mod stats;
pub mod stream;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Result};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;

use crate::target::{parse_cores, parse_duration, Cores, Target};
use crate::tls::{TlsArgs, TlsClient};
use stats::Stats;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Target URL, http://HOST:PORT/PATH
    #[arg(long)]
    url: String,
    /// Keep-alive connections, over all threads.
    #[arg(long, default_value_t = 50)]
    connections: u64,
    /// Threads (glommio executors).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Measured time, after the warm-up: 500ms, 10s, 1m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Time before the measured window: sent but not recorded.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    warmup: Duration,
    /// Total requests per second (open loop). Without it: closed loop, as fast as it goes.
    #[arg(long)]
    rate: Option<u64>,
    /// Request body bytes: a POST with content-length when above 0, else a GET.
    #[arg(long, default_value_t = 0)]
    body: usize,
    /// A header line added to every request, "Name: value" (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Close each connection after this many responses and open a new one (1: a connection,
    /// and on https:// a TLS handshake, per request). Default: keep-alive, unlimited.
    #[arg(long)]
    requests_per_connection: Option<u64>,
    #[command(flatten)]
    tls: TlsArgs,
    /// Connect, read and write timeout.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// CPUs to pin the threads to, in order (0 or 0,2 or 0-3); unpinned without it.
    #[arg(long, value_parser = parse_cores)]
    cores: Option<Cores>,
    /// Write an HdrHistogram interval log (1 s intervals, microseconds) to this file.
    #[arg(long)]
    hdr_log: Option<std::path::PathBuf>,
    /// Print a one-line JSON summary on stdout (the human summary goes to stderr).
    #[arg(long)]
    json: bool,
}

/// What every thread of a run knows.
pub struct Plan {
    target: Target,
    /// Set on `https://` URLs.
    tls: Option<TlsClient>,
    rate: Option<u64>,
    requests_per_connection: Option<u64>,
    connections: u64,
    timeout: Duration,
    /// Requests start here (and an open-loop schedule counts from here).
    start: Instant,
    /// Responses to requests due (or sent) from here on are recorded.
    window_start: Instant,
    /// No request is sent from here on.
    end: Instant,
}

/// One thread's latencies for one second of the measured window.
struct Interval {
    index: u32,
    length: Duration,
    latency: Histogram<u64>,
}

pub fn run(args: Args) -> Result<()> {
    let mut target = Target::parse(&args.url, args.body)?;
    target.add_headers(&args.headers)?;
    if args.threads == 0 || args.connections < args.threads as u64 {
        bail!("need at least one thread and one connection per thread");
    }
    if args.rate == Some(0) {
        bail!("--rate must be above 0 (leave it out for closed loop)");
    }
    if args.requests_per_connection == Some(0) {
        bail!("--requests-per-connection must be above 0 (leave it out for keep-alive)");
    }
    let tls = match target.tls {
        true => Some(TlsClient::new(&args.tls, &target.host)?),
        false => None,
    };
    crate::raise_fd_limit(args.connections + 64);
    let (start, window_start) = start_times(args.connections, args.warmup);
    let plan = Arc::new(Plan {
        target,
        tls,
        rate: args.rate,
        requests_per_connection: args.requests_per_connection,
        connections: args.connections,
        timeout: args.timeout,
        start,
        window_start,
        end: window_start + args.duration,
    });
    let log_start = SystemTime::now() + (window_start - Instant::now());

    let cpu_before = process_cpu();
    let (tx, rx) = mpsc::channel::<Interval>();
    let mut handles = Vec::with_capacity(args.threads);
    for t in 0..args.threads {
        let plan = plan.clone();
        let tx = args.hdr_log.is_some().then(|| tx.clone());
        let threads = args.threads;
        let handle = LocalExecutorBuilder::new(placement(&args.cores, t))
            .name(&format!("load-{t}"))
            .spawn(move || thread_main(plan, t, threads, tx))
            .map_err(|e| anyhow::anyhow!("starting load thread {t}: {e}"))?;
        handles.push(handle);
    }
    drop(tx);
    if let Some(path) = &args.hdr_log {
        report::write_log(path, log_start, args.threads, rx)?;
    }
    let total = join_all(handles)?;
    let cpu = process_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let summary = report::Summary {
        url: &args.url,
        connections: args.connections,
        threads: args.threads,
        rate: args.rate,
        duration: args.duration,
        warmup: args.warmup,
        requests_per_connection: args.requests_per_connection,
        tls: plan.tls.is_some(),
        busy: cpu.map(|cpu| cpu.as_secs_f64() / (plan.end - plan.start).as_secs_f64()),
        stats: &total,
    };
    summary.print(args.json);
    Ok(())
}

/// When a run of `connections` starts (time to start the executors and connect before the
/// first request is due) and when its measured window does, after `warmup`.
fn start_times(connections: u64, warmup: Duration) -> (Instant, Instant) {
    let lead = Duration::from_millis(200) + Duration::from_micros(50 * connections);
    let start = Instant::now() + lead;
    (start, start + warmup)
}

/// Where thread `t` of a run goes: the `t`-th of `cores` (round robin), or anywhere.
fn placement(cores: &Option<Cores>, t: usize) -> Placement {
    match cores {
        Some(Cores(cores)) if !cores.is_empty() => Placement::Fixed(cores[t % cores.len()]),
        _ => Placement::Unbound,
    }
}

/// Every thread's results, merged.
fn join_all(handles: Vec<ExecutorJoinHandle<Stats>>) -> Result<Stats> {
    let mut total = Stats::default();
    for handle in handles {
        let stats = handle
            .join()
            .map_err(|e| anyhow::anyhow!("a load thread failed: {e}"))?;
        total.merge(&stats);
    }
    Ok(total)
}

/// One thread: its connections are `thread`, `thread + threads`, ... of the run's.
async fn thread_main(
    plan: Arc<Plan>,
    thread: usize,
    threads: usize,
    log: Option<mpsc::Sender<Interval>>,
) -> Stats {
    let indices: Vec<u64> = (thread as u64..plan.connections).step_by(threads).collect();
    let shared = Rc::new(conn::Thread {
        plan: plan.clone(),
        stats: RefCell::new(Stats::default()),
        interval: log.as_ref().map(|_| RefCell::new(stats::histogram())),
        interval_index: Cell::new(0),
    });
    let tasks: Vec<_> = indices
        .into_iter()
        .map(|i| glommio::spawn_local(conn::run(shared.clone(), i)))
        .collect();
    let reporter = log
        .clone()
        .map(|tx| glommio::spawn_local(report_intervals(shared.clone(), tx)));
    for task in tasks {
        task.await;
    }
    if let Some(reporter) = reporter {
        reporter.cancel().await;
    }
    if let (Some(tx), Some(interval)) = (&log, &shared.interval) {
        // The last, partial interval: from the last boundary to now.
        let index = shared.interval_index.get();
        let from = plan.window_start + Duration::from_secs(u64::from(index));
        let _ = tx.send(Interval {
            index,
            length: Instant::now().saturating_duration_since(from),
            latency: interval.replace(stats::histogram()),
        });
    }
    shared.stats.replace(Stats::default())
}

/// Sends this thread's interval histogram every second of the measured window, until it is
/// cancelled when the connections are done.
async fn report_intervals(shared: Rc<conn::Thread>, tx: mpsc::Sender<Interval>) {
    let Some(interval) = &shared.interval else {
        return;
    };
    loop {
        let index = shared.interval_index.get();
        let boundary = shared.plan.window_start + Duration::from_secs(u64::from(index) + 1);
        let now = Instant::now();
        if boundary > now {
            glommio::timer::sleep(boundary - now).await;
        }
        let _ = tx.send(Interval {
            index,
            length: Duration::from_secs(1),
            latency: interval.replace(stats::histogram()),
        });
        shared.interval_index.set(index + 1);
    }
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat` (clock ticks,
/// 100 per second on Linux); `None` where that cannot be read.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}
