//! The indexer: keeps the secondary indexes (correlation, device, type,
//! source) in their own file, on its own thread, behind the writer.
//!
//! Why a second file: SQLite has one writer per file, and index upkeep is
//! most of the cost of an append. Splitting it off lets the durable append
//! (one B-tree) and the index upkeep (four) run on two cores at once. The
//! indexes are derived data: `synchronous=OFF` is enough, and after a crash
//! the indexer re-reads recent events from `recorder.db` ([`catch_up`]).
//!
//! Readers that need an index wait until it has caught up with every append
//! acknowledged before their query started, so a client always finds the
//! events it was told are recorded.

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use glassbox_core::{EventId, RecordedEvent, first_id_at};
use rusqlite::{CachedStatement, Connection, Transaction, params};
use tokio::sync::mpsc;

use super::{Shared, id_bytes, micros};

/// Work for the indexer, in commit order.
pub(super) enum IndexCommand {
    /// Index these newly recorded events; `seq` numbers the batch.
    Index { seq: u64, events: Vec<Arc<RecordedEvent>> },
    /// Retention deleted these events.
    Purge { keys: Vec<KeyRow> },
}

/// An event's index keys, as retention reads them before deleting it.
pub(super) struct KeyRow {
    pub id: [u8; 16],
    pub correlationid: String,
    pub device: Option<String>,
    pub ty: String,
    pub source: String,
}

/// Attempts at one index transaction before the indexer gives up.
const INDEX_ATTEMPTS: u32 = 5;

/// Batches waiting for the indexer; the writer waits (backpressure) when full.
pub(super) const QUEUE_BATCHES_MAX: usize = 256;

/// After a crash, events received this long before the watermark are
/// indexed again (idempotently), covering commits that raced the watermark.
const CATCH_UP_MARGIN_MICROS: i64 = 60_000_000;

pub(super) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "page_size", 8192)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Derived data: no fsync (fsyncs here halved append throughput by
    // competing with the record's). A process crash loses nothing (the OS
    // has the writes); after any unclean stop the file is checked at open
    // and rebuilt from recorder.db if damaged (power loss).
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -262144)?; // 256 MiB: the hot ends of the key tables
    Ok(())
}

/// Indexes events recorded since the watermark (all of them for a new index
/// file); returns how many were missing. Runs at open, before the writer
/// accepts anything.
pub(super) fn catch_up(index: &mut Connection, recorder: &Connection) -> rusqlite::Result<usize> {
    let watermark: i64 = index.query_row("SELECT coalesce(max(received_at), 0) FROM watermark", [], |r| r.get(0))?;
    // Ids carry their mint time, so "received since" is an id range on the primary key.
    let since = DateTime::from_timestamp_micros(watermark.saturating_sub(CATCH_UP_MARGIN_MICROS)).unwrap_or_default();
    let mut scan =
        recorder.prepare("SELECT id, received_at, correlationid, device, type, source FROM events WHERE id >= ?1")?;
    let mut rows = scan.query([&id_bytes(first_id_at(since))[..]])?;
    let tx = index.transaction()?;
    let mut keys = Keys::new(&tx)?;
    let mut count = 0;
    let mut newest = watermark;
    while let Some(row) = rows.next()? {
        let id: [u8; 16] = row.get(0)?;
        newest = newest.max(row.get(1)?);
        count += keys.insert(
            &id,
            &row.get::<_, String>(2)?,
            row.get::<_, Option<String>>(3)?.as_deref(),
            &row.get::<_, String>(4)?,
            &row.get::<_, String>(5)?,
        )? as usize;
    }
    keys.watermark(newest)?;
    drop(keys);
    tx.commit()?;
    Ok(count)
}

pub(super) struct Indexer {
    conn: Connection,
    shared: Arc<Shared>,
    /// Written at a clean stop; its absence at open means "check the file".
    clean_marker: std::path::PathBuf,
}

impl Indexer {
    pub(super) fn new(conn: Connection, shared: Arc<Shared>, clean_marker: std::path::PathBuf) -> Self {
        Self { conn, shared, clean_marker }
    }

    /// Runs until the writer is gone and the queue is drained.
    pub(super) fn run(mut self, mut commands: mpsc::Receiver<IndexCommand>) {
        while let Some(first) = commands.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < QUEUE_BATCHES_MAX {
                match commands.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            self.apply_until_done(&batch);
        }
        // A clean stop: make the file whole and say so, so the next open can skip the check.
        let clean = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").is_ok() && !self.shared.index_failed();
        if clean && let Err(e) = std::fs::write(&self.clean_marker, b"") {
            tracing::warn!(error = %e, "could not mark the index as cleanly closed; the next start will check it");
        }
    }

    /// Index writes only fail on a broken or full disk. Retry a few times;
    /// then give up for this run: the writer stops feeding the index (it
    /// must never block on it), readiness reports it, and the next start
    /// catches the index up from its watermark.
    fn apply_until_done(&mut self, batch: &[IndexCommand]) {
        if self.shared.index_failed() {
            return;
        }
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=INDEX_ATTEMPTS {
            match self.apply(batch) {
                Ok(()) => return,
                Err(e) if attempt == INDEX_ATTEMPTS => {
                    tracing::error!(error = %e, "recorder index upkeep failed; queries miss new events until a restart rebuilds it");
                    *self.shared.index_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "recorder index update failed; retrying");
                    std::thread::sleep(delay);
                    delay *= 2;
                }
            }
        }
    }

    fn apply(&mut self, batch: &[IndexCommand]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        let mut keys = Keys::new(&tx)?;
        let mut last_seq = None;
        let mut newest = None;
        for command in batch {
            match command {
                IndexCommand::Index { seq, events } => {
                    for recorded in events {
                        let e = &recorded.event;
                        keys.insert(&id_bytes(e.id), &e.correlationid, e.device.as_deref(), &e.ty, &e.source)?;
                        newest = newest.max(recorded.states.first().map(|s| micros(&s.at)));
                    }
                    last_seq = Some(*seq);
                }
                IndexCommand::Purge { keys: rows } => rows.iter().try_for_each(|row| keys.remove(row))?,
            }
        }
        if let Some(newest) = newest {
            keys.watermark(newest)?;
        }
        drop(keys);
        tx.commit()?;
        if let Some(seq) = last_seq {
            self.shared.indexed.send_replace(seq);
        }
        Ok(())
    }
}

/// The index tables' statements, prepared once per transaction.
struct Keys<'tx> {
    tx: &'tx Transaction<'tx>,
    correlation: CachedStatement<'tx>,
    remove: [CachedStatement<'tx>; 4],
    device: CachedStatement<'tx>,
    ty: CachedStatement<'tx>,
    source: CachedStatement<'tx>,
}

impl<'tx> Keys<'tx> {
    fn new(tx: &'tx Transaction<'tx>) -> rusqlite::Result<Self> {
        Ok(Self {
            tx,
            correlation: tx.prepare_cached("INSERT OR IGNORE INTO by_correlation VALUES (?1, ?2)")?,
            device: tx.prepare_cached("INSERT OR IGNORE INTO by_device VALUES (?1, ?2)")?,
            ty: tx.prepare_cached("INSERT OR IGNORE INTO by_type VALUES (?1, ?2)")?,
            source: tx.prepare_cached("INSERT OR IGNORE INTO by_source VALUES (?1, ?2)")?,
            remove: [
                tx.prepare_cached("DELETE FROM by_correlation WHERE correlationid = ?1 AND id = ?2")?,
                tx.prepare_cached("DELETE FROM by_device WHERE device = ?1 AND id = ?2")?,
                tx.prepare_cached("DELETE FROM by_type WHERE type = ?1 AND id = ?2")?,
                tx.prepare_cached("DELETE FROM by_source WHERE source = ?1 AND id = ?2")?,
            ],
        })
    }

    /// Indexes one event; returns whether it was not indexed before.
    ///
    /// A chain's first event (its correlation id is its own id: every
    /// device message without a `correlationid` property) gets no
    /// `by_correlation` row: readers find it by its id (`read::chain`,
    /// `read::query`). That is one B-tree insert in four saved for most
    /// of what devices send.
    fn insert(
        &mut self,
        id: &[u8; 16],
        correlation: &str,
        device: Option<&str>,
        ty: &str,
        source: &str,
    ) -> rusqlite::Result<bool> {
        if !starts_chain(id, correlation) {
            self.correlation.execute(params![correlation, &id[..]])?;
        }
        let id = &id[..];
        if let Some(device) = device {
            self.device.execute(params![device, id])?;
        }
        let added = self.ty.execute(params![ty, id])? > 0;
        self.source.execute(params![source, id])?;
        Ok(added)
    }

    fn remove(&mut self, row: &KeyRow) -> rusqlite::Result<()> {
        let id = &row.id[..];
        let [correlation, device, ty, source] = &mut self.remove;
        correlation.execute(params![row.correlationid, id])?;
        if let Some(d) = &row.device {
            device.execute(params![d, id])?;
        }
        ty.execute(params![row.ty, id])?;
        source.execute(params![row.source, id])?;
        Ok(())
    }

    fn watermark(&mut self, received_at: i64) -> rusqlite::Result<()> {
        self.tx.execute("INSERT OR REPLACE INTO watermark (one, received_at) VALUES (1, ?1)", [received_at])?;
        Ok(())
    }
}

/// Whether `correlation` is the event's own id: the event starts its chain.
pub(super) fn starts_chain(id: &[u8; 16], correlation: &str) -> bool {
    correlation.len() == 26 && correlation.parse::<EventId>().is_ok_and(|c| id_bytes(c) == *id)
}
