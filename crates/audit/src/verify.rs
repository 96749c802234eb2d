//! The check of a whole log, entry by entry, in one pass: every hash
//! recomputed, the chain followed, `seq` dense, and the tree's root at each
//! checkpoint's size compared with the signed one. It stops at the first
//! problem and names the entry.

use std::collections::BTreeMap;

use crate::Hash;
use crate::checkpoint::{Checkpoint, CheckpointError, VerifierKey};
use crate::entry::Entry;
use crate::merkle::CompactTree;

/// What is wrong with a log, naming the first bad entry where one can be named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("entry {seq} does not match its hash: it was edited (or moved from another place) after it was written")]
    Changed { seq: u64 },
    #[error("entry {seq} was edited and its hash rewritten: entry {next} is chained to the hash it had")]
    Rehashed { seq: u64, next: u64 },
    #[error("entry {seq}'s source or detail was edited: they do not give the digest its hash covers")]
    PersonalChanged { seq: u64 },
    #[error("entry 1 is chained to an entry before it: the log's beginning was removed, or entry 1 rewritten")]
    Start,
    #[error("entry {seq} is missing: entry {before} is followed by entry {after} (deleted?)")]
    Missing { seq: u64, before: u64, after: u64 },
    #[error("entry {seq} appears after entry {before}: entries are repeated or out of order")]
    OutOfOrder { seq: u64, before: u64 },
    #[error(
        "the first {size} entries do not give the root signed in checkpoint {size}: an entry up to {size} was changed, removed or reordered"
    )]
    Root { size: u64 },
    #[error("checkpoint {size}: {error}")]
    Checkpoint { size: u64, error: CheckpointError },
    #[error(
        "checkpoint {size} was signed over {size} entries, but the log has {have}: entries after {have} were removed"
    )]
    Truncated { size: u64, have: u64 },
}

impl Problem {
    /// The entry named, where one is.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Self::Changed { seq }
            | Self::Rehashed { seq, .. }
            | Self::PersonalChanged { seq }
            | Self::Missing { seq, .. }
            | Self::OutOfOrder { seq, .. } => Some(*seq),
            Self::Start => Some(1),
            Self::Root { .. } | Self::Checkpoint { .. } | Self::Truncated { .. } => None,
        }
    }
}

/// What a verification covered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    pub entries: u64,
    pub root: Hash,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints: u64,
    /// The largest checkpoint checked.
    pub last_checkpoint: Option<u64>,
    /// Entries whose personal fields were erased (verified through their digest).
    pub erased: u64,
}

/// Checks a log fed to it in `seq` order.
pub struct Verifier {
    key: VerifierKey,
    tree: CompactTree,
    prev: Hash,
    /// Signed notes to check, by the size they claim.
    pending: BTreeMap<u64, Vec<String>>,
    checked: u64,
    last_checkpoint: Option<u64>,
    erased: u64,
}

impl Verifier {
    /// Checks checkpoints signed by `key`.
    pub fn new(key: VerifierKey) -> Self {
        Self {
            key,
            tree: CompactTree::default(),
            prev: Hash::default(),
            pending: BTreeMap::new(),
            checked: 0,
            last_checkpoint: None,
            erased: 0,
        }
    }

    /// A signed checkpoint to check when the log reaches its size: one the
    /// log keeps, or one the operator kept off the machine.
    pub fn checkpoint(&mut self, note: &str) -> Result<(), Problem> {
        // The size it claims, to name it should it not open.
        let size = note.lines().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let opened = Checkpoint::open(note, &self.key).map_err(|error| Problem::Checkpoint { size, error })?;
        if opened.size == 0 {
            return Ok(());
        }
        self.pending.entry(opened.size).or_default().push(note.to_string());
        Ok(())
    }

    /// The next entry.
    pub fn entry(&mut self, entry: &Entry) -> Result<(), Problem> {
        let expected = self.tree.size() + 1;
        if entry.seq > expected {
            return Err(Problem::Missing { seq: expected, before: expected - 1, after: entry.seq });
        }
        if entry.seq < expected {
            return Err(Problem::OutOfOrder { seq: entry.seq, before: expected - 1 });
        }
        if entry.expected_hash() != entry.hash {
            return Err(Problem::Changed { seq: entry.seq });
        }
        if entry.prev != self.prev {
            return Err(match entry.seq {
                1 => Problem::Start,
                seq => Problem::Rehashed { seq: seq - 1, next: seq },
            });
        }
        if !entry.personal_holds() {
            return Err(Problem::PersonalChanged { seq: entry.seq });
        }
        self.erased += u64::from(entry.erased);
        self.prev = entry.hash;
        self.tree.push(entry.hash);
        self.check_due()
    }

    /// Checks the checkpoints of the size the log has now reached.
    fn check_due(&mut self) -> Result<(), Problem> {
        let size = self.tree.size();
        let Some(notes) = self.pending.remove(&size) else { return Ok(()) };
        let root = self.tree.root();
        for note in notes {
            let opened = Checkpoint::open(&note, &self.key).map_err(|error| Problem::Checkpoint { size, error })?;
            if opened.root != root {
                return Err(Problem::Root { size });
            }
            self.checked += 1;
            self.last_checkpoint = Some(size);
        }
        Ok(())
    }

    /// Ends the check: a checkpoint beyond the log's end means entries were cut off.
    pub fn finish(self) -> Result<Verified, Problem> {
        let have = self.tree.size();
        if let Some((&size, _)) = self.pending.iter().next() {
            return Err(Problem::Truncated { size, have });
        }
        Ok(Verified {
            entries: have,
            root: self.tree.root(),
            checkpoints: self.checked,
            last_checkpoint: self.last_checkpoint,
            erased: self.erased,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Signer;
    use crate::entry::tests::draft;

    const ORIGIN: &str = "glassbox/test/audit";

    fn log(n: u64) -> Vec<Entry> {
        let mut prev = Hash::default();
        (1..=n)
            .map(|seq| {
                let entry = draft(&format!("device.update.{seq}")).seal(seq, prev);
                prev = entry.hash;
                entry
            })
            .collect()
    }

    fn signed(signer: &Signer, entries: &[Entry]) -> String {
        let mut tree = CompactTree::default();
        entries.iter().for_each(|e| tree.push(e.hash));
        signer.sign(&Checkpoint { origin: ORIGIN.into(), size: tree.size(), root: tree.root() })
    }

    fn verify(signer: &Signer, entries: &[Entry], notes: &[String]) -> Result<Verified, Problem> {
        let mut verifier = Verifier::new(signer.verifier());
        for note in notes {
            verifier.checkpoint(note)?;
        }
        for entry in entries {
            verifier.entry(entry)?;
        }
        verifier.finish()
    }

    fn signer() -> Signer {
        Signer::from_pem(ORIGIN, &Signer::generate_pem().unwrap()).unwrap()
    }

    #[test]
    fn an_untouched_log_verifies_with_its_checkpoints() {
        let (signer, entries) = (signer(), log(10));
        let notes = [signed(&signer, &entries[..4]), signed(&signer, &entries)];
        let verified = verify(&signer, &entries, &notes).unwrap();
        assert_eq!((verified.entries, verified.checkpoints, verified.last_checkpoint), (10, 2, Some(10)));
    }

    #[test]
    fn an_edited_entry_is_named() {
        let (signer, mut entries) = (signer(), log(10));
        entries[4].actor = "mallory".into();
        assert_eq!(verify(&signer, &entries, &[]), Err(Problem::Changed { seq: 5 }));
    }

    #[test]
    fn an_edited_entry_with_its_hash_rewritten_is_named() {
        let (signer, mut entries) = (signer(), log(10));
        entries[4].actor = "mallory".into();
        entries[4].hash = entries[4].expected_hash();
        assert_eq!(verify(&signer, &entries, &[]), Err(Problem::Rehashed { seq: 5, next: 6 }));
    }

    #[test]
    fn a_rewritten_tail_is_caught_by_a_checkpoint_kept() {
        let (signer, entries) = (signer(), log(10));
        let kept = signed(&signer, &entries);
        let mut rewritten = entries.clone();
        let mut prev = rewritten[6].prev;
        for entry in &mut rewritten[6..] {
            entry.target = "device:other".into();
            entry.prev = prev;
            entry.hash = entry.expected_hash();
            prev = entry.hash;
        }
        assert_eq!(verify(&signer, &rewritten, &[kept]), Err(Problem::Root { size: 10 }));
    }

    #[test]
    fn a_deleted_entry_and_swapped_entries_are_named() {
        let (signer, entries) = (signer(), log(10));
        let mut deleted = entries.clone();
        deleted.remove(3);
        assert_eq!(verify(&signer, &deleted, &[]), Err(Problem::Missing { seq: 4, before: 3, after: 5 }));
        // Rows 6 and 7 exchanged, each keeping its place's seq.
        let mut swapped = entries.clone();
        swapped.swap(5, 6);
        swapped[5].seq = 6;
        swapped[6].seq = 7;
        assert_eq!(verify(&signer, &swapped, &[]), Err(Problem::Changed { seq: 6 }));
        let mut cut = entries.clone();
        let note = signed(&signer, &cut);
        cut.truncate(8);
        assert_eq!(verify(&signer, &cut, &[note]), Err(Problem::Truncated { size: 10, have: 8 }));
    }

    #[test]
    fn an_edited_detail_is_named_and_an_erased_one_is_not() {
        let (signer, mut entries) = (signer(), log(5));
        entries[1].erase();
        assert_eq!(verify(&signer, &entries, &[]).unwrap().erased, 1);
        entries[2].detail = Some(serde_json::json!({"reason": "rewritten"}));
        assert_eq!(verify(&signer, &entries, &[]), Err(Problem::PersonalChanged { seq: 3 }));
    }
}
