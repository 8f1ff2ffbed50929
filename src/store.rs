//! `TokenStore`: a cache around `request_token`, one request per refresh.
//!
//! One `Mutex` guards a map from request key to entry, and one `Condvar` wakes the threads
//! that wait for a refresh. The lock is held only to look at or update an entry, never
//! across network I/O: the thread that refreshes marks the entry "in flight", lets go of the
//! lock, asks the server, then takes the lock again to store the result.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::cache::CacheFile;
use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::request::{TokenRequest, request_token};
use crate::response::Token;

/// The refresh margin when none is set: 60 seconds before expiry.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The first pause after a failed refresh with no valid token left: 1 second. It doubles
/// with each further failure up to [`MAX_FAILURE_BACKOFF`], and a server's `Retry-After`
/// lengthens it.
pub const FIRST_FAILURE_BACKOFF: Duration = Duration::from_secs(1);

/// The longest pause after failed refreshes: 30 seconds.
pub const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(30);

/// The longest a server's `Retry-After` can hold back a key: one hour.
const MAX_RETRY_AFTER_BACKOFF: Duration = Duration::from_secs(3600);

/// How much longer than the config's timeout a thread waits for another's refresh before
/// it gives up. The refresh itself is bounded by the timeout; this is a safety net.
const WAIT_SLACK: Duration = Duration::from_secs(5);

/// A thread-safe token cache: one token per (resource, scopes, organization), refreshed
/// shortly before it expires, with one request per refresh however many threads ask.
///
/// # About threads
///
/// `TokenStore` is `Send + Sync`: share it by reference or in an `Arc`. Inside is one
/// `Mutex`, held for a map lookup and never across network I/O, and one `Condvar`.
///
/// - A hit (a token outside its refresh margin) takes the lock, clones an `Arc` and lets go:
///   tens of nanoseconds, no allocation.
/// - Inside the refresh margin, the first caller refreshes while the others are handed the
///   still-valid token without waiting.
/// - With no usable token, the first caller asks the server and the others wait for its
///   answer, which they all get: the same token, or the same error.
/// - Keys are independent: one key's refresh never blocks another key's callers.
/// - A panic in a caller, even during a refresh, neither poisons the store nor leaves
///   waiters hanging: one of them takes the refresh over.
///
/// # Failures
///
/// If a refresh fails while the old token is still valid, callers keep getting the old one.
/// If it fails with no valid token left, callers get that error without a new request for
/// [`FIRST_FAILURE_BACKOFF`], doubling per failure up to [`MAX_FAILURE_BACKOFF`] (or the
/// server's `Retry-After`, up to an hour), so a retry loop can't storm the server.
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
    /// `request_token`, except in unit tests, which count, stall or panic here.
    fetch: Fetch,
    margin: Duration,
    cache: Option<CacheFile>,
    entries: Mutex<Entries>,
    refreshed: Condvar,
}

/// Keyed by the request's precomputed key hash; the entries in a bucket share a hash and
/// are told apart by their full key (a collision is all but impossible, but not assumed
/// away).
type Fetch = fn(&Config, &TokenRequest) -> Result<Token, Error>;

type Entries = HashMap<u64, Vec<Entry>, BuildHasherDefault<PrecomputedHash>>;

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

struct Entry {
    key: Box<str>,
    token: Option<Arc<Token>>,
    /// `None`: the lifetime is too long to represent, so it never expires.
    expires_at: Option<Instant>,
    /// When callers start a refresh ahead of expiry; `None`: never.
    refresh_at: Option<Instant>,
    in_flight: bool,
    /// Bumped when a refresh ends; waiters compare it to know theirs is over.
    generation: u64,
    /// The outcome of the last refresh, for the threads that waited for it. `None` after a
    /// refresh that panicked: the waiters then start their own.
    last: Option<Result<Arc<Token>, Error>>,
    failures: u32,
    /// The last failure, and until when it stands in for a new request.
    backoff: Option<(Error, Instant)>,
}

impl Entry {
    fn new(key: &str) -> Entry {
        Entry {
            key: key.into(),
            token: None,
            expires_at: None,
            refresh_at: None,
            in_flight: false,
            generation: 0,
            last: None,
            failures: 0,
            backoff: None,
        }
    }

    /// Drops the token; the backoff of a failure stays.
    fn forget(&mut self) {
        self.token = None;
        self.expires_at = None;
        self.refresh_at = None;
    }

    /// The token, if it is not in its refresh margin yet.
    fn fresh(&self, now: Instant) -> Option<&Arc<Token>> {
        let token = self.token.as_ref()?;
        self.refresh_at.is_none_or(|at| now < at).then_some(token)
    }

    /// The token, if it has not expired.
    fn valid(&self, now: Instant) -> Option<&Arc<Token>> {
        let token = self.token.as_ref()?;
        self.expires_at.is_none_or(|at| now < at).then_some(token)
    }

    fn backoff_error(&self, now: Instant) -> Option<&Error> {
        match &self.backoff {
            Some((err, until)) if now < *until => Some(err),
            _ => None,
        }
    }
}

impl TokenStore {
    /// An empty store that gets its tokens with `config`.
    pub fn new(config: Config) -> TokenStore {
        TokenStore {
            config,
            fetch: request_token,
            margin: DEFAULT_REFRESH_MARGIN,
            cache: None,
            entries: Mutex::new(Entries::default()),
            refreshed: Condvar::new(),
        }
    }

    /// How long before expiry a token is refreshed. For short-lived tokens the margin is
    /// at most half the lifetime, so a 2-second token is used for 1 second, not refetched
    /// on every call.
    ///
    /// Defaults to 60 seconds ([`DEFAULT_REFRESH_MARGIN`]).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Keeps tokens in a file too, so that processes share them: a cron job that runs every
    /// minute asks for one token per lifetime instead of one per run, and jobs that start
    /// together make one request between them.
    ///
    /// - The file (JSON) holds, per request, the token with the wall-clock times it was
    ///   received and expires; never the secret. It is bound to the token URL and app id:
    ///   a file written for another app or server is not used.
    /// - It is read only when memory has no fresh token, so cache hits cost the same.
    /// - It is written atomically (a temporary file beside it, then a rename), with mode
    ///   0600 on Unix.
    /// - The process that refreshes holds an exclusive lock on `<path>.lock`; others wait
    ///   for it (at most the config's timeout) and then take the new token from the file.
    ///   The OS releases the lock of a process that dies. Refreshes of different requests
    ///   share this one lock.
    /// - A file that others may read or write, that is not a regular file (a symlink), or
    ///   whose times don't add up (received in the future: the clock jumped) is not trusted:
    ///   its tokens are not used, and the next write replaces it by rename, never writing
    ///   through a link. A corrupt, empty, huge or foreign file is treated as empty.
    /// - No problem with the file fails a `get` that the network can satisfy: the token is
    ///   returned and the problem is kept for [`last_cache_error`](TokenStore::last_cache_error).
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
    pub fn cache_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.cache = Some(CacheFile::new(path.into()));
        self
    }

    /// The last problem with the token file, if any (an [`ErrorKind::CacheFile`]). It stays
    /// until another problem replaces it.
    pub fn last_cache_error(&self) -> Option<Error> {
        self.cache.as_ref()?.last_error()
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
    /// did not end within the config's timeout and a few seconds more.
    pub fn get(&self, request: &TokenRequest) -> Result<Arc<Token>, Error> {
        let now = Instant::now();
        let entries = self.lock();
        if let Some(token) = find(&entries, request).and_then(|e| e.fresh(now)) {
            return Ok(Arc::clone(token));
        }
        self.get_slow(entries, request)
    }

    /// Drops the cached token for `request`, so the next [`get`](TokenStore::get) asks for
    /// a new one. Call it when an API answers 401 to the token.
    pub fn invalidate(&self, request: &TokenRequest) {
        let mut entries = self.lock();
        if let Some(entry) = find_mut(&mut entries, request) {
            entry.forget();
        }
    }

    /// Drops every cached token.
    pub fn clear(&self) {
        let mut entries = self.lock();
        for entry in entries.values_mut().flatten() {
            entry.forget();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // The lock is never held while user code or I/O runs, so a poisoned lock can only
        // come from a panic inside our own short critical sections, which leave the map
        // consistent: carry on.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cold]
    fn get_slow(
        &self,
        mut entries: MutexGuard<'_, Entries>,
        request: &TokenRequest,
    ) -> Result<Arc<Token>, Error> {
        let give_up =
            Instant::now().checked_add(self.config.timeout_value().saturating_add(WAIT_SLACK));
        loop {
            let now = Instant::now();
            let entry = find_or_insert(&mut entries, request);
            if let Some(token) = entry.valid(now) {
                // Valid but in the refresh margin: one caller refreshes, the others (and the
                // callers during a backoff) keep using this one.
                if entry.fresh(now).is_some()
                    || entry.in_flight
                    || entry.backoff_error(now).is_some()
                {
                    return Ok(Arc::clone(token));
                }
                break;
            }
            if entry.in_flight {
                let generation = entry.generation;
                entries = self.wait(entries, give_up)?;
                let entry = find_or_insert(&mut entries, request);
                if entry.generation != generation
                    && let Some(result) = &entry.last
                {
                    return result.clone();
                }
                continue;
            }
            if let Some(err) = entry.backoff_error(now) {
                return Err(err.clone());
            }
            break;
        }
        find_or_insert(&mut entries, request).in_flight = true;
        drop(entries);

        let flight = Flight {
            store: self,
            request,
            done: false,
        };
        let network = || (self.fetch)(&self.config, request);
        let result = match &self.cache {
            Some(file) => file.fetch(&self.config, request, self.margin, network),
            None => network(),
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

    /// Stores a refresh's outcome and wakes the waiters. Returns what the refreshing caller
    /// gets: the new token, or on failure the old one while it is valid, or the error.
    fn store(
        &self,
        request: &TokenRequest,
        result: Result<Token, Error>,
    ) -> Result<Arc<Token>, Error> {
        let mut entries = self.lock();
        let entry = find_or_insert(&mut entries, request);
        let now = Instant::now();
        let outcome = match result {
            Ok(token) => {
                let token = Arc::new(token);
                entry.failures = 0;
                entry.backoff = None;
                let lifetime = token.expires_in();
                if lifetime.is_zero() {
                    // Valid for no time at all: hand it to this round of callers, keep
                    // nothing.
                    entry.forget();
                } else {
                    let margin = self.margin.min(lifetime / 2);
                    entry.expires_at = token.expires_at();
                    entry.refresh_at = token.received_at().checked_add(lifetime - margin);
                    entry.token = Some(Arc::clone(&token));
                }
                Ok(token)
            }
            Err(err) => {
                entry.failures = entry.failures.saturating_add(1);
                let doubling = FIRST_FAILURE_BACKOFF
                    .saturating_mul(1 << (entry.failures - 1).min(16))
                    .min(MAX_FAILURE_BACKOFF);
                let asked = err
                    .retry_after()
                    .unwrap_or_default()
                    .min(MAX_RETRY_AFTER_BACKOFF);
                if let Some(until) = now.checked_add(doubling.max(asked)) {
                    entry.backoff = Some((err.clone(), until));
                }
                match entry.valid(now) {
                    Some(old) => Ok(Arc::clone(old)),
                    None => Err(err),
                }
            }
        };
        entry.last = Some(outcome.clone());
        entry.in_flight = false;
        entry.generation = entry.generation.wrapping_add(1);
        drop(entries);
        self.refreshed.notify_all();
        outcome
    }
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
        self.store.store(self.request, result)
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut entries = self.store.lock();
        let entry = find_or_insert(&mut entries, self.request);
        entry.in_flight = false;
        entry.last = None;
        entry.generation = entry.generation.wrapping_add(1);
        drop(entries);
        self.store.refreshed.notify_all();
    }
}

fn find<'a>(entries: &'a Entries, request: &TokenRequest) -> Option<&'a Entry> {
    entries
        .get(&request.key_hash())?
        .iter()
        .find(|e| *e.key == *request.key())
}

fn find_mut<'a>(entries: &'a mut Entries, request: &TokenRequest) -> Option<&'a mut Entry> {
    entries
        .get_mut(&request.key_hash())?
        .iter_mut()
        .find(|e| *e.key == *request.key())
}

fn find_or_insert<'a>(entries: &'a mut Entries, request: &TokenRequest) -> &'a mut Entry {
    let bucket = entries.entry(request.key_hash()).or_default();
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
    /// The config (without its secret), the token file, and per key how long its token has
    /// left; never a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.lock();
        let now = Instant::now();
        let list: Vec<DebugEntry<'_>> = entries
            .values()
            .flatten()
            .map(|entry| DebugEntry { entry, now })
            .collect();
        f.debug_struct("TokenStore")
            .field("config", &self.config)
            .field("refresh_margin", &self.margin)
            .field("cache_file", &self.cache.as_ref().map(CacheFile::path))
            .field("entries", &list)
            .finish()
    }
}

struct DebugEntry<'a> {
    entry: &'a Entry,
    now: Instant,
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
        let expires_in = match (&e.token, e.expires_at) {
            (None, _) => None,
            (Some(_), None) => Some(Duration::MAX),
            (Some(_), Some(at)) => Some(at.saturating_duration_since(self.now)),
        };
        s.field("token_expires_in", &expires_in);
        s.field("refreshing", &e.in_flight);
        s.field("failures", &e.failures);
        s.finish()
    }
}

#[cfg(test)]
mod test {
    //! Store logic with the network replaced by functions that count, stall, fail or
    //! panic. Behaviour against the real server is in `tests/store.rs`.

    use super::*;
    use crate::response::parse_token_response;
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    use std::thread;

    fn store(fetch: Fetch) -> TokenStore {
        let config = Config::new("http://127.0.0.1:9/token", "app", "secret-canary-1234").unwrap();
        let mut store = TokenStore::new(config);
        store.fetch = fetch;
        store
    }

    fn token(expires_in: u64) -> Result<Token, Error> {
        let body = format!(
            r#"{{"access_token":"tok-{}","token_type":"Bearer","expires_in":{expires_in}}}"#,
            Instant::now().elapsed().as_nanos()
        );
        parse_token_response(200, body.as_bytes())
    }

    fn failure() -> Result<Token, Error> {
        Err(Error::new(ErrorKind::Transport {
            message: "connection refused".into(),
        }))
    }

    #[test]
    fn expires_in_zero_is_returned_but_not_cached() {
        static CALLS: AtomicU32 = AtomicU32::new(0);
        let s = store(|_, _| {
            CALLS.fetch_add(1, SeqCst);
            token(0)
        });
        let r = TokenRequest::new("r");
        assert!(s.get(&r).is_ok());
        assert!(s.get(&r).is_ok());
        assert_eq!(CALLS.load(SeqCst), 2);
    }

    #[test]
    fn hit_does_not_fetch_and_invalidate_does() {
        static CALLS: AtomicU32 = AtomicU32::new(0);
        let s = store(|_, _| {
            CALLS.fetch_add(1, SeqCst);
            token(3600)
        });
        let r = TokenRequest::new("r").scope("b a");
        let a = s.get(&r).unwrap();
        let b = s.get(&TokenRequest::new("r").scope("a b a")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(CALLS.load(SeqCst), 1);
        s.invalidate(&r);
        let c = s.get(&r).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(CALLS.load(SeqCst), 2);
    }

    #[test]
    fn panic_during_refresh_hands_the_refresh_to_a_waiter() {
        static CALLS: AtomicU32 = AtomicU32::new(0);
        let s = store(|_, _| {
            if CALLS.fetch_add(1, SeqCst) == 0 {
                thread::sleep(Duration::from_millis(300));
                panic!("fetch panics on purpose");
            }
            token(3600)
        });
        let r = TokenRequest::new("r");
        thread::scope(|scope| {
            let first = scope.spawn(|| s.get(&r));
            // Let the first caller start its (doomed) refresh, then wait behind it.
            thread::sleep(Duration::from_millis(100));
            let second = scope.spawn(|| s.get(&r));
            assert!(first.join().is_err(), "the first caller panics");
            assert!(
                second.join().unwrap().is_ok(),
                "the waiter refreshes instead"
            );
        });
        assert_eq!(CALLS.load(SeqCst), 2);
        // Not poisoned: later callers get the cached token.
        assert!(s.get(&r).is_ok());
        assert_eq!(CALLS.load(SeqCst), 2);
    }

    #[test]
    fn failure_backs_off_and_grows() {
        static CALLS: AtomicU32 = AtomicU32::new(0);
        let s = store(|_, _| {
            CALLS.fetch_add(1, SeqCst);
            failure()
        });
        let r = TokenRequest::new("r");
        let first = s.get(&r).unwrap_err();
        // Inside the 1 s backoff: the same error, no request.
        for _ in 0..10 {
            assert_eq!(s.get(&r).unwrap_err().to_string(), first.to_string());
        }
        assert_eq!(CALLS.load(SeqCst), 1);
        thread::sleep(FIRST_FAILURE_BACKOFF + Duration::from_millis(50));
        assert!(s.get(&r).is_err());
        assert_eq!(CALLS.load(SeqCst), 2);
        // The second backoff is 2 s: still nothing after 1.05 s.
        thread::sleep(FIRST_FAILURE_BACKOFF + Duration::from_millis(50));
        assert!(s.get(&r).is_err());
        assert_eq!(CALLS.load(SeqCst), 2);
    }

    #[test]
    fn failed_refresh_ahead_keeps_the_valid_token() {
        static CALLS: AtomicU32 = AtomicU32::new(0);
        let s = store(|_, _| match CALLS.fetch_add(1, SeqCst) {
            0 => token(2),
            _ => failure(),
        })
        // Clamped to half of 2 s: the refresh starts after 1 s.
        .refresh_margin(Duration::from_secs(100));
        let r = TokenRequest::new("r");
        let old = s.get(&r).unwrap();
        thread::sleep(Duration::from_millis(1100));
        let kept = s.get(&r).unwrap();
        assert!(Arc::ptr_eq(&old, &kept));
        assert_eq!(CALLS.load(SeqCst), 2);
        // In the backoff now: no new request, still the old token.
        assert!(Arc::ptr_eq(&old, &s.get(&r).unwrap()));
        assert_eq!(CALLS.load(SeqCst), 2);
    }

    #[test]
    fn never_hands_out_an_expired_token() {
        static CALLS: AtomicU32 = AtomicU32::new(0);
        let s = store(|_, _| {
            CALLS.fetch_add(1, SeqCst);
            token(1)
        });
        let r = TokenRequest::new("r");
        let deadline = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < deadline {
            let t = s.get(&r).unwrap();
            assert!(!t.is_expired());
            thread::sleep(Duration::from_millis(20));
        }
        // 1 s tokens, refreshed after 0.5 s: about 5 requests in 2.5 s.
        let calls = CALLS.load(SeqCst);
        assert!((4..=7).contains(&calls), "{calls}");
    }

    #[test]
    fn debug_shows_keys_not_tokens() {
        let s = store(|_, _| token(3600));
        let r = TokenRequest::new("https://api")
            .scope("read")
            .organization("org-1");
        let t = s.get(&r).unwrap();
        let d = format!("{s:?} {s:#?}");
        assert!(
            d.contains("https://api") && d.contains("read") && d.contains("org-1"),
            "{d}"
        );
        assert!(!d.contains(t.access_token()), "{d}");
        assert!(!d.contains("secret-canary"), "{d}");
    }
}
