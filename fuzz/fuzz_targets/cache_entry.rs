//! A shared cache's value (what `RedisCache` reads back, which anyone who can write to that
//! Redis controls) on arbitrary bytes, for the store's sealed key, and the same bytes as the
//! plaintext inside a sealed value (`logto_m2m::internal::cache_input`), asserting the
//! properties in `../check.rs` (shared with the stable replay in `tests/suite/fuzz_regressions.rs`).
#![no_main]

#[path = "../check.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check_cache_entry(data));
