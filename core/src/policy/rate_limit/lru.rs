//! A map of `u64` keys bounded to a fixed number of entries, dropping the least recently used
//! one to make room. Used for rate-limit state per key on the shards and for the node's
//! buckets on the control thread, so that a flood of distinct keys cannot grow memory.
//!
//! Entries sit in a slab (`Vec`) linked in recency order by indices; the map finds a key's
//! slot. Every operation is O(1) and, once the slab has reached its bound, allocation-free:
//! a new key takes over the slot of the one it evicts.

use ahash::AHashMap;

const NIL: u32 = u32::MAX;

struct Node<V> {
    key: u64,
    value: V,
    /// Towards the most recently used.
    prev: u32,
    /// Towards the least recently used.
    next: u32,
}

pub struct Lru<V> {
    map: AHashMap<u64, u32>,
    nodes: Vec<Node<V>>,
    /// Most recently used.
    head: u32,
    /// Least recently used: the next to go.
    tail: u32,
    capacity: usize,
}

impl<V> Lru<V> {
    /// At most `capacity` entries (at least one; and at most `u32::MAX - 1`).
    pub fn new(capacity: usize) -> Lru<V> {
        Lru {
            map: AHashMap::new(),
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity: capacity.clamp(1, (NIL - 1) as usize),
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The value of `key` without changing its recency.
    pub fn peek_mut(&mut self, key: u64) -> Option<&mut V> {
        let slot = *self.map.get(&key)?;
        Some(&mut self.nodes[slot as usize].value)
    }

    /// The value of `key`, now the most recently used; a new one made by `make` when absent.
    /// When that needed room, the least recently used entry is returned with it.
    pub fn get_or_insert_with(
        &mut self,
        key: u64,
        make: impl FnOnce() -> V,
    ) -> (&mut V, Option<(u64, V)>) {
        if let Some(&slot) = self.map.get(&key) {
            self.touch(slot);
            return (&mut self.nodes[slot as usize].value, None);
        }
        let (slot, evicted) = if self.nodes.len() < self.capacity {
            self.nodes.push(Node {
                key,
                value: make(),
                prev: NIL,
                next: NIL,
            });
            ((self.nodes.len() - 1) as u32, None)
        } else {
            let slot = self.tail;
            self.unlink(slot);
            let node = &mut self.nodes[slot as usize];
            let old_key = std::mem::replace(&mut node.key, key);
            let old_value = std::mem::replace(&mut node.value, make());
            self.map.remove(&old_key);
            (slot, Some((old_key, old_value)))
        };
        self.map.insert(key, slot);
        self.push_front(slot);
        (&mut self.nodes[slot as usize].value, evicted)
    }

    /// Every entry, most recently used first.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut V)> {
        self.nodes.iter_mut().map(|n| (n.key, &mut n.value))
    }

    fn touch(&mut self, slot: u32) {
        if self.head != slot {
            self.unlink(slot);
            self.push_front(slot);
        }
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let n = &self.nodes[slot as usize];
            (n.prev, n.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, slot: u32) {
        let old_head = self.head;
        {
            let n = &mut self.nodes[slot as usize];
            n.prev = NIL;
            n.next = old_head;
        }
        match old_head {
            NIL => self.tail = slot,
            h => self.nodes[h as usize].prev = slot,
        }
        self.head = slot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut lru = Lru::new(3);
        for k in 1..=3 {
            lru.get_or_insert_with(k, || k * 10);
        }
        // 1 is used again: 2 is now the oldest.
        assert_eq!(*lru.get_or_insert_with(1, || 0).0, 10);
        let (value, evicted) = lru.get_or_insert_with(4, || 40);
        assert_eq!((*value, evicted), (40, Some((2, 20))));
        assert_eq!(lru.len(), 3);
        assert!(lru.peek_mut(2).is_none());
        // peek does not refresh: 3 is the oldest now.
        *lru.peek_mut(3).unwrap() += 1;
        assert_eq!(lru.get_or_insert_with(5, || 50).1, Some((3, 31)));
        let mut keys: Vec<u64> = lru.iter_mut().map(|(k, _)| k).collect();
        keys.sort_unstable();
        assert_eq!(keys, [1, 4, 5]);
    }

    #[test]
    fn stays_at_its_bound_under_a_flood() {
        let mut lru = Lru::new(100);
        for k in 0..100_000u64 {
            lru.get_or_insert_with(k, || k);
            assert!(lru.len() <= 100);
        }
        assert_eq!(lru.len(), 100);
        for k in 99_900..100_000 {
            assert_eq!(lru.peek_mut(k).copied(), Some(k));
        }
    }

    #[test]
    fn order_survives_many_touches() {
        // A model check against a plain vector kept in recency order.
        let mut lru = Lru::new(8);
        let mut model: Vec<u64> = Vec::new();
        let mut x = 12345u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = x % 16;
            let (_, evicted) = lru.get_or_insert_with(key, || key);
            if let Some(pos) = model.iter().position(|&k| k == key) {
                model.remove(pos);
            } else if model.len() == 8 {
                assert_eq!(evicted.map(|e| e.0), model.pop());
            }
            model.insert(0, key);
        }
    }
}
