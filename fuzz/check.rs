//! The properties the `token_response` fuzz target asserts, in one place.
//!
//! Two crates compile this file: the fuzz target (`fuzz_targets/token_response.rs`, nightly,
//! under libFuzzer) and the stable replay test (`tests/suite/fuzz_regressions.rs` in the main
//! crate), each with `#[path = ...] mod check;`. So a saved input fails in `cargo test`
//! exactly as it failed under the fuzzer, and the main crate never depends on libFuzzer.
//!
//! Input format: byte 0 picks the status.
//!
//! - byte 0 even: status 200, the body is everything after byte 0. Half of all inputs are
//!   therefore plain 200 bodies, the parser's largest branch.
//! - byte 0 odd: the status is bytes 1..3 as a big-endian `u16`, the body is everything
//!   after byte 2. An odd input shorter than 3 bytes is skipped.
//!
//! The committed seeds start with a space (0x20, even) for 200 and with `!` (0x21, odd)
//! plus two status bytes otherwise, so the 200 ones read as text.

// Each fuzz target and the replay test use only their own part of this file.
#![allow(dead_code)]

use logto_m2m::internal::token_response;
use logto_m2m::{Error, Token};

/// Longest `Display` text an error may have, in bytes: server text can't make a message
/// grow with the body. An OAuth error shows five server fields; descriptions are cut at
/// 1 KiB and codes at 256 bytes (src/error.rs), which keeps the worst case
/// (`regressions/token_response/oauth_error_all_fields_long`, once 5.2 KiB) under this.
pub const MAX_DISPLAY_LEN: usize = 4 * 1024;

/// Splits a fuzz input into status and body, as described in the module docs.
pub fn split(data: &[u8]) -> Option<(u16, &[u8])> {
    match data {
        [first, body @ ..] if first % 2 == 0 => Some((200, body)),
        [_, hi, lo, body @ ..] => Some((u16::from_be_bytes([*hi, *lo]), body)),
        // Empty, or odd and too short to hold a status.
        _ => None,
    }
}

/// Runs the parser on one fuzz input and panics if a property fails.
pub fn check(data: &[u8]) {
    if let Some((status, body)) = split(data) {
        // The result is checked inside; the fuzzer has no use for it.
        let _ = check_response(status, body);
    }
}

/// Parses `body` as an answer with `status`, panics if a property fails, and returns the
/// result for tests that want to say more about it.
pub fn check_response(status: u16, body: &[u8]) -> Result<Token, Error> {
    let result = token_response(status, body);
    match &result {
        Ok(token) => {
            // "Any other status is an error" (the parser's docs, src/response.rs): a 4xx body
            // that happens to hold an access_token must never become a token.
            assert!((200..=299).contains(&status), "http {status} gave a token");
            let access_token = token.access_token();
            assert!(!access_token.is_empty(), "empty access_token accepted");
            // The token goes into an Authorization header: visible ASCII only, so no
            // space, CR, LF or other byte can split or forge a header.
            if let Some(bad) = access_token.bytes().find(|b| !(0x21..=0x7e).contains(b)) {
                panic!("access_token accepted with byte {bad:#04x}");
            }
            assert!(
                token.authorization().strip_prefix("Bearer ") == Some(access_token),
                "authorization() is not \"Bearer \" + access_token()"
            );
        }
        Err(err) => {
            let text = err.to_string();
            // Error text ends up in logs and terminals: one line, nothing a terminal
            // interprets (ESC of ANSI sequences, CR, ...). `{text:?}` escapes it for the
            // panic message, so the report itself stays readable.
            assert!(
                !text.chars().any(char::is_control),
                "error display has a control character: {text:?}"
            );
            assert!(
                text.len() <= MAX_DISPLAY_LEN,
                "error display is {} bytes, over {MAX_DISPLAY_LEN}",
                text.len()
            );
        }
    }
    result
}

/// The token file parser (`TokenStore::cache_file`) on arbitrary bytes: never panics, and a
/// token it hands out is header-safe like one from the server.
pub fn check_token_file(data: &[u8]) {
    if let Some(token) = logto_m2m::internal::token_file(data) {
        let t = token.access_token();
        assert!(!t.is_empty(), "empty token from the file");
        assert!(
            t.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "token from the file is not header-safe: {t:?}"
        );
        assert_eq!(token.authorization(), format!("Bearer {t}"));
    }
}

/// The key `check_cache_entry` decodes for; the seeds are written for it (the sealed ones
/// with `logto_m2m::internal::FUZZ_SECRET`).
pub const CACHE_KEY: (&str, &str, &str) = ("https://x/t", "app", "https://api\u{0}read\u{0}");

/// The keys of `check_cache_entry`: the fuzz key in the clear (`CacheKey::new`) and sealed
/// (as a store makes it), and sealed keys of another app, server and request, which must
/// open nothing the fuzz key's seal made.
struct Keys {
    clear: logto_m2m::CacheKey,
    sealed: logto_m2m::CacheKey,
    others: Vec<logto_m2m::CacheKey>,
}

fn keys() -> &'static Keys {
    use logto_m2m::internal::sealed_key;
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let (url, app, request) = CACHE_KEY;
        let sealed = |u, a, r| sealed_key(u, a, r).expect("a sealed key");
        Keys {
            clear: logto_m2m::CacheKey::new(url, app, request),
            sealed: sealed(url, app, request),
            others: vec![
                sealed(url, "other-app", request),
                sealed("https://y/t", app, request),
                sealed(url, app, "https://api\u{0}write\u{0}"),
            ],
        }
    })
}

/// A shared cache's value (`CacheEntry::decode`, what Redis hands back, which anyone who can
/// write to that Redis controls) on arbitrary bytes, three ways:
///
/// - as a value for a key in the clear (`CacheKey::new`) and for the store's sealed key:
///   never panics, and an entry it accepts is plausible and survives encode then decode;
/// - as the plaintext inside a sealed value, as only a holder of the secret could write it
///   (`internal::seal_plaintext`): never panics, an entry it gives is plausible, and that
///   value is bound to its key: another app's, server's or request's key opens nothing, nor
///   does the key itself once a byte of the value is changed.
pub fn check_cache_entry(data: &[u8]) {
    let keys = keys();
    for key in [&keys.clear, &keys.sealed] {
        if let Some(entry) = logto_m2m::CacheEntry::decode(data, key) {
            check_entry(&entry, key);
        }
    }
    let value = logto_m2m::internal::seal_plaintext(&keys.sealed, data).expect("sealed");
    let Some(entry) = logto_m2m::CacheEntry::decode(value.as_bytes(), &keys.sealed) else {
        return;
    };
    check_entry(&entry, &keys.sealed);
    for other in &keys.others {
        assert_eq!(
            logto_m2m::CacheEntry::decode(value.as_bytes(), other),
            None,
            "a value sealed for one key opened with another: {other:?}"
        );
    }
    assert_eq!(
        logto_m2m::CacheEntry::decode(value.as_bytes(), &keys.clear),
        None,
        "a sealed value read as one in the clear"
    );
    // Change one byte, chosen by the input, of the value: it no longer opens.
    let mut changed = value.into_bytes();
    let i = data.iter().fold(0usize, |acc, &b| {
        acc.wrapping_mul(31).wrapping_add(b.into())
    });
    let i = i % changed.len();
    changed[i] = if changed[i] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        logto_m2m::CacheEntry::decode(&changed, &keys.sealed),
        None,
        "a sealed value with byte {i} changed still opened"
    );
}

/// What every decoded entry must be: a header-safe token, a printable scope, times in
/// order, and the same entry again after encode then decode with its key.
fn check_entry(entry: &logto_m2m::CacheEntry, key: &logto_m2m::CacheKey) {
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
    assert!(
        entry.expires_at() > entry.received_at(),
        "times out of order"
    );
    let again = logto_m2m::CacheEntry::decode(entry.encode(key).as_bytes(), key);
    assert_eq!(
        again.as_ref(),
        Some(entry),
        "encode then decode changed the entry"
    );
}
