//! The ingest pipeline: drafts → minted, lineage-resolved events → durable
//! `received` records → the bus. Every ingress (HTTP now, MQTT and
//! functions later) goes through [`Pipeline::ingest`], so every event gets
//! the same identity, chain and record.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Utc;
use glassbox_bus::Bus;
use glassbox_core::{Draft, EventId, EventQuery, IdMinter, Lineage, RecordedEvent, State};
use glassbox_store::{Appended, EventStore, Ingress, StoreError, Transition};

use crate::metrics::Counters;

pub struct Pipeline {
    store: Arc<dyn EventStore>,
    bus: Arc<dyn Bus>,
    minter: IdMinter,
    node: String,
    pub counters: Arc<Counters>,
    /// Where delivery ends (delivered, dropped) are copied: metrics, export.
    /// Each with whether it wants drops only.
    transitions_taps: std::sync::RwLock<Vec<(tokio::sync::mpsc::Sender<Transition>, bool)>>,
}

impl Pipeline {
    pub fn new(store: Arc<dyn EventStore>, bus: Arc<dyn Bus>, node: String) -> Self {
        let transitions_taps = std::sync::RwLock::default();
        Self { store, bus, minter: IdMinter::new(), node, counters: Arc::default(), transitions_taps }
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

    /// Records `drafts` as events and publishes them once durable. Resolves
    /// only after the `received` records are on disk: the caller may then
    /// acknowledge. `via` names the ingress in the `received` state.
    pub async fn ingest(&self, drafts: Vec<Draft>, via: &str) -> Result<Vec<Appended>, StoreError> {
        let now = Utc::now();
        let mut batch = Vec::with_capacity(drafts.len());
        for draft in drafts {
            let parent = self.parent_of(&draft).await?;
            let event = draft.into_event(self.minter.mint(), now, parent.as_ref());
            batch.push(Ingress::new(event, now, via, &self.node));
        }
        // Recording and publishing run as their own task: a caller that gives
        // up waiting (a timeout, a closed connection) cannot leave an event
        // recorded but never published.
        let (store, bus, counters) = (self.store.clone(), self.bus.clone(), self.counters.clone());
        let task = tokio::spawn(async move {
            let recorded: Vec<_> = batch.iter().map(Ingress::recorded).collect();
            let appended = store.append(batch).await?;
            let fresh: Vec<_> =
                recorded.into_iter().zip(&appended).filter(|(_, a)| !a.duplicate).map(|(r, _)| r).collect();
            counters.events_received.fetch_add(fresh.len() as u64, Ordering::Relaxed);
            counters.events_deduplicated.fetch_add((appended.len() - fresh.len()) as u64, Ordering::Relaxed);
            bus.publish(fresh);
            Ok(appended)
        });
        task.await.map_err(|e| StoreError::Internal(format!("ingest task failed: {e}")))?
    }

    /// Recorded events with ids after `after` (at most [`READ_BACK_MAX`]),
    /// oldest first: what a bus reader that fell behind missed.
    pub async fn recorded_after(&self, after: EventId) -> Result<Vec<RecordedEvent>, StoreError> {
        let since = chrono::DateTime::<Utc>::from(after.datetime());
        let mut query = EventQuery { since: Some(since), limit: 1000, ..Default::default() };
        let mut found = Vec::new();
        loop {
            let page = self.store.query(&query).await?;
            let reached = page.events.iter().any(|e| e.event.id <= after);
            found.extend(page.events.into_iter().filter(|e| e.event.id > after));
            match page.next_cursor {
                Some(cursor) if !reached && found.len() < READ_BACK_MAX => query.cursor = Some(cursor),
                _ => break,
            }
        }
        found.reverse();
        Ok(found)
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

/// Most events read back for a reader that fell behind the bus.
pub const READ_BACK_MAX: usize = 200_000;

/// How far before the newest event it saw a bus reader reads back after a
/// lag: events reach the bus close to, not exactly in, id order (ids are
/// minted before the recorder queue; each ingest publishes from its own
/// task), so one with an older id may still have been on its way.
const READ_BACK_MARGIN: chrono::Duration = chrono::Duration::seconds(2);
/// Event ids a bus reader remembers, to take each event once whether it
/// came from the bus or from a read-back.
const SEEN_MAX: usize = 1 << 17;

/// Where a bus reader is, so that after a lag it reads back what it missed
/// and then skips those same events if the bus still delivers them.
#[derive(Default)]
pub struct BusCursor {
    last: Option<EventId>,
    seen: std::collections::HashSet<EventId>,
    order: std::collections::VecDeque<EventId>,
}

impl BusCursor {
    /// Whether an event (from the bus or a read-back) is new to this reader.
    pub fn fresh(&mut self, id: EventId) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > SEEN_MAX
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.last = self.last.max(Some(id));
        true
    }

    /// The newest event it has taken.
    pub fn last(&self) -> Option<EventId> {
        self.last
    }

    /// What the reader missed, oldest first, noted as seen: everything
    /// recorded from a little before the newest event it saw that it has
    /// not seen — never from before the oldest id it still remembers, so
    /// nothing it took is taken again.
    pub async fn read_back(&mut self, pipeline: &Pipeline) -> Result<Vec<RecordedEvent>, StoreError> {
        let Some(last) = self.last else { return Ok(Vec::new()) };
        let margin = glassbox_core::first_id_at(chrono::DateTime::<Utc>::from(last.datetime()) - READ_BACK_MARGIN);
        let from = self.order.front().map_or(last, |oldest| margin.max(*oldest));
        let recorded = pipeline.recorded_after(from).await?;
        Ok(recorded.into_iter().filter(|r| self.fresh(r.event.id)).collect())
    }
}

/// The MQTT gateway records through the same pipeline as every ingress.
#[async_trait::async_trait]
impl glassbox_gateway::broker::Recorder for Pipeline {
    async fn ingest(&self, drafts: Vec<Draft>, via: &str) -> Result<Vec<Appended>, StoreError> {
        Pipeline::ingest(self, drafts, via).await
    }

    async fn record(&self, transitions: Vec<Transition>) -> Result<(), StoreError> {
        self.copy_to_taps(&transitions);
        self.store.record(transitions).await
    }
}

impl Pipeline {
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

#[cfg(test)]
mod tests {
    use glassbox_core::IdMinter;

    use super::*;

    #[test]
    fn a_bus_reader_takes_each_event_once_in_whatever_order_it_comes() {
        let minter = IdMinter::new();
        let (older, newer) = (minter.mint(), minter.mint());
        let mut cursor = BusCursor::default();
        assert!(cursor.fresh(newer));
        assert!(cursor.fresh(older), "an older id arriving later is still new");
        assert!(!cursor.fresh(newer) && !cursor.fresh(older), "each once");
        assert_eq!(cursor.last, Some(newer));
        for _ in 0..SEEN_MAX {
            cursor.fresh(minter.mint());
        }
        assert_eq!(cursor.seen.len(), SEEN_MAX, "memory is bounded");
    }
}
