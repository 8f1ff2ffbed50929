//! `Config::from_env` and `Config::from_vars`: the `LOGTO_*` variables a config is made
//! from, each checked and named in its error (never its value).

use std::ffi::OsString;

use super::Config;
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
    /// malformed (never repeating its value), or the errors of [`Config::new`].
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
        let app_id = env_var("LOGTO_APP_ID")?.ok_or(Error::env("LOGTO_APP_ID", "not set"))?;
        let secret = env_var("LOGTO_APP_SECRET")?;
        // A path need not be UTF-8.
        let secret_file = var("LOGTO_APP_SECRET_FILE").filter(|p| !p.is_empty());
        let secret = match (secret, secret_file) {
            (Some(secret), None) => Secret::from(secret),
            (None, Some(path)) => Secret::file(path),
            (None, None) => {
                return Err(Error::env(
                    "LOGTO_APP_SECRET",
                    "not set (set it, or LOGTO_APP_SECRET_FILE)",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(Error::env(
                    "LOGTO_APP_SECRET_FILE",
                    "set together with LOGTO_APP_SECRET; set only one",
                ));
            }
        };
        let config = match (endpoint, token_url) {
            (Some(endpoint), None) => Config::logto(&endpoint, &app_id, secret)?,
            (None, Some(url)) => Config::new(&url, &app_id, secret)?,
            (None, None) => {
                return Err(Error::env(
                    "LOGTO_ENDPOINT",
                    "not set (set it, or LOGTO_TOKEN_URL)",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(Error::env(
                    "LOGTO_TOKEN_URL",
                    "set together with LOGTO_ENDPOINT; set only one",
                ));
            }
        };
        let config = match env_var("LOGTO_TIMEOUT")? {
            None => config,
            Some(s) => config.timeout(
                crate::text::parse_seconds(s.trim())
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

/// A variable's text; unset and empty are the same (`None`), non-UTF-8 is an error.
fn text_var(name: &'static str, value: Option<OsString>) -> Result<Option<String>, Error> {
    match value.map(OsString::into_string) {
        None => Ok(None),
        Some(Ok(v)) if v.is_empty() => Ok(None),
        Some(Ok(v)) => Ok(Some(v)),
        Some(Err(_)) => Err(Error::env(name, "not valid utf-8")),
    }
}
