//! A reusable, shard-local wake-up: tasks wait for the next [`Notify::notify`], which wakes
//! every task waiting at that moment. Rate limiting uses it to wake requests that wait for a
//! lease grant, and to wake the task that sends lease requests to the control thread.
//!
//! Like `rt::signal::Signal`, waiters sit in `rt::wakers` slots that a dropped wait
//! frees, so waits cut short by a timeout never pile up.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::rt::wakers::WakerSlots;

#[derive(Default)]
pub struct Notify {
    /// Bumped by every `notify`; a wait ends once it differs from what the wait started with.
    round: Cell<u64>,
    slots: RefCell<WakerSlots>,
}

impl Notify {
    pub fn new() -> Rc<Notify> {
        Rc::new(Notify::default())
    }

    /// Wakes every task waiting now.
    pub fn notify(&self) {
        self.round.set(self.round.get().wrapping_add(1));
        let wakers = self.slots.borrow_mut().take_all();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Resolves at the first `notify` after this call.
    pub fn notified(self: &Rc<Self>) -> Notified {
        Notified {
            notify: self.clone(),
            round: self.round.get(),
            slot: None,
        }
    }
}

pub struct Notified {
    notify: Rc<Notify>,
    round: u64,
    slot: Option<usize>,
}

impl Future for Notified {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.round.get() != self.round {
            return Poll::Ready(());
        }
        let notify = self.notify.clone();
        notify
            .slots
            .borrow_mut()
            .register(&mut self.slot, cx.waker());
        Poll::Pending
    }
}

impl Drop for Notified {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            self.notify.slots.borrow_mut().release(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    use crate::rt::runtime::test_runtime as runtime;

    #[test]
    fn wakes_waiters_of_the_moment_and_is_reusable() {
        runtime().block_on(async {
            let notify = Notify::new();
            for round in 0..3 {
                let n = notify.clone();
                let waiter = monoio::spawn(async move {
                    n.notified().await;
                    round
                });
                monoio::time::sleep(Duration::from_millis(1)).await;
                notify.notify();
                assert_eq!(waiter.await, round);
            }
            // A notify before the wait is polled still counts: the round moved on.
            let wait = notify.notified();
            notify.notify();
            wait.await;
        });
    }

    #[test]
    fn timed_out_waits_free_their_slots() {
        runtime().block_on(async {
            let notify = Notify::new();
            for _ in 0..100 {
                let wait = notify.notified();
                let _ = monoio::time::timeout(Duration::from_millis(1), wait).await;
            }
            assert!(notify.slots.borrow().allocated() <= 1);
        });
    }
}
