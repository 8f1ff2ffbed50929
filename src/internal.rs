//! INTERNAL, DO NOT USE: the entry points of the fuzz targets in `fuzz/` and of the bench,
//! behind the `_internal` feature. Not part of the API; they may change in any release.
//!
//! Four functions: what the store does with bytes from a token endpoint, and with bytes
//! from a shared cache; what the verifier's readers do with bytes; the bench's figures of
//! private parts.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Error;
use crate::cache::entry::{CacheEntry, CacheKey};
use crate::response::{self, Sent};
use crate::token::Token;
use crate::token_file;

/// The app secret the fuzz targets' keys seal with (their seeds were sealed with it).
pub const FUZZ_SECRET: &str = "fuzz-secret-not-a-real-one";

/// The token URL, app id and request key of the fuzz targets' key (the token file's seeds
/// were written for the request key `k`).
const FUZZ_KEY: (&str, &str, &str) = ("https://x/t", "app", "https://api\0read\0");
const FILE_REQUEST_KEY: &str = "k";

/// What `request_token` does with an answer of `status` and `body` (no `Retry-After`,
/// sent now, no scope asked for).
pub fn token_response(status: u16, body: &[u8]) -> Result<Token, Error> {
    response::parse_now(status, body)
}

/// The verifier's JWS and JWKS readers on arbitrary bytes, for the `jws` fuzz target:
/// true when a signature verified, which must never happen (see `fuzz/fuzz_targets/jws.rs`).
pub fn verify_parse(data: &[u8]) -> bool {
    crate::verify::fuzz(data)
}

/// Where the bytes of [`cache_input`] come from.
#[derive(Clone, Copy, Debug)]
pub enum CacheInput {
    /// A token file's bytes; the store reads its fuzz key's value from them.
    TokenFile,
    /// A shared cache's value for the fuzz key, as `RedisCache` reads it back (which
    /// anyone who can write to that Redis controls).
    Value,
    /// The plaintext inside a sealed value, sealed for the fuzz key here: what only a
    /// holder of the secret could have written, checked as if anyone had.
    Plaintext,
}

/// What a store does with `bytes` from a shared cache, for the fuzz key (sealed with
/// [`FUZZ_SECRET`]), read at a fixed moment (2027-01-15): the token, if the bytes hold one
/// for the key, fresh or not.
///
/// # Panics
/// When a property of the sealed format fails: an entry that opens is not plausible, does
/// not survive sealing again, opens for another app, server or request, or still opens
/// with one byte changed. That is what the fuzzer looks for.
pub fn cache_input(from: CacheInput, bytes: &[u8]) -> Option<Token> {
    static KEYS: OnceLock<Option<[[CacheKey; 4]; 2]>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let (url, app, request) = FUZZ_KEY;
        let key = |u, a, r| CacheKey::sealed(u, a, r, FUZZ_SECRET);
        let set = |request| {
            Some([
                key(url, app, request)?,
                key(url, "other-app", request)?,
                key("https://y/t", app, request)?,
                key(url, app, "https://api\0write\0")?,
            ])
        };
        Some([set(request)?, set(FILE_REQUEST_KEY)?])
    });
    let [values, file] = keys.as_ref()?;
    let [key, others @ ..] = match from {
        CacheInput::TokenFile => file,
        CacheInput::Value | CacheInput::Plaintext => values,
    };
    let value = match from {
        CacheInput::TokenFile => token_file::lookup(&token_file::parse(bytes)?, key.id())?
            .as_bytes()
            .to_vec(),
        CacheInput::Value => bytes.to_vec(),
        CacheInput::Plaintext => key.seal_raw(bytes).into_bytes(),
    };
    let entry = CacheEntry::decode(&value, key)?;
    check_entry(&entry, key, &value, others);
    let sent = Sent {
        at: Instant::now(),
        wall: UNIX_EPOCH + Duration::from_millis(1_800_000_000_000),
        scope: &[],
        max_lifetime: Duration::from_secs(24 * 3600),
    };
    entry.to_token(&sent)
}

/// The properties of an entry that opened from `value` with `key`.
fn check_entry(entry: &CacheEntry, key: &CacheKey, value: &[u8], others: &[CacheKey]) {
    let t = entry.access_token();
    assert!(
        !t.is_empty() && t.bytes().all(|b| (0x21..=0x7e).contains(&b)),
        "cache entry token is not header-safe: {t:?}"
    );
    assert!(
        !entry
            .scope()
            .is_some_and(|s| s.chars().any(char::is_control)),
        "cache entry scope has a control character"
    );
    assert!(entry.expires_at() > entry.sent_at(), "times out of order");
    let again = CacheEntry::decode(entry.encode(key).as_bytes(), key);
    assert_eq!(
        again.as_ref(),
        Some(entry),
        "sealing again changed the entry"
    );
    for other in others {
        assert_eq!(
            CacheEntry::decode(value, other),
            None,
            "a value sealed for one key opened with another: {other:?}"
        );
    }
    // One byte changed, where depends on the value: refused.
    let mut changed = value.to_vec();
    let i = value.iter().fold(0usize, |acc, &b| {
        acc.wrapping_mul(31).wrapping_add(b.into())
    }) % changed.len();
    changed[i] = if changed[i] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        CacheEntry::decode(&changed, key),
        None,
        "a sealed value with byte {i} changed still opened"
    );
}

/// The bench's figures of private parts: one `(name, value, unit and note)` each.
///
/// - `refresh_spread_s`: how far apart the refreshes of 100 tokens fetched in the same
///   second start (3600 s lifetime, 60 s margin: the jitter);
/// - `seal_open_us`: one entry with a 1 KiB token sealed, as a refresh writes it, and
///   opened, as a shared-cache hit reads it;
/// - `seal_key_us`: the key it seals with derived from the secret, once per secret.
pub fn figures() -> Vec<(&'static str, f64, &'static str)> {
    let margins: Vec<Duration> = (0..100)
        .map(|_| crate::store::jittered_margin(Duration::from_secs(3600), Duration::from_secs(60)))
        .collect();
    let spread = margins.iter().max().copied().unwrap_or_default()
        - margins.iter().min().copied().unwrap_or_default();
    let (url, app, request_key) = FUZZ_KEY;
    let key = CacheKey::sealed(url, app, request_key, "bench-secret-0123456789").expect("a key");
    let now = SystemTime::now();
    let token = format!("eyJhbGciOiJFUzM4NCJ9.{}.sig", "x".repeat(1000));
    let entry = CacheEntry::new(
        &token,
        Some("read:products"),
        now,
        now + Duration::from_secs(3600),
    )
    .expect("an entry");
    let seal_open = median_ns(2000, || {
        let sealed = entry.encode(&key);
        std::hint::black_box(CacheEntry::decode(sealed.as_bytes(), &key).expect("opens"));
    });
    let derive = median_ns(2000, || {
        std::hint::black_box(crate::seal::SealKey::derive(
            std::hint::black_box("bench-secret-0123456789"),
            url,
            app,
        ));
    });
    vec![
        (
            "refresh_spread_s",
            spread.as_secs_f64(),
            "s (100 tokens, 3600 s lifetime, 60 s margin)",
        ),
        (
            "seal_open_us",
            seal_open / 1000.0,
            "us (one 1 KiB-token entry sealed and opened)",
        ),
        (
            "seal_key_us",
            derive / 1000.0,
            "us (the seal key derived, once per process and secret)",
        ),
    ]
}

/// The median over 11 runs of `calls` calls of `f`, in nanoseconds per call.
fn median_ns(calls: u32, mut f: impl FnMut()) -> f64 {
    let mut runs: Vec<f64> = (0..11)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(calls)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}
