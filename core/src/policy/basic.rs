//! HTTP basic authentication against bcrypt hashes, without a bcrypt on the request path.
//!
//! bcrypt is slow on purpose (tens of milliseconds at cost 10), and a shard that ran it would
//! stall every other connection it serves meanwhile. So shards never do: a verification goes
//! to a small pool of threads of its own ([`Verifier`]), and the request waits for the answer
//! without holding the shard. What keeps the pool from being a bcrypt oracle for floods:
//!
//! - each shard remembers credentials it verified ([`BasicCache`]), so a valid client pays
//!   bcrypt once per cache lifetime, not per request, and it remembers recent failures, so a
//!   replayed wrong password costs nothing;
//! - the pool's queue is short: when it is full a request is refused (503) at once rather
//!   than queued, so a flood of new guesses costs the node at most the pool's threads, and
//!   never the shards.
//!
//! A cached entry is keyed by the SHA-256 of the stored hash and the password together: a
//! reload that changes a consumer's hash makes its old entries unreachable.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ahash::AHashMap;
use atomic_waker::AtomicWaker;
use ringway_config::KeyDigest;

/// Threads that verify bcrypt hashes, for the whole process.
const THREADS: usize = 2;
/// Verifications waiting for a thread, at most; past it a request is refused.
const QUEUE: usize = 32;
/// How long a verified password is believed, and a refused one remembered.
const OK_FOR: Duration = Duration::from_secs(300);
const BAD_FOR: Duration = Duration::from_secs(60);
/// Entries each shard remembers, of each kind.
const CACHE: usize = 4096;

struct Job {
    hash: Arc<str>,
    password: Vec<u8>,
    slot: Arc<Slot>,
}

/// A verification's answer, handed from a bcrypt thread to the shard without a lock.
#[derive(Default)]
struct Slot {
    /// 0 while pending, then 1 (matched) or 2 (did not).
    answer: AtomicU8,
    waker: AtomicWaker,
}

/// The process's bcrypt threads, started on the first basic-auth request.
pub struct Verifier {
    tx: crossbeam_channel::Sender<Job>,
}

impl Verifier {
    pub fn get() -> &'static Verifier {
        static VERIFIER: OnceLock<Verifier> = OnceLock::new();
        VERIFIER.get_or_init(|| {
            let (tx, rx) = crossbeam_channel::bounded::<Job>(QUEUE);
            for i in 0..THREADS {
                let rx = rx.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("ringway-bcrypt-{i}"))
                    .spawn(move || {
                        for job in rx {
                            let ok = bcrypt::verify(&job.password, &job.hash).unwrap_or(false);
                            job.slot
                                .answer
                                .store(if ok { 1 } else { 2 }, Ordering::Release);
                            job.slot.waker.wake();
                        }
                    });
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot start a bcrypt thread");
                }
            }
            Verifier { tx }
        })
    }

    /// Queues a verification of `password` against `hash`; `None` when the queue is full.
    pub fn verify(&self, hash: Arc<str>, password: Vec<u8>) -> Option<Verification> {
        let slot = Arc::new(Slot::default());
        let job = Job {
            hash,
            password,
            slot: slot.clone(),
        };
        self.tx.try_send(job).ok()?;
        Some(Verification { slot })
    }
}

/// A queued verification: resolves to whether the password matched.
pub struct Verification {
    slot: Arc<Slot>,
}

impl Future for Verification {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        // Registered before the answer is read: an answer stored after the read wakes it.
        self.slot.waker.register(cx.waker());
        match self.slot.answer.load(Ordering::Acquire) {
            0 => Poll::Pending,
            answer => Poll::Ready(answer == 1),
        }
    }
}

/// What a shard remembers of passwords it had verified.
#[derive(Default)]
pub struct BasicCache {
    ok: AHashMap<KeyDigest, Instant>,
    bad: AHashMap<KeyDigest, Instant>,
}

/// The cache's key for `password` checked against `hash`.
pub fn cache_key(hash: &str, password: &[u8]) -> KeyDigest {
    let mut both = Vec::with_capacity(hash.len() + 1 + password.len());
    both.extend_from_slice(hash.as_bytes());
    both.push(0);
    both.extend_from_slice(password);
    KeyDigest::of(&both)
}

impl BasicCache {
    /// `Some(matched)` when the answer is remembered and still fresh.
    pub fn get(&self, key: &KeyDigest, now: Instant) -> Option<bool> {
        if self.ok.get(key).is_some_and(|until| *until > now) {
            return Some(true);
        }
        if self.bad.get(key).is_some_and(|until| *until > now) {
            return Some(false);
        }
        None
    }

    pub fn put(&mut self, key: KeyDigest, matched: bool, now: Instant) {
        let (map, ttl) = if matched {
            (&mut self.ok, OK_FOR)
        } else {
            (&mut self.bad, BAD_FOR)
        };
        if map.len() >= CACHE {
            // Expired entries first; if none, the map starts over (it refills from traffic).
            map.retain(|_, until| *until > now);
            if map.len() >= CACHE {
                map.clear();
            }
        }
        map.insert(key, now + ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_off_the_calling_thread_and_caches() {
        let hash: Arc<str> = bcrypt::hash("s3cret-pass", 4).unwrap().into();
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        let (good, bad) = rt.block_on(async {
            let v = Verifier::get();
            let good = v
                .verify(hash.clone(), b"s3cret-pass".to_vec())
                .unwrap()
                .await;
            let bad = v.verify(hash.clone(), b"wrong".to_vec()).unwrap().await;
            (good, bad)
        });
        assert!(good && !bad);
        let now = Instant::now();
        let mut cache = BasicCache::default();
        let key = cache_key(&hash, b"s3cret-pass");
        assert_eq!(cache.get(&key, now), None);
        cache.put(key, true, now);
        assert_eq!(cache.get(&key, now), Some(true));
        assert_eq!(cache.get(&key, now + OK_FOR), None, "expired");
        assert_ne!(cache_key("other", b"s3cret-pass"), key);

        // A flood of new guesses: the queue takes its fill and refuses the rest at once.
        let refused = (0..200)
            .filter(|i| {
                Verifier::get()
                    .verify(hash.clone(), format!("guess-{i}").into_bytes())
                    .is_none()
            })
            .count();
        assert!(refused >= 200 - QUEUE - THREADS, "{refused} refused");
    }
}
