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
//! (the API indicator, required) and `LOGTO_SCOPES` (space-separated, optional). On failure
//! it prints the error to stderr and exits 1.

use std::process::ExitCode;

use logto_m2m::{Config, Error, TokenRequest, request_token};

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
    let token = request_token(&config, &request).map_err(|e| e.to_string())?;
    Ok(token.access_token().to_owned())
}
