//! What a store writes to a [`TokenCache`](crate::TokenCache), and how: the key an entry
//! is shared under ([`CacheKey`]), the entry ([`CacheEntry`]), and its sealed encoding.
//! Crate-private: a cache stores the opaque bytes this makes under an opaque key.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::claims::Claims;
use crate::response::Sent;
use crate::seal::SealKey;
use crate::time::unix_ms;
use crate::token::{BEARER_PREFIX, Token, is_header_safe, is_printable};

/// Which token an entry is for, and the key that seals it: the token URL, the app id and
/// the request's key (resource, sorted scopes, organization, who the token acts for; see
/// `TokenRequest`). `Debug` never shows the seal key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    request_key: String,
    /// What the entry is stored under: a hash of the token URL, app id and request key.
    id: String,
    /// Derived from the app secret, the token URL and the app id.
    seal: SealKey,
}

impl CacheKey {
    /// The key a store uses for the request whose key is `request_key`: entries sealed
    /// with `seal`, the key derived (HKDF-SHA256) from the app secret as it is now, the
    /// token URL and the app id. Whoever has the secret can read the store's entries with
    /// it; a new secret makes a new key, which opens none of the old entries, under the
    /// same [`id`](CacheKey::id).
    pub(crate) fn new(token_url: &str, app_id: &str, request_key: &str, seal: SealKey) -> CacheKey {
        CacheKey {
            request_key: request_key.to_owned(),
            id: stable_id(&[token_url, app_id, request_key]),
            seal,
        }
    }

    /// The key for `request_key` of `app_id` at `token_url`, sealing with `secret`: as
    /// a store makes it, for fixed keys (fuzzing, tests).
    #[cfg(any(test, feature = "_internal"))]
    pub(crate) fn sealed(
        token_url: &str,
        app_id: &str,
        request_key: &str,
        secret: &str,
    ) -> Option<CacheKey> {
        let seal = SealKey::derive(secret, token_url, app_id)?;
        Some(CacheKey::new(token_url, app_id, request_key, seal))
    }

    /// `plaintext` sealed with this key's seal and associated data, for the fuzz targets.
    #[cfg(feature = "_internal")]
    pub(crate) fn seal_raw(&self, plaintext: &[u8]) -> String {
        self.seal.seal(&self.aad(), plaintext)
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

    /// 32 lowercase hex characters that name the entry in a shared cache: a hash of the
    /// token URL, app id and request key that stays the same across processes, hosts and
    /// releases as long as the request key's format does (it changed once, with issue 31:
    /// entries written before are not found, and cost one token request each). Two keys could share an id only by a hash collision, and
    /// [`CacheEntry::decode`] refuses an entry sealed for another key anyway.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheKey")
            .field("request_key", &self.request_key)
            .field("id", &self.id)
            .finish_non_exhaustive()
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
pub(crate) struct CacheEntry {
    access_token: String,
    scope: Option<String>,
    sent_at_ms: u64,
    expires_at_ms: u64,
}

impl CacheEntry {
    /// An entry, `None` unless [plausible](CacheEntry::is_plausible) (times before 1970 or
    /// beyond what milliseconds since then can hold are not).
    pub(crate) fn new(
        access_token: &str,
        scope: Option<&str>,
        sent_at: SystemTime,
        expires_at: SystemTime,
    ) -> Option<CacheEntry> {
        let entry = CacheEntry {
            access_token: access_token.to_owned(),
            scope: scope.map(str::to_owned),
            sent_at_ms: unix_ms(sent_at)?,
            expires_at_ms: unix_ms(expires_at)?,
        };
        entry.is_plausible().then_some(entry)
    }

    pub(crate) fn access_token(&self) -> &str {
        &self.access_token
    }

    /// The scope the server sent with the token, if it sent one.
    pub(crate) fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// When the request that got the token was sent (its lifetime starts there).
    pub(crate) fn sent_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.sent_at_ms)
    }

    /// When the token expires.
    pub(crate) fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.expires_at_ms)
    }

    /// The entry sealed for `key`: `logto-m2m:sealed:1:` and URL-safe base64 of a
    /// ChaCha20-Poly1305 ciphertext with a fresh random nonce (see `seal.rs`), so two
    /// encodings of one entry differ and neither says anything of the token, its scope or
    /// its times. Empty, which decodes as nothing, in the one case where it can't be sealed:
    /// the system's random source failing.
    pub(crate) fn encode(&self, key: &CacheKey) -> String {
        key.seal.seal(&key.aad(), &self.plaintext())
    }

    /// The entry as sealed inside a value: the two times (8 bytes each, big-endian), the
    /// scope's length (4 bytes big-endian, `u32::MAX` for no scope) and the scope, then the
    /// access token. Bytes rather than JSON: nothing has to be escaped, and only a value
    /// sealed with the secret is ever read back, yet it is checked as if anyone wrote it.
    fn plaintext(&self) -> Vec<u8> {
        let scope = self.scope.as_deref().unwrap_or("");
        let mut out = Vec::with_capacity(20 + scope.len() + self.access_token.len());
        out.extend_from_slice(&self.sent_at_ms.to_be_bytes());
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
    fn from_plaintext(bytes: &[u8]) -> Option<CacheEntry> {
        let (sent, rest) = bytes.split_first_chunk::<8>()?;
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
        let entry = CacheEntry {
            access_token: std::str::from_utf8(token).ok()?.to_owned(),
            scope,
            sent_at_ms: u64::from_be_bytes(*sent),
            expires_at_ms: u64::from_be_bytes(*expires),
        };
        entry.is_plausible().then_some(entry)
    }

    /// An entry [`encode`](CacheEntry::encode) sealed for this very key; `None` for
    /// anything else: a value tampered with, cut short, sealed with another secret or for
    /// another app, server or request, any value in the clear (the format before sealing),
    /// garbage, and what opens but could not have come from a server (times that don't add
    /// up, a token that is not visible ASCII, a scope with control characters).
    pub(crate) fn decode(bytes: &[u8], key: &CacheKey) -> Option<CacheEntry> {
        CacheEntry::from_plaintext(&key.seal.open(&key.aad(), bytes)?)
    }

    /// A token read back from a cache (every `CacheEntry` passed the parser's checks when it
    /// was made): `None` when its times don't add up at `wall` (sent in the future: the clock
    /// stepped back).
    pub(crate) fn to_token(&self, sent: &Sent<'_>) -> Option<Token> {
        let age = sent.wall.duration_since(self.sent_at()).ok()?;
        let lifetime = self
            .expires_at()
            .duration_since(self.sent_at())
            .ok()?
            .min(sent.max_lifetime);
        // The monotonic clock may not reach back that far (it starts at boot); then the
        // remaining lifetime counts from now, which ends at the same moment.
        let (sent_at, expires_in, sent_at_wall) = match sent.at.checked_sub(age) {
            Some(at) => (at, lifetime, self.sent_at()),
            None => (sent.at, lifetime.saturating_sub(age), sent.wall),
        };
        Some(Token {
            authorization: format!("{BEARER_PREFIX}{}", self.access_token()),
            expires_in,
            scope: self.scope().map(str::to_owned),
            requested_scope: sent.scope.join(" "),
            scope_claim: Claims::from_jwt(self.access_token()).map(|c| c.scope),
            sent_at,
            sent_at_wall,
        })
    }

    /// Times in order and before the year 10000 (so no platform's clock arithmetic can
    /// overflow on them), a token fit for a header, a printable scope.
    fn is_plausible(&self) -> bool {
        const YEAR_10000_MS: u64 = 253_402_300_800_000;
        self.expires_at_ms > self.sent_at_ms
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
            .field("sent_at_ms", &self.sent_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

// Here rather than in token.rs, so that the token knows nothing of caches and no two
// modules import each other; `CacheEntry::to_token` above is the way back.
impl Token {
    /// The token as a cache entry, `None` when its times can't be written down.
    pub(crate) fn to_entry(&self) -> Option<CacheEntry> {
        CacheEntry::new(
            self.access_token(),
            self.scope.as_deref(),
            self.sent_at_wall,
            self.expires_at()?,
        )
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::request::TokenRequest;

    const KEY: &str = "r\0a b\0";

    fn key(secret: &str, request_key: &str) -> CacheKey {
        CacheKey::sealed("https://x/t", "app", request_key, secret).unwrap()
    }

    fn entry(scope: Option<&str>) -> CacheEntry {
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        CacheEntry::new("tok", scope, at, at + Duration::from_secs(3600)).unwrap()
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        // Fixed forever: hosts running different releases must name entries alike.
        assert_eq!(key("s", KEY).id(), "b92a3b05cf08f841d9dff0a3ebe4e4d9");
        // The secret is not part of the id: a rotation overwrites the entry.
        assert_eq!(key("other", KEY).id(), key("s", KEY).id());
        assert_ne!(key("s", "r\0a\0").id(), key("s", KEY).id());
        // The separator keeps the parts apart.
        assert_ne!(stable_id(&["ab", "c", ""]), stable_id(&["a", "bc", ""]));
        // A request's id, pinned: hosts running different releases share entries only
        // while the request key's format stays (it changed once, with issue 31).
        let request = TokenRequest::new("https://shopping.api")
            .scope("write:products read:products")
            .organization("org-1");
        assert_eq!(
            request.key(),
            "r20:https://shopping.apis13:read:productss14:write:productso5:org-1a0:"
        );
        assert_eq!(
            key("s", request.key()).id(),
            "1391538795b07dc2eab9af4222262dd0"
        );
    }

    #[test]
    fn sealed_entries_open_for_their_key_only() {
        let key = key("canary-secret-3", KEY);
        for scope in [None, Some(""), Some("read write"), Some("quote\" é")] {
            let e = entry(scope);
            let text = e.encode(&key);
            assert!(text.starts_with(crate::seal::PREFIX), "{text}");
            assert!(!text.contains("tok"));
            assert_eq!(CacheEntry::decode(text.as_bytes(), &key), Some(e.clone()));
            // Another secret, another request: nothing.
            assert_eq!(
                CacheEntry::decode(text.as_bytes(), &self::key("other", KEY)),
                None
            );
            assert_eq!(
                CacheEntry::decode(text.as_bytes(), &self::key("canary-secret-3", "r\0a\0")),
                None
            );
        }
        let other_app = CacheKey::sealed("https://x/t", "app2", KEY, "canary-secret-3").unwrap();
        assert_eq!(
            CacheEntry::decode(entry(None).encode(&key).as_bytes(), &other_app),
            None
        );
        let shown = format!("{key:?}");
        assert!(
            !shown.contains("canary") && !shown.contains("seal"),
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
            ..e.clone()
        };
        assert_eq!(CacheEntry::from_plaintext(&empty.plaintext()), None);
        let backwards = CacheEntry {
            expires_at_ms: e.sent_at_ms,
            ..e
        };
        assert_eq!(CacheEntry::from_plaintext(&backwards.plaintext()), None);
    }

    #[test]
    fn debug_hides_the_token() {
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let e = CacheEntry::new("canary-token-42", None, at, at + Duration::from_secs(1)).unwrap();
        assert!(!format!("{e:?}").contains("canary-token-42"));
    }
}
