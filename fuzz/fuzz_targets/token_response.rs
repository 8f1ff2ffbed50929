//! The token-response parser (`logto_m2m::internal::token_response`, what `request_token`
//! does with an answer) on arbitrary status and body bytes, asserting the properties in
//! `../check.rs` (shared with the stable replay in `tests/suite/fuzz_regressions.rs`). Byte 0
//! even means status 200 and the rest is the body; byte 0 odd means bytes 1..3 are the
//! status (big-endian) and the rest is the body.
#![no_main]

#[path = "../check.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
