//! `Config`: where the token endpoint is, who we are, and how long we wait.
//!
//! Required values go into the constructors; everything else is a chained setter whose docs
//! end with its default.

use std::fmt;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use ureq::http::Uri;

use crate::error::{Error, Redactions};

/// The timeout when none is set: 30 seconds for the whole exchange.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

const USER_AGENT: &str = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));

/// How to reach a token endpoint, and the app's credentials.
///
/// Cheap to clone: clones share one connection pool. `Debug` never shows the secret.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use logto_m2m::Config;
///
/// let config = Config::logto("https://tenant.logto.app", "app-id", "app-secret")?
///     .timeout(Duration::from_secs(10));
/// assert_eq!(config.token_url(), "https://tenant.logto.app/oidc/token");
/// assert!(!format!("{config:?}").contains("app-secret"));
/// # Ok::<_, logto_m2m::Error>(())
/// ```
#[derive(Clone)]
pub struct Config {
    token_url: String,
    app_id: String,
    /// Kept only to redact it from server text; what goes on the wire is `basic`.
    secret: String,
    /// The secret form-urlencoded, as it appears inside the Basic value.
    secret_encoded: String,
    /// `Basic base64(urlencode(id):urlencode(secret))`, built once.
    basic: String,
    timeout: Duration,
    allow_insecure_http: bool,
    /// True when the URL is plain http to a host that is not loopback.
    cleartext_remote: bool,
    /// Built on first use so that setters stay cheap; clones share it (and its pool).
    agent: OnceLock<ureq::Agent>,
}

impl Config {
    /// A config for a Logto tenant: the token URL is `{endpoint}/oidc/token`.
    ///
    /// `endpoint` is the tenant's base URL as shown in the Logto console, e.g.
    /// `https://tenant.logto.app` or a self-hosted `https://auth.example.com`.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when the URL is not http(s), has no
    /// host, carries user info, or the app id or secret is empty.
    pub fn logto(endpoint: &str, app_id: &str, app_secret: &str) -> Result<Config, Error> {
        let base = endpoint.trim_end_matches('/');
        Config::new(&format!("{base}/oidc/token"), app_id, app_secret)
    }

    /// A config for any RFC 6749 token endpoint, given its full URL.
    ///
    /// # Errors
    /// As for [`Config::logto`].
    pub fn new(token_url: &str, app_id: &str, app_secret: &str) -> Result<Config, Error> {
        let cleartext_remote = check_url(token_url)?;
        if app_id.is_empty() {
            return Err(Error::config("app id is empty"));
        }
        if app_secret.is_empty() {
            return Err(Error::config("app secret is empty"));
        }
        // RFC 6749 §2.3.1: id and secret are each form-urlencoded, then joined by ':'.
        let mut pair = form_urlencode(app_id);
        pair.push(':');
        let secret_encoded = form_urlencode(app_secret);
        pair.push_str(&secret_encoded);
        let mut basic = String::from("Basic ");
        base64::engine::general_purpose::STANDARD.encode_string(pair, &mut basic);
        Ok(Config {
            token_url: token_url.to_owned(),
            app_id: app_id.to_owned(),
            secret: app_secret.to_owned(),
            secret_encoded,
            basic,
            timeout: DEFAULT_TIMEOUT,
            allow_insecure_http: false,
            cleartext_remote,
            agent: OnceLock::new(),
        })
    }

    /// A config from the environment, for cron jobs and containers.
    ///
    /// | variable | meaning |
    /// | --- | --- |
    /// | `LOGTO_ENDPOINT` | the Logto base URL (token URL `{endpoint}/oidc/token`), or |
    /// | `LOGTO_TOKEN_URL` | the full token URL of any RFC 6749 server (set one of the two) |
    /// | `LOGTO_APP_ID` | the app id |
    /// | `LOGTO_APP_SECRET` | the app secret |
    /// | `LOGTO_TIMEOUT` | optional: the timeout in seconds, e.g. `10` or `2.5` |
    ///
    /// # Errors
    /// [`ErrorKind::Env`](crate::ErrorKind::Env) naming the variable that is missing or
    /// malformed (never repeating its value), or the errors of [`Config::new`].
    pub fn from_env() -> Result<Config, Error> {
        let endpoint = env_var("LOGTO_ENDPOINT")?;
        let token_url = env_var("LOGTO_TOKEN_URL")?;
        let app_id = env_var("LOGTO_APP_ID")?.ok_or(Error::env("LOGTO_APP_ID", "not set"))?;
        let secret =
            env_var("LOGTO_APP_SECRET")?.ok_or(Error::env("LOGTO_APP_SECRET", "not set"))?;
        let config = match (endpoint, token_url) {
            (Some(endpoint), None) => Config::logto(&endpoint, &app_id, &secret)?,
            (None, Some(url)) => Config::new(&url, &app_id, &secret)?,
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
        match env_var("LOGTO_TIMEOUT")? {
            None => Ok(config),
            Some(s) => {
                let secs: f64 = s
                    .trim()
                    .parse()
                    .map_err(|_| Error::env("LOGTO_TIMEOUT", "not a number of seconds"))?;
                let timeout = Duration::try_from_secs_f64(secs)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or(Error::env(
                        "LOGTO_TIMEOUT",
                        "not a positive number of seconds",
                    ))?;
                Ok(config.timeout(timeout))
            }
        }
    }

    /// The deadline for one whole exchange: connecting, sending, the response headers and
    /// body, and any retries and waits in between. A server that sends one byte a second is
    /// cut off here too.
    ///
    /// Defaults to 30 seconds ([`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Allows a plain `http://` token URL to a host that is not loopback, which sends the
    /// app secret and the token in clear text. Only for networks you trust entirely;
    /// loopback hosts (`localhost`, `127.0.0.0/8`, `[::1]`) are always allowed.
    ///
    /// Defaults to `false`.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// The token endpoint's URL.
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// The app id (the OAuth `client_id`).
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// The configured deadline for one exchange.
    pub fn timeout_value(&self) -> Duration {
        self.timeout
    }

    /// Refuses clear text to a remote host unless the user opted in.
    pub(crate) fn check_transport(&self) -> Result<(), Error> {
        if self.cleartext_remote && !self.allow_insecure_http {
            return Err(Error::config(
                "plain http to a host that is not loopback would send the app secret in clear \
                 text; use https, or allow_insecure_http(true)",
            ));
        }
        Ok(())
    }

    pub(crate) fn basic(&self) -> &str {
        &self.basic
    }

    pub(crate) fn redactions(&self) -> Redactions<'_> {
        Redactions {
            secrets: [
                &self.secret,
                &self.secret_encoded,
                &self.basic["Basic ".len()..],
            ],
        }
    }

    pub(crate) fn agent(&self) -> &ureq::Agent {
        self.agent.get_or_init(|| {
            let builder = ureq::Agent::config_builder();
            // Without a TLS feature only plain http (to loopback) works; ureq answers an
            // https URL with an error naming the missing TLS support.
            #[cfg(any(feature = "rustls", feature = "native-tls"))]
            let builder = builder.tls_config(tls_config());
            builder
                // 4xx and 5xx carry the OAuth error body; we read them ourselves.
                .http_status_as_error(false)
                // Never follow a redirect: it would take the Basic credentials, or at least
                // the request, somewhere we were not configured to send them. With 0, ureq
                // returns the 3xx response as is.
                .max_redirects(0)
                .user_agent(USER_AGENT)
                .accept("application/json")
                // We can't decode gzip (no such feature, by choice) and must not parse
                // compressed bytes as JSON.
                .accept_encoding("identity")
                .build()
                .new_agent()
        })
    }
}

/// rustls with Mozilla's roots when the `rustls` feature is on; otherwise native-tls with the
/// system's roots. (ureq panics on some provider and root combinations, so we pick only
/// these two.)
#[cfg(any(feature = "rustls", feature = "native-tls"))]
fn tls_config() -> ureq::tls::TlsConfig {
    use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
    let builder = TlsConfig::builder();
    #[cfg(feature = "rustls")]
    let builder = builder
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::WebPki);
    #[cfg(not(feature = "rustls"))]
    let builder = builder
        .provider(TlsProvider::NativeTls)
        .root_certs(RootCerts::PlatformVerifier);
    builder.build()
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("token_url", &self.token_url)
            .field("app_id", &self.app_id)
            .field("app_secret", &"[redacted]")
            .field("timeout", &self.timeout)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish()
    }
}

/// Reads a variable; unset and empty are the same (`None`), non-UTF-8 is an error.
fn env_var(name: &'static str) -> Result<Option<String>, Error> {
    match std::env::var(name) {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::env(name, "not valid utf-8")),
    }
}

/// Checks the token URL; returns whether it is plain http to a non-loopback host.
fn check_url(url: &str) -> Result<bool, Error> {
    let https = if url.starts_with("https://") {
        true
    } else if url.starts_with("http://") {
        false
    } else {
        return Err(Error::config(
            "token url must start with https:// or http://",
        ));
    };
    if url.contains('#') {
        return Err(Error::config("token url must not have a fragment"));
    }
    let uri: Uri = url
        .parse()
        .map_err(|_| Error::config("token url is not a valid url"))?;
    let authority = uri
        .authority()
        .ok_or(Error::config("token url has no host"))?;
    // Credentials belong in the Basic header we build, not in the URL, where they would
    // end up in logs and error messages.
    if authority.as_str().contains('@') {
        return Err(Error::config("token url must not contain user info"));
    }
    let host = authority.host();
    if host.is_empty() {
        return Err(Error::config("token url has no host"));
    }
    Ok(!https && !is_loopback(host))
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `application/x-www-form-urlencoded` as WHATWG defines it: alphanumerics and `*-._` stay,
/// space becomes `+`, every other byte becomes `%XX`.
pub(crate) fn form_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    form_urlencode_into(s, &mut out);
    out
}

pub(crate) fn form_urlencode_into(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn form_encoding_matches_rfc_6749_examples() {
        // The peer's special clients, as its transcript shows them accepted.
        assert_eq!(
            form_urlencode("s3cr:t+/%&= x~"),
            "s3cr%3At%2B%2F%25%26%3D+x%7E"
        );
        assert_eq!(form_urlencode("m2m:colon"), "m2m%3Acolon");
        assert_eq!(form_urlencode("colon%41+secret"), "colon%2541%2Bsecret");
        assert_eq!(form_urlencode("é"), "%C3%A9");
    }

    #[test]
    fn basic_value_is_encoded_pair() {
        let c = Config::new("https://x/token", "m2m-special", "s3cr:t+/%&= x~").unwrap();
        assert_eq!(
            c.basic(),
            "Basic bTJtLXNwZWNpYWw6czNjciUzQXQlMkIlMkYlMjUlMjYlM0QreCU3RQ=="
        );
    }

    #[test]
    fn urls() {
        let err = |u: &str| Config::new(u, "a", "b").unwrap_err().to_string();
        assert_eq!(
            err("ftp://x"),
            "invalid config: token url must start with https:// or http://"
        );
        assert_eq!(
            err("https://u:p@x/t"),
            "invalid config: token url must not contain user info"
        );
        assert_eq!(
            err("https://x/t#f"),
            "invalid config: token url must not have a fragment"
        );
        assert_eq!(
            err("https:///t"),
            "invalid config: token url is not a valid url"
        );
        assert_eq!(
            Config::logto("https://t.logto.app/", "a", "b")
                .unwrap()
                .token_url(),
            "https://t.logto.app/oidc/token"
        );
    }

    #[test]
    fn cleartext_only_to_loopback() {
        let ok = |u: &str| Config::new(u, "a", "b").unwrap().check_transport().is_ok();
        assert!(ok("http://127.0.0.1:3999/oidc/token"));
        assert!(ok("http://127.8.9.10/t"));
        assert!(ok("http://localhost/t"));
        assert!(ok("http://LOCALHOST:80/t"));
        assert!(ok("http://[::1]:8080/t"));
        assert!(ok("https://example.com/t"));
        assert!(!ok("http://example.com/t"));
        assert!(!ok("http://10.0.0.1/t"));
        assert!(!ok("http://localhost.example.com/t"));
        let c = Config::new("http://example.com/t", "a", "b").unwrap();
        assert!(c.allow_insecure_http(true).check_transport().is_ok());
    }

    #[test]
    fn empty_credentials_refused() {
        assert!(Config::new("https://x/t", "", "b").is_err());
        assert!(Config::new("https://x/t", "a", "").is_err());
    }

    #[test]
    fn debug_hides_secret() {
        let c = Config::new("https://x/t", "app", "very-secret-value").unwrap();
        let d = format!("{c:?} {c:#?}");
        assert!(!d.contains("very-secret-value"));
        assert!(!d.contains(&c.basic()[6..]));
    }
}
