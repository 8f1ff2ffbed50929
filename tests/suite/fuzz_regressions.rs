//! Replays the fuzz target's inputs on stable, in plain `cargo test`.
//!
//! The properties live in `fuzz/check.rs`, which the fuzz target compiles too, so an input
//! fails here exactly as it failed under libFuzzer, without nightly or libFuzzer. Two kinds
//! of input are replayed:
//!
//! - every file under `fuzz/regressions/<target>/`: crashes the fuzzer found and
//!   hand-written hardening cases (copy a new crash file there to keep it fixed);
//! - every file under `fuzz/seeds/<target>/`: the realistic bodies the corpus starts from.
//!
//! Inputs too large to commit (100,000 nested brackets, a 1 MiB token) are built below, one
//! named test each.

#[path = "../../fuzz/check.rs"]
mod check;

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

/// The replay function for each fuzz target, by the name of its folder.
fn target_check(target: &str) -> fn(&[u8]) {
    match target {
        "token_response" => check::check,
        "token_file" => check::check_token_file,
        "cache_entry" => check::check_cache_entry,
        "jws" => check_jws,
        "json_array" => check::check_json_array,
        "link_header" => check::check_link_header,
        other => panic!("no replay for fuzz target {other:?}: add it to target_check"),
    }
}

/// The `jws` target's property (`fuzz/fuzz_targets/jws.rs`): the verifier's readers never
/// panic and no signature verifies.
fn check_jws(data: &[u8]) {
    assert!(
        !logto_m2m::internal::verify_parse(data),
        "a signature verified"
    );
}

/// Runs every file under `fuzz/<kind>/<target>/` through its target's check and fails
/// naming each file that panicked. Returns how many files ran.
fn replay(kind: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind);
    let mut ran = 0;
    let mut failed = Vec::new();
    for target_dir in sorted_entries(&root) {
        let target = target_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let check = target_check(&target);
        for file in sorted_entries(&target_dir) {
            let data = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            // The panic hook still prints the property that failed; this adds the file.
            if panic::catch_unwind(|| check(&data)).is_err() {
                failed.push(file.display().to_string());
            }
            ran += 1;
        }
    }
    assert!(failed.is_empty(), "fuzz inputs failed: {failed:#?}");
    ran
}

/// The entries of `dir`, sorted so that failures come in a stable order.
fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    paths.sort();
    paths
}

#[test]
fn regressions_replay() {
    // The hand-written cases alone are two dozen; zero would mean the folder moved.
    assert!(replay("regressions") >= 20);
}

#[test]
fn seeds_replay() {
    assert!(replay("seeds") >= 20);
}

#[test]
fn input_format() {
    assert_eq!(check::split(b""), None);
    assert_eq!(check::split(b" {}"), Some((200, &b"{}"[..])));
    assert_eq!(check::split(b"\x00"), Some((200, &b""[..])));
    assert_eq!(check::split(b"!\x01\x91{}"), Some((401, &b"{}"[..])));
    assert_eq!(check::split(b"!\x01\xad"), Some((429, &b""[..])));
    // Odd and too short for a status: skipped rather than guessed.
    assert_eq!(check::split(b"!\x01"), None);
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

const DEPTH: usize = 100_000;

/// 100,000 unclosed `[` in a field we ignore: a recursive JSON parser would overflow the
/// stack here; this one must say the body is not valid JSON.
#[test]
fn deep_brackets_unclosed_in_ignored_field() {
    let body = format!(r#"{{"x":{}"#, "[".repeat(DEPTH));
    assert!(check::check_response(200, body.as_bytes()).is_err());
}

/// The same nesting closed again, in a field we ignore: the token is still good.
#[test]
fn deep_brackets_closed_in_ignored_field() {
    let body = format!(
        r#"{{"x":{},"access_token":"t","token_type":"Bearer"}}"#,
        nested(DEPTH)
    );
    let token = check::check_response(200, body.as_bytes()).unwrap();
    assert_eq!(token.access_token(), "t");
}

/// The nesting as the `access_token`'s value: an error, not a token.
#[test]
fn deep_brackets_closed_in_access_token() {
    let body = format!(
        r#"{{"access_token":{},"token_type":"Bearer"}}"#,
        nested(DEPTH)
    );
    assert!(check::check_response(200, body.as_bytes()).is_err());
}

/// Deep nesting in an error body, closed and unclosed, and as the `error` itself.
#[test]
fn deep_brackets_in_error_bodies() {
    let closed = format!(r#"{{"error":"invalid_client","data":{}}}"#, nested(DEPTH));
    let err = check::check_response(400, closed.as_bytes()).unwrap_err();
    assert_eq!(err.oauth_error(), Some("invalid_client"));
    let unclosed = format!(r#"{{"error":"invalid_client","data":{}"#, "[".repeat(DEPTH));
    assert!(check::check_response(400, unclosed.as_bytes()).is_err());
    let as_error = format!(r#"{{"error":{}}}"#, nested(DEPTH));
    assert!(check::check_response(401, as_error.as_bytes()).is_err());
    let objects = format!("{}{}", r#"{"a":"#.repeat(DEPTH), "}".repeat(DEPTH));
    assert!(check::check_response(429, objects.as_bytes()).is_err());
}

/// A 1 MiB access token of visible ASCII is a token like any other (the 64 KiB body cap
/// belongs to `request_token`, not to the parser).
#[test]
fn one_mib_access_token() {
    let access_token = "A".repeat(1 << 20);
    let body = format!(r#"{{"access_token":"{access_token}","token_type":"Bearer"}}"#);
    let token = check::check_response(200, body.as_bytes()).unwrap();
    assert_eq!(token.access_token().len(), 1 << 20);
}

/// 1 MiB of server text in every field an error shows, with line breaks and escapes mixed
/// in: the message stays one short line.
#[test]
fn one_mib_error_text() {
    let text = "ab\\r\\ncd\\u001b[0m é ".repeat((1 << 20) / 20);
    let body = format!(
        r#"{{"error":"{text}","error_description":"{text}","error_uri":"{text}","code":"{text}","message":"{text}"}}"#
    );
    assert!(check::check_response(400, body.as_bytes()).is_err());
    assert!(check::check_response(429, body.as_bytes()).is_err());
    let body = format!(r#"{{"access_token":"t","token_type":"{text}"}}"#);
    assert!(check::check_response(200, body.as_bytes()).is_err());
}

/// The cache entry seeds open for the fuzz key, so the target explores the accepting
/// paths: a sealed value, and the plaintext inside one.
#[test]
fn cache_entry_seed_is_accepted() {
    use logto_m2m::internal::{CacheInput, cache_input};
    let seed = |name: &str| {
        fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/seeds/cache_entry")
                .join(name),
        )
        .unwrap()
    };
    // Fresh at the fixed moment the entry point reads at.
    let opened = cache_input(CacheInput::Value, &seed("sealed_fresh")).expect("a sealed entry");
    assert_eq!(opened.scope(), Some("read"));
    let plain = cache_input(CacheInput::Plaintext, &seed("plaintext_fresh")).expect("an entry");
    assert_eq!(plain.access_token(), opened.access_token());
    let none = cache_input(CacheInput::Plaintext, &seed("plaintext_no_scope")).expect("no scope");
    assert_eq!(none.access_token(), "opaque-token");
    // A value is not a plaintext, nor the other way round.
    assert!(cache_input(CacheInput::Plaintext, &seed("sealed_fresh")).is_none());
    assert!(cache_input(CacheInput::Value, &seed("plaintext_fresh")).is_none());
}

/// The token file seed is a fresh token for the key the fuzz entry point looks up, so the
/// target explores the accepting path too.

#[test]
fn token_file_seed_is_accepted() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/token_file/fresh");
    let data = fs::read(path).unwrap();
    let token = logto_m2m::internal::cache_input(logto_m2m::internal::CacheInput::TokenFile, &data)
        .expect("a token");
    assert_eq!(token.scope(), Some("read:products"));
}
