//! Waker slots for shard-local wake-ups ([`super::signal::Signal`], the rate limiter's
//! `Notify`): each waiting future holds a slot index, a dropped future frees its slot for
//! reuse, so the many short waits of a busy shard never pile up.

use std::task::Waker;

#[derive(Default)]
pub struct WakerSlots {
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl WakerSlots {
    /// Stores `waker` in `slot`, taking a slot first when the waiter has none.
    pub fn register(&mut self, slot: &mut Option<usize>, waker: &Waker) {
        match *slot {
            Some(i) => match &mut self.wakers[i] {
                Some(stored) => stored.clone_from(waker),
                empty => *empty = Some(waker.clone()),
            },
            None => {
                let i = match self.free.pop() {
                    Some(i) => {
                        self.wakers[i] = Some(waker.clone());
                        i
                    }
                    None => {
                        self.wakers.push(Some(waker.clone()));
                        self.wakers.len() - 1
                    }
                };
                *slot = Some(i);
            }
        }
    }

    /// Frees a waiter's slot (its future is dropped).
    pub fn release(&mut self, slot: usize) {
        self.wakers[slot] = None;
        self.free.push(slot);
    }

    /// Takes every stored waker, to wake them once no borrow is held.
    pub fn take_all(&mut self) -> Vec<Waker> {
        self.wakers.iter_mut().filter_map(Option::take).collect()
    }

    /// Slots ever allocated (free ones included).
    #[cfg(test)]
    pub fn allocated(&self) -> usize {
        self.wakers.len()
    }
}
