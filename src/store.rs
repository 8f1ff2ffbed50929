//! `TokenStore`: a cache around `request_token`, one request per refresh.
//!
//! Two layers. The shared one is a `Mutex` over a map from request key to entry, with a
//! `Condvar` that wakes the threads waiting for a refresh; the lock is held only to look at
//! or update an entry, never across I/O and never while user code runs (a logger, a token
//! cache, a fetch hook): what a refresh logs is decided under the lock and logged after it.
//! In front of it each thread keeps its own copies of the fresh tokens it has seen
//! (`local.rs`), valid while their key's version, an atomic bumped by every change to that
//! key's token, is the one they were taken at. A hit is a thread-local lookup, an atomic
//! load and two clock reads: no lock and no memory that another thread writes, so hits on
//! many threads don't queue.
//!
//! The shared layer lives in an `Arc` (`Inner`) because a refresh ahead of expiry runs on a
//! thread of its own (`refresh.rs`), which may outlive the call, or the store, that
//! started it.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::cache::TokenCache;
use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::hash::{PrecomputedHash, random_u64};
use crate::request::TokenRequest;
use crate::time::DisplayDuration;
use crate::token::Token;
use crate::token_file::TokenFile;

/// The first pause after a failed refresh. It doubles with each further failure up to
/// [`MAX_FAILURE_BACKOFF`], and a server's `Retry-After` lengthens it.
const FIRST_FAILURE_BACKOFF: Duration = Duration::from_secs(1);

/// The longest pause after failed refreshes.
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(30);

/// The longest a server's `Retry-After` can hold back a key.
const MAX_RETRY_AFTER_BACKOFF: Duration = Duration::from_secs(3600);

/// How much longer than a refresh may take a thread waits for another's refresh before
/// it gives up. The refresh itself is bounded; this is a safety net.
const WAIT_SLACK: Duration = Duration::from_secs(5);

/// The fewest keys at which the shared map is swept for keys whose token is long gone.
const MIN_SWEEP_AT: usize = 64;

/// The shortest default refresh margin.
const MIN_DEFAULT_MARGIN: Duration = Duration::from_secs(60);

/// A thread-safe token cache: one token per (resource, scopes, organization), refreshed
/// shortly before it expires, with one request per refresh however many threads ask.
///
/// # About threads
///
/// `TokenStore` is `Send + Sync`: share it by reference or in an `Arc`.
///
/// - A hit (a token outside its refresh margin) takes no lock: each thread keeps its own
///   copy of the tokens it got, checked against a version per key that every refresh
///   and [`invalidate`](TokenStore::invalidate) bumps, so
///   every thread's next call sees the change. Tens of nanoseconds, no
///   allocation, and threads don't slow each other down. (The copy is made once per thread
///   and token, on that thread's first hit after a change.)
/// - Inside the refresh margin, every caller gets the still-valid token at once, however
///   long the refresh takes: the refresh runs on a thread of its own, started by the first
///   caller to find the token in its margin, one per key at a time. That thread ends with
///   the refresh (within its bound: the config's timeout, twice it with a token cache);
///   it holds the store's shared state, not the store, so dropping the store while it runs
///   is fine. A process that exits meanwhile loses that refresh and nothing else: a token
///   file is replaced by a rename, never half-written; the OS releases the token file's
///   lock (the lease file of a build with Rust before 1.89 lapses after the timeout, as a
///   killed process's does), and a Redis lock lapses after its lease.
/// - Only a caller that finds no valid token waits: the first one asks the server (or,
///   when a refresh is already running, no one does again) and the others wait for that
///   answer, which they all get: the same token, or the same error.
/// - Keys are independent: one key's refresh never blocks another key's callers.
/// - No lock of the store is held while your code runs (the logger, a [`TokenCache`]), and
///   a refresh counts as over only once its outcome is recorded. So a panic in a caller,
///   in a refresh, or in a logger, even mid-refresh, neither poisons the store nor leaves
///   a key refreshing forever: waiters take the refresh over, and a panicked refresh ahead
///   is tried again after a pause, as a failed one is.
///
/// # When a token is refreshed
///
/// A token's lifetime counts from when its request was sent, and it is over by whichever
/// clock says so first: the monotonic clock, which a wall-clock step can't move, or the
/// wall clock, which keeps running while the machine sleeps (Linux's monotonic clock stops
/// then). The refresh starts within the [refresh margin](TokenStore::refresh_margin) before
/// that end (by default twice what a refresh may take, at least 60 seconds: 60 s with the
/// default 30 s timeout, 120 s with a token cache; at most half the lifetime, so a
/// 2-second token is used for 1 second, not refetched on every call), at a point drawn at
/// random in the first half of the margin, so that processes that got their tokens
/// together don't all refresh in the same second.
///
/// A store with no valid token in memory (a new process, or after
/// [`invalidate`](TokenStore::invalidate)) takes one from its token cache when the cache's
/// is outside the margin, and otherwise refreshes while its caller waits: a short-lived
/// process (a cron job) leaves no refresh half done when it exits. Should that refresh
/// fail while the cache's token is still valid, the caller gets that token, and the store
/// keeps it as its own.
///
/// # Failures
///
/// If a refresh fails while the old token is still valid, callers keep getting the old one
/// at once, and the next refresh starts (in the background again) on the first call after
/// a pause of 1 second, doubling per failure up to 30 seconds (or the server's
/// `Retry-After`, up to an hour): during an outage no caller waits, and the server gets one
/// request per pause. If a refresh fails with no valid token left, callers get that error
/// without a new request for the same pause, so a retry loop can't storm the server.
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
/// // The API said 401 to this token: it was revoked or the key rotated.
/// store.invalidate_token(&request, &token);
/// # Ok::<_, logto_m2m::Error>(())
/// ```
pub struct TokenStore {
    /// What the store shares with a refresh running in the background.
    inner: Arc<Inner>,
    cache: Option<Arc<dyn TokenCache>>,
    /// `None`: the default, see `TokenStore::margin`.
    margin: Option<Duration>,
    /// Names the store for the threads' copies, which hold a `Weak` to it: that tells a
    /// store that is gone from a new one at the same address.
    id: Arc<()>,
}

/// The store's state that a refresh in the background needs as well: the config, the
/// entries and their condvar, the cache problem, the counters.
struct Inner {
    config: Config,
    cache_error: Mutex<Option<Error>>,
    entries: Mutex<Entries>,
    refreshed: Condvar,
    counters: stats::Counters,
    /// Set once a margin shorter than a refresh's bound was warned about.
    margin_checked: AtomicBool,
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
    // The system's random source (ring's); should it fail, no jitter this once.
    let random = random_u64().unwrap_or(0);
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
    /// A refresh is asking the server: a caller's, or one ahead of expiry on a thread of
    /// its own. Callers with no valid token wait on the condvar.
    Running,
    /// The last refresh gave this token, kept here for its waiters when it can't be cached
    /// (no lifetime).
    Landed(Arc<Token>),
    /// The last refresh failed: until `until`, callers get this error (or a still-valid
    /// token) without a new request. `announced`: the first caller held off by it said so.
    BackingOff {
        error: Error,
        until: Instant,
        announced: bool,
    },
    /// The last refresh ended without an outcome (it panicked, or its thread could not be
    /// started): a caller with no valid token refreshes instead at once; with a valid
    /// token, the next refresh ahead waits until `until`, as after a failure.
    Abandoned { until: Instant },
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
            Refresh::BackingOff { error, until, .. } if now.mono < *until => Some(error),
            _ => None,
        }
    }

    /// Whether a refresh may start now: none is running, and no failure's pause lasts.
    fn may_refresh(&self, now: Now) -> bool {
        match &self.refresh {
            Refresh::Running => false,
            Refresh::BackingOff { until, .. } | Refresh::Abandoned { until } => now.mono >= *until,
            Refresh::Idle | Refresh::Landed(_) => true,
        }
    }

    /// Counts a failure, and says how long the next refresh waits: 1 s doubling per
    /// failure in a row up to 30 s, or what the server asked for (up to an hour).
    fn fail(&mut self, asked: Option<Duration>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let doubling = FIRST_FAILURE_BACKOFF
            .saturating_mul(1 << (self.failures - 1).min(16))
            .min(MAX_FAILURE_BACKOFF);
        doubling.max(asked.unwrap_or_default().min(MAX_RETRY_AFTER_BACKOFF))
    }

    /// When the backoff holds a caller off for the first time: how much of it is left
    /// (marking it said). `None` when it was said already.
    fn announce_backoff(&mut self, now: Now) -> Option<Duration> {
        match &mut self.refresh {
            Refresh::BackingOff {
                until, announced, ..
            } if !*announced => {
                *announced = true;
                Some(until.saturating_duration_since(now.mono))
            }
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
    /// No valid token, and the last refresh's failure holds callers off: its error.
    HeldOff(Error),
    /// No valid token: refresh, or wait for the refresh that is running.
    Refresh,
    /// This valid token, and a refresh ahead on a thread of its own.
    RefreshAhead(Arc<Token>),
}

impl TokenStore {
    /// An empty store that gets its tokens with `config`.
    pub fn new(config: Config) -> TokenStore {
        TokenStore {
            inner: Arc::new(Inner {
                config,
                cache_error: Mutex::new(None),
                entries: Mutex::new(Entries {
                    map: Buckets::default(),
                    sweep_at: MIN_SWEEP_AT,
                }),
                refreshed: Condvar::new(),
                counters: stats::Counters::default(),
                margin_checked: AtomicBool::new(false),
                #[cfg(test)]
                hooks: test::Hooks::default(),
            }),
            cache: None,
            margin: None,
            id: Arc::new(()),
        }
    }

    /// How long before a token expires its refresh may start: the refresh starts at a
    /// random point in the first half of this margin (between `margin` and `margin / 2`
    /// before expiry), and never before half of the token's lifetime has passed (the
    /// margin is at most half the lifetime). Meanwhile callers
    /// keep getting the token at once, and the refresh runs on a thread of its own (see
    /// [When a token is refreshed](TokenStore#when-a-token-is-refreshed)).
    ///
    /// A margin shorter than what a refresh may take (the config's timeout, twice it with a
    /// token cache, whose refresh may first wait for another process's) leaves too little
    /// time: a refresh that takes that long ends after the token expired, and callers wait
    /// for it. The store says so, once, in a `warn` log event when such a margin is set, or
    /// when a token cache set after it makes a refresh's bound longer than the margin.
    ///
    /// Defaults to twice what a refresh may take, at least 60 seconds: 60 s with the
    /// default 30 s timeout, 120 s with a token cache, so that even a refresh that starts
    /// at the last point the margin allows and takes its whole bound ends before expiry.
    ///
    /// # Example
    /// ```
    /// use std::time::Duration;
    /// use logto_m2m::{Config, TokenStore};
    ///
    /// let config = Config::logto("https://tenant.logto.app", "app-id", "app-secret")?
    ///     .timeout(Duration::from_secs(10));
    /// // Refresh between 5 and 2.5 minutes before expiry: time for a slow refresh or two.
    /// let store = TokenStore::new(config).refresh_margin(Duration::from_secs(300));
    /// assert!(format!("{store:?}").contains("refresh_margin: 300s"));
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.margin = Some(margin);
        self.check_margin();
        self
    }

    /// The `warn` event, once per store, for a margin set shorter than a refresh's bound.
    /// Both change only through the setters, which call this.
    fn check_margin(&self) {
        let Some(margin) = self.margin else { return };
        if margin < self.refresh_bound() && !self.inner.margin_checked.swap(true, Ordering::Relaxed)
        {
            warn_short_margin(
                margin,
                self.inner.config.timeout_value(),
                self.cache.is_some(),
            );
        }
    }

    /// The refresh margin: the one set, or twice the refresh's bound, at least 60 s.
    fn margin(&self) -> Duration {
        self.margin
            .unwrap_or_else(|| MIN_DEFAULT_MARGIN.max(self.refresh_bound().saturating_mul(2)))
    }

    /// The longest a refresh may take: the config's timeout, and with a shared cache the
    /// timeout again first, waiting for another holder's refresh.
    fn refresh_bound(&self) -> Duration {
        refresh_bound(&self.inner.config, self.cache.is_some())
    }

    /// Keeps tokens in a file too, so that processes share them: a cron job that runs every
    /// minute asks for one token per lifetime instead of one per run, and jobs that start
    /// together make one request between them.
    ///
    /// - The file (JSON) holds, per token URL, app and request, the token with the
    ///   wall-clock times its request was sent and it expires, sealed (encrypted and
    ///   authenticated with a key derived from the app secret, the token URL and the app
    ///   id, see [`TokenCache`]): whoever reads the file without the secret learns no
    ///   token. Never the secret. Apps and servers sharing a file each find only their own
    ///   entries; one sealed with another secret, or copied under another key, is not used.
    /// - It is read only when memory has no fresh token, so cache hits cost the same.
    /// - It is written atomically (a temporary file beside it, then a rename), with mode
    ///   0600 on Unix; expired tokens leave it on each write. A missing folder is created
    ///   first, with mode 0700 on Unix (as ssh makes `~/.ssh`). A temporary file left by a
    ///   process killed mid-write (`<path>.tmp.*`, each a random name) is in nobody's way;
    ///   the next refresh after it is older than the config's timeout removes it.
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
        self.cache = Some(Arc::new(cache));
        // A refresh may now take twice as long: is a margin set before still enough?
        self.check_margin();
        self
    }

    /// The current problem with the token cache (file or other), if any: an
    /// [`ErrorKind::Cache`], the last one a `get` that consulted the cache ran into. It is
    /// `None` again once a later `get` consulted the cache without a problem (and an `info`
    /// event says the cache works again), so a long-running service that checks it after
    /// each `get` warns while the problem lasts, not after.
    pub fn last_cache_error(&self) -> Option<Error> {
        self.inner
            .cache_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A token for `request`: the cached one while it is valid, otherwise a new one.
    ///
    /// Inside the refresh margin the cached token comes back at once and a refresh starts
    /// on a thread of its own; only a call that finds no valid token waits for a refresh
    /// (its own, or the one running).
    ///
    /// A request whose subject token is a file (see
    /// [`TokenRequest::personal_access_token`]) has the file read first, at each call, and
    /// is looked up by a hash of what it holds.
    ///
    /// # Errors
    /// The error of the refresh, as [`request_token`](crate::request_token) returns it;
    /// during the backoff after a failure, that same error again. [`ErrorKind::Timeout`] if
    /// the running refresh did not end within the config's timeout (twice that with a token
    /// cache, whose refresh may first wait for another process's) and a few seconds more. A
    /// [refused](TokenRequest#what-is-refused) request, or a subject token file that can't be
    /// read, is [`ErrorKind::Config`], before the cache is looked at.
    pub fn get(&self, request: &TokenRequest) -> Result<Arc<Token>, Error> {
        if !request.is_plain() {
            return self.get_read(request);
        }
        self.get_plain(request)
    }

    /// [`get`](TokenStore::get) of a request that is refused, or whose subject's files are
    /// read now.
    #[cold]
    fn get_read(&self, request: &TokenRequest) -> Result<Arc<Token>, Error> {
        self.get_plain(&*request.read_now()?)
    }

    /// [`get`](TokenStore::get) of a request as it is.
    #[inline]
    fn get_plain(&self, request: &TokenRequest) -> Result<Arc<Token>, Error> {
        let now = self.now();
        match local::hit(&self.id, request, now) {
            Some(token) => Ok(token),
            None => self.get_slow(request),
        }
    }

    /// What the store did since it was made: hits, token requests and their failures,
    /// waits for another caller's refresh, the shared cache's reads, hits, writes and
    /// errors, invalidations. Cheap: a few loads and one short lock; counting them costs
    /// a hit one thread-local increment.
    pub fn stats(&self) -> StoreStats {
        self.inner.counters.snapshot()
    }

    /// Drops whatever token is cached for `request`, so the next [`get`](TokenStore::get)
    /// on any thread asks for a new one. For a request whose subject token is a file, the
    /// token of what the file holds now.
    ///
    /// When an API answered 401 to a token, prefer
    /// [`invalidate_token`](TokenStore::invalidate_token): this drops the token cached
    /// *now*, which may already be the fresh one that another thread got after meeting the
    /// same 401, so threads that meet one 401 each cost a token request.
    pub fn invalidate(&self, request: &TokenRequest) {
        stats::bump(&self.inner.counters.invalidations);
        // A refused request has nothing cached; an unreadable subject file can't say which.
        let Ok(request) = request.read_now() else {
            return;
        };
        let mut entries = self.inner.lock();
        if let Some(entry) = find_mut(&mut entries.map, &request) {
            entry.reject_held();
        }
    }

    /// Drops the cached token for `request` only while it is still `token`: call it when
    /// an API answered 401 to `token` (revoked, the signing key rotated, a role changed),
    /// and the next [`get`](TokenStore::get) on any thread asks for a new one.
    ///
    /// Unlike [`invalidate`](TokenStore::invalidate), a thread that meets the 401 late does
    /// not throw away the fresh token another thread already got: however many threads
    /// meet a 401 with the same token, the first drop counts and they share one new token.
    /// The refused token is not taken back from a token cache either (another process may
    /// still have it there). [`call`](TokenStore::call) and [`Bearer`](crate::Bearer) do
    /// this for you.
    ///
    /// # Example
    /// ```no_run
    /// use logto_m2m::{Config, TokenRequest, TokenStore};
    ///
    /// let store = TokenStore::new(Config::from_env()?);
    /// let request = TokenRequest::new("https://shopping.api").scope("read:products");
    /// let token = store.get(&request)?;
    /// let status = 401; // what the API answered to `token`
    /// if status == 401 {
    ///     store.invalidate_token(&request, &token);
    ///     let fresh = store.get(&request)?; // one new token, however many threads do this
    ///     # let _ = fresh;
    /// }
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn invalidate_token(&self, request: &TokenRequest, token: &Token) {
        stats::bump(&self.inner.counters.invalidations);
        let Ok(request) = request.read_now() else {
            return;
        };
        let request = &*request;
        let mut entries = self.inner.lock();
        let holds_it = |entry: &&mut Entry| {
            (entry.held.as_ref()).is_some_and(|h| h.token.access_token() == token.access_token())
        };
        if let Some(entry) = find_mut(&mut entries.map, request).filter(holds_it) {
            entry.reject_held();
        }
    }

    /// The config tokens are asked for with.
    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Both clocks; in unit tests, moved by the test's offsets.
    fn now(&self) -> Now {
        self.inner.now()
    }
}

impl Inner {
    /// True when `access_token` is the one last dropped for `request` as refused: a shared
    /// cache's copy of it is no token to use.
    fn is_rejected(&self, request: &TokenRequest, access_token: &str) -> bool {
        let mut entries = self.lock();
        find_mut(&mut entries.map, request)
            .is_some_and(|e| e.rejected.as_deref() == Some(access_token))
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // The lock is never held while user code or I/O runs, so a poisoned lock can only
        // come from a panic inside our own short critical sections, which leave the map
        // consistent: carry on.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
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

/// The longest a refresh may take with `config`, with or without a shared cache.
fn refresh_bound(config: &Config, shared_cache: bool) -> Duration {
    let timeout = config.timeout_value();
    if shared_cache {
        timeout.saturating_mul(2)
    } else {
        timeout
    }
}

/// The `warn` event for a refresh margin shorter than what a refresh may take.
#[cold]
fn warn_short_margin(margin: Duration, timeout: Duration, shared_cache: bool) {
    let (bound, what) = if shared_cache {
        (
            timeout.saturating_mul(2),
            "twice the timeout, with a token cache",
        )
    } else {
        (timeout, "the timeout")
    };
    log::warn!(
        target: "logto_m2m",
        "refresh margin {} is shorter than a refresh may take ({}, {what}): a slow refresh \
         ends after the token expired and callers wait for it; give a margin of at least {}",
        DisplayDuration(margin),
        DisplayDuration(bound),
        DisplayDuration(bound)
    );
}

fn find_mut<'a>(map: &'a mut Buckets<Entry>, request: &TokenRequest) -> Option<&'a mut Entry> {
    map.get_mut(&request.key_hash())?
        .iter_mut()
        .find(|e| *e.key == *request.key())
}

impl fmt::Debug for TokenStore {
    /// The config (without its secret), the token cache, and per key how long its token has
    /// left; never a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A copy taken under the lock, formatted after it: the formatter writes wherever
        // the caller's output goes (a logger), and `describe` is the cache's own code.
        let list: Vec<DebugEntry> = {
            let entries = self.inner.lock();
            let now = self.now();
            entries
                .map
                .values()
                .flatten()
                .map(|e| DebugEntry {
                    key: e.key.clone(),
                    expires_in: e.held.as_ref().map(|h| {
                        let (end, _) = h.token.ends_at(Duration::ZERO);
                        end.map_or(Duration::MAX, |at| at.saturating_duration_since(now.mono))
                    }),
                    refreshing: matches!(e.refresh, Refresh::Running),
                    failures: e.failures,
                })
                .collect()
        };
        f.debug_struct("TokenStore")
            .field("config", &self.inner.config)
            .field("refresh_margin", &self.margin())
            .field("token_cache", &self.cache.as_ref().map(|c| c.describe()))
            .field("entries", &list)
            .finish()
    }
}

/// What `Debug` shows of one entry.
struct DebugEntry {
    key: Box<str>,
    expires_in: Option<Duration>,
    refreshing: bool,
    failures: u32,
}

impl fmt::Debug for DebugEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Entry");
        if let Some(parts) = crate::request::key_parts(&self.key) {
            s.field("resource", &parts.resource);
            s.field("scope", &parts.scopes);
            if let Some(org) = parts.organization {
                s.field("organization", &org);
            }
            if parts.subject != "app" {
                s.field("acting_for", &parts.subject);
            }
        }
        s.field("token_expires_in", &self.expires_in);
        s.field("refreshing", &self.refreshing);
        s.field("failures", &self.failures);
        s.finish()
    }
}

mod local;
mod refresh;
mod shared;
mod stats;

pub use stats::StoreStats;
#[cfg(test)]
mod test;
