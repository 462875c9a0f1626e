//! Latency histograms that hold memory only for the range of values they have recorded.
//!
//! A [`Latency`] counts values in exactly the buckets of an HdrHistogram from 1 µs to
//! [`HISTOGRAM_MAX_US`] at [`HISTOGRAM_SIGFIG`] significant digits (the same bucket index for
//! every value), but stores only the counts from its lowest to its highest recorded bucket. A
//! full HdrHistogram of that range is 3,328 counts (26 KB) whether it holds one value or a
//! million; a route that served one request in an interval costs one count here, and a route
//! whose latencies lie between 200 µs and 5 ms about 700. Merging adds counts bucket by
//! bucket, so percentiles computed from a merge are those of a full HdrHistogram holding the
//! same values: [`Latency::to_hdr`] gives that histogram for the queries and encodings of the
//! `hdrhistogram` crate.

use hdrhistogram::Histogram;

use super::{new_histogram, HISTOGRAM_MAX_US, HISTOGRAM_SIGFIG};

/// HdrHistogram's layout for a lowest value of 1 (unit magnitude 0) and [`HISTOGRAM_SIGFIG`]:
/// values below `SUB_BUCKET_COUNT` each have their own bucket; above, every power of two
/// is split into `SUB_BUCKET_COUNT / 2` buckets.
const SUB_BUCKET_MAGNITUDE: u32 = sub_bucket_magnitude(HISTOGRAM_SIGFIG);
const SUB_BUCKET_HALF_MAGNITUDE: u32 = SUB_BUCKET_MAGNITUDE - 1;
const SUB_BUCKET_HALF: u64 = 1 << SUB_BUCKET_HALF_MAGNITUDE;
const SUB_BUCKET_MASK: u64 = (1 << SUB_BUCKET_MAGNITUDE) - 1;
const LEADING_ZERO_BASE: u32 = 64 - SUB_BUCKET_MAGNITUDE;
/// The highest index of a full histogram up to [`HISTOGRAM_MAX_US`]: the counts cover up to
/// the next power of two.
const LAST_INDEX: u32 = last_index(HISTOGRAM_MAX_US);

/// `ceil(log2(2 * 10^sigfig))`: single-unit resolution up to twice 10^sigfig.
const fn sub_bucket_magnitude(sigfig: u8) -> u32 {
    let largest = 2 * 10u64.pow(sigfig as u32);
    64 - (largest - 1).leading_zeros()
}

/// The last index of the counts of a histogram whose highest trackable value is `high`.
const fn last_index(high: u64) -> u32 {
    // Buckets until the first untrackable value passes `high` (HdrHistogram's
    // `buckets_to_cover`), then `(buckets + 1) * half` counts.
    let mut smallest_untrackable = 1u64 << SUB_BUCKET_MAGNITUDE;
    let mut buckets = 1u32;
    while smallest_untrackable <= high {
        smallest_untrackable <<= 1;
        buckets += 1;
    }
    ((buckets + 1) << SUB_BUCKET_HALF_MAGNITUDE) - 1
}

/// The bucket index of `value`, as HdrHistogram computes it; a value past the counts is
/// counted as [`HISTOGRAM_MAX_US`], as `Histogram::saturating_record` does.
#[inline]
fn index_of(value: u64) -> u32 {
    let index = unclamped_index(value);
    if index > u64::from(LAST_INDEX) {
        unclamped_index(HISTOGRAM_MAX_US) as u32
    } else {
        index as u32
    }
}

#[inline]
fn unclamped_index(value: u64) -> u64 {
    let bucket = LEADING_ZERO_BASE - (value | SUB_BUCKET_MASK).leading_zeros();
    let sub_bucket = value >> bucket;
    (u64::from(bucket + 1) << SUB_BUCKET_HALF_MAGNITUDE) + sub_bucket - SUB_BUCKET_HALF
}

/// The lowest value counted at `index`.
fn value_at(index: u32) -> u64 {
    let bucket = i64::from(index >> SUB_BUCKET_HALF_MAGNITUDE) - 1;
    let sub_bucket = u64::from(index) & (SUB_BUCKET_HALF - 1);
    if bucket < 0 {
        sub_bucket
    } else {
        (sub_bucket + SUB_BUCKET_HALF) << bucket
    }
}

/// Counts of recorded values (µs) per HdrHistogram bucket, for the populated range only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// The bucket index of `counts[0]`.
    first: u32,
    /// Counts from the lowest to the highest recorded bucket; both ends are non-zero.
    counts: Vec<u64>,
    /// Sum of `counts`.
    total: u64,
}

impl Latency {
    /// Counts one value, in µs. Values past the counts (which reach 2^32 µs, a little past
    /// [`HISTOGRAM_MAX_US`]) count as [`HISTOGRAM_MAX_US`], as `Histogram::saturating_record`
    /// does.
    #[inline]
    pub fn record(&mut self, value: u64) {
        let index = index_of(value);
        // Within the stored range (all but the first few values of a route): one add.
        match self.counts.get_mut(index.wrapping_sub(self.first) as usize) {
            Some(count) => {
                *count += 1;
                self.total += 1;
            }
            None => self.add_at(index, 1),
        }
    }

    /// The number of values recorded.
    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Adds every count of `other` into `self`, bucket by bucket.
    pub fn add(&mut self, other: &Latency) {
        if other.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            self.clone_from(other);
            return;
        }
        let last = other.first + other.counts.len() as u32 - 1;
        self.cover(other.first, last);
        let start = (other.first - self.first) as usize;
        for (into, count) in self.counts[start..].iter_mut().zip(&other.counts) {
            *into += count;
        }
        self.total += other.total;
    }

    /// Forgets every value and frees the counts.
    pub fn clear(&mut self) {
        *self = Latency::default();
    }

    /// The recorded buckets: (lowest value of the bucket, count), lowest first, zeros left out.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts
            .iter()
            .zip(self.first..)
            .filter(|(&count, _)| count > 0)
            .map(|(&count, index)| (value_at(index), count))
    }

    /// The same values in a full HdrHistogram (1 µs to [`HISTOGRAM_MAX_US`]), for its
    /// percentiles, iterators and encodings.
    pub fn to_hdr(&self) -> Histogram<u64> {
        let mut histogram = new_histogram();
        self.copy_into(&mut histogram);
        histogram
    }

    /// Makes `histogram` (one made by [`new_histogram`]) hold exactly these values, reusing its
    /// allocation.
    pub fn copy_into(&self, histogram: &mut Histogram<u64>) {
        histogram.reset();
        for (value, count) in self.buckets() {
            // In range by construction: every index is at most the last of a full histogram.
            histogram.saturating_record_n(value, count);
        }
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.counts.capacity() * std::mem::size_of::<u64>()
    }

    #[cold]
    fn add_at(&mut self, index: u32, count: u64) {
        if self.counts.is_empty() {
            self.first = index;
            self.counts.reserve_exact(1);
            self.counts.push(count);
        } else {
            self.cover(index, index);
            self.counts[(index - self.first) as usize] += count;
        }
        self.total += count;
    }

    /// Widens the stored range to include the indexes `low..=high`; the counts must not be
    /// empty.
    fn cover(&mut self, low: u32, high: u32) {
        let last = self.first + self.counts.len() as u32 - 1;
        if high > last {
            let grow = (high - last) as usize;
            self.counts.reserve_exact(grow);
            self.counts.resize(self.counts.len() + grow, 0);
        }
        if low < self.first {
            let grow = (self.first - low) as usize;
            let mut counts = Vec::with_capacity(grow + self.counts.len());
            counts.resize(grow, 0);
            counts.extend_from_slice(&self.counts);
            self.counts = counts;
            self.first = low;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: a full HdrHistogram with the same bounds.
    fn reference(values: &[u64]) -> Histogram<u64> {
        let mut h = new_histogram();
        for &v in values {
            h.saturating_record(v);
        }
        h
    }

    fn latency(values: &[u64]) -> Latency {
        let mut l = Latency::default();
        for &v in values {
            l.record(v);
        }
        l
    }

    #[test]
    fn the_layout_is_hdrhistograms() {
        let full = new_histogram();
        assert_eq!(
            full.distinct_values(),
            LAST_INDEX as usize + 1,
            "same number of counts"
        );
        // Every bucket boundary maps to the same bucket in both.
        for index in 0..=LAST_INDEX {
            let value = value_at(index);
            assert_eq!(index_of(value), index, "index {index}");
            assert_eq!(full.lowest_equivalent(value), value, "index {index}");
            if index > 0 {
                assert_eq!(full.highest_equivalent(value - 1), value - 1);
            }
        }
    }

    #[test]
    fn one_value_costs_one_count() {
        let l = latency(&[1234]);
        assert_eq!(l.counts.len(), 1);
        assert_eq!(l.len(), 1);
        assert!(l.to_hdr() == reference(&[1234]));
        assert_eq!(Latency::default().heap_bytes(), 0);
    }

    #[test]
    fn values_past_the_top_count_as_the_largest_like_saturating_record() {
        let values = [
            HISTOGRAM_MAX_US,
            HISTOGRAM_MAX_US + 1,
            1 << 32,
            u64::MAX,
            0,
            1,
        ];
        assert!(latency(&values).to_hdr() == reference(&values));
    }

    #[test]
    fn clear_frees_the_counts() {
        let mut l = latency(&[1, 1_000_000]);
        assert!(l.heap_bytes() > 0);
        l.clear();
        assert!(l.is_empty());
        assert_eq!(l.heap_bytes(), 0);
    }

    proptest! {
        /// Recording and merging in any order gives exactly the full histogram of all the
        /// values: every count, so every percentile.
        #[test]
        fn merges_equal_a_reference_histogram(
            parts in proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![1u64..2_000, 1u64..200_000, 1u64..HISTOGRAM_MAX_US * 2],
                    0..60,
                ),
                1..6,
            )
        ) {
            let mut merged = Latency::default();
            let mut all = Vec::new();
            for part in &parts {
                merged.add(&latency(part));
                all.extend_from_slice(part);
            }
            let want = reference(&all);
            let got = merged.to_hdr();
            prop_assert_eq!(merged.len(), all.len() as u64);
            // Not `prop_assert_eq!`: a failure would print 3,328 counts twice.
            prop_assert!(got == want, "the merge differs from the reference");
            for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
                prop_assert_eq!(got.value_at_quantile(q), want.value_at_quantile(q));
            }
            // Both ends of the stored range are recorded buckets.
            if !merged.is_empty() {
                prop_assert!(merged.counts[0] > 0 && *merged.counts.last().unwrap() > 0);
            }
        }
    }
}
