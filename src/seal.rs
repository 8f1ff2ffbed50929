//! Sealing shared cache entries: what a [`TokenStore`](crate::TokenStore) writes to a token
//! file, Redis or any [`TokenCache`](crate::TokenCache) is encrypted and authenticated, so
//! that whoever reads the cache without the app secret learns no token, and a value that
//! was tampered with, cut short or written for another key is refused.
//!
//! All the cryptography is `ring`'s (already in the default build as rustls' provider):
//!
//! - the key: HKDF-SHA256 (RFC 5869) over the app secret, with a fixed salt naming this
//!   format and, as `info`, the token URL and app id (length-prefixed, so that no two
//!   pairs run together alike). Each app and server has its own key, and a new secret
//!   makes a new key: after a rotation the old entries no longer open.
//! - each entry: ChaCha20-Poly1305 with a fresh random 96-bit nonce per write, and the
//!   request key (resource, scopes, organization) as associated data, so that an entry
//!   copied under another key of the same app does not open either. ChaCha20 runs in
//!   constant time in software on every CPU, with or without AES instructions. Random
//!   nonces are safe for far more than 2^32 writes per key; a key writes one entry per
//!   refresh.
//!
//! The sealed text is `logto-m2m:sealed:1:` and the URL-safe base64 (no padding) of nonce,
//! ciphertext and tag: ASCII, so it fits in a JSON string, a Redis value or a database
//! column as it is.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{self, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

/// What every sealed value starts with: the format and its version.
pub(crate) const PREFIX: &str = "logto-m2m:sealed:1:";

/// HKDF's salt: fixed, naming this use of the secret, so the derived key serves nothing else.
const SALT: &[u8] = b"logto-m2m cache entry seal v1";

const ALGORITHM: &aead::Algorithm = &aead::CHACHA20_POLY1305;

/// The key entries of one app at one token endpoint are sealed with: 32 bytes derived from
/// the app secret. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct SealKey([u8; 32]);

impl SealKey {
    /// The key for `app_id` at `token_url` with `secret`. `None` is never seen (HKDF fails
    /// only for outputs over 255 hash lengths, and this is one); it is there so that no
    /// failure can leave a key of zeros.
    pub(crate) fn derive(secret: &str, token_url: &str, app_id: &str) -> Option<SealKey> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(secret.as_bytes());
        let url_len = (token_url.len() as u64).to_be_bytes();
        let app_len = (app_id.len() as u64).to_be_bytes();
        let info: [&[u8]; 4] = [&url_len, token_url.as_bytes(), &app_len, app_id.as_bytes()];
        let mut key = [0u8; 32];
        // HKDF_SHA256 as the output's type asks for its own length, 32 bytes.
        prk.expand(&info, hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut key))
            .ok()?;
        Some(SealKey(key))
    }

    /// The AEAD key. `None` is never seen: ChaCha20-Poly1305 takes any 32-byte key, and
    /// callers treat it as "can't seal, can't open" rather than unwrap.
    fn aead_key(&self) -> Option<LessSafeKey> {
        UnboundKey::new(ALGORITHM, &self.0)
            .ok()
            .map(LessSafeKey::new)
    }

    /// `plaintext` sealed, bound to `aad`. Empty in the one case where it can't be done,
    /// the system's random source failing: nothing then opens, so the entry is as good as
    /// absent, and nothing is ever written in the clear.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> String {
        let Some(key) = self.aead_key() else {
            return String::new();
        };
        let mut nonce = [0u8; NONCE_LEN];
        if SystemRandom::new().fill(&mut nonce).is_err() {
            return String::new();
        }
        let mut buf = Vec::with_capacity(NONCE_LEN + plaintext.len() + ALGORITHM.tag_len());
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(plaintext);
        let tag = key.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf[NONCE_LEN..],
        );
        // Fails only for a plaintext over ChaCha20's 256 GiB limit.
        let Ok(tag) = tag else {
            return String::new();
        };
        buf.extend_from_slice(tag.as_ref());
        let mut out = String::with_capacity(PREFIX.len() + buf.len().div_ceil(3) * 4);
        out.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(&buf, &mut out);
        out
    }

    /// The plaintext of `sealed`, if it is a value [`seal`](SealKey::seal) made with this
    /// very key and `aad`, whole and unchanged; `None` for anything else.
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let text = sealed.strip_prefix(PREFIX.as_bytes())?;
        let mut buf = URL_SAFE_NO_PAD.decode(text).ok()?;
        if buf.len() < NONCE_LEN + ALGORITHM.tag_len() {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&buf[..NONCE_LEN]).ok()?;
        let plain_len = self
            .aead_key()?
            .open_in_place(nonce, Aad::from(aad), &mut buf[NONCE_LEN..])
            .ok()?
            .len();
        buf.drain(..NONCE_LEN);
        buf.truncate(plain_len);
        Some(buf)
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey([redacted])")
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn key() -> SealKey {
        SealKey::derive("app-secret-canary", "https://x/oidc/token", "app").unwrap()
    }

    #[test]
    fn opens_what_it_sealed_and_nothing_else() {
        let sealed = key().seal(b"aad", b"the plaintext");
        assert!(sealed.starts_with(PREFIX), "{sealed}");
        assert!(sealed.bytes().all(|b| b.is_ascii_graphic()));
        assert!(!sealed.contains("plaintext"));
        assert_eq!(
            key().open(b"aad", sealed.as_bytes()).as_deref(),
            Some(&b"the plaintext"[..])
        );
        // Another aad, secret, url or app: refused.
        assert_eq!(key().open(b"aae", sealed.as_bytes()), None);
        for other in [
            SealKey::derive("app-secret-canarz", "https://x/oidc/token", "app").unwrap(),
            SealKey::derive("app-secret-canary", "https://y/oidc/token", "app").unwrap(),
            SealKey::derive("app-secret-canary", "https://x/oidc/token", "app2").unwrap(),
            // The parts are length-prefixed: moving a byte between them changes the key.
            SealKey::derive("app-secret-canary", "https://x/oidc/toke", "napp").unwrap(),
        ] {
            assert_ne!(other, key());
            assert_eq!(other.open(b"aad", sealed.as_bytes()), None);
        }
    }

    #[test]
    fn each_seal_has_a_fresh_nonce() {
        let a = key().seal(b"", b"same");
        let b = key().seal(b"", b"same");
        assert_ne!(a, b);
    }

    #[test]
    fn every_flipped_byte_and_every_cut_is_refused() {
        let sealed = key().seal(b"k", b"0123456789abcdef");
        let bytes = sealed.as_bytes();
        for i in 0..bytes.len() {
            let mut flipped = bytes.to_vec();
            flipped[i] ^= 0x01;
            assert_eq!(key().open(b"k", &flipped), None, "byte {i}");
        }
        for len in 0..bytes.len() {
            assert_eq!(key().open(b"k", &bytes[..len]), None, "cut at {len}");
        }
        let mut longer = bytes.to_vec();
        longer.push(b'A');
        assert_eq!(key().open(b"k", &longer), None);
    }

    #[test]
    fn empty_plaintext_and_garbage() {
        let sealed = key().seal(b"", b"");
        assert_eq!(
            key().open(b"", sealed.as_bytes()).as_deref(),
            Some(&b""[..])
        );
        for junk in ["", PREFIX, "logto-m2m:sealed:1:!!!!", "{\"v\":1}", "\u{0}"] {
            assert_eq!(key().open(b"", junk.as_bytes()), None, "{junk:?}");
        }
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", key()), "SealKey([redacted])");
    }
}
