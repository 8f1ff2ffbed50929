//! The verifier's readers (`logto_m2m::internal::verify_parse`): a JWKS document (byte 0
//! even) or a token's header, payload and signature (byte 0 odd), on arbitrary bytes.
//! Nothing may panic, and no signature may verify: the token side checks against a fixed
//! P-384 key whose private half nobody has. Replayed on stable by tests/fuzz_regressions.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    assert!(
        !logto_m2m::internal::verify_parse(data),
        "a signature verified"
    );
});
