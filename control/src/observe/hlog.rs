//! The HdrHistogram interval log: one block per route per metrics interval, in the format of
//! the reference implementation's `HistogramLogWriter` (V2 compressed histograms, base64), so
//! that the standard tools (`HistogramLogProcessor`, HistogramLogAnalyzer, the `hdrhistogram`
//! crate's `IntervalLogIterator`) read it.
//!
//! Each start appends a header (comments, `StartTime`, `BaseTime`, the column legend); interval
//! timestamps are seconds since that `BaseTime`. Values are request latencies in microseconds,
//! tagged `Tag=<route name>` (`_unrouted` for requests that matched no route).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::SystemTime;

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;

use ringway_core::metrics::new_histogram;

use super::merge::Interval;

/// The column legend the reference writer puts after the header.
const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n";

/// An open interval log, appended to at the end of every metrics interval.
pub struct HistogramLog {
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
    /// `BaseTime` (and `StartTime`) of the header this process wrote.
    base: SystemTime,
}

impl HistogramLog {
    /// Opens `path` for appending (creating it) and writes a header with `start` as both
    /// `StartTime` and `BaseTime`.
    pub fn open(path: &Path, start: SystemTime) -> io::Result<HistogramLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let mut log = HistogramLog {
            out: BufWriter::new(file),
            serializer: V2DeflateSerializer::new(),
            base: start,
        };
        IntervalLogWriterBuilder::new()
            .add_comment(&format!(
                "[Logged with ringway {}]",
                env!("CARGO_PKG_VERSION")
            ))
            .add_comment("[Histogram log format version 1.3]")
            .add_comment("[Request latency per route in microseconds; Tag=<route name>]")
            .with_start_time(start)
            .with_base_time(start)
            .begin_log_with(&mut log.out, &mut log.serializer)?;
        log.out.write_all(LEGEND.as_bytes())?;
        log.out.flush()?;
        Ok(log)
    }

    /// Appends one block per route that had traffic in `interval`, which ends at `end`.
    pub fn write_interval(&mut self, interval: &Interval, end: SystemTime) -> io::Result<()> {
        let start = interval.start.duration_since(self.base).unwrap_or_default();
        let length = end.duration_since(interval.start).unwrap_or_default();
        // An empty builder writes no header lines: it only lends a writer for the blocks.
        let mut writer =
            IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut self.serializer)?;
        let mut histogram = new_histogram();
        for (route, latency) in &interval.routes {
            if latency.is_empty() {
                continue;
            }
            latency.copy_into(&mut histogram);
            let Some(tag) = Tag::new(route) else {
                // Config names cannot hold ',' or whitespace; skip rather than corrupt the log.
                tracing::warn!(route, "interval log: route name is not a valid tag");
                continue;
            };
            writer
                .write_histogram(&histogram, start, length, Some(tag))
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        self.out.flush()
    }
}
