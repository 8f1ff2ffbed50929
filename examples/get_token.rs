//! Prints an access token for a Logto M2M app, alone on stdout: the main job of this crate,
//! usable from a shell or a cron job.
//!
//! ```sh
//! export LOGTO_ENDPOINT=https://tenant.logto.app LOGTO_APP_ID=... LOGTO_APP_SECRET=...
//! export LOGTO_RESOURCE=https://shopping.api LOGTO_SCOPES="read:products"
//! curl -H "Authorization: Bearer $(cargo run -q --example get_token)" https://shopping.api/products
//! ```
//!
//! Reads the config from the environment (see `Config::from_env`), plus `LOGTO_RESOURCE`
//! (the API indicator, required), `LOGTO_SCOPES` (space-separated, optional) and
//! `LOGTO_CACHE_FILE` (optional: a token file shared by runs, see `TokenStore::cache_file`;
//! with it, runs within a token's lifetime make no request). On failure it prints the error
//! to stderr and exits 1; a problem with the token file alone is a warning on stderr.

use std::process::ExitCode;

use logto_m2m::{Config, Error, TokenRequest, TokenStore, request_token};

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
    let config = Config::from_env().map_err(|e: Error| e.to_string())?;
    let resource = std::env::var("LOGTO_RESOURCE")
        .map_err(|_| "environment variable LOGTO_RESOURCE: not set".to_string())?;
    let scopes = std::env::var("LOGTO_SCOPES").unwrap_or_default();
    let request = TokenRequest::new(&resource).scope(&scopes);
    match std::env::var_os("LOGTO_CACHE_FILE").filter(|p| !p.is_empty()) {
        None => {
            let token = request_token(&config, &request).map_err(|e| e.to_string())?;
            Ok(token.access_token().to_owned())
        }
        Some(path) => {
            let store = TokenStore::new(config).cache_file(path);
            let token = store.get(&request).map_err(|e| e.to_string())?;
            if let Some(problem) = store.last_cache_error() {
                eprintln!("get_token: warning: {problem}");
            }
            Ok(token.access_token().to_owned())
        }
    }
}
