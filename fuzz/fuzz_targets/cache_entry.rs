//! A shared cache's value (`CacheEntry::decode`: what `RedisCache` reads back, which anyone
//! who can write to that Redis controls) on arbitrary bytes, for a key in the clear and a
//! sealed one, and the same bytes as the plaintext inside a sealed value, asserting the
//! properties in `../check.rs` (shared with the stable replay in
//! `tests/suite/fuzz_regressions.rs`).
#![no_main]

#[path = "../check.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check_cache_entry(data));
