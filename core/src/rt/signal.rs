//! A one-shot, shard-local signal: many tasks wait, one call to `raise` wakes them all. Used
//! for draining (idle connections close, accept loops stop) and stopping a listener.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::wakers::WakerSlots;

/// Waiters live in slots that a dropped [`Wait`] frees again, so the many short waits of
/// keep-alive connections (one per idle period) never pile up.
#[derive(Default)]
pub struct Signal {
    raised: Cell<bool>,
    slots: RefCell<WakerSlots>,
}

impl Signal {
    pub fn new() -> Rc<Signal> {
        Rc::new(Signal::default())
    }

    pub fn is_raised(&self) -> bool {
        self.raised.get()
    }

    pub fn raise(&self) {
        self.raised.set(true);
        let wakers = self.slots.borrow_mut().take_all();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Resolves once the signal is raised.
    pub fn wait(self: &Rc<Self>) -> Wait {
        Wait {
            signal: self.clone(),
            slot: None,
        }
    }
}

pub struct Wait {
    signal: Rc<Signal>,
    slot: Option<usize>,
}

impl Future for Wait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.raised.get() {
            return Poll::Ready(());
        }
        let signal = self.signal.clone();
        signal
            .slots
            .borrow_mut()
            .register(&mut self.slot, cx.waker());
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            self.signal.slots.borrow_mut().release(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_wake_on_raise() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap();
        rt.block_on(async {
            let signal = Signal::new();
            let s = signal.clone();
            let waiter = monoio::spawn(async move {
                s.wait().await;
                7
            });
            assert!(!signal.is_raised());
            signal.raise();
            assert_eq!(waiter.await, 7);
            signal.wait().await;
        });
    }

    #[test]
    fn dropped_waits_free_their_slots() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let signal = Signal::new();
            for _ in 0..100 {
                let wait = signal.wait();
                let _ = monoio::time::timeout(std::time::Duration::from_millis(1), wait).await;
            }
            assert!(signal.slots.borrow().allocated() <= 1);
        });
    }
}
