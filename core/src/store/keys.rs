//! The keys rows and advisory locks are stored under: the same bytes in
//! every process, whatever toolchain built it, so processes of two versions
//! side by side count into the same bucket rows and take the same locks.

use sha2::{Digest, Sha256};

/// SHA-256 of the parts, each followed by a NUL (so `["ab", "c"]` and
/// `["a", "bc"]` differ): a throttle bucket's or a pacing row's key.
pub(crate) fn digest(parts: &[&str]) -> [u8; 32] {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update(part.as_bytes());
        digest.update([0u8]);
    }
    digest.finalize().into()
}

/// The advisory-lock key of the parts: the first 8 bytes of their digest.
pub(crate) fn lock_key(parts: &[&str]) -> i64 {
    let bytes = digest(parts);
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    i64::from_be_bytes(first)
}
