//! The store's slow path: a `get` that found no fresh copy on its thread. Under the lock it
//! decides (`decide`): hand out the held token; hand it out and start a refresh ahead of
//! expiry on a thread of its own; wait for the refresh that is running; or be the one
//! caller that refreshes. A refresh (`Flight`) asks the server, through the shared cache
//! when there is one, records its outcome for every waiter (`land`), and only then, with
//! no lock held, logs what happened. Spent entries are swept as new keys come.

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::{Arc, MutexGuard};
use std::thread;

use super::*;
use crate::exchange::request_token_in;
use crate::request::TokenSource;

impl TokenStore {
    #[cold]
    pub(super) fn get_slow(&self, request: &TokenRequest) -> Result<Arc<Token>, Error> {
        let inner = &*self.inner;
        #[cfg(test)]
        inner
            .hooks
            .slow
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let give_up = Instant::now().checked_add(self.refresh_bound().saturating_add(WAIT_SLACK));
        let mut entries = inner.lock();
        let mut waited_for = None;
        loop {
            let now = inner.now();
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
                        stats::bump(&inner.counters.slow_hits);
                    }
                    return Ok(hand_out(&self.id, request, entry, token, inner, now));
                }
                Next::Done(Err(error)) => return Err(error),
                Next::HeldOff(error) => {
                    // Said once per failure, by the first caller it holds off, and logged
                    // with no lock held: the caller whose refresh failed got the error
                    // itself, and this is the news beyond it.
                    let event = entry.announce_backoff(now).map(|left| Event::HeldOff {
                        left,
                        error: error.clone(),
                    });
                    drop(entries);
                    if let Some(event) = event {
                        event.log();
                    }
                    return Err(error);
                }
                // Unless this thread holds the shared cache's lock (a token that its refresh
                // needs first): the running refresh may be waiting for that lock, and each
                // would wait out the timeout (the token file has one lock for all keys).
                // This thread refreshes the key itself, writing to the cache under the lock
                // it holds, and the other one reads it there; with Redis, whose locks are per
                // key, the two may each make a request, in this rare overlap only.
                Next::Refresh
                    if matches!(entry.refresh, Refresh::Running) && !holding_shared_lock() =>
                {
                    if waited_for.is_none() {
                        stats::bump(&inner.counters.waits);
                    }
                    waited_for = Some(entry.round);
                    entries = self.wait(entries, give_up)?;
                }
                Next::Refresh => break,
                Next::RefreshAhead(token) => {
                    entry.refresh = Refresh::Running;
                    stats::bump(&inner.counters.slow_hits);
                    let token = hand_out(&self.id, request, entry, token, inner, now);
                    drop(entries);
                    self.refresh_ahead(request);
                    return Ok(token);
                }
            }
        }
        find_or_insert(&mut entries.map, request).refresh = Refresh::Running;
        drop(entries);
        self.flight(Cow::Borrowed(request), Some(&self.id)).run()
    }

    fn wait<'a>(
        &self,
        entries: MutexGuard<'a, Entries>,
        give_up: Option<Instant>,
    ) -> Result<MutexGuard<'a, Entries>, Error> {
        let refreshed = &self.inner.refreshed;
        let Some(give_up) = give_up else {
            return Ok(refreshed
                .wait(entries)
                .unwrap_or_else(PoisonError::into_inner));
        };
        let left = give_up.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::new(ErrorKind::Timeout {
                after: self.inner.config.timeout_value(),
            }));
        }
        let (entries, _) = refreshed
            .wait_timeout(entries, left)
            .unwrap_or_else(PoisonError::into_inner);
        Ok(entries)
    }

    /// A refresh of `request` as this store stands now (its cache and margin).
    fn flight<'a>(
        &self,
        request: Cow<'a, TokenRequest>,
        caller: Option<&'a Arc<()>>,
    ) -> Flight<'a> {
        Flight {
            inner: Arc::clone(&self.inner),
            id: Arc::clone(&self.id),
            cache: self.cache.clone(),
            margin: self.margin(),
            request,
            caller,
            fallback: Cell::new(None),
            done: false,
        }
    }

    /// Refreshes `request`, whose entry the caller just marked running, on a thread of its
    /// own: the callers meanwhile get the still-valid token. The thread holds the store's
    /// shared state, not the store, and ends with the refresh, within its bound.
    fn refresh_ahead(&self, request: &TokenRequest) {
        let flight = self.flight(Cow::Owned(request.clone()), None);
        let started = thread::Builder::new()
            .name("logto-m2m-refresh".into())
            .spawn(move || {
                // Nobody waits for this outcome here: it is recorded in the entry.
                let _ = flight.run();
            });
        if let Err(error) = started {
            // The flight went with the closure, unrun: its `Drop` ended the refresh as
            // abandoned, so callers keep the valid token and a later call tries again.
            log::warn!(
                target: "logto_m2m",
                "could not start a thread to refresh the token ahead of expiry ({error}); \
                 callers keep the valid token, and a call after a pause tries again"
            );
        }
    }
}

thread_local! {
    /// True while this thread refreshes through a shared cache with its lock held. A token
    /// that refresh needs first (an impersonation's Management API token, from the same
    /// store) is then refreshed without taking a lock: the token file's one lock for all
    /// keys is the one this thread holds, and waiting for it would wait out the timeout.
    /// Set by the shared cache's refresh (`shared.rs`); read here too, where a `get` decides
    /// whether to wait for another thread's refresh.
    static HOLDING_LOCK: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread refreshes through a shared cache with its lock held.
pub(super) fn holding_shared_lock() -> bool {
    HOLDING_LOCK.try_with(Cell::get).unwrap_or(false)
}

/// Marks this thread as holding a shared cache's lock until dropped (even by a panic).
pub(super) struct Holding(bool);

impl Holding {
    pub(super) fn enter() -> Holding {
        Holding(HOLDING_LOCK.try_with(|h| h.replace(true)).unwrap_or(false))
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        let _ = HOLDING_LOCK.try_with(|h| h.set(self.0));
    }
}

/// One refresh of one key, from the decision to refresh to its outcome recorded in the
/// entry. It owns what it needs (the store's shared state, its cache and margin as they
/// were when it began), so that it can run on a thread of its own. If it ends without
/// recording an outcome (a panic in it, a thread that could not be started), `Drop` ends
/// it as abandoned, so that waiters wake up and the key is never left refreshing.
pub(super) struct Flight<'a> {
    pub(super) inner: Arc<Inner>,
    /// The store's name, for the store this flight stands in for as a [`TokenSource`].
    id: Arc<()>,
    cache: Option<Arc<dyn TokenCache>>,
    pub(super) margin: Duration,
    pub(super) request: Cow<'a, TokenRequest>,
    /// The store's name for the caller's copies, when a caller waits for this refresh;
    /// `None` for a refresh ahead, which nobody waits for.
    caller: Option<&'a Arc<()>>,
    /// A still-valid token the shared cache had, inside its margin: what callers get if
    /// this refresh fails while the store holds no valid token (a new process during an
    /// outage).
    pub(super) fallback: Cell<Option<Token>>,
    /// The outcome is recorded.
    done: bool,
}

/// What the slow path logs, decided under the lock and logged after it.
enum Event {
    /// A refresh failed, and the still-valid token is kept.
    Kept { pause: Duration, error: Error },
    /// A refresh failed with no valid token, and a caller met its backoff: callers get the
    /// error for what is `left` of the pause, without a request.
    HeldOff { left: Duration, error: Error },
}

impl Event {
    #[cold]
    fn log(self) {
        match self {
            Event::Kept { pause, error } => log::warn!(
                target: "logto_m2m",
                "token refresh failed, the still-valid token is kept; next try in {}: {error}",
                DisplayDuration(pause)
            ),
            Event::HeldOff { left, error } => log::warn!(
                target: "logto_m2m",
                "token refresh failed; callers get this error for {} more without a new \
                 request: {error}",
                DisplayDuration(left)
            ),
        }
    }
}

impl Flight<'_> {
    /// Asks the server (through the shared cache when there is one), records the outcome
    /// and wakes the waiters, then logs. Returns what the refreshing caller gets: the new
    /// token, or on failure the old one while it is valid, or the error.
    pub(super) fn run(mut self) -> Result<Arc<Token>, Error> {
        let result = match &self.cache {
            Some(cache) => self.fetch_through(cache.as_ref(), &self.request),
            None => self.fetch(&self.request),
        };
        let (outcome, event) = self.land(result);
        // The outcome is recorded: whatever the logger does now, the refresh is over.
        if let Some(event) = event {
            event.log();
        }
        outcome
    }

    /// One exchange with the token endpoint. An impersonation's Management API token comes
    /// from this store (the flight is a [`TokenSource`] on the store's state).
    pub(super) fn fetch(&self, request: &TokenRequest) -> Result<Token, Error> {
        let inner = &self.inner;
        stats::bump(&inner.counters.token_requests);
        #[cfg(test)]
        let result = match &inner.hooks.fetch {
            Some(fetch) => fetch(&inner.config, request),
            None => request_token_in(&inner.config, request, Some(self)),
        };
        #[cfg(not(test))]
        let result = request_token_in(&inner.config, request, Some(self));
        if result.is_err() {
            stats::bump(&inner.counters.token_request_failures);
        }
        result
    }

    /// Records the refresh's outcome, marks the flight done and wakes the waiters. Returns
    /// what the refreshing caller gets, and what to log once no lock is held.
    fn land(&mut self, result: Result<Token, Error>) -> (Result<Arc<Token>, Error>, Option<Event>) {
        let inner = &*self.inner;
        let mut entries = inner.lock();
        let now = inner.now();
        let entry = find_or_insert(&mut entries.map, &self.request);
        let (outcome, event) = match result {
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
                (Ok(token), None)
            }
            Err(error) => {
                let asked = match error.kind() {
                    ErrorKind::RateLimited {
                        retry_after: Some(wait),
                        ..
                    } => Some(*wait),
                    _ => None,
                };
                let pause = entry.fail(asked);
                let until = now.mono.checked_add(pause).unwrap_or(now.mono);
                // No valid token here, one in the shared cache: callers get that one.
                let fallback = self.fallback.take().filter(|t| {
                    !t.ends_before(now.mono, now.wall, Duration::ZERO)
                        && !entry.held.as_ref().is_some_and(|h| h.is_valid(now))
                });
                if let Some(token) = fallback {
                    entry.set_held(Some(Held::new(Arc::new(token), self.margin)));
                }
                let (outcome, event) = match entry.held.as_ref().filter(|h| h.is_valid(now)) {
                    Some(old) => (
                        Ok(Arc::clone(&old.token)),
                        Some(Event::Kept {
                            pause,
                            error: error.clone(),
                        }),
                    ),
                    // The callers of this refresh get the error; the first one the backoff
                    // holds off after them says so (`Event::HeldOff`).
                    None => (Err(error.clone()), None),
                };
                entry.refresh = Refresh::BackingOff {
                    error,
                    until,
                    announced: false,
                };
                (outcome, event)
            }
        };
        entry.round = entry.round.wrapping_add(1);
        let outcome = match self.caller {
            Some(id) => outcome.map(|token| hand_out(id, &self.request, entry, token, inner, now)),
            None => outcome,
        };
        drop(entries);
        self.done = true;
        inner.refreshed.notify_all();
        (outcome, event)
    }
}

/// An impersonation's Management API token, from the store the flight refreshes for: the
/// same state, cache and margin, so that one token serves every exchange for its lifetime.
impl TokenSource for Flight<'_> {
    fn token(&self, request: &TokenRequest) -> Result<Arc<Token>, Error> {
        self.store().get(request)
    }

    fn refused(&self, request: &TokenRequest, token: &Token) {
        self.store().invalidate_token(request, token);
    }
}

impl Flight<'_> {
    /// The store this flight refreshes for, as a handle on the same state.
    fn store(&self) -> TokenStore {
        TokenStore {
            inner: Arc::clone(&self.inner),
            cache: self.cache.clone(),
            margin: Some(self.margin),
            id: Arc::clone(&self.id),
        }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut entries = self.inner.lock();
        let now = self.inner.now();
        let entry = find_or_insert(&mut entries.map, &self.request);
        // Counted as a failure: a refresh that panics every time is tried once per pause,
        // not on every call.
        let pause = entry.fail(None);
        entry.refresh = Refresh::Abandoned {
            until: now.mono.checked_add(pause).unwrap_or(now.mono),
        };
        entry.round = entry.round.wrapping_add(1);
        drop(entries);
        self.inner.refreshed.notify_all();
    }
}

/// What a caller on this thread gets for `token`: when it is the token `entry` holds,
/// this thread's own copy of it (the `Arc` its hits return), else `token` itself.
fn hand_out(
    id: &Arc<()>,
    request: &TokenRequest,
    entry: &Entry,
    token: Arc<Token>,
    inner: &Inner,
    now: Now,
) -> Arc<Token> {
    match &entry.held {
        Some(held) if Arc::ptr_eq(&held.token, &token) => {
            local::copy_of(id, request, held, &entry.version, &inner.counters, now).unwrap_or(token)
        }
        _ => token,
    }
}

/// What a caller does with `entry` at `now`, when it has not waited for a refresh.
fn decide(entry: &Entry, now: Now) -> Next {
    if let Some(held) = entry.held.as_ref().filter(|h| h.is_valid(now)) {
        let token = Arc::clone(&held.token);
        // Valid, maybe in the refresh margin: the first caller there starts the refresh
        // ahead, and every caller, that one too, gets this token at once.
        if held.is_fresh(now) || !entry.may_refresh(now) {
            return Next::Done(Ok(token));
        }
        return Next::RefreshAhead(token);
    }
    match entry.backoff_error(now) {
        Some(error) => Next::HeldOff(error.clone()),
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
        // Another refresh began meanwhile (wait for it), or ours ended without an outcome
        // (take over: this caller has no valid token).
        Refresh::Running | Refresh::Abandoned { .. } => Next::Refresh,
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
