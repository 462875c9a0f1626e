//! Maglev consistent hashing (Eisenbud et al., NSDI 2016) with weights: a lookup table of a
//! prime size, filled once per epoch on the control thread and shared read-only by every
//! shard. Each endpoint walks its own permutation of the slots (an offset and a skip derived
//! from its address) and claims the next free slot on its turn; an endpoint takes a turn in
//! proportion to its weight (the heaviest one every round), so its share of slots is its share
//! of the total weight. Removing an endpoint frees its slots and disturbs the others' little:
//! a key moves almost only when its endpoint left.

/// Slots in a production table: a prime well above any endpoint count times 100.
pub const TABLE_SIZE: usize = 65537;

/// A stable 64-bit hash (FNV-1a, then the murmur3 finaliser to spread the bits): the same
/// bytes give the same hash on every shard, every run and every build, so that two gateways
/// with the same endpoints send a key to the same endpoint.
pub fn hash64(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Seeds of the two hashes that make an endpoint's permutation.
const OFFSET_SEED: u64 = 0x6d61_676c_6576_0001;
const SKIP_SEED: u64 = 0x6d61_676c_6576_0002;

pub struct Maglev {
    /// Endpoint index per slot; empty when there are no endpoints.
    table: Box<[u32]>,
    endpoints: usize,
}

/// Slots walked past ineligible endpoints before checking that any endpoint is eligible.
const WALK_BEFORE_CHECK: usize = 64;

impl Maglev {
    /// Builds the table for endpoints given as (stable identity, weight), e.g. the address as
    /// text; `size` must be a prime (so that every skip visits every slot).
    pub fn new<'a>(endpoints: impl IntoIterator<Item = (&'a [u8], u32)>, size: usize) -> Maglev {
        struct Walk {
            offset: u64,
            skip: u64,
            next: u64,
            weight: u64,
            credit: u64,
        }
        let size64 = size as u64;
        let mut walks: Vec<Walk> = endpoints
            .into_iter()
            .map(|(id, weight)| Walk {
                offset: hash64(id, OFFSET_SEED) % size64,
                skip: hash64(id, SKIP_SEED) % (size64 - 1) + 1,
                next: 0,
                weight: u64::from(weight.max(1)),
                credit: 0,
            })
            .collect();
        if walks.is_empty() {
            return Maglev {
                table: Box::new([]),
                endpoints: 0,
            };
        }
        let heaviest = walks.iter().map(|w| w.weight).max().unwrap_or(1);
        let mut table = vec![u32::MAX; size];
        let mut filled = 0;
        'fill: loop {
            for (index, walk) in walks.iter_mut().enumerate() {
                walk.credit += walk.weight;
                if walk.credit < heaviest {
                    continue;
                }
                walk.credit -= heaviest;
                // The permutation visits every slot, so a free one turns up while any is left.
                loop {
                    let slot = ((walk.offset + walk.next * walk.skip) % size64) as usize;
                    walk.next += 1;
                    if table[slot] == u32::MAX {
                        table[slot] = index as u32;
                        break;
                    }
                }
                filled += 1;
                if filled == size {
                    break 'fill;
                }
            }
        }
        Maglev {
            table: table.into_boxed_slice(),
            endpoints: walks.len(),
        }
    }

    /// The endpoint index for a key's hash; `None` when there are no endpoints.
    pub fn lookup(&self, hash: u64) -> Option<usize> {
        let len = self.table.len() as u64;
        (len != 0).then(|| self.table[(hash % len) as usize] as usize)
    }

    /// The endpoint for a key's hash among those `eligible` allows: the key's own slot when
    /// its endpoint is eligible (so keys of eligible endpoints never move), else the next
    /// slot of the table whose endpoint is. Slots are spread over the endpoints, so the keys
    /// of an ineligible endpoint spread over the others, each key always to the same one
    /// while eligibility stays the same. `None` when no endpoint is eligible.
    pub fn lookup_among(&self, hash: u64, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.table.len();
        if len == 0 {
            return None;
        }
        let start = (hash % len as u64) as usize;
        for step in 0..len {
            if step == WALK_BEFORE_CHECK && !(0..self.endpoints).any(&eligible) {
                return None;
            }
            let endpoint = self.table[(start + step) % len] as usize;
            if eligible(endpoint) {
                return Some(endpoint);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(endpoints: &[(String, u32)]) -> Maglev {
        Maglev::new(
            endpoints.iter().map(|(id, w)| (id.as_bytes(), *w)),
            TABLE_SIZE,
        )
    }

    fn names(n: usize) -> Vec<(String, u32)> {
        (0..n).map(|i| (format!("10.0.0.{i}:9000"), 1)).collect()
    }

    const KEYS: u64 = 200_000;

    fn key_hash(k: u64) -> u64 {
        hash64(format!("user-{k}").as_bytes(), 7)
    }

    fn counts(m: &Maglev, n: usize) -> Vec<u64> {
        let mut counts = vec![0; n];
        for k in 0..KEYS {
            counts[m.lookup(key_hash(k)).unwrap()] += 1;
        }
        counts
    }

    fn within(count: u64, share: f64, tolerance: f64) -> bool {
        let got = count as f64 / KEYS as f64;
        (got - share).abs() <= share * tolerance
    }

    #[test]
    fn keys_spread_evenly() {
        for n in [2, 5, 10] {
            let m = table(&names(n));
            for (i, &c) in counts(&m, n).iter().enumerate() {
                assert!(
                    within(c, 1.0 / n as f64, 0.05),
                    "{n} endpoints: endpoint {i} got {c} of {KEYS}"
                );
            }
        }
    }

    #[test]
    fn weights_are_honoured() {
        let endpoints: Vec<(String, u32)> = [5, 3, 1, 1]
            .iter()
            .enumerate()
            .map(|(i, &w)| (format!("10.0.1.{i}:80"), w))
            .collect();
        let m = table(&endpoints);
        let total = 10.0;
        for (i, &c) in counts(&m, 4).iter().enumerate() {
            let share = f64::from(endpoints[i].1) / total;
            assert!(within(c, share, 0.05), "endpoint {i}: {c} of {KEYS}");
        }
    }

    #[test]
    fn removing_an_endpoint_moves_only_its_keys() {
        let before = names(5);
        let removed = 2;
        let mut after = before.clone();
        after.remove(removed);
        let (old, new) = (table(&before), table(&after));
        let mut moved = 0;
        let mut moved_elsewhere = 0;
        for k in 0..KEYS {
            let h = key_hash(k);
            let was = old.lookup(h).unwrap();
            let now = new.lookup(h).unwrap();
            let now_in_old = now + usize::from(now >= removed);
            if was != now_in_old {
                moved += 1;
                if was != removed {
                    moved_elsewhere += 1;
                }
            }
        }
        let fraction = moved as f64 / KEYS as f64;
        assert!(
            (fraction - 0.2).abs() < 0.02,
            "moved {fraction:.4} of the keys; the removed endpoint had 0.2"
        );
        // Maglev trades a little stability for evenness; keys of the endpoints that stayed
        // almost all stay.
        let elsewhere = moved_elsewhere as f64 / KEYS as f64;
        assert!(
            elsewhere < 0.01,
            "{elsewhere:.4} of keys moved between endpoints that stayed"
        );
    }

    #[test]
    fn same_input_same_table_and_empty_has_no_pick() {
        let a = table(&names(3));
        let b = table(&names(3));
        assert!((0..1000).all(|k| a.lookup(key_hash(k)) == b.lookup(key_hash(k))));
        assert_eq!(table(&[]).lookup(42), None);
        let one = table(&names(1));
        assert!((0..100).all(|k| one.lookup(key_hash(k)) == Some(0)));
    }

    #[test]
    fn an_ineligible_endpoint_moves_only_its_own_keys_and_spreads_them() {
        let m = table(&names(5));
        let down = 2;
        let mut moved_to = [0u64; 5];
        for k in 0..KEYS {
            let h = key_hash(k);
            let home = m.lookup(h).unwrap();
            let now = m.lookup_among(h, |i| i != down).unwrap();
            if home == down {
                moved_to[now] += 1;
                assert_eq!(m.lookup_among(h, |i| i != down), Some(now), "deterministic");
            } else {
                assert_eq!(now, home, "key {k} of an eligible endpoint moved");
            }
        }
        assert_eq!(moved_to[down], 0);
        let moved: u64 = moved_to.iter().sum();
        for (i, &n) in moved_to.iter().enumerate().filter(|&(i, _)| i != down) {
            assert!(
                n as f64 > moved as f64 * 0.15,
                "endpoint {i} got {n} of {moved}"
            );
        }
        assert_eq!(m.lookup_among(7, |_| false), None);
        assert_eq!(m.lookup_among(7, |i| i == 4), Some(4));
    }

    #[test]
    fn hash_is_stable() {
        // Pinned so that a change of the function (which would move every key) is deliberate.
        assert_eq!(hash64(b"", 0), 0xefd0_1f60_ba99_2926);
        assert_eq!(hash64(b"alice", 0), 0x3507_d047_a67c_08f4);
        assert_ne!(hash64(b"a", 0), hash64(b"a", 1));
        assert_ne!(hash64(b"ab", 0), hash64(b"ba", 0));
    }
}
