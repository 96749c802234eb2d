//! The checkpointer: moves committed pages from `recorder.db`'s WAL into
//! the database file on its own thread, a little at a time.
//!
//! Why: SQLite checkpoints on the committing connection once the WAL holds
//! `wal_autocheckpoint` pages, so every few tens of megabytes one commit
//! also copied them all and fsync'd the file: a pause of milliseconds for
//! everything waiting on that commit (the tail of acknowledgement and
//! delivery latency). Passes every [`PASS_EVERY`] (more often while commits
//! wait for the disk) from a second connection copy the pages while the
//! writer goes on, so the writer's own checkpoint finds almost nothing left
//! to copy. The WAL starts over from its
//! beginning at the writer's first commit after a checkpoint that copied
//! everything, whichever connection ran it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use rusqlite::Connection;

use super::Shared;

/// How often a pass runs when no commit waits for the disk: a few
/// megabytes of WAL at 50,000 messages/s, a tenth of what the writer's
/// checkpoint threshold (32 MiB) lets grow, so that checkpoint copies a
/// few milliseconds' worth at most. Shorter copies the pages every commit
/// touches (the B-trees' right edges) and syncs both files more often:
/// +12% broker CPU per message under a QoS 0 flood at 10 ms.
const PASS_EVERY: Duration = Duration::from_millis(50);
/// How often a pass runs while commits wait for the disk (someone is
/// answered once they are on disk). A pass ends by fsyncing the database
/// file, and the syncer's fsync of the WAL waits behind that write-back on
/// the same disk: smaller passes keep that wait short. At a paced 50,000
/// QoS 1 messages/s this cut the p99 from publish to delivery by 40%.
const PASS_EVERY_WHILE_ANSWERING: Duration = Duration::from_millis(10);

/// The wait before the next pass, by whether a commit waited for the disk
/// since the last one.
fn interval(answering: bool) -> Duration {
    if answering { PASS_EVERY_WHILE_ANSWERING } else { PASS_EVERY }
}

pub(super) struct Checkpointer {
    conn: Connection,
    shared: Arc<Shared>,
    /// Closed when the writer stops.
    stop: Receiver<()>,
}

impl Checkpointer {
    pub(super) fn open(path: &Path, shared: Arc<Shared>, stop: Receiver<()>) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        // FULL: a pass fsyncs the WAL before copying and the file after.
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(Self { conn, shared, stop })
    }

    /// Runs passes until the writer stops. A failed pass is retried at the
    /// next; the writer's own checkpoints go on regardless.
    pub(super) fn run(self) {
        let mut failing = false;
        let mut every = PASS_EVERY;
        let mut answering = self.shared.commits_answering.load(Ordering::Relaxed);
        while let Err(RecvTimeoutError::Timeout) = self.stop.recv_timeout(every) {
            let now = self.shared.commits_answering.load(Ordering::Relaxed);
            every = interval(now != answering);
            answering = now;
            match self.shared.checkpoint(&self.conn, "PASSIVE").map(|_busy| ()) {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "a background checkpoint of the recorder failed; the writer's own go on");
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_come_oftener_while_commits_wait_for_their_fsync() {
        assert!(interval(true) < interval(false));
        assert_eq!(interval(false), PASS_EVERY);
    }
}
