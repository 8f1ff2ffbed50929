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
///   copy of the tokens it got, checked against a version per key that every refresh
///   and [`invalidate`](TokenStore::invalidate) bumps, so
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
/// then). The refresh starts within the refresh margin before that end (60 seconds, at
/// most half the lifetime, so a 2-second token is used for 1 second, not refetched on every
/// call), at a point drawn at random in the first half of the margin, so that processes
/// that got their tokens together don't all refresh in the same second.
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
    pub(crate) config: Config,
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
pub(crate) struct PrecomputedHash(u64);

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

    /// How long before expiry a token is refreshed, for the unit tests; 60 seconds
    /// otherwise (see [When a token is refreshed](TokenStore#when-a-token-is-refreshed)).
    #[cfg(test)]
    pub(crate) fn refresh_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
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

    /// A token for `request`: the cached one while it is fresh, otherwise a new one.
    ///
    /// A request whose subject token is a file (see
    /// [`TokenRequest::personal_access_token`]) has the file read first, at each call, and
    /// is looked up by a hash of what it holds.
    ///
    /// # Errors
    /// The error of the refresh, as [`request_token`](crate::request_token) returns it;
    /// during the backoff after a failure, that same error again. [`ErrorKind::Timeout`] if
    /// another thread's refresh did not end within the config's timeout (twice that with a
    /// token cache, whose refresh may first wait for another process's) and a few seconds
    /// more. A [refused](TokenRequest#what-is-refused) request, or a subject token file that
    /// can't be read, is [`ErrorKind::Config`], before the cache is looked at.
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
        self.counters.snapshot()
    }

    /// Drops the cached token for `request`, so the next [`get`](TokenStore::get) on any
    /// thread asks for a new one. Call it when an API answers 401 to the token. For a
    /// request whose subject token is a file, the token of what the file holds now.
    pub fn invalidate(&self, request: &TokenRequest) {
        stats::bump(&self.counters.invalidations);
        // A refused request has nothing cached; an unreadable subject file can't say which.
        let Ok(request) = request.read_now() else {
            return;
        };
        let mut entries = self.lock();
        if let Some(entry) = find_mut(&mut entries.map, &request) {
            entry.reject_held();
        }
    }

    /// Drops the cached token for `request` if it is still `token`: what
    /// [`call`](TokenStore::call) and [`Bearer`](crate::Bearer) do when an API answered 401
    /// to `token`. Unlike [`invalidate`](TokenStore::invalidate), a thread that saw the 401
    /// late does not throw away the fresh token another thread already got: when many
    /// threads meet the same 401 at once, the first drop counts and they share one new
    /// token.
    pub(crate) fn invalidate_token(&self, request: &TokenRequest, token: &Token) {
        stats::bump(&self.counters.invalidations);
        let Ok(request) = request.read_now() else {
            return;
        };
        let request = &*request;
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

fn find_mut<'a>(map: &'a mut Buckets<Entry>, request: &TokenRequest) -> Option<&'a mut Entry> {
    map.get_mut(&request.key_hash())?
        .iter_mut()
        .find(|e| *e.key == *request.key())
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
        let mut s = f.debug_struct("Entry");
        if let Some(parts) = crate::request::key_parts(&e.key) {
            s.field("resource", &parts.resource);
            s.field("scope", &parts.scopes);
            if let Some(org) = parts.organization {
                s.field("organization", &org);
            }
            if parts.subject != "app" {
                s.field("acting_for", &parts.subject);
            }
        }
        let expires_in = e.held.as_ref().map(|h| {
            let (end, _) = h.token.ends_at(Duration::ZERO);
            end.map_or(Duration::MAX, |at| {
                at.saturating_duration_since(self.now.mono)
            })
        });
        s.field("token_expires_in", &expires_in);
        s.field("refreshing", &matches!(e.refresh, Refresh::Running));
        s.field("failures", &e.failures);
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
