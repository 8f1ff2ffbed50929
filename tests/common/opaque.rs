//! What a `TokenCache` is given by a store, stood in for: opaque keys and values (a cache
//! stores bytes under a key, whatever they say), for the caches' own tests.
#![allow(dead_code)] // each test binary uses its part

use std::time::SystemTime;

/// A value as a store would hand it to the cache (the cache stores bytes, whatever they
/// say), and when its token expires.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub value: Vec<u8>,
    pub expires_at: SystemTime,
}

/// An opaque key, as a store makes them: 32 hex characters from the parts.
pub fn key_of(token_url: &str, app_id: &str, request: &str) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut a = DefaultHasher::new();
    (token_url, app_id, request).hash(&mut a);
    let mut b = DefaultHasher::new();
    (request, app_id, token_url).hash(&mut b);
    format!("{:016x}{:016x}", a.finish(), b.finish())
}
