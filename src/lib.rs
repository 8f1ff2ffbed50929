//! Blocking OAuth 2.0 machine-to-machine tokens for [Logto], or any RFC 6749 server.
//!
//! An M2M app (no user, no UI) calls protected APIs with an access token from the
//! client_credentials grant. This crate gets that token and keeps it fresh:
//!
//! - [`request_token`] does one exchange with the token endpoint, under one deadline;
//! - [`TokenStore`] caches tokens per request and refreshes them shortly before they
//!   expire, with one request per refresh however many threads ask;
//! - [`Bearer`], a ureq middleware, sends the store's token to one API origin, and
//!   [`TokenStore::call`] makes a call that is retried once with a fresh token on a 401;
//! - [`Config`] says where the endpoint is and who the app is; [`TokenRequest`] says which
//!   API and scopes; [`Token`] is the answer; [`Error`] (with its [`ErrorKind`]) says what
//!   went wrong.
//!
//! A [`TokenRequest`] can also act for a Logto user through token exchange (RFC 8693):
//! [`TokenRequest::impersonate`], [`TokenRequest::personal_access_token`] and
//! [`TokenRequest::user_access_token`] (their tokens given as a [`SubjectSecret`]).
//!
//! Beside them: [`AuthMethod`] picks Basic or form credentials, [`Claims`] reads what a JWT
//! access token says of itself (unverified), [`CallError`] says which half of a call
//! failed, and [`TokenCache`] (with
//! [`CacheKey`], [`CacheEntry`] and [`CacheLock`]) lets a `TokenStore` share tokens beyond
//! its memory, as its token file does, or Redis (`RedisCache`, with the `redis` feature;
//! Sentinel and Cluster with `redis-sentinel` and `redis-cluster`). [`StoreStats`] is what
//! a store did, from [`TokenStore::stats`].
//!
//! ```rust,no_run
//! use std::sync::Arc;
//! use logto_m2m::{Bearer, Config, TokenRequest, TokenStore};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = Config::logto("https://tenant.logto.app", "app-id", "app-secret")?;
//!     let store = Arc::new(TokenStore::new(config));
//!     let request = TokenRequest::new("https://shopping.api").scope("read:products");
//!     // Every request to the API's origin gets `Authorization: Bearer <token>`, fresh.
//!     let bearer = Bearer::new(store, request, "https://api.shop.example")?;
//!     let agent: ureq::Agent = ureq::Agent::config_builder().middleware(bearer).build().into();
//!     let mut products = agent.get("https://api.shop.example/products").call()?;
//!     println!("{}", products.body_mut().read_to_string()?);
//!     Ok(())
//! }
//! ```
//!
//! No async runtime: the calls block the calling thread. Redirects are never followed,
//! plain `http://` goes only to loopback hosts, and no error, `Debug` output or log line of
//! this crate contains the app secret or a token. What a [`TokenStore`] shares through a
//! [`TokenCache`] is sealed with a key derived from the app secret (see
//! [`CacheKey::for_request`]), and the secret can be read from a file for each request
//! ([`Config::logto_with_secret_file`]), so that it rotates without a restart. (ureq, the
//! HTTP client underneath, logs the wire unredacted at `TRACE` level: keep the `ureq` log
//! target above `TRACE` in production.)
//!
//! Log events go to the `log` facade under the target `logto_m2m`: a token fetched and a
//! retry at `debug`; a cache that works again after a problem, a new secret picked up from
//! the secret file and the one retry with it at `info`; a refresh that failed, a backoff, a
//! cache problem, scopes asked for but not granted and a secret file others can read at
//! `warn`. They
//! never contain a secret or a token.
//!
//! [Logto]: https://logto.io

#![forbid(unsafe_code)]
// On docs.rs (`--cfg docsrs`, nightly): items behind a feature say which ("Available on
// crate feature redis only"). Elsewhere, stable or not, nothing changes.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![warn(clippy::all)]

// The modules, in the order a token flows through them:
// - config:     Config and AuthMethod: plain data, checked when set
// - transport:  the ureq agent a Config's roots and proxy make (with tls: the roots)
// - request:    TokenRequest: what to ask for, its form, its cache key
// - subject:    who a token exchange acts for (a user, a PAT, a user's token), its fields
// - exchange:   request_token: the credentials, one POST, retries, ureq's errors mapped
// - response:   the parser: a server's answer or a cache entry in, a Token out
// - token:      Token: the access token, its lifetime by both clocks, its scopes
// - claims:     Claims: what a JWT access token says of itself, unverified (one reader)
// - store:      TokenStore: memory, single flight, refresh ahead, backoff
// - cache:      the TokenCache interface a store shares tokens through
// - token_file: the token file, one TokenCache
// - secret:     the app secret: a string, or a file read for each request
// - seal:       what a store writes to a shared cache, encrypted and authenticated
// - redis:      RedisCache, another (feature `redis`): one server, Sentinel, Cluster
// - api:        the token used: Bearer (a ureq middleware) and TokenStore::call
// - error:      Error and ErrorKind, for all of the above
// - text:       small hand-written readers and writers: JSON strings, seconds
mod api;
mod cache;
mod claims;
mod config;
mod error;
mod exchange;
#[cfg(feature = "redis")]
mod redis;
mod request;
mod response;
mod seal;
mod secret;
mod store;
mod subject;
mod text;
mod tls;
mod token;
mod token_file;
mod transport;

pub use api::{Bearer, CallError};
pub use cache::{CacheEntry, CacheKey, CacheLock, TokenCache};
pub use claims::Claims;
pub use config::{AuthMethod, Config};
pub use error::{Error, ErrorKind};
pub use exchange::request_token;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisCache;
pub use request::TokenRequest;
pub use store::{StoreStats, TokenStore};
pub use subject::SubjectSecret;
pub use token::Token;

/// INTERNAL, DO NOT USE: the entry points of the fuzz targets in `fuzz/` and of the bench,
/// behind the `_internal` feature. Not part of the API; they may change in any release.
#[cfg(feature = "_internal")]
#[doc(hidden)]
pub mod internal {
    /// `store.get(request)` without counting the hit in `TokenStore::stats`: what a hit
    /// cost before the counters, for the bench.
    pub fn get_uncounted(
        store: &crate::TokenStore,
        request: &crate::TokenRequest,
    ) -> Result<std::sync::Arc<crate::Token>, crate::Error> {
        store.get_uncounted(request)
    }

    /// The margin before expiry at which a token of `lifetime` is refreshed, with the
    /// store's margin `margin`: one draw of the jitter.
    pub fn refresh_margin(
        lifetime: std::time::Duration,
        margin: std::time::Duration,
    ) -> std::time::Duration {
        crate::store::jittered_margin(lifetime, margin)
    }

    /// What `request_token` does with an answer of `status` and `body` (no `Retry-After`,
    /// sent now, no scope asked for).
    pub fn token_response(status: u16, body: &[u8]) -> Result<crate::Token, crate::Error> {
        crate::response::parse_now(status, body)
    }

    /// Parses a token file's bytes and reads one key from it as `TokenStore::cache_file`
    /// does, at a fixed moment (2027-01-15) with a 60 s margin: the token, if the file holds
    /// a fresh one for the key.
    pub fn token_file(bytes: &[u8]) -> Option<crate::Token> {
        use std::time::{Duration, Instant, UNIX_EPOCH};
        static KEY: std::sync::OnceLock<Option<crate::CacheKey>> = std::sync::OnceLock::new();
        let contents = crate::token_file::parse(bytes)?;
        let key = KEY
            .get_or_init(|| sealed_key("https://x/t", "app", "k"))
            .as_ref()?;
        let entry = crate::token_file::lookup(&contents, key)?;
        let sent = crate::response::Sent {
            at: Instant::now(),
            wall: UNIX_EPOCH + Duration::from_millis(1_800_000_000_000),
            scope: &[],
            max_lifetime: Duration::from_secs(24 * 3600),
        };
        let token = crate::response::from_entry(&entry, &sent)?;
        let margin = Duration::from_secs(60).min(token.expires_in() / 2);
        (!token.ends_before(sent.at, sent.wall, margin)).then_some(token)
    }

    /// The app secret the fuzz targets' keys seal with (their seeds were sealed with it).
    pub const FUZZ_SECRET: &str = "fuzz-secret-not-a-real-one";

    /// The store's key for `request_key` of `app_id` at `token_url`, sealing with
    /// [`FUZZ_SECRET`].
    pub fn sealed_key(token_url: &str, app_id: &str, request_key: &str) -> Option<crate::CacheKey> {
        crate::CacheKey::sealed(token_url, app_id, request_key, FUZZ_SECRET)
    }

    /// Derives the key a store seals `app_id`'s entries at `token_url` with, from `secret`
    /// (HKDF-SHA256), for the bench: true when it could.
    pub fn derive_seal_key(secret: &str, token_url: &str, app_id: &str) -> bool {
        crate::seal::SealKey::derive(secret, token_url, app_id).is_some()
    }

    /// `plaintext` sealed for `key` as if `CacheEntry::encode` had made it: what decoding
    /// does with the bytes inside a value that opens, which only a holder of the secret
    /// could have written.
    pub fn seal_plaintext(key: &crate::CacheKey, plaintext: &[u8]) -> Option<String> {
        key.seal_raw(plaintext)
    }
}

// The README's examples compile as doctests, so they can't drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Compile-time check that the shared types can cross threads.
#[allow(dead_code)] // only its compiling matters
fn _ensure_send_sync() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<TokenStore>();
    is_send_sync::<Config>();
    is_send_sync::<Token>();
    is_send_sync::<Error>();
    is_send_sync::<TokenRequest>();
    is_send_sync::<CacheEntry>();
}
