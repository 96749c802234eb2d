//! The security primitives every credential shares: minting a random
//! secret, its SHA-256 (the only form stored), and comparing hashes in
//! constant time. The API's tokens and the device registry's secrets both
//! use these, so there is one implementation to review. Named tokens are
//! kept as a salted hash ([`salted_hash`]).

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A secret's SHA-256; the secret itself is never stored.
pub type SecretHash = [u8; 32];

/// A new random secret, `prefix` and 256 random bits in hex, and its hash.
/// `gbx_` names an API token, `gbxd_` a device secret.
pub fn mint(prefix: &str) -> (String, SecretHash) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("{prefix}{}", hex::encode(bytes));
    let hash = hash(secret.as_bytes());
    (secret, hash)
}

/// The SHA-256 of a presented secret.
pub fn hash(secret: &[u8]) -> SecretHash {
    Sha256::digest(secret).into()
}

/// A new random salt for a stored hash (named tokens are kept salted).
pub fn salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    salt
}

/// The SHA-256 of `salt` followed by `secret`: what a named token is stored as.
pub fn salted_hash(salt: &[u8], secret: &[u8]) -> SecretHash {
    let mut digest = Sha256::new();
    digest.update(salt);
    digest.update(secret);
    digest.finalize().into()
}

/// Whether two hashes are equal, comparing every byte: no early exit to time.
pub fn constant_time_eq(a: &SecretHash, b: &SecretHash) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `presented` is the secret whose hash is `stored`, in constant time.
pub fn matches(presented: &[u8], stored: &SecretHash) -> bool {
    constant_time_eq(&hash(presented), stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_secrets_are_random_and_verified_by_hash() {
        let (a, hash_a) = mint("gbxd_");
        let (b, _) = mint("gbxd_");
        assert_ne!(a, b);
        assert!(a.starts_with("gbxd_") && a.len() == 69);
        assert!(matches(a.as_bytes(), &hash_a));
        assert!(!matches(b.as_bytes(), &hash_a));
        assert_eq!(hash(a.as_bytes()), hash_a);
    }
}
