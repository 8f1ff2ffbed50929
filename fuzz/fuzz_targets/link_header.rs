//! The command's `Link` header reader and URL resolution (`call --paginate`:
//! `src/bin/logto-m2m/link.rs`) on arbitrary bytes, asserting the properties in
//! `../check.rs` (shared with the stable replay in `tests/suite/fuzz_regressions.rs`).
#![no_main]

#[path = "../check.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check_link_header(data));
