//! The indexer: keeps the secondary indexes (correlation, device, type,
//! source) in their own file, on its own thread, behind the writer.
//!
//! Why a second file: SQLite has one writer per file, and index upkeep is
//! most of the cost of an append. Splitting it off lets the durable append
//! (one B-tree) and the index upkeep run on two cores at once. The
//! indexes are derived data: `synchronous=OFF` is enough, and after a crash
//! the indexer re-reads recent events from `recorder.db` ([`catch_up`]).
//!
//! Device, type and source are indexed by *span*, not by event: one row per
//! key and run of its events in a block of up to [`BLOCK_EVENTS`] events,
//! holding the run's lowest and highest id (decision 0026). A run ends
//! where the key's next event is more than [`SPAN_GAP_EVENTS`] events or
//! [`SPAN_MILLIS_MAX`] away. A batch of 1,024 messages from four devices is
//! a dozen rows, not 3,072; a reader scans each span's ids in `events` and
//! filters there (`read::span_rows`).
//! Correlations stay one row per event: a chain's events are few and far
//! apart, and the first of each is not indexed at all.
//!
//! Readers that need an index wait until it has caught up with every append
//! acknowledged before their query started, so a client always finds the
//! events it was told are recorded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use glassbox_core::{EventId, RecordedEvent, first_id_at};
use rusqlite::{CachedStatement, Connection, Transaction, params};
use tokio::sync::mpsc;

use super::codec;
use super::{Shared, id_bytes, micros};

/// Work for the indexer, in commit order.
pub(super) enum IndexCommand {
    /// Index these newly recorded events; `seq` numbers the batch.
    Index { seq: u64, events: Vec<Arc<RecordedEvent>> },
    /// Retention deleted these events.
    Purge { keys: Vec<KeyRow> },
}

impl IndexCommand {
    /// Events it indexes or removes.
    fn events(&self) -> usize {
        match self {
            Self::Index { events, .. } => events.len(),
            Self::Purge { keys } => keys.len(),
        }
    }
}

/// An event's index keys, as retention reads them before deleting it.
pub(super) struct KeyRow {
    pub id: [u8; 16],
    pub correlationid: String,
    pub device: Option<String>,
    pub ty: String,
    pub source: String,
}

/// The columns [`KeyRow::read`] takes, in its order.
pub(super) const KEY_COLUMNS: &str = "id, received_at, event";

impl KeyRow {
    /// The keys of an `events` row selected as [`KEY_COLUMNS`], and its
    /// receive time; `Err` inside for a stored event that does not decode,
    /// which callers pass over (with a warning) rather than stop at.
    pub(super) fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<(Self, i64), codec::Undecodable>> {
        let id: [u8; 16] = row.get(0)?;
        let received_at: i64 = row.get(1)?;
        let event = EventId::from_bytes(id);
        let keys = match codec::keys(event, received_at, row.get_ref(2)?.as_blob()?) {
            Ok(keys) => keys,
            Err(e) => return Ok(Err(e)),
        };
        let key_row = Self {
            id,
            correlationid: keys.correlationid(event),
            device: keys.device.map(str::to_string),
            ty: keys.ty.to_string(),
            source: keys.source.to_string(),
        };
        Ok(Ok((key_row, received_at)))
    }
}

/// Attempts at one index transaction before the indexer gives up.
const INDEX_ATTEMPTS: u32 = 5;

/// Batches waiting for the indexer; the writer waits (backpressure) when full.
pub(super) const QUEUE_BATCHES_MAX: usize = 256;

/// Longest the indexer waits for more commits before it indexes fewer
/// than a block's worth of events, unless a query waits for it. Each index
/// transaction writes its touched pages, span rows and watermark once:
/// indexed commit by commit, small commits (flat-out QoS 1 MQTT, about a
/// hundred events each) cost the indexer three times its share of
/// the broker's CPU at large ones.
const LINGER: Duration = Duration::from_millis(10);
/// How often a lingering indexer looks for more commits (a query that
/// starts waiting wakes it at once).
const LINGER_STEP: Duration = Duration::from_millis(1);

/// Events per block: the most one span row stands for.
pub(super) const BLOCK_EVENTS: usize = 1024;

/// Events of other keys a span may step over between two of its own: a
/// reader scans at most this many rows of other keys per event it finds,
/// so a key with few events in a busy block gets a span per event.
pub(super) const SPAN_GAP_EVENTS: usize = 32;

/// How far apart in mint time a span's first and last ids may be. Readers
/// bound their walk of a key's spans by it: a span ending this much after
/// a page's upper bound cannot reach below it.
pub(super) const SPAN_MILLIS_MAX: u64 = 1000;

/// The keys indexed by span, each with its table (`key`, `last`, `first`).
pub(super) const SPAN_TABLES: [&str; 3] = ["device_spans", "type_spans", "source_spans"];

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
/// file), again where they already were; returns how many it read. Runs at open, before the writer
/// accepts anything.
pub(super) fn catch_up(index: &mut Connection, recorder: &Connection) -> rusqlite::Result<usize> {
    let watermark: i64 = index.query_row("SELECT coalesce(max(received_at), 0) FROM watermark", [], |r| r.get(0))?;
    // Ids carry their mint time, so "received since" is an id range on the primary key.
    let since = DateTime::from_timestamp_micros(watermark.saturating_sub(CATCH_UP_MARGIN_MICROS)).unwrap_or_default();
    let mut scan = recorder.prepare(&format!("SELECT {KEY_COLUMNS} FROM events WHERE id >= ?1"))?;
    let mut rows = scan.query([&id_bytes(first_id_at(since))[..]])?;
    let tx = index.transaction()?;
    let mut keys = Keys::new(&tx)?;
    let mut count = 0;
    let mut newest = watermark;
    while let Some(row) = rows.next()? {
        let (key, received_at) = match KeyRow::read(row)? {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(error = %e, "not indexing an event that does not decode");
                continue;
            }
        };
        newest = newest.max(received_at);
        keys.insert(&key.id, &key.correlationid, key.device.as_deref(), &key.ty, &key.source)?;
        count += 1;
    }
    keys.watermark(newest)?;
    keys.finish()?;
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
        let _ = self.shared.indexer.set(std::thread::current());
        while let Some(first) = commands.blocking_recv() {
            let batch = self.gather(first, &mut commands, std::time::Instant::now() + LINGER);
            self.apply_until_done(&batch);
        }
        // A clean stop: make the file whole and say so, so the next open can skip the check.
        let clean = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").is_ok() && !self.shared.index_failed();
        if clean && let Err(e) = std::fs::write(&self.clean_marker, b"") {
            tracing::warn!(error = %e, "could not mark the index as cleanly closed; the next start will check it");
        }
    }

    /// `first` and what follows it until `deadline`, a block's worth of
    /// events, a full queue, a waiting query or the writer's stop.
    fn gather(
        &self,
        first: IndexCommand,
        commands: &mut mpsc::Receiver<IndexCommand>,
        deadline: std::time::Instant,
    ) -> Vec<IndexCommand> {
        let mut events = first.events();
        let mut batch = vec![first];
        loop {
            // Read before draining: what a waiting query needs was queued before it waited.
            let waited_for = self.shared.index_waited_for();
            while batch.len() < QUEUE_BATCHES_MAX {
                match commands.try_recv() {
                    Ok(command) => {
                        events += command.events();
                        batch.push(command);
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return batch,
                }
            }
            let enough = batch.len() >= QUEUE_BATCHES_MAX || events >= BLOCK_EVENTS;
            if enough || waited_for || std::time::Instant::now() >= deadline {
                return batch;
            }
            std::thread::park_timeout(LINGER_STEP);
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
        // In id order, not commit order: a commit holds one connection's
        // messages after another's, minted over the same milliseconds, and
        // a span's gap bound is only a bound on what readers scan (its id
        // range) when block positions follow ids.
        let mut fresh: Vec<&RecordedEvent> = Vec::new();
        for command in batch {
            match command {
                IndexCommand::Index { seq, events } => {
                    fresh.extend(events.iter().map(Arc::as_ref));
                    last_seq = Some(*seq);
                }
                IndexCommand::Purge { keys: rows } => keys.remove(rows)?,
            }
        }
        fresh.sort_unstable_by_key(|recorded| recorded.event.id);
        for recorded in fresh {
            let e = &recorded.event;
            keys.insert(&id_bytes(e.id), &e.correlationid, e.device.as_deref(), &e.ty, &e.source)?;
            newest = newest.max(recorded.states.first().map(|s| micros(&s.at)));
        }
        if let Some(newest) = newest {
            keys.watermark(newest)?;
        }
        keys.finish()?;
        tx.commit()?;
        if let Some(seq) = last_seq {
            self.shared.indexed.send_replace(seq);
        }
        Ok(())
    }
}

/// The index tables' statements, prepared once per transaction, and the
/// spans of the block being indexed.
struct Keys<'tx> {
    tx: &'tx Transaction<'tx>,
    correlation: CachedStatement<'tx>,
    remove_correlation: CachedStatement<'tx>,
    spans: [CachedStatement<'tx>; 3],
    remove_spans: [CachedStatement<'tx>; 3],
    block: Block,
}

impl<'tx> Keys<'tx> {
    fn new(tx: &'tx Transaction<'tx>) -> rusqlite::Result<Self> {
        let span = |table: &str| {
            tx.prepare_cached(&format!(
                "INSERT INTO {table} (key, last, first) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key, last) DO UPDATE SET first = min(first, excluded.first)"
            ))
        };
        let remove = |table: &str| tx.prepare_cached(&format!("DELETE FROM {table} WHERE key = ?1 AND last <= ?2"));
        let [device, ty, source] = SPAN_TABLES;
        Ok(Self {
            tx,
            correlation: tx.prepare_cached("INSERT OR IGNORE INTO by_correlation VALUES (?1, ?2)")?,
            remove_correlation: tx.prepare_cached("DELETE FROM by_correlation WHERE correlationid = ?1 AND id = ?2")?,
            spans: [span(device)?, span(ty)?, span(source)?],
            remove_spans: [remove(device)?, remove(ty)?, remove(source)?],
            block: Block::default(),
        })
    }

    /// Indexes one event.
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
    ) -> rusqlite::Result<()> {
        if !starts_chain(id, correlation) {
            self.correlation.execute(params![correlation, &id[..]])?;
        }
        for (kind, key) in [device, Some(ty), Some(source)].into_iter().enumerate() {
            if let Some(key) = key
                && let Some(closed) = self.block.add(kind, key, *id)
            {
                write_span(&mut self.spans[kind], key, closed)?;
            }
        }
        self.block.events += 1;
        if self.block.events >= BLOCK_EVENTS {
            self.close_block()?;
        }
        Ok(())
    }

    /// Writes the open spans: the block ends.
    fn close_block(&mut self) -> rusqlite::Result<()> {
        let block = std::mem::take(&mut self.block);
        for (kind, open) in block.open.into_iter().enumerate() {
            for (key, span) in open {
                write_span(&mut self.spans[kind], &key, span)?;
            }
        }
        Ok(())
    }

    /// Retention deleted every event up to the newest of `rows`: spans
    /// that end there are gone; a span reaching past it stays (its scan
    /// finds only what is left).
    fn remove(&mut self, rows: &[KeyRow]) -> rusqlite::Result<()> {
        let Some(newest) = rows.iter().map(|row| row.id).max() else {
            return Ok(());
        };
        let mut seen: [std::collections::HashSet<&str>; 3] = Default::default();
        for row in rows {
            let id = &row.id[..];
            self.remove_correlation.execute(params![row.correlationid, id])?;
            let keys = [row.device.as_deref(), Some(row.ty.as_str()), Some(row.source.as_str())];
            for (kind, key) in keys.into_iter().enumerate() {
                if let Some(key) = key
                    && seen[kind].insert(key)
                {
                    self.remove_spans[kind].execute(params![key, &newest[..]])?;
                }
            }
        }
        Ok(())
    }

    fn watermark(&mut self, received_at: i64) -> rusqlite::Result<()> {
        let mut statement =
            self.tx.prepare_cached("INSERT OR REPLACE INTO watermark (one, received_at) VALUES (1, ?1)")?;
        statement.execute([received_at])?;
        Ok(())
    }

    /// Ends the transaction's last block.
    fn finish(mut self) -> rusqlite::Result<()> {
        self.close_block()
    }
}

fn write_span(statement: &mut CachedStatement<'_>, key: &str, span: Span) -> rusqlite::Result<()> {
    statement.execute(params![key, &span.last[..], &span.first[..]])?;
    Ok(())
}

/// The lowest and highest id of one key's events in a block, and the
/// block position of the last event added.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Span {
    first: [u8; 16],
    last: [u8; 16],
    at: usize,
}

impl Span {
    fn new(id: [u8; 16], at: usize) -> Self {
        Self { first: id, last: id, at }
    }

    /// The span with `id` (at block position `at`) added, if it stays
    /// within [`SPAN_MILLIS_MAX`] and steps over at most
    /// [`SPAN_GAP_EVENTS`] events of other keys.
    fn with(self, id: [u8; 16], at: usize) -> Option<Self> {
        let wider = Self { first: self.first.min(id), last: self.last.max(id), at };
        let narrow = millis(&wider.last) - millis(&wider.first) <= SPAN_MILLIS_MAX;
        (narrow && at - self.at <= SPAN_GAP_EVENTS + 1).then_some(wider)
    }
}

/// An id's mint time in milliseconds: its first 48 bits.
pub(super) fn millis(id: &[u8; 16]) -> u64 {
    id[..6].iter().fold(0, |ms, b| (ms << 8) | u64::from(*b))
}

/// The block being indexed: each kind's open spans by key. Bounded by
/// [`BLOCK_EVENTS`] events, so by that many keys of each kind.
#[derive(Default)]
struct Block {
    open: [HashMap<String, Span>; 3],
    events: usize,
}

impl Block {
    /// Adds `id` to its key's open span; returns the span it closed, if
    /// `id` lies too far from it (in time or in events between) to join.
    fn add(&mut self, kind: usize, key: &str, id: [u8; 16]) -> Option<Span> {
        let at = self.events;
        let Some(span) = self.open[kind].get_mut(key) else {
            self.open[kind].insert(key.to_owned(), Span::new(id, at));
            return None;
        };
        match span.with(id, at) {
            Some(wider) => {
                *span = wider;
                None
            }
            None => Some(std::mem::replace(span, Span::new(id, at))),
        }
    }
}

/// Whether `correlation` is the event's own id: the event starts its chain.
pub(super) fn starts_chain(id: &[u8; 16], correlation: &str) -> bool {
    correlation.len() == 26 && correlation.parse::<EventId>().is_ok_and(|c| id_bytes(c) == *id)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use glassbox_core::{Draft, IdMinter};

    use super::*;
    use crate::IndexWaiter;

    fn indexer() -> Indexer {
        Indexer::new(Connection::open_in_memory().unwrap(), Arc::new(Shared::new()), "unused".into())
    }

    fn index(seq: u64, events: usize) -> IndexCommand {
        let minter = IdMinter::new();
        let event = |_| {
            let draft = Draft { source: "s".into(), ty: "t".into(), ..Draft::default() };
            Arc::new(RecordedEvent { event: draft.into_event(minter.mint(), chrono::Utc::now(), None), states: vec![] })
        };
        IndexCommand::Index { seq, events: (0..events).map(event).collect() }
    }

    fn seqs(batch: &[IndexCommand]) -> Vec<u64> {
        batch.iter().filter_map(|c| if let IndexCommand::Index { seq, .. } = c { Some(*seq) } else { None }).collect()
    }

    #[test]
    fn small_commits_wait_to_share_a_transaction_until_a_query_waits() {
        let indexer = indexer();
        indexer.shared.indexer.set(std::thread::current()).unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        let shared = indexer.shared.clone();
        let query = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.blocking_send(index(2, 1)).unwrap();
            let _waiting = IndexWaiter::new(&shared);
            std::thread::sleep(Duration::from_secs(1));
        });
        let far = Instant::now() + Duration::from_secs(30);
        let batch = indexer.gather(index(1, 1), &mut rx, far);
        assert_eq!(seqs(&batch), [1, 2], "the later commit joined; the waiting query ended the wait");
        assert!(Instant::now() < far);
        query.join().unwrap();
    }

    #[test]
    fn a_block_of_events_or_the_writers_stop_ends_the_wait() {
        let indexer = indexer();
        let far = Instant::now() + Duration::from_secs(30);
        let (tx, mut rx) = mpsc::channel(8);
        tx.try_send(index(2, BLOCK_EVENTS)).unwrap();
        tx.try_send(index(3, 1)).unwrap();
        assert_eq!(seqs(&indexer.gather(index(1, 1), &mut rx, far)), [1, 2, 3], "taken as queued, not waited for");
        drop(tx);
        assert_eq!(seqs(&indexer.gather(index(4, 1), &mut rx, far)), [4], "the writer stopped");
        let (_tx, mut rx) = mpsc::channel(8);
        let started = Instant::now();
        indexer.gather(index(5, 1), &mut rx, started + LINGER);
        assert!(started.elapsed() >= LINGER, "a lone small commit waits for company");
    }
}
