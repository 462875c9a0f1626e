//! Coarse deadlines for connections waiting for their next request.
//!
//! monoio's `Sleep` is 640 bytes; holding one in every idle keep-alive connection's task was
//! most of what an idle connection cost. Idle timeouts need no millisecond precision, so a
//! shard keeps one slot per waiting connection (deadline and waker, in a slab that reuses
//! freed slots) and one ticker task that wakes the expired ones every [`RESOLUTION`]. A
//! waiting connection then holds a 16-byte [`IdleWait`].
//!
//! The same slots carry the rarer wake-ups of idle connections: when a reload removes a
//! listener or the shard drains, [`IdleTimers::kick_all`] wakes every wait, and each
//! connection checks whether that concerns it. An idle connection then needs no waiter slot
//! of its own on any signal.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How late an idle deadline may fire.
pub const RESOLUTION: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct IdleTimers {
    slots: RefCell<Slots>,
}

#[derive(Default)]
struct Slots {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
}

struct Entry {
    deadline: Instant,
    waker: Option<Waker>,
    fired: bool,
    kicked: bool,
}

impl IdleTimers {
    pub fn new() -> Rc<IdleTimers> {
        Rc::new(IdleTimers::default())
    }

    /// Resolves at `deadline`, up to [`RESOLUTION`] late. The slot is taken now (with no
    /// waker until the first poll), so the wait itself is two words.
    pub fn wait_until(self: &Rc<Self>, deadline: Instant) -> IdleWait {
        let mut slots = self.slots.borrow_mut();
        let entry = Some(Entry {
            deadline,
            waker: None,
            fired: false,
            kicked: false,
        });
        let slot = match slots.free.pop() {
            Some(slot) => {
                slots.entries[slot] = entry;
                slot
            }
            None => {
                slots.entries.push(entry);
                slots.entries.len() - 1
            }
        };
        IdleWait {
            timers: self.clone(),
            slot,
        }
    }

    /// Wakes every wait now: each resolves with `false` (not expired).
    pub fn kick_all(&self) {
        self.wake_where(|entry| {
            entry.kicked = true;
            true
        });
    }

    /// Wakes every wait whose deadline has passed. The shard's ticker calls it.
    pub fn fire_expired(&self, now: Instant) {
        self.wake_where(|entry| {
            let expired = !entry.fired && entry.deadline <= now;
            entry.fired |= expired;
            expired
        });
    }

    /// Wakes the waits for which `mark` (which may update the entry) says so.
    fn wake_where(&self, mut mark: impl FnMut(&mut Entry) -> bool) {
        let mut wake = Vec::new();
        {
            let mut slots = self.slots.borrow_mut();
            for entry in slots.entries.iter_mut().flatten() {
                if mark(entry) {
                    wake.extend(entry.waker.take());
                }
            }
        }
        for waker in wake {
            waker.wake();
        }
    }

    /// Waits registered now.
    pub fn waiting(&self) -> usize {
        self.slots.borrow().entries.iter().flatten().count()
    }

    /// The shard's ticker: fires expired waits every [`RESOLUTION`], forever.
    pub async fn tick(self: Rc<Self>) {
        let mut tick = monoio::time::interval(RESOLUTION);
        loop {
            tick.tick().await;
            self.fire_expired(Instant::now());
        }
    }
}

pub struct IdleWait {
    timers: Rc<IdleTimers>,
    slot: usize,
}

/// Resolves with `true` once its deadline has passed, or `false` when kicked
/// ([`IdleTimers::kick_all`]).
impl Future for IdleWait {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let mut slots = self.timers.slots.borrow_mut();
        let Some(entry) = &mut slots.entries[self.slot] else {
            unreachable!("a wait keeps its slot until dropped");
        };
        if entry.fired || Instant::now() >= entry.deadline {
            entry.fired = true;
            return Poll::Ready(true);
        }
        if entry.kicked {
            return Poll::Ready(false);
        }
        match &mut entry.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            None => entry.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for IdleWait {
    fn drop(&mut self) {
        let mut slots = self.timers.slots.borrow_mut();
        slots.entries[self.slot] = None;
        slots.free.push(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::shard::runtime::test_runtime as runtime;

    #[test]
    fn fires_after_the_deadline_and_frees_its_slot() {
        runtime().block_on(async {
            let timers = IdleTimers::new();
            monoio::spawn(timers.clone().tick());
            let start = Instant::now();
            timers.wait_until(start + Duration::from_millis(150)).await;
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(150), "{took:?}");
            assert!(
                took < Duration::from_millis(150) + 3 * RESOLUTION,
                "{took:?}"
            );
            assert_eq!(timers.waiting(), 0);
        });
    }

    #[test]
    fn dropped_waits_free_their_slots_for_reuse() {
        runtime().block_on(async {
            let timers = IdleTimers::new();
            for _ in 0..100 {
                let far = timers.wait_until(Instant::now() + Duration::from_secs(60));
                let _ = monoio::time::timeout(Duration::from_millis(1), far).await;
            }
            assert_eq!(timers.waiting(), 0);
            assert!(timers.slots.borrow().entries.len() <= 1);
        });
    }

    #[test]
    fn a_kick_wakes_every_wait_as_not_expired() {
        runtime().block_on(async {
            let timers = IdleTimers::new();
            let far = Instant::now() + Duration::from_secs(60);
            let waits: Vec<_> = (0..3)
                .map(|_| monoio::spawn(timers.wait_until(far)))
                .collect();
            monoio::time::sleep(Duration::from_millis(10)).await;
            timers.kick_all();
            for wait in waits {
                assert!(!wait.await, "kicked, not expired");
            }
            assert_eq!(timers.waiting(), 0);
        });
    }

    #[test]
    fn a_wait_is_small() {
        assert!(std::mem::size_of::<IdleWait>() <= 16);
    }
}
