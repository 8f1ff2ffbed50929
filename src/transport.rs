//! How requests reach the token endpoint: the ureq agent, built from the config's choice
//! of roots and proxy, and the environment's proxy.
//!
//! A [`Transport`] is a value: its settings and the agent built from them travel together,
//! so a config that changes its roots or proxy gets a new `Transport` (and a new agent)
//! rather than a cache someone must remember to reset. Clones share the agent and with it
//! the connection pool.

use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::error::Error;
use crate::tls::Roots;

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

/// Where the connection goes through.
#[derive(Clone)]
pub(crate) enum Proxy {
    /// ureq's reading of the environment, except for loopback token URLs.
    Env,
    /// Straight to the token endpoint.
    None,
    /// This proxy, always.
    Explicit(ureq::Proxy),
}

/// The settings that decide how we connect, and the agent built from them on first use.
#[derive(Clone)]
pub(crate) struct Transport {
    roots: Roots,
    proxy: Proxy,
    /// The token URL's host is loopback, which the environment's proxy never gets.
    loopback: bool,
    built: Arc<OnceLock<Built>>,
}

/// The agent, and why it must not be used if something in the environment was unusable.
struct Built {
    agent: ureq::Agent,
    /// An error every request returns instead of connecting: the environment named a
    /// proxy this build can't use, and going around it silently is not an option.
    problem: Option<Error>,
}

impl Transport {
    pub(crate) fn new(loopback: bool) -> Transport {
        Transport::with(Roots::Default, Proxy::Env, loopback)
    }

    fn with(roots: Roots, proxy: Proxy, loopback: bool) -> Transport {
        Transport {
            roots,
            proxy,
            loopback,
            built: Arc::default(),
        }
    }

    /// The same transport with other roots (and a new agent).
    pub(crate) fn roots(&self, roots: Roots) -> Transport {
        Transport::with(roots, self.proxy.clone(), self.loopback)
    }

    /// The same transport with another proxy setting (and a new agent).
    pub(crate) fn proxy(&self, proxy: Proxy) -> Transport {
        Transport::with(self.roots.clone(), proxy, self.loopback)
    }

    /// The agent; an error when the environment names a proxy this build can't use.
    pub(crate) fn agent(&self) -> Result<&ureq::Agent, Error> {
        let built = self.built.get_or_init(|| self.build());
        match &built.problem {
            Some(e) => Err(e.clone()),
            None => Ok(&built.agent),
        }
    }

    fn build(&self) -> Built {
        let (proxy, problem) = match &self.proxy {
            Proxy::Explicit(p) => (Some(p.clone()), None),
            Proxy::None => (None, None),
            Proxy::Env if self.loopback => (None, None),
            Proxy::Env => match env_proxy() {
                Ok(p) => (p, None),
                Err(e) => (None, Some(e)),
            },
        };
        let builder = ureq::Agent::config_builder().proxy(proxy);
        // Without a TLS feature only plain http (to loopback) works; ureq answers an https
        // URL with an error naming the missing TLS support.
        #[cfg(any(feature = "rustls", feature = "native-tls"))]
        let builder = builder.tls_config(crate::tls::tls_config(&self.roots));
        let agent = builder
            // 4xx and 5xx carry the OAuth error body; we read them ourselves.
            .http_status_as_error(false)
            // Never follow a redirect: it would take the credentials, or at least the
            // request, somewhere we were not configured to send them. With 0, ureq returns
            // the 3xx response as is.
            .max_redirects(0)
            .user_agent(USER_AGENT)
            .accept("application/json")
            // We can't decode gzip (no such feature, by choice) and must not parse
            // compressed bytes as JSON.
            .accept_encoding("identity")
            .build()
            .new_agent();
        Built { agent, problem }
    }
}

/// Checks a proxy URL for [`Config::proxy`](crate::Config::proxy). The URL is never quoted
/// back: it may hold a password.
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
    // The fix in the environment works for every program; the library's own ways around
    // it are advice (the hint), which the command leaves out for its own.
    Err(Error::config(format!(
        "the proxy in {variable} is a socks proxy, which this build can't use: set {variable} \
         to an http:// proxy, or name the token url's host in NO_PROXY"
    ))
    .with_context(
        None,
        None,
        Some(
            "or set one with Config::proxy, or ignore the environment with Config::no_proxy".into(),
        ),
    ))
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
