//! The single writer: drains the command queue, applies as many commands as
//! fit in one transaction (group commit), then answers them all. A commit
//! writes the WAL without waiting for the disk (`synchronous=NORMAL`: safe
//! against a crash of the process). What someone outside is answered for
//! (an acknowledged event, a change to the platform) is answered once the
//! syncer has put the commit on disk, while this thread goes on to the next
//! batch; an appended event's commit is answered at once as well, so that
//! it can be handed on meanwhile. A batch holding nothing anyone waits on
//! the disk for (the platform's own records, state transitions, QoS 0
//! messages) is synced with the next that does, or at most [`SYNC_WITHIN`]
//! later. The WAL is sequential, so a sync covers every commit before it:
//! what is on disk is always a prefix.
//! Between batches it deletes expired events in small chunks, so retention
//! never holds ingest up for longer than one chunk.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use glassbox_core::{EventId, first_id_at};
use glassbox_store::{Appended, Device, Ingress, SYNC_WITHIN, StoreError, Transition};
use rusqlite::{CachedStatement, Connection, OptionalExtension, ToSql, Transaction, params};
use tokio::sync::{mpsc, oneshot};

use super::codec;
use super::devices::{self, DeviceOp};
use super::indexer::{IndexCommand, KEY_COLUMNS, KeyRow};
use super::syncer::Deferred;
use super::{RecorderSettings, Shared, id_bytes, micros, undecodable};

pub(super) enum Command {
    Append {
        batch: Vec<Ingress>,
        /// Answered once committed.
        reply: oneshot::Sender<Result<Vec<Appended>, StoreError>>,
        /// Answered once on disk, when one of `batch` is acknowledged.
        durable: Option<oneshot::Sender<Result<(), StoreError>>>,
    },
    Record {
        transitions: Vec<Transition>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    PutSetting {
        key: String,
        value: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Device {
        op: DeviceOp,
        reply: oneshot::Sender<Result<Option<Device>, StoreError>>,
    },
    /// Any other small write, run inside the batch's transaction.
    Exec {
        work: Work,
        reply: oneshot::Sender<Result<Box<dyn Any + Send>, StoreError>>,
    },
}

/// A write run in the writer's transaction; its value answers the caller.
pub(super) type Work = Box<dyn FnOnce(&Transaction<'_>) -> rusqlite::Result<Box<dyn Any + Send>> + Send>;

impl Command {
    /// Whether its answer promises the write is on disk.
    fn needs_fsync(&self) -> bool {
        match self {
            Command::Append { durable, .. } => durable.is_some(),
            Command::Record { .. } => false,
            Command::PutSetting { .. } | Command::Device { .. } | Command::Exec { .. } => true,
        }
    }

    /// Whether it appends events from outside (devices, clients): only such
    /// a commit shows that ingest fits in a store that was full.
    fn ingests(&self) -> bool {
        matches!(self, Command::Append { batch, .. } if batch.iter().any(Ingress::from_outside))
    }

    fn weight(&self) -> usize {
        match self {
            Command::Append { batch, .. } => batch.len(),
            Command::Record { transitions, .. } => transitions.len(),
            Command::PutSetting { .. } | Command::Device { .. } | Command::Exec { .. } => 1,
        }
    }
}

/// The result of one command inside a transaction, answered after commit.
enum Outcome {
    Appended(Vec<Appended>),
    Recorded(Result<(), StoreError>),
    Device(Result<Option<Device>, StoreError>),
    Exec(Box<dyn Any + Send>),
    Done,
}

/// Rows deleted per retention transaction: small enough to keep the pause
/// it causes to ingest in the low milliseconds.
const RETENTION_CHUNK_EVENTS: i64 = 2000;
const RETENTION_CHECK_EVERY: Duration = Duration::from_secs(5);

/// The events this writer recorded lately, each with the `seq` of its last
/// recorded state (0: none yet). Delivery states follow their message within
/// milliseconds, and each must be refused if its event is unknown and
/// numbered after its event's last: an event found here needs neither a
/// look-up in `events` nor one in `transitions`. Exact because this writer
/// records every state, and an event enters when its row is inserted, so
/// before it has any state. A transaction that fails empties it (its
/// events' rows are gone again); a state in one leaves a gap in `seq`,
/// which only orders. Bounded at [`RECENT_MAX`], the smallest id forgotten
/// first (a forgotten event is looked up), and emptied when retention
/// deletes an event as new as its oldest.
///
/// Kept in id order: ids are minted in time order and reach the writer
/// nearly so, which makes noting one a push at the back (a hash set paid a
/// probe for each insert and another for each eviction, cold in a table of
/// this size), and a look-up a binary search whose first steps stay cached.
#[derive(Default)]
struct Recent {
    last_seq: VecDeque<(EventId, i64)>,
}

const RECENT_MAX: usize = 65_536;

impl Recent {
    fn note(&mut self, id: EventId) {
        match self.last_seq.back() {
            Some((newest, _)) if *newest >= id => {
                if let Err(at) = self.last_seq.binary_search_by_key(&id, |(id, _)| *id) {
                    self.last_seq.insert(at, (id, 0));
                }
            }
            _ => self.last_seq.push_back((id, 0)),
        }
        if self.last_seq.len() > RECENT_MAX {
            self.last_seq.pop_front();
        }
    }

    /// The `seq` of a state of `event` recorded now, if the event is here.
    fn next_seq(&mut self, event: EventId) -> Option<i64> {
        let at = self.last_seq.binary_search_by_key(&event, |(id, _)| *id).ok()?;
        let last = &mut self.last_seq[at].1;
        *last += 1;
        Some(*last)
    }

    fn clear(&mut self) {
        self.last_seq.clear();
    }

    /// Retention deleted every event up to `newest`.
    fn expired(&mut self, newest: EventId) {
        if self.last_seq.front().is_some_and(|(oldest, _)| *oldest <= newest) {
            self.clear();
        }
    }
}

pub(super) struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    settings: RecorderSettings,
    node: i64,
    next_retention: Instant,
    retention_backlog: bool,
    index: mpsc::Sender<IndexCommand>,
    index_seq: u64,
    /// Where commits go to be put on disk, with who waits for that.
    syncs: std::sync::mpsc::SyncSender<Vec<Deferred>>,
    /// When the oldest commit not yet sent to the syncer was made.
    unsynced_since: Option<Instant>,
    recent: Recent,
    /// Dropped when the writer stops, which stops the checkpointer.
    checkpointer: Option<std::sync::mpsc::Sender<()>>,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        shared: Arc<Shared>,
        settings: RecorderSettings,
        node: i64,
        index: mpsc::Sender<IndexCommand>,
        checkpointer: std::sync::mpsc::Sender<()>,
        syncs: std::sync::mpsc::SyncSender<Vec<Deferred>>,
    ) -> Self {
        let index_seq = *shared.indexed.borrow();
        let next_retention = Instant::now();
        Self {
            conn,
            shared,
            settings,
            node,
            next_retention,
            retention_backlog: false,
            index,
            index_seq,
            syncs,
            unsynced_since: None,
            recent: Recent::default(),
            checkpointer: Some(checkpointer),
        }
    }

    /// Runs until every sender is gone and the queue is drained.
    pub(super) fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build();
        let Ok(runtime) = runtime else {
            tracing::error!("recorder writer could not start its timer runtime");
            return;
        };
        loop {
            self.expire_some();
            let idle = match self.unsynced_since {
                Some(since) => SYNC_WITHIN.saturating_sub(since.elapsed()),
                None if self.retention_backlog => Duration::ZERO,
                None => RETENTION_CHECK_EVERY,
            };
            let first = runtime.block_on(async { tokio::time::timeout(idle, commands.recv()).await });
            match first {
                Ok(None) => break,
                Ok(Some(command)) => self.commit_batch(command, &mut commands),
                Err(_elapsed) => self.sync_if_due(),
            }
        }
        drop(self.checkpointer.take());
        // The syncer answers what waits, then stops.
        drop(self.syncs);
        match self.shared.checkpoint(&self.conn, "TRUNCATE") {
            Ok(false) => {}
            Ok(true) => tracing::warn!("the final checkpoint found the WAL busy; the next start replays it"),
            Err(e) => tracing::warn!(error = %e, "final checkpoint failed; the next start replays the WAL"),
        }
    }

    fn commit_batch(&mut self, first: Command, queue: &mut mpsc::Receiver<Command>) {
        let mut weight = first.weight();
        let mut batch = vec![first];
        while weight < self.settings.batch_events_max {
            match queue.try_recv() {
                Ok(command) => {
                    weight += command.weight();
                    batch.push(command);
                }
                Err(_) => break,
            }
        }
        if let Some(failed) = self.shared.sync_failed.get() {
            // Nothing committed now could be answered: nor is it handed on.
            return fail_all(batch, failed);
        }
        let started = std::time::Instant::now();
        let answering = batch.iter().any(Command::needs_fsync);
        match self.apply(&mut batch) {
            Ok(outcomes) => {
                self.shared.mark_writable(batch.iter().any(Command::ingests));
                self.shared.committed(started.elapsed(), answering);
                self.send_to_index(&batch, &outcomes);
                let waiting = reply_all(batch, outcomes);
                if answering || self.sync_overdue() {
                    self.sync(waiting);
                } else {
                    self.unsynced_since.get_or_insert(started);
                }
            }
            Err(e) => {
                self.recent.clear();
                let message = e.to_string();
                let full = e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull);
                if self.shared.mark_failed(&message, full) {
                    tracing::error!(error = %message, "recorder commit failed; ingest answers 503 until a commit succeeds");
                }
                fail_all(batch, &message);
            }
        }
    }

    /// Has the syncer put every commit so far on disk, then answer
    /// `waiting`. Waits for room when [`super::syncer::SYNCS_WAITING_MAX`]
    /// commits wait already: a disk that slow holds ingest up, as it would
    /// a commit that synced itself.
    fn sync(&mut self, waiting: Vec<Deferred>) {
        self.unsynced_since = None;
        if let Err(std::sync::mpsc::SendError(waiting)) = self.syncs.send(waiting) {
            waiting.into_iter().for_each(|answer| answer(Err("the recorder's syncer has stopped")));
        }
    }

    /// Puts unsynced commits on disk once they have waited [`SYNC_WITHIN`]
    /// with nothing else to commit.
    fn sync_if_due(&mut self) {
        if self.sync_overdue() {
            self.sync(Vec::new());
        }
    }

    /// Whether a commit has waited [`SYNC_WITHIN`] to be synced.
    fn sync_overdue(&self) -> bool {
        self.unsynced_since.is_some_and(|since| since.elapsed() >= SYNC_WITHIN)
    }

    fn apply(&mut self, batch: &mut [Command]) -> rusqlite::Result<Vec<Outcome>> {
        let tx = self.conn.transaction()?;
        let mut apply = Apply::new(&tx, self.node, &self.settings, &mut self.recent)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for command in batch.iter_mut() {
            outcomes.push(apply.command(command)?);
        }
        drop(apply);
        tx.commit()?;
        let fresh = |a: &Vec<Appended>| a.iter().filter(|a| !a.duplicate).count();
        let appended: usize = outcomes.iter().map(|o| if let Outcome::Appended(a) = o { fresh(a) } else { 0 }).sum();
        self.shared.events_appended.fetch_add(appended as u64, Ordering::Relaxed);
        Ok(outcomes)
    }

    /// Hands the newly recorded events to the indexer before anyone is
    /// answered, so a query after the answer waits for them to be indexed.
    fn send_to_index(&mut self, batch: &[Command], outcomes: &[Outcome]) {
        let events: Vec<_> = fresh(batch, outcomes).map(Ingress::recorded).collect();
        if events.is_empty() || self.shared.index_failed() {
            return;
        }
        self.index_seq += 1;
        if self.index.blocking_send(IndexCommand::Index { seq: self.index_seq, events }).is_err() {
            tracing::error!("the recorder indexer stopped; queries will miss new events until restart");
        }
        self.shared.index_sent.store(self.index_seq, Ordering::Release);
    }

    /// Deletes one chunk of events older than the retention window.
    fn expire_some(&mut self) {
        if self.settings.retention.is_zero() || (!self.retention_backlog && Instant::now() < self.next_retention) {
            return;
        }
        self.next_retention = Instant::now() + RETENTION_CHECK_EVERY;
        let cutoff = Utc::now() - self.settings.retention;
        match expire_chunk(&mut self.conn, cutoff) {
            Ok(Expired { count, newest, keys }) => {
                self.retention_backlog = count > 0;
                if let Some(newest) = newest {
                    self.recent.expired(newest);
                }
                self.shared.events_expired.fetch_add(count as u64, Ordering::Relaxed);
                if !keys.is_empty() {
                    let _ = self.index.blocking_send(IndexCommand::Purge { keys });
                }
            }
            Err(e) => {
                self.retention_backlog = false;
                tracing::warn!(error = %e, "retention pass failed; will retry");
            }
        }
    }
}

/// What one retention chunk deleted.
struct Expired {
    count: usize,
    newest: Option<EventId>,
    /// The index keys of the deleted events, for the indexer to remove.
    keys: Vec<KeyRow>,
}

/// Deletes up to [`RETENTION_CHUNK_EVENTS`] of the oldest events minted
/// before `cutoff` (an event's age is its id's time: its receive time).
/// An event that does not decode is deleted too, with a warning: its index
/// rows stay (a query finds no event for them) until the index is rebuilt.
fn expire_chunk(conn: &mut Connection, cutoff: DateTime<Utc>) -> rusqlite::Result<Expired> {
    let tx = conn.transaction()?;
    let cutoff = id_bytes(first_id_at(cutoff)).to_vec();
    let chunk_end: Option<Vec<u8>> = tx
        .query_row("SELECT id FROM events ORDER BY id LIMIT 1 OFFSET ?1", [RETENTION_CHUNK_EVENTS], |r| r.get(0))
        .optional()?;
    let upper = chunk_end.map_or(cutoff.clone(), |end| end.min(cutoff));
    let mut expired = Expired { count: 0, newest: None, keys: Vec::new() };
    let mut select = tx.prepare(&format!("SELECT {KEY_COLUMNS} FROM events WHERE id < ?1 ORDER BY id"))?;
    let mut rows = select.query([&upper])?;
    while let Some(row) = rows.next()? {
        expired.count += 1;
        match KeyRow::read(row)? {
            Ok((key, _)) => {
                expired.newest = Some(EventId::from_bytes(key.id));
                expired.keys.push(key);
            }
            Err(e) => {
                tracing::warn!(error = %e, "deleting an expired event that does not decode; its index rows stay");
                expired.newest = Some(e.id);
            }
        }
    }
    drop(rows);
    drop(select);
    tx.execute("DELETE FROM transitions WHERE event < ?1", [&upper])?;
    tx.execute("DELETE FROM events WHERE id < ?1", [&upper])?;
    tx.commit()?;
    Ok(expired)
}

/// The events a committed batch recorded (not its duplicates).
fn fresh<'a>(batch: &'a [Command], outcomes: &'a [Outcome]) -> impl Iterator<Item = &'a Ingress> {
    batch.iter().zip(outcomes).flat_map(|(command, outcome)| match (command, outcome) {
        (Command::Append { batch, .. }, Outcome::Appended(appended)) => {
            batch.iter().zip(appended).filter(|(_, a)| !a.duplicate).map(|(ingress, _)| ingress).collect()
        }
        _ => Vec::new(),
    })
}

/// Answers a committed batch: at once what waits only for the commit; the
/// answers that wait for the disk as well are returned, for the syncer.
fn reply_all(batch: Vec<Command>, outcomes: Vec<Outcome>) -> Vec<Deferred> {
    let mut waiting: Vec<Deferred> = Vec::new();
    for (command, outcome) in batch.into_iter().zip(outcomes) {
        match (command, outcome) {
            (Command::Append { reply, durable, .. }, Outcome::Appended(appended)) => {
                drop(reply.send(Ok(appended)));
                waiting.extend(durable.map(|durable| after_sync(durable, Ok(()))));
            }
            (Command::Record { reply, .. }, Outcome::Recorded(result)) => drop(reply.send(result)),
            (Command::PutSetting { reply, .. }, Outcome::Done) => waiting.push(after_sync(reply, Ok(()))),
            (Command::Device { reply, .. }, Outcome::Device(result)) => waiting.push(after_sync(reply, result)),
            (Command::Exec { reply, .. }, Outcome::Exec(value)) => waiting.push(after_sync(reply, Ok(value))),
            // Outcomes are produced in command order, one per command; should
            // that ever break, the caller hears of it rather than the writer dying.
            (command, _) => fail(command, StoreError::Internal("a write was answered out of order".into())),
        }
    }
    waiting
}

/// Sends `result` once the syncer has the commit on disk, or the sync's
/// failure instead.
fn after_sync<T: Send + 'static>(
    reply: oneshot::Sender<Result<T, StoreError>>,
    result: Result<T, StoreError>,
) -> Deferred {
    Box::new(move |synced| {
        let answer = synced.map_err(|failed| StoreError::Unavailable(failed.to_string())).and(result);
        drop(reply.send(answer));
    })
}

fn fail_all(batch: Vec<Command>, message: &str) {
    for command in batch {
        fail(command, StoreError::Unavailable(message.to_string()));
    }
}

fn fail(command: Command, error: StoreError) {
    match command {
        Command::Append { reply, .. } => drop(reply.send(Err(error))),
        Command::Record { reply, .. } => drop(reply.send(Err(error))),
        Command::PutSetting { reply, .. } => drop(reply.send(Err(error))),
        Command::Device { reply, .. } => drop(reply.send(Err(error))),
        Command::Exec { reply, .. } => drop(reply.send(Err(error))),
    }
}

/// One transaction's work, with its statements prepared once and the
/// de-duplication keys it has seen.
struct Apply<'tx> {
    tx: &'tx Transaction<'tx>,
    insert: CachedStatement<'tx>,
    find_duplicate: CachedStatement<'tx>,
    exists: CachedStatement<'tx>,
    /// A state numbered after its event's last in the table.
    insert_transition: CachedStatement<'tx>,
    /// A state numbered by [`Recent`].
    insert_transition_at: CachedStatement<'tx>,
    put_setting: CachedStatement<'tx>,
    node: i64,
    dedup_window: Duration,
    seen: HashMap<(String, String), Appended>,
    /// The audit log's last `seq` and hash, read once the batch holds a change.
    audit_head: Option<(u64, glassbox_audit::Hash)>,
    recent: &'tx mut Recent,
    /// The event being inserted, encoded (reused from row to row).
    encoded: Vec<u8>,
}

/// An event's row; the upgrade from rows by column writes it too.
pub(super) const INSERT_EVENT: &str =
    "INSERT INTO events (id, received_at, node, origin_source, originid, event) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

impl<'tx> Apply<'tx> {
    fn new(
        tx: &'tx Transaction<'tx>,
        node: i64,
        settings: &RecorderSettings,
        recent: &'tx mut Recent,
    ) -> rusqlite::Result<Self> {
        Ok(Self {
            tx,
            insert: tx.prepare_cached(INSERT_EVENT)?,
            find_duplicate: tx.prepare_cached(
                "SELECT id, received_at, event FROM events WHERE origin_source = ?1 AND originid = ?2
                 AND received_at >= ?3 ORDER BY id DESC LIMIT 1",
            )?,
            exists: tx.prepare_cached("SELECT 1 FROM events WHERE id = ?1")?,
            insert_transition: tx.prepare_cached(
                "INSERT INTO transitions (event, seq, at, state, target, detail, node, in_transit_since)
                 VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM transitions WHERE event = ?1),
                         ?2, ?3, ?4, ?5, ?6, ?7)",
            )?,
            insert_transition_at: tx.prepare_cached(
                "INSERT INTO transitions (event, at, state, target, detail, node, in_transit_since, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?,
            put_setting: tx.prepare_cached("INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)")?,
            node,
            dedup_window: settings.dedup_window,
            seen: HashMap::new(),
            audit_head: None,
            recent,
            encoded: Vec::new(),
        })
    }

    fn command(&mut self, command: &mut Command) -> rusqlite::Result<Outcome> {
        match command {
            Command::Append { batch, .. } => {
                batch.iter().map(|ingress| self.append(ingress)).collect::<rusqlite::Result<_>>().map(Outcome::Appended)
            }
            Command::Record { transitions, .. } => self.record(transitions).map(Outcome::Recorded),
            Command::PutSetting { key, value, .. } => {
                self.put_setting.execute(params![&*key, &*value])?;
                Ok(Outcome::Done)
            }
            Command::Device { op, .. } => devices::apply(self.tx, op).map(Outcome::Device),
            Command::Exec { work, .. } => {
                // The work runs once: what is left in its place is never called.
                let work = std::mem::replace(work, Box::new(|_| Ok(Box::new(()))));
                work(self.tx).map(Outcome::Exec)
            }
        }
    }

    fn append(&mut self, ingress: &Ingress) -> rusqlite::Result<Appended> {
        let event = ingress.event();
        let origin_key = event.originid.as_ref().map(|origin| (event.source.clone(), origin.clone()));
        if let Some(key) = &origin_key
            && let Some(first) = self.duplicate_of(key, ingress.received_at())?
        {
            return Ok(first);
        }
        let received_at = micros(&ingress.received_at());
        self.encoded.clear();
        codec::encode(event, received_at, ingress.via(), &mut self.encoded);
        let origin = origin_key.as_ref().map(|(source, origin)| (source.as_str(), origin.as_str()));
        self.insert.execute(params![
            &id_bytes(event.id)[..],
            received_at,
            self.node,
            origin.map(|o| o.0),
            origin.map(|o| o.1),
            &self.encoded[..],
        ])?;
        // Before any state of it can be recorded, in this batch or later.
        self.recent.note(event.id);
        if let Some(draft) = ingress.audit() {
            let head = match self.audit_head {
                Some(head) => head,
                None => super::audit::head(self.tx)?,
            };
            self.audit_head = Some(super::audit::seal(self.tx, head, draft)?);
        }
        let appended = Appended { id: event.id, correlationid: event.correlationid.clone(), duplicate: false };
        if let Some(key) = origin_key {
            self.seen.insert(key, Appended { duplicate: true, ..appended.clone() });
        }
        Ok(appended)
    }

    /// The first event with the same source and origin id inside the window.
    fn duplicate_of(&mut self, key: &(String, String), now: DateTime<Utc>) -> rusqlite::Result<Option<Appended>> {
        if let Some(first) = self.seen.get(key) {
            return Ok(Some(first.clone()));
        }
        let window_start = micros(&(now - self.dedup_window));
        self.find_duplicate
            .query_row(params![key.0, key.1, window_start], |row| {
                let id = EventId::from_bytes(row.get(0)?);
                let keys = codec::keys(id, row.get(1)?, row.get_ref(2)?.as_blob()?).map_err(undecodable)?;
                Ok(Appended { id, correlationid: keys.correlationid(id), duplicate: true })
            })
            .optional()
    }

    fn record(&mut self, transitions: &[Transition]) -> rusqlite::Result<Result<(), StoreError>> {
        let mut unknown = None;
        // A message's deliveries come together: check each event once.
        let mut known = None;
        for t in transitions {
            let id = id_bytes(t.event);
            // Unknown to `recent`: looked up, and numbered by the table's last.
            let seq = self.recent.next_seq(t.event);
            if seq.is_none() && known != Some(t.event) {
                if !self.exists.exists([&id[..]])? {
                    unknown = Some(t.event);
                    continue;
                }
                known = Some(t.event);
            }
            let (at, state, since) = (micros(&t.at), t.state.code(), t.in_transit_at.as_ref().map(micros));
            let row: [&dyn ToSql; 8] = [&&id[..], &at, &state, &t.target, &t.detail, &self.node, &since, &seq];
            match seq {
                Some(_) => self.insert_transition_at.execute(&row[..]),
                None => self.insert_transition.execute(&row[..7]),
            }?;
        }
        Ok(unknown.map_or(Ok(()), |id| Err(StoreError::UnknownEvent(id))))
    }
}

#[cfg(test)]
mod tests {
    use glassbox_core::IdMinter;

    use super::{RECENT_MAX, Recent};

    #[test]
    fn recent_events_are_found_in_any_order_they_arrive_and_stay_bounded() {
        let minter = IdMinter::new();
        let ids: Vec<_> = (0..RECENT_MAX + 3).map(|_| minter.mint()).collect();
        let mut recent = Recent::default();
        // Minted concurrently, an id can reach the writer after a newer one.
        for pair in ids.chunks(2) {
            pair.iter().rev().for_each(|id| recent.note(*id));
        }
        recent.note(ids[10]);
        assert_eq!(recent.last_seq.len(), RECENT_MAX);
        assert!(recent.last_seq.iter().zip(recent.last_seq.iter().skip(1)).all(|(a, b)| a.0 < b.0), "in id order");
        assert_eq!(recent.next_seq(ids[0]), None, "the oldest are forgotten");
        assert_eq!((recent.next_seq(ids[RECENT_MAX]), recent.next_seq(ids[RECENT_MAX])), (Some(1), Some(2)));
        recent.expired(ids[2]);
        assert_eq!(recent.next_seq(ids[RECENT_MAX + 1]), Some(1), "retention deleted only forgotten events");
        recent.expired(ids[3]);
        assert_eq!(recent.next_seq(ids[RECENT_MAX + 1]), None, "retention reached the oldest here: emptied");
    }
}
