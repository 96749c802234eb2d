//! The audit log's model: who changed what, where and when, kept so that any
//! later edit, deletion or reordering shows.
//!
//! - [`changes`]: which recorded events are changes, and the [`Draft`] of
//!   each one's entry (actor, action, target, detail).
//! - [`entry`]: an [`Entry`] sealed with its `seq` and the hash of the one
//!   before it; its canonical encoding and leaf hash.
//! - [`merkle`]: the RFC 6962 tree over the leaves, with inclusion and
//!   consistency proofs.
//! - [`checkpoint`]: signed tree heads in the C2SP `tlog-checkpoint` format
//!   (Ed25519 signed notes).
//! - [`verify`]: the streaming check of a whole log against its checkpoints.
//!
//! No I/O: the store seals and keeps entries, a service signs checkpoints.

pub mod changes;
pub mod checkpoint;
pub mod entry;
pub mod merkle;
pub mod verify;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use changes::{ACTIONS, draft_for, is_change};
pub use checkpoint::{Checkpoint, CheckpointError, Signer, VerifierKey};
pub use entry::{Auth, Draft, Entry};
pub use verify::{Problem, Verified, Verifier};

/// A SHA-256 hash, written as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

impl std::str::FromStr for Hash {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s).map_err(|e| format!("not a hex hash: {e}"))?;
        Self::from_slice(&bytes).ok_or_else(|| format!("a hash has 32 bytes, not {}", bytes.len()))
    }
}

impl Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
