//! A shard's own state. Single-threaded: `Rc`, `RefCell` and `Cell` only.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use crate::upstream::{Pool, SmoothWeighted};
use crate::Epoch;

/// The epoch as a shard runs it: the shared compiled config plus this shard's balancer state.
pub struct ShardEpoch {
    pub epoch: Arc<Epoch>,
    /// One balancer per upstream, by upstream index.
    pub balancers: Vec<RefCell<SmoothWeighted>>,
}

impl ShardEpoch {
    pub fn new(epoch: Arc<Epoch>) -> ShardEpoch {
        let balancers = epoch
            .config
            .upstreams
            .iter()
            .map(|u| {
                RefCell::new(SmoothWeighted::new(
                    u.endpoints.iter().map(|e| e.weight.get()),
                ))
            })
            .collect();
        ShardEpoch { epoch, balancers }
    }
}

pub struct Shard {
    pub index: usize,
    /// Cloning this `Rc` per request keeps the epoch alive for the request without touching the
    /// `Arc`'s shared counter.
    current: RefCell<Rc<ShardEpoch>>,
    pub pool: RefCell<Pool>,
    /// Open downstream connections per listener index.
    pub connections: Vec<Cell<usize>>,
    rng: Cell<u64>,
}

impl Shard {
    pub fn new(index: usize, epoch: Arc<Epoch>) -> Shard {
        let listeners = epoch.config.listeners.len();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ ((index as u64 + 1) << 48)
            ^ u64::from(std::process::id());
        Shard {
            index,
            current: RefCell::new(Rc::new(ShardEpoch::new(epoch))),
            pool: RefCell::new(Pool::default()),
            connections: (0..listeners).map(|_| Cell::new(0)).collect(),
            rng: Cell::new(seed | 1),
        }
    }

    pub fn epoch(&self) -> Rc<ShardEpoch> {
        self.current.borrow().clone()
    }

    /// xorshift64*: fast, per shard, good enough for request ids (not for secrets).
    pub fn next_random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// 32 lower-case hex digits.
    pub fn request_id(&self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for word in [self.next_random(), self.next_random()] {
            for shift in (0..16).rev() {
                out.push(HEX[((word >> (shift * 4)) & 0xf) as usize]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_32_hex_and_differ() {
        let config = ringway_config::default_config();
        let shard = Shard::new(0, Arc::new(Epoch::compile(1, config)));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        shard.request_id(&mut a);
        shard.request_id(&mut b);
        assert_eq!(a.len(), 32);
        assert!(a
            .iter()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }
}
