//! Lists the applications of a Logto tenant through the Management API, with
//! `TokenStore::call`: the token comes from the store, and a 401 (a revoked token, a rotated
//! signing key) gets one retry with a fresh token.
//!
//! ```sh
//! export LOGTO_ENDPOINT=https://tenant-id.logto.app LOGTO_APP_ID=... LOGTO_APP_SECRET=...
//! export LOGTO_TENANT_ID=tenant-id   # Logto Cloud; leave unset for a self-hosted Logto
//! cargo run -q --example management_api
//! ```
//!
//! The API is at `{LOGTO_ENDPOINT}/api`; its resource indicator is
//! `LOGTO_MANAGEMENT_RESOURCE`, else `https://<LOGTO_TENANT_ID>.logto.app/api` (Logto
//! Cloud), else `https://default.logto.app/api` (self-hosted). The app needs a
//! machine-to-machine role with the Management API's `all` permission. Prints one
//! application name per line; on failure, the one-line error on stderr and exit status 1.

use std::process::ExitCode;
use std::time::Duration;

use logto_m2m::{Config, TokenRequest, TokenStore};
use miniserde::json::{self, Value};

fn main() -> ExitCode {
    match run() {
        Ok(names) => {
            names.iter().for_each(|name| println!("{name}"));
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("management_api: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<Vec<String>, String> {
    let config = Config::from_env().map_err(|e| e.to_string())?;
    let endpoint = env("LOGTO_ENDPOINT").ok_or(
        "environment variable LOGTO_ENDPOINT: not set (the Management API is at {endpoint}/api)",
    )?;
    let request = match (env("LOGTO_MANAGEMENT_RESOURCE"), env("LOGTO_TENANT_ID")) {
        (Some(resource), _) => TokenRequest::new(&resource).scope("all"),
        // The tenant's own Logto Cloud endpoint names its Management API, whatever custom
        // domain LOGTO_ENDPOINT uses.
        (None, Some(tenant)) => {
            TokenRequest::management_api(&format!("https://{tenant}.logto.app"))
        }
        (None, None) => TokenRequest::management_api(&endpoint),
    };
    let url = format!("{}/api/applications", endpoint.trim_end_matches('/'));
    // Statuses as answers (a 401 is one to retry, not an error), and no redirects: they
    // would take the token elsewhere.
    let builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)));
    // With only native-tls, ureq must be told to use it (its default is rustls) and which
    // roots to trust (it has no WebPki roots then).
    #[cfg(all(feature = "native-tls", not(feature = "rustls")))]
    let builder = builder.tls_config(
        ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::NativeTls)
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build(),
    );
    let agent = builder.build().new_agent();

    let store = TokenStore::new(config);
    let mut answer = store
        .call(&request, |authorization| {
            agent
                .get(&url)
                .header("authorization", authorization)
                .call()
        })
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = answer.status().as_u16();
    let body = answer
        .body_mut()
        .with_config()
        .limit(10 * 1024 * 1024)
        .read_to_string()
        .map_err(|e| format!("GET {url}: {e}"))?;
    if status != 200 {
        let first_line: String = body
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect();
        return Err(format!("GET {url}: http {status}: {first_line}"));
    }
    application_names(&body).ok_or_else(|| format!("GET {url}: not a list of applications"))
}

/// A variable's value; unset, empty and non-UTF-8 are all `None`.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The `name` of each object in a JSON array, as `GET /api/applications` answers.
fn application_names(body: &str) -> Option<Vec<String>> {
    let Value::Array(apps) = json::from_str(body).ok()? else {
        return None;
    };
    apps.iter()
        .map(|app| match app {
            Value::Object(app) => match app.get("name") {
                Some(Value::String(name)) => Some(name.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}
