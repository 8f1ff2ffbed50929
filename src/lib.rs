//! Blocking OAuth 2.0 machine-to-machine tokens for [Logto], or any RFC 6749 server.
//!
//! An M2M app (no user, no UI) calls protected APIs with an access token from the
//! client_credentials grant. This crate gets that token and keeps it fresh:
//!
//! - [`request_token`] does one exchange with the token endpoint, under one deadline;
//! - [`TokenStore`] caches tokens per request and refreshes them shortly before they
//!   expire, with one request per refresh however many threads ask;
//! - [`Config`] says where the endpoint is and who the app is; [`TokenRequest`] says which
//!   API and scopes; [`Token`] is the answer; [`Error`] says what went wrong.
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
//! [Logto]: https://logto.io

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::all)]

mod cache;
mod config;
mod error;
mod request;
mod response;
mod store;
mod tls;

pub use config::{Config, DEFAULT_TIMEOUT};
pub use error::{Error, ErrorKind};
pub use request::{
    MAX_ATTEMPTS, MAX_RESPONSE_BYTES, MAX_RETRY_AFTER_WAIT, TokenRequest, request_token,
};
pub use response::{DEFAULT_EXPIRES_IN, Token, parse_token_response};
pub use store::{DEFAULT_REFRESH_MARGIN, FIRST_FAILURE_BACKOFF, MAX_FAILURE_BACKOFF, TokenStore};

/// Entry points for the fuzz targets and their replay in `cargo test`. Not part of the
/// API: DO NOT USE; it may change in any release.
#[doc(hidden)]
pub mod fuzzing {
    /// Parses a token file's bytes and looks a key up, as `TokenStore::cache_file` does.
    pub fn token_file(bytes: &[u8]) -> Option<crate::Token> {
        let contents = crate::cache::parse(bytes)?;
        crate::cache::lookup(
            &contents,
            "https://x/t",
            "app",
            "k",
            std::time::Duration::from_secs(60),
            1_800_000_000_000,
        )
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
}
