//! URLs, read one way for the whole crate: a [`Config`](crate::Config)'s token URL, a
//! [`Bearer`](crate::Bearer)'s API origin, a [`Verifier`](crate::Verifier)'s JWKS URL, the
//! Logto endpoint of [`TokenRequest::management_api`](crate::TokenRequest::management_api),
//! the transport's proxy decisions, and the `logto-m2m` command's URLs (through
//! [`Origin`], which is public for that).
//!
//! ureq's own reader (`http::Uri`) splits the text; the rules are RFC 3986's where it has
//! one, and this module's:
//!
//! - the scheme is `http` or `https`, in any case (§3.1: schemes compare case-insensitively);
//! - there is a host, which compares in any case (§3.2.2; kept lowercase), an IPv6 literal
//!   in brackets included;
//! - no user info (`user:password@`): credentials go where the crate puts them, never in a
//!   URL that ends up in messages and logs;
//! - the port is the one written, else the scheme's (443, 80; an empty one is the scheme's,
//!   §3.2.3); one that is not a number up to 65535 is refused (`http::Uri` would drop it
//!   silently, and the scheme's would be used instead);
//! - loopback is `localhost` in any case, and the literals of 127.0.0.0/8 and `::1`: what
//!   needs no resolver to be sure of. `localhost.`, `127.1` and names that resolve to a
//!   loopback address are not;
//! - plain `http://` goes only to a loopback host, unless the caller allows otherwise (a
//!   [`Config`](crate::Config) can; a `Verifier` never does).
//!
//! What else a caller accepts (a path, a query, a fragment) is the caller's to say.

use std::fmt;
use std::net::IpAddr;

use ureq::http::Uri;

use crate::error::Error;

/// An absolute `http://` or `https://` URL, read by the rules above.
#[derive(Clone, Debug)]
pub(crate) struct Url {
    pub(crate) uri: Uri,
    pub(crate) origin: Origin,
    /// The text had a `#fragment`, which `http::Uri` drops.
    pub(crate) fragment: bool,
}

impl Url {
    /// `text` read as an http(s) URL, or what is wrong with it.
    pub(crate) fn parse(text: &str) -> Result<Url, Problem> {
        // http::Uri takes any scheme; ours are two, and the rest of the text decides
        // nothing until the scheme is one of them.
        let scheme = text.split_once("://").map_or("", |(scheme, _)| scheme);
        let https = is_https(scheme).ok_or(Problem::Scheme)?;
        let uri: Uri = text.parse().map_err(|_| Problem::Invalid)?;
        let authority = uri.authority().ok_or(Problem::NoHost)?;
        if authority.as_str().contains('@') {
            return Err(Problem::UserInfo);
        }
        let origin =
            Origin::from_parts(https, authority.host(), authority.as_str()).ok_or(Problem::Port)?;
        if origin.host.is_empty() {
            return Err(Problem::NoHost);
        }
        Ok(Url {
            origin,
            fragment: text.contains('#'),
            uri,
        })
    }

    /// The path, `/` when none was written.
    pub(crate) fn path(&self) -> &str {
        self.uri.path()
    }

    /// True when the URL is its origin alone: no path but `/`, no query, no fragment.
    pub(crate) fn is_origin(&self) -> bool {
        self.path() == "/" && self.uri.query().is_none() && !self.fragment
    }
}

/// Why a text is not an http(s) URL the crate takes. Each caller names the URL in its
/// message (`token url `, `jwks url `, ...) and adds its reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    Scheme,
    Invalid,
    NoHost,
    UserInfo,
    Port,
}

impl Problem {
    /// What is wrong, after the name of the URL: `token url must start with ...`.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Problem::Scheme => "must start with https:// or http://",
            Problem::Invalid => "is not a valid url",
            Problem::NoHost => "has no host",
            Problem::UserInfo => "must not contain user info",
            Problem::Port => "has a port that is not a number up to 65535",
        }
    }
}

/// The origin of an `http://` or `https://` URL (RFC 6454): its scheme, host and port,
/// which is where a [`Bearer`](crate::Bearer) sends a token, and where a token may go.
///
/// Two origins are the same when their schemes, hosts and ports are: schemes and hosts in
/// any case (RFC 3986), the port as written or else the scheme's (443, 80). The text of an
/// origin (`Display`) is `scheme://host[:port]`, lowercase, without the scheme's own port.
///
/// The crate reads every URL by the same rules ([`Origin::of`] says them), so a program
/// that decides where a token goes with an `Origin` decides it as a `Bearer` and
/// [`Config`](crate::Config) do.
///
/// # Example
/// ```
/// use logto_m2m::Origin;
///
/// let api = Origin::of("HTTPS://API.Example.com:443/v1/products?page=2")?;
/// assert_eq!(api.to_string(), "https://api.example.com");
/// assert_eq!(api, Origin::of("https://api.example.com/other/path")?);
/// assert_ne!(api, Origin::of("https://api.example.com:8443/")?);
/// assert!(Origin::of("http://[::1]:3001/").unwrap().is_loopback());
/// assert!(Origin::of("https://user:pw@api.example.com/").is_err());
/// # Ok::<_, logto_m2m::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    https: bool,
    /// Lowercase; an IPv6 literal keeps its brackets.
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of `url`, an absolute `http://` or `https://` URL with any path, query
    /// or fragment.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) naming what is wrong: a scheme
    /// other than `http` and `https` (in any case), a text that is not a URL, no host, user
    /// info (`user:password@`), or a port that is not a number up to 65535.
    pub fn of(url: &str) -> Result<Origin, Error> {
        Origin::split(url).map(|(origin, _)| origin)
    }

    /// The origin of `url`, as [`Origin::of`] reads it, and the rest of `url` as written:
    /// its path, query and fragment, empty or starting with `/`, `?` or `#`.
    ///
    /// # Errors
    /// As for [`Origin::of`].
    ///
    /// # Example
    /// ```
    /// use logto_m2m::Origin;
    ///
    /// let (origin, rest) = Origin::split("https://Logto.example/api/users?page=2")?;
    /// assert_eq!((origin.to_string().as_str(), rest), ("https://logto.example", "/api/users?page=2"));
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn split(url: &str) -> Result<(Origin, &str), Error> {
        let read = Url::parse(url).map_err(|p| Error::config(format!("url {}", p.reason())))?;
        // Past `scheme://`, the authority runs to the first `/`, `?` or `#` (RFC 3986
        // §3.2), as http::Uri read it.
        let after_scheme = url.find("://").map_or(0, |at| at + 3);
        let authority_len = url[after_scheme..]
            .find(['/', '?', '#'])
            .unwrap_or(url.len() - after_scheme);
        Ok((read.origin, &url[after_scheme + authority_len..]))
    }

    /// The origin of a URI ureq is sending a request to; `None` for another scheme or a
    /// port that is not a number.
    pub(crate) fn of_uri(uri: &Uri) -> Option<Origin> {
        let https = is_https(uri.scheme_str()?)?;
        let authority = uri.authority()?;
        // A request's URI may carry user info; the origin is what follows it.
        let host_and_port = authority.as_str().rsplit('@').next().unwrap_or("");
        Origin::from_parts(https, authority.host(), host_and_port)
    }

    /// The origin of `host` in `host_and_port` (`host`, `host:`, `host:port`): `None`
    /// when the port is not a number up to 65535.
    fn from_parts(https: bool, host: &str, host_and_port: &str) -> Option<Origin> {
        let default = if https { 443 } else { 80 };
        let port = match host_and_port.get(host.len()..).unwrap_or("") {
            "" | ":" => default,
            written => {
                let digits = written.strip_prefix(':')?;
                if !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                digits.parse().ok()?
            }
        };
        Some(Origin {
            https,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    /// The host, lowercase; an IPv6 literal in its brackets (`[::1]`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port: as written, or the scheme's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// True for a loopback host: `localhost`, or a literal of 127.0.0.0/8 or `::1`. A name
    /// is not looked up: `localhost.` and `127.1` are not loopback here.
    pub fn is_loopback(&self) -> bool {
        is_loopback(&self.host)
    }

    pub(crate) fn is_https(&self) -> bool {
        self.https
    }

    /// True when plain http to this origin would cross the network: http to a host that
    /// is not loopback, unless `allowed` says the caller accepts it.
    pub(crate) fn is_cleartext_refused(&self, allowed: bool) -> bool {
        !self.https && !self.is_loopback() && !allowed
    }

    /// `host:port`, as an error names where a connection went.
    pub(crate) fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl fmt::Display for Origin {
    /// `scheme://host[:port]`, the port only when it is not the scheme's.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme(), self.host)?;
        if self.port != if self.https { 443 } else { 80 } {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Origin({self})")
    }
}

/// Whether `scheme` is `https` (else `http`), in any case; `None` for any other.
fn is_https(scheme: &str) -> Option<bool> {
    if scheme.eq_ignore_ascii_case("https") {
        Some(true)
    } else if scheme.eq_ignore_ascii_case("http") {
        Some(false)
    } else {
        None
    }
}

/// `localhost` in any case, or a literal loopback address (an IPv6 one in brackets or
/// not).
pub(crate) fn is_loopback(host: &str) -> bool {
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || literal.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The tenant of a Logto Cloud endpoint (`https://<tenant>.logto.app`, host in any case),
/// lowercase; `None` for any other endpoint, or a text that is not a URL.
pub(crate) fn logto_cloud_tenant(endpoint: &str) -> Option<String> {
    let url = Url::parse(endpoint).ok()?;
    let tenant = url.origin.host.strip_suffix(".logto.app")?;
    (!tenant.is_empty() && !tenant.contains(['.', '[', ':'])).then(|| tenant.to_owned())
}

#[cfg(test)]
mod test {
    use super::*;

    /// One table, every rule: what each text reads as (`scheme://host:port`, loopback or
    /// not), or why it is refused.
    #[test]
    fn urls_read_by_one_set_of_rules() {
        let read = |text: &str| match Url::parse(text) {
            Ok(url) => Ok(format!(
                "{}://{}:{}{}",
                url.origin.scheme(),
                url.origin.host(),
                url.origin.port(),
                if url.origin.is_loopback() {
                    " loopback"
                } else {
                    ""
                }
            )),
            Err(problem) => Err(problem),
        };
        for (text, expected) in [
            (
                "https://tenant.logto.app",
                Ok("https://tenant.logto.app:443"),
            ),
            (
                "HTTPS://Tenant.Logto.APP/oidc",
                Ok("https://tenant.logto.app:443"),
            ),
            (
                "Http://Example.com:8080/x?y#z",
                Ok("http://example.com:8080"),
            ),
            ("http://example.com:/x", Ok("http://example.com:80")),
            ("https://x:0443/", Ok("https://x:443")),
            (
                "http://localhost:3001",
                Ok("http://localhost:3001 loopback"),
            ),
            ("http://LOCALHOST", Ok("http://localhost:80 loopback")),
            (
                "http://127.0.0.1:3999/oidc/token",
                Ok("http://127.0.0.1:3999 loopback"),
            ),
            ("http://127.8.9.10/", Ok("http://127.8.9.10:80 loopback")),
            ("http://[::1]:8080/", Ok("http://[::1]:8080 loopback")),
            (
                "http://[0:0:0:0:0:0:0:1]/",
                Ok("http://[0:0:0:0:0:0:0:1]:80 loopback"),
            ),
            ("https://[2001:DB8::1]/", Ok("https://[2001:db8::1]:443")),
            // Not loopback without asking a resolver.
            ("http://localhost./", Ok("http://localhost.:80")),
            ("http://127.1/", Ok("http://127.1:80")),
            (
                "http://localhost.example.com/",
                Ok("http://localhost.example.com:80"),
            ),
            (
                "http://[::ffff:127.0.0.1]/",
                Ok("http://[::ffff:127.0.0.1]:80"),
            ),
            ("http://10.0.0.1/", Ok("http://10.0.0.1:80")),
            ("ftp://example.com/", Err(Problem::Scheme)),
            ("example.com", Err(Problem::Scheme)),
            ("https:/example.com", Err(Problem::Scheme)),
            ("httpx://example.com", Err(Problem::Scheme)),
            ("https://", Err(Problem::Invalid)),
            ("https:///path", Err(Problem::Invalid)),
            ("https://exa mple.com/", Err(Problem::Invalid)),
            ("https://[::1/", Err(Problem::Invalid)),
            ("https://user:pw@example.com/", Err(Problem::UserInfo)),
            ("https://@example.com/", Err(Problem::UserInfo)),
            ("https://example.com:99999/", Err(Problem::Port)),
            ("https://example.com:-1/", Err(Problem::Port)),
            ("https://example.com:1e3/", Err(Problem::Port)),
        ] {
            assert_eq!(read(text), expected.map(str::to_owned), "{text}");
        }
    }

    #[test]
    fn origins_compare_and_print_canonically() {
        let o = |text: &str| Origin::of(text).unwrap();
        assert_eq!(
            o("HTTPS://API.example.com:443/a"),
            o("https://api.example.com/b?c")
        );
        assert_ne!(o("https://api.example.com/"), o("http://api.example.com/"));
        assert_ne!(
            o("https://api.example.com/"),
            o("https://api.example.com:8443/")
        );
        assert_ne!(
            o("https://api.example.com/"),
            o("https://api.example.com.evil.test/")
        );
        assert_eq!(o("HTTP://[::1]:80/").to_string(), "http://[::1]");
        assert_eq!(o("https://h:8443").to_string(), "https://h:8443");
        assert_eq!(
            Origin::split("https://h.example?page=2").unwrap().1,
            "?page=2"
        );
        assert_eq!(Origin::split("https://h.example#x").unwrap().1, "#x");
        assert_eq!(Origin::split("https://h.example").unwrap().1, "");
        let e = Origin::of("ftp://h").unwrap_err().to_string();
        assert_eq!(e, "invalid config: url must start with https:// or http://");
        // A request's URI: user info passed over, any case.
        let uri: Uri = "HTTP://u:p@Host:8080/x".parse().unwrap();
        assert_eq!(Origin::of_uri(&uri), Some(o("http://host:8080")));
        let uri: Uri = "https://h:99999/".parse().unwrap();
        assert_eq!(Origin::of_uri(&uri), None);
    }

    #[test]
    fn cleartext_only_to_loopback_unless_allowed() {
        let refused =
            |text: &str, allowed: bool| Origin::of(text).unwrap().is_cleartext_refused(allowed);
        assert!(!refused("https://example.com", false));
        assert!(!refused("http://localhost:3001", false));
        assert!(!refused("http://[::1]", false));
        assert!(refused("http://example.com", false));
        assert!(refused("http://127.1", false));
        assert!(!refused("http://example.com", true));
    }

    #[test]
    fn logto_cloud_tenants() {
        assert_eq!(
            logto_cloud_tenant("https://abc123.logto.app").as_deref(),
            Some("abc123")
        );
        assert_eq!(
            logto_cloud_tenant("HTTPS://ABC123.Logto.App/").as_deref(),
            Some("abc123")
        );
        for other in [
            "https://logto.app",
            "https://.logto.app",
            "https://a.b.logto.app",
            "https://auth.example.com",
            "https://abc.logto.app.evil.test",
            "abc.logto.app",
        ] {
            assert_eq!(logto_cloud_tenant(other), None, "{other}");
        }
    }
}
