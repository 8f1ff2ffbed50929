//! The token cache interface: where a [`TokenStore`](crate::TokenStore) keeps tokens beyond
//! its own memory, so that processes or hosts share them.
//!
//! The store consults a cache only when memory has no fresh token: it reads the entry,
//! and when that is not fresh either it takes the refresh lock, reads again (another
//! holder may just have written), asks the server, and writes the new entry. Errors of a
//! cache never fail a `get`: they are kept for
//! [`last_cache_error`](crate::TokenStore::last_cache_error).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use miniserde::{Deserialize, json as mini};

use crate::config::Config;
use crate::error::Error;
use crate::request::TokenRequest;
use crate::seal::SealKey;
use crate::text;
use crate::token::{Token, is_header_safe, is_printable};

/// A place beyond the store's memory where tokens are shared: the token file of
/// [`TokenStore::cache_file`](crate::TokenStore::cache_file), Redis with the `redis`
/// feature, or your own.
///
/// Errors are short lowercase reasons ("cannot open: permission denied"); the store wraps
/// them in [`ErrorKind::Cache`](crate::ErrorKind::Cache) with [`describe`](TokenCache::describe).
///
/// # Sealed entries
///
/// Store the text of [`CacheEntry::encode`] with the key you are given, and read it back
/// with [`CacheEntry::decode`]: with the store's keys that text is sealed (encrypted and
/// authenticated with a key derived from the app secret, the token URL and the app id), so
/// whoever reads your cache without the secret learns no token, and a value changed,
/// cut short or copied from another key is refused as absent. Storing
/// [`CacheEntry::access_token`] yourself would put a bearer token in the clear.
///
/// # Example
/// A cache in one process's memory (a real one is shared: a file, a database):
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use std::time::Duration;
/// use logto_m2m::{CacheEntry, CacheKey, CacheLock, TokenCache};
///
/// #[derive(Default)]
/// struct Memory(Mutex<HashMap<String, String>>);
///
/// impl TokenCache for Memory {
///     fn describe(&self) -> String {
///         "memory cache".into()
///     }
///     fn read(&self, key: &CacheKey, _left: Duration) -> Result<Option<CacheEntry>, String> {
///         let map = self.0.lock().map_err(|_| "poisoned")?;
///         Ok(map.get(key.id()).and_then(|text| CacheEntry::decode(text.as_bytes(), key)))
///     }
///     fn write(&self, key: &CacheKey, entry: &CacheEntry, _left: Duration) -> Result<(), String> {
///         let mut map = self.0.lock().map_err(|_| "poisoned")?;
///         map.insert(key.id().to_owned(), entry.encode(key));
///         Ok(())
///     }
///     fn try_lock(&self, _: &CacheKey, _: Duration, _: Duration) -> Result<Option<CacheLock>, String> {
///         Ok(Some(CacheLock::new(()))) // one process: the store's own single flight is enough
///     }
/// }
/// ```
pub trait TokenCache: Send + Sync {
    /// Says what and where, for errors and `Debug`, never a password: `token file
    /// /x/y.json`, `redis redis://10.0.0.5:6379/0`.
    fn describe(&self) -> String;

    /// The entry for `key`; `Ok(None)` when there is none or it is not usable (foreign,
    /// corrupt). Must not block longer than `left`.
    fn read(&self, key: &CacheKey, left: Duration) -> Result<Option<CacheEntry>, String>;

    /// Stores `entry` for `key`, replacing what was there; it may be dropped once
    /// `entry.expires_at()` passes. Must not block longer than `left`.
    fn write(&self, key: &CacheKey, entry: &CacheEntry, left: Duration) -> Result<(), String>;

    /// Takes the refresh lock for `key` if nobody holds it (`Ok(None)` when someone does).
    /// The lock is released when the returned [`CacheLock`] is dropped, and lapses by
    /// itself after `lease` (a holder that dies never blocks the others longer). Must not
    /// block longer than `left`.
    fn try_lock(
        &self,
        key: &CacheKey,
        lease: Duration,
        left: Duration,
    ) -> Result<Option<CacheLock>, String>;
}

/// Which token an entry is for: the token URL, the app id and the request (resource,
/// sorted scopes, organization), and for the store's keys the key that seals the entry.
/// `Debug` shows all but that seal key, which it never shows.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    token_url: String,
    app_id: String,
    request_key: String,
    id: String,
    /// Derived from the app secret: what [`CacheEntry::encode`] seals with. `None` for a
    /// key from [`CacheKey::new`], whose entries are written in the clear.
    seal: Option<SealKey>,
}

impl CacheKey {
    /// The key for a request to `token_url` by `app_id`; `request_key` says which token
    /// (the store passes resource, sorted scopes and organization, NUL-separated).
    ///
    /// Such a key knows no secret, so its entries are **not sealed**: [`CacheEntry::encode`]
    /// writes them in the clear, as JSON. A [`TokenStore`](crate::TokenStore) never uses
    /// one: its keys come from [`CacheKey::for_request`], and it neither reads nor writes
    /// entries in the clear.
    pub fn new(token_url: &str, app_id: &str, request_key: &str) -> CacheKey {
        let id = stable_id(&[token_url, app_id, request_key]);
        CacheKey {
            token_url: token_url.to_owned(),
            app_id: app_id.to_owned(),
            request_key: request_key.to_owned(),
            id,
            seal: None,
        }
    }

    /// The key a [`TokenStore`](crate::TokenStore) with `config` uses for `request`: the
    /// same [`id`](CacheKey::id) as [`CacheKey::new`] gives, and entries sealed with a key
    /// derived (HKDF-SHA256) from the app secret as it is now, the token URL and the app
    /// id. Whoever has the secret can read the store's entries with it; a new secret makes
    /// a new key, which opens none of the old entries.
    ///
    /// # Errors
    /// When the config's secret file can't be read.
    ///
    /// # Example
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use logto_m2m::{CacheEntry, CacheKey, Config, TokenRequest};
    ///
    /// let config = Config::logto("https://t.logto.app", "app", "app-secret")?;
    /// let key = CacheKey::for_request(&config, &TokenRequest::new("https://api").scope("read"))?;
    /// let now = SystemTime::now();
    /// let entry = CacheEntry::new("eyJ.x.y", Some("read"), now, now + Duration::from_secs(3600)).unwrap();
    /// let sealed = entry.encode(&key);
    /// assert!(!sealed.contains("eyJ.x.y"));
    /// assert_eq!(CacheEntry::decode(sealed.as_bytes(), &key), Some(entry));
    ///
    /// // Another secret for the same app and request: the same id, and nothing opens.
    /// let rotated = Config::logto("https://t.logto.app", "app", "new-secret")?;
    /// let other = CacheKey::for_request(&rotated, &TokenRequest::new("https://api").scope("read"))?;
    /// assert_eq!(other.id(), key.id());
    /// assert_eq!(CacheEntry::decode(sealed.as_bytes(), &other), None);
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn for_request(config: &Config, request: &TokenRequest) -> Result<CacheKey, Error> {
        let mut key = CacheKey::new(config.token_url(), config.app_id(), request.key());
        key.seal = Some(config.seal_key()?);
        Ok(key)
    }

    /// The key for `request_key` of `app_id` at `token_url`, sealing with `secret`: as
    /// [`for_request`](CacheKey::for_request) makes it, for the fuzz targets' fixed keys.
    #[cfg(feature = "_internal")]
    pub(crate) fn sealed(
        token_url: &str,
        app_id: &str,
        request_key: &str,
        secret: &str,
    ) -> Option<CacheKey> {
        let mut key = CacheKey::new(token_url, app_id, request_key);
        key.seal = Some(SealKey::derive(secret, token_url, app_id)?);
        Some(key)
    }

    /// `plaintext` sealed with this key's seal and associated data, for the fuzz targets.
    #[cfg(feature = "_internal")]
    pub(crate) fn seal_raw(&self, plaintext: &[u8]) -> Option<String> {
        Some(self.seal.as_ref()?.seal(&self.aad(), plaintext))
    }

    /// True when entries for this key are sealed (a key from
    /// [`for_request`](CacheKey::for_request)).
    pub fn is_sealed(&self) -> bool {
        self.seal.is_some()
    }

    /// The associated data a sealed entry is bound to: the request key, so that an entry
    /// copied under another key of the same app does not open (the seal key itself is the
    /// app's and the token URL's).
    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(16 + self.request_key.len());
        aad.extend_from_slice(b"logto-m2m entry\0");
        aad.extend_from_slice(self.request_key.as_bytes());
        aad
    }

    /// 32 lowercase hex characters that name the entry, for keys in a shared store: a
    /// hash of the token URL, app id and request key that stays the same across processes,
    /// hosts and releases. Two keys could share an id only by a hash collision, and
    /// [`CacheEntry::decode`] refuses an entry written for another key anyway.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The token URL.
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// The app id.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// Which token of this app: resource, sorted scopes and organization.
    pub fn request_key(&self) -> &str {
        &self.request_key
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheKey")
            .field("token_url", &self.token_url)
            .field("app_id", &self.app_id)
            .field("request_key", &self.request_key)
            .field("id", &self.id)
            .field("sealed", &self.seal.is_some())
            .finish()
    }
}

/// FNV-1a over the parts (each followed by NUL), twice with different offset bases, as 32
/// hex digits. Hand-written because std's hasher may change between Rust releases, and a
/// fleet may run several.
fn stable_id(parts: &[&str]) -> String {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    for part in parts {
        for &byte in part.as_bytes().iter().chain(&[0]) {
            a = (a ^ u64::from(byte)).wrapping_mul(PRIME);
            b = (b ^ u64::from(byte)).wrapping_mul(PRIME).rotate_left(29);
        }
    }
    format!("{a:016x}{b:016x}")
}

/// A token as a cache holds it: the access token, the scope the server sent, and the
/// wall-clock times its request was sent and it expires (processes and hosts share no
/// monotonic clock).
///
/// `Debug` never shows the access token.
#[derive(Clone, PartialEq, Eq)]
pub struct CacheEntry {
    access_token: String,
    scope: Option<String>,
    received_at_ms: u64,
    expires_at_ms: u64,
}

const ENTRY_VERSION: u64 = 1;

impl CacheEntry {
    /// An entry, `None` when the times are before 1970, beyond what milliseconds since then
    /// can hold, or the expiry is not after the receipt.
    pub fn new(
        access_token: &str,
        scope: Option<&str>,
        received_at: SystemTime,
        expires_at: SystemTime,
    ) -> Option<CacheEntry> {
        let entry = CacheEntry {
            access_token: access_token.to_owned(),
            scope: scope.map(str::to_owned),
            received_at_ms: unix_ms(received_at)?,
            expires_at_ms: unix_ms(expires_at)?,
        };
        (entry.expires_at_ms > entry.received_at_ms).then_some(entry)
    }

    /// An entry from times in Unix milliseconds, as stores keep them; `None` unless
    /// [plausible](CacheEntry::is_plausible).
    pub(crate) fn from_unix_ms(
        access_token: String,
        scope: Option<String>,
        received_at_ms: u64,
        expires_at_ms: u64,
    ) -> Option<CacheEntry> {
        let entry = CacheEntry {
            access_token,
            scope,
            received_at_ms,
            expires_at_ms,
        };
        entry.is_plausible().then_some(entry)
    }

    /// The access token.
    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    /// The scope the server sent with the token, if it sent one.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// When the request that got the token was sent (its lifetime starts there).
    pub fn received_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.received_at_ms)
    }

    /// When the token expires.
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.expires_at_ms)
    }

    /// The entry as text bound to `key`: [`decode`](CacheEntry::decode) with another key
    /// refuses it.
    ///
    /// With a sealed key (the store's, from [`CacheKey::for_request`]) the text is
    /// `logto-m2m:sealed:1:` and URL-safe base64 of a ChaCha20-Poly1305 ciphertext with a
    /// fresh random nonce, so two encodings of one entry differ; it says nothing of the
    /// token, its scope or its times. (Empty, which decodes as nothing, in the one case
    /// where it can't be sealed: the system's random source failing.) With a key from
    /// [`CacheKey::new`] it is one line of JSON in the clear, as below.
    ///
    /// # Example
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use logto_m2m::{CacheEntry, CacheKey};
    ///
    /// let key = CacheKey::new("https://t.logto.app/oidc/token", "app", "https://api\0read\0");
    /// let now = SystemTime::now();
    /// let entry = CacheEntry::new("eyJ.x.y", Some("read"), now, now + Duration::from_secs(3600)).unwrap();
    /// let text = entry.encode(&key);
    /// assert_eq!(CacheEntry::decode(text.as_bytes(), &key), Some(entry));
    /// let other = CacheKey::new("https://t.logto.app/oidc/token", "other-app", "https://api\0read\0");
    /// assert_eq!(CacheEntry::decode(text.as_bytes(), &other), None);
    /// ```
    pub fn encode(&self, key: &CacheKey) -> String {
        match &key.seal {
            Some(seal) => seal.seal(&key.aad(), &self.plaintext()),
            None => self.encode_clear(key),
        }
    }

    /// The entry as sealed inside a value: the two times (8 bytes each, big-endian), the
    /// scope's length (4 bytes big-endian, `u32::MAX` for no scope) and the scope, then the
    /// access token. Bytes rather than JSON: nothing has to be escaped, and only a value
    /// sealed with the secret is ever read back, yet it is checked as if anyone wrote it.
    fn plaintext(&self) -> Vec<u8> {
        let scope = self.scope.as_deref().unwrap_or("");
        let mut out = Vec::with_capacity(20 + scope.len() + self.access_token.len());
        out.extend_from_slice(&self.received_at_ms.to_be_bytes());
        out.extend_from_slice(&self.expires_at_ms.to_be_bytes());
        let scope_len = match &self.scope {
            // A scope of 4 GiB can't come from a 64 KiB answer; saturating keeps it total.
            Some(s) => u32::try_from(s.len()).unwrap_or(u32::MAX - 1),
            None => u32::MAX,
        };
        out.extend_from_slice(&scope_len.to_be_bytes());
        out.extend_from_slice(&scope.as_bytes()[..scope.len().min(scope_len as usize)]);
        out.extend_from_slice(self.access_token.as_bytes());
        out
    }

    /// [`plaintext`](CacheEntry::plaintext) read back; `None` unless well-formed and
    /// [plausible](CacheEntry::is_plausible).
    pub(crate) fn from_plaintext(bytes: &[u8]) -> Option<CacheEntry> {
        let (received, rest) = bytes.split_first_chunk::<8>()?;
        let (expires, rest) = rest.split_first_chunk::<8>()?;
        let (scope_len, rest) = rest.split_first_chunk::<4>()?;
        let (scope, token) = match u32::from_be_bytes(*scope_len) {
            u32::MAX => (None, rest),
            len => {
                let len = usize::try_from(len).ok()?;
                let (scope, token) = rest.split_at_checked(len)?;
                (Some(std::str::from_utf8(scope).ok()?.to_owned()), token)
            }
        };
        CacheEntry::from_unix_ms(
            std::str::from_utf8(token).ok()?.to_owned(),
            scope,
            u64::from_be_bytes(*received),
            u64::from_be_bytes(*expires),
        )
    }

    /// The entry as one line of JSON, in the clear, for a key that knows no secret.
    fn encode_clear(&self, key: &CacheKey) -> String {
        let mut out = String::with_capacity(256 + self.access_token.len());
        out.push_str("{\"v\":1,");
        text::push_field(&mut out, "token_url", Some(&key.token_url));
        out.push(',');
        text::push_field(&mut out, "app_id", Some(&key.app_id));
        out.push(',');
        text::push_field(&mut out, "key", Some(&key.request_key));
        out.push(',');
        self.push_fields(&mut out);
        out.push('}');
        out
    }

    /// Appends the entry's own fields: `access_token`, `scope`, `received_at_ms` and
    /// `expires_at_ms` (the token file writes them the same way).
    pub(crate) fn push_fields(&self, out: &mut String) {
        text::push_field(out, "access_token", Some(&self.access_token));
        out.push(',');
        text::push_field(out, "scope", self.scope.as_deref());
        out.push_str(&format!(
            ",\"received_at_ms\":{},\"expires_at_ms\":{}",
            self.received_at_ms, self.expires_at_ms
        ));
    }

    /// An entry written by [`encode`](CacheEntry::encode) for this very key; `None` for
    /// anything else: another key, app or token URL, another format, times that don't add
    /// up, or a token or scope that could not have come from a server (a token that is not
    /// visible ASCII, a scope with control characters).
    ///
    /// With a sealed key, only a value sealed with that key for that request opens: one
    /// tampered with, cut short, sealed with another secret or for another app, server or
    /// request, and any entry in the clear (the format before sealing), is `None`, like
    /// garbage.
    pub fn decode(bytes: &[u8], key: &CacheKey) -> Option<CacheEntry> {
        match &key.seal {
            Some(seal) => CacheEntry::from_plaintext(&seal.open(&key.aad(), bytes)?),
            None => CacheEntry::decode_clear(bytes, key),
        }
    }

    /// [`encode_clear`](CacheEntry::encode_clear)'s JSON read back.
    fn decode_clear(bytes: &[u8], key: &CacheKey) -> Option<CacheEntry> {
        let text = std::str::from_utf8(bytes).ok()?;
        let e: Encoded = mini::from_str(text).ok()?;
        let bound = e.v == ENTRY_VERSION
            && e.token_url == key.token_url
            && e.app_id == key.app_id
            && e.key == key.request_key;
        if !bound {
            return None;
        }
        CacheEntry::from_unix_ms(e.access_token, e.scope, e.received_at_ms, e.expires_at_ms)
    }

    /// Times in order and before the year 10000 (so no platform's clock arithmetic can
    /// overflow on them), a token fit for a header, a printable scope.
    pub(crate) fn is_plausible(&self) -> bool {
        const YEAR_10000_MS: u64 = 253_402_300_800_000;
        self.expires_at_ms > self.received_at_ms
            && self.expires_at_ms < YEAR_10000_MS
            && is_header_safe(&self.access_token)
            && self.scope.as_deref().is_none_or(is_printable)
    }
}

impl fmt::Debug for CacheEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheEntry")
            .field("access_token", &"[redacted]")
            .field("scope", &self.scope)
            .field("received_at_ms", &self.received_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// [`CacheEntry::encode`]'s format, as read back.
#[derive(Deserialize)]
struct Encoded {
    v: u64,
    token_url: String,
    app_id: String,
    key: String,
    access_token: String,
    scope: Option<String>,
    received_at_ms: u64,
    expires_at_ms: u64,
}

/// The refresh lock of a [`TokenCache`] for one key, held until dropped.
///
/// An implementation wraps whatever releases its lock in `Drop`: a locked file handle, a
/// connection and the value that proves who holds it.
pub struct CacheLock(#[allow(dead_code)] Box<dyn Send>); // held only for its Drop

impl CacheLock {
    /// A lock that is released when `guard` is dropped.
    pub fn new(guard: impl Send + 'static) -> CacheLock {
        CacheLock(Box::new(guard))
    }
}

impl fmt::Debug for CacheLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CacheLock")
    }
}

/// Milliseconds since 1970, `None` before then or too far ahead.
pub(crate) fn unix_ms(t: SystemTime) -> Option<u64> {
    u64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()
}

// Here rather than in token.rs, so that the token knows nothing of caches and no two
// modules import each other.
impl Token {
    /// The token as a cache entry, `None` when its times can't be written down.
    pub(crate) fn to_entry(&self) -> Option<CacheEntry> {
        CacheEntry::new(
            self.access_token(),
            self.scope.as_deref(),
            self.sent_at_wall,
            self.expires_at_system()?,
        )
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn key() -> CacheKey {
        CacheKey::new("https://x/t", "app", "r\0a b\0")
    }

    fn entry(scope: Option<&str>) -> CacheEntry {
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        CacheEntry::new("tok", scope, at, at + Duration::from_secs(3600)).unwrap()
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        // Fixed forever: hosts running different releases must name entries alike.
        assert_eq!(key().id(), "b92a3b05cf08f841d9dff0a3ebe4e4d9");
        assert_eq!(key().id().len(), 32);
        assert!(
            key()
                .id()
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(
            key().id(),
            CacheKey::new("https://x/t", "app", "r\0a b\0").id()
        );
        assert_ne!(
            key().id(),
            CacheKey::new("https://x/t", "app2", "r\0a b\0").id()
        );
        // The separator keeps the parts apart.
        assert_ne!(
            CacheKey::new("ab", "c", "").id(),
            CacheKey::new("a", "bc", "").id()
        );
    }

    #[test]
    fn encode_decode_round_trip_with_escapes() {
        for scope in [None, Some("read write"), Some("quote\" back\\slash é")] {
            let e = entry(scope);
            assert_eq!(
                CacheEntry::decode(e.encode(&key()).as_bytes(), &key()),
                Some(e)
            );
        }
    }

    #[test]
    fn decode_refuses_what_is_not_ours() {
        let text = entry(None).encode(&key());
        for other in [
            CacheKey::new("https://y/t", "app", "r\0a b\0"),
            CacheKey::new("https://x/t", "other", "r\0a b\0"),
            CacheKey::new("https://x/t", "app", "r\0a\0"),
        ] {
            assert_eq!(CacheEntry::decode(text.as_bytes(), &other), None);
        }
        for junk in [
            "",
            "{",
            "null",
            &text.replace("\"v\":1", "\"v\":2"),
            &text.replace("\"tok\"", "\"a\\r\\nb\""),
            &text.replace("null", "\"a\\u0007\""),
            &text.replace("1800003600000", "1800000000000"),
            &format!("{text} x"),
        ] {
            assert_eq!(CacheEntry::decode(junk.as_bytes(), &key()), None, "{junk}");
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let e = CacheEntry::new("canary-token-42", None, at, at + Duration::from_secs(1)).unwrap();
        assert!(!format!("{e:?}").contains("canary-token-42"));
    }

    fn sealed_key(secret: &str, request_key: &str) -> CacheKey {
        let mut key = CacheKey::new("https://x/t", "app", request_key);
        key.seal = SealKey::derive(secret, "https://x/t", "app");
        key
    }

    #[test]
    fn sealed_entries_open_for_their_key_only() {
        let key = sealed_key("canary-secret-3", "r\0a b\0");
        for scope in [None, Some(""), Some("read write"), Some("é")] {
            let e = entry(scope);
            let text = e.encode(&key);
            assert!(text.starts_with(crate::seal::PREFIX), "{text}");
            assert!(!text.contains("tok"));
            assert_eq!(CacheEntry::decode(text.as_bytes(), &key), Some(e.clone()));
            // Another secret, another request, no secret at all: nothing.
            assert_eq!(
                CacheEntry::decode(text.as_bytes(), &sealed_key("other", "r\0a b\0")),
                None
            );
            assert_eq!(
                CacheEntry::decode(text.as_bytes(), &sealed_key("canary-secret-3", "r\0a\0")),
                None
            );
            assert_eq!(CacheEntry::decode(text.as_bytes(), &self::key()), None);
            // And an entry in the clear is nothing to a sealed key.
            assert_eq!(
                CacheEntry::decode(e.encode(&self::key()).as_bytes(), &key),
                None
            );
        }
        let shown = format!("{key:?}");
        assert!(
            shown.contains("sealed: true") && !shown.contains("canary"),
            "{shown}"
        );
    }

    #[test]
    fn sealed_plaintext_is_checked_like_any_input() {
        let e = entry(Some("read"));
        assert_eq!(CacheEntry::from_plaintext(&e.plaintext()), Some(e.clone()));
        let mut p = e.plaintext();
        // The scope's length past the end, the times cut, a token that is no header value.
        p[16..20].copy_from_slice(&1000u32.to_be_bytes());
        assert_eq!(CacheEntry::from_plaintext(&p), None);
        assert_eq!(CacheEntry::from_plaintext(&e.plaintext()[..19]), None);
        let bad = CacheEntry {
            access_token: "a b".into(),
            ..e.clone()
        };
        assert_eq!(CacheEntry::from_plaintext(&bad.plaintext()), None);
        let empty = CacheEntry {
            access_token: String::new(),
            ..e
        };
        assert_eq!(CacheEntry::from_plaintext(&empty.plaintext()), None);
    }
}
