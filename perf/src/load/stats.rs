//! What a load run counts, per thread, merged at the end.

use hdrhistogram::Histogram;

/// Highest latency the histograms hold: an hour, in microseconds (larger values are clamped).
const MAX_LATENCY_US: u64 = 3_600_000_000;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Connect,
    Read,
    Write,
    Timeout,
    /// A TLS handshake that failed: an alert, a bad record, or the connection closed or reset
    /// during it.
    Tls,
}

/// Failures, by kind. `status` counts responses that arrived with a status outside 2xx
/// (they are also counted as responses, and their latency is recorded).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Errors {
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
    pub tls: u64,
    pub status: u64,
}

impl Errors {
    pub fn add(&mut self, kind: ErrorKind) {
        match kind {
            ErrorKind::Connect => self.connect += 1,
            ErrorKind::Read => self.read += 1,
            ErrorKind::Write => self.write += 1,
            ErrorKind::Timeout => self.timeout += 1,
            ErrorKind::Tls => self.tls += 1,
        }
    }

    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout + self.tls + self.status
    }

    fn merge(&mut self, other: &Errors) {
        self.connect += other.connect;
        self.read += other.read;
        self.write += other.write;
        self.timeout += other.timeout;
        self.tls += other.tls;
        self.status += other.status;
    }
}

/// One thread's results, or all threads' after [`Stats::merge`].
pub struct Stats {
    /// Latency of every response of the measured window, in microseconds.
    pub latency: Histogram<u64>,
    /// Responses of the measured window.
    pub responses: u64,
    /// Responses of the whole run, warm-up included (CPU per request divides by this).
    pub responses_total: u64,
    /// Body bytes of the measured window's responses.
    pub body_bytes: u64,
    pub errors: Errors,
    /// Open loop: requests that were due before the end but never sent (the target could
    /// not keep up with the schedule on the connections given).
    pub unsent: u64,
    /// TLS handshakes completed in the measured window: full ones, and resumed ones.
    pub handshakes_full: u64,
    pub handshakes_resumed: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            latency: histogram(),
            responses: 0,
            responses_total: 0,
            body_bytes: 0,
            errors: Errors::default(),
            unsent: 0,
            handshakes_full: 0,
            handshakes_resumed: 0,
        }
    }
}

impl Stats {
    pub fn record(&mut self, latency_us: u64, status: u16, body: u64) {
        self.latency.saturating_record(latency_us);
        self.responses += 1;
        self.body_bytes += body;
        if !(200..300).contains(&status) {
            self.errors.status += 1;
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        self.latency
            .add(&other.latency)
            .expect("histograms share their bounds");
        self.responses += other.responses;
        self.responses_total += other.responses_total;
        self.body_bytes += other.body_bytes;
        self.errors.merge(&other.errors);
        self.unsent += other.unsent;
        self.handshakes_full += other.handshakes_full;
        self.handshakes_resumed += other.handshakes_resumed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_histograms() {
        let mut a = Stats::default();
        a.record(100, 200, 10);
        a.record(200, 503, 0);
        a.errors.add(ErrorKind::Timeout);
        let mut b = Stats::default();
        b.record(300, 204, 5);
        b.errors.add(ErrorKind::Connect);
        b.unsent = 7;
        b.errors.add(ErrorKind::Tls);
        b.handshakes_resumed = 2;
        a.merge(&b);
        assert_eq!(a.responses, 3);
        assert_eq!(a.body_bytes, 15);
        assert_eq!(a.errors.status, 1);
        assert_eq!((a.errors.tls, a.errors.total()), (1, 4));
        assert_eq!(a.handshakes_resumed, 2);
        assert_eq!(a.unsent, 7);
        assert_eq!(a.latency.len(), 3);
        assert_eq!(a.latency.max(), 300);
        a.record(MAX_LATENCY_US * 10, 200, 0);
        assert!(a.latency.max() >= MAX_LATENCY_US);
    }
}
