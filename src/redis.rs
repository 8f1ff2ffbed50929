//! [`RedisCache`]: a [`TokenCache`] in Redis, so that a fleet of processes on many hosts
//! shares one token per request and one refresh at a time.
//!
//! Keys: `logto-m2m:token:{id}` holds an entry ([`CacheEntry::encode`]) with a Redis TTL
//! that ends when the token expires; `logto-m2m:lock:{id}` is the refresh lock, taken with
//! `SET NX PX lease` and a value unique to its holder, and deleted only by that holder (a
//! compare-and-delete Lua script). `{id}` is [`CacheKey::id`], a hash: no key names the
//! token URL, the app or the API, and no key or value holds the app secret.
//!
//! Every call is bounded by the `left` it is given: the connection, the handshake (AUTH,
//! SELECT, TLS) and each read and write have what remains of it as their timeout. Two
//! things are not bounded, as in std: resolving a host name (the system resolver has no
//! timeout; give an IP address where that matters), and a name with several addresses
//! gets the timeout for each address in turn.
//!
//! One idle connection is kept and reused: on loopback a read costs about 24 µs on it
//! against 46 µs on a new connection, and across a network a new connection costs one
//! to three more round trips (TCP, AUTH, TLS). A call that finds the idle connection in
//! use by another thread opens its own, so no caller ever waits for another, and a
//! connection that failed or timed out is dropped, never reused: the late answer to the
//! command that timed out may still be on its way.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::redis::{Client, Connection, ConnectionAddr, IntoConnectionInfo, RedisError, Value};

use crate::cache::{CacheEntry, CacheKey, CacheLock, TokenCache};
use crate::error::{Error, Redactions, sanitize};

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

/// Deletes KEYS[1] only if it still holds ARGV[1]: a holder whose lease ran out, and whose
/// lock someone else then took, must not delete the new holder's lock.
const RELEASE_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// A [`TokenCache`] in Redis, reached through the `redis` crate's blocking client.
///
/// Cheap to share: an `Arc` inside, one reusable connection behind a `Mutex` that is held
/// only to take or return it. `Debug` and [`describe`](TokenCache::describe) show the
/// scheme, host, port and database, never the user name or password.
///
/// # Example
/// ```no_run
/// use std::time::Duration;
/// use logto_m2m::{CacheKey, RedisCache, TokenCache};
///
/// let cache = RedisCache::new("redis://:password@10.0.0.5:6379/0")?;
/// let key = CacheKey::new("https://tenant.logto.app/oidc/token", "app-id", "https://api");
/// if let Ok(Some(entry)) = cache.read(&key, Duration::from_secs(1)) {
///     println!("shared token expires at {:?}", entry.expires_at());
/// }
/// # Ok::<_, logto_m2m::Error>(())
/// ```
#[derive(Clone)]
pub struct RedisCache(Arc<Inner>);

struct Inner {
    client: Client,
    /// "redis redis://host:port/db": what `describe` says.
    description: String,
    /// The password as given and as written in the URL, to redact from error text.
    secrets: [String; 2],
    /// The connection no call is using, if any.
    idle: Mutex<Option<Connection>>,
}

impl RedisCache {
    /// A cache in the Redis at `url`: `redis://[[user]:password@]host[:port][/db]`,
    /// `rediss://...` for TLS (needs this crate's `rustls` feature; certificates are checked
    /// against the webpki-roots bundle), or `redis+unix:///path/to/socket`.
    ///
    /// Nothing is sent until the first call: a Redis that is down shows up then, as an
    /// error of that call.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when the URL can't be used; the
    /// message never contains the password.
    pub fn new(url: &str) -> Result<RedisCache, Error> {
        // The password as written in the URL (percent-encoded), to redact from errors
        // before the URL is understood; the decoded one is taken below.
        let written_password = ::redis::parse_redis_url(url)
            .and_then(|u| u.password().map(str::to_owned))
            .unwrap_or_default();
        let invalid = |reason: String| {
            let redact = Redactions {
                secrets: [written_password.as_str(), "", ""],
            };
            Error::config(format!("redis url: {}", sanitize(&reason, &redact)))
        };
        if !url.contains("://") {
            return Err(invalid(
                "must start with redis://, rediss:// or redis+unix://".into(),
            ));
        }
        let tls = ["rediss://", "valkeys://"].iter().any(|scheme| {
            url.get(..scheme.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
        });
        if tls && !cfg!(feature = "rustls") {
            // With only native-tls the redis crate does its TLS handshake before it sets
            // any timeout, so a server that never answers would hold the caller forever.
            return Err(invalid(
                "rediss:// needs this crate's rustls feature (the native-tls handshake of the redis crate has no timeout)".into(),
            ));
        }
        let info = url
            .into_connection_info()
            .map_err(|e| invalid(lowercase_first(&e.to_string())))?;
        let db = info.redis_settings().db();
        let description = match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                format!("redis redis://{}:{port}/{db}", bracket(host))
            }
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                ..
            } => {
                if *insecure {
                    return Err(invalid(
                        "certificate checks can't be turned off (#insecure)".into(),
                    ));
                }
                format!("redis rediss://{}:{port}/{db}", bracket(host))
            }
            ConnectionAddr::Unix(path) => format!("redis unix://{}?db={db}", path.display()),
            _ => format!("redis (db {db})"),
        };
        let password = info
            .redis_settings()
            .password()
            .unwrap_or_default()
            .to_owned();
        // Don't send CLIENT SETINFO on each connection: nothing here reads it.
        let settings = info.redis_settings().clone().set_skip_set_lib_name();
        let info = info.set_redis_settings(settings);
        let client = Client::open(info).map_err(|e| invalid(lowercase_first(&e.to_string())))?;
        Ok(RedisCache(Arc::new(Inner {
            client,
            description,
            secrets: [password, written_password],
            idle: Mutex::new(None),
        })))
    }
}

/// Hosts as a URL writes them: an IPv6 address in brackets.
fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

impl Inner {
    /// Runs `f` on a connection, within `left`: the idle one if no other call has it,
    /// otherwise a new one. A connection that failed is dropped, never reused: it may
    /// still hold the answer to the command that timed out.
    fn with_connection<T>(
        &self,
        left: Duration,
        f: impl Fn(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + left.clamp(MIN_WAIT, MAX_WAIT);
        let idle = self.idle.try_lock().ok().and_then(|mut slot| slot.take());
        let reused = idle.is_some();
        let mut result = match idle {
            Some(mut con) => run(&mut con, deadline, &f).map(|v| (v, con)),
            None => self.connect_and_run(deadline, &f),
        };
        // Redis may have closed a connection that sat idle (its `timeout` setting, a
        // restart, a failover): that is no reason to fail, so try once more on a new one.
        if reused
            && result
                .as_ref()
                .is_err_and(|e| e.is_connection_dropped() || e.is_connection_refusal())
            && Instant::now() < deadline
        {
            result = self.connect_and_run(deadline, &f);
        }
        match result {
            Ok((value, con)) => {
                if let Ok(mut slot) = self.idle.try_lock() {
                    slot.get_or_insert(con);
                }
                Ok(value)
            }
            Err(e) => Err(self.reason(&e)),
        }
    }

    fn connect_and_run<T>(
        &self,
        deadline: Instant,
        f: &impl Fn(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<(T, Connection), RedisError> {
        // Bounds the connect and the handshake (AUTH, SELECT) together.
        let mut con = self
            .client
            .get_connection_with_timeout(remaining(deadline))?;
        let value = run(&mut con, deadline, f)?;
        Ok((value, con))
    }

    /// A redis error as a short reason, without the password even if a server echoed it.
    fn reason(&self, e: &RedisError) -> String {
        // The redis crate's text: the server's error (`WRONGPASS ...`) or the I/O error
        // (`Connection refused (os error 111)`), which may be wordy but says what happened.
        let text = if e.is_timeout() {
            "timed out".to_owned()
        } else {
            e.to_string()
        };
        let redact = Redactions {
            secrets: [&self.secrets[0], &self.secrets[1], ""],
        };
        sanitize(&lowercase_first(&text), &redact)
    }
}

/// Runs `f` with the socket's read and write timeouts set to what is left until `deadline`.
fn run<T>(
    con: &mut Connection,
    deadline: Instant,
    f: &impl Fn(&mut Connection) -> Result<T, RedisError>,
) -> Result<T, RedisError> {
    let left = remaining(deadline);
    con.set_read_timeout(Some(left))?;
    con.set_write_timeout(Some(left))?;
    f(con)
}

/// Time until `deadline`, at least [`MIN_WAIT`].
fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(MIN_WAIT)
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

fn token_key(key: &CacheKey) -> String {
    format!("logto-m2m:token:{}", key.id())
}

fn lock_key(key: &CacheKey) -> String {
    format!("logto-m2m:lock:{}", key.id())
}

/// Milliseconds, at least 1 (Redis refuses `PX 0`).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl TokenCache for RedisCache {
    fn describe(&self) -> String {
        self.0.description.clone()
    }

    fn read(&self, key: &CacheKey, left: Duration) -> Result<Option<CacheEntry>, String> {
        let name = token_key(key);
        let value = self.0.with_connection(left, |con| {
            // GETRANGE instead of GET: a huge value under our key costs no memory.
            let result = ::redis::cmd("GETRANGE")
                .arg(&name)
                .arg(0)
                .arg(MAX_VALUE_BYTES - 1)
                .query::<Value>(con);
            match result {
                // Another type of value under our key is not an entry to use; the next
                // write replaces it.
                Err(e) if e.code() == Some("WRONGTYPE") => Ok(Value::Nil),
                other => other,
            }
        })?;
        Ok(match value {
            Value::BulkString(bytes) => CacheEntry::decode(&bytes, key),
            _ => None,
        })
    }

    fn write(&self, key: &CacheKey, entry: &CacheEntry, left: Duration) -> Result<(), String> {
        // Redis drops the entry when the token expires. The TTL is counted from now by the
        // Redis server's clock, so skew between hosts' clocks matters only as much as
        // between this host and the token's own expiry.
        let Ok(ttl) = entry.expires_at().duration_since(SystemTime::now()) else {
            return Ok(()); // already expired: nothing worth sharing
        };
        if ttl < Duration::from_millis(1) {
            return Ok(());
        }
        // Redis refuses expiry times past what its clock holds; a token living longer than
        // MAX_TTL is only refreshed sooner.
        let ttl = ttl.min(MAX_TTL);
        let name = token_key(key);
        let value = entry.encode(key);
        self.0.with_connection(left, |con| {
            ::redis::cmd("SET")
                .arg(&name)
                .arg(&value)
                .arg("PX")
                .arg(millis(ttl))
                .query::<()>(con)
        })
    }

    fn try_lock(
        &self,
        key: &CacheKey,
        lease: Duration,
        left: Duration,
    ) -> Result<Option<CacheLock>, String> {
        let name = lock_key(key);
        let holder = holder_id();
        let taken = self.0.with_connection(left, |con| {
            ::redis::cmd("SET")
                .arg(&name)
                .arg(&holder)
                .arg("NX")
                .arg("PX")
                .arg(millis(lease))
                .query::<Value>(con)
        })?;
        match taken {
            Value::Okay => Ok(Some(CacheLock::new(RedisLock {
                cache: self.0.clone(),
                key: name,
                holder,
                release_wait: left.min(MAX_RELEASE_WAIT),
            }))),
            Value::Nil => Ok(None),
            other => Err(format!("unexpected answer to SET NX: {}", kind_of(&other))),
        }
    }
}

/// The type of an unexpected reply, never its contents.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::Int(_) => "integer",
        Value::BulkString(_) => "bulk string",
        Value::Array(_) => "array",
        Value::SimpleString(_) => "simple string",
        Value::Okay => "ok",
        _ => "other",
    }
}

/// A value no other holder has, in this or any other process: the process id, a counter,
/// the time and 64 random bits (std's `RandomState` is seeded from the OS).
fn holder_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let random = RandomState::new().hash_one((n, nanos));
    format!("{}-{n}-{nanos}-{random:016x}", std::process::id())
}

/// The refresh lock while held; dropping it deletes the lock if it is still ours.
struct RedisLock {
    cache: Arc<Inner>,
    key: String,
    holder: String,
    release_wait: Duration,
}

impl Drop for RedisLock {
    fn drop(&mut self) {
        // A failed release is not worth reporting: the lock lapses after its lease.
        let _ = self.cache.with_connection(self.release_wait, |con| {
            ::redis::cmd("EVAL")
                .arg(RELEASE_SCRIPT)
                .arg(1)
                .arg(&self.key)
                .arg(&self.holder)
                .query::<Value>(con)
        });
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
