//! The embedded SQLite adapter of the store ports (`glassbox-store`): the
//! default backend, one machine, zero set-up.
//!
//! [`SqliteStore`] is the recorder (`recorder.db` in WAL mode with one writer
//! thread doing group commits, and a syncer thread putting them on disk
//! behind it; `recorder-index.db` with the secondary indexes, kept by
//! the indexer thread; a small pool of reader connections that see both;
//! retention between batches) and also keeps the device registry, device
//! certificates, commands and functions. [`SqliteSessions`] keeps MQTT session state
//! (`sessions.db`), [`SqliteMetrics`] the metric buckets (`metrics.db`).
//!
//! It owns every line of SQL, the schemas and their migrations, and the
//! single-writer tuning ([`RecorderSettings`]). It must not know about HTTP
//! or the bus, nor read the session bytes the gateway stores; callers see
//! only the ports' traits and types, and the server alone constructs it.

mod audit;
mod budgets;
mod certificates;
mod checkpointer;
mod codec;
mod commands;
mod devices;
mod functions;
mod indexer;
mod metrics;
mod read;
mod schema;
mod sessions;
mod settings;
mod syncer;
mod tokens;
mod upgrade;
mod writer;

pub use audit::AuditFile;
pub use metrics::{METRICS_FILE_NAME, SqliteMetrics};
pub use sessions::{SESSIONS_FILE_NAME, SqliteSessions};
pub use settings::RecorderSettings;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use glassbox_audit::{Entry, Hash};
use glassbox_core::{EventId, EventQuery, Lineage, Page, RecordedEvent};
use glassbox_store::{
    AuditQuery, AuditStore, BudgetRecord, BudgetStore, CertificateRecord, CertificateStore, Chain, CommandRecord,
    CommandState, CommandStore, Committed, Device, DeviceRegistry, Durable, EventStore, FunctionStore, FunctionVersion,
    Ingress, KvQuota, LiveMove, SecretHash, SettingStore, StoreError, StoreStatus, StoredCheckpoint, TokenRecord,
    TokenStore, Transition,
};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Semaphore, mpsc, oneshot};

use self::devices::DeviceOp;
use self::indexer::{IndexCommand, Indexer};
use self::writer::{Command, Writer};

/// The name [`StoreStatus::backend`] reports.
pub const BACKEND: &str = "sqlite";

/// The durable record's file name inside the data directory.
pub const FILE_NAME: &str = "recorder.db";
/// The secondary indexes' file name; deleting it makes the next start rebuild it.
pub const INDEX_FILE_NAME: &str = "recorder-index.db";
/// Present while the index file is known to be whole (after a clean stop).
const INDEX_CLEAN_MARKER: &str = "recorder-index.clean";

/// How long a query waits for the indexes to catch up with acknowledged
/// appends before answering from what is indexed.
const INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Readers open at once; queries beyond this wait for a free connection.
const READERS_MAX: usize = 4;

/// A query waiting for the indexer, counted while it lives (a cancelled
/// query stops counting too). Counting wakes the indexer.
struct IndexWaiter<'a>(&'a Shared);

impl<'a> IndexWaiter<'a> {
    fn new(shared: &'a Shared) -> Self {
        // Release: the indexer's Acquire load then sees the commits queued
        // before the query read `index_sent`.
        shared.index_waiters.fetch_add(1, Ordering::Release);
        if let Some(indexer) = shared.indexer.get() {
            indexer.unpark();
        }
        Self(shared)
    }
}

impl Drop for IndexWaiter<'_> {
    fn drop(&mut self) {
        self.0.index_waiters.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counters and health shared by the writer, the indexer and callers.
#[derive(Debug)]
struct Shared {
    /// The last index batch number the writer handed to the indexer.
    index_sent: AtomicU64,
    /// The last index batch number the indexer committed.
    indexed: tokio::sync::watch::Sender<u64>,
    /// Set when the indexer gave up; queries then answer from what is indexed.
    index_error: Mutex<Option<String>>,
    /// Queries waiting for the indexer: it indexes at once rather than
    /// waiting for more commits to share a transaction.
    index_waiters: AtomicU64,
    /// The indexer's thread, woken when a query starts waiting.
    indexer: std::sync::OnceLock<std::thread::Thread>,
    writable: AtomicBool,
    /// Whether the last failure was the store's size bound: then a small
    /// platform record that still fits does not make it writable again,
    /// only appending events from outside does.
    full: AtomicBool,
    last_error: Mutex<Option<String>>,
    events_appended: AtomicU64,
    commits: AtomicU64,
    /// Commits someone waited on the disk for (not counting those synced
    /// only because earlier ones had waited [`glassbox_store::SYNC_WITHIN`]): the
    /// checkpointer keeps its passes small while they come.
    commits_answering: AtomicU64,
    events_expired: AtomicU64,
    /// Commits by how long they took (`COMMIT_SECONDS_BUCKETS`).
    commit_seconds: glassbox_core::Histogram,
    /// The syncer's syncs by how long they took.
    sync_seconds: glassbox_core::Histogram,
    /// Set for good when a sync failed (see `syncer`).
    sync_failed: std::sync::OnceLock<String>,
    /// Held around every checkpoint run by hand (the checkpointer's passes,
    /// the writer's syncs and its last one): SQLite lets one run at a time
    /// and answers a second "busy" without waiting or failing.
    checkpoints: Mutex<()>,
}

impl Shared {
    /// Runs a checkpoint in `mode` on `conn`, one at a time; whether SQLite
    /// still answered "busy" (nothing was copied or synced).
    fn checkpoint(&self, conn: &Connection, mode: &str) -> rusqlite::Result<bool> {
        let _one_at_a_time = self.checkpoints.lock().unwrap_or_else(|e| e.into_inner());
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| row.get::<_, i64>(0)).map(|busy| busy != 0)
    }

    fn new() -> Self {
        Self {
            index_sent: AtomicU64::new(0),
            indexed: tokio::sync::watch::Sender::new(0),
            index_error: Mutex::new(None),
            index_waiters: AtomicU64::new(0),
            indexer: std::sync::OnceLock::new(),
            writable: AtomicBool::new(true),
            full: AtomicBool::new(false),
            last_error: Mutex::new(None),
            events_appended: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            commits_answering: AtomicU64::new(0),
            events_expired: AtomicU64::new(0),
            commit_seconds: glassbox_core::Histogram::new(&glassbox_store::COMMIT_SECONDS_BUCKETS),
            sync_seconds: glassbox_core::Histogram::new(&glassbox_store::COMMIT_SECONDS_BUCKETS),
            sync_failed: std::sync::OnceLock::new(),
            checkpoints: Mutex::new(()),
        }
    }

    /// Counts one commit that took `took`; `answering` when someone waits
    /// for it to be on disk.
    fn committed(&self, took: std::time::Duration, answering: bool) {
        self.commits_answering.fetch_add(u64::from(answering), Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.commit_seconds.observe(took);
    }

    fn index_waited_for(&self) -> bool {
        self.index_waiters.load(Ordering::Acquire) > 0
    }

    fn index_failed(&self) -> bool {
        self.index_error.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Records a successful commit; `ingested` when it appended events from
    /// outside, answered or not (`Ingress::from_outside`; see `full`).
    fn mark_writable(&self, ingested: bool) {
        // Already writable (the common case, with no lock taken), or still full.
        let full = self.full.load(Ordering::Relaxed);
        if (full && !ingested) || (!full && self.writable.load(Ordering::Relaxed)) {
            return;
        }
        // Under the lock `mark_failed` takes, so a sync failing meanwhile is seen.
        let mut last_error = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        if self.sync_failed.get().is_some() {
            return;
        }
        self.full.store(false, Ordering::Relaxed);
        if !self.writable.swap(true, Ordering::Relaxed) {
            *last_error = None;
            tracing::info!("recorder commits succeed again; ingest resumed");
        }
    }

    /// Records a failed sync: writes that wait for the disk fail from now on.
    fn mark_sync_failed(&self, message: &str) {
        let _ = self.sync_failed.set(message.to_string());
        self.mark_failed(message, false);
    }

    /// Records a failed commit; true when the store was writable until now.
    fn mark_failed(&self, message: &str, full: bool) -> bool {
        let mut last_error = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        self.full.store(full, Ordering::Relaxed);
        *last_error = Some(message.to_string());
        self.writable.swap(false, Ordering::Relaxed)
    }
}

/// The embedded SQLite event store.
pub struct SqliteStore {
    /// Held until [`EventStore::close`]: one writer per data directory.
    lock: Mutex<Option<std::fs::File>>,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    shared: Arc<Shared>,
    readers: Arc<Readers>,
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the store in `dir`.
    pub fn open(dir: &Path, settings: RecorderSettings) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create data directory {}: {e}", dir.display())))?;
        let lock = lock_dir(dir)?;
        let path = dir.join(FILE_NAME);
        let opened = |e: rusqlite::Error| StoreError::Unavailable(format!("cannot open {}: {e}", path.display()));
        let mut conn = Connection::open(&path).map_err(opened)?;
        configure_writer(&conn).map_err(opened)?;
        schema::migrate(&mut conn, schema::RECORDER)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        upgrade::encode_events(&mut conn).map_err(opened)?;
        cap_size(&conn, &settings).map_err(opened)?;
        let node = intern_node(&conn, &settings.node).map_err(opened)?;
        let index_conn = open_index(dir, &conn)?;

        let shared = Arc::new(Shared::new());
        let (index_tx, index_rx) = mpsc::channel::<IndexCommand>(indexer::QUEUE_BATCHES_MAX);
        let indexer = Indexer::new(index_conn, shared.clone(), dir.join(INDEX_CLEAN_MARKER));
        let (tx, rx) = mpsc::channel(settings.queue_commands_max.max(1));
        let (stop_checkpoints, checkpoints_stop) = std::sync::mpsc::channel();
        let checkpointer = checkpointer::Checkpointer::open(&path, shared.clone(), checkpoints_stop).map_err(opened)?;
        let (syncs, syncs_rx) = syncer::channel();
        let syncer = syncer::Syncer::new(dir.join(format!("{FILE_NAME}-wal")), shared.clone());
        let writer = Writer::new(conn, shared.clone(), settings, node, index_tx, stop_checkpoints, syncs);
        let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(run)
                .map_err(|e| StoreError::Internal(format!("cannot start the {name} thread: {e}")))
        };
        let threads = vec![
            spawn("recorder-indexer", Box::new(move || indexer.run(index_rx)))?,
            spawn("recorder-writer", Box::new(move || writer.run(rx)))?,
            spawn("recorder-syncer", Box::new(move || syncer.run(syncs_rx)))?,
            spawn("recorder-checkpointer", Box::new(move || checkpointer.run()))?,
        ];
        Ok(Self {
            lock: Mutex::new(Some(lock)),
            commands: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
            shared,
            readers: Arc::new(Readers::new(path, dir.join(INDEX_FILE_NAME))),
        })
    }

    /// Waits until every append acknowledged so far is indexed (bounded by
    /// [`INDEX_WAIT`]), so queries find what producers were told is recorded.
    async fn indexes_caught_up(&self) {
        if self.shared.index_failed() {
            return;
        }
        let target = self.shared.index_sent.load(Ordering::Acquire);
        let mut indexed = self.shared.indexed.subscribe();
        if *indexed.borrow() >= target {
            return;
        }
        let _waiting = IndexWaiter::new(&self.shared);
        if tokio::time::timeout(INDEX_WAIT, indexed.wait_for(|done| *done >= target)).await.is_err() {
            tracing::warn!(target, indexed = *indexed.borrow(), "answering a query before the indexes caught up");
        }
    }

    /// Commands waiting in the writer's queue.
    fn queue_depth(&self) -> usize {
        let commands = self.commands.lock().unwrap_or_else(|e| e.into_inner());
        commands.as_ref().map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }

    async fn send(&self, command: Command) -> Result<(), StoreError> {
        let sender = self.commands.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let sender = sender.ok_or_else(|| StoreError::Unavailable("the store is closed".into()))?;
        sender.send(command).await.map_err(|_| StoreError::Unavailable("the recorder writer has stopped".into()))
    }

    /// Runs a read on a pooled connection off the async threads.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let permit = self.readers.permits.clone().acquire_owned().await;
        let permit = permit.map_err(|_| StoreError::Unavailable("store closed".into()))?;
        let readers = self.readers.clone();
        // The permit lives as long as the read, even if the caller stops waiting.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            readers.with(f)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("reader task failed: {e}")))?
    }
}

async fn answer<T>(reply: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
    reply.await.map_err(|_| StoreError::Unavailable("the recorder writer stopped before answering".into()))?
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append_committed(&self, batch: Vec<Ingress>) -> Result<Committed, StoreError> {
        if batch.is_empty() {
            return Ok(Committed::unanswered(Vec::new()));
        }
        let (reply, answered) = oneshot::channel();
        // Answered once on disk only if someone is answered for one of them.
        let (durable, synced) = match batch.iter().any(Ingress::acknowledged) {
            true => {
                let (durable, synced) = oneshot::channel();
                (Some(durable), Some(synced))
            }
            false => (None, None),
        };
        self.send(Command::Append { batch, reply, durable }).await?;
        let appended = answer(answered).await?;
        let durable = synced.map_or_else(Durable::ready, |synced| Durable::new(answer(synced)));
        Ok(Committed { appended, durable })
    }

    async fn record(&self, transitions: Vec<Transition>) -> Result<(), StoreError> {
        if transitions.is_empty() {
            return Ok(());
        }
        let (reply, answered) = oneshot::channel();
        self.send(Command::Record { transitions, reply }).await?;
        answer(answered).await
    }

    async fn get(&self, id: EventId) -> Result<Option<RecordedEvent>, StoreError> {
        self.read(move |conn| read::get(conn, id)).await
    }

    async fn get_many(&self, ids: Vec<EventId>) -> Result<Vec<RecordedEvent>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(move |conn| read::many(conn, &ids)).await
    }

    async fn read_after(&self, after: EventId, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read(move |conn| read::after(conn, after, limit)).await
    }

    async fn ids_after(&self, after: EventId, limit: usize) -> Result<Vec<EventId>, StoreError> {
        self.read(move |conn| read::ids_after(conn, after, limit)).await
    }

    async fn lineage(&self, id: &str) -> Result<Option<Lineage>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| read::lineage(conn, &id)).await
    }

    async fn query(&self, query: &EventQuery) -> Result<Page, StoreError> {
        self.indexes_caught_up().await;
        let cursor = read::parse_cursor(query.cursor.as_deref())?;
        let query = query.clone();
        self.read(move |conn| read::query(conn, &query, cursor)).await
    }

    async fn chain(&self, correlationid: &str, limit: usize) -> Result<Chain, StoreError> {
        self.indexes_caught_up().await;
        let correlationid = correlationid.to_string();
        self.read(move |conn| read::chain(conn, &correlationid, limit)).await
    }

    async fn status(&self) -> StoreStatus {
        let s = &self.shared;
        let (commit_seconds_buckets, commit_seconds_sum) = s.commit_seconds.snapshot();
        let (sync_seconds_buckets, sync_seconds_sum) = s.sync_seconds.snapshot();
        StoreStatus {
            backend: BACKEND,
            writable: s.writable.load(Ordering::Relaxed),
            last_error: s.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            writes_waiting: self.queue_depth() as u64,
            events_appended: s.events_appended.load(Ordering::Relaxed),
            commits: s.commits.load(Ordering::Relaxed),
            commits_durable: s.commits_answering.load(Ordering::Relaxed),
            events_expired: s.events_expired.load(Ordering::Relaxed),
            query_lag: s.index_sent.load(Ordering::Relaxed).saturating_sub(*s.indexed.borrow()),
            query_error: s.index_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            commit_seconds_buckets,
            commit_seconds_sum,
            sync_seconds_buckets,
            sync_seconds_sum,
        }
    }

    async fn close(&self) {
        drop(self.commands.lock().unwrap_or_else(|e| e.into_inner()).take());
        // The writer stops when its queue closes, then the indexer when the writer's sender drops.
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        // Once they have stopped nothing writes any more: the directory is
        // free for the next store, even while tasks of this one still hold
        // it (they only read).
        let lock = self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        let _ = tokio::task::spawn_blocking(move || {
            threads.into_iter().for_each(|t| drop(t.join()));
            drop(lock);
        })
        .await;
    }
}

impl SqliteStore {
    /// Runs `work` in the writer's next transaction; durable when it returns.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answered) = oneshot::channel();
        let work: writer::Work = Box::new(move |tx| work(tx).map(|v| Box::new(v) as Box<dyn std::any::Any + Send>));
        self.send(Command::Exec { work, reply }).await?;
        let value = answer(answered).await?;
        value
            .downcast::<T>()
            .map(|v| *v)
            .map_err(|_| StoreError::Internal("a write answered with the wrong type".into()))
    }

    async fn device_write(&self, op: DeviceOp) -> Result<Option<Device>, StoreError> {
        let (reply, answered) = oneshot::channel();
        self.send(Command::Device { op, reply }).await?;
        answer(answered).await
    }
}

/// Settings live in the recorder's file, written through its writer.
#[async_trait]
impl SettingStore for SqliteStore {
    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_string();
        self.read(move |conn| read::setting(conn, &key)).await
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (reply, answered) = oneshot::channel();
        self.send(Command::PutSetting { key: key.into(), value: value.into(), reply }).await?;
        answer(answered).await
    }
}

/// Budgets live in the recorder's file, written through its writer.
#[async_trait]
impl BudgetStore for SqliteStore {
    async fn put_budget(&self, record: &BudgetRecord) -> Result<Option<BudgetRecord>, StoreError> {
        let record = record.clone();
        self.write(move |tx| budgets::put(tx, &record)).await
    }

    async fn budgets(&self) -> Result<Vec<BudgetRecord>, StoreError> {
        self.read(budgets::list).await
    }

    async fn delete_budget(&self, target: &glassbox_core::BudgetTarget) -> Result<Option<BudgetRecord>, StoreError> {
        let target = target.to_string();
        self.write(move |tx| budgets::delete(tx, &target)).await
    }
}

/// Named tokens live in the recorder's file, written through its writer.
#[async_trait]
impl AuditStore for SqliteStore {
    async fn audit_entries(&self, query: &AuditQuery) -> Result<Vec<Entry>, StoreError> {
        let query = query.clone();
        self.read(move |conn| audit::entries(conn, &query)).await
    }

    async fn audit_leaves(&self, after: u64, limit: usize) -> Result<Vec<Hash>, StoreError> {
        self.read(move |conn| audit::leaves(conn, after, limit)).await
    }

    async fn add_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError> {
        let checkpoint = checkpoint.clone();
        self.write(move |tx| audit::add_checkpoint(tx, &checkpoint)).await
    }

    async fn checkpoints(&self, after: u64, limit: usize) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.read(move |conn| audit::checkpoints(conn, after, limit)).await
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.read(audit::latest_checkpoint).await
    }
}

#[async_trait]
impl TokenStore for SqliteStore {
    async fn create_token(&self, token: &TokenRecord) -> Result<bool, StoreError> {
        let token = token.clone();
        self.write(move |tx| tokens::create(tx, &token)).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.read(tokens::list).await
    }

    async fn revoke_token(&self, name: &str, at: DateTime<Utc>, by: &str) -> Result<Option<TokenRecord>, StoreError> {
        let (name, by, at) = (name.to_string(), by.to_string(), micros(&at));
        self.write(move |tx| tokens::revoke(tx, &name, at, &by)).await
    }

    async fn touch_token(&self, name: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let (name, at) = (name.to_string(), micros(&at));
        self.write(move |tx| tokens::touch(tx, &name, at)).await
    }
}

#[async_trait]
impl DeviceRegistry for SqliteStore {
    async fn create_device(&self, id: &str, secret: SecretHash) -> Result<Device, StoreError> {
        let created = self.device_write(DeviceOp::Create { id: id.into(), secret }).await?;
        created.ok_or_else(|| StoreError::Internal(format!("device {id:?} missing right after creation")))
    }

    async fn device(&self, id: &str) -> Result<Option<Device>, StoreError> {
        Ok(self.device_credentials(id).await?.map(|(device, _)| device))
    }

    async fn device_credentials(&self, id: &str) -> Result<Option<(Device, SecretHash)>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| devices::credentials(conn, &id)).await
    }

    async fn devices(&self, query: &glassbox_store::DeviceQuery) -> Result<Vec<Device>, StoreError> {
        let query = query.clone();
        self.read(move |conn| devices::list(conn, &query)).await
    }

    async fn set_device_disabled(&self, id: &str, disabled: bool) -> Result<Option<Device>, StoreError> {
        self.device_write(DeviceOp::SetDisabled { id: id.into(), disabled }).await
    }

    async fn set_device_secret(&self, id: &str, secret: SecretHash) -> Result<Option<Device>, StoreError> {
        self.device_write(DeviceOp::SetSecret { id: id.into(), secret }).await
    }

    async fn delete_device(&self, id: &str) -> Result<Option<Device>, StoreError> {
        self.device_write(DeviceOp::Delete { id: id.into() }).await
    }

    async fn set_device_meta(&self, id: &str, meta: glassbox_store::DeviceMeta) -> Result<Option<Device>, StoreError> {
        let meta = serde_json::to_string(&meta).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.device_write(DeviceOp::SetMeta { id: id.into(), meta }).await
    }

    async fn shadow(&self, id: &str) -> Result<Option<(u64, String)>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| devices::shadow(conn, &id)).await
    }

    async fn put_shadow(&self, id: &str, expected: u64, version: u64, document: String) -> Result<bool, StoreError> {
        let op = DeviceOp::PutShadow { id: id.into(), expected, version, document };
        match self.device_write(op).await {
            Ok(Some(_)) => Ok(true),
            Ok(None) => Err(StoreError::InvalidQuery(format!("no device {id:?}"))),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl CertificateStore for SqliteStore {
    async fn add_certificate(&self, record: CertificateRecord) -> Result<(), StoreError> {
        let serial = record.serial.clone();
        match self.write(move |tx| certificates::add(tx, &record)).await? {
            true => Ok(()),
            false => Err(StoreError::Conflict(format!("certificate serial {serial} already exists"))),
        }
    }

    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let serial = serial.to_string();
        self.read(move |conn| certificates::get(conn, &serial)).await
    }

    async fn certificates(&self, device: &str) -> Result<Vec<CertificateRecord>, StoreError> {
        let device = device.to_string();
        self.read(move |conn| certificates::of_device(conn, &device)).await
    }

    async fn revoke_certificates(
        &self,
        device: &str,
        serial: Option<&str>,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let (device, serial, reason) = (device.to_string(), serial.map(str::to_string), reason.to_string());
        self.write(move |tx| certificates::revoke(tx, &device, serial.as_deref(), at, &reason)).await
    }

    async fn supersede_certificate(
        &self,
        serial: &str,
        renewed_by: &str,
        grace_until: DateTime<Utc>,
    ) -> Result<Option<CertificateRecord>, StoreError> {
        let (serial, renewed_by) = (serial.to_string(), renewed_by.to_string());
        self.write(move |tx| certificates::supersede(tx, &serial, &renewed_by, grace_until)).await
    }

    async fn certificate_used(&self, serial: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let serial = serial.to_string();
        self.write(move |tx| certificates::used(tx, &serial, at)).await
    }

    async fn expiring_certificates(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        self.read(move |conn| certificates::expiring(conn, before, limit)).await
    }

    async fn certificate_warned(&self, serial: &str, days: u32) -> Result<(), StoreError> {
        let serial = serial.to_string();
        self.write(move |tx| certificates::warned(tx, &serial, days)).await
    }
}

#[async_trait]
impl CommandStore for SqliteStore {
    async fn create_command(&self, command: CommandRecord) -> Result<(CommandRecord, bool), StoreError> {
        self.write(move |tx| commands::create(tx, &command)).await
    }

    async fn command(&self, id: &str) -> Result<Option<CommandRecord>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| commands::get(conn, &id)).await
    }

    async fn command_by_key(&self, device: &str, key: &str) -> Result<Option<CommandRecord>, StoreError> {
        let (device, key) = (device.to_string(), key.to_string());
        self.read(move |conn| commands::by_key(conn, &device, &key)).await
    }

    async fn commands(
        &self,
        device: Option<&str>,
        state: Option<CommandState>,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        let device = device.map(str::to_string);
        self.read(move |conn| commands::list(conn, device.as_deref(), state, limit)).await
    }

    async fn advance_command(
        &self,
        id: &str,
        from: &[CommandState],
        to: CommandState,
        response: Option<String>,
        reason: Option<String>,
    ) -> Result<Option<CommandRecord>, StoreError> {
        let (id, from) = (id.to_string(), from.to_vec());
        self.write(move |tx| commands::advance(tx, &id, &from, to, response, reason)).await
    }

    async fn due_commands(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<CommandRecord>, StoreError> {
        self.read(move |conn| commands::due(conn, now, limit)).await
    }
}

#[async_trait]
impl FunctionStore for SqliteStore {
    async fn add_version(&self, name: &str, digest: &str, spec: &str, by: &str) -> Result<FunctionVersion, StoreError> {
        let (name, digest, spec, by) = (name.to_string(), digest.to_string(), spec.to_string(), by.to_string());
        self.write(move |tx| functions::add(tx, &name, &digest, &spec, &by)).await
    }

    async fn set_live(&self, name: &str, version: u32) -> Result<Option<FunctionVersion>, StoreError> {
        let name = name.to_string();
        self.write(move |tx| functions::set_live(tx, &name, version)).await
    }

    async fn delete(&self, name: &str, purge: bool) -> Result<Vec<String>, StoreError> {
        let name = name.to_string();
        self.write(move |tx| functions::delete(tx, &name, purge)).await
    }

    async fn live_log(&self, name: &str) -> Result<Vec<LiveMove>, StoreError> {
        let name = name.to_string();
        self.read(move |conn| functions::live_log(conn, &name)).await
    }

    async fn versions(&self, name: &str) -> Result<Vec<FunctionVersion>, StoreError> {
        let name = name.to_string();
        self.read(move |conn| functions::versions(conn, &name)).await
    }

    async fn live_versions(&self) -> Result<Vec<FunctionVersion>, StoreError> {
        self.read(functions::live).await
    }

    async fn kv_get(&self, function: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (function, key) = (function.to_string(), key.to_string());
        self.read(move |conn| functions::kv_get(conn, &function, &key)).await
    }

    async fn kv_set(&self, function: &str, key: &str, value: Vec<u8>, quota: KvQuota) -> Result<(), StoreError> {
        let (function, key) = (function.to_string(), key.to_string());
        self.write(move |tx| functions::kv_set(tx, &function, &key, &value, quota)).await?.map_err(StoreError::Conflict)
    }

    async fn kv_delete(&self, function: &str, key: &str) -> Result<(), StoreError> {
        let (function, key) = (function.to_string(), key.to_string());
        self.write(move |tx| functions::kv_delete(tx, &function, &key)).await
    }
}

fn configure_writer(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Only takes effect on a new file: 8 KiB pages hold more event rows each.
    conn.pragma_update(None, "page_size", 8192)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL: a commit writes the WAL and returns; the syncer fsyncs it
    // behind the writer, and only then is an acknowledged event answered.
    // Checkpoints still fsync the WAL before copying it and the file after.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -65536)?; // 64 MiB
    conn.pragma_update(None, "wal_autocheckpoint", 4096)?;
    conn.pragma_update(None, "journal_size_limit", 256 * 1024 * 1024)?;
    Ok(())
}

/// Caps the record's size (`store_bytes_max`). Set after the migrations,
/// which may need room a full store no longer has (a table copied).
fn cap_size(conn: &Connection, settings: &RecorderSettings) -> rusqlite::Result<()> {
    if settings.store_bytes_max > 0 {
        let page_size: u64 = conn.pragma_query_value(None, "page_size", |r| r.get::<_, i64>(0))? as u64;
        conn.pragma_update(None, "max_page_count", (settings.store_bytes_max / page_size).max(1) as i64)?;
    }
    Ok(())
}

/// How long opening waits for another holder of the data directory's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes the data directory's lock file, so two processes never share one
/// store. The operating system releases it when the process ends, however.
fn lock_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    use std::io::{Read, Seek, Write};
    let path = dir.join("LOCK");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    // A process still exiting lets go within moments: wait that long before
    // calling the directory in use. (A store in this process lets go when
    // it closes.)
    let give_up = std::time::Instant::now() + LOCK_WAIT;
    while let Err(std::fs::TryLockError::WouldBlock) = file.try_lock() {
        if std::time::Instant::now() < give_up {
            std::thread::sleep(std::time::Duration::from_millis(50));
            continue;
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        return Err(StoreError::Unavailable(format!(
            "data directory {} is in use by another glassbox process (pid {}); stop it or choose another --data-dir",
            dir.display(),
            holder.trim()
        )));
    }
    let _ = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| write!(file, "{}", std::process::id()));
    Ok(file)
}

/// Opens the index file and brings it up to date with the record; a file
/// that cannot be opened or caught up is derived data: it is rebuilt.
fn open_index(dir: &Path, recorder: &Connection) -> Result<Connection, StoreError> {
    match try_open_index(dir, recorder) {
        Ok(conn) => Ok(conn),
        Err(e) => {
            tracing::warn!(error = %e, "the recorder index is unusable; rebuilding it from recorder.db");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(dir.join(format!("{INDEX_FILE_NAME}{suffix}")));
            }
            try_open_index(dir, recorder)
        }
    }
}

fn try_open_index(dir: &Path, recorder: &Connection) -> Result<Connection, StoreError> {
    let path = dir.join(INDEX_FILE_NAME);
    let failed = |e: String| StoreError::Unavailable(format!("{}: {e}", path.display()));
    let marker = dir.join(INDEX_CLEAN_MARKER);
    let closed_cleanly = std::fs::remove_file(&marker).is_ok();
    let existed = path.exists();
    let mut conn = Connection::open(&path).map_err(|e| failed(e.to_string()))?;
    if existed && !closed_cleanly {
        check_index(&conn).map_err(failed)?;
    }
    indexer::configure(&conn).map_err(|e| failed(e.to_string()))?;
    schema::migrate(&mut conn, schema::INDEX).map_err(failed)?;
    let started = std::time::Instant::now();
    let indexed = indexer::catch_up(&mut conn, recorder).map_err(|e| failed(e.to_string()))?;
    tracing::debug!(events = indexed, elapsed = ?started.elapsed(), "indexed the record's newest events again");
    if started.elapsed() > std::time::Duration::from_secs(1) {
        tracing::info!(events = indexed, elapsed = ?started.elapsed(), "caught the recorder index up with the record (a new index file is built from all of it)");
    }
    Ok(conn)
}

/// After an unclean stop: is the index file structurally whole?
fn check_index(conn: &Connection) -> Result<(), String> {
    let started = std::time::Instant::now();
    let verdict: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| e.to_string())?;
    tracing::info!(elapsed = ?started.elapsed(), %verdict, "checked the recorder index after an unclean stop");
    match verdict.as_str() {
        "ok" => Ok(()),
        _ => Err(format!("integrity check failed: {verdict}")),
    }
}

fn intern_node(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.execute("INSERT OR IGNORE INTO nodes (name) VALUES (?1)", [name])?;
    conn.query_row("SELECT id FROM nodes WHERE name = ?1", [name], |r| r.get(0))
}

/// Microseconds since the Unix epoch: the recorder's time unit.
fn micros(time: &DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

/// Ids are stored as their 16 bytes, big-endian, so byte order is time order.
fn id_bytes(id: EventId) -> [u8; 16] {
    id.0.to_be_bytes()
}

/// A stored event that does not decode, as the error of the row holding it.
fn undecodable(e: codec::Undecodable) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Blob, Box::new(e))
}

fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// A bounded pool of read-only connections.
struct Readers {
    path: PathBuf,
    index_path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    fn new(path: PathBuf, index_path: PathBuf) -> Self {
        Self { path, index_path, idle: Mutex::new(Vec::new()), permits: Arc::new(Semaphore::new(READERS_MAX)) }
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => self.connect().map_err(|e| StoreError::Unavailable(format!("cannot open a reader: {e}")))?,
        };
        let result = f(&conn).map_err(|e| StoreError::Internal(e.to_string()));
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        result
    }

    fn connect(&self) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "cache_size", -32768)?;
        // Inherits the read-only flag of the main connection.
        conn.execute("ATTACH DATABASE ?1 AS idx", [self.index_path.to_string_lossy()])?;
        Ok(conn)
    }
}
