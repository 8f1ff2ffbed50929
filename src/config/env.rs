//! `Config::from_env` and `Config::from_vars`: the `LOGTO_*` variables a config is made
//! from, each checked and named in its error (never its value).

use std::ffi::OsString;

use super::{Config, read_token_url};
use crate::error::Error;
use crate::secret::Secret;

impl Config {
    /// A config from the environment, for cron jobs and containers.
    ///
    /// | variable | meaning |
    /// | --- | --- |
    /// | `LOGTO_ENDPOINT` | the Logto base URL, without `/oidc` (token URL `{endpoint}/oidc/token`), or |
    /// | `LOGTO_TOKEN_URL` | the full token URL of any RFC 6749 server (set one of the two) |
    /// | `LOGTO_APP_ID` | the app id |
    /// | `LOGTO_APP_SECRET` | the app secret, or |
    /// | `LOGTO_APP_SECRET_FILE` | the path of a file that holds it, read for each token request (see [`Secret::file`]; set one of the two) |
    /// | `LOGTO_TIMEOUT` | optional: the timeout in seconds, e.g. `10` or `2.5` |
    /// | `LOGTO_AUTH_METHOD` | optional: `client_secret_basic` (the default) or `client_secret_post` |
    ///
    /// # Errors
    /// [`ErrorKind::Env`](crate::ErrorKind::Env) naming the variable that is missing or
    /// malformed (never repeating its value): when several required ones are missing, all of
    /// them, in this table's order (the first is the error's `variable`, the others are in
    /// its `reason`); a `LOGTO_ENDPOINT` or `LOGTO_TOKEN_URL` that is not an http(s) URL with
    /// a host is named too. Otherwise the errors of [`Config::new`] and [`Config::logto`].
    pub fn from_env() -> Result<Config, Error> {
        Config::from_vars(|name| std::env::var_os(name))
    }

    /// [`from_env`](Config::from_env) with the variables looked up by `var` instead of in
    /// the process environment: for a program whose own flags stand in for some of them
    /// (as the `logto-m2m` command's `--timeout` does for `LOGTO_TIMEOUT`), or that keeps
    /// its settings elsewhere. `var` returns `None` for an unset variable; empty is unset.
    ///
    /// # Errors
    /// As for [`from_env`](Config::from_env), naming the variable.
    ///
    /// # Example
    /// ```
    /// use std::ffi::OsString;
    /// use logto_m2m::Config;
    ///
    /// let config = Config::from_vars(|name| {
    ///     let value = match name {
    ///         "LOGTO_ENDPOINT" => "https://tenant.logto.app",
    ///         "LOGTO_APP_ID" => "app-id",
    ///         "LOGTO_APP_SECRET" => "app-secret",
    ///         "LOGTO_TIMEOUT" => "2.5",
    ///         _ => return std::env::var_os(name),
    ///     };
    ///     Some(OsString::from(value))
    /// })?;
    /// assert_eq!(config.timeout_value().as_millis(), 2500);
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<Config, Error> {
        let env_var = |name: &'static str| text_var(name, var(name));
        let endpoint = env_var("LOGTO_ENDPOINT")?;
        let token_url = env_var("LOGTO_TOKEN_URL")?;
        let app_id = env_var("LOGTO_APP_ID")?;
        let secret = env_var("LOGTO_APP_SECRET")?;
        // A path need not be UTF-8.
        let secret_file = var("LOGTO_APP_SECRET_FILE").filter(|p| !p.is_empty());
        let secret = match (secret, secret_file) {
            (Some(_), Some(_)) => {
                return Err(Error::env(
                    "LOGTO_APP_SECRET_FILE",
                    "set together with LOGTO_APP_SECRET; set only one",
                ));
            }
            (Some(secret), None) => Some(Secret::from(secret)),
            (None, Some(path)) => Some(Secret::file(path)),
            (None, None) => None,
        };
        if endpoint.is_some() && token_url.is_some() {
            return Err(Error::env(
                "LOGTO_TOKEN_URL",
                "set together with LOGTO_ENDPOINT; set only one",
            ));
        }
        // Everything missing in one message, so that a first run does not find them one per
        // run.
        let is_endpoint = endpoint.is_some();
        let (url, app_id, secret) = match (endpoint.or(token_url), app_id, secret) {
            (Some(url), Some(app_id), Some(secret)) => (url, app_id, secret),
            (url, app_id, secret) => {
                return Err(missing(url.is_none(), app_id.is_none(), secret.is_none()));
            }
        };
        // The URL is read first, so that what is wrong with it names the variable the user
        // set, not the token URL the library makes of it.
        let config = if is_endpoint {
            let token_url = format!("{}/oidc/token", url.trim_end_matches('/'));
            read_token_url(&token_url).map_err(|reason| Error::env("LOGTO_ENDPOINT", reason))?;
            Config::logto(&url, &app_id, secret)?
        } else {
            read_token_url(&url).map_err(|reason| Error::env("LOGTO_TOKEN_URL", reason))?;
            Config::new(&url, &app_id, secret)?
        };
        let config = match env_var("LOGTO_TIMEOUT")? {
            None => config,
            Some(s) => config.timeout(
                crate::time::parse_seconds(s.trim())
                    .map_err(|reason| Error::env("LOGTO_TIMEOUT", reason))?,
            ),
        };
        match env_var("LOGTO_AUTH_METHOD")? {
            None => Ok(config),
            Some(s) => Ok(config.auth_method(s.trim().parse().map_err(|_| {
                Error::env(
                    "LOGTO_AUTH_METHOD",
                    "not client_secret_basic or client_secret_post",
                )
            })?)),
        }
    }
}

/// The error naming the required variables that are not set, in the README's order (the
/// endpoint, the app id, the secret): the first is the error's `variable`, the others are in
/// its reason. Called with at least one missing.
fn missing(endpoint: bool, app_id: bool, secret: bool) -> Error {
    const ENDPOINT: &str = "LOGTO_ENDPOINT";
    let (variable, reason) = match (endpoint, app_id, secret) {
        (true, false, false) => (ENDPOINT, "not set (set it, or LOGTO_TOKEN_URL)"),
        (true, true, false) => (
            ENDPOINT,
            "not set (set it, or LOGTO_TOKEN_URL), nor is LOGTO_APP_ID",
        ),
        (true, false, true) => (
            ENDPOINT,
            "not set (set it, or LOGTO_TOKEN_URL), nor is LOGTO_APP_SECRET (or \
             LOGTO_APP_SECRET_FILE)",
        ),
        (true, true, true) => (
            ENDPOINT,
            "not set (set it, or LOGTO_TOKEN_URL), nor are LOGTO_APP_ID and LOGTO_APP_SECRET \
             (or LOGTO_APP_SECRET_FILE)",
        ),
        (false, true, false) => ("LOGTO_APP_ID", "not set"),
        (false, true, true) => (
            "LOGTO_APP_ID",
            "not set, nor is LOGTO_APP_SECRET (or LOGTO_APP_SECRET_FILE)",
        ),
        (false, false, _) => (
            "LOGTO_APP_SECRET",
            "not set (set it, or LOGTO_APP_SECRET_FILE)",
        ),
    };
    Error::env(variable, reason)
}

/// A variable's text; unset and empty are the same (`None`), non-UTF-8 is an error.
fn text_var(name: &'static str, value: Option<OsString>) -> Result<Option<String>, Error> {
    match value.map(OsString::into_string) {
        None => Ok(None),
        Some(Ok(v)) if v.is_empty() => Ok(None),
        Some(Ok(v)) => Ok(Some(v)),
        Some(Err(_)) => Err(Error::env(name, "not valid utf-8")),
    }
}
