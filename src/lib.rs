//! Blocking OAuth 2.0 machine-to-machine tokens for [Logto], or any RFC 6749 server.
//!
//! An M2M app (no user, no UI) calls protected APIs with an access token from the
//! client_credentials grant. This crate gets that token and keeps it fresh:
//!
//! - [`request_token`] does one exchange with the token endpoint, under one deadline;
//! - [`TokenStore`] caches tokens per request and refreshes them shortly before they
//!   expire, with one request per refresh however many threads ask;
//! - [`Config`] says where the endpoint is and who the app is; [`TokenRequest`] says which
//!   API and scopes; [`Token`] is the answer; [`Error`] (with its [`ErrorKind`]) says what
//!   went wrong.
//!
//! Beside them: [`AuthMethod`] picks Basic or form credentials, and [`TokenCache`] (with
//! [`CacheKey`], [`CacheEntry`] and [`CacheLock`]) lets a `TokenStore` share tokens beyond
//! its memory, as its token file does, or Redis (`RedisCache`, with the `redis` feature).
//!
//! ```rust,no_run
//! use std::time::Duration;
//! use logto_m2m::{request_token, Config, TokenRequest};
//!
//! fn main() -> Result<(), logto_m2m::Error> {
//!     let config = Config::logto("https://tenant.logto.app", "app-id", "app-secret")?
//!         .timeout(Duration::from_secs(10));
//!     let request = TokenRequest::new("https://shopping.api").scope("read:products");
//!     let token = request_token(&config, &request)?;
//!     println!("Authorization: {}", token.authorization());
//!     Ok(())
//! }
//! ```
//!
//! No async runtime: the calls block the calling thread. Redirects are never followed,
//! plain `http://` goes only to loopback hosts, and no error, `Debug` output or log line of
//! this crate contains the app secret or a token. (ureq, the HTTP client underneath, logs
//! the wire unredacted at `TRACE` level: keep the `ureq` log target above `TRACE` in
//! production.)
//!
//! Log events go to the `log` facade under the target `logto_m2m`: a token fetched and a
//! retry at `debug`; a refresh that failed, a backoff, a cache problem and scopes asked
//! for but not granted at `warn`. They never contain a secret or a token.
//!
//! [Logto]: https://logto.io

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::all)]

// The modules, in the order a token flows through them:
// - config:     Config and AuthMethod: plain data, checked when set
// - transport:  the ureq agent a Config's roots and proxy make (with tls: the roots)
// - request:    TokenRequest: what to ask for, its form, its cache key
// - exchange:   request_token: the credentials, one POST, retries, ureq's errors mapped
// - response:   the parser: a server's answer or a cache entry in, a Token out
// - token:      Token: the access token, its lifetime by both clocks, its scopes
// - store:      TokenStore: memory, single flight, refresh ahead, backoff
// - cache:      the TokenCache interface a store shares tokens through
// - token_file: the token file, one TokenCache
// - redis:      RedisCache, another (feature `redis`)
// - error:      Error and ErrorKind, for all of the above
// - text:       small hand-written readers and writers: JSON strings, seconds
mod cache;
mod config;
mod error;
mod exchange;
#[cfg(feature = "redis")]
mod redis;
mod request;
mod response;
mod store;
mod text;
mod tls;
mod token;
mod token_file;
mod transport;

pub use cache::{CacheEntry, CacheKey, CacheLock, TokenCache};
pub use config::{AuthMethod, Config};
pub use error::{Error, ErrorKind};
pub use exchange::request_token;
#[cfg(feature = "redis")]
pub use redis::RedisCache;
pub use request::TokenRequest;
pub use store::TokenStore;
pub use token::Token;

/// INTERNAL, DO NOT USE: the entry points of the fuzz targets in `fuzz/` and of the bench,
/// behind the `_internal` feature. Not part of the API; they may change in any release.
#[cfg(feature = "_internal")]
#[doc(hidden)]
pub mod internal {
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
        let contents = crate::token_file::parse(bytes)?;
        let key = crate::CacheKey::new("https://x/t", "app", "k");
        let entry = crate::token_file::lookup(&contents, &key)?;
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
