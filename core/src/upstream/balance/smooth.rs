//! Smooth weighted round robin (the nginx algorithm): each pick adds every endpoint's weight to
//! its running score, takes the highest, and subtracts the total from the winner. Over any
//! window of `total weight` picks each endpoint is chosen exactly `weight` times, interleaved.

#[derive(Clone)]
pub struct SmoothWeighted {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
}

impl SmoothWeighted {
    pub fn new(weights: impl IntoIterator<Item = u32>) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        let total = weights.iter().sum();
        SmoothWeighted {
            current: vec![0; weights.len()],
            weights,
            total,
        }
    }

    /// The next endpoint's index; None when there are no endpoints.
    pub fn pick(&mut self) -> Option<usize> {
        if self.weights.is_empty() {
            return None;
        }
        let mut best = 0;
        for i in 0..self.weights.len() {
            self.current[i] += self.weights[i];
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= self.total;
        Some(best)
    }

    /// The next endpoint among those `eligible` allows; the others sit the round out (their
    /// scores do not move), as nginx does with a peer that is down. None when none is eligible.
    pub fn pick_among(&mut self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut total = 0;
        for i in 0..self.weights.len() {
            if !eligible(i) {
                continue;
            }
            self.current[i] += self.weights[i];
            total += self.weights[i];
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        self.current[best] -= total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honours_weights_exactly_per_cycle() {
        let mut b = SmoothWeighted::new([5, 1, 1]);
        let picks: Vec<usize> = (0..7).map(|_| b.pick().unwrap()).collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
        let mut counts = [0; 3];
        for _ in 0..700 {
            counts[b.pick().unwrap()] += 1;
        }
        assert_eq!(counts, [500, 100, 100]);
    }

    #[test]
    fn empty_has_no_pick() {
        assert_eq!(SmoothWeighted::new([]).pick(), None);
    }

    #[test]
    fn skips_ineligible_endpoints_and_keeps_the_weights_of_the_rest() {
        let mut b = SmoothWeighted::new([3, 1, 1]);
        let mut counts = [0; 3];
        for _ in 0..400 {
            counts[b.pick_among(|i| i != 0).unwrap()] += 1;
        }
        assert_eq!(counts, [0, 200, 200]);
        let mut counts = [0; 3];
        for _ in 0..400 {
            counts[b.pick_among(|i| i != 1).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 0, 100]);
        assert_eq!(b.pick_among(|_| false), None);
        // With everything eligible it is the plain pick.
        let (mut x, mut y) = (
            SmoothWeighted::new([5, 1, 1]),
            SmoothWeighted::new([5, 1, 1]),
        );
        assert!((0..50).all(|_| x.pick() == y.pick_among(|_| true)));
    }

    #[test]
    fn equal_weights_alternate() {
        let mut b = SmoothWeighted::new([1, 1]);
        let picks: Vec<usize> = (0..4).map(|_| b.pick().unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 0, 1]);
    }
}
