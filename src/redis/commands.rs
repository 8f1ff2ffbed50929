//! The cache's commands on Redis: a value read with `GETRANGE` (bounded), written with
//! `SET PX` (the token's lifetime as its TTL), and the refresh lock taken with
//! `SET NX PX` and a value unique to its holder, released by that holder only.

use super::*;

/// `logto-m2m:token:{<id>}`: the braces are the Cluster hash tag shared with the lock.
fn token_key(key: &str) -> String {
    format!("logto-m2m:token:{{{key}}}")
}

/// `logto-m2m:lock:{<id>}`, in the same slot as the token's key.
fn lock_key(key: &str) -> String {
    format!("logto-m2m:lock:{{{key}}}")
}

/// Milliseconds, at least 1 (Redis refuses `PX 0`) and at most ten years: Redis refuses a
/// `PX` past what its clock can add (a lease of a timeout too long for the clock, which is
/// no deadline, would otherwise make every lock fail).
fn millis(d: Duration) -> u64 {
    const TEN_YEARS_MS: u64 = 10 * 365 * 24 * 3600 * 1000;
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, TEN_YEARS_MS)
}

impl TokenCache for RedisCache {
    fn describe(&self) -> String {
        self.0.description.clone()
    }

    fn read(&self, key: &str, left: Duration) -> Result<Option<Vec<u8>>, String> {
        let name = token_key(key);
        let value = self.0.with_connection(key, left, |con| {
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
            // Cut at the cap: not a value the store wrote, whatever it is.
            Value::BulkString(bytes) if !bytes.is_empty() && bytes.len() < MAX_VALUE_BYTES => {
                Some(bytes)
            }
            _ => None,
        })
    }

    fn write(
        &self,
        key: &str,
        value: &[u8],
        expires_at: SystemTime,
        left: Duration,
    ) -> Result<(), String> {
        // Redis drops the entry when the token expires. The TTL is counted from now by the
        // Redis server's clock, so skew between hosts' clocks matters only as much as
        // between this host and the token's own expiry.
        let Ok(ttl) = expires_at.duration_since(SystemTime::now()) else {
            return Ok(()); // already expired: nothing worth sharing
        };
        if ttl < Duration::from_millis(1) {
            return Ok(());
        }
        // Redis refuses expiry times past what its clock holds; a token living longer than
        // MAX_TTL is only refreshed sooner.
        let ttl = ttl.min(MAX_TTL);
        let name = token_key(key);
        self.0.with_connection(key, left, |con| {
            ::redis::cmd("SET")
                .arg(&name)
                .arg(value)
                .arg("PX")
                .arg(millis(ttl))
                .query::<()>(con)
        })
    }

    fn try_lock(
        &self,
        key: &str,
        lease: Duration,
        left: Duration,
    ) -> Result<Option<CacheLock>, String> {
        let name = lock_key(key);
        let holder = holder_id();
        let taken = self.0.with_connection(key, left, |con| {
            ::redis::cmd("SET")
                .arg(&name)
                .arg(&holder)
                .arg("NX")
                .arg("PX")
                .arg(millis(lease))
                .query::<Value>(con)
        })?;
        match taken {
            Value::Okay => Ok(Some(Box::new(RedisLock {
                cache: self.0.clone(),
                tag: key.to_owned(),
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
/// the time and 64 random bits from the system's random source (0 should it fail: the
/// rest still tells the holders apart).
pub(super) fn holder_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let random = crate::hash::random_u64().unwrap_or(0);
    format!("{}-{n}-{nanos}-{random:016x}", std::process::id())
}

/// The refresh lock while held; dropping it deletes the lock if it is still ours.
struct RedisLock {
    cache: Arc<Inner>,
    /// The cache key's id, which finds the lock's server in a cluster.
    tag: String,
    key: String,
    holder: String,
    release_wait: Duration,
}

impl Drop for RedisLock {
    fn drop(&mut self) {
        // A failed release is not worth reporting: the lock lapses after its lease.
        let _ = self
            .cache
            .with_connection(&self.tag, self.release_wait, |con| {
                ::redis::cmd("EVAL")
                    .arg(RELEASE_SCRIPT)
                    .arg(1)
                    .arg(&self.key)
                    .arg(&self.holder)
                    .query::<Value>(con)
            });
    }
}
