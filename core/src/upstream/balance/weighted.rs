//! Weighted random choice, and least request by the power of two choices on top of it.

/// Endpoints by cumulative weight: a random number below the total falls on an endpoint with a
/// probability of its share of the weight.
#[derive(Clone)]
pub struct WeightedRandom {
    /// `ends[i]`: the sum of the weights of endpoints 0..=i.
    ends: Vec<u64>,
}

impl WeightedRandom {
    pub fn new(weights: impl IntoIterator<Item = u32>) -> Self {
        let mut sum = 0;
        let ends = weights
            .into_iter()
            .map(|w| {
                sum += u64::from(w);
                sum
            })
            .collect();
        WeightedRandom { ends }
    }

    fn total(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    fn weight(&self, i: usize) -> u64 {
        self.ends[i] - if i == 0 { 0 } else { self.ends[i - 1] }
    }

    /// The endpoint whose weight range holds `point` (below the total).
    fn at(&self, point: u64) -> usize {
        self.ends.partition_point(|&end| end <= point)
    }

    /// One endpoint, drawn by weight; None when there are none. (The modulo bias is below
    /// total / 2^64: nothing.)
    pub fn pick(&self, random: u64) -> Option<usize> {
        let total = self.total();
        (total != 0).then(|| self.at(random % total))
    }

    /// One endpoint drawn by weight among those `eligible` allows; None when none is.
    pub fn pick_among(&self, random: u64, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let total: u64 = (0..self.ends.len())
            .filter(|&i| eligible(i))
            .map(|i| self.weight(i))
            .sum();
        if total == 0 {
            return None;
        }
        let mut point = random % total;
        for i in 0..self.ends.len() {
            if !eligible(i) {
                continue;
            }
            let weight = self.weight(i);
            if point < weight {
                return Some(i);
            }
            point -= weight;
        }
        None
    }

    /// [`WeightedRandom::pick_less_loaded`] among the endpoints `eligible` allows.
    pub fn pick_less_loaded_among(
        &self,
        mut random: impl FnMut() -> u64,
        in_flight: impl Fn(usize) -> u32,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let first = self.pick_among(random(), &eligible)?;
        let Some(second) = self.pick_among(random(), |i| i != first && eligible(i)) else {
            return Some(first);
        };
        Some(if in_flight(second) < in_flight(first) {
            second
        } else {
            first
        })
    }

    /// Power of two choices: two distinct endpoints drawn by weight (the second among the
    /// others), and the one with fewer requests in flight; on a tie the first, so that with
    /// equal loads the choice is exactly the weighted draw.
    pub fn pick_less_loaded(
        &self,
        mut random: impl FnMut() -> u64,
        in_flight: impl Fn(usize) -> u32,
    ) -> Option<usize> {
        let first = self.pick(random())?;
        let rest = self.total() - self.weight(first);
        if rest == 0 {
            return Some(first);
        }
        // Draw below the others' total, then step over the first endpoint's range.
        let mut point = random() % rest;
        let first_start = self.ends[first] - self.weight(first);
        if point >= first_start {
            point += self.weight(first);
        }
        let second = self.at(point);
        Some(if in_flight(second) < in_flight(first) {
            second
        } else {
            first
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// xorshift64*, as the shard's `next_random`.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let state = Cell::new(seed | 1);
        move || {
            let mut x = state.get();
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            state.set(x);
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    const DRAWS: usize = 100_000;

    fn assert_shares(counts: &[usize], weights: &[u32]) {
        let total: u32 = weights.iter().sum();
        for (i, (&c, &w)) in counts.iter().zip(weights).enumerate() {
            let want = f64::from(w) / f64::from(total);
            let got = c as f64 / DRAWS as f64;
            assert!(
                (got - want).abs() <= want * 0.03,
                "endpoint {i}: share {got:.4}, weight share {want:.4} ({counts:?})"
            );
        }
    }

    #[test]
    fn random_honours_weights() {
        let weights = [5, 3, 1, 1];
        let b = WeightedRandom::new(weights);
        let mut random = rng(1);
        let mut counts = [0; 4];
        for _ in 0..DRAWS {
            counts[b.pick(random()).unwrap()] += 1;
        }
        assert_shares(&counts, &weights);
    }

    #[test]
    fn least_request_with_equal_loads_honours_weights() {
        let weights = [5, 3, 1, 1];
        let b = WeightedRandom::new(weights);
        let mut random = rng(2);
        let mut counts = [0; 4];
        for _ in 0..DRAWS {
            counts[b.pick_less_loaded(&mut random, |_| 3).unwrap()] += 1;
        }
        assert_shares(&counts, &weights);
    }

    #[test]
    fn least_request_prefers_the_less_loaded() {
        let b = WeightedRandom::new([1, 1, 1]);
        let mut random = rng(3);
        let loads = [10, 0, 10];
        let mut counts = [0; 3];
        for _ in 0..3000 {
            counts[b.pick_less_loaded(&mut random, |i| loads[i]).unwrap()] += 1;
        }
        // Endpoint 1 wins whenever it is one of the two drawn: two pairs of three.
        let share = counts[1] as f64 / 3000.0;
        assert!((share - 2.0 / 3.0).abs() < 0.05, "{counts:?}");
        // Two endpoints: the idle one always wins, as the two drawn are distinct.
        let two = WeightedRandom::new([9, 1]);
        assert!((0..1000).all(|_| two.pick_less_loaded(&mut random, |i| [5, 4][i]) == Some(1)));
    }

    #[test]
    fn draws_among_the_eligible_by_weight() {
        let weights = [5, 3, 1, 1];
        let b = WeightedRandom::new(weights);
        let mut random = rng(5);
        let mut counts = [0; 4];
        for _ in 0..DRAWS {
            counts[b.pick_among(random(), |i| i != 1).unwrap()] += 1;
        }
        assert_eq!(counts[1], 0);
        let without = [counts[0], counts[2], counts[3]];
        let total = DRAWS as f64;
        for (c, share) in without.iter().zip([5.0 / 7.0, 1.0 / 7.0, 1.0 / 7.0]) {
            let got = *c as f64 / total;
            assert!((got - share).abs() < share * 0.03, "{counts:?}");
        }
        assert_eq!(b.pick_among(random(), |_| false), None);
        let mut counts = [0; 4];
        for _ in 0..1000 {
            let i = b
                .pick_less_loaded_among(&mut random, |_| 0, |i| i >= 2)
                .unwrap();
            counts[i] += 1;
        }
        assert_eq!(counts[0] + counts[1], 0);
        // Of two eligible endpoints the less loaded always wins; one alone is always taken.
        let loads = [0, 0, 5, 1];
        assert!((0..100)
            .all(|_| b.pick_less_loaded_among(&mut random, |i| loads[i], |i| i >= 2) == Some(3)));
        assert!(
            (0..100).all(|_| b.pick_less_loaded_among(&mut random, |_| 0, |i| i == 2) == Some(2))
        );
    }

    #[test]
    fn degenerate_sets() {
        let mut random = rng(4);
        assert_eq!(WeightedRandom::new([]).pick(random()), None);
        assert_eq!(
            WeightedRandom::new([]).pick_less_loaded(&mut random, |_| 0),
            None
        );
        let one = WeightedRandom::new([7]);
        assert_eq!(one.pick_less_loaded(&mut random, |_| 9), Some(0));
        assert_eq!(one.pick(u64::MAX), Some(0));
    }
}
