//! The audit log service: signs checkpoints over the entries the store
//! seals (every `checkpoint_entries` new entries or `checkpoint_interval`,
//! and at shutdown), sends each one to a webhook so a copy lives off the
//! machine, and answers the log, its checkpoints and its proofs.
//!
//! The signing key is its own file, `<data>/audit/checkpoint.key` (PKCS#8
//! Ed25519, mode 0600), made at first start; `checkpoint.pub` beside it is
//! the verifier key, whose name is the log's origin.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use glassbox_audit::merkle::{self, CompactTree};
use glassbox_audit::{Checkpoint, Entry, Hash, Signer, VerifierKey};
use glassbox_store::{AuditQuery, AuditStore, StoreError, StoredCheckpoint};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// The signing key's file in the audit directory.
pub const KEY_FILE: &str = "checkpoint.key";
/// The verifier key's file in the audit directory.
pub const PUBLIC_KEY_FILE: &str = "checkpoint.pub";
/// Leaf hashes read from the store per page while catching up.
const LEAVES_PAGE: usize = 50_000;
/// The most leaves a proof is computed over (32 MB of hashes).
pub const PROOF_LEAVES_MAX: u64 = 1_000_000;

/// `[audit]`: when checkpoints are signed and where copies go.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Sign a checkpoint once this many entries are new. Default 100.
    pub checkpoint_entries: u64,
    /// …or once this long has passed with any new entry. Default `1m`.
    #[serde(with = "glassbox_core::human_duration")]
    pub checkpoint_interval: Duration,
    /// POST each checkpoint (its signed note, `text/plain`) here; empty: none.
    pub webhook: String,
    /// Where the signing key lives; empty: `<data_dir>/audit`. Outside the
    /// data directory, a copy of the data alone cannot re-sign the log.
    pub key_dir: String,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_entries: 100,
            checkpoint_interval: Duration::from_secs(60),
            webhook: String::new(),
            key_dir: String::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("no entry {0} in the audit log yet (it has {1})")]
    Unknown(u64, u64),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Proofs computed at once; each may hold up to [`PROOF_LEAVES_MAX`] hashes.
const PROOFS_AT_ONCE: usize = 2;

/// An inclusion proof of one entry under a signed checkpoint.
#[derive(Debug, Clone)]
pub struct Inclusion {
    pub entry: Entry,
    pub checkpoint: StoredCheckpoint,
    pub proof: Vec<Hash>,
}

/// A consistency proof from the first `from` entries to a signed checkpoint.
#[derive(Debug, Clone)]
pub struct Consistency {
    pub from: u64,
    /// The root the log gives now for its first `from` entries.
    pub from_root: Hash,
    pub to: StoredCheckpoint,
    pub proof: Vec<Hash>,
}

pub struct AuditLog {
    store: Arc<dyn AuditStore>,
    signer: Signer,
    key: VerifierKey,
    config: AuditConfig,
    /// The tree over every entry read so far.
    tree: Mutex<CompactTree>,
    http: reqwest::Client,
    proofs: tokio::sync::Semaphore,
}

impl AuditLog {
    /// Opens (or makes) the signing key in `dir` and catches up with the
    /// entries the store holds.
    pub async fn open(
        store: Arc<dyn AuditStore>,
        dir: &Path,
        node: &str,
        config: AuditConfig,
    ) -> Result<Arc<Self>, String> {
        let signed = store.latest_checkpoint().await.map_err(|e| format!("cannot read the audit log: {e}"))?;
        let signer = load_or_make_key(dir, node, signed.is_some())?;
        let key = signer.verifier();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the audit webhook's client: {e}"))?;
        let tree = Mutex::new(CompactTree::default());
        let proofs = tokio::sync::Semaphore::new(PROOFS_AT_ONCE);
        let log = Self { store, signer, key, config, tree, http, proofs };
        log.catch_up().await.map_err(|e| format!("cannot read the audit log: {e}"))?;
        Ok(Arc::new(log))
    }

    /// The key checkpoints verify with.
    pub fn key(&self) -> &VerifierKey {
        &self.key
    }

    /// Reads the leaves sealed since the last call into the tree.
    async fn catch_up(&self) -> Result<(u64, Hash), StoreError> {
        let mut tree = self.tree.lock().await;
        loop {
            let leaves = self.store.audit_leaves(tree.size(), LEAVES_PAGE).await?;
            let done = leaves.len() < LEAVES_PAGE;
            leaves.into_iter().for_each(|leaf| tree.push(leaf));
            if done {
                return Ok((tree.size(), tree.root()));
            }
        }
    }

    /// Signs a checkpoint over every entry if any is new since the last
    /// one, keeps it and posts it to the webhook; the latest checkpoint.
    pub async fn checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let (size, root) = self.catch_up().await?;
        let latest = self.store.latest_checkpoint().await?;
        if size == 0 || latest.as_ref().is_some_and(|l| l.size >= size) {
            return Ok(latest);
        }
        let note = self.signer.sign(&Checkpoint { origin: self.key.name.clone(), size, root });
        let checkpoint = StoredCheckpoint { size, root, at: Utc::now(), note };
        self.store.add_checkpoint(&checkpoint).await?;
        self.post(&checkpoint);
        Ok(Some(checkpoint))
    }

    /// Sends the checkpoint to the webhook in the background: whoever asked
    /// for it does not wait on a slow receiver.
    fn post(&self, checkpoint: &StoredCheckpoint) {
        if self.config.webhook.is_empty() {
            return;
        }
        let request = self
            .http
            .post(&self.config.webhook)
            .header("content-type", "text/plain; charset=utf-8")
            .body(checkpoint.note.clone());
        let size = checkpoint.size;
        tokio::spawn(async move {
            if let Err(error) = request.send().await.and_then(reqwest::Response::error_for_status) {
                tracing::warn!(size, %error, "the audit checkpoint could not be sent to the webhook; the next one covers it");
            }
        });
    }

    /// Signs checkpoints as entries come, until `stop` resolves ([`Self::close`] signs the last).
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let poll = Duration::from_secs(1).min(self.config.checkpoint_interval);
        let mut last_signed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(poll) => {}
            }
            let signed = self.store.latest_checkpoint().await.ok().flatten().map_or(0, |c| c.size);
            let size = match self.catch_up().await {
                Ok((size, _)) => size,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the audit log; will retry");
                    continue;
                }
            };
            let due = size >= signed + self.config.checkpoint_entries.max(1)
                || (size > signed && last_signed.elapsed() >= self.config.checkpoint_interval);
            if due {
                match self.checkpoint().await {
                    Ok(_) => last_signed = tokio::time::Instant::now(),
                    Err(error) => tracing::warn!(%error, "cannot sign an audit checkpoint; will retry"),
                }
            }
        }
    }

    /// Signs the last checkpoint at shutdown, once nothing more is recorded.
    pub async fn close(&self) {
        if let Err(error) = self.checkpoint().await {
            tracing::error!(%error, "the last audit checkpoint before stopping could not be signed");
        }
    }

    pub async fn entries(&self, query: &AuditQuery) -> Result<Vec<Entry>, StoreError> {
        self.store.audit_entries(query).await
    }

    pub async fn checkpoints(&self, after: u64, limit: usize) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.store.checkpoints(after, limit).await
    }

    /// Entry `seq` and the proof that the latest checkpoint (signed now if
    /// none covers it yet) includes it.
    pub async fn prove(&self, seq: u64) -> Result<Inclusion, AuditError> {
        let query = AuditQuery { after: Some(seq.saturating_sub(1)), limit: 1, ..AuditQuery::default() };
        let entry = self.store.audit_entries(&query).await?.into_iter().find(|e| e.seq == seq);
        let checkpoint = self.checkpoint().await?;
        let size = checkpoint.as_ref().map_or(0, |c| c.size);
        let (Some(entry), Some(checkpoint)) = (entry, checkpoint) else { return Err(AuditError::Unknown(seq, size)) };
        let leaves = self.leaves(checkpoint.size).await?;
        let proof = merkle::inclusion_proof(&leaves, (seq - 1) as usize);
        Ok(Inclusion { entry, checkpoint, proof })
    }

    /// The proof that the log's first `from` entries (a checkpoint kept
    /// elsewhere, whether or not the log still holds it) are a prefix of
    /// the signed checkpoint `to` (the latest when none).
    pub async fn consistency(&self, from: u64, to: Option<u64>) -> Result<Consistency, AuditError> {
        let latest = self.checkpoint().await?.ok_or(AuditError::Unknown(from, 0))?;
        let to = match to {
            Some(size) => {
                let found = self.store.checkpoints(size.saturating_sub(1), 1).await?;
                found.into_iter().find(|c| c.size == size).ok_or_else(|| {
                    AuditError::Invalid(format!(
                        "no signed checkpoint of size {size}: list them with `glassbox audit checkpoint --all`"
                    ))
                })?
            }
            None => latest,
        };
        if from == 0 || from > to.size {
            return Err(AuditError::Invalid(format!(
                "the log has {} entries, not the {from} the kept checkpoint covers: entries were removed, or the checkpoint is of another log",
                to.size
            )));
        }
        let leaves = self.leaves(to.size).await?;
        let from_root = merkle::root(&leaves[..from as usize]);
        let proof = merkle::consistency_proof(&leaves, from as usize);
        Ok(Consistency { from, from_root, to, proof })
    }

    /// The first `size` leaf hashes, for a proof ([`PROOFS_AT_ONCE`] at a time).
    async fn leaves(&self, size: u64) -> Result<Vec<Hash>, AuditError> {
        let _permit =
            self.proofs.acquire().await.map_err(|_| AuditError::Invalid("the audit log is closing".into()))?;
        if size > PROOF_LEAVES_MAX {
            return Err(AuditError::Invalid(format!(
                "proofs are computed over at most {PROOF_LEAVES_MAX} entries; verify larger logs offline with `glassbox audit verify --data-dir`"
            )));
        }
        let mut leaves = Vec::with_capacity(size as usize);
        while (leaves.len() as u64) < size {
            let page = (size as usize - leaves.len()).min(LEAVES_PAGE);
            let more = self.store.audit_leaves(leaves.len() as u64, page).await?;
            if more.is_empty() {
                break;
            }
            leaves.extend(more);
        }
        if (leaves.len() as u64) < size {
            return Err(AuditError::Invalid(format!(
                "the log holds {} entries, fewer than its checkpoint of {size}: run `glassbox audit verify`",
                leaves.len()
            )));
        }
        Ok(leaves)
    }
}

/// The directory the audit key lives in: `key_dir` when set, else under
/// the data directory.
pub fn key_dir(data_dir: &Path, config: &AuditConfig) -> PathBuf {
    match config.key_dir.as_str() {
        "" => data_dir.join("audit"),
        dir => PathBuf::from(dir),
    }
}

/// The log's signer: the key in `dir`, made (0600) at first start, with
/// the verifier key written beside it; its name is the log's origin. A
/// missing key is made anew only while no checkpoint was signed: otherwise
/// the old checkpoints would verify no more, so it must be restored.
fn load_or_make_key(dir: &Path, node: &str, signed: bool) -> Result<Signer, String> {
    let (key_path, pub_path) = (dir.join(KEY_FILE), dir.join(PUBLIC_KEY_FILE));
    let origin = match std::fs::read_to_string(&pub_path) {
        Ok(text) => text.parse::<VerifierKey>().map_err(|e| format!("{}: {e}", pub_path.display()))?.name,
        Err(_) => format!("glassbox/{}/audit", node.replace(['+', ' ', '\n'], "-")),
    };
    let pem = match std::fs::read_to_string(&key_path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && signed => {
            return Err(format!(
                "the audit signing key {} is missing, but the audit log has checkpoints signed with it: restore it \
                 from your backup (the server will not sign with a new key, which would make the old checkpoints \
                 unverifiable)",
                key_path.display()
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => make_key(dir, &key_path)?,
        Err(e) => return Err(format!("cannot read the audit signing key {}: {e}", key_path.display())),
    };
    warn_if_readable_by_others(&key_path);
    let signer = Signer::from_pem(&origin, &pem).map_err(|e| format!("{}: {e}", key_path.display()))?;
    std::fs::write(&pub_path, format!("{}\n", signer.verifier()))
        .map_err(|e| format!("cannot write {}: {e}", pub_path.display()))?;
    Ok(signer)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(key = %path.display(), "the audit signing key can be read by others: chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

fn make_key(dir: &Path, path: &Path) -> Result<String, String> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let pem = Signer::generate_pem().map_err(|e| e.to_string())?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(pem.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.sync_all().map_err(|e| format!("cannot sync {}: {e}", path.display()))?;
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_and_kept_with_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_make_key(dir.path(), "node-1", false).unwrap();
        assert_eq!(first.verifier().name, "glassbox/node-1/audit");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Renamed node, same log: the origin stays the one the key was made for.
        let again = load_or_make_key(dir.path(), "node-2", true).unwrap();
        assert_eq!(again.verifier(), first.verifier());
    }

    #[test]
    fn a_lost_key_is_not_replaced_once_checkpoints_were_signed_with_it() {
        let dir = tempfile::tempdir().unwrap();
        load_or_make_key(dir.path(), "node-1", false).unwrap();
        std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        let refused = load_or_make_key(dir.path(), "node-1", true).err().unwrap();
        assert!(refused.contains("is missing") && refused.contains("restore it"), "{refused}");
    }
}
