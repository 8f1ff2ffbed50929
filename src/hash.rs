//! Hashing and random numbers, for the crate's maps and names.

use std::hash::Hasher;

use ring::rand::{SecureRandom, SystemRandom};

/// The keys are already hashes, so the map's hasher passes them through: a lookup costs
/// no hashing.
#[derive(Default)]
pub(crate) struct PrecomputedHash(u64);

impl Hasher for PrecomputedHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by a `u64` key; this keeps the hasher total anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// 64 bits from the system's random source (ring's `SystemRandom`); `None` when it fails.
pub(crate) fn random_u64() -> Option<u64> {
    let mut bytes = [0u8; 8];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(u64::from_le_bytes(bytes))
}
