//! The access log as a shard writes it: JSON lines appended to a shard-local buffer, handed in
//! batches to the writer thread over a bounded channel. A shard never waits on the disk: when
//! the writer falls behind, batches are dropped and counted.

use std::cell::{Cell, RefCell};
use std::time::SystemTime;

use crossbeam_channel::Sender;

/// A batch is handed over once it holds this many bytes (or on the periodic flush).
const BATCH: usize = 64 * 1024;

pub struct AccessLog {
    buf: RefCell<Vec<u8>>,
    tx: Sender<Vec<u8>>,
    dropped_lines: Cell<u64>,
    lines_in_batch: Cell<u64>,
}

impl AccessLog {
    pub fn new(tx: Sender<Vec<u8>>) -> AccessLog {
        AccessLog {
            buf: RefCell::new(Vec::with_capacity(BATCH)),
            tx,
            dropped_lines: Cell::new(0),
            lines_in_batch: Cell::new(0),
        }
    }

    /// Appends one line written by `write` (without its newline).
    pub fn line(&self, write: impl FnOnce(&mut Vec<u8>)) {
        let full = {
            let mut buf = self.buf.borrow_mut();
            write(&mut buf);
            buf.push(b'\n');
            buf.len() >= BATCH
        };
        self.lines_in_batch.set(self.lines_in_batch.get() + 1);
        if full {
            self.flush();
        }
    }

    /// Hands the buffered lines to the writer thread.
    pub fn flush(&self) {
        let batch = {
            let mut buf = self.buf.borrow_mut();
            if buf.is_empty() {
                return;
            }
            std::mem::replace(&mut *buf, Vec::with_capacity(BATCH))
        };
        let lines = self.lines_in_batch.replace(0);
        if self.tx.try_send(batch).is_err() {
            self.dropped_lines.set(self.dropped_lines.get() + lines);
        }
    }

    /// Lines lost because the writer could not keep up, since the previous call.
    pub fn take_dropped_lines(&self) -> u64 {
        self.dropped_lines.replace(0)
    }
}

/// Writes `bytes` as a JSON string (with quotes). Control characters, quotes and backslashes
/// are escaped; bytes that are not UTF-8 are escaped one by one as `\u00XX`.
pub fn json_str(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let utf8 = std::str::from_utf8(bytes).is_ok();
    out.push(b'"');
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f | 0x7f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            0x80..=0xff if !utf8 => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Writes `time` as RFC 3339 UTC with milliseconds, e.g. `2026-11-26T05:50:04.029Z`.
pub fn rfc3339(out: &mut Vec<u8>, time: SystemTime) {
    use std::io::Write;
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn escapes_control_characters_and_invalid_utf8() {
        let mut out = Vec::new();
        json_str(&mut out, b"a\"b\\c\x01\x7f\n");
        assert_eq!(out, br#""a\"b\\c\u0001\u007f\n""#);
        out.clear();
        json_str(&mut out, b"caf\xe9");
        assert_eq!(out, br#""caf\u00e9""#);
        out.clear();
        json_str(&mut out, "café".as_bytes());
        assert_eq!(out, "\"café\"".as_bytes());
    }

    #[test]
    fn formats_rfc3339() {
        let mut out = Vec::new();
        rfc3339(
            &mut out,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_672_204_029),
        );
        assert_eq!(String::from_utf8(out).unwrap(), "2026-11-26T05:50:04.029Z");
        let mut out = Vec::new();
        rfc3339(
            &mut out,
            SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400),
        );
        assert_eq!(String::from_utf8(out).unwrap(), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn batches_reach_the_writer_and_overflow_is_counted() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let log = AccessLog::new(tx);
        log.line(|b| b.extend_from_slice(b"one"));
        log.flush();
        assert_eq!(rx.try_recv().unwrap(), b"one\n");
        log.line(|b| b.extend_from_slice(b"two"));
        log.flush();
        log.line(|b| b.extend_from_slice(b"three"));
        log.flush();
        assert_eq!(log.take_dropped_lines(), 1);
        assert_eq!(log.take_dropped_lines(), 0);
    }
}
