//! [`RedisCache`]: a [`TokenCache`] in Redis, so that a fleet of processes on many hosts
//! shares one token per request and one refresh at a time.
//!
//! Keys: `logto-m2m:token:{<id>}` holds the store's sealed value with a Redis TTL
//! that ends when the token expires; `logto-m2m:lock:{<id>}` is the refresh lock, taken
//! with `SET NX PX lease` and a value unique to its holder, and deleted only by that
//! holder (a compare-and-delete Lua script). `<id>` is the store's key, a hash: no key
//! names the token URL, the app or the API, and no key or value holds the app secret. The
//! braces are a Redis Cluster hash tag: a token's key and its lock's key hash to one slot,
//! so in a cluster they live on one node and the lock guards its token.
//!
//! Every call is bounded by the `left` it is given, through every step: resolving a host
//! name (on a helper thread, `connect.rs`), the connection, the handshake (AUTH, SELECT,
//! TLS), each read and write, and with Sentinel or Cluster the questions that find the
//! server to ask (`sentinel.rs`, `cluster.rs`) and the redirects and failovers on the way.
//! One server's URL is the redis crate's; the multi-host ones are read in `url.rs`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::redis::{
    Client, Connection, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo,
    RedisError, Value,
};

use crate::cache::{CacheLock, TokenCache};
use crate::error::{Error, Redactions, sanitize};

#[cfg(feature = "redis-cluster")]
mod cluster;
mod commands;
mod connect;
#[cfg(feature = "redis-sentinel")]
mod sentinel;
mod url;

use connect::{Fail, Node, Pool};
use url::{HostPort, Topology};

/// The shortest timeout a Redis call gets, whatever is `left`: a zero timeout means "none"
/// to the socket calls underneath.
pub(crate) const MIN_WAIT: Duration = Duration::from_millis(1);

/// The longest a Redis call waits, however much is `left`: a cache that slow is no help.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(10);

/// The longest dropping a lock waits for Redis to delete it. The caller has its token by
/// then; a release that fails or takes longer is given up and the lock lapses after its
/// lease.
pub(crate) const MAX_RELEASE_WAIT: Duration = Duration::from_millis(500);

/// The longest Redis keeps an entry, whatever the token's lifetime.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

/// The most of a stored value that is read (`GETRANGE`): an entry is well under 8 KiB, so
/// anything longer is not ours and is cut, then refused as JSON.
pub(crate) const MAX_VALUE_BYTES: usize = 64 * 1024;

/// The largest PEM file taken for certificates or a key: a certificate chain is a few KiB.
const MAX_PEM_BYTES: usize = 1024 * 1024;

/// Deletes KEYS[1] only if it still holds ARGV[1]: a holder whose lease ran out, and whose
/// lock someone else then took, must not delete the new holder's lock.
const RELEASE_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// A [`TokenCache`] in Redis, reached through the `redis` crate's blocking client: one
/// server, a Sentinel-managed master (feature `redis-sentinel`) or a Cluster (feature
/// `redis-cluster`), over TCP or TLS.
///
/// Cheap to share: an `Arc` inside, one reusable connection per server behind a `Mutex`
/// that is held only to take or return it. `Debug` and
/// [`describe`](TokenCache::describe) show the form, hosts, ports and database, never the
/// user name, the password or any certificate or key.
///
#[doc = include_str!("redis/docs.md")]
///
/// # Example
/// ```no_run
/// use logto_m2m::{Config, RedisCache, TokenStore};
///
/// let cache = RedisCache::new("redis://:password@10.0.0.5:6379/0")?;
/// let store = TokenStore::new(Config::from_env()?).token_cache(cache);
/// # Ok::<_, logto_m2m::Error>(())
/// ```
#[derive(Clone)]
pub struct RedisCache(Arc<Inner>);

struct Inner {
    /// The URL as given, to make the cache again with other TLS settings. Never shown.
    url: String,
    /// "redis redis://host:port/db": what `describe` says.
    description: String,
    settings: Settings,
    servers: Servers,
    pool: Pool,
}

/// How every server of one cache is reached.
// Without Sentinel and Cluster only the URL's one server is reached, made from the redis
// crate's own reading of the URL; the fields for the servers found later go unread.
#[cfg_attr(
    not(any(feature = "redis-sentinel", feature = "redis-cluster")),
    allow(dead_code)
)]
struct Settings {
    tls: bool,
    /// Certificates given with `root_certificates_pem` and `client_certificate_pem`.
    pem: TlsPem,
    username: Option<String>,
    password: Option<String>,
    db: i64,
    /// The password as given and as written in the URL, to redact from error text.
    secrets: [String; 2],
}

/// PEM text for `rediss://`: the CAs to trust instead of the webpki-roots bundle, and a
/// client certificate chain with its key. Never shown, in `Debug` or anywhere.
#[derive(Clone, Default)]
struct TlsPem {
    roots: Option<Vec<u8>>,
    client: Option<(Vec<u8>, Vec<u8>)>,
}

/// Which servers a call may go to.
enum Servers {
    /// Boxed: a client is several times the size of the other variants.
    One(Box<Node>),
    #[cfg(feature = "redis-sentinel")]
    Sentinel(sentinel::Sentinel),
    #[cfg(feature = "redis-cluster")]
    Cluster(cluster::Cluster),
}

impl RedisCache {
    /// A cache in the Redis at `url`:
    ///
    /// - `redis://[[user]:password@]host[:port][/db]`, `rediss://...` for TLS (needs this
    ///   crate's `rustls` feature; certificates are checked against the webpki-roots bundle,
    ///   or the CAs given to [`root_certificates_pem`](RedisCache::root_certificates_pem)),
    ///   or `redis+unix:///path/to/socket`;
    /// - `redis+sentinel://[[user]:password@]host[:port],host[:port].../<master-name>[/<db>]`
    ///   (feature `redis-sentinel`): the sentinels at those hosts (port 26379 by default)
    ///   name the master, and after a failover the new one;
    /// - `redis+cluster://[[user]:password@]host[:port],host[:port]...` (feature
    ///   `redis-cluster`): nodes of a Redis Cluster, asked for its slot map;
    /// - `rediss+sentinel://...` and `rediss+cluster://...` for TLS to every server.
    ///
    /// The user and password are those of the data nodes (the master, or every cluster
    /// node), percent-encoded in the URL as usual. Nothing is sent until the first call: a
    /// Redis that is down shows up then, as an error of that call.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when the URL can't be used; the
    /// message never contains the password.
    pub fn new(url: &str) -> Result<RedisCache, Error> {
        RedisCache::build(url, TlsPem::default())
    }

    /// Trusts exactly the CA certificates in `pem` (one or more `CERTIFICATE` blocks) for
    /// the servers' certificates of a `rediss://` cache, instead of the webpki-roots
    /// bundle: a Redis whose certificate comes from your own CA. The command and
    /// `get_token` read it from the file named by `LOGTO_CACHE_CA_FILE`.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when the URL is not a TLS one, or
    /// `pem` holds no certificate (the message names the block, never its contents).
    ///
    /// # Example
    /// ```no_run
    /// use logto_m2m::RedisCache;
    ///
    /// let ca = std::fs::read("/etc/redis-tls/ca.pem").expect("the CA file");
    /// let cache = RedisCache::new("rediss://redis.internal:6380/0")?.root_certificates_pem(&ca)?;
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn root_certificates_pem(self, pem: &[u8]) -> Result<RedisCache, Error> {
        check_pem_size(pem, "ca certificates")?;
        crate::tls::parse_pem_certificates(pem)
            .map_err(|reason| Error::config(format!("redis ca certificates: {reason}")))?;
        let mut tls = self.0.settings.pem.clone();
        tls.roots = Some(pem.to_vec());
        RedisCache::build_tls(&self.0.url, tls, "ca certificates")
    }

    /// Presents the certificate chain `cert_pem` (the client's certificate first) and its
    /// private key `key_pem` (PKCS#8, PKCS#1 or SEC1 PEM) to servers that ask for one
    /// (`tls-auth-clients yes`). The command and `get_token` read them from the files named
    /// by `LOGTO_CACHE_CERT_FILE` and `LOGTO_CACHE_KEY_FILE`.
    ///
    /// The key is kept in memory only for the handshakes; no `Debug` output, error or log
    /// line shows it or the certificate.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when the URL is not a TLS one, or
    /// the certificate or key can't be read (the message names which, never its contents).
    ///
    /// # Example
    /// ```no_run
    /// use logto_m2m::RedisCache;
    ///
    /// let cert = std::fs::read("/etc/redis-tls/client.pem").expect("the certificate file");
    /// let key = std::fs::read("/etc/redis-tls/client.key").expect("the key file");
    /// let cache = RedisCache::new("rediss://redis.internal:6380/0")?
    ///     .client_certificate_pem(&cert, &key)?;
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn client_certificate_pem(
        self,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<RedisCache, Error> {
        check_pem_size(cert_pem, "client certificate")?;
        check_pem_size(key_pem, "client key")?;
        crate::tls::parse_pem_certificates(cert_pem)
            .map_err(|reason| Error::config(format!("redis client certificate: {reason}")))?;
        check_private_key(key_pem)?;
        let mut tls = self.0.settings.pem.clone();
        tls.client = Some((cert_pem.to_vec(), key_pem.to_vec()));
        RedisCache::build_tls(&self.0.url, tls, "client certificate")
    }

    /// [`build`](RedisCache::build) for the TLS setters, which only TLS URLs take.
    fn build_tls(url: &str, tls: TlsPem, what: &str) -> Result<RedisCache, Error> {
        let cache = RedisCache::build(url, tls)?;
        if !cache.0.settings.tls {
            return Err(Error::config(format!(
                "redis {what}: the url is not a tls one (rediss://...)"
            )));
        }
        Ok(cache)
    }

    fn build(url: &str, pem: TlsPem) -> Result<RedisCache, Error> {
        // The password as written in the URL (percent-encoded), to redact from errors
        // before the URL is understood; the decoded one is taken below.
        let written_password = written_password(url);
        let invalid = |reason: String| {
            let redact = Redactions {
                secrets: [written_password.as_str(), "", "", "", ""],
            };
            Error::config(format!("redis url: {}", sanitize(&reason, &redact)))
        };
        // (A TLS URL without the rustls feature is refused there.)
        let parsed = url::parse(url).map_err(&invalid)?;
        let settings = Settings {
            tls: parsed.tls,
            pem,
            secrets: [
                parsed.password.clone().unwrap_or_default(),
                written_password.clone(),
            ],
            username: parsed.username,
            password: parsed.password,
            db: parsed.db,
        };
        let failed = |e: RedisError| invalid(settings.reason(&e));
        let servers = match parsed.topology {
            Topology::Standalone(info) => {
                Servers::One(Box::new(settings.standalone(info).map_err(failed)?))
            }
            #[cfg(feature = "redis-sentinel")]
            Topology::Sentinel { sentinels, master } => Servers::Sentinel(
                sentinel::Sentinel::new(&settings, &sentinels, master).map_err(failed)?,
            ),
            #[cfg(feature = "redis-cluster")]
            Topology::Cluster { seeds } => {
                // Each seed must make a client now, so that a bad one is an error here.
                for seed in &seeds {
                    settings.node(seed, true).map_err(failed)?;
                }
                Servers::Cluster(cluster::Cluster::new(seeds))
            }
            #[allow(unreachable_patterns)] // the forms whose feature is off: refused above
            _ => {
                return Err(invalid(
                    "this url form needs a feature this build lacks".into(),
                ));
            }
        };
        Ok(RedisCache(Arc::new(Inner {
            url: url.to_owned(),
            description: format!("redis {}", parsed.description),
            settings,
            servers,
            pool: Pool::default(),
        })))
    }
}

/// The password as a URL writes it (`:password@`), before any decoding; empty if none.
fn written_password(url: &str) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return String::new();
    };
    let Some((userinfo, _)) = rest.rsplit_once('@') else {
        return String::new();
    };
    userinfo
        .split_once(':')
        .map(|(_, p)| p.to_owned())
        .unwrap_or_default()
}

fn check_pem_size(pem: &[u8], what: &str) -> Result<(), Error> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(Error::config(format!(
            "redis {what}: larger than {MAX_PEM_BYTES} bytes"
        )));
    }
    Ok(())
}

/// One private key block in PEM, with labels rustls reads; the message never quotes it.
fn check_private_key(pem: &[u8]) -> Result<(), Error> {
    let keys = crate::tls::read_pem(pem)
        .map_err(|reason| Error::config(format!("redis client key: {reason}")))?
        .keys;
    match keys {
        1 => Ok(()),
        0 => Err(Error::config(
            "redis client key: no pem private key found (expected -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)",
        )),
        n => Err(Error::config(format!(
            "redis client key: {n} private keys, where one is expected"
        ))),
    }
}

#[cfg_attr(
    not(any(feature = "redis-sentinel", feature = "redis-cluster")),
    allow(dead_code)
)]
impl Settings {
    /// The user and database settings a data node's connections take; a sentinel's take
    /// neither (they are asked without a password first, see `sentinel.rs`).
    fn redis_settings(&self, data: bool) -> RedisConnectionInfo {
        // Don't send CLIENT SETINFO on each connection: nothing here reads it.
        let mut settings = RedisConnectionInfo::default().set_skip_set_lib_name();
        if data {
            settings = settings.set_db(self.db);
            if let Some(user) = &self.username {
                settings = settings.set_username(user);
            }
            if let Some(password) = &self.password {
                settings = settings.set_password(password);
            }
        }
        settings
    }

    /// The one server of a `redis://`, `rediss://` or `redis+unix://` URL.
    fn standalone(&self, info: ConnectionInfo) -> Result<Node, RedisError> {
        let settings = info.redis_settings().clone().set_skip_set_lib_name();
        self.client(info.set_redis_settings(settings))
            .map(Node::new)
    }

    /// A server found at `address` (a sentinel, the master it names, a cluster node); a
    /// data node's connections authenticate and select the database.
    fn node(&self, address: &HostPort, data: bool) -> Result<Node, RedisError> {
        let host = address.host.clone();
        let port = address.port;
        let addr = if self.tls {
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host, port)
        };
        let info = addr
            .into_connection_info()?
            .set_redis_settings(self.redis_settings(data));
        self.client(info).map(Node::new)
    }

    /// A client for `info`, with the certificates given for TLS.
    fn client(&self, info: ConnectionInfo) -> Result<Client, RedisError> {
        #[cfg(feature = "rustls")]
        if self.tls && (self.pem.roots.is_some() || self.pem.client.is_some()) {
            let certificates =
                ::redis::TlsCertificates {
                    client_tls: self.pem.client.as_ref().map(|(cert, key)| {
                        ::redis::ClientTlsConfig {
                            client_cert: cert.clone(),
                            client_key: key.clone(),
                        }
                    }),
                    root_cert: self.pem.roots.clone(),
                };
            // The redis crate's words on a PEM it can't take may quote a line of it: ours,
            // checked before, name what was wrong without that.
            return Client::build_with_tls(info, certificates).map_err(|_| {
                RedisError::from((
                    ::redis::ErrorKind::InvalidClientConfig,
                    "the tls certificates or key were refused (is the key the certificate's?)",
                ))
            });
        }
        Client::open(info)
    }

    /// A redis error as a short reason, without the password even if a server echoed it,
    /// and with what to do for the certificate problems a private CA brings.
    fn reason(&self, e: &RedisError) -> String {
        // The redis crate's text: the server's error (`WRONGPASS ...`) or the I/O error
        // (`Connection refused (os error 111)`), which may be wordy but says what happened.
        let text = if e.is_timeout() {
            "timed out".to_owned()
        } else {
            e.to_string()
        };
        let redact = Redactions {
            secrets: [&self.secrets[0], &self.secrets[1], "", "", ""],
        };
        let mut reason = sanitize(&lowercase_first(&text), &redact);
        if self.tls {
            if reason.contains("UnknownIssuer") && self.pem.roots.is_none() {
                reason.push_str(
                    "; the server's certificate is not from a ca in the webpki-roots bundle: \
                     give its ca (LOGTO_CACHE_CA_FILE, RedisCache::root_certificates_pem)",
                );
            } else if reason.contains("CertificateRequired") && self.pem.client.is_none() {
                reason.push_str(
                    "; the server asks for a client certificate: give one \
                     (LOGTO_CACHE_CERT_FILE and LOGTO_CACHE_KEY_FILE, \
                     RedisCache::client_certificate_pem)",
                );
            }
        }
        reason
    }

    /// A failed call's reason, for `last_cache_error`.
    fn explain(&self, failure: Fail) -> String {
        match failure {
            Fail::Redis(e) => self.reason(&e),
            Fail::Said(text) => {
                let redact = Redactions {
                    secrets: [&self.secrets[0], &self.secrets[1], "", "", ""],
                };
                sanitize(&text, &redact)
            }
        }
    }
}

impl Inner {
    /// Runs `f` on a connection to the server that holds the keys tagged `tag` (the
    /// cache key's id), within `left`.
    fn with_connection<T>(
        &self,
        tag: &str,
        left: Duration,
        f: impl Fn(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + left.clamp(MIN_WAIT, MAX_WAIT);
        let result = match &self.servers {
            Servers::One(node) => self.pool.run(node, deadline, &f),
            #[cfg(feature = "redis-sentinel")]
            Servers::Sentinel(s) => s.run(&self.settings, &self.pool, deadline, &f),
            #[cfg(feature = "redis-cluster")]
            Servers::Cluster(c) => {
                c.run(&self.settings, &self.pool, cluster::slot(tag), deadline, &f)
            }
        };
        // Only a cluster routes by the tag.
        let _ = tag;
        result.map_err(|e| self.settings.explain(e))
    }
}

/// Lowercases a capitalized first word ("Connection refused" becomes "connection
/// refused"), as our error texts are; codes such as `WRONGPASS` keep their case.
fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) if chars.clone().next().is_some_and(char::is_lowercase) => {
            first.to_lowercase().chain(chars).collect()
        }
        _ => text.to_owned(),
    }
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisCache")
            .field(&self.0.description)
            .finish()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn describe_and_debug_hide_credentials() {
        let cache = RedisCache::new("redis://user:Pa55-canary@10.0.0.5:6380/2").unwrap();
        assert_eq!(cache.describe(), "redis redis://10.0.0.5:6380/2");
        let shown = format!("{cache:?}");
        assert_eq!(shown, "RedisCache(\"redis redis://10.0.0.5:6380/2\")");
        let cache = RedisCache::new("redis://[::1]").unwrap();
        assert_eq!(cache.describe(), "redis redis://[::1]:6379/0");
        let cache = RedisCache::new("redis+unix:///run/redis.sock?db=3").unwrap();
        assert_eq!(cache.describe(), "redis unix:///run/redis.sock?db=3");
    }

    #[test]
    fn bad_urls_are_config_errors_without_the_password() {
        for url in [
            "http://:Pa55-canary@host:6379",
            "Pa55-canary",
            "redis://:Pa55-canary@host:6379/notadb",
            "redis://:Pa55-canary@:6379",
        ] {
            let err = RedisCache::new(url).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(text.starts_with("invalid config: redis url: "), "{text}");
            assert!(!text.contains("Pa55-canary"), "{text}");
        }
    }

    #[test]
    fn tls_url_needs_rustls_and_checks_certificates() {
        let tls = RedisCache::new("rediss://:Pa55-canary@cache.example:6380");
        if cfg!(feature = "rustls") {
            assert_eq!(
                tls.unwrap().describe(),
                "redis rediss://cache.example:6380/0"
            );
            let err = RedisCache::new("rediss://cache.example:6380/#insecure").unwrap_err();
            assert!(err.to_string().contains("#insecure"), "{err}");
        } else {
            let err = tls.unwrap_err().to_string();
            assert!(
                err.contains("rustls") && !err.contains("Pa55-canary"),
                "{err}"
            );
        }
    }

    #[test]
    fn holder_ids_differ() {
        use super::commands::holder_id;
        let a = holder_id();
        let b = holder_id();
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{}-", std::process::id())));
    }

    #[test]
    fn reasons_are_lowercase_first() {
        assert_eq!(lowercase_first("Connection refused"), "connection refused");
        assert_eq!(lowercase_first("WRONGPASS x"), "WRONGPASS x");
    }
}
