//! Coarse deadlines: for connections waiting for their next request, and for the long
//! timeouts (seconds) of the requests in flight.
//!
//! monoio's `Sleep` is 640 bytes; holding one in every idle keep-alive connection's task was
//! most of what an idle connection cost. Idle timeouts need no millisecond precision, so a
//! shard keeps one slot per waiting connection (deadline and waker, in a slab that reuses
//! freed slots) and one ticker task that wakes the expired ones every [`RESOLUTION`]. A
//! waiting connection then holds a 16-byte [`CoarseWait`].
//!
//! A request's own timeouts (header, body, upstream connect, request and idle) are seconds
//! long and almost never fire, yet each read and write of a request used to arm a monoio
//! timer: three per proxied request, about 2,500 instructions with the timer wheel's upkeep,
//! and a timer entry aligned to 128 bytes that made every request's boxed state machine an
//! aligned allocation. [`CoarseTimers::within`] bounds an operation with a slot here instead
//! when its deadline is at least [`COARSE_FROM`] away, and with a monoio timer only when it is
//! nearer (there, [`RESOLUTION`] would be a large error).
//!
//! The same slots carry the rarer wake-ups of idle connections: when a reload removes a
//! listener or the shard drains, [`CoarseTimers::kick_all`] wakes every wait, and each
//! connection checks whether that concerns it. An idle connection then needs no waiter slot
//! of its own on any signal.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How late a coarse deadline may fire.
pub const RESOLUTION: Duration = Duration::from_millis(100);

/// Deadlines at least this far away are coarse: firing up to [`RESOLUTION`] late is an
/// error of 5% at most.
pub const COARSE_FROM: Duration = Duration::from_secs(2);

/// What [`CoarseTimers::within`] returns when the deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

pub struct CoarseTimers {
    slots: RefCell<Slots>,
    /// The time at the last tick: at most about [`RESOLUTION`] old, and good enough to judge
    /// coarse deadlines without reading the clock (a few reads per request, otherwise).
    recent: Cell<Instant>,
}

impl Default for CoarseTimers {
    fn default() -> Self {
        CoarseTimers {
            slots: RefCell::default(),
            recent: Cell::new(Instant::now()),
        }
    }
}

#[derive(Default)]
struct Slots {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
}

struct Entry {
    deadline: Instant,
    waker: Option<Waker>,
    /// A socket to shut down at the deadline instead of waking anyone ([`ShutdownGuard`]).
    shutdown: Option<RawFd>,
    fired: bool,
    kicked: bool,
}

impl CoarseTimers {
    pub fn new() -> Rc<CoarseTimers> {
        Rc::new(CoarseTimers::default())
    }

    /// Resolves at `deadline`, up to [`RESOLUTION`] late. The slot is taken now (with no
    /// waker until the first poll), so the wait itself is two words.
    pub fn wait_until(self: &Rc<Self>, deadline: Instant) -> CoarseWait {
        CoarseWait {
            timers: self.clone(),
            slot: self.take_slot(deadline, None),
        }
    }

    /// Shuts the socket `fd` down (both ways) if `deadline` passes, up to [`RESOLUTION`] late,
    /// before the guard is dropped: an operation blocked on it then fails at once, and keeps
    /// no buffer the way a cancelled one would. The caller holds the socket open for as long
    /// as the guard lives (the guard goes with the operation's future, which borrows it).
    pub fn shutdown_at(self: &Rc<Self>, fd: RawFd, deadline: Instant) -> ShutdownGuard {
        ShutdownGuard {
            timers: self.clone(),
            slot: self.take_slot(deadline, Some(fd)),
        }
    }

    fn take_slot(&self, deadline: Instant, shutdown: Option<RawFd>) -> usize {
        let mut slots = self.slots.borrow_mut();
        let entry = Some(Entry {
            deadline,
            waker: None,
            shutdown,
            fired: false,
            kicked: false,
        });
        match slots.free.pop() {
            Some(slot) => {
                slots.entries[slot] = entry;
                slot
            }
            None => {
                slots.entries.push(entry);
                slots.entries.len() - 1
            }
        }
    }

    fn free_slot(&self, slot: usize) {
        let mut slots = self.slots.borrow_mut();
        slots.entries[slot] = None;
        slots.free.push(slot);
    }

    /// The deadline `timeout` from now. For a coarse timeout (at least [`COARSE_FROM`]) it is
    /// counted from the last tick, without reading the clock: up to a [`RESOLUTION`] early,
    /// as it may fire up to one late.
    pub fn after(&self, timeout: Duration) -> Instant {
        if timeout >= COARSE_FROM {
            self.recent.get() + timeout
        } else {
            Instant::now() + timeout
        }
    }

    /// `fut`, bounded by `deadline`: [`Elapsed`] once it has passed and `fut` has not
    /// finished. `fut` is polled first, so one that is ready at once is never timed out.
    pub async fn within<F: Future>(
        self: &Rc<Self>,
        deadline: Instant,
        fut: F,
    ) -> Result<F::Output, Elapsed> {
        let mut fut = std::pin::pin!(fut);
        // `recent` lags by up to a tick: a deadline may count as far when it is a tick nearer
        // than COARSE_FROM, which keeps the error of firing late small all the same.
        if deadline < self.recent.get() + COARSE_FROM {
            // Boxed: monoio's timer entry is aligned to 128 bytes, and held inline it would
            // make every future that awaits this one an over-aligned allocation.
            let mut sleep = Box::pin(monoio::time::sleep_until(deadline.into()));
            return monoio::select! {
                biased;
                out = &mut fut => Ok(out),
                _ = &mut sleep => Err(Elapsed),
            };
        }
        loop {
            // A kick (drain, listener removed) concerns idle connections only: wait again.
            let wait = self.wait_until(deadline);
            monoio::select! {
                biased;
                out = &mut fut => return Ok(out),
                expired = wait => if expired {
                    return Err(Elapsed);
                },
            }
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
        self.recent.set(now);
        self.wake_where(|entry| {
            let expired = !entry.fired && entry.deadline <= now;
            entry.fired |= expired;
            if let (true, Some(fd)) = (expired, entry.shutdown) {
                crate::sys::shutdown(fd);
            }
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

pub struct CoarseWait {
    timers: Rc<CoarseTimers>,
    slot: usize,
}

/// Resolves with `true` once its deadline has passed, or `false` when kicked
/// ([`CoarseTimers::kick_all`]).
impl Future for CoarseWait {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let mut slots = self.timers.slots.borrow_mut();
        let Some(entry) = &mut slots.entries[self.slot] else {
            unreachable!("a wait keeps its slot until dropped");
        };
        if entry.fired || self.timers.recent.get() >= entry.deadline {
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

impl Drop for CoarseWait {
    fn drop(&mut self) {
        self.timers.free_slot(self.slot);
    }
}

/// See [`CoarseTimers::shutdown_at`].
pub struct ShutdownGuard {
    timers: Rc<CoarseTimers>,
    slot: usize,
}

impl ShutdownGuard {
    /// The deadline passed and the socket was shut down.
    pub fn fired(&self) -> bool {
        let slots = self.timers.slots.borrow();
        slots.entries[self.slot].as_ref().is_some_and(|e| e.fired)
    }
}

impl Drop for ShutdownGuard {
    fn drop(&mut self) {
        self.timers.free_slot(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::rt::runtime::test_runtime as runtime;

    #[test]
    fn fires_after_the_deadline_and_frees_its_slot() {
        runtime().block_on(async {
            let timers = CoarseTimers::new();
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
            let timers = CoarseTimers::new();
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
            let timers = CoarseTimers::new();
            let far = Instant::now() + Duration::from_secs(60);
            let waits: Vec<_> = (0..3)
                .map(|_| monoio::spawn(timers.wait_until(far)))
                .collect();
            // Spawned last, the kicker runs after each wait has been polled once and holds a
            // waker: the kick has to wake them, not just mark them.
            let kicker = timers.clone();
            monoio::spawn(async move { kicker.kick_all() });
            for wait in waits {
                assert!(!wait.await, "kicked, not expired");
            }
            assert_eq!(timers.waiting(), 0);
        });
    }

    #[test]
    fn within_passes_results_through_and_times_out_near_and_far_deadlines() {
        runtime().block_on(async {
            let timers = CoarseTimers::new();
            monoio::spawn(timers.clone().tick());
            let far = Instant::now() + Duration::from_secs(60);
            assert_eq!(timers.within(far, async { 7 }).await, Ok(7));
            // Near: a monoio timer, not a coarse slot.
            let start = Instant::now();
            let watcher = timers.clone();
            monoio::spawn(async move {
                assert_eq!(watcher.waiting(), 0, "a near deadline takes no coarse slot");
            });
            let never = std::future::pending::<()>();
            let near = start + Duration::from_millis(30);
            assert_eq!(timers.within(near, never).await, Err(Elapsed));
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(30), "{took:?}");
            assert_eq!(timers.waiting(), 0);
        });
    }

    #[test]
    fn within_a_far_deadline_survives_kicks_and_fires_coarsely() {
        runtime().block_on(async {
            let timers = CoarseTimers::new();
            monoio::spawn(timers.clone().tick());
            let start = Instant::now();
            let deadline = start + COARSE_FROM;
            let kicker = timers.clone();
            // Runs once the wait below has its slot (this task yields to it there).
            monoio::spawn(async move {
                assert_eq!(kicker.waiting(), 1, "the wait is registered");
                kicker.kick_all();
            });
            let never = std::future::pending::<()>();
            assert_eq!(timers.within(deadline, never).await, Err(Elapsed));
            let took = start.elapsed();
            assert!(took >= COARSE_FROM, "{took:?}");
            assert!(took < COARSE_FROM + 10 * RESOLUTION, "{took:?}");
            assert_eq!(timers.waiting(), 0);
        });
    }

    #[test]
    fn a_shutdown_guard_shuts_its_socket_at_the_deadline_unless_dropped_first() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        runtime().block_on(async {
            let timers = CoarseTimers::new();
            monoio::spawn(timers.clone().tick());
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let mut kept_client =
                std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (kept, _) = listener.accept().unwrap();
            let mut shut_client =
                std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (shut, _) = listener.accept().unwrap();

            let near = Instant::now() + Duration::from_millis(50);
            let dropped = timers.shutdown_at(kept.as_raw_fd(), near);
            drop(dropped);
            let guard = timers.shutdown_at(shut.as_raw_fd(), near);
            let give_up = Instant::now() + Duration::from_secs(5);
            while !guard.fired() && Instant::now() < give_up {
                monoio::time::sleep(RESOLUTION / 4).await;
            }
            assert!(guard.fired());
            drop(guard);
            assert_eq!(timers.waiting(), 0);

            // The peer of the shut socket reads its end; the other sees nothing yet.
            let mut byte = [0u8; 1];
            assert_eq!(shut_client.read(&mut byte).unwrap(), 0);
            kept_client.set_nonblocking(true).unwrap();
            let err = kept_client.read(&mut byte).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
            drop(kept);
        });
    }

    #[test]
    fn a_wait_is_small() {
        assert!(std::mem::size_of::<CoarseWait>() <= 16);
    }
}
