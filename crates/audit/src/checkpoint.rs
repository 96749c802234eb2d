//! Signed checkpoints: the log's size and root, signed with Ed25519 in the
//! C2SP `tlog-checkpoint` format (a `signed-note`), so standard tooling can
//! read them and a copy kept off the machine proves what the log held.
//!
//! ```text
//! glassbox/node-1/audit
//! 1042
//! mMvN1pJ3bB7c…=
//!
//! — glassbox/node-1/audit q3v8b…
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

use crate::Hash;

/// The signature algorithm byte of an Ed25519 note key (C2SP signed-note).
const ED25519_ALG: u8 = 0x01;

/// A tree head: the log called `origin` had `size` entries with `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("not a checkpoint: {0}")]
    Malformed(String),
    #[error("no signature by {0} on the checkpoint")]
    Unsigned(String),
    #[error("the signature by {0} does not verify: the checkpoint was altered or signed by another key")]
    BadSignature(String),
    #[error("the checkpoint is of log {found:?}, not {expected:?}")]
    OtherLog { expected: String, found: String },
    #[error("bad key: {0}")]
    Key(String),
}

impl Checkpoint {
    /// The signed part: origin, size and root, one per line.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root.0))
    }

    fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        let malformed = |why: &str| CheckpointError::Malformed(why.to_string());
        let mut lines = body.lines();
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or_else(|| malformed("no origin line"))?;
        let size = lines.next().and_then(|s| s.parse().ok()).ok_or_else(|| malformed("no tree size on line 2"))?;
        let root = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| Hash::from_slice(&r))
            .ok_or_else(|| malformed("no base64 SHA-256 root on line 3"))?;
        Ok(Self { origin: origin.to_string(), size, root })
    }

    /// Reads a signed note and checks `key`'s signature on it and that it
    /// is of `key`'s log.
    pub fn open(note: &str, key: &VerifierKey) -> Result<Self, CheckpointError> {
        let (body, signatures) = note
            .split_once("\n\n")
            .map(|(b, s)| (format!("{b}\n"), s))
            .ok_or_else(|| CheckpointError::Malformed("no blank line before the signatures".into()))?;
        let checkpoint = Self::parse_body(&body)?;
        if checkpoint.origin != key.name {
            return Err(CheckpointError::OtherLog { expected: key.name.clone(), found: checkpoint.origin });
        }
        let signature = signatures
            .lines()
            .filter_map(|line| line.strip_prefix("\u{2014} "))
            .filter_map(|line| line.split_once(' '))
            .filter(|(name, _)| *name == key.name)
            .filter_map(|(_, sig)| B64.decode(sig).ok())
            .find(|sig| sig.len() == 68 && sig[..4] == key.key_hash)
            .ok_or_else(|| CheckpointError::Unsigned(key.to_string()))?;
        UnparsedPublicKey::new(&ED25519, &key.public)
            .verify(body.as_bytes(), &signature[4..])
            .map_err(|_| CheckpointError::BadSignature(key.name.clone()))?;
        Ok(checkpoint)
    }
}

/// The first four bytes of `SHA-256(name || "\n" || 0x01 || public key)`.
fn key_hash(name: &str, public: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519_ALG]);
    h.update(public);
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The checkpoint signing key (Ed25519), named after the log.
pub struct Signer {
    name: String,
    pair: Ed25519KeyPair,
}

impl Signer {
    /// A new key, as PKCS#8 PEM (what the key file holds).
    pub fn generate_pem() -> Result<String, CheckpointError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| CheckpointError::Key("could not generate an Ed25519 key".into()))?;
        let body = B64.encode(doc.as_ref());
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
        Ok(format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n")))
    }

    /// The key in `pem` (PKCS#8 Ed25519, e.g. `openssl genpkey -algorithm ed25519`), signing for log `name`.
    pub fn from_pem(name: &str, pem: &str) -> Result<Self, CheckpointError> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = B64.decode(body.trim()).map_err(|e| CheckpointError::Key(format!("not PEM: {e}")))?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|e| CheckpointError::Key(format!("not a PKCS#8 Ed25519 key: {e}")))?;
        Ok(Self { name: name.to_string(), pair })
    }

    /// The checkpoint as a signed note.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        let body = checkpoint.body();
        let signature = self.pair.sign(body.as_bytes());
        let mut blob = key_hash(&self.name, self.pair.public_key().as_ref()).to_vec();
        blob.extend_from_slice(signature.as_ref());
        format!("{body}\n\u{2014} {} {}\n", self.name, B64.encode(blob))
    }

    /// The key that verifies this signer's checkpoints.
    pub fn verifier(&self) -> VerifierKey {
        let public = self.pair.public_key().as_ref().to_vec();
        VerifierKey { name: self.name.clone(), key_hash: key_hash(&self.name, &public), public }
    }
}

/// A checkpoint verifier key, written `<name>+<key hash hex>+<base64(0x01 || public key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    pub name: String,
    key_hash: [u8; 4],
    public: Vec<u8>,
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut blob = vec![ED25519_ALG];
        blob.extend_from_slice(&self.public);
        write!(f, "{}+{}+{}", self.name, hex::encode(self.key_hash), B64.encode(blob))
    }
}

impl std::str::FromStr for VerifierKey {
    type Err = CheckpointError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| CheckpointError::Key(format!("{why}: expected NAME+HASH+BASE64KEY"));
        // A key name has no `+`; the base64 key may.
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("not three parts"));
        };
        let blob = B64.decode(key).map_err(|_| bad("the key is not base64"))?;
        let [ED25519_ALG, public @ ..] = blob.as_slice() else { return Err(bad("not an Ed25519 key")) };
        if public.len() != 32 {
            return Err(bad("an Ed25519 key has 32 bytes"));
        }
        let key = Self { name: name.to_string(), key_hash: key_hash(name, public), public: public.to_vec() };
        if hex::encode(key.key_hash) != hash {
            return Err(bad("the key hash does not match the name and key"));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::from_pem("glassbox/test/audit", &Signer::generate_pem().unwrap()).unwrap()
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_key_only() {
        let signer = signer();
        let checkpoint = Checkpoint { origin: "glassbox/test/audit".into(), size: 42, root: Hash([9; 32]) };
        let note = signer.sign(&checkpoint);
        let key: VerifierKey = signer.verifier().to_string().parse().unwrap();
        assert_eq!(Checkpoint::open(&note, &key).unwrap(), checkpoint);
        let other = Signer::from_pem("glassbox/test/audit", &Signer::generate_pem().unwrap()).unwrap();
        assert!(matches!(Checkpoint::open(&note, &other.verifier()), Err(CheckpointError::Unsigned(_))));
        let altered = note.replacen("\n42\n", "\n41\n", 1);
        assert!(matches!(Checkpoint::open(&altered, &key), Err(CheckpointError::BadSignature(_))));
    }

    #[test]
    fn the_note_has_the_c2sp_shape() {
        let signer = signer();
        let note = signer.sign(&Checkpoint { origin: "glassbox/test/audit".into(), size: 1, root: Hash::default() });
        let lines: Vec<&str> = note.lines().collect();
        assert_eq!(lines[0], "glassbox/test/audit");
        assert_eq!(lines[1], "1");
        assert_eq!(lines[3], "");
        assert!(lines[4].starts_with("\u{2014} glassbox/test/audit "));
    }

    #[test]
    fn a_malformed_key_or_note_is_refused_with_why() {
        assert!("nonsense".parse::<VerifierKey>().is_err());
        let key = signer().verifier();
        assert!(matches!(Checkpoint::open("just one line", &key), Err(CheckpointError::Malformed(_))));
        assert!(Signer::from_pem("x", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
    }
}
