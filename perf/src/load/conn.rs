//! One keep-alive connection of a load run, on one thread's glommio executor: send a request
//! when it is due (or at once in closed loop), read the response, record, repeat; reconnect
//! after any error.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::sleep;
use hdrhistogram::Histogram;

use super::response::{Response, ResponseReader, MAX_HEAD};
use super::schedule::{latency_us, Schedule};
use super::stats::{ErrorKind, Stats};
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
    'connect: while Instant::now() < plan.end {
        let mut stream = match TcpStream::connect_timeout(plan.target.addr, plan.timeout).await {
            Ok(stream) => stream,
            Err(_) => {
                thread.error(ErrorKind::Connect);
                sleep(CONNECT_BACKOFF).await;
                continue;
            }
        };
        // Failing to set these only costs accuracy; the run goes on.
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(plan.timeout));
        let _ = stream.set_write_timeout(Some(plan.timeout));
        let mut conn = Conn {
            stream: &mut stream,
            buf: &mut buf,
            filled: 0,
            reader: ResponseReader::default(),
        };
        loop {
            let counted_from = match &schedule {
                Some(schedule) => {
                    let due = schedule.due(sent);
                    if due >= plan.end {
                        break 'connect;
                    }
                    wait_until(due).await;
                    due
                }
                None => {
                    wait_until(plan.start).await;
                    let now = Instant::now();
                    if now >= plan.end {
                        break 'connect;
                    }
                    now
                }
            };
            sent += 1;
            if let Err(e) = conn.stream.write_all(&plan.target.request).await {
                thread.error(classify(&e, ErrorKind::Write));
                continue 'connect;
            }
            match conn.response().await {
                Ok(response) => {
                    thread.record(counted_from, &response);
                    if response.close {
                        continue 'connect;
                    }
                }
                Err(kind) => {
                    thread.error(kind);
                    continue 'connect;
                }
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

struct Conn<'a> {
    stream: &'a mut TcpStream,
    buf: &'a mut [u8],
    /// Bytes of `buf` holding data not yet consumed, from its start.
    filled: usize,
    reader: ResponseReader,
}

impl Conn<'_> {
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
