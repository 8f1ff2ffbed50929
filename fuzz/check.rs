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

use logto_m2m::internal::{CacheInput, cache_input, token_response};
use logto_m2m::{Error, Token};

// The command's readers of what a list's pages send (`logto-m2m call --paginate`), compiled
// here from its own files: they use nothing of the command but std.
#[path = "../src/bin/logto-m2m/json_array.rs"]
pub mod json_array;
#[path = "../src/bin/logto-m2m/link.rs"]
pub mod link;

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

/// The token file parser (`TokenStore::cache_file`) on arbitrary bytes, reading the fuzz
/// key's value and opening it: never panics, the sealed format's properties hold (asserted
/// inside `internal::cache_input`), and a token it hands out is header-safe like one from
/// the server.
pub fn check_token_file(data: &[u8]) {
    if let Some(token) = cache_input(CacheInput::TokenFile, data) {
        check_cached_token(&token);
    }
}

/// A shared cache's value (what `RedisCache` reads back, which anyone who can write to that
/// Redis controls) on arbitrary bytes, and the same bytes as the plaintext inside a value
/// sealed for the fuzz key (what only a holder of the secret could write). Never panics;
/// what opens is plausible, survives sealing again, opens for no other app, server or
/// request, nor once one of its bytes is changed (asserted inside `internal::cache_input`).
pub fn check_cache_entry(data: &[u8]) {
    for from in [CacheInput::Value, CacheInput::Plaintext] {
        if let Some(token) = cache_input(from, data) {
            check_cached_token(&token);
        }
    }
}

fn check_cached_token(token: &Token) {
    let t = token.access_token();
    assert!(!t.is_empty(), "empty token from the cache");
    assert!(
        t.bytes().all(|b| (0x21..=0x7e).contains(&b)),
        "token from the cache is not header-safe: {t:?}"
    );
}

/// The `json_array` target: `json_array::items` (which finds the items of a page of a list,
/// to print them byte for byte) on arbitrary bytes. Never panics, and:
///
/// - what it calls an array is one: the items are in order, non-empty, apart, and what lies
///   between them is the array's own syntax (`[`, `,`, `]`, white space, a leading BOM);
/// - each item is one whole JSON value: `[item]` has exactly that one item;
/// - miniserde, an independent parser (non-recursive too), agrees: what it reads as an array
///   of n values has n items here, and our items put back together read as an array of as
///   many values there (leaving aside `\u` escapes and numbers beyond an `f64`: miniserde
///   refuses a lone surrogate and `1e400`, which RFC 8259's grammar allows);
/// - the items do not depend on where the text sits: the same text after a space has the
///   same items, one byte further.
pub fn check_json_array(data: &[u8]) {
    let items = json_array::items(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(miniserde::json::Value::Array(values)) = miniserde::json::from_str(text) {
            let found = items.as_ref().map(Vec::len);
            assert_eq!(
                found,
                Some(values.len()),
                "miniserde reads an array of {}",
                values.len()
            );
        }
    }
    let Some(items) = items else {
        return;
    };
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    // The syntax between the items.
    let mut at = if data.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let gap = |from: usize, to: usize, sep: u8| {
        let g = &data[from..to];
        assert_eq!(g.iter().filter(|b| !is_space(b)).count(), 1, "gap {g:?}");
        assert!(g.contains(&sep), "gap {g:?} has no {:?}", sep as char);
    };
    for (i, item) in items.iter().enumerate() {
        assert!(item.start < item.end && item.end <= data.len(), "{item:?}");
        assert!(item.start >= at, "items overlap or go back: {items:?}");
        let bytes = &data[item.clone()];
        assert!(!is_space(&bytes[0]) && !is_space(&bytes[bytes.len() - 1]));
        gap(at, item.start, if i == 0 { b'[' } else { b',' });
        at = item.end;
        // One whole value, alone.
        let mut alone = b"[".to_vec();
        alone.extend_from_slice(bytes);
        alone.push(b']');
        let whole = 1..1 + bytes.len();
        assert_eq!(json_array::items(&alone), Some(Vec::from([whole])));
    }
    if items.is_empty() {
        let rest: Vec<u8> = data[at..]
            .iter()
            .copied()
            .filter(|b| !is_space(b))
            .collect();
        assert_eq!(rest, b"[]", "an empty array");
    } else {
        gap(at, data.len(), b']');
    }
    // Put back together, miniserde reads as many values.
    let joined: Vec<&[u8]> = items.iter().map(|r| &data[r.clone()]).collect();
    let joined = format!(
        "[{}]",
        joined
            .iter()
            .map(|b| String::from_utf8_lossy(b))
            .collect::<Vec<_>>()
            .join(",")
    );
    if !joined.contains("\\u") && !beyond_f64(&joined) {
        match miniserde::json::from_str(&joined) {
            Ok(miniserde::json::Value::Array(values)) => assert_eq!(values.len(), items.len()),
            _ => panic!("miniserde refuses the items put back together: {joined:?}"),
        }
    }
    // One byte further, the same items.
    let mut shifted = vec![b' '];
    shifted.extend_from_slice(data);
    if !data.starts_with(b"\xEF\xBB\xBF") {
        let moved: Vec<_> = items.iter().map(|r| r.start + 1..r.end + 1).collect();
        assert_eq!(json_array::items(&shifted), Some(moved));
    }
}

/// Whether `text` may hold a number miniserde refuses as too large for an `f64` (it errs
/// rather than give infinity): any run of number characters past 1e300. Runs inside strings
/// count too, which only makes the check skip a little more.
fn beyond_f64(text: &str) -> bool {
    text.split(|c: char| !matches!(c, '0'..='9' | '-' | '+' | '.' | 'e' | 'E'))
        .filter_map(|run| run.parse::<f64>().ok())
        .any(|n| n.is_nan() || n.abs() > 1e300)
}

/// The `link_header` target: `link::find` on arbitrary header values (the input's lines)
/// and `link::resolve` of what it finds against a page's url. Never panics; a target found
/// is a piece of the input that stood between `<` and `>`; a resolved url is absolute, at
/// the page's scheme unless the target named its own, and takes a `page` parameter.
pub fn check_link_header(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Some(target) = link::find(text.lines(), "next") else {
        return;
    };
    assert!(
        text.contains(&format!("<{target}>")),
        "{target:?} is not from the input"
    );
    let base = "https://h.example/api/users?page_size=20";
    if let Some(url) = link::resolve(base, &target) {
        assert!(url.contains("://"), "{url:?}");
        assert!(!url.contains('#'), "a fragment is never sent: {url:?}");
        let paged = link::with_query_param(&url, "page", "2")
            .unwrap_or_else(|| panic!("a resolved url the library can't read: {url:?}"));
        assert_eq!(link::query_param(&paged, "page"), Some("2"), "{paged:?}");
    }
}
