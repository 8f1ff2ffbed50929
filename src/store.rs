//! `TokenStore`: a cache around `request_token`, one request per refresh.
//!
//! Two layers. The shared one is a `Mutex` over a map from request key to entry, with a
//! `Condvar` that wakes the threads waiting for a refresh; the lock is held only to look at
//! or update an entry, never across I/O. In front of it each thread keeps its own copies of
//! the fresh tokens it has seen (`local.rs`), valid while their key's version, an atomic
//! bumped by every change to that key's token, is the one they were taken at. A hit is a
//! thread-local lookup, an atomic load and two clock reads: no lock and no memory that
//! another thread writes, so hits on many threads don't queue.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::cache::TokenCache;
use crate::config::Config;
use crate::error::{DisplayDuration, Error, ErrorKind};
use crate::exchange::request_token;
use crate::request::TokenRequest;
use crate::token::Token;
use crate::token_file::TokenFile;

/// The first pause after a failed refresh with no valid token left. It doubles with each
/// further failure up to [`MAX_FAILURE_BACKOFF`], and a server's `Retry-After` lengthens it.
const FIRST_FAILURE_BACKOFF: Duration = Duration::from_secs(1);

/// The longest pause after failed refreshes.
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(30);

/// The longest a server's `Retry-After` can hold back a key.
const MAX_RETRY_AFTER_BACKOFF: Duration = Duration::from_secs(3600);

/// How much longer than the config's timeout a thread waits for another's refresh before
/// it gives up. The refresh itself is bounded by the timeout; this is a safety net.
const WAIT_SLACK: Duration = Duration::from_secs(5);

/// The fewest keys at which the shared map is swept for keys whose token is long gone.
const MIN_SWEEP_AT: usize = 64;

/// A thread-safe token cache: one token per (resource, scopes, organization), refreshed
/// shortly before it expires, with one request per refresh however many threads ask.
///
/// # About threads
///
/// `TokenStore` is `Send + Sync`: share it by reference or in an `Arc`.
///
/// - A hit (a token outside its refresh margin) takes no lock: each thread keeps its own
///   copy of the tokens it got, checked against a version per key that every refresh,
///   [`invalidate`](TokenStore::invalidate) and [`clear`](TokenStore::clear) bumps, so
///   every thread's next call sees the change. Tens of nanoseconds, no
///   allocation, and threads don't slow each other down. (The copy is made once per thread
///   and token, on that thread's first hit after a change.)
/// - Inside the refresh margin, the first caller refreshes while the others are handed the
///   still-valid token without waiting.
/// - With no usable token, the first caller asks the server and the others wait for its
///   answer, which they all get: the same token, or the same error.
/// - Keys are independent: one key's refresh never blocks another key's callers.
/// - A panic in a caller, even during a refresh, neither poisons the store nor leaves
///   waiters hanging: one of them takes the refresh over.
///
/// # When a token is refreshed
///
/// A token's lifetime counts from when its request was sent, and it is over by whichever
/// clock says so first: the monotonic clock, which a wall-clock step can't move, or the
/// wall clock, which keeps running while the machine sleeps (Linux's monotonic clock stops
/// then). The refresh starts within the refresh margin before that end, at a point drawn
/// at random in the first half of the margin, so that processes that got their tokens
/// together don't all refresh in the same second.
///
/// # Failures
///
/// If a refresh fails while the old token is still valid, callers keep getting the old one.
/// If it fails with no valid token left, callers get that error without a new request for
/// 1 second, doubling per failure up to 30 seconds (or the server's `Retry-After`, up to an
/// hour), so a retry loop can't storm the server.
///
/// # Example
/// ```no_run
/// use std::sync::Arc;
/// use logto_m2m::{Config, TokenRequest, TokenStore};
///
/// let store = Arc::new(TokenStore::new(Config::from_env()?));
/// let request = TokenRequest::new("https://shopping.api").scope("read:products");
/// let token = store.get(&request)?; // asks the server
/// let again = store.get(&request)?; // cached
/// assert_eq!(token.access_token(), again.access_token());
/// // The API said 401: the token was revoked or the key rotated.
/// store.invalidate(&request);
/// # Ok::<_, logto_m2m::Error>(())
/// ```
pub struct TokenStore {
    config: Config,
    margin: Duration,
    cache: Option<Box<dyn TokenCache>>,
    cache_error: Mutex<Option<Error>>,
    entries: Mutex<Entries>,
    refreshed: Condvar,
    /// Names the store for the threads' copies, which hold a `Weak` to it: that tells a
    /// store that is gone from a new one at the same address.
    id: Arc<()>,
    counters: stats::Counters,
    #[cfg(test)]
    hooks: test::Hooks,
}

/// Keyed by the request's precomputed key hash; the entries in a bucket share a hash and
/// are told apart by their full key (a collision is all but impossible, but not assumed
/// away).
type Buckets<T> = HashMap<u64, Vec<T>, BuildHasherDefault<PrecomputedHash>>;

struct Entries {
    map: Buckets<Entry>,
    /// A new key is added after a sweep once the map holds this many: twice what the last
    /// sweep left, at least [`MIN_SWEEP_AT`]. So the map holds at most twice the keys worth
    /// keeping, and a sweep's cost, spread over the keys added before it, is constant.
    sweep_at: usize,
}

/// The keys are already hashes, so the map's hasher passes them through: a lookup costs
/// no hashing.
#[derive(Default)]
struct PrecomputedHash(u64);

impl Hasher for PrecomputedHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by a `u64` key; this keeps the hasher total anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A token with the points, by each clock, where it is no longer fresh: its end less the
/// store's margin (at most half the lifetime, less this token's share of jitter).
/// Computed once, so that a hit only compares.
#[derive(Clone)]
struct Held {
    token: Arc<Token>,
    /// `None`: too far ahead to represent, so never by that clock.
    fresh_until: Option<Instant>,
    fresh_until_wall: Option<SystemTime>,
}

impl Held {
    fn new(token: Arc<Token>, configured: Duration) -> Held {
        let margin = jittered_margin(token.expires_in(), configured);
        let (fresh_until, fresh_until_wall) = token.ends_at(margin);
        Held {
            token,
            fresh_until,
            fresh_until_wall,
        }
    }

    /// Outside its refresh margin at `now`, by both clocks.
    fn is_fresh(&self, now: Now) -> bool {
        self.fresh_until.is_none_or(|at| now.mono < at)
            && self.fresh_until_wall.is_none_or(|at| now.wall < at)
    }

    /// Not yet expired at `now`.
    fn is_valid(&self, now: Now) -> bool {
        !self.token.ends_before(now.mono, now.wall, Duration::ZERO)
    }

    /// A copy for one thread: a new `Arc` of a clone of the token, so that the reference
    /// count a hit touches is that thread's alone.
    fn copy(&self) -> Held {
        Held {
            token: Arc::new(Token::clone(&self.token)),
            ..*self
        }
    }
}

/// The refresh margin for a token of `lifetime`: the configured one, at most half the
/// lifetime (a 2-second token is used for 1 second, not refetched on every call).
fn margin_for(lifetime: Duration, configured: Duration) -> Duration {
    configured.min(lifetime / 2)
}

/// [`margin_for`], less a random part of up to half of it: the refresh starts at a random
/// point in the first half of the margin.
pub(crate) fn jittered_margin(lifetime: Duration, configured: Duration) -> Duration {
    let margin = margin_for(lifetime, configured);
    // std's RandomState is seeded from the OS once per thread and varies per instance.
    let random = RandomState::new().hash_one(margin);
    // Integer arithmetic: floats would link their formatting and parsing code for this.
    let half_ns = u64::try_from(margin.as_nanos() / 2).unwrap_or(u64::MAX);
    margin.saturating_sub(Duration::from_nanos(random % half_ns.saturating_add(1)))
}

/// Both clocks, read once.
#[derive(Clone, Copy)]
struct Now {
    mono: Instant,
    wall: SystemTime,
}

struct Entry {
    key: Box<str>,
    /// The cached token; `None` before the first, after `invalidate`, or when it came with
    /// no lifetime at all.
    held: Option<Held>,
    refresh: Refresh,
    /// Refreshes that ended, so that a waiter can tell the one it waited for is over.
    round: u64,
    /// Failed refreshes in a row.
    failures: u32,
    /// Bumped, with the lock held, whenever `held` changes: threads' copies of the token
    /// taken at an older version are not used.
    version: Arc<AtomicU64>,
    /// The last token dropped by `invalidate` or `invalidate_token`: an API refused it, so
    /// a shared cache that still holds it (another process wrote it) must not hand it back.
    rejected: Option<Box<str>>,
}

/// Where the entry's refreshing stands.
enum Refresh {
    /// No refresh has run, or the last one ended with a token that `held` now has.
    Idle,
    /// A caller is asking the server; the others wait on the condvar.
    Running,
    /// The last refresh gave this token, kept here for its waiters when it can't be cached
    /// (no lifetime).
    Landed(Arc<Token>),
    /// The last refresh failed: until `until`, callers get this error (or a still-valid
    /// token) without a new request.
    BackingOff { error: Error, until: Instant },
    /// The refreshing caller panicked: the next caller refreshes instead.
    Abandoned,
}

impl Entry {
    fn new(key: &str) -> Entry {
        Entry {
            key: key.into(),
            held: None,
            refresh: Refresh::Idle,
            round: 0,
            failures: 0,
            version: Arc::new(AtomicU64::new(0)),
            rejected: None,
        }
    }

    /// Drops the token as one an API refused.
    fn reject_held(&mut self) {
        if let Some(held) = &self.held {
            self.rejected = Some(held.token.access_token().into());
        }
        self.set_held(None);
    }

    /// Sets the token, and makes every thread's copy of the old one stale.
    fn set_held(&mut self, held: Option<Held>) {
        self.held = held;
        self.version.fetch_add(1, Ordering::Release);
    }

    fn backoff_error(&self, now: Now) -> Option<&Error> {
        match &self.refresh {
            Refresh::BackingOff { error, until } if now.mono < *until => Some(error),
            _ => None,
        }
    }

    /// Nothing here is worth keeping: no valid token, no refresh, no backoff.
    fn is_spent(&self, now: Now) -> bool {
        !self.held.as_ref().is_some_and(|h| h.is_valid(now))
            && !matches!(self.refresh, Refresh::Running)
            && self.backoff_error(now).is_none()
    }
}

/// What the slow path decided under the lock.
enum Next {
    Done(Result<Arc<Token>, Error>),
    Refresh,
}

impl TokenStore {
    /// An empty store that gets its tokens with `config`.
    pub fn new(config: Config) -> TokenStore {
        TokenStore {
            config,
            margin: Duration::from_secs(60),
            cache: None,
            cache_error: Mutex::new(None),
            entries: Mutex::new(Entries {
                map: Buckets::default(),
                sweep_at: MIN_SWEEP_AT,
            }),
            refreshed: Condvar::new(),
            id: Arc::new(()),
            counters: stats::Counters::default(),
            #[cfg(test)]
            hooks: test::Hooks::default(),
        }
    }

    /// How long before expiry a token is refreshed. For short-lived tokens the margin is
    /// at most half the lifetime, so a 2-second token is used for 1 second, not refetched
    /// on every call. Each token's refresh starts at a random point in the first half of
    /// its margin (see [When a token is refreshed](TokenStore#when-a-token-is-refreshed)).
    ///
    /// Defaults to 60 seconds.
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Keeps tokens in a file too, so that processes share them: a cron job that runs every
    /// minute asks for one token per lifetime instead of one per run, and jobs that start
    /// together make one request between them.
    ///
    /// - The file (JSON) holds, per request, the token with the wall-clock times its request
    ///   was sent and it expires, sealed (encrypted and authenticated with a key derived
    ///   from the app secret, see [`CacheKey::for_request`](crate::CacheKey::for_request)):
    ///   whoever reads the file without the secret learns no token. Never the secret. It is
    ///   bound to the token URL and app id: a file written for another app or server, or an
    ///   entry sealed with another secret, is not used.
    /// - It is read only when memory has no fresh token, so cache hits cost the same.
    /// - It is written atomically (a temporary file beside it, then a rename), with mode
    ///   0600 on Unix; expired tokens leave it on each write. A missing folder is created
    ///   first, with mode 0700 on Unix (as ssh makes `~/.ssh`).
    /// - The process that refreshes holds an exclusive lock on `<path>.lock`; others wait
    ///   for it (at most the config's timeout) and take the new token from the file. The OS
    ///   releases the lock of a process that dies. Refreshes of different requests share
    ///   this one lock. Built with Rust before 1.89, which has no such lock, it is the file
    ///   `<path>.lease` instead, made by the process that refreshes: one that dies holds it
    ///   until the config's timeout has passed.
    /// - A file that others may read or write, that is not a regular file (a symlink), or
    ///   whose times don't add up (received in the future: the clock jumped) is not trusted:
    ///   its tokens are not used, and the next write replaces it by rename, never writing
    ///   through a link. A corrupt, empty, huge or foreign file is treated as empty.
    /// - No problem with the file fails a `get` that the network can satisfy: the token is
    ///   returned and the problem is kept for [`last_cache_error`](TokenStore::last_cache_error).
    ///
    /// The token file is one [`TokenCache`]; [`token_cache`](TokenStore::token_cache) takes
    /// any other. A store has one cache: this replaces one set before.
    ///
    /// Defaults to no file.
    ///
    /// # Example
    /// ```no_run
    /// use logto_m2m::{Config, TokenRequest, TokenStore};
    ///
    /// let store = TokenStore::new(Config::from_env()?).cache_file("/var/cache/my-job/logto-token.json");
    /// let token = store.get(&TokenRequest::new("https://shopping.api"))?;
    /// if let Some(problem) = store.last_cache_error() {
    ///     eprintln!("warning: {problem}");
    /// }
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn cache_file(self, path: impl Into<std::path::PathBuf>) -> Self {
        self.token_cache(TokenFile::new(path.into()))
    }

    /// Shares tokens through `cache` (Redis, a database, ...): consulted when memory has no
    /// fresh token, with its refresh lock making one request per refresh across everyone
    /// who shares it. The same rules as for the token file apply: entries are sealed, no
    /// problem with the cache fails a `get` that the network can satisfy, and waiting for
    /// another holder's refresh is bounded by the config's timeout.
    ///
    /// Defaults to no cache.
    pub fn token_cache(mut self, cache: impl TokenCache + 'static) -> Self {
        self.cache = Some(Box::new(cache));
        self
    }

    /// The current problem with the token cache (file or other), if any: an
    /// [`ErrorKind::Cache`], the last one a `get` that consulted the cache ran into. It is
    /// `None` again once a later `get` consulted the cache without a problem (and an `info`
    /// event says the cache works again), so a long-running service that checks it after
    /// each `get` warns while the problem lasts, not after.
    pub fn last_cache_error(&self) -> Option<Error> {
        self.cache_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The config the store gets its tokens with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A token for `request`: the cached one while it is fresh, otherwise a new one.
    ///
    /// # Errors
    /// The error of the refresh, as [`request_token`] returns it; during the backoff after
    /// a failure, that same error again. [`ErrorKind::Timeout`] if another thread's refresh
    /// did not end within the config's timeout (twice that with a token cache, whose
    /// refresh may first wait for another process's) and a few seconds more.
    pub fn get(&self, request: &TokenRequest) -> Result<Arc<Token>, Error> {
        let now = self.now();
        match local::hit::<true>(&self.id, request, now) {
            Some(token) => Ok(token),
            None => self.get_slow(request),
        }
    }

    /// [`get`](TokenStore::get) without counting its hits: the bench's measure of what
    /// counting costs.
    #[cfg(feature = "_internal")]
    pub(crate) fn get_uncounted(&self, request: &TokenRequest) -> Result<Arc<Token>, Error> {
        let now = self.now();
        match local::hit::<false>(&self.id, request, now) {
            Some(token) => Ok(token),
            None => self.get_slow(request),
        }
    }

    /// What the store did since it was made: hits, token requests and their failures,
    /// waits for another caller's refresh, the shared cache's reads, hits, writes and
    /// errors, invalidations. Cheap: a few loads and one short lock; counting them costs
    /// a hit one thread-local increment.
    pub fn stats(&self) -> StoreStats {
        self.counters.snapshot()
    }

    /// Drops the cached token for `request`, so the next [`get`](TokenStore::get) on any
    /// thread asks for a new one. Call it when an API answers 401 to the token.
    pub fn invalidate(&self, request: &TokenRequest) {
        stats::bump(&self.counters.invalidations);
        let mut entries = self.lock();
        if let Some(entry) = find_mut(&mut entries.map, request) {
            entry.reject_held();
        }
    }

    /// Drops the cached token for `request` if it is still `token`: what to call when an
    /// API answered 401 to `token` (revoked, its signing key rotated, a role changed).
    ///
    /// Unlike [`invalidate`](TokenStore::invalidate), a thread that saw the 401 late does
    /// not throw away the fresh token another thread already got: when many threads meet
    /// the same 401 at once, the first drop counts and they share one new token.
    /// [`call`](TokenStore::call) and [`Bearer`](crate::Bearer) use it.
    ///
    /// # Example
    /// ```no_run
    /// use logto_m2m::{Config, TokenRequest, TokenStore};
    ///
    /// let store = TokenStore::new(Config::from_env()?);
    /// let request = TokenRequest::new("https://shopping.api").scope("read:products");
    /// let token = store.get(&request)?;
    /// // ... the API answered 401 to this token:
    /// store.invalidate_token(&request, &token);
    /// let fresh = store.get(&request)?; // one new request, however many threads ask
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn invalidate_token(&self, request: &TokenRequest, token: &Token) {
        stats::bump(&self.counters.invalidations);
        let mut entries = self.lock();
        let holds_it = |entry: &&mut Entry| {
            (entry.held.as_ref()).is_some_and(|h| h.token.access_token() == token.access_token())
        };
        if let Some(entry) = find_mut(&mut entries.map, request).filter(holds_it) {
            entry.reject_held();
        }
    }

    /// True when `access_token` is the one last dropped for `request` as refused: a shared
    /// cache's copy of it is no token to use.
    pub(crate) fn is_rejected(&self, request: &TokenRequest, access_token: &str) -> bool {
        let mut entries = self.lock();
        find_mut(&mut entries.map, request)
            .is_some_and(|e| e.rejected.as_deref() == Some(access_token))
    }

    /// Drops every cached token.
    pub fn clear(&self) {
        stats::bump(&self.counters.invalidations);
        let mut entries = self.lock();
        for entry in entries.map.values_mut().flatten() {
            entry.set_held(None);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // The lock is never held while user code or I/O runs, so a poisoned lock can only
        // come from a panic inside our own short critical sections, which leave the map
        // consistent: carry on.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cold]
    fn get_slow(&self, request: &TokenRequest) -> Result<Arc<Token>, Error> {
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

    /// One exchange with the token endpoint.
    fn fetch(&self, request: &TokenRequest) -> Result<Token, Error> {
        stats::bump(&self.counters.token_requests);
        #[cfg(test)]
        let result = match &self.hooks.fetch {
            Some(fetch) => fetch(&self.config, request),
            None => request_token(&self.config, request),
        };
        #[cfg(not(test))]
        let result = request_token(&self.config, request);
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
                let asked = error
                    .retry_after()
                    .unwrap_or_default()
                    .min(MAX_RETRY_AFTER_BACKOFF);
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

    /// Both clocks; in unit tests, moved by the test's offsets.
    fn now(&self) -> Now {
        let now = Now {
            mono: Instant::now(),
            wall: SystemTime::now(),
        };
        #[cfg(test)]
        let now = self.hooks.clock.shift(now);
        now
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

fn find_mut<'a>(map: &'a mut Buckets<Entry>, request: &TokenRequest) -> Option<&'a mut Entry> {
    map.get_mut(&request.key_hash())?
        .iter_mut()
        .find(|e| *e.key == *request.key())
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

impl fmt::Debug for TokenStore {
    /// The config (without its secret), the token cache, and per key how long its token has
    /// left; never a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.lock();
        let now = self.now();
        let list: Vec<DebugEntry<'_>> = entries
            .map
            .values()
            .flatten()
            .map(|entry| DebugEntry { entry, now })
            .collect();
        f.debug_struct("TokenStore")
            .field("config", &self.config)
            .field("refresh_margin", &self.margin)
            .field("token_cache", &self.cache.as_ref().map(|c| c.describe()))
            .field("entries", &list)
            .finish()
    }
}

struct DebugEntry<'a> {
    entry: &'a Entry,
    now: Now,
}

impl fmt::Debug for DebugEntry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.entry;
        let mut parts = e.key.split('\0');
        let mut s = f.debug_struct("Entry");
        s.field("resource", &parts.next().unwrap_or_default());
        s.field("scope", &parts.next().unwrap_or_default());
        if let Some(org) = parts.next().filter(|o| !o.is_empty()) {
            s.field("organization", &org);
        }
        let expires_in = e.held.as_ref().map(|h| match h.token.expires_at() {
            None => Duration::MAX,
            Some(at) => at.saturating_duration_since(self.now.mono),
        });
        s.field("token_expires_in", &expires_in);
        s.field("refreshing", &matches!(e.refresh, Refresh::Running));
        s.field("failures", &e.failures);
        s.finish()
    }
}

mod local;
mod shared;
mod stats;

pub use stats::StoreStats;
#[cfg(test)]
mod test;
