//! The issuer's keys: fetched from its JWKS URL under one deadline, kept, and fetched
//! again only for a `kid` they lack.
//!
//! A key the set has is found under the lock and used: no fetch, whatever the endpoint is
//! doing. A `kid` the set lacks makes one thread fetch (the others wait for its answer,
//! however many), at most once per [`COOLDOWN`], so that a flood of made-up `kid`s costs
//! the issuer one request per cooldown. A thread whose `kid` is still unknown after a
//! fetch that ended while it waited is refused without another fetch. Refetches send
//! `If-None-Match` with the ETag of the last answer; a 304 keeps the keys. A failed or
//! stalled fetch keeps the keys too, so tokens of known keys go on verifying.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::jws::{self, Key};
use crate::error::{DisplayDuration, Error, ErrorKind, MAX_SERVER_WORD, Redactions, sanitize_to};
use crate::transport::Transport;

/// The least time between two fetches. Short: Logto's open-source build signs with the
/// new key right after a rotation, so a token of the new key may come a moment after a
/// fetch; it waits out the rest of the cooldown, then gets its own fetch.
pub(crate) const COOLDOWN: Duration = Duration::from_secs(1);

/// The most bytes of a JWKS read; Logto's is under 1 KiB.
const MAX_JWKS_BYTES: u64 = 256 * 1024;

pub(crate) struct Jwks {
    /// The URL, checked by the verifier.
    pub(crate) url: String,
    /// How the JWKS is fetched: the verifier's roots and proxy.
    pub(crate) transport: Transport,
    state: Mutex<State>,
    fetched: Condvar,
}

#[derive(Default)]
struct State {
    keys: Vec<Arc<Key>>,
    etag: Option<String>,
    /// Fetches finished (each one counts, whatever it gave).
    generation: u64,
    /// When the last fetch began.
    last_attempt: Option<Instant>,
    fetching: bool,
    /// What the last fetch failed with, until one works.
    last_error: Option<Error>,
}

/// What one fetch gave: new keys and their ETag, or "not modified".
type Fetched = Option<(Vec<Arc<Key>>, Option<String>)>;

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
        // written whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key named `kid`, fetching the JWKS when it is not known (see the module docs).
    pub(crate) fn key(&self, kid: &str, timeout: Duration) -> Result<Arc<Key>, Error> {
        let give_up = Instant::now() + timeout + COOLDOWN;
        let mut state = self.lock();
        let began = state.generation;
        loop {
            if let Some(key) = state.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                return Ok(Arc::clone(key));
            }
            if state.generation > began {
                return Err(match &state.last_error {
                    Some(e) => e.clone(),
                    None => super::invalid("no key in the issuer's jwks has the token's kid"),
                });
            }
            let now = Instant::now();
            if now >= give_up {
                return Err(self.error(format!(
                    "no answer within {} while waiting for another thread's fetch",
                    DisplayDuration(timeout)
                )));
            }
            let cooling = state
                .last_attempt
                .map(|t| COOLDOWN.saturating_sub(now.duration_since(t)))
                .filter(|left| !left.is_zero());
            if state.fetching || cooling.is_some() {
                let wait = cooling.unwrap_or(give_up - now).min(give_up - now);
                state = self
                    .fetched
                    .wait_timeout(state, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                continue;
            }
            state.fetching = true;
            state.last_attempt = Some(now);
            let etag = state.etag.clone();
            drop(state);
            let result = self.fetch(etag.as_deref(), timeout);
            state = self.lock();
            state.fetching = false;
            state.generation += 1;
            match result {
                Ok(Some((keys, etag))) => {
                    state.keys = keys;
                    state.etag = etag;
                    state.last_error = None;
                }
                Ok(None) => state.last_error = None,
                Err(e) => {
                    log::warn!(target: "logto_m2m", "{e}; keeping the keys fetched before");
                    state.last_error = Some(e);
                }
            }
            self.fetched.notify_all();
        }
    }

    /// One GET of the JWKS within `timeout`: `None` when it answered 304 Not Modified.
    fn fetch(&self, etag: Option<&str>, timeout: Duration) -> Result<Fetched, Error> {
        let agent = self.transport.agent()?;
        let mut get = agent
            .get(&self.url)
            .config()
            .timeout_global(Some(timeout))
            .build();
        if let Some(etag) = etag {
            get = get.header("if-none-match", etag);
        }
        let response = get.call().map_err(|e| self.ureq_error(e, timeout))?;
        let status = response.status().as_u16();
        if status == 304 && etag.is_some() {
            log::debug!(target: "logto_m2m", "jwks {}: not modified", self.url);
            return Ok(None);
        }
        if status != 200 {
            let redirect = if response.status().is_redirection() {
                "; redirects are not followed"
            } else {
                ""
            };
            return Err(self.error(format!("answered http {status}{redirect}")));
        }
        let etag = response
            .headers()
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
        log::debug!(target: "logto_m2m", "jwks {}: {} keys fetched", self.url, keys.len());
        Ok(Some((keys, etag)))
    }

    fn ureq_error(&self, e: ureq::Error, timeout: Duration) -> Error {
        match e {
            ureq::Error::Timeout(_) => {
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
        Error::new(ErrorKind::Jwks {
            url: self.url.clone(),
            reason: reason.into(),
        })
    }
}
