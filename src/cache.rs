//! The token cache interface: where a [`TokenStore`](crate::TokenStore) keeps tokens beyond
//! its own memory, so that processes or hosts share them.
//!
//! The store consults a cache only when memory has no fresh token: it reads the value,
//! and when that is not fresh either it takes the refresh lock, reads again (another
//! holder may just have written), asks the server, and writes the new value. Errors of a
//! cache never fail a `get`: they are kept for
//! [`last_cache_error`](crate::TokenStore::last_cache_error).
//!
//! The interface is keys and bytes; what the bytes are (a sealed entry) is `entry.rs`'s.

use std::time::{Duration, SystemTime};

pub(crate) mod entry;

/// A place beyond the store's memory where tokens are shared: the token file of
/// [`TokenStore::cache_file`](crate::TokenStore::cache_file), Redis with the `redis`
/// feature, or your own.
///
/// A cache stores opaque values under opaque keys. The store makes both: a key is 32
/// lowercase hex characters, a hash of the token URL, app id and request that is the same
/// in every process and host (and release, but for the one change of issue 31, after which
/// the entries written before are not found); a value is the token, its scope and its times, sealed
/// (encrypted and authenticated with a key derived from the app secret, the token URL and
/// the app id, bound to the request). So whoever reads the cache without the secret learns
/// no token, and a value changed, cut short or copied under another key is refused as
/// absent: a cache need not be trusted with secrets, only asked to keep what it is given.
/// Today's values are ASCII (`logto-m2m:sealed:1:` and base64), about 1.4 times the token's
/// size.
///
/// Errors are short lowercase reasons ("cannot open: permission denied"); the store wraps
/// them in [`ErrorKind::Cache`](crate::ErrorKind::Cache) with [`describe`](TokenCache::describe).
///
/// # Example
/// A cache in one process's memory (a real one is shared: a file, a database):
/// ```
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex};
/// use std::time::{Duration, SystemTime};
/// use logto_m2m::{CacheLock, Config, TokenCache, TokenStore};
///
/// #[derive(Default)]
/// struct Memory(Mutex<HashMap<String, Vec<u8>>>);
///
/// impl TokenCache for Memory {
///     fn describe(&self) -> String {
///         "memory cache".into()
///     }
///     fn read(&self, key: &str, _left: Duration) -> Result<Option<Vec<u8>>, String> {
///         let map = self.0.lock().map_err(|_| "poisoned")?;
///         Ok(map.get(key).cloned())
///     }
///     fn write(&self, key: &str, value: &[u8], _expires_at: SystemTime, _left: Duration) -> Result<(), String> {
///         let mut map = self.0.lock().map_err(|_| "poisoned")?;
///         map.insert(key.to_owned(), value.to_vec());
///         Ok(())
///     }
///     fn try_lock(&self, _key: &str, _lease: Duration, _left: Duration) -> Result<Option<CacheLock>, String> {
///         Ok(Some(Box::new(()))) // one process: the store's own single flight is enough
///     }
/// }
///
/// let config = Config::logto("https://tenant.logto.app", "app-id", "app-secret")?;
/// let store = TokenStore::new(config).token_cache(Memory::default());
/// # Ok::<_, logto_m2m::Error>(())
/// ```
pub trait TokenCache: Send + Sync {
    /// Says what and where, for errors and `Debug`, never a password: `token file
    /// /x/y.json`, `redis redis://10.0.0.5:6379/0`.
    fn describe(&self) -> String;

    /// The value last written for `key`; `Ok(None)` when there is none. Must not block
    /// longer than `left`.
    fn read(&self, key: &str, left: Duration) -> Result<Option<Vec<u8>>, String>;

    /// Stores `value` for `key`, replacing what was there; it may be dropped once
    /// `expires_at` passes (the token in it is of no use after). Must not block longer
    /// than `left`.
    fn write(
        &self,
        key: &str,
        value: &[u8],
        expires_at: SystemTime,
        left: Duration,
    ) -> Result<(), String>;

    /// Takes the refresh lock for `key` if nobody holds it (`Ok(None)` when someone does).
    /// The lock is released when the returned [`CacheLock`] is dropped, and lapses by
    /// itself after `lease` (a holder that dies never blocks the others longer). Must not
    /// block longer than `left`.
    fn try_lock(
        &self,
        key: &str,
        lease: Duration,
        left: Duration,
    ) -> Result<Option<CacheLock>, String>;
}

/// The refresh lock of a [`TokenCache`] for one key, held until dropped: whatever releases
/// the lock in its `Drop` (a locked file handle; a connection and the value that proves who
/// holds it), boxed. `Box::new(())` for a cache that needs no lock of its own.
pub type CacheLock = Box<dyn Send>;
