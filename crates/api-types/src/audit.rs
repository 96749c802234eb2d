//! `/api/v1/audit`: the tamper-evident log of changes, its signed
//! checkpoints, and proofs over them. Entries are `glassbox_audit::Entry`,
//! answered as the log keeps them, so a client recomputes every hash.

use chrono::{DateTime, Utc};
use glassbox_audit::{Entry, Hash};
use serde::{Deserialize, Serialize};

/// `GET /api/v1/audit`'s answer: entries in `seq` order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<Entry>,
    /// Pass as `after` for the next page; null on the last.
    pub next: Option<u64>,
}

/// A signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointView {
    /// The log's name, the note's first line.
    pub origin: String,
    /// Entries it covers: `1..=size`.
    pub size: u64,
    /// The RFC 6962 tree root over them (hex).
    pub root: Hash,
    pub at: DateTime<Utc>,
    /// The C2SP signed note: keep a copy of it off the machine.
    pub note: String,
}

/// `GET /api/v1/audit/checkpoints`' answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointList {
    pub checkpoints: Vec<CheckpointView>,
    /// The key the notes verify with: `NAME+HASH+BASE64KEY`.
    pub key: String,
    /// Pass as `after` for the next page; null on the last.
    pub next: Option<u64>,
}

/// `GET /api/v1/audit/{seq}/proof`'s answer: the entry and its audit path
/// to the root of a signed checkpoint (RFC 9162 §2.1.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub entry: Entry,
    /// The leaf's index in the tree: `seq - 1`.
    pub index: u64,
    pub checkpoint: CheckpointView,
    pub proof: Vec<Hash>,
    pub key: String,
}

/// `GET /api/v1/audit/consistency`'s answer: proof that the log's first
/// `from` entries (a checkpoint kept elsewhere) are a prefix of checkpoint
/// `to` (RFC 9162 §2.1.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    pub from: u64,
    /// The root the log gives now for its first `from` entries: equal to the
    /// kept checkpoint's unless they changed.
    pub from_root: Hash,
    pub to: CheckpointView,
    pub proof: Vec<Hash>,
    pub key: String,
}
