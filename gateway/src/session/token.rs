//! Resume tokens: the secret that proves a reconnecting client owns a session.
//!
//! A session id alone travels in logs, agent frames and load-balancer stickiness, so it must
//! not be enough to take a session over. The greeting hands out 128 random bits; the server
//! keeps only their hash (a leaked memory dump or debug print cannot resume anyone) and
//! compares hashes in constant time (response timing tells nothing about the token).

use blake2::{Blake2s256, Digest};
use rand::Rng;

/// Random bytes in a token: 128 bits, out of reach of guessing.
const TOKEN_BYTES: usize = 16;

/// Longest token accepted in a query; anything longer cannot be ours and is not hashed.
pub const MAX_TOKEN_LEN: usize = 64;

/// A fresh token (32 lowercase hex characters) and its hash.
pub fn generate() -> (String, [u8; 32]) {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let hash = hash(&token);
    (token, hash)
}

pub fn hash(token: &str) -> [u8; 32] {
    Blake2s256::digest(token.as_bytes()).into()
}

/// A token hash as kept in the durable log (hex).
pub fn hash_to_hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash back from [`hash_to_hex`]; `None` when it is not 64 hex digits.
pub fn hash_from_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Whether `token` hashes to `expected`, without an early exit on the first differing byte.
pub fn matches(expected: &[u8; 32], token: &str) -> bool {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return false;
    }
    let got = hash(token);
    let diff = expected
        .iter()
        .zip(got.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_only_their_own_hash_matches() {
        let (a, ha) = generate();
        let (b, _) = generate();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(matches(&ha, &a));
        assert!(!matches(&ha, &b));
        assert!(!matches(&ha, ""));
        assert!(!matches(&ha, &"a".repeat(MAX_TOKEN_LEN + 1)));
    }
}
