//! The syncer: puts the writer's commits on disk on a thread of its own,
//! then answers those who waited for that (decision 0031).
//!
//! The writer commits with `synchronous=NORMAL`: a commit writes its WAL
//! frames and returns, and a crash of the process no longer loses it. The
//! events are then handed on (routed, published), and the writer goes on
//! to the next batch while this thread `fdatasync`s the WAL. One sync
//! covers every commit written before it started, so the commits made
//! while one sync runs share the next: group commit at the disk as well.
//! The WAL is written in order, so what is on disk is always a prefix of
//! what was committed.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Instant;

use super::Shared;

/// An answer that waits for the disk: called with the sync's outcome.
pub(super) type Deferred = Box<dyn FnOnce(Result<(), &str>) + Send>;

/// Commits waiting for a sync before the writer waits for room: as many
/// as it makes during one slow sync. Each holds its deferred answers.
pub(super) const SYNCS_WAITING_MAX: usize = 4096;

/// Where the writer sends each commit's deferred answers (none: a sync of
/// what nobody waits for, due after [`glassbox_store::SYNC_WITHIN`]).
pub(super) fn channel() -> (SyncSender<Vec<Deferred>>, Receiver<Vec<Deferred>>) {
    std::sync::mpsc::sync_channel(SYNCS_WAITING_MAX)
}

pub(super) struct Syncer {
    /// `recorder.db-wal`, opened at the first sync: the writer's first
    /// commit creates it, and SQLite keeps the same file while the writer's
    /// connection is open (a restart of the WAL rewrites it from the start).
    wal: Option<File>,
    path: PathBuf,
    shared: Arc<Shared>,
}

impl Syncer {
    pub(super) fn new(path: PathBuf, shared: Arc<Shared>) -> Self {
        Self { wal: None, path, shared }
    }

    /// Syncs until the writer stops, answering each round's waiters.
    pub(super) fn run(mut self, commits: Receiver<Vec<Deferred>>) {
        while let Ok(first) = commits.recv() {
            let mut waiting = first;
            while let Ok(more) = commits.try_recv() {
                waiting.extend(more);
            }
            let synced = self.sync();
            let outcome = synced.as_ref().map(|_| ()).map_err(String::as_str);
            for answer in waiting {
                answer(outcome);
            }
        }
    }

    /// One `fdatasync` of the WAL. A failure is final: the kernel may have
    /// dropped the pages it could not write, so a later sync that succeeds
    /// would not prove them on disk (PostgreSQL's "fsyncgate"). Every answer
    /// after it is a failure, until a restart replays the WAL.
    fn sync(&mut self) -> Result<(), String> {
        if let Some(failed) = self.shared.sync_failed.get() {
            return Err(failed.clone());
        }
        let wal = match self.wal.take() {
            Some(wal) => wal,
            // Writable: some systems sync only a handle opened for writing.
            None => std::fs::OpenOptions::new()
                .write(true)
                .open(&self.path)
                .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?,
        };
        let started = Instant::now();
        let synced = wal.sync_data();
        self.shared.sync_seconds.observe(started.elapsed());
        self.wal = Some(wal);
        synced.map_err(|e| {
            let failed = format!(
                "the disk failed to sync {}: {e}; nothing written since can be promised on disk, so the \
                 recorder refuses writes until the server restarts",
                self.path.display()
            );
            tracing::error!(error = %failed, "recorder sync failed");
            self.shared.mark_sync_failed(&failed);
            failed
        })
    }
}
