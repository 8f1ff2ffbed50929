//! The advice error messages carry: what a failure most likely means and what to do, when
//! the server's words don't say (the other client auth method, non-ASCII over Basic, a
//! doubled `/oidc`, an expired secret). Kept apart from the errors themselves,
//! so that the facts (`error.rs`) and the guesses about them (here) don't mix.

use crate::config::{AuthMethod, Config};
use crate::error::ErrorKind;
use crate::request::TokenRequest;
use crate::token::Token;

/// The one warning for scopes `request` asked for that `token` was not granted: which, and
/// the fix, for whoever reads the log (the `logto-m2m` command shows it as it is). Logto
/// drops the scopes an app's roles lack without an error, and the API answers 403 later:
/// this says why before that. Given for each token that comes into the process, from the
/// token endpoint or from a shared cache another process filled, never for a hit in
/// memory.
pub(crate) fn warn_missing_scopes(config: &Config, request: &TokenRequest, token: &Token) {
    let missing = token.missing_scopes(request);
    if missing.is_empty() {
        return;
    }
    let these = if missing.len() == 1 {
        "this permission"
    } else {
        "these permissions"
    };
    // Logto's console is named only for a Logto token URL; another server's is its own.
    let fix = if request.is_exchange() {
        // A token exchange: the scopes are the user's roles'.
        format!("assign the user a role with {these} in the Logto console")
    } else if !config.is_logto() {
        format!("grant the app {these} on the authorization server")
    } else if request.resource().is_empty() {
        // Without a resource: an organization token (or the server's default).
        format!("assign the app an organization role with {these} in the Logto console")
    } else {
        format!("assign the app a machine-to-machine role with {these} in the Logto console")
    };
    let resource = match request.resource() {
        "" => String::new(),
        resource => format!(" (resource {resource})"),
    };
    log::warn!(
        target: "logto_m2m",
        "scope not granted: {}; {fix}{resource}",
        missing.join(" ")
    );
}

/// What to do about an error the endpoint answered, when the answer and what was sent
/// point to a likely cause the server's words don't name.
pub(crate) fn for_error(
    kind: &ErrorKind,
    config: &Config,
    request: &TokenRequest,
    secret: &str,
) -> Option<String> {
    let sent = config.auth_method_value();
    let other = match sent {
        AuthMethod::ClientSecretBasic => AuthMethod::ClientSecretPost,
        AuthMethod::ClientSecretPost => AuthMethod::ClientSecretBasic,
    };
    // Logto answers an unknown path with an oauth error body, others with a page.
    if let ErrorKind::OAuth { status: 404, .. } | ErrorKind::HttpStatus { status: 404, .. } = kind {
        return Some(not_found_advice(config));
    }
    if crate::error::is_secret_expired(kind) {
        return Some(expired_secret_advice(config));
    }
    let ErrorKind::OAuth { error, .. } = kind else {
        return None;
    };
    match error.as_str() {
        // A server answers a wrong secret and the wrong method alike, so name both.
        "invalid_client" => Some(format!(
            "the app id or secret is wrong, or the server wants {other} ({sent} was sent)"
        )),
        // Logto refuses non-ASCII in the Basic header ("not properly encoded") although
        // RFC 6749 §2.3.1 encodes it; the same secret works in the form.
        "invalid_request"
            if sent == AuthMethod::ClientSecretBasic
                && !(config.app_id().is_ascii() && secret.is_ascii()) =>
        {
            Some(format!(
                "the app id or secret has non-ascii characters, which some servers (Logto among \
                 them) refuse in the basic header: use {other}"
            ))
        }
        "invalid_target"
            if request.resource().is_empty() && request.organization_id().is_none() =>
        {
            Some("no resource was asked for: give the indicator of the api the token is for".into())
        }
        // Some servers (django-oauth-toolkit) say no more than the code.
        "invalid_scope" if request.scopes().is_empty() => Some("no scope was asked for".into()),
        "invalid_scope" => Some(format!("asked for scope {:?}", request.scopes().join(" "))),
        _ => None,
    }
}

/// An expired secret: a new one is needed, and where it goes. A secret file is read again
/// for each request, so writing the new secret there is all it takes.
fn expired_secret_advice(config: &Config) -> String {
    let create = if config.is_logto() {
        "create a new secret for the app in the Logto console (the app's App secrets)"
    } else {
        "get a new secret for the app from the server"
    };
    match config.secret().path() {
        Some(path) => format!(
            "the app secret has expired: {create} and write it to {}, which is read again on the \
             next request, no restart needed",
            path.display()
        ),
        None => format!(
            "the app secret has expired: {create} and put it where this app reads its secret \
             (LOGTO_APP_SECRET, or a file named by LOGTO_APP_SECRET_FILE, which is read again \
             without a restart)"
        ),
    }
}

/// A 404: the URL is not a token endpoint. The likeliest slip is a Logto endpoint that
/// already ends in `/oidc` or `/oidc/token`, to which `Config::logto` appends `/oidc/token`.
fn not_found_advice(config: &Config) -> String {
    let url = config.token_url();
    for doubled in ["/oidc/token/oidc/token", "/oidc/oidc/token"] {
        if let Some(base) = url.strip_suffix(doubled) {
            return format!(
                "no token endpoint there: did you mean {base}/oidc/token? the logto endpoint is \
                 the base url, without /oidc"
            );
        }
    }
    "no token endpoint at this url".into()
}
