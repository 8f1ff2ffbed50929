//! Lists the applications of a Logto tenant through the Management API: a `TokenStore`
//! keeps the Management API token, and a 401 from the API (a revoked token, a rotated
//! signing key) drops it and retries once with a fresh one.
//!
//! ```sh
//! export LOGTO_ENDPOINT=https://tenant-id.logto.app LOGTO_APP_ID=... LOGTO_APP_SECRET=...
//! export LOGTO_TENANT_ID=tenant-id   # Logto Cloud; leave unset for a self-hosted Logto
//! cargo run -q --example management_api
//! ```
//!
//! Reads the config from the environment (see `Config::from_env`; `LOGTO_ENDPOINT` is
//! required here, the API is at `{LOGTO_ENDPOINT}/api`), and the Management API's
//! resource indicator from `LOGTO_MANAGEMENT_RESOURCE`, or else `LOGTO_TENANT_ID` (Logto
//! Cloud: `https://<tenant-id>.logto.app/api`), or else Logto OSS's
//! `https://default.logto.app/api`. The app needs a machine-to-machine role with the
//! Management API's `all` permission. On Logto Cloud, use the tenant's own
//! `<tenant-id>.logto.app` endpoint for the Management API, not a custom domain.
//!
//! Prints one application name per line. On failure it prints the error to stderr and
//! exits 1.

use std::process::ExitCode;
use std::time::Duration;

use logto_m2m::{Config, TokenRequest, TokenStore};
use miniserde::json::{self, Value};

fn main() -> ExitCode {
    match run() {
        Ok(names) => {
            for name in names {
                println!("{name}");
            }
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
        (None, Some(tenant)) => TokenRequest::management_api(&tenant),
        (None, None) => TokenRequest::management_api_self_hosted(),
    };
    let url = format!("{}/api/applications", endpoint.trim_end_matches('/'));
    let store = TokenStore::new(config);
    let api = agent();

    let mut retried = false;
    let body = loop {
        let token = store.get(&request).map_err(|e| e.to_string())?;
        let mut response = api
            .get(&url)
            .header("authorization", token.authorization())
            .call()
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(10 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| format!("GET {url}: {e}"))?;
        match status {
            200 => break body,
            // The token was good when cached but the API refuses it now: drop it, and try
            // once more with a fresh one. A second 401 is a real problem (wrong resource,
            // no `all` permission), not a stale token.
            401 if !retried => {
                store.invalidate(&request);
                retried = true;
            }
            _ => return Err(format!("GET {url}: http {status}: {}", first_line(&body))),
        }
    };
    application_names(&body).ok_or_else(|| format!("GET {url}: not a list of applications"))
}

/// A variable's value; unset, empty and non-UTF-8 are all `None`.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// An agent for the Management API: statuses as values (a 401 is an answer, not an
/// error), no redirects (they would take the token elsewhere), a timeout, and the TLS
/// provider the crate's features choose.
fn agent() -> ureq::Agent {
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
    builder.build().new_agent()
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

/// The start of an error body, for a one-line message.
fn first_line(body: &str) -> String {
    let line = body.lines().next().unwrap_or_default();
    line.chars().take(300).collect()
}
