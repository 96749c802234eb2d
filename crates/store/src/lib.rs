//! The store ports: what the platform asks of its storage, and nothing of
//! how a backend answers.
//!
//! [`EventStore`] is the flight recorder that the pipeline, the API and
//! every later consumer (metrics, diagnosis, cost) talk to: append events
//! durably, record their state transitions, and answer queries. Beside it:
//! [`SettingStore`] (the platform's few values about itself), [`AuditStore`]
//! (the tamper-evident log of changes), [`TokenStore`] (named API tokens),
//! [`BudgetStore`] (cost budgets), [`DeviceRegistry`] (who may connect), [`CertificateStore`]
//! (the device certificates the CA issued), [`CommandStore`] (commands to
//! devices), [`FunctionStore`] (deployed versions, the live alias, each
//! function's key-value store), [`SessionStore`] (MQTT session state) and
//! [`MetricStore`] (metric buckets); their record and value types; and
//! [`StoreError`].
//!
//! This crate owns the contracts, checked for every implementation by the
//! conformance suite in `glassbox-testkit`. It must not touch a database,
//! a file or a network: backends (`glassbox-store-sqlite`, the embedded
//! default) implement the traits, and only the server picks one.
//!
//! Durability contract: [`EventStore::append`] resolves only once the
//! events' `received` records are durable (on disk), so the caller may then
//! acknowledge the producer. Many concurrent appends share one commit.
//! [`EventStore::append_committed`] splits that wait in two: the events
//! may be handed on once committed, and the producer answered once
//! [`Committed::durable`] resolves.

pub mod audit;
pub mod budgets;
pub mod certificates;
pub mod commands;
pub mod devices;
pub mod functions;
pub mod metrics;
pub mod sessions;
pub mod settings;
pub mod tokens;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use glassbox_core::{Event, EventId, EventQuery, Lineage, Page, RecordedEvent, State, StateRecord};

pub use audit::{AuditQuery, AuditStore, StoredCheckpoint};
pub use budgets::{BudgetRecord, BudgetStore};
pub use certificates::{CertificateRecord, CertificateStore};
pub use commands::{CommandRecord, CommandState, CommandStore};
pub use devices::{Device, DeviceMeta, DeviceQuery, DeviceRegistry, SecretHash};
pub use functions::{FunctionStore, FunctionVersion, KvQuota, LIVE_LOG_MAX, LiveMove};
pub use metrics::{MetricPoint, MetricStore, Retention};
pub use sessions::{SessionOp, SessionSnapshot, SessionStore};
pub use settings::SettingStore;
pub use tokens::{TokenRecord, TokenStore};

/// An event arriving at the recorder: the event and its `received` record.
///
/// Shared (`Arc`) so that the same allocation is written by the recorder and
/// then published on the bus, without copying the data.
#[derive(Debug, Clone)]
pub struct Ingress {
    recorded: Arc<RecordedEvent>,
    audit: Option<Box<glassbox_audit::Draft>>,
    /// Whether someone outside is answered once it is recorded.
    answered: bool,
}

impl Ingress {
    /// `via` names the ingress (`http`, `mqtt`, …) in the `received` state.
    pub fn new(event: Event, received_at: DateTime<Utc>, via: &str, node: &str) -> Self {
        let received = StateRecord {
            state: State::Received,
            at: received_at,
            target: None,
            detail: Some(via.to_string()),
            node: Some(node.to_string()),
        };
        let answered = from_outside(via);
        Self { recorded: Arc::new(RecordedEvent { event, states: vec![received] }), audit: None, answered }
    }

    /// Nobody outside is answered once this is recorded (an MQTT QoS 0
    /// PUBLISH): its commit need not wait for the disk, as for the
    /// platform's own records.
    pub fn unanswered(mut self) -> Self {
        self.answered = false;
        self
    }

    /// The event is a change: the store seals `draft` as the audit log's
    /// next entry (next `seq`, chained to the last) in the same commit as
    /// the event, so neither is ever kept without the other.
    pub fn with_audit(mut self, draft: glassbox_audit::Draft) -> Self {
        self.audit = Some(Box::new(draft));
        self
    }

    /// The audit entry to seal with this event, if it is a change.
    pub fn audit(&self) -> Option<&glassbox_audit::Draft> {
        self.audit.as_deref()
    }

    pub fn event(&self) -> &Event {
        &self.recorded.event
    }

    pub fn received_at(&self) -> DateTime<Utc> {
        self.recorded.states[0].at
    }

    pub fn via(&self) -> Option<&str> {
        self.recorded.states[0].detail.as_deref()
    }

    /// Whether someone outside the platform is answered once this is
    /// recorded (a device's PUBACK, an HTTP 2xx): its commit is synced
    /// before that answer. What the platform records about its own work
    /// (`platform`, `function`: outcomes, outputs, alerts), and what nobody
    /// is answered for ([`Self::unanswered`]), is synced with the next that
    /// is, or within [`SYNC_WITHIN`].
    pub fn acknowledged(&self) -> bool {
        self.answered
    }

    /// Whether it came from outside the platform (a device, a client),
    /// answered or not.
    pub fn from_outside(&self) -> bool {
        self.via().is_some_and(from_outside)
    }

    /// The event as recorded, to publish once it is committed.
    pub fn recorded(&self) -> Arc<RecordedEvent> {
        self.recorded.clone()
    }
}

/// Whether an ingress is outside the platform: not its own records
/// (`platform`) nor what functions produce (`function`).
fn from_outside(via: &str) -> bool {
    !matches!(via, "platform" | "function")
}

/// What [`EventStore::append`] did with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The recorded id: the new event's, or for a duplicate the first one's.
    pub id: EventId,
    pub correlationid: String,
    /// True when this was a retry of an event already recorded (same
    /// `source` and `originid` within the de-duplication window).
    pub duplicate: bool,
}

/// An append committed: its events are recorded and readable, and a crash
/// of the process no longer loses them; [`Self::durable`] resolves once
/// what the append promised on disk is there.
#[derive(Debug)]
pub struct Committed {
    pub appended: Vec<Appended>,
    pub durable: Durable,
}

impl Committed {
    /// Events nobody waits on the disk for: there is nothing to sync.
    pub fn unanswered(appended: Vec<Appended>) -> Self {
        Self { appended, durable: Durable::ready() }
    }

    /// The events, once what the append promised on disk is there.
    pub async fn on_disk(self) -> Result<Vec<Appended>, StoreError> {
        self.durable.await?;
        Ok(self.appended)
    }
}

/// The wait for an append's [`Ingress::acknowledged`] events to be on disk:
/// what a producer is answered on. Nothing to wait for when none is.
pub struct Durable(Option<DiskWait>);

type DiskWait = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

impl Durable {
    pub fn new(wait: impl Future<Output = Result<(), StoreError>> + Send + 'static) -> Self {
        Self(Some(Box::pin(wait)))
    }

    /// Nothing to wait for.
    pub fn ready() -> Self {
        Self(None)
    }

    /// Whether there is anything to wait for.
    pub fn waits(&self) -> bool {
        self.0.is_some()
    }
}

impl Future for Durable {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            None => Poll::Ready(Ok(())),
            Some(wait) => wait.as_mut().poll(cx),
        }
    }
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable").field("waits", &self.waits()).finish()
    }
}

/// A state transition of an event, for one target or for the whole event.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub event: EventId,
    pub state: State,
    pub at: DateTime<Utc>,
    pub target: Option<String>,
    pub detail: Option<String>,
    /// For a delivery's end (`delivered`, `dropped`) whose `in_transit` was
    /// not recorded on its own: when the delivery went in transit. Recording
    /// the end then records both states: the event reads back with an
    /// `in_transit` state at this time (same target, no detail) before it.
    pub in_transit_at: Option<DateTime<Utc>>,
}

impl Transition {
    pub fn new(event: EventId, state: State, target: Option<String>, detail: Option<String>) -> Self {
        Self { event, state, at: Utc::now(), target, detail, in_transit_at: None }
    }
}

/// The events of one correlation chain, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    pub events: Vec<RecordedEvent>,
    /// True when the chain has more events than were returned.
    pub truncated: bool,
}

/// How an event store is doing: what readiness and `/metrics` report, the
/// same for every backend. A store that cannot tell (it is not reachable)
/// reports itself not writable, with the reason in `last_error`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StoreStatus {
    /// Which implementation answers, e.g. `sqlite`.
    pub backend: &'static str,
    /// False after a failed commit, until a commit succeeds again.
    pub writable: bool,
    /// The last write error, e.g. `database or disk is full`.
    pub last_error: Option<String>,
    /// Writes accepted and waiting to be committed.
    pub writes_waiting: u64,
    /// Events recorded since start (a duplicate is not a new one).
    pub events_appended: u64,
    pub commits: u64,
    /// Commits whose answer waited until they were on disk (the others held
    /// only what nobody outside is answered for — the platform's own
    /// records, delivery states, QoS 0 messages — on disk within
    /// [`SYNC_WITHIN`]).
    pub commits_durable: u64,
    /// Events removed by retention since start.
    pub events_expired: u64,
    /// Committed writes that filtered queries do not see yet (they wait for
    /// them), in batches; 0 for a backend whose queries see every commit.
    pub query_lag: u64,
    /// Set when filtered queries answer from part of the record until a
    /// restart (e.g. the embedded store's index upkeep failed for good).
    pub query_error: Option<String>,
    /// Commits by how long they took (the write; the wait for the disk is
    /// counted apart, in `sync_seconds_*`), per bucket of
    /// [`COMMIT_SECONDS_BUCKETS`] (not cumulative), and their total time.
    pub commit_seconds_buckets: Vec<u64>,
    pub commit_seconds_sum: f64,
    /// Syncs of committed writes to disk by how long they took, in the
    /// same buckets; 0 for a backend that syncs inside its commits.
    pub sync_seconds_buckets: Vec<u64>,
    pub sync_seconds_sum: f64,
}

/// Upper bounds (seconds) of the commit-time histogram's buckets.
pub const COMMIT_SECONDS_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Writes are refused: the store cannot make them durable now.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A query the store cannot answer as asked (e.g. a foreign cursor).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The thing to create exists already.
    #[error("{0}")]
    Conflict(String),
    #[error("transition refers to unknown event {0}")]
    UnknownEvent(EventId),
    #[error("store error: {0}")]
    Internal(String),
}

/// The longest a committed record nobody outside is answered for (the
/// platform's own, a QoS 0 message) waits for its fsync: a power loss (not
/// a crash of the process) may lose this much of them, and never anything
/// acknowledged.
pub const SYNC_WITHIN: Duration = Duration::from_millis(100);

/// The recorder's storage. Implementations must be safe to share across
/// tasks; all methods may be called concurrently.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Records events; resolves once their `received` records are committed:
    /// on disk for [`Ingress::acknowledged`] events, and within
    /// [`SYNC_WITHIN`] for the others.
    async fn append(&self, batch: Vec<Ingress>) -> Result<Vec<Appended>, StoreError> {
        self.append_committed(batch).await?.on_disk().await
    }

    /// Records events; resolves once they are committed (a crash of the
    /// process keeps them), before the acknowledged ones are on disk: the
    /// caller may hand the events on now and answer their producer once
    /// [`Committed::durable`] resolves. What is on disk is always a prefix
    /// of what was committed, so nothing written after an event outlives it.
    async fn append_committed(&self, batch: Vec<Ingress>) -> Result<Committed, StoreError>;

    /// Records state transitions (committed, on disk within [`SYNC_WITHIN`]:
    /// no one outside is answered on the strength of a transition).
    async fn record(&self, transitions: Vec<Transition>) -> Result<(), StoreError>;

    /// One event with all its states.
    async fn get(&self, id: EventId) -> Result<Option<RecordedEvent>, StoreError>;

    /// What a child of event `id` inherits; `None` if it is unknown.
    async fn lineage(&self, id: &str) -> Result<Option<Lineage>, StoreError>;

    /// Filtered events, newest first, one page.
    async fn query(&self, query: &EventQuery) -> Result<Page, StoreError>;

    /// The events of `ids` that exist, in id order, without their states:
    /// how a consumer reads back, in one go, events it noted by id.
    async fn get_many(&self, ids: Vec<EventId>) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Events with ids after `after`, oldest first, at most `limit`,
    /// without their states: how a consumer of the recorder reads its way
    /// forward from a position it keeps.
    async fn read_after(&self, after: EventId, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The ids of events after `after`, oldest first, at most `limit`: a
    /// consumer that fell behind lists a window cheaply, then reads whole
    /// ([`EventStore::get_many`]) only the events it did not take.
    async fn ids_after(&self, after: EventId, limit: usize) -> Result<Vec<EventId>, StoreError>;

    /// Every event of a correlation chain (at most `limit`), oldest first.
    async fn chain(&self, correlationid: &str, limit: usize) -> Result<Chain, StoreError>;

    /// How the store is doing, for readiness and `/metrics`.
    async fn status(&self) -> StoreStatus;

    /// Finishes queued writes and stops the writer.
    async fn close(&self);
}
