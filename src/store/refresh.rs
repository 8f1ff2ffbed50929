//! The store's slow path: a `get` that found no fresh copy on its thread. Under the lock it
//! decides (`decide`): hand out the held token, wait for another caller's refresh, or be
//! the one caller that refreshes (`Flight`), through the shared cache when there is one;
//! then it lands the result for every waiter (`land`) and sweeps spent entries.

use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use super::*;

impl TokenStore {
    #[cold]
    pub(super) fn get_slow(&self, request: &TokenRequest) -> Result<Arc<Token>, Error> {
        #[cfg(test)]
        self.hooks
            .slow
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // A refresh takes at most the timeout, and with a shared cache at most the timeout
        // again first, waiting for another holder's refresh.
        let timeout = self.config.timeout_value();
        let refresh = match self.cache {
            Some(_) => timeout.saturating_mul(2),
            None => timeout,
        };
        let give_up = Instant::now().checked_add(refresh.saturating_add(WAIT_SLACK));
        let mut entries = self.lock();
        let mut waited_for = None;
        loop {
            let now = self.now();
            // A new key at the threshold sweeps first (the lookup only happens there).
            if entries.map.len() >= entries.sweep_at
                && find_mut(&mut entries.map, request).is_none()
            {
                sweep(&mut entries.map, now);
                entries.sweep_at = MIN_SWEEP_AT.max(2 * entries.map.len());
            }
            let entry = find_or_insert(&mut entries.map, request);
            let next = match waited_for {
                // The refresh we waited for is over: take what it left.
                Some(round) if entry.round != round => after_wait(entry, now),
                _ => decide(entry, now),
            };
            match next {
                Next::Done(Ok(token)) => {
                    // A caller that waited was counted as a wait, not a hit.
                    if waited_for.is_none() {
                        stats::bump(&self.counters.slow_hits);
                    }
                    return Ok(self.hand_out(request, entry, token, now));
                }
                Next::Done(Err(error)) => return Err(error),
                Next::Refresh if matches!(entry.refresh, Refresh::Running) => {
                    if waited_for.is_none() {
                        stats::bump(&self.counters.waits);
                    }
                    waited_for = Some(entry.round);
                    entries = self.wait(entries, give_up)?;
                }
                Next::Refresh => break,
            }
        }
        find_or_insert(&mut entries.map, request).refresh = Refresh::Running;
        drop(entries);

        let flight = Flight {
            store: self,
            request,
            done: false,
        };
        let result = match &self.cache {
            Some(cache) => self.fetch_through(cache.as_ref(), request),
            None => self.fetch(request),
        };
        flight.finish(result)
    }

    fn wait<'a>(
        &self,
        entries: MutexGuard<'a, Entries>,
        give_up: Option<Instant>,
    ) -> Result<MutexGuard<'a, Entries>, Error> {
        let Some(give_up) = give_up else {
            return Ok(self
                .refreshed
                .wait(entries)
                .unwrap_or_else(PoisonError::into_inner));
        };
        let left = give_up.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::new(ErrorKind::Timeout {
                after: self.config.timeout_value(),
            }));
        }
        let (entries, _) = self
            .refreshed
            .wait_timeout(entries, left)
            .unwrap_or_else(PoisonError::into_inner);
        Ok(entries)
    }

    /// One exchange with the token endpoint. An impersonation's Management API token comes
    /// from this store (`Some(self)`).
    pub(super) fn fetch(&self, request: &TokenRequest) -> Result<Token, Error> {
        use crate::exchange::request_token_in;
        stats::bump(&self.counters.token_requests);
        #[cfg(test)]
        let result = match &self.hooks.fetch {
            Some(fetch) => fetch(&self.config, request),
            None => request_token_in(&self.config, request, Some(self)),
        };
        #[cfg(not(test))]
        let result = request_token_in(&self.config, request, Some(self));
        if result.is_err() {
            stats::bump(&self.counters.token_request_failures);
        }
        result
    }

    /// Stores a refresh's outcome and wakes the waiters. Returns what the refreshing caller
    /// gets: the new token, or on failure the old one while it is valid, or the error.
    fn land(
        &self,
        request: &TokenRequest,
        result: Result<Token, Error>,
    ) -> Result<Arc<Token>, Error> {
        let mut entries = self.lock();
        let now = self.now();
        let entry = find_or_insert(&mut entries.map, request);
        let outcome = match result {
            Ok(token) => {
                let token = Arc::new(token);
                entry.failures = 0;
                if token.expires_in().is_zero() {
                    // Valid for no time at all: hand it to this round of callers, keep
                    // nothing.
                    entry.set_held(None);
                    entry.refresh = Refresh::Landed(Arc::clone(&token));
                } else {
                    entry.set_held(Some(Held::new(Arc::clone(&token), self.margin)));
                    entry.refresh = Refresh::Idle;
                }
                Ok(self.hand_out(request, entry, token, now))
            }
            Err(error) => {
                entry.failures = entry.failures.saturating_add(1);
                let doubling = FIRST_FAILURE_BACKOFF
                    .saturating_mul(1 << (entry.failures - 1).min(16))
                    .min(MAX_FAILURE_BACKOFF);
                let asked = match error.kind() {
                    ErrorKind::RateLimited {
                        retry_after: Some(wait),
                        ..
                    } => (*wait).min(MAX_RETRY_AFTER_BACKOFF),
                    _ => Duration::ZERO,
                };
                let pause = doubling.max(asked);
                let until = now.mono.checked_add(pause).unwrap_or(now.mono);
                let outcome = match entry.held.as_ref().filter(|h| h.is_valid(now)) {
                    Some(old) => {
                        log::warn!(
                            target: "logto_m2m",
                            "token refresh failed, the still-valid token is kept; next try in {}: {error}",
                            DisplayDuration(pause)
                        );
                        Ok(self.hand_out(request, entry, Arc::clone(&old.token), now))
                    }
                    None => {
                        log::warn!(
                            target: "logto_m2m",
                            "token refresh failed; callers get this error for {} without a new request: {error}",
                            DisplayDuration(pause)
                        );
                        Err(error.clone())
                    }
                };
                entry.refresh = Refresh::BackingOff { error, until };
                outcome
            }
        };
        entry.round = entry.round.wrapping_add(1);
        drop(entries);
        self.refreshed.notify_all();
        outcome
    }

    /// What a caller on this thread gets for `token`: when it is the token `entry` holds,
    /// this thread's own copy of it (the `Arc` its hits return), else `token` itself.
    fn hand_out(
        &self,
        request: &TokenRequest,
        entry: &Entry,
        token: Arc<Token>,
        now: Now,
    ) -> Arc<Token> {
        match &entry.held {
            Some(held) if Arc::ptr_eq(&held.token, &token) => {
                local::copy_of(&self.id, request, held, &entry.version, &self.counters, now)
                    .unwrap_or(token)
            }
            _ => token,
        }
    }
}

/// What a caller does with `entry` at `now`, when it has not waited for a refresh.
fn decide(entry: &Entry, now: Now) -> Next {
    if let Some(held) = entry.held.as_ref().filter(|h| h.is_valid(now)) {
        // Valid but maybe in the refresh margin: one caller refreshes, the others (and the
        // callers during a backoff) keep using this one.
        if held.is_fresh(now)
            || matches!(entry.refresh, Refresh::Running)
            || entry.backoff_error(now).is_some()
        {
            return Next::Done(Ok(Arc::clone(&held.token)));
        }
        return Next::Refresh;
    }
    match entry.backoff_error(now) {
        Some(error) => Next::Done(Err(error.clone())),
        None => Next::Refresh,
    }
}

/// What a caller that waited for a refresh does once it is over.
fn after_wait(entry: &Entry, now: Now) -> Next {
    match &entry.refresh {
        Refresh::Landed(token) => Next::Done(Ok(Arc::clone(token))),
        Refresh::Idle => match &entry.held {
            Some(held) => Next::Done(Ok(Arc::clone(&held.token))),
            None => Next::Refresh,
        },
        Refresh::BackingOff { error, .. } => {
            Next::Done(match entry.held.as_ref().filter(|h| h.is_valid(now)) {
                Some(old) => Ok(Arc::clone(&old.token)),
                None => Err(error.clone()),
            })
        }
        // Another refresh began meanwhile (wait for it), or ours panicked (take over).
        Refresh::Running | Refresh::Abandoned => Next::Refresh,
    }
}

/// Drops the entries that hold nothing worth keeping (no valid token, no refresh, no
/// backoff), so that keys asked for once don't stay forever.
fn sweep(map: &mut Buckets<Entry>, now: Now) {
    map.retain(|_, bucket| {
        bucket.retain(|e| !e.is_spent(now));
        !bucket.is_empty()
    });
}

/// The refresh in progress for one key. If the refreshing caller panics, `Drop` ends the
/// flight so that waiters wake up and one of them refreshes instead.
struct Flight<'a> {
    store: &'a TokenStore,
    request: &'a TokenRequest,
    done: bool,
}

impl Flight<'_> {
    fn finish(mut self, result: Result<Token, Error>) -> Result<Arc<Token>, Error> {
        self.done = true;
        self.store.land(self.request, result)
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut entries = self.store.lock();
        let entry = find_or_insert(&mut entries.map, self.request);
        entry.refresh = Refresh::Abandoned;
        entry.round = entry.round.wrapping_add(1);
        drop(entries);
        self.store.refreshed.notify_all();
    }
}

fn find_or_insert<'a>(map: &'a mut Buckets<Entry>, request: &TokenRequest) -> &'a mut Entry {
    let bucket = map.entry(request.key_hash()).or_default();
    let i = match bucket.iter().position(|e| *e.key == *request.key()) {
        Some(i) => i,
        None => {
            bucket.push(Entry::new(request.key()));
            bucket.len() - 1
        }
    };
    &mut bucket[i]
}
