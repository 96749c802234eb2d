//! The ingest pipeline: drafts → minted, lineage-resolved events → committed
//! `received` records → the bus, and the wait for the disk that answers
//! producers. Every ingress (HTTP now, MQTT and
//! functions later) goes through [`Pipeline::ingest`], so every event gets
//! the same identity, chain and record.
//!
//! Owns ingest (ids, lineage, the record, the bus once committed), the
//! consumers' read-back and saved cursors, the delivery-end taps and ingest's
//! counters ([`metrics`]). Must not know an ingress (HTTP, MQTT): they call
//! [`Pipeline::ingest`] and [`Pipeline::record`]; nor a store backend.

pub mod metrics;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use chrono::{DateTime, Utc};
use glassbox_bus::{Backlog, BacklogError, Bus, Consumer, Cursors};
use glassbox_core::{Draft, EventId, IdMinter, Lineage, RecordedEvent, SpanKey, State};
use glassbox_store::{Appended, Committed, EventStore, Ingress, SettingStore, StoreError, Transition};

use crate::metrics::Counters;

/// Who waits on an append, which decides whether it waits for the disk
/// and whether it is audited.
#[derive(Clone, Copy)]
enum Write {
    /// A producer is answered once it is durable (a PUBACK, an HTTP 2xx).
    Answered,
    /// Nobody outside is answered (an MQTT QoS 0 PUBLISH).
    Unanswered,
    /// The platform's own events; changes among them are audited.
    Platform,
}

/// The one way into the recorder: see the crate docs.
pub struct Pipeline {
    store: Arc<dyn EventStore>,
    /// Where durable consumers keep their cursors.
    settings: Arc<dyn SettingStore>,
    bus: Arc<dyn Bus>,
    minter: IdMinter,
    span_key: SpanKey,
    node: String,
    pub counters: Arc<Counters>,
    /// Where delivery ends (delivered, dropped) are copied: metrics, export.
    /// Each with whether it wants drops only.
    transitions_taps: std::sync::RwLock<Vec<(tokio::sync::mpsc::Sender<Transition>, bool)>>,
}

impl Pipeline {
    pub fn new(
        store: Arc<dyn EventStore>,
        settings: Arc<dyn SettingStore>,
        bus: Arc<dyn Bus>,
        node: String,
        span_key: SpanKey,
    ) -> Self {
        let (minter, counters, transitions_taps) = (IdMinter::new(), Arc::default(), std::sync::RwLock::default());
        Self { store, settings, bus, minter, node, span_key, counters, transitions_taps }
    }

    /// The key the spans of this platform's traces are derived with.
    pub fn span_key(&self) -> SpanKey {
        self.span_key
    }

    /// Copies every delivery's end (or only the drops) to `tap` from now
    /// on, never waiting: when the tap is full, copies are skipped.
    pub fn tap_transitions(&self, tap: tokio::sync::mpsc::Sender<Transition>, drops_only: bool) {
        self.transitions_taps.write().unwrap_or_else(|e| e.into_inner()).push((tap, drops_only));
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// Records `drafts` as events and publishes them once committed.
    /// Resolves only after the `received` records are on disk: the caller
    /// may then acknowledge. `via` names the ingress in the `received` state.
    ///
    /// What producers send (HTTP, MQTT, function outputs) comes this way and
    /// never enters the audit log, whatever its type says: see
    /// [`Self::ingest_platform`].
    pub async fn ingest(&self, drafts: Vec<Draft>, via: &str) -> Result<Vec<Appended>, StoreError> {
        self.ingest_committed(drafts, via).await?.on_disk().await
    }

    /// Records `drafts` as [`Self::ingest`] does, but resolves once they are
    /// committed and published, before they are on disk: the caller may hand
    /// them on at once (an MQTT gateway routes them) and acknowledge their
    /// producer once [`Committed::durable`] resolves.
    pub async fn ingest_committed(&self, drafts: Vec<Draft>, via: &str) -> Result<Committed, StoreError> {
        self.append(drafts, via, Write::Answered).await
    }

    /// Records what nobody outside is answered for (MQTT QoS 0 PUBLISHes),
    /// as [`Self::ingest`] does, except that it resolves once the events
    /// are committed, before they are on disk: they are put there within
    /// [`glassbox_store::SYNC_WITHIN`], and a crash of the process loses
    /// none of them, only a crash of the machine in between could.
    pub async fn ingest_unanswered(&self, drafts: Vec<Draft>, via: &str) -> Result<Vec<Appended>, StoreError> {
        self.append(drafts, via, Write::Unanswered).await?.on_disk().await
    }

    /// Records the platform's own events, as [`Self::ingest`] does; those
    /// that are changes (`glassbox_audit::ACTIONS`) get their audit entry
    /// sealed in the same commit. Only services call this, with changes
    /// they made for a principal: no producer can write an audit entry.
    /// A change made through the API (`via` "api") is answered, so this
    /// resolves once it is on disk; the platform's own records (`via`
    /// "platform") once committed.
    pub async fn ingest_platform(&self, drafts: Vec<Draft>, via: &str) -> Result<Vec<Appended>, StoreError> {
        self.append(drafts, via, Write::Platform).await?.on_disk().await
    }

    /// Records and publishes once committed; [`Committed::durable`] waits
    /// for the disk if one of the events is [`Ingress::acknowledged`].
    async fn append(&self, drafts: Vec<Draft>, via: &str, write: Write) -> Result<Committed, StoreError> {
        let now = Utc::now();
        let mut batch = Vec::with_capacity(drafts.len());
        for draft in drafts {
            let parent = self.parent_of(&draft).await?;
            let event = draft.into_event(self.minter.mint(), now, parent.as_ref());
            let ingress = Ingress::new(event, now, via, &self.node);
            batch.push(match write {
                Write::Answered => ingress,
                Write::Unanswered => ingress.unanswered(),
                Write::Platform => self.audited(ingress, now),
            });
        }
        // Recording and publishing run as their own task: a caller that gives
        // up waiting (a timeout, a closed connection) cannot leave an event
        // recorded but never published. Published once committed, like what
        // the gateway routes: what is on disk is always a prefix of what was
        // committed, so nothing a consumer makes of an event outlives it.
        let (store, bus, counters) = (self.store.clone(), self.bus.clone(), self.counters.clone());
        let task = tokio::spawn(async move {
            let recorded: Vec<_> = batch.iter().map(Ingress::recorded).collect();
            let committed = store.append_committed(batch).await?;
            let appended = &committed.appended;
            let fresh: Vec<_> =
                recorded.into_iter().zip(appended).filter(|(_, a)| !a.duplicate).map(|(r, _)| r).collect();
            counters.events_received.fetch_add(fresh.len() as u64, Ordering::Relaxed);
            counters.events_deduplicated.fetch_add((appended.len() - fresh.len()) as u64, Ordering::Relaxed);
            bus.publish(fresh);
            Ok(committed)
        });
        task.await.map_err(|e| StoreError::Internal(format!("ingest task failed: {e}")))?
    }

    /// A change's event carries its audit entry's draft, for the store to
    /// seal in the same commit (a string match for every other event).
    fn audited(&self, ingress: Ingress, now: DateTime<Utc>) -> Ingress {
        let event = ingress.event();
        if !glassbox_audit::is_change(&event.ty) {
            return ingress;
        }
        let salt = hex::encode(glassbox_core::secrets::salt());
        match glassbox_audit::draft_for(event, now, &self.node, salt) {
            Some(draft) => ingress.with_audit(draft),
            None => ingress,
        }
    }

    /// The parent's lineage, when the draft names a parent: its chain is
    /// inherited and its depth bounds the child's from below. A draft that
    /// spells out its chain, depth and trace itself (a producer holding the
    /// parent, like the function runtime) inherits nothing: no lookup.
    async fn parent_of(&self, draft: &Draft) -> Result<Option<Lineage>, StoreError> {
        let spelled_out = draft.correlationid.is_some() && draft.hop.is_some() && draft.traceparent.is_some();
        match &draft.causationid {
            Some(parent) if !spelled_out => self.store.lineage(parent).await,
            _ => Ok(None),
        }
    }
}

/// Events read whole per store call of a read-back (one SQL parameter each).
const EVENTS_PAGE: usize = 1_000;

/// The recorder, read by id: what a [`Consumer`] missed on the bus. Weak,
/// so that a consumer does not keep the recorder open after a stop.
struct Recorded(Weak<Pipeline>);

impl Recorded {
    fn store(&self) -> Result<Arc<dyn EventStore>, BacklogError> {
        Ok(self.0.upgrade().ok_or("the server is stopping")?.store.clone())
    }
}

#[async_trait::async_trait]
impl Backlog for Recorded {
    async fn ids_after(&self, after: EventId, limit: usize) -> Result<Vec<EventId>, BacklogError> {
        Ok(self.store()?.ids_after(after, limit).await?)
    }

    async fn recorded(&self, ids: Vec<EventId>) -> Result<Vec<RecordedEvent>, BacklogError> {
        let store = self.store()?;
        let mut found = Vec::with_capacity(ids.len());
        for page in ids.chunks(EVENTS_PAGE) {
            found.extend(store.get_many(page.to_vec()).await?);
        }
        Ok(found)
    }
}

/// Durable consumers' cursors, kept in the platform's settings as
/// `<consumer>.position`.
struct SavedCursors(Arc<dyn SettingStore>);

#[async_trait::async_trait]
impl Cursors for SavedCursors {
    async fn load(&self, consumer: &str) -> Result<Option<EventId>, BacklogError> {
        let saved = self.0.setting(&format!("{consumer}.position")).await?;
        Ok(saved.and_then(|s| s.parse::<EventId>().ok()))
    }

    async fn save(&self, consumer: &str, cursor: EventId) -> Result<(), BacklogError> {
        Ok(self.0.put_setting(&format!("{consumer}.position"), &cursor.to_string()).await?)
    }
}

impl Pipeline {
    /// Where durable consumers keep their cursors.
    pub fn cursors(&self) -> Arc<dyn Cursors> {
        Arc::new(SavedCursors(self.settings.clone()))
    }

    /// A consumer named `name` of what is recorded from now on (see
    /// [`glassbox_bus::Consumer`]): live from the bus, what the bus skips
    /// read back from the recorder.
    pub fn consumer(self: &Arc<Self>, name: &str) -> Consumer {
        Consumer::new(name, self.bus.subscribe(), Arc::new(Recorded(Arc::downgrade(self))))
    }
}

/// Ingest's counters and the store's status.
#[async_trait::async_trait]
impl metrics::Collector for Pipeline {
    async fn collect(&self, out: &mut String) {
        out.push_str(&self.counters.render(&self.store.status().await));
    }
}

impl Pipeline {
    /// Records delivery states, copying delivery ends to the taps first.
    pub async fn record(&self, transitions: Vec<Transition>) -> Result<(), StoreError> {
        self.copy_to_taps(&transitions);
        self.store.record(transitions).await
    }

    fn copy_to_taps(&self, transitions: &[Transition]) {
        let taps = self.transitions_taps.read().unwrap_or_else(|e| e.into_inner());
        if !taps.is_empty() {
            let ends = transitions
                .iter()
                .filter(|t| t.target.is_some() && matches!(t.state, State::Delivered | State::Dropped));
            for end in ends {
                for (tap, drops_only) in taps.iter() {
                    if !drops_only || end.state == State::Dropped {
                        let _ = tap.try_send(end.clone());
                    }
                }
            }
        }
    }
}
