//! Prints an access token for a Logto M2M app, alone on stdout: the main job of this crate,
//! usable from a shell or a cron job.
//!
//! ```sh
//! export LOGTO_ENDPOINT=https://tenant.logto.app LOGTO_APP_ID=... LOGTO_APP_SECRET=...
//! export LOGTO_RESOURCE=https://shopping.api LOGTO_SCOPES="read:products"
//! token="$(cargo run -q --example get_token)" && curl -H "Authorization: Bearer $token" https://api.shop.example/products
//! ```
//!
//! Reads the config from the environment (see `Config::from_env`), plus `LOGTO_RESOURCE`
//! (the API indicator, required), `LOGTO_SCOPES` (space-separated, optional),
//! `LOGTO_CACHE_FILE` (optional: a token file shared by runs, see `TokenStore::cache_file`;
//! with it, runs within a token's lifetime make no request) and, built with the `redis`
//! feature, `LOGTO_CACHE_URL` (optional: `redis://host:port/db`, `rediss://...`,
//! `redis+sentinel://...` or `redis+cluster://...`, a Redis shared by many hosts, see
//! `RedisCache`) with, for TLS, `LOGTO_CACHE_CA_FILE` (the CA's PEM) and
//! `LOGTO_CACHE_CERT_FILE` and `LOGTO_CACHE_KEY_FILE` (a client certificate and its key).
//! On failure it prints the error to stderr and exits 1; a problem with the token file or
//! Redis alone is a warning on stderr, and so are requested scopes the server did not grant.

use std::process::ExitCode;
use std::sync::Arc;

use logto_m2m::{Config, Error, ErrorKind, Token, TokenRequest, TokenStore, request_token};

fn main() -> ExitCode {
    match run() {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("get_token: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<String, String> {
    let config = Config::from_env().map_err(message)?;
    let resource = std::env::var("LOGTO_RESOURCE")
        .map_err(|_| "environment variable LOGTO_RESOURCE: not set".to_string())?;
    let scopes = std::env::var("LOGTO_SCOPES").unwrap_or_default();
    let request = TokenRequest::new(&resource).scope(&scopes);
    let mut store = TokenStore::new(config.clone());
    let cache_url = std::env::var("LOGTO_CACHE_URL").unwrap_or_default();
    let token = if let Some(path) = std::env::var_os("LOGTO_CACHE_FILE").filter(|p| !p.is_empty()) {
        store = store.cache_file(path);
        from_store(&store, &request)?
    } else if !cache_url.is_empty() {
        store = with_redis(store, &cache_url)?;
        from_store(&store, &request)?
    } else {
        Arc::new(request_token(&config, &request).map_err(message)?)
    };
    // Logto drops requested scopes the app has no role for, silently: say so now rather
    // than leave it to the API's 403.
    let missing = token.missing_scopes(&request);
    if !missing.is_empty() {
        eprintln!(
            "get_token: warning: scope not granted: {}; assign the app a machine-to-machine \
             role with these permissions",
            missing.join(" ")
        );
    }
    Ok(token.access_token().to_owned())
}

/// The error's one-line message, and for a timeout the variable that lengthens it.
fn message(e: Error) -> String {
    if matches!(e.kind(), ErrorKind::Timeout { .. }) {
        format!("{e}; give it longer with LOGTO_TIMEOUT (seconds)")
    } else {
        e.to_string()
    }
}

/// A token through `store`, warning on stderr of a cache it could not use.
fn from_store(store: &TokenStore, request: &TokenRequest) -> Result<Arc<Token>, String> {
    let token = store.get(request).map_err(message)?;
    if let Some(problem) = store.last_cache_error() {
        eprintln!("get_token: warning: {problem}");
    }
    Ok(token)
}

/// The store sharing its tokens through the Redis at `url` (`LOGTO_CACHE_URL`).
#[cfg(feature = "redis")]
fn with_redis(store: TokenStore, url: &str) -> Result<TokenStore, String> {
    let mut redis = logto_m2m::RedisCache::new(url)
        .map_err(|e| format!("environment variable LOGTO_CACHE_URL: {e}"))?;
    // For rediss://: the CA that signed the servers' certificates, and a client
    // certificate with its key, each a PEM file.
    let pem = |var: &str| match std::env::var_os(var).filter(|p| !p.is_empty()) {
        None => Ok(None),
        Some(path) => std::fs::read(&path).map(Some).map_err(|e| {
            let path = std::path::Path::new(&path).display();
            format!("environment variable {var}: cannot read {path}: {e}")
        }),
    };
    if let Some(ca) = pem("LOGTO_CACHE_CA_FILE")? {
        redis = redis
            .root_certificates_pem(&ca)
            .map_err(|e| format!("environment variable LOGTO_CACHE_CA_FILE: {e}"))?;
    }
    match (pem("LOGTO_CACHE_CERT_FILE")?, pem("LOGTO_CACHE_KEY_FILE")?) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            redis = redis.client_certificate_pem(&cert, &key).map_err(|e| {
                format!("environment variables LOGTO_CACHE_CERT_FILE and LOGTO_CACHE_KEY_FILE: {e}")
            })?
        }
        _ => {
            return Err(
                "environment variables LOGTO_CACHE_CERT_FILE and LOGTO_CACHE_KEY_FILE: \
                        set both or neither"
                    .into(),
            );
        }
    }
    Ok(store.token_cache(redis))
}

/// Without the `redis` feature a URL set anyway is an error, not silently ignored.
#[cfg(not(feature = "redis"))]
fn with_redis(_: TokenStore, _: &str) -> Result<TokenStore, String> {
    Err("environment variable LOGTO_CACHE_URL: set, but this build has no redis feature".into())
}
