//! The audit log's storage: entries sealed by the store in the commit that
//! records their change's event (see [`crate::Ingress::with_audit`]), read
//! back filtered or in order, and the signed checkpoints over them. Entries
//! are never deleted: the recorder's retention does not touch them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use glassbox_audit::{Entry, Hash};

use crate::StoreError;

/// Which entries to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub actor: Option<String>,
    /// An action (`device.create`) or a noun's every action (`device.*`).
    pub action: Option<String>,
    pub target: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// Only entries after this `seq`.
    pub after: Option<u64>,
    /// Only entries before this `seq`.
    pub before: Option<u64>,
    /// At most this many; the newest first when `newest_first`.
    pub limit: usize,
    pub newest_first: bool,
}

/// A checkpoint as kept: its size, root and signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub root: Hash,
    pub at: DateTime<Utc>,
    /// The C2SP signed note.
    pub note: String,
}

/// Where the audit log is kept.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Entries matching `query`, in `seq` order (or newest first).
    async fn audit_entries(&self, query: &AuditQuery) -> Result<Vec<Entry>, StoreError>;

    /// The leaf hashes of entries `after + 1 ..`, at most `limit`, in order:
    /// what the tree is computed from.
    async fn audit_leaves(&self, after: u64, limit: usize) -> Result<Vec<Hash>, StoreError>;

    /// Keeps a signed checkpoint (a second one of the same size is ignored).
    async fn add_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError>;

    /// Checkpoints of size above `after`, smallest first, at most `limit`.
    async fn checkpoints(&self, after: u64, limit: usize) -> Result<Vec<StoredCheckpoint>, StoreError>;

    /// The newest checkpoint, if any.
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError>;
}
