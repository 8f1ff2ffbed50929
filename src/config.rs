//! `Config`: where the token endpoint is, who we are, and how long we wait.
//!
//! Required values go into the constructors; everything else is a chained setter whose docs
//! end with its default.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::seal::SealKey;
use crate::secret::Secret;
use crate::tls::{self, Roots};
use crate::transport::{self, Proxy, Transport};
use crate::url::{Origin, Url};

mod env;

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
/// hosts; [`proxy`](Config::proxy) sets one explicitly and
/// [`no_proxy`](Config::no_proxy) ignores the environment. See
/// [`proxy`](Config::proxy) for the variables.
///
/// The roots and the proxy apply to every request made with the config: the token request,
/// an impersonation's call to Logto's Management API (`POST /api/subject-tokens`), and the
/// API calls of the agent [`agent`](Config::agent) gives.
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
    /// The secret, or the file it is read from for each request.
    secret: Secret,
    auth_method: AuthMethod,
    timeout: Duration,
    /// The longest lifetime a token is trusted for: one day, whatever the server says.
    max_lifetime: Duration,
    allow_insecure_http: bool,
    /// The token URL's scheme, host and port: whether it is https, loopback, and what a
    /// failed connection names.
    origin: Origin,
    /// The Logto endpoint, when the token URL is where Logto serves it
    /// (`{endpoint}/oidc/token`): its origin and path before `/oidc/token`.
    logto_endpoint: Option<String>,
    transport: Transport,
}

/// How the app proves who it is to the token endpoint (RFC 6749 §2.3.1; the names are
/// OpenID Connect's `token_endpoint_auth_method` values).
///
/// Exactly one is used per request, never both.
///
/// # Example
/// ```
/// use logto_m2m::AuthMethod;
///
/// let method: AuthMethod = "client_secret_post".parse()?;
/// assert_eq!(method, AuthMethod::ClientSecretPost);
/// assert_eq!(method.to_string(), "client_secret_post");
/// assert!("private_key_jwt".parse::<AuthMethod>().is_err());
/// # Ok::<_, logto_m2m::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// `Authorization: Basic base64(urlencode(id):urlencode(secret))`: what Logto's docs use.
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body, no `Authorization` header: for
    /// servers that want it (Auth0's default, for one).
    ClientSecretPost,
}

impl AuthMethod {
    /// The method's name as OpenID Connect writes it, e.g. `client_secret_basic`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
        }
    }
}

impl FromStr for AuthMethod {
    type Err = Error;

    /// `client_secret_basic` or `client_secret_post`.
    fn from_str(s: &str) -> Result<AuthMethod, Error> {
        match s {
            "client_secret_basic" => Ok(AuthMethod::ClientSecretBasic),
            "client_secret_post" => Ok(AuthMethod::ClientSecretPost),
            _ => Err(Error::config(
                "auth method must be client_secret_basic or client_secret_post",
            )),
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Config {
    /// A config for a Logto tenant: the token URL is `{endpoint}/oidc/token`.
    ///
    /// `endpoint` is the tenant's base URL as shown in the Logto console, e.g.
    /// `https://tenant.logto.app` or a self-hosted `https://auth.example.com`.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when the URL is not http(s) (in any
    /// case), has no host, carries user info, a port past 65535 or a fragment (the crate's
    /// rules for every URL, see [`Origin::of`](crate::Origin::of)), or the app id or
    /// secret is empty; also when its path ends
    /// in `/oidc` or `/oidc/token`, which this appends (the message names the base URL to
    /// give instead). A Logto served under a path that itself ends in `/oidc` gives its
    /// full token URL to [`Config::new`].
    ///
    /// ```
    /// use logto_m2m::Config;
    ///
    /// let err = Config::logto("https://tenant.logto.app/oidc", "id", "secret").unwrap_err();
    /// assert!(err.to_string().contains("give https://tenant.logto.app"), "{err}");
    /// ```
    pub fn logto(
        endpoint: &str,
        app_id: &str,
        app_secret: impl Into<Secret>,
    ) -> Result<Config, Error> {
        let base = endpoint.trim_end_matches('/');
        let token_url = format!("{base}/oidc/token");
        // Checked first: the base is known to be a URL without user info before a message
        // repeats it.
        let url = check_url_and_id(&token_url, app_id)?;
        // An endpoint that already ends in /oidc (the issuer the console shows next to it) or
        // /oidc/token is the likeliest slip. It is refused here, before anything is sent,
        // rather than left to the server's 404 (which `exchange` still explains, for a
        // doubled path in a full token URL): no credentials go to a URL known to be wrong,
        // a proxy or app that answers every path would not even say 404, and the fix is
        // certain enough to name. The price, a Logto mounted under a path ending in /oidc
        // has to give its full token URL, is paid by almost no one.
        if let Some(advice) = doubled_oidc(base, url.path()) {
            return Err(Error::config(advice));
        }
        Config::build(&token_url, app_id, url, app_secret.into())
    }

    /// A config for any RFC 6749 token endpoint, given its full URL.
    ///
    /// # Errors
    /// As for [`Config::logto`].
    pub fn new(
        token_url: &str,
        app_id: &str,
        app_secret: impl Into<Secret>,
    ) -> Result<Config, Error> {
        let url = check_url_and_id(token_url, app_id)?;
        Config::build(token_url, app_id, url, app_secret.into())
    }

    /// The config with its defaults, from checked parts and a secret checked now (after
    /// the URL and id, so that their errors come before the file's).
    fn build(token_url: &str, app_id: &str, url: Url, secret: Secret) -> Result<Config, Error> {
        secret.check("app secret")?;
        let logto_endpoint = url
            .path()
            .trim_end_matches('/')
            .strip_suffix("/oidc/token")
            .map(|path| format!("{}{path}", url.origin));
        Ok(Config {
            token_url: token_url.to_owned(),
            app_id: app_id.to_owned(),
            secret,
            auth_method: AuthMethod::ClientSecretBasic,
            timeout: Duration::from_secs(30),
            max_lifetime: Duration::from_secs(24 * 3600),
            allow_insecure_http: false,
            origin: url.origin.clone(),
            logto_endpoint,
            transport: Transport::new(&url),
        })
    }

    /// The deadline for one whole exchange: connecting, sending, the response headers and
    /// body, and any retries and waits in between. A server that sends one byte a second is
    /// cut off here too.
    ///
    /// Defaults to 30 seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How the app id and secret are sent: in the `Authorization: Basic` header, or in the
    /// form body for servers that want `client_secret_post`.
    ///
    /// Defaults to [`AuthMethod::ClientSecretBasic`].
    pub fn auth_method(mut self, method: AuthMethod) -> Self {
        self.auth_method = method;
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
        self.transport = self.transport.roots(Roots::Specific(Arc::new(certs)));
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
        let roots = Roots::Platform;
        #[cfg(not(all(feature = "native-tls", not(feature = "rustls"))))]
        let roots = Roots::SystemBundle(Arc::new(tls::system_bundle().map_err(Error::config)?));
        self.transport = self.transport.roots(roots);
        Ok(self)
    }

    /// Sends every request through this proxy, whatever the environment says and even to a
    /// loopback host.
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
    /// A proxy that refuses the tunnel (`407 Proxy Authentication Required`, or the `401`
    /// tinyproxy answers a wrong password with, or any other status) fails the request
    /// with [`ErrorKind::Transport`](crate::ErrorKind::Transport) naming the proxy's host
    /// and port, the server asked for and the status, e.g. `transport: CONNECT proxy
    /// failed: proxy proxy.internal:3128 answered http 407 to CONNECT auth.example:443: it
    /// refused the user and password in the proxy url`; never its user or password.
    ///
    /// # The environment, when no proxy is set
    ///
    /// By default the proxy comes from the environment, read by ureq
    /// (`ureq::Proxy::try_from_env`) when the first request is made with this config (for
    /// [`agent`](Config::agent), when the agent is made):
    ///
    /// - the first of `ALL_PROXY`, `all_proxy`, `HTTPS_PROXY`, `https_proxy`,
    ///   `HTTP_PROXY`, `http_proxy` that is set to a URL ureq can read. The one proxy is
    ///   used for every URL: `ALL_PROXY` wins over `HTTPS_PROXY`, and `HTTP_PROXY` alone
    ///   applies to https token URLs too (curl would use it for http URLs only);
    /// - `NO_PROXY` (or `no_proxy` when `NO_PROXY` is unset) is honoured: a
    ///   comma-separated list, without spaces, of `host` (exact, any case),
    ///   `.example.com` or `*.example.com` (subdomains only), `prefix*` and `*` (every
    ///   host). Ports and CIDR ranges are not understood;
    /// - on top of ureq: a host that is loopback (`localhost`, `127.x.x.x`, `[::1]`) never
    ///   goes through the environment's proxy, as with Go's `net/http`: a proxy elsewhere
    ///   can't reach this machine's loopback, so a local Logto would otherwise fail only
    ///   where a proxy happens to be set;
    /// - a SOCKS proxy in the environment can't be used by this build (ureq's
    ///   `socks-proxy` feature is not enabled, to keep dependencies small): a request to a
    ///   host it applies to (not loopback, not in `NO_PROXY`) then fails with
    ///   [`ErrorKind::Config`](crate::ErrorKind::Config) naming the variable rather than
    ///   silently connecting around it. Set an HTTP proxy with this setter, or call
    ///   [`no_proxy`](Config::no_proxy).
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
        self.transport = self.transport.proxy(transport::explicit_proxy(proxy_url)?);
        Ok(self)
    }

    /// Connects straight to the token endpoint, ignoring any proxy in the environment.
    ///
    /// Defaults to using the environment's proxy (see [`proxy`](Config::proxy)).
    pub fn no_proxy(mut self) -> Self {
        self.transport = self.transport.proxy(Proxy::None);
        self
    }

    /// A ureq agent that connects as this config's token requests do, for the API calls
    /// made with its tokens ([`TokenStore::call`](crate::TokenStore::call)): the same root
    /// certificates (a private CA given to
    /// [`root_certificates_pem`](Config::root_certificates_pem) verifies the API too) and
    /// the same proxy, the environment's included, decided for each URL (`NO_PROXY`,
    /// loopback hosts).
    ///
    /// Its settings: the config's [`timeout`](Config::timeout) as ureq's `timeout_global`;
    /// `http_status_as_error(false)` (an error status is an answer, with its body to read);
    /// redirects not followed (`max_redirects(0)`: the 3xx is returned as is);
    /// `User-Agent: logto-m2m/<version>`. Each call builds a new agent with a connection
    /// pool of its own: make one and keep it (clones share the pool). Change any setting
    /// for one request with ureq's per-request config (`.config()`).
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when the environment names a SOCKS
    /// proxy (see [`proxy`](Config::proxy)) and the config neither sets a proxy nor
    /// ignores the environment's: not knowing the URLs it will call, the agent refuses
    /// them all rather than go around the proxy.
    ///
    /// # Example
    /// ```no_run
    /// use logto_m2m::{Config, TokenRequest, TokenStore};
    ///
    /// let ca = std::fs::read("/etc/logto/ca.pem").expect("the CA file");
    /// let config = Config::from_env()?.root_certificates_pem(&ca)?;
    /// let agent = config.agent()?;
    /// let store = TokenStore::new(config);
    /// let request = TokenRequest::management_api("https://auth.internal.example");
    /// let mut answer = store.call(&request, |authorization| {
    ///     agent
    ///         .get("https://auth.internal.example/api/applications")
    ///         .header("authorization", authorization)
    ///         .call()
    /// })?;
    /// println!("{}", answer.body_mut().read_to_string()?);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn agent(&self) -> Result<ureq::Agent, Error> {
        self.transport.api_agent(self.timeout)
    }

    /// The token endpoint's URL.
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// The app id (the OAuth `client_id`).
    pub(crate) fn app_id(&self) -> &str {
        &self.app_id
    }

    /// The configured deadline for one exchange.
    pub fn timeout_value(&self) -> Duration {
        self.timeout
    }

    /// Where the app secret comes from; `read()` gives it as it is now.
    pub(crate) fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The key that seals this app's entries in a shared cache, from the secret as it is
    /// now (derived once per secret).
    pub(crate) fn seal_key(&self) -> Result<SealKey, Error> {
        self.secret.seal_key(&self.token_url, &self.app_id)
    }

    pub(crate) fn auth_method_value(&self) -> AuthMethod {
        self.auth_method
    }

    pub(crate) fn max_lifetime(&self) -> Duration {
        self.max_lifetime
    }

    /// Refuses clear text to a remote host unless the user opted in.
    pub(crate) fn check_cleartext(&self) -> Result<(), Error> {
        if self.origin.is_cleartext_refused(self.allow_insecure_http) {
            return Err(Error::config(
                "plain http to a host that is not loopback would send the app secret in clear \
                 text: use https",
            )
            .with_context(None, None, Some(INSECURE_HTTP.into())));
        }
        Ok(())
    }

    /// True for an `https://` token URL.
    pub(crate) fn is_https(&self) -> bool {
        self.origin.is_https()
    }

    /// True when plain http to a host that is not loopback was allowed.
    pub(crate) fn insecure_http_allowed(&self) -> bool {
        self.allow_insecure_http
    }

    /// `host:port` of the token URL, e.g. `tenant.logto.app:443`.
    pub(crate) fn authority(&self) -> String {
        self.origin.authority()
    }

    /// True when the token URL is where Logto serves it, `{endpoint}/oidc/token`: advice
    /// may then name Logto's console; for other servers it would mislead.
    pub(crate) fn is_logto(&self) -> bool {
        self.logto_endpoint.is_some()
    }

    /// The Logto endpoint the token URL belongs to (`https://tenant.logto.app` for
    /// `https://tenant.logto.app/oidc/token`), when it is Logto's.
    pub(crate) fn logto_endpoint(&self) -> Option<&str> {
        self.logto_endpoint.as_deref()
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.transport
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("token_url", &self.token_url)
            .field("app_id", &self.app_id)
            .field("app_secret", &self.secret)
            .field("auth_method", &self.auth_method)
            .field("timeout", &self.timeout)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("transport", &self.transport)
            .finish()
    }
}

/// The way around the refusal of plain http to a remote host: a method of this library, so
/// advice apart from the reason (the command prints the reason alone, with its own advice).
pub(crate) const INSECURE_HTTP: &str =
    "or allow_insecure_http(true), on a network you trust entirely";

/// Checks the token URL, then the app id.
fn check_url_and_id(url: &str, app_id: &str) -> Result<Url, Error> {
    let url = read_token_url(url).map_err(|reason| Error::config(format!("token url {reason}")))?;
    if app_id.is_empty() {
        return Err(Error::config("app id is empty"));
    }
    Ok(url)
}

/// The token URL, read by the crate's rules for URLs (`url.rs`), without a fragment; what
/// is wrong with it, after the words "token url", otherwise.
pub(crate) fn read_token_url(url: &str) -> Result<Url, &'static str> {
    let url = Url::parse(url).map_err(|problem| problem.reason())?;
    if url.fragment {
        return Err("must not have a fragment");
    }
    Ok(url)
}

/// A Logto endpoint `base` (without a trailing slash) whose path already ends in `/oidc`
/// or `/oidc/token`, which `Config::logto` appends: the message naming the base to give.
/// `token_path` is the path of the token URL made of it, as `url.rs` read it.
fn doubled_oidc(base: &str, token_path: &str) -> Option<String> {
    let path = token_path.strip_suffix("/oidc/token")?;
    ["/oidc/token", "/oidc"].into_iter().find_map(|suffix| {
        let root = base
            .strip_suffix(suffix)
            .filter(|_| path.ends_with(suffix))?;
        Some(format!(
            "logto endpoint {base} ends in {suffix}, which is added to it: give {root} \
             (the token url is then {root}/oidc/token)"
        ))
    })
}

#[cfg(test)]
mod test {
    use super::*;

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
        // An endpoint with /oidc or /oidc/token already on it: refused, naming the base.
        let logto = |u: &str| Config::logto(u, "a", "b").map(|c| c.token_url().to_owned());
        for endpoint in [
            "https://t.logto.app/oidc",
            "https://t.logto.app/oidc/",
            "https://t.logto.app/oidc/token",
        ] {
            assert_eq!(
                logto(endpoint).unwrap_err().to_string(),
                format!(
                    "invalid config: logto endpoint {} ends in /oidc{}, which is added to it: give \
                     https://t.logto.app (the token url is then https://t.logto.app/oidc/token)",
                    endpoint.trim_end_matches('/'),
                    if endpoint.ends_with("token") {
                        "/token"
                    } else {
                        ""
                    }
                )
            );
        }
        let err = logto("https://t.logto.app/auth/oidc")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("give https://t.logto.app/auth (the token"),
            "{err}"
        );
        // Only the path counts: a host named oidc is fine, and so is /oidc inside the path.
        assert_eq!(logto("https://oidc").unwrap(), "https://oidc/oidc/token");
        assert_eq!(
            logto("https://x/oidc-login").unwrap(),
            "https://x/oidc-login/oidc/token"
        );
        // User info is refused before the endpoint is repeated in a message.
        let err = logto("https://u:hunter2@x/oidc").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn cleartext_only_to_loopback() {
        let ok = |u: &str| Config::new(u, "a", "b").unwrap().check_cleartext().is_ok();
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
        assert!(c.allow_insecure_http(true).check_cleartext().is_ok());
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
    }

    #[test]
    fn logto_or_not() {
        assert!(
            Config::logto("https://tenant.logto.app", "id", "secret")
                .unwrap()
                .is_logto()
        );
        let other = Config::new("https://idp.example/o/token/", "id", "secret").unwrap();
        assert!(!other.is_logto());
    }

    #[test]
    fn auth_method_names() {
        for m in [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost] {
            assert_eq!(m.as_str().parse::<AuthMethod>().unwrap(), m);
        }
        let err = "basic".parse::<AuthMethod>().unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid config: auth method must be client_secret_basic or client_secret_post"
        );
    }
}
