//! How requests reach a server: the ureq agent, built from a choice of roots and proxy and
//! the environment's proxy. The one builder for everything the crate sends: the token
//! request, the token exchange's Management API call, the `Verifier`'s JWKS fetch, and the
//! agent [`Config::agent`](crate::Config::agent) gives for API calls.
//!
//! A [`Transport`] is a value: its settings and the agent built from them travel together,
//! so a config that changes its roots or proxy gets a new `Transport` (and a new agent)
//! rather than a cache someone must remember to reset. Clones share the agent and with it
//! the connection pool.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ureq::http::{Request, Response, Uri};
use ureq::middleware::{Middleware, MiddlewareNext};
use ureq::{Body, SendBody};

use crate::error::Error;
use crate::tls::Roots;
use crate::url::{Origin, Url};

const USER_AGENT: &str = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));

/// The variables ureq's `Proxy::try_from_env` reads, in its order.
pub(crate) const PROXY_VARIABLES: [&str; 6] = [
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
];

/// What the environment's proxy never gets, on top of `NO_PROXY`: loopback hosts, as with
/// Go's `net/http`. A proxy elsewhere can't reach this machine's loopback, so a local Logto
/// or API would otherwise fail only where a proxy happens to be set. For the transport's
/// own URL, [`Origin::is_loopback`] decides; for an API agent, which
/// may call any URL, these go into the proxy's `NO_PROXY`, in ureq's forms: `localhost`
/// exactly, `127.` a prefix (127.0.0.0/8), `[::1]` as a URL writes it.
const LOOPBACK: [&str; 3] = ["localhost", "127.", "[::1]"];

/// Where the connection goes through.
#[derive(Clone)]
pub(crate) enum Proxy {
    /// ureq's reading of the environment (its `NO_PROXY` included), except for loopback
    /// hosts.
    Env,
    /// Straight to the server.
    None,
    /// This proxy, always.
    Explicit(ureq::Proxy),
}

/// The settings that decide how we connect, and the agent built from them on first use.
#[derive(Clone)]
pub(crate) struct Transport {
    roots: Roots,
    proxy: Proxy,
    /// The URL this transport is for (the token URL, the JWKS URL), whose host decides
    /// whether the environment's proxy applies, and its origin.
    url: Uri,
    origin: Origin,
    built: Arc<OnceLock<Built>>,
}

/// The agent, and why it must not be used if something in the environment was unusable.
struct Built {
    agent: ureq::Agent,
    /// An error every request returns instead of connecting: the environment names a
    /// proxy this build can't use for the URL, and going around it silently is not an
    /// option (ureq would warn and connect straight).
    problem: Option<Error>,
    /// The proxy the agent goes through, for [`Transport::refused`].
    proxy: Option<NameTheProxy>,
}

impl Transport {
    /// The default transport for requests to `url`: the TLS feature's roots, the
    /// environment's proxy.
    pub(crate) fn new(url: &Url) -> Transport {
        Transport {
            roots: Roots::Default,
            proxy: Proxy::Env,
            url: url.uri.clone(),
            origin: url.origin.clone(),
            built: Arc::default(),
        }
    }

    /// The same transport with other roots (and a new agent).
    pub(crate) fn roots(&self, roots: Roots) -> Transport {
        Transport {
            roots,
            built: Arc::default(),
            ..self.clone()
        }
    }

    /// The same transport with another proxy setting (and a new agent).
    pub(crate) fn proxy(&self, proxy: Proxy) -> Transport {
        Transport {
            proxy,
            built: Arc::default(),
            ..self.clone()
        }
    }

    /// The agent for requests to the transport's URL (and its origin); an error when the
    /// environment names a proxy this build can't use for it.
    pub(crate) fn agent(&self) -> Result<&ureq::Agent, Error> {
        let built = self.built.get_or_init(|| {
            let (proxy, problem) = match self.url_proxy() {
                Ok(proxy) => (proxy, None),
                Err(e) => (None, Some(e)),
            };
            Built {
                proxy: proxy.as_ref().map(|p| self.name(p)),
                agent: self.builder(proxy, Purpose::Exchange).build().new_agent(),
                problem,
            }
        });
        match &built.problem {
            Some(e) => Err(e.clone()),
            None => Ok(&built.agent),
        }
    }

    /// The proxy for the transport's URL: the explicit one, none, or the environment's
    /// unless the URL's host is loopback or in its `NO_PROXY`.
    fn url_proxy(&self) -> Result<Option<ureq::Proxy>, Error> {
        match &self.proxy {
            Proxy::Explicit(p) => Ok(Some(p.clone())),
            Proxy::None => Ok(None),
            Proxy::Env if self.origin.is_loopback() => Ok(None),
            Proxy::Env => match ureq::Proxy::try_from_env() {
                Some(p) if p.is_no_proxy(&self.url) => Ok(None),
                Some(p) if is_connect(&p) => Ok(Some(p)),
                Some(_) => Err(socks_error()),
                None => Ok(None),
            },
        }
    }

    /// A new agent for API calls to any URL, with these roots and this proxy, `timeout` as
    /// its global timeout, and ureq's own `Accept` (see [`Config::agent`]).
    ///
    /// [`Config::agent`]: crate::Config::agent
    pub(crate) fn api_agent(&self, timeout: Duration) -> Result<ureq::Agent, Error> {
        let proxy = match &self.proxy {
            Proxy::Explicit(p) => Some(p.clone()),
            Proxy::None => None,
            Proxy::Env => match ureq::Proxy::try_from_env() {
                Some(p) if is_connect(&p) => {
                    let no_proxy = std::env::var("NO_PROXY").or_else(|_| std::env::var("no_proxy"));
                    Some(with_exceptions(&p, no_proxy.as_deref().unwrap_or("")))
                }
                // Not knowing the URLs, a SOCKS proxy fails them all.
                Some(_) => return Err(socks_error()),
                None => None,
            },
        };
        let names = proxy.as_ref().map(|p| self.name(p));
        let builder = self.builder(proxy, Purpose::Api(timeout));
        // Its calls' errors reach the program as ureq's: the proxy is named in them here.
        let builder = match names {
            Some(names) => builder.middleware(names),
            None => builder,
        };
        Ok(builder.build().new_agent())
    }

    /// The message for a `CONNECT` to the transport's URL that the proxy refused, from
    /// ureq's `ConnectProxyFailed` reason (`proxy server responded 407/407`): which proxy
    /// (host and port, never the user or password), the status, and what to check.
    #[cold]
    pub(crate) fn refused(&self, reason: &str) -> String {
        let target = self.origin.authority();
        let explained = match self.built.get().and_then(|b| b.proxy.as_ref()) {
            Some(proxy) => proxy.explain(reason, &target),
            None => reason.to_owned(),
        };
        format!("CONNECT proxy failed: {explained}")
    }

    fn name(&self, proxy: &ureq::Proxy) -> NameTheProxy {
        NameTheProxy::new(proxy, matches!(self.proxy, Proxy::Env))
    }

    /// The one agent builder: `proxy`, the roots, and what every request needs.
    fn builder(
        &self,
        proxy: Option<ureq::Proxy>,
        purpose: Purpose,
    ) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
        let builder = ureq::Agent::config_builder().proxy(proxy);
        // Without a TLS feature only plain http (to loopback) works; ureq answers an https
        // URL with an error naming the missing TLS support.
        #[cfg(any(feature = "rustls", feature = "native-tls"))]
        let builder = builder.tls_config(crate::tls::tls_config(&self.roots));
        let builder = builder
            // 4xx and 5xx carry the OAuth error body, or the API's answer: we read them.
            .http_status_as_error(false)
            // Never follow a redirect: it would take the credentials, or at least the
            // request, somewhere we were not configured to send them. With 0, ureq returns
            // the 3xx response as is.
            .max_redirects(0)
            .user_agent(USER_AGENT);
        match purpose {
            Purpose::Exchange => builder
                .accept("application/json")
                // We can't decode gzip (no such feature, by choice) and must not parse
                // compressed bytes as JSON.
                .accept_encoding("identity"),
            // Each exchange sets its own deadline; an API agent's calls get the config's.
            Purpose::Api(timeout) => builder.timeout_global(deadline(timeout)),
        }
    }
}

/// ureq's global timeout for `left`: none when `left` is too long for the clock. ureq adds
/// it to an `Instant` without checking and would panic; a timeout of more than ten years
/// is no deadline in practice, as a deadline past what the clock can hold is for the
/// crate's own waits.
pub(crate) fn deadline(left: Duration) -> Option<Duration> {
    const NO_DEADLINE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
    (left < NO_DEADLINE).then_some(left)
}

/// What an agent is for.
enum Purpose {
    /// The crate's own requests: JSON answers, a deadline set per request.
    Exchange,
    /// A program's API calls, with this global timeout.
    Api(Duration),
}

/// Checks a proxy URL for [`Config::proxy`](crate::Config::proxy) and
/// [`Verifier::proxy`](crate::Verifier::proxy). The URL is never quoted back: it may hold a
/// password.
pub(crate) fn explicit_proxy(proxy_url: &str) -> Result<Proxy, Error> {
    use ureq::ProxyProtocol;
    let proxy = ureq::Proxy::new(proxy_url).map_err(|_| {
        Error::config("proxy url is not valid (expected http://[user:password@]host:port)")
    })?;
    match proxy.protocol() {
        ProxyProtocol::Http => Ok(Proxy::Explicit(proxy)),
        ProxyProtocol::Https if cfg!(any(feature = "rustls", feature = "native-tls")) => {
            Ok(Proxy::Explicit(proxy))
        }
        ProxyProtocol::Https => Err(Error::config(
            "an https:// proxy needs a TLS feature (rustls or native-tls)",
        )),
        // ureq panics for an explicit SOCKS proxy without its socks-proxy feature.
        _ => Err(Error::config(
            "socks proxies are not supported (ureq's socks-proxy feature is off); use an \
             http:// proxy",
        )),
    }
}

/// An HTTP or HTTPS proxy, the kinds this build can use (no SOCKS: ureq's `socks-proxy`
/// feature is off).
fn is_connect(proxy: &ureq::Proxy) -> bool {
    matches!(
        proxy.protocol(),
        ureq::ProxyProtocol::Http | ureq::ProxyProtocol::Https
    )
}

/// The error for a SOCKS proxy in the environment, naming the variable.
#[cold]
fn socks_error() -> Error {
    let variable = env_variable();
    // The fix in the environment works for every program; the library's own ways around
    // it are advice (the hint), which the command leaves out for its own.
    Error::config(format!(
        "the proxy in {variable} is a socks proxy, which this build can't use: set {variable} \
         to an http:// proxy, or name the server's host in NO_PROXY"
    ))
    .with_context(
        None,
        None,
        Some(
            "or set one with Config::proxy, or ignore the environment with Config::no_proxy".into(),
        ),
    )
}

/// The variable ureq took the proxy from: the first one set to something it can read.
fn env_variable() -> &'static str {
    PROXY_VARIABLES
        .into_iter()
        .find(|v| std::env::var(v).is_ok_and(|url| ureq::Proxy::new(&url).is_ok()))
        .unwrap_or("ALL_PROXY")
}

/// `proxy`, read from the environment, with `no_proxy` (the environment's `NO_PROXY`, read
/// again as ureq reads it: `NO_PROXY`, else `no_proxy`) and [`LOOPBACK`] as its exceptions,
/// for an agent that may call any host. ureq keeps a proxy's `NO_PROXY` list out of reach,
/// so the proxy is made again from its parts.
fn with_exceptions(proxy: &ureq::Proxy, no_proxy: &str) -> ureq::Proxy {
    let mut builder = ureq::Proxy::builder(proxy.protocol())
        .host(proxy.host())
        .port(proxy.port())
        .resolve_target(proxy.resolve_target());
    // ureq takes a password only after a user name (`http://:pw@host` has an empty one).
    if let Some(user) = proxy.username().or(proxy.password().map(|_| "")) {
        builder = builder.username(user);
    }
    if let Some(password) = proxy.password() {
        builder = builder.password(password);
    }
    for entry in no_proxy.split(',') {
        builder = builder.no_proxy(entry);
    }
    for entry in LOOPBACK {
        builder = builder.no_proxy(entry);
    }
    // ureq checked these parts when it read them; were it to refuse them now, the proxy
    // as read is still right for every host but loopback ones.
    builder.build().unwrap_or_else(|_| proxy.clone())
}

/// What names a proxy in ureq's error for a refused `CONNECT`, which says only `proxy
/// server responded 407/407`: which proxy (host and port, never the user or password), to
/// which server, and what to check. [`Transport::refused`] for the crate's own requests,
/// whose errors it maps; a middleware on an API agent, whose errors go to the program as
/// ureq's.
struct NameTheProxy {
    /// `host:port` of the proxy.
    proxy: String,
    /// From the environment (the advice names the variable), or set in code.
    from_env: bool,
    credentials: bool,
}

impl NameTheProxy {
    fn new(proxy: &ureq::Proxy, from_env: bool) -> NameTheProxy {
        NameTheProxy {
            proxy: format!("{}:{}", proxy.host(), proxy.port()),
            from_env,
            credentials: proxy.username().is_some() || proxy.password().is_some(),
        }
    }

    /// The reason for a `CONNECT` to `target` that the proxy refused as ureq said it:
    /// `proxy server responded 407/407`, or `proxy server did not respond`.
    fn explain(&self, reason: &str, target: &str) -> String {
        let proxy = &self.proxy;
        // Read now, on this rare path, rather than for every agent.
        let variable = self.from_env.then(env_variable);
        let from = match variable {
            Some(v) => format!(" (from {v})"),
            None => String::new(),
        };
        let status = reason
            .strip_prefix("proxy server responded ")
            .and_then(|r| r.split('/').next())
            .and_then(|s| s.parse::<u16>().ok());
        let Some(status) = status else {
            return format!("proxy {proxy}{from}, CONNECT {target}: {reason}");
        };
        let url = variable.unwrap_or("the proxy url");
        // tinyproxy answers a wrong password with 401, others with 407.
        let advice = match status {
            401 | 407 if self.credentials => {
                format!(": it refused the user and password in {url}")
            }
            401 | 407 => {
                format!(": it wants a user and password, in {url} (http://user:password@host:port)")
            }
            _ => String::new(),
        };
        format!("proxy {proxy}{from} answered http {status} to CONNECT {target}{advice}")
    }
}

impl Middleware for NameTheProxy {
    fn handle(
        &self,
        request: Request<SendBody>,
        next: MiddlewareNext,
    ) -> Result<Response<Body>, ureq::Error> {
        let target = Origin::of_uri(request.uri()).map(|o| o.authority());
        next.handle(request).map_err(|e| match e {
            ureq::Error::ConnectProxyFailed(reason) => {
                let target = target.as_deref().unwrap_or("the server");
                ureq::Error::ConnectProxyFailed(self.explain(&reason, target))
            }
            e => e,
        })
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("root_certificates", &self.roots)
            .field("proxy", &self.proxy)
            .finish()
    }
}

impl fmt::Debug for Proxy {
    /// Scheme, host and port only: never the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proxy::Env => f.write_str("environment"),
            Proxy::None => f.write_str("none"),
            Proxy::Explicit(p) => {
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

#[cfg(test)]
mod test {
    use super::*;

    fn named(url: &str) -> NameTheProxy {
        NameTheProxy::new(&ureq::Proxy::new(url).unwrap(), false)
    }

    #[test]
    fn a_refused_connect_names_the_proxy_never_its_password() {
        let with = named("http://user:hunter2@proxy.corp:3128");
        let e = with.explain("proxy server responded 407/407", "auth.corp:443");
        assert_eq!(
            e,
            "proxy proxy.corp:3128 answered http 407 to CONNECT auth.corp:443: it refused the \
             user and password in the proxy url"
        );
        let e = with.explain("proxy server responded 401/401", "auth.corp:443");
        assert!(e.contains("http 401") && !e.contains("hunter2"), "{e}");
        let without = named("http://proxy.corp:3128");
        let e = without.explain("proxy server responded 407/407", "auth.corp:8443");
        assert!(
            e.ends_with(
                "it wants a user and password, in the proxy url (http://user:password@host:port)"
            ),
            "{e}"
        );
        let e = without.explain("proxy server responded 403/403", "auth.corp:8443");
        assert_eq!(
            e,
            "proxy proxy.corp:3128 answered http 403 to CONNECT auth.corp:8443"
        );
        let e = without.explain("proxy server did not respond", "auth.corp:8443");
        assert_eq!(
            e,
            "proxy proxy.corp:3128, CONNECT auth.corp:8443: proxy server did not respond"
        );
    }

    #[test]
    fn loopback_hosts_never_go_through_the_environments_proxy() {
        let read = ureq::Proxy::new("http://u:p%40ss@proxy.corp:3128").unwrap();
        let proxy = with_exceptions(&read, ".internal");
        let skips = |url: &str| proxy.is_no_proxy(&url.parse().unwrap());
        for url in [
            "http://localhost:3001/oidc/token",
            "http://LOCALHOST/x",
            "https://127.0.0.1:8443/",
            "http://127.8.9.10/",
            "http://[::1]:9000/",
        ] {
            assert!(skips(url), "{url}");
        }
        assert!(skips("https://auth.internal/"));
        for url in [
            "https://auth.corp/",
            "https://localhost.corp/",
            "https://10.0.0.1/",
        ] {
            assert!(!skips(url), "{url}");
        }
        // Made again from its parts, the same proxy.
        assert_eq!(
            (
                proxy.host(),
                proxy.port(),
                proxy.username(),
                proxy.password()
            ),
            ("proxy.corp", 3128, Some("u"), Some("p@ss"))
        );
    }
}
