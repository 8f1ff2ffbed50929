//! `Config`: where the token endpoint is, who we are, and how long we wait.
//!
//! Required values go into the constructors; everything else is a chained setter whose docs
//! end with its default.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use ureq::http::Uri;

use crate::error::{Error, Redactions};
use crate::tls::{self, Roots};

/// The timeout when none is set: 30 seconds for the whole exchange.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

const USER_AGENT: &str = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));

/// How to reach a token endpoint, and the app's credentials.
///
/// Cheap to clone: clones share one connection pool. `Debug` never shows the secret, nor
/// a proxy's credentials.
///
/// # TLS
///
/// Certificates are always verified, and there is no setting to turn that off. Which
/// roots verify them:
///
/// - by default, with the `rustls` feature (the default), Mozilla's root certificates
///   built into the binary (the `webpki-roots` crate), independent of what the system
///   trusts; with `native-tls`, the system's roots as OpenSSL, Security.framework or
///   SChannel finds them;
/// - [`root_certificates_pem`](Config::root_certificates_pem): exactly the CA
///   certificates you give, for a self-hosted Logto behind a private CA;
/// - [`platform_roots`](Config::platform_roots): the system's roots, also with rustls.
///
/// # Proxies
///
/// By default the proxy in the environment is used, as ureq reads it, except for loopback
/// token URLs; [`proxy`](Config::proxy) sets one explicitly and
/// [`no_proxy`](Config::no_proxy) ignores the environment. See
/// [`proxy`](Config::proxy) for the variables.
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
    /// True for an `https://` token URL.
    https: bool,
    /// True when the URL's host is loopback, which the environment's proxy never gets.
    loopback: bool,
    /// The CA certificates that verify the server.
    roots: Roots,
    proxy: ProxySetting,
    /// Built on first use so that setters stay cheap; clones share it (and its pool).
    /// Setters that change how we connect (roots, proxy) replace it with an empty one.
    agent: OnceLock<Built>,
}

/// Where the connection goes through.
#[derive(Clone)]
enum ProxySetting {
    /// ureq's reading of the environment, except for loopback token URLs.
    Env,
    /// Straight to the token endpoint.
    None,
    /// This proxy, always.
    Explicit(ureq::Proxy),
}

/// The agent, and why it must not be used if something in the environment was unusable.
/// Clones share the agent's connection pool (an `Arc` inside).
#[derive(Clone)]
struct Built {
    agent: ureq::Agent,
    /// An error every request returns instead of connecting: the environment named a
    /// proxy this build can't use, and going around it silently is not an option.
    problem: Option<Error>,
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
        let UrlFacts { https, loopback } = check_url(token_url)?;
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
            https,
            loopback,
            roots: Roots::Default,
            proxy: ProxySetting::Env,
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

    /// Trusts exactly the CA certificates in `pem` (one or more `-----BEGIN
    /// CERTIFICATE-----` blocks), for a token endpoint whose certificate a private CA
    /// signed, such as a self-hosted Logto inside a company network.
    ///
    /// These **replace** the default roots rather than adding to them (ureq's
    /// `RootCerts::Specific`): the config then trusts your CA and nothing else, which is
    /// what a private deployment wants, and means a public endpoint is no longer
    /// verifiable with this config. For both, put the public roots in the same PEM (for
    /// example, append your CA to a copy of the system bundle). The certificates are
    /// checked with the same rules as any root: an end-entity certificate given here is
    /// not a usable root with every TLS backend, so give the CA's certificate.
    ///
    /// Text around the blocks and blocks of other kinds (a private key, say) are ignored.
    ///
    /// Defaults to the TLS feature's roots (see [TLS](Config#tls)).
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) naming the problem when `pem` has
    /// no certificate, a block without its END line, invalid base64, or a block that is
    /// not a DER certificate.
    ///
    /// # Example
    /// ```no_run
    /// use logto_m2m::Config;
    ///
    /// let ca = std::fs::read("/etc/logto/ca.pem").expect("the CA file");
    /// let config = Config::logto("https://auth.internal.example", "app-id", "app-secret")?
    ///     .root_certificates_pem(&ca)?;
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn root_certificates_pem(mut self, pem: &[u8]) -> Result<Config, Error> {
        let certs = tls::parse_pem_certificates(pem)
            .map_err(|reason| Error::config(format!("root certificates: {reason}")))?;
        self.roots = Roots::Specific(Arc::new(certs));
        self.agent = OnceLock::new();
        Ok(self)
    }

    /// Trusts the system's root certificates instead of the TLS feature's default.
    ///
    /// - With `native-tls`: the system's verifier and roots (ureq's
    ///   `RootCerts::PlatformVerifier`), which is already the default there.
    /// - With `rustls` (the default feature): the system's CA bundle file, read now: the
    ///   file `SSL_CERT_FILE` names when set, else the first that exists of
    ///   `/etc/ssl/certs/ca-certificates.crt` (Debian, Ubuntu, Alpine, Arch),
    ///   `/etc/pki/tls/certs/ca-bundle.crt` and
    ///   `/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem` (Fedora, RHEL),
    ///   `/etc/ssl/ca-bundle.pem` (openSUSE), `/etc/ssl/cert.pem` (macOS, OpenBSD) and
    ///   `/usr/local/share/certs/ca-root-nss.crt` (FreeBSD). `SSL_CERT_DIR` is not read.
    ///   This keeps the dependency tree small (ureq's `platform-verifier` feature would add
    ///   `rustls-platform-verifier` and its platform crates); the price is that roots
    ///   added only to a macOS keychain or the Windows store are not seen: use
    ///   `native-tls` there, or [`root_certificates_pem`](Config::root_certificates_pem).
    ///
    /// Use it where a company CA is installed system-wide (`update-ca-certificates`) and
    /// should be trusted alongside the public roots.
    ///
    /// Defaults to the TLS feature's roots (see [TLS](Config#tls)).
    ///
    /// # Errors
    /// With rustls: [`ErrorKind::Config`](crate::ErrorKind::Config) when no bundle is
    /// found, it can't be read, or it holds no valid certificate.
    pub fn platform_roots(mut self) -> Result<Config, Error> {
        #[cfg(all(feature = "native-tls", not(feature = "rustls")))]
        {
            self.roots = Roots::Platform;
        }
        #[cfg(not(all(feature = "native-tls", not(feature = "rustls"))))]
        {
            self.roots = Roots::SystemBundle(Arc::new(tls::system_bundle()?));
        }
        self.agent = OnceLock::new();
        Ok(self)
    }

    /// Sends every request through this proxy, whatever the environment says and even to a
    /// loopback token URL.
    ///
    /// `proxy_url` is `http://host:port` (an HTTP proxy, the usual kind) or
    /// `https://host:port` (TLS to the proxy itself, verified with the same roots as the
    /// token endpoint); without a scheme, `http://` is assumed. Credentials go in the URL,
    /// percent-encoded: `http://user:pa%40ss@proxy:3128`; they are sent as
    /// `Proxy-Authorization: Basic` and never shown by `Debug` or in an error. ureq opens a
    /// tunnel with `CONNECT host:port` for `https://` and for plain `http://` token URLs
    /// alike (no absolute-form requests), so the proxy sees the token endpoint's host and
    /// port, and for https nothing else.
    ///
    /// # The environment, when no proxy is set
    ///
    /// By default the proxy comes from the environment, read by ureq
    /// (`ureq::Proxy::try_from_env`) when the first request is made with this config:
    ///
    /// - the first of `ALL_PROXY`, `all_proxy`, `HTTPS_PROXY`, `https_proxy`,
    ///   `HTTP_PROXY`, `http_proxy` that is set to a URL ureq can read. The one proxy is
    ///   used for every URL: `ALL_PROXY` wins over `HTTPS_PROXY`, and `HTTP_PROXY` alone
    ///   applies to https token URLs too (curl would use it for http URLs only);
    /// - `NO_PROXY` (or `no_proxy` when `NO_PROXY` is unset) is honoured: a
    ///   comma-separated list, without spaces, of `host` (exact, any case),
    ///   `.example.com` or `*.example.com` (subdomains only), `prefix*` and `*` (every
    ///   host). Ports and CIDR ranges are not understood;
    /// - on top of ureq: a token URL whose host is loopback (`localhost`, `127.0.0.0/8`,
    ///   `[::1]`) never goes through the environment's proxy, as with Go's `net/http`: a
    ///   proxy elsewhere can't reach this machine's loopback, so a local Logto would
    ///   otherwise fail only where a proxy happens to be set;
    /// - a SOCKS proxy in the environment can't be used by this build (ureq's
    ///   `socks-proxy` feature is not enabled, to keep dependencies small): requests then
    ///   fail with [`ErrorKind::Config`](crate::ErrorKind::Config) naming the variable
    ///   rather than silently connecting around it. Set an HTTP proxy with this setter, or
    ///   call [`no_proxy`](Config::no_proxy).
    ///
    /// Defaults to the environment as above.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when the URL can't be read, names a
    /// SOCKS proxy (see above), or is `https://` without a TLS feature.
    ///
    /// # Example
    /// ```
    /// use logto_m2m::Config;
    ///
    /// let config = Config::logto("https://tenant.logto.app", "app-id", "app-secret")?
    ///     .proxy("http://user:hunter2@proxy.internal:3128")?;
    /// assert!(!format!("{config:?}").contains("hunter2"));
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn proxy(mut self, proxy_url: &str) -> Result<Config, Error> {
        use ureq::ProxyProtocol;
        // The URL is never quoted back: it may hold a password.
        let proxy = ureq::Proxy::new(proxy_url).map_err(|_| {
            Error::config("proxy url is not valid (expected http://[user:password@]host:port)")
        })?;
        match proxy.protocol() {
            ProxyProtocol::Http => {}
            ProxyProtocol::Https if cfg!(any(feature = "rustls", feature = "native-tls")) => {}
            ProxyProtocol::Https => {
                return Err(Error::config(
                    "an https:// proxy needs a TLS feature (rustls or native-tls)",
                ));
            }
            // ureq panics for an explicit SOCKS proxy without its socks-proxy feature.
            _ => {
                return Err(Error::config(
                    "socks proxies are not supported (ureq's socks-proxy feature is off); use an \
                     http:// proxy",
                ));
            }
        }
        self.proxy = ProxySetting::Explicit(proxy);
        self.agent = OnceLock::new();
        Ok(self)
    }

    /// Connects straight to the token endpoint, ignoring any proxy in the environment.
    ///
    /// Defaults to using the environment's proxy (see [`proxy`](Config::proxy)).
    pub fn no_proxy(mut self) -> Self {
        self.proxy = ProxySetting::None;
        self.agent = OnceLock::new();
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

    /// Refuses clear text to a remote host unless the user opted in, and a proxy from the
    /// environment that this build can't use.
    pub(crate) fn check_transport(&self) -> Result<(), Error> {
        if !self.https && !self.loopback && !self.allow_insecure_http {
            return Err(Error::config(
                "plain http to a host that is not loopback would send the app secret in clear \
                 text; use https, or allow_insecure_http(true)",
            ));
        }
        match &self.built().problem {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// True for an `https://` token URL.
    pub(crate) fn is_https(&self) -> bool {
        self.https
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
        &self.built().agent
    }

    fn built(&self) -> &Built {
        self.agent.get_or_init(|| {
            let (proxy, problem) = match &self.proxy {
                ProxySetting::Explicit(p) => (Some(p.clone()), None),
                ProxySetting::None => (None, None),
                ProxySetting::Env if self.loopback => (None, None),
                ProxySetting::Env => match env_proxy() {
                    Ok(p) => (p, None),
                    Err(e) => (None, Some(e)),
                },
            };
            let builder = ureq::Agent::config_builder().proxy(proxy);
            // Without a TLS feature only plain http (to loopback) works; ureq answers an
            // https URL with an error naming the missing TLS support.
            #[cfg(any(feature = "rustls", feature = "native-tls"))]
            let builder = builder.tls_config(tls::tls_config(&self.roots));
            let agent = builder
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
                .new_agent();
            Built { agent, problem }
        })
    }
}

/// The variables ureq's `Proxy::try_from_env` reads, in its order.
const PROXY_VARIABLES: [&str; 6] = [
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
];

/// The environment's proxy as ureq reads it (its `NO_PROXY` handling included), or an
/// error naming the variable when it is a SOCKS proxy, which this build can't use: ureq
/// would warn and connect around it.
fn env_proxy() -> Result<Option<ureq::Proxy>, Error> {
    let Some(proxy) = ureq::Proxy::try_from_env() else {
        return Ok(None);
    };
    if matches!(
        proxy.protocol(),
        ureq::ProxyProtocol::Http | ureq::ProxyProtocol::Https
    ) {
        return Ok(Some(proxy));
    }
    // The variable ureq took: the first one set to something it can read.
    let variable = PROXY_VARIABLES
        .into_iter()
        .find(|v| std::env::var(v).is_ok_and(|url| ureq::Proxy::new(&url).is_ok()))
        .unwrap_or("ALL_PROXY");
    Err(Error::config(format!(
        "the proxy in {variable} is a socks proxy, which this build can't use; set an http:// \
         proxy with Config::proxy, or ignore the environment with Config::no_proxy"
    )))
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("token_url", &self.token_url)
            .field("app_id", &self.app_id)
            .field("app_secret", &"[redacted]")
            .field("timeout", &self.timeout)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("root_certificates", &self.roots)
            .field("proxy", &self.proxy)
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

impl fmt::Debug for ProxySetting {
    /// Scheme, host and port only: never the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxySetting::Env => f.write_str("environment"),
            ProxySetting::None => f.write_str("none"),
            ProxySetting::Explicit(p) => {
                let scheme = match p.protocol() {
                    ureq::ProxyProtocol::Https => "https",
                    _ => "http",
                };
                write!(f, "{scheme}://{}:{}", p.host(), p.port())?;
                if p.username().is_some() || p.password().is_some() {
                    f.write_str(" (with credentials)")?;
                }
                Ok(())
            }
        }
    }
}

/// What [`check_url`] found out about a token URL.
struct UrlFacts {
    https: bool,
    /// The host is `localhost` or a loopback address.
    loopback: bool,
}

/// Checks the token URL.
fn check_url(url: &str) -> Result<UrlFacts, Error> {
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
    Ok(UrlFacts {
        https,
        loopback: is_loopback(host),
    })
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
