//! The store's side of a shared cache (`TokenStore::token_cache`, `cache_file`): read the
//! entry, and when it is not fresh take the cache's refresh lock, read again (the holder
//! before us may just have written), ask the server, and write the new entry, all within
//! the config's timeout. Problems are noted for `last_cache_error`, never returned: the
//! network can still give the token.

use std::sync::PoisonError;
use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::{Duration, Instant};

use super::margin_for;
use super::refresh::{Flight, Holding, holding_shared_lock};
use super::stats::bump;
use crate::advice::warn_missing_scopes;
use crate::cache::TokenCache;
use crate::cache::entry::{CacheEntry, CacheKey};
use crate::error::{Error, ErrorKind};
use crate::request::TokenRequest;
use crate::response::Sent;
use crate::time::DisplayDuration;
use crate::token::Token;

impl Flight<'_> {
    /// `fetch_shared`, and then, when it noted no problem, the
    /// cache works: the last problem is over, and `last_cache_error` forgets it.
    pub(super) fn fetch_through(
        &self,
        cache: &dyn TokenCache,
        request: &TokenRequest,
    ) -> Result<Token, Error> {
        // Any problem noted from here on, by this call or another thread's, bumps the count
        // (before it is kept, under the lock): one that lands after the check below is kept.
        let problems = self.inner.counters.shared_errors.load(Relaxed);
        let result = self.fetch_shared(cache, request);
        let mut last = self
            .inner
            .cache_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_some() && self.inner.counters.shared_errors.load(Relaxed) == problems {
            let past = last.take();
            drop(last);
            if let Some(past) = past {
                log::info!(target: "logto_m2m", "{} works again, after: {past}", cache.describe());
            }
        }
        result
    }

    /// A token through the shared cache: its entry when fresh; otherwise, under its refresh
    /// lock, a new one from the network, written back. Waiting for another holder's refresh
    /// is bounded by the config's timeout; a cache problem is noted and the network used.
    pub(super) fn fetch_shared(
        &self,
        cache: &dyn TokenCache,
        request: &TokenRequest,
    ) -> Result<Token, Error> {
        let config = &self.inner.config;
        // Sealed with a key from the secret as it is now: entries are unreadable without it.
        let key = CacheKey::new(
            config.token_url(),
            config.app_id(),
            request.key(),
            config.seal_key()?,
        );
        let timeout = config.timeout_value();
        let started = Instant::now();
        let left = || timeout.saturating_sub(started.elapsed());
        if let Some(token) = self.read_shared(cache, &key, request, left()) {
            return Ok(token);
        }
        // The lock lapses after what a refresh can take (the exchange's deadline): a holder
        // that died blocks the others no longer than that, and they wait as long.
        let lease = timeout;
        let mut pause = Duration::from_millis(2);
        let mut waited = false;
        let nested = holding_shared_lock();
        let lock = loop {
            if nested {
                break None;
            }
            match cache.try_lock(key.id(), lease, left()) {
                Ok(Some(lock)) => break Some(lock),
                // Another process is refreshing: wait for its entry (counted once).
                Ok(None) if !waited => {
                    waited = true;
                    bump(&self.inner.counters.waits);
                }
                Ok(None) => {}
                Err(reason) => {
                    self.note(cache, reason);
                    break None;
                }
            }
            if left().is_zero() {
                self.note(
                    cache,
                    format!(
                        "lock held by another process for over {}; went ahead without it",
                        DisplayDuration(timeout)
                    ),
                );
                break None;
            }
            thread::sleep(pause.min(left()));
            pause = (pause * 2).min(Duration::from_millis(50));
            // The holder may have written what we need.
            if let Some(token) = self.read_shared(cache, &key, request, left()) {
                return Ok(token);
            }
        };
        // Whoever held the lock before us may have just written what we need.
        if lock.is_some() {
            if let Some(token) = self.read_shared(cache, &key, request, left()) {
                return Ok(token);
            }
        }
        // The refresh itself, the exchange and the write that shares its token, gets the
        // timeout of its own, as the lease allows: a long wait above must not leave the
        // write no time at all.
        let refreshing = Instant::now();
        let holding = lock.as_ref().map(|_| Holding::enter());
        let token = self.fetch(request);
        drop(holding);
        let token = token?;
        let write_left = timeout.saturating_sub(refreshing.elapsed());
        // A token with no lifetime, or times the clock can't write down, stays in memory.
        if let Some(entry) = token.to_entry() {
            let value = entry.encode(&key);
            match cache.write(key.id(), value.as_bytes(), entry.expires_at(), write_left) {
                Ok(()) => bump(&self.inner.counters.shared_writes),
                Err(reason) => self.note(cache, reason),
            }
        }
        drop(lock);
        Ok(token)
    }

    /// The cache's token for `key`, if it has one outside its refresh margin. One inside
    /// the margin but still valid is kept as the flight's fallback.
    fn read_shared(
        &self,
        cache: &dyn TokenCache,
        key: &CacheKey,
        request: &TokenRequest,
        left: Duration,
    ) -> Option<Token> {
        bump(&self.inner.counters.shared_reads);
        let value = match cache.read(key.id(), left) {
            Ok(value) => value?,
            Err(reason) => {
                self.note(cache, reason);
                return None;
            }
        };
        // Whatever does not open with the key (foreign, corrupt, another secret's) is as
        // good as absent.
        let entry = CacheEntry::decode(&value, key)?;
        let now = self.inner.now();
        let sent = Sent {
            at: now.mono,
            wall: now.wall,
            scope: request.scopes(),
            max_lifetime: self.inner.config.max_lifetime(),
        };
        let token = entry.to_token(&sent)?;
        // An API refused this token (`invalidate`): the entry is stale, whatever its time.
        if self.inner.is_rejected(request, token.access_token()) {
            return None;
        }
        let margin = margin_for(token.expires_in(), self.margin);
        if !token.ends_before(now.mono, now.wall, margin) {
            bump(&self.inner.counters.shared_hits);
            // New to this process: what it lacks is said as for a token fetched.
            warn_missing_scopes(&self.inner.config, request, &token);
            return Some(token);
        }
        // Inside its margin: refreshed all the same, but kept in case the refresh fails.
        if !token.ends_before(now.mono, now.wall, Duration::ZERO) {
            self.fallback.set(Some(token));
        }
        None
    }

    /// Keeps a cache problem for `last_cache_error` and logs it.
    #[cold]
    fn note(&self, cache: &dyn TokenCache, reason: String) {
        bump(&self.inner.counters.shared_errors);
        let error = Error::new(ErrorKind::Cache {
            cache: cache.describe(),
            reason,
        });
        log::warn!(target: "logto_m2m", "{error}; the token comes from the token endpoint");
        *self
            .inner
            .cache_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error);
    }
}
