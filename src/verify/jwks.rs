//! The issuer's keys: fetched from its JWKS URL under one deadline, kept for as long as the
//! answer's `Cache-Control` says, revalidated after that, and fetched again early for a
//! `kid` they lack.
//!
//! - **Fresh keys** (within their max-age) are found under the lock and used: no fetch.
//! - **Past the max-age** the first caller revalidates (`If-None-Match`; a 304 renews the
//!   max-age, a 200 replaces the set), and a key no longer listed stops verifying. While
//!   that fetch runs, other callers whose key is in the set go on with it; a caller whose
//!   key is not waits for that fetch, and only for it.
//! - **A failed or stalled revalidation** keeps the keys for a grace past their max-age
//!   (the answer's `stale-if-error`, at most [`MAX_STALE_IF_ERROR`], which is also the
//!   grace without one), with a warning per failed fetch; after it, every token is refused
//!   with the fetch's error until a fetch works again.
//! - **A `kid` the set lacks** (a rotation, or junk) makes one fetch, at most once per
//!   [`COOLDOWN`]: during the cooldown it is refused at once, unless a fetch is under way,
//!   which it waits for. No call fetches twice or waits for two fetches, so no caller waits
//!   longer than one fetch.
//!
//! Fetches run without the lock; a fetch counts as done only once its outcome is recorded,
//! and a panic inside it (a logger that ureq calls, say) records it as failed on the way
//! out ([`Flight`]). Nothing of the user's runs under the lock: the log events of a fetch
//! are sent after it is released.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::jws::{self, Key};
use crate::error::{Error, ErrorKind, MAX_SERVER_WORD, Redactions, VerifyErrorKind, sanitize_to};
use crate::time::DisplayDuration;
use crate::transport::Transport;

/// The least time between two fetches, and the max-age of keys whose answer said
/// `no-cache`, `no-store` or a max-age under it. Short: Logto's open-source build signs
/// with a new key right after a rotation, so a token of the new key may come a moment
/// after a fetch; it is refused until the cooldown ends.
pub(crate) const COOLDOWN: Duration = Duration::from_secs(1);

/// The max-age of keys whose answer had no `Cache-Control` max-age.
pub(crate) const DEFAULT_MAX_AGE: Duration = Duration::from_secs(10 * 60);

/// The longest max-age taken from an answer: a revocation is seen within a day whatever
/// the issuer says.
pub(crate) const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// How long past their max-age the keys are kept while fetches fail: the answer's
/// `stale-if-error` when it has one, at most this, and this when it has none. An hour
/// covers the life of a token the issuer signed before it went down (Logto's last an
/// hour), and bounds what a leaked key that was dropped from the JWKS can do against a
/// verifier that can't reach the issuer.
pub(crate) const MAX_STALE_IF_ERROR: Duration = Duration::from_secs(60 * 60);

/// The most bytes of a JWKS read; Logto's is under 1 KiB.
const MAX_JWKS_BYTES: u64 = 256 * 1024;

pub(crate) struct Jwks {
    /// The URL, checked by the verifier.
    pub(crate) url: String,
    /// How the JWKS is fetched: the verifier's roots and proxy.
    pub(crate) transport: Transport,
    state: Mutex<State>,
    /// Signalled each time a fetch is recorded.
    fetched: Condvar,
}

#[derive(Default)]
struct State {
    keys: Vec<Arc<Key>>,
    etag: Option<String>,
    /// The policy of the keys kept, by which a 304 without `Cache-Control` renews them.
    policy: Option<Policy>,
    /// Until when the keys are used without asking the issuer.
    fresh_until: Option<Instant>,
    /// Until when they are used while fetches fail (`fresh_until` + the grace).
    usable_until: Option<Instant>,
    /// Fetches recorded (each one counts, whatever it gave).
    generation: u64,
    /// When the last fetch was recorded: the cooldown counts from there, so that a JWKS
    /// that stalls each fetch to its timeout is still asked once per cooldown at most.
    last_landed: Option<Instant>,
    fetching: bool,
    /// What the last fetch failed with, until one works.
    last_error: Option<Error>,
}

impl State {
    fn find(&self, kid: &str) -> Option<Arc<Key>> {
        let key = self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))?;
        Some(Arc::clone(key))
    }
}

/// What an answer's `Cache-Control` says about keeping the keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Policy {
    /// The max-age, within [`COOLDOWN`]..=[`MAX_MAX_AGE`], before the answer's `Age`.
    pub(crate) max_age: Duration,
    /// How long past it the keys are kept while fetches fail.
    pub(crate) grace: Duration,
}

impl Policy {
    /// The policy of an answer with these `Cache-Control` values (all of its lines), or
    /// `None` when it has none. Directive names in any case, values with or without quotes;
    /// `max-age` (the smallest, if it comes more than once), `no-cache` and `no-store`
    /// (with a value or not) and `stale-if-error` are read, every other directive is not.
    pub(crate) fn from_cache_control<'a>(lines: impl Iterator<Item = &'a str>) -> Option<Policy> {
        let (mut seen, mut max_age, mut no_cache, mut stale) = (false, None, false, None);
        for directive in lines.flat_map(|line| line.split(',')) {
            seen = true;
            let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
            let name = name.trim();
            let seconds = || delta_seconds(value.trim().trim_matches('"'));
            if name.eq_ignore_ascii_case("max-age") {
                max_age = match (max_age, seconds()) {
                    (Some(a), Some(b)) => Some(b.min(a)),
                    (a, b) => a.or(b),
                };
            } else if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store")
            {
                no_cache = true;
            } else if name.eq_ignore_ascii_case("stale-if-error") {
                stale = seconds().or(stale);
            }
        }
        if !seen {
            return None;
        }
        let max_age = match (no_cache, max_age) {
            (true, _) => COOLDOWN,
            (false, None) => DEFAULT_MAX_AGE,
            (false, Some(age)) => age.clamp(COOLDOWN, MAX_MAX_AGE),
        };
        let grace = stale.map_or(MAX_STALE_IF_ERROR, |s| s.min(MAX_STALE_IF_ERROR));
        Some(Policy { max_age, grace })
    }

    /// How long keys of this policy stay fresh from an answer already `age` old: at least
    /// the cooldown.
    fn fresh_for(self, age: Duration) -> Duration {
        self.max_age.saturating_sub(age).max(COOLDOWN)
    }
}

impl Default for Policy {
    /// An answer without `Cache-Control`.
    fn default() -> Policy {
        Policy {
            max_age: DEFAULT_MAX_AGE,
            grace: MAX_STALE_IF_ERROR,
        }
    }
}

/// HTTP's delta-seconds (digits only); too many saturate.
fn delta_seconds(text: &str) -> Option<Duration> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Duration::from_secs(text.parse().unwrap_or(u64::MAX)))
}

/// What one fetch gave.
enum Answer {
    /// 200: the keys, their ETag, the answer's policy (if it said one) and `Age`.
    Keys {
        keys: Vec<Arc<Key>>,
        etag: Option<String>,
        policy: Option<Policy>,
        age: Duration,
    },
    /// 304: the keys are still the ones kept; its policy (if it said one) and `Age`.
    NotModified {
        policy: Option<Policy>,
        age: Duration,
    },
}

/// A fetch under way. It ends by [`Flight::land`]; dropped without that (a panic inside
/// the fetch), it records a failure, so that waiters wake and the next caller may fetch.
struct Flight<'a> {
    jwks: &'a Jwks,
    landed: bool,
}

impl Flight<'_> {
    /// Records the outcome, wakes the waiters, then sends the log event, without the lock.
    fn land(mut self, answer: Result<Answer, Error>) {
        self.landed = true;
        let (level, event) = self.jwks.record(answer);
        self.jwks.fetched.notify_all();
        log::log!(target: "logto_m2m", level, "{event}");
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if !self.landed {
            // Unwinding: no log event here, since a second panic (the logger's) would abort.
            let failed = self.jwks.error("the fetch ended in a panic");
            let _ = self.jwks.record(Err(failed));
            self.jwks.fetched.notify_all();
        }
    }
}

impl Jwks {
    pub(crate) fn new(url: String, transport: Transport) -> Jwks {
        Jwks {
            url,
            transport,
            state: Mutex::default(),
            fetched: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent State: every field is
        // written whole, and no code of the user's runs under it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `key` (which [`key`](Jwks::key) gave before) is still one of the issuer's:
    /// at once while the keys are fresh (the remembered tokens' path: no clone, no string
    /// compared), else as `key` finds its kid, revalidating past the max-age.
    pub(crate) fn still_has(&self, key: &Arc<Key>, timeout: Duration) -> Result<bool, Error> {
        {
            let state = self.lock();
            if state.fresh_until.is_some_and(|t| Instant::now() < t) {
                return Ok(state.keys.iter().any(|k| Arc::ptr_eq(k, key)));
            }
        }
        // unwrap_or is ok: a key is found by its kid, so it has one.
        let current = self.key(key.kid.as_deref().unwrap_or(""), timeout)?;
        Ok(Arc::ptr_eq(&current, key))
    }

    /// The key named `kid`, as the module docs say: fetching when the keys are past their
    /// max-age, or lack it and the cooldown is over; waiting only for a fetch under way.
    /// `timeout` bounds this call's fetch or wait; one too long for the clock is none.
    pub(crate) fn key(&self, kid: &str, timeout: Duration) -> Result<Arc<Key>, Error> {
        let mut now = Instant::now();
        let deadline = now.checked_add(timeout);
        // Set once this call has fetched or waited for a fetch: it never starts another.
        let mut done = false;
        let mut state = self.lock();
        loop {
            let fresh = state.fresh_until.is_some_and(|t| now < t);
            let usable = state.usable_until.is_some_and(|t| now < t);
            let found = if usable { state.find(kid) } else { None };
            let cooled = state
                .last_landed
                .is_none_or(|t| now.saturating_duration_since(t) >= COOLDOWN);
            let may_fetch = !done && !state.fetching && cooled;
            match found {
                // Stale keys are revalidated by the first caller that may fetch; others go
                // on with them (during that fetch, or while fetches fail, within the grace).
                Some(key) if fresh || !may_fetch => return Ok(key),
                _ => {}
            }
            if may_fetch {
                state.fetching = true;
                let etag = state.etag.clone();
                drop(state);
                let flight = Flight {
                    jwks: self,
                    landed: false,
                };
                // No deadline, no timeout: ureq's own arithmetic would overflow on it. (A
                // call that fetches has not waited: the whole timeout is left.)
                let timeout = deadline.is_some().then_some(timeout);
                flight.land(self.fetch(etag.as_deref(), timeout));
                done = true;
                state = self.lock();
                now = Instant::now();
                continue;
            }
            if state.fetching && !done {
                let generation = state.generation;
                while state.generation == generation {
                    state = match deadline {
                        None => self
                            .fetched
                            .wait(state)
                            .unwrap_or_else(PoisonError::into_inner),
                        Some(deadline) => {
                            let left = deadline.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                return Err(self.error(format!(
                                    "no answer within {} while waiting for another thread's fetch",
                                    DisplayDuration(timeout)
                                )));
                            }
                            let (state, _) = self
                                .fetched
                                .wait_timeout(state, left)
                                .unwrap_or_else(PoisonError::into_inner);
                            state
                        }
                    };
                }
                done = true;
                now = Instant::now();
                continue;
            }
            // Unknown during the cooldown, or after this call's fetch or wait.
            return Err(match (&state.last_error, usable) {
                (Some(e), _) => e.clone(),
                (None, true) => super::invalid("no key in the issuer's jwks has the token's kid"),
                (None, false) => self.error("the keys are past their max-age"),
            });
        }
    }

    /// Records what a fetch gave; returns its log event.
    fn record(&self, answer: Result<Answer, Error>) -> (log::Level, String) {
        let now = Instant::now();
        let mut state = self.lock();
        state.fetching = false;
        state.generation += 1;
        state.last_landed = Some(now);
        let (policy, age, event) = match answer {
            Ok(Answer::Keys {
                keys,
                etag,
                policy,
                age,
            }) => {
                // A key listed again keeps its `Arc`: remembered tokens name their key by it.
                let keys: Vec<Arc<Key>> = keys
                    .into_iter()
                    .map(|new| match state.keys.iter().find(|old| ***old == *new) {
                        Some(old) => Arc::clone(old),
                        None => new,
                    })
                    .collect();
                let event = format!("{} keys fetched", keys.len());
                state.keys = keys;
                state.etag = etag;
                (policy.unwrap_or_default(), age, event)
            }
            // A 304 without `Cache-Control` renews by the answer it confirms (RFC 9111 §4.3.4).
            Ok(Answer::NotModified { policy, age }) => {
                let policy = policy.or(state.policy).unwrap_or_default();
                (policy, age, "not modified".to_owned())
            }
            Err(e) => {
                let kept = match state.usable_until {
                    _ if state.keys.is_empty() => "no keys to verify with".to_owned(),
                    Some(until) if now < until => {
                        let left = until.duration_since(now);
                        format!(
                            "keeping the keys fetched before for {} at most",
                            DisplayDuration(Duration::from_secs(left.as_secs()))
                        )
                    }
                    _ => "the keys fetched before are past their max-age and grace; tokens are \
                          refused until a fetch works"
                        .to_owned(),
                };
                let event = format!("{e}; {kept}");
                state.last_error = Some(e);
                return (log::Level::Warn, event);
            }
        };
        let fresh_for = policy.fresh_for(age);
        state.policy = Some(policy);
        // From when the answer came: at least the cooldown, so that until a new fetch may
        // be made, the keys it gave are used.
        state.fresh_until = now.checked_add(fresh_for);
        state.usable_until = now.checked_add(fresh_for.saturating_add(policy.grace));
        state.last_error = None;
        let event = format!(
            "jwks {}: {event}, fresh for {}",
            self.url,
            DisplayDuration(fresh_for)
        );
        (log::Level::Debug, event)
    }

    /// One GET of the JWKS within `timeout`, if there is one.
    fn fetch(&self, etag: Option<&str>, timeout: Option<Duration>) -> Result<Answer, Error> {
        let agent = self.transport.agent()?;
        let mut get = agent
            .get(&self.url)
            .config()
            .timeout_global(timeout)
            .build();
        if let Some(etag) = etag {
            get = get.header("if-none-match", etag);
        }
        let response = get.call().map_err(|e| self.ureq_error(e, timeout))?;
        let status = response.status().as_u16();
        let headers = response.headers();
        let policy = Policy::from_cache_control(
            headers
                .get_all("cache-control")
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let age = headers
            .get("age")
            .and_then(|v| delta_seconds(v.to_str().ok()?.trim()))
            .unwrap_or_default();
        if status == 304 && etag.is_some() {
            return Ok(Answer::NotModified { policy, age });
        }
        if status != 200 {
            let redirect = if response.status().is_redirection() {
                "; redirects are not followed"
            } else {
                ""
            };
            return Err(self.error(format!("answered http {status}{redirect}")));
        }
        let etag = headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= MAX_SERVER_WORD && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_owned);
        let body = response
            .into_body()
            .into_with_config()
            .limit(MAX_JWKS_BYTES)
            .read_to_vec()
            .map_err(|e| self.ureq_error(e, timeout))?;
        let keys = jws::parse_jwks(&body)
            .ok_or_else(|| self.error("answered http 200 with a body that is not a jwks"))?;
        Ok(Answer::Keys {
            keys,
            etag,
            policy,
            age,
        })
    }

    fn ureq_error(&self, e: ureq::Error, timeout: Option<Duration>) -> Error {
        match e {
            ureq::Error::Timeout(_) => {
                let timeout = timeout.unwrap_or(Duration::MAX);
                self.error(format!("timed out after {}", DisplayDuration(timeout)))
            }
            ureq::Error::BodyExceedsLimit(limit) => {
                self.error(format!("answered with a body over the {limit} byte limit"))
            }
            ureq::Error::ConnectProxyFailed(reason) => self.error(self.transport.refused(&reason)),
            e => {
                let text = sanitize_to(&e.to_string(), &Redactions::NONE, MAX_SERVER_WORD);
                self.error(text)
            }
        }
    }

    #[cold]
    fn error(&self, reason: impl Into<String>) -> Error {
        Error::new(ErrorKind::Verify(VerifyErrorKind::Jwks {
            url: self.url.clone(),
            reason: reason.into(),
        }))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn policy(lines: &[&str]) -> Option<Policy> {
        Policy::from_cache_control(lines.iter().copied())
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn cache_control_sets_the_max_age_and_the_grace() {
        let p = |max_age, grace| Some(Policy { max_age, grace });
        assert_eq!(policy(&[]), None);
        assert_eq!(
            policy(&["public, max-age=300"]),
            p(secs(300), MAX_STALE_IF_ERROR)
        );
        assert_eq!(
            policy(&["Max-Age=\"60\", stale-if-error=5"]),
            p(secs(60), secs(5))
        );
        assert_eq!(policy(&["max-age=0"]), p(COOLDOWN, MAX_STALE_IF_ERROR));
        assert_eq!(
            policy(&["max-age=99999999999999999999999"]),
            p(MAX_MAX_AGE, MAX_STALE_IF_ERROR)
        );
        assert_eq!(
            policy(&["max-age=60", "max-age=30"]),
            p(secs(30), MAX_STALE_IF_ERROR)
        );
        assert_eq!(
            policy(&["max-age=30, max-age=60"]),
            p(secs(30), MAX_STALE_IF_ERROR)
        );
        assert_eq!(
            policy(&["no-cache, max-age=600"]),
            p(COOLDOWN, MAX_STALE_IF_ERROR)
        );
        assert_eq!(policy(&["NO-STORE"]), p(COOLDOWN, MAX_STALE_IF_ERROR));
        assert_eq!(
            policy(&["no-cache=\"set-cookie\""]),
            p(COOLDOWN, MAX_STALE_IF_ERROR)
        );
        assert_eq!(
            policy(&["stale-if-error=86400"]),
            p(DEFAULT_MAX_AGE, MAX_STALE_IF_ERROR)
        );
        assert_eq!(
            policy(&["stale-if-error=0, max-age=5"]),
            p(secs(5), Duration::ZERO)
        );
        // Unreadable values are as if absent.
        for bad in [
            "max-age=-1",
            "max-age=1.5",
            "max-age=",
            "max-age",
            "max-age=1e3",
        ] {
            assert_eq!(
                policy(&[bad]),
                p(DEFAULT_MAX_AGE, MAX_STALE_IF_ERROR),
                "{bad}"
            );
        }
        assert_eq!(policy(&["private"]), p(DEFAULT_MAX_AGE, MAX_STALE_IF_ERROR));
    }

    #[test]
    fn age_shortens_the_freshness_down_to_the_cooldown() {
        let p = Policy {
            max_age: secs(300),
            grace: secs(10),
        };
        assert_eq!(p.fresh_for(Duration::ZERO), secs(300));
        assert_eq!(p.fresh_for(secs(100)), secs(200));
        assert_eq!(p.fresh_for(secs(1000)), COOLDOWN);
        assert_eq!(delta_seconds("18446744073709551616"), Some(secs(u64::MAX)));
        assert_eq!(delta_seconds(" 5"), None);
    }
}
