//! One keep-alive connection of a load run, on one thread's glommio executor: send a request
//! when it is due (or at once in closed loop), read the response, record, repeat; reconnect
//! after any error, and after `--requests-per-connection` responses.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::timer::sleep;
use hdrhistogram::Histogram;

use super::response::{Response, ResponseReader, MAX_HEAD};
use super::schedule::{latency_us, Schedule};
use super::stats::{ErrorKind, Stats};
use super::stream::Stream;
use super::Plan;

/// Read buffer per connection: a whole head fits; bodies stream through it.
const BUF: usize = 4 * MAX_HEAD;
/// Pause after a failed connect, so a refused port is not hammered in a tight loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// What the connections of one thread share: the plan and this thread's results.
pub struct Thread {
    pub plan: Arc<Plan>,
    pub stats: RefCell<Stats>,
    /// Latencies of the current interval-log interval, when a log is written.
    pub interval: Option<RefCell<Histogram<u64>>>,
    /// Index of the current interval-log interval (seconds into the measured window).
    pub interval_index: Cell<u32>,
}

impl Thread {
    fn record(&self, counted_from: Instant, response: &Response) {
        let mut stats = self.stats.borrow_mut();
        stats.responses_total += 1;
        if counted_from < self.plan.window_start {
            return;
        }
        let micros = latency_us(counted_from, Instant::now());
        stats.record(micros, response.status, response.body);
        if let Some(interval) = &self.interval {
            interval.borrow_mut().saturating_record(micros);
        }
    }

    /// Opens a connection (on TLS with its handshake, counted); after a failure, counts it
    /// and pauses a little, so a refused port is not hammered in a tight loop.
    async fn open(&self) -> Option<Stream> {
        let plan = &self.plan;
        match Stream::open(&plan.target, plan.tls.as_ref(), plan.timeout).await {
            Ok(opened) => {
                if let Some(resumed) = opened.resumed {
                    if Instant::now() >= plan.window_start {
                        let mut stats = self.stats.borrow_mut();
                        match resumed {
                            true => stats.handshakes_resumed += 1,
                            false => stats.handshakes_full += 1,
                        }
                    }
                }
                Some(opened.stream)
            }
            Err(kind) => {
                self.error(kind);
                sleep(CONNECT_BACKOFF).await;
                None
            }
        }
    }

    fn error(&self, kind: ErrorKind) {
        if Instant::now() >= self.plan.window_start {
            self.stats.borrow_mut().errors.add(kind);
        }
    }
}

/// Runs connection `index` (among all threads' connections) until the plan's end.
pub async fn run(thread: Rc<Thread>, index: u64) {
    let plan = thread.plan.clone();
    let schedule = plan
        .rate
        .map(|rate| Schedule::new(plan.start, rate, plan.connections, index));
    let mut buf = vec![0u8; BUF].into_boxed_slice();
    let mut sent = 0u64;
    let mut stream: Option<Stream> = None;
    // Responses on the current connection.
    let mut served = 0u64;
    loop {
        // Keep-alive: connect ahead of the first request (and again after an error).
        // With --requests-per-connection, connect when a request is due instead, so that its
        // latency includes the connect and the handshake.
        if stream.is_none() && plan.requests_per_connection.is_none() {
            if Instant::now() >= plan.end {
                break;
            }
            stream = thread.open().await;
            served = 0;
            if stream.is_none() {
                continue;
            }
        }
        let counted_from = match &schedule {
            Some(schedule) => {
                let due = schedule.due(sent);
                if due >= plan.end {
                    break;
                }
                wait_until(due).await;
                due
            }
            None => {
                wait_until(plan.start).await;
                let now = Instant::now();
                if now >= plan.end {
                    break;
                }
                now
            }
        };
        let conn = match &mut stream {
            Some(conn) => conn,
            None => {
                served = 0;
                match thread.open().await {
                    Some(opened) => stream.insert(opened),
                    None => continue,
                }
            }
        };
        sent += 1;
        if let Err(e) = conn.write_all(&plan.target.request).await {
            thread.error(classify(&e, ErrorKind::Write));
            stream = None;
            continue;
        }
        let mut reader = Reader {
            stream: conn,
            buf: &mut buf,
            filled: 0,
            reader: ResponseReader::default(),
        };
        match reader.response().await {
            Ok(response) => {
                thread.record(counted_from, &response);
                served += 1;
                let spent = plan.requests_per_connection.is_some_and(|n| served >= n);
                if response.close || spent {
                    if let Some(conn) = stream.take() {
                        conn.close().await;
                    }
                }
            }
            Err(kind) => {
                thread.error(kind);
                stream = None;
            }
        }
    }
    if let Some(schedule) = &schedule {
        let due = schedule.due_before(plan.end);
        thread.stats.borrow_mut().unsent += due.saturating_sub(sent);
    }
}

async fn wait_until(when: Instant) {
    let now = Instant::now();
    if when > now {
        sleep(when - now).await;
    }
}

fn classify(e: &io::Error, otherwise: ErrorKind) -> ErrorKind {
    if e.kind() == io::ErrorKind::TimedOut {
        ErrorKind::Timeout
    } else {
        otherwise
    }
}

/// Reads the responses of one connection.
struct Reader<'a> {
    stream: &'a mut Stream,
    buf: &'a mut [u8],
    /// Bytes of `buf` holding data not yet consumed, from its start.
    filled: usize,
    reader: ResponseReader,
}

impl Reader<'_> {
    /// Reads one whole response; bytes past it stay in the buffer for the next.
    async fn response(&mut self) -> Result<Response, ErrorKind> {
        loop {
            let adv = self
                .reader
                .advance(&self.buf[..self.filled])
                .map_err(|_| ErrorKind::Read)?;
            self.buf.copy_within(adv.consumed..self.filled, 0);
            self.filled -= adv.consumed;
            if let Some(response) = adv.done {
                return Ok(response);
            }
            if self.filled == self.buf.len() {
                return Err(ErrorKind::Read);
            }
            let n = self
                .stream
                .read(&mut self.buf[self.filled..])
                .await
                .map_err(|e| classify(&e, ErrorKind::Read))?;
            if n == 0 {
                return self.reader.finish_at_eof().ok_or(ErrorKind::Read);
            }
            self.filled += n;
        }
    }
}
