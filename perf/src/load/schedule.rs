//! When each request should be sent, and how its latency is counted.
//!
//! Open loop (a `--rate`): the whole run is one stream of `rate` requests per second, evenly
//! spaced; request `k` of that stream is due at `k / rate` seconds after the start and goes to
//! connection `k % connections`. So connection `c` sends its `i`-th request at
//! `(i * connections + c) / rate`. A connection has one request in flight at a time; when a
//! response comes late, the next request goes out at once, late, and its latency is still
//! counted from when it was due. That is the coordinated-omission correction wrk2 makes: a
//! stall shows up in every request it delayed, not only in the one that hit it.
//!
//! Closed loop (no rate): each connection sends its next request as soon as the previous
//! response is in, and latency is counted from the actual send.

use std::time::{Duration, Instant};

/// Due times of one connection's requests in an open-loop run.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    rate: u64,
    connections: u64,
    connection: u64,
}

impl Schedule {
    /// `connection` is this connection's index among all `connections` of the run (all
    /// threads together); `rate` is the run's total, in requests per second.
    pub fn new(start: Instant, rate: u64, connections: u64, connection: u64) -> Schedule {
        assert!(rate > 0 && connection < connections);
        Schedule {
            start,
            rate,
            connections,
            connection,
        }
    }

    /// When this connection's `i`-th request (from 0) is due, as an offset from the start.
    /// Exact integer arithmetic: no drift however long the run.
    pub fn offset(&self, i: u64) -> Duration {
        let k = u128::from(i) * u128::from(self.connections) + u128::from(self.connection);
        let nanos = k * 1_000_000_000 / u128::from(self.rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// When this connection's `i`-th request is due.
    pub fn due(&self, i: u64) -> Instant {
        self.start + self.offset(i)
    }

    /// How many of this connection's requests are due before `end` (a run's schedule ends
    /// there; requests still unsent then are reported as such).
    pub fn due_before(&self, end: Instant) -> u64 {
        let span = end.saturating_duration_since(self.start).as_nanos();
        // k = i * connections + connection < span * rate / 1e9, smallest k not below it:
        let ks = (span * u128::from(self.rate)).div_ceil(1_000_000_000);
        let c = u128::from(self.connection);
        if ks <= c {
            return 0;
        }
        u64::try_from((ks - c).div_ceil(u128::from(self.connections))).unwrap_or(u64::MAX)
    }
}

/// The latency recorded for one response, in microseconds (the unit of every histogram and
/// log here), never 0 so that it always lands in the histogram's range.
pub fn latency_us(counted_from: Instant, done: Instant) -> u64 {
    let micros = done.saturating_duration_since(counted_from).as_micros();
    u64::try_from(micros).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_interleave_into_one_even_stream() {
        let start = Instant::now();
        // 1000 req/s over 4 connections: the stream is one request per millisecond, and
        // connection c takes every 4th slot starting at slot c.
        let schedules: Vec<_> = (0..4).map(|c| Schedule::new(start, 1000, 4, c)).collect();
        let mut offsets: Vec<Duration> = schedules
            .iter()
            .flat_map(|s| (0..5).map(|i| s.offset(i)))
            .collect();
        offsets.sort();
        let expect: Vec<Duration> = (0..20).map(Duration::from_millis).collect();
        assert_eq!(offsets, expect);
        assert_eq!(schedules[1].offset(2), Duration::from_millis(9));
        assert_eq!(schedules[1].due(2), start + Duration::from_millis(9));
    }

    #[test]
    fn no_drift_with_rates_that_do_not_divide_a_second() {
        let s = Schedule::new(Instant::now(), 3, 1, 0);
        assert_eq!(s.offset(1), Duration::from_nanos(333_333_333));
        assert_eq!(s.offset(3), Duration::from_secs(1));
        assert_eq!(s.offset(3 * 3600), Duration::from_secs(3600));
        let s = Schedule::new(Instant::now(), 7_000, 7, 6);
        // slot 7 * 1_000_000 + 6 of a 7000/s stream
        assert_eq!(
            s.offset(1_000_000),
            Duration::from_nanos((7_000_006u64 * 1_000_000_000) / 7_000)
        );
    }

    #[test]
    fn due_before_counts_slots_strictly_before_the_end() {
        let start = Instant::now();
        let s = Schedule::new(start, 1000, 4, 1); // slots at 1, 5, 9, ... ms
        assert_eq!(s.due_before(start), 0);
        assert_eq!(s.due_before(start + Duration::from_millis(1)), 0);
        assert_eq!(s.due_before(start + Duration::from_micros(1001)), 1);
        assert_eq!(s.due_before(start + Duration::from_millis(5)), 1);
        assert_eq!(s.due_before(start + Duration::from_millis(10)), 3);
        // Over every connection, a whole second at 1000/s is 1000 due requests.
        let total: u64 = (0..4)
            .map(|c| Schedule::new(start, 1000, 4, c).due_before(start + Duration::from_secs(1)))
            .sum();
        assert_eq!(total, 1000);
        for i in 0..100 {
            assert!(s.due(i) < s.due(i + 1));
        }
    }

    #[test]
    fn a_stall_is_counted_in_every_request_it_delays() {
        // One connection at 100 req/s: due every 10 ms. The server stalls 1 s on request 0,
        // then answers in 1 ms. The requests due during the stall go out late, one after
        // another, and each is counted from its due time, as wrk2 does.
        let start = Instant::now();
        let s = Schedule::new(start, 100, 1, 0);
        let mut now = start;
        let mut latencies = Vec::new();
        for i in 0..200 {
            let due = s.due(i);
            let send = now.max(due);
            let service = if i == 0 {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(1)
            };
            now = send + service;
            latencies.push(latency_us(due, now));
        }
        assert_eq!(latencies[0], 1_000_000);
        // Request 1 was due at 10 ms, sent at 1000 ms, done at 1001 ms.
        assert_eq!(latencies[1], 991_000);
        assert_eq!(latencies[2], 982_000);
        // Request i of the backlog is counted 1000 - 9i ms: the backlog is gone at i = 111,
        // and from then on each takes its 1 ms.
        let late = latencies.iter().filter(|&&l| l > 1_000).count();
        assert_eq!(late, 111);
        assert_eq!(latencies[150], 1_000);
        // A closed-loop measurement of the same run would have one slow sample out of 200.
    }

    #[test]
    fn latency_is_at_least_one_microsecond_and_never_negative() {
        let t = Instant::now();
        assert_eq!(latency_us(t, t), 1);
        assert_eq!(latency_us(t + Duration::from_secs(1), t), 1);
        assert_eq!(latency_us(t, t + Duration::from_micros(2500)), 2500);
    }
}
