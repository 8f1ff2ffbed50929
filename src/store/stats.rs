//! What a store did since it was made ([`TokenStore::stats`](crate::TokenStore::stats)).
//!
//! Everything but the lock-free hits is counted on the slow path, where a relaxed
//! `fetch_add` on the store's own counters costs nothing next to a lock or a request. A
//! hit is counted by its thread in a counter of its own, written by that thread only
//! (a plain load and store, no atomic read-modify-write) and alone on its cache lines, so
//! hits on many threads still share no memory that anyone writes. `stats()` adds the
//! threads' counters up.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

/// Counters of a [`TokenStore`](crate::TokenStore) since it was made, from
/// [`TokenStore::stats`](crate::TokenStore::stats).
///
/// Each counter is read on its own while the store may be in use, so two of them may be a
/// moment apart (a token request can show up before the hit it led to).
///
/// # Example
/// ```no_run
/// use logto_m2m::{Config, TokenRequest, TokenStore};
///
/// let store = TokenStore::new(Config::from_env()?);
/// let request = TokenRequest::new("https://shopping.api");
/// store.get(&request)?;
/// store.get(&request)?;
/// let stats = store.stats();
/// assert_eq!((stats.token_requests, stats.hits), (1, 1));
/// println!("{stats:?}");
/// # Ok::<_, logto_m2m::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Calls of `get` answered from the store's memory, without a request or a wait.
    pub hits: u64,
    /// Exchanges with the token endpoint (each `request_token`, its retries included).
    pub token_requests: u64,
    /// Those of them that failed.
    pub token_request_failures: u64,
    /// Calls that waited for a refresh another caller was making: another thread of this
    /// store, or with a shared cache another process holding its refresh lock.
    pub waits: u64,
    /// Reads of the shared cache (the token file or a [`TokenCache`](crate::TokenCache)).
    pub shared_reads: u64,
    /// Those of them that gave a token fresh enough to use.
    pub shared_hits: u64,
    /// Entries written to the shared cache.
    pub shared_writes: u64,
    /// Problems with the shared cache: calls that failed, a lock held too long (each is
    /// also what [`last_cache_error`](crate::TokenStore::last_cache_error) says, and a log
    /// event).
    pub shared_errors: u64,
    /// Calls of `invalidate` and `invalidate_token` (which `call` and `Bearer` make after an
    /// API's 401), whether or not they found the token to drop.
    pub invalidations: u64,
}

/// The store's counters of everything but the lock-free hits.
#[derive(Default)]
pub(super) struct Counters {
    /// Hits on the slow path (a thread's first hit after a change, a token handed out
    /// while another caller refreshes it).
    pub(super) slow_hits: AtomicU64,
    pub(super) token_requests: AtomicU64,
    pub(super) token_request_failures: AtomicU64,
    pub(super) waits: AtomicU64,
    pub(super) shared_reads: AtomicU64,
    pub(super) shared_hits: AtomicU64,
    pub(super) shared_writes: AtomicU64,
    pub(super) shared_errors: AtomicU64,
    pub(super) invalidations: AtomicU64,
    /// The hit counters of the threads that hit this store.
    threads: Arc<Mutex<Threads>>,
}

/// Counts one: a relaxed `fetch_add`, the order of counters among themselves is not kept.
pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

#[derive(Default)]
struct Threads {
    live: Vec<Arc<HitCounter>>,
    /// What the counters of threads that ended had counted.
    ended: u64,
}

/// One thread's hits on one store. Aligned to 128 bytes, so that no other thread's
/// counter (or anything else) shares its cache line, or the line next to it that some
/// CPUs fetch along.
#[repr(align(128))]
#[derive(Default)]
pub(super) struct HitCounter(AtomicU64);

impl HitCounter {
    /// Counts one hit. Only the thread that owns the counter writes it, so a load and a
    /// store do what `fetch_add` would, without its locked instruction.
    #[inline]
    pub(super) fn bump(&self) {
        self.0.store(self.0.load(Relaxed).wrapping_add(1), Relaxed);
    }
}

impl Counters {
    /// A hit counter for a thread that has not hit this store before. Counters of
    /// threads that ended (only this list still holds them) are folded into one number
    /// first, so a store used by short-lived threads keeps no list of them all.
    pub(super) fn new_thread(&self) -> Arc<HitCounter> {
        let mut threads = self.threads();
        let Threads { live, ended } = &mut *threads;
        live.retain(|c| {
            let gone = Arc::strong_count(c) == 1;
            if gone {
                *ended = ended.wrapping_add(c.0.load(Relaxed));
            }
            !gone
        });
        let counter = Arc::new(HitCounter::default());
        live.push(Arc::clone(&counter));
        counter
    }

    pub(super) fn snapshot(&self) -> StoreStats {
        let read = |c: &AtomicU64| c.load(Relaxed);
        let thread_hits = {
            let threads = self.threads();
            threads
                .live
                .iter()
                .fold(threads.ended, |sum, c| sum.wrapping_add(c.0.load(Relaxed)))
        };
        StoreStats {
            hits: thread_hits.wrapping_add(read(&self.slow_hits)),
            token_requests: read(&self.token_requests),
            token_request_failures: read(&self.token_request_failures),
            waits: read(&self.waits),
            shared_reads: read(&self.shared_reads),
            shared_hits: read(&self.shared_hits),
            shared_writes: read(&self.shared_writes),
            shared_errors: read(&self.shared_errors),
            invalidations: read(&self.invalidations),
        }
    }

    fn threads(&self) -> std::sync::MutexGuard<'_, Threads> {
        // Only counters are behind it, consistent after any panic.
        self.threads.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn ended_threads_are_folded_and_still_counted() {
        let counters = Counters::default();
        for _ in 0..100 {
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mine = counters.new_thread();
                    mine.bump();
                    mine.bump();
                });
            });
        }
        let kept = counters.new_thread();
        kept.bump();
        assert_eq!(counters.snapshot().hits, 201);
        // Only the live thread's counter is left in the list.
        assert_eq!(counters.threads().live.len(), 1);
        assert_eq!(std::mem::align_of::<HitCounter>(), 128);
    }
}
