//! The floor: the token request of `get_token` written by hand on ureq 3 + rustls, with the
//! crates logto-m2m builds on and no checks beyond the few below. What `get_token`'s size is
//! measured against (CONTRIBUTING.md, "Footprint").

use base64::Engine;
use miniserde::{Deserialize, json};
use std::time::Duration;

#[derive(Deserialize)]
struct Answer {
    access_token: String,
    token_type: String,
    expires_in: Option<u64>,
    scope: Option<String>,
}

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name}: not set"))
}

fn main() {
    match run() {
        Ok(token) => println!("{token}"),
        Err(e) => {
            eprintln!("floor: {e}");
            std::process::exit(1)
        }
    }
}

fn run() -> Result<String, String> {
    let (endpoint, id, secret) = (
        var("LOGTO_ENDPOINT")?,
        var("LOGTO_APP_ID")?,
        var("LOGTO_APP_SECRET")?,
    );
    let resource = var("LOGTO_RESOURCE")?;
    let scopes = std::env::var("LOGTO_SCOPES").unwrap_or_default();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("resource", resource.as_str()),
    ];
    if !scopes.is_empty() {
        form.push(("scope", scopes.as_str()));
    }
    let mut response = agent
        .post(format!("{}/oidc/token", endpoint.trim_end_matches('/')))
        .header("Authorization", format!("Basic {basic}"))
        .send_form(form)
        .map_err(|e| e.to_string())?;
    if let Some(at) = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
    {
        let _ = httpdate::parse_http_date(at).map_err(|e| eprintln!("retry-after: {e}"));
    }
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("status {status}: {body}"));
    }
    let answer: Answer = json::from_str(&body).map_err(|e| e.to_string())?;
    if !answer.token_type.eq_ignore_ascii_case("bearer") {
        return Err("not a bearer token".into());
    }
    eprintln!(
        "expires in {:?}, scope {:?}",
        answer.expires_in, answer.scope
    );
    Ok(answer.access_token)
}
