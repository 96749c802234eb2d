//! The recorder's fsync, on a thread of its own. The writer commits with
//! `synchronous=NORMAL` (the WAL written, not flushed) and hands each batch
//! whose answers promise durability here; this thread fsyncs the WAL — once
//! for every batch waiting — and only then answers them. Meanwhile the
//! writer commits the next batch: fsyncs overlap with writes, and a record
//! the platform makes about its own work never waits behind a device
//! message's fsync. The WAL is written in order, so an fsync covers every
//! commit before it.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Instant;

use super::Shared;
use super::writer::{Command, Outcome, fail_all, reply_all};

/// Batches committed and waiting for their fsync; beyond this the writer
/// waits before committing more (the disk is the bottleneck then).
pub(super) const QUEUE_BATCHES_MAX: usize = 1024;

/// A committed batch to answer once the WAL is on disk (none: a sync of
/// what the platform committed without one, due by now).
pub(super) struct Job {
    pub started: Instant,
    pub batch: Vec<Command>,
    pub outcomes: Vec<Outcome>,
}

pub(super) struct Syncer {
    wal: PathBuf,
    dir: PathBuf,
    file: Option<File>,
    shared: Arc<Shared>,
}

impl Syncer {
    /// Starts the thread; jobs go to the returned sender, and dropping it
    /// ends the thread once every job is answered.
    pub(super) fn start(
        wal: PathBuf,
        dir: PathBuf,
        shared: Arc<Shared>,
    ) -> std::io::Result<(SyncSender<Job>, std::thread::JoinHandle<()>)> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_BATCHES_MAX);
        let syncer = Self { wal, dir, file: None, shared };
        let thread = std::thread::Builder::new().name("recorder-sync".into()).spawn(move || syncer.run(rx))?;
        Ok((tx, thread))
    }

    fn run(mut self, jobs: Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            let mut waiting = vec![first];
            waiting.extend(jobs.try_iter());
            let synced = self.sync();
            if let Err(e) = &synced {
                let message = format!("the recorder's write-ahead log could not be synced to disk: {e}");
                if self.shared.mark_failed(&message) {
                    tracing::error!(error = %e, "recorder fsync failed; the batches waiting for it are refused");
                }
            }
            for job in waiting {
                match &synced {
                    Ok(()) => {
                        self.shared.committed(job.started.elapsed(), true);
                        reply_all(job.batch, job.outcomes);
                    }
                    Err(e) => fail_all(job.batch, &format!("the record could not be synced to disk: {e}")),
                }
            }
        }
    }

    /// fsyncs the WAL (opened on first use, when a commit has created it,
    /// with the directory that holds it synced once).
    fn sync(&mut self) -> std::io::Result<()> {
        if self.file.is_none() {
            let file = OpenOptions::new().read(true).write(true).open(&self.wal)?;
            File::open(&self.dir)?.sync_all()?;
            self.file = Some(file);
        }
        self.file.as_ref().map_or(Ok(()), File::sync_data)
    }
}
