//! One way to read the recorded stream: a named [`Consumer`].
//!
//! Every service that acts on recorded events (functions, liveness,
//! metrics, live diagnosis, export) reads them through a consumer, with one
//! guarantee: **each event recorded while the consumer runs is handed to it
//! once** (per run), roughly in id order. The bus is the fast path; when
//! the bus skipped events because the consumer fell behind, the consumer
//! reads them back from the recorder ([`Backlog`]) and then ignores the
//! copies the bus may still deliver (a bounded window of ids seen).
//!
//! A durable consumer also keeps a cursor ([`Acks`], saved through
//! [`Cursors`] under its name): the oldest event handed out whose work is
//! not acknowledged, or the newest acknowledged. After a crash or a stop
//! the next run reads the recorder from a margin before the cursor, so the
//! delivery is at least once across runs and the consumer must be
//! idempotent by event id (functions are: an event's recorded outcome
//! closes it). How the same contract maps to NATS JetStream durable
//! consumers is in `docs/decisions/0015-one-durable-consumer.md`.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use glassbox_core::{EventId, RecordedEvent};

use crate::{BusItem, Subscription};

/// Most ids a consumer remembers to take each event once.
pub const SEEN_MAX: usize = 1 << 17;
/// How far before the newest event it saw a consumer reads back after the
/// bus skipped some: events reach the bus close to, not exactly in, id
/// order (ids are minted before the recorder's queue; each ingest
/// publishes from its own task), so one with an older id may still have
/// been on its way.
pub const READ_BACK_MARGIN: Duration = Duration::from_secs(2);
/// Events a consumer takes from the bus in one wake-up.
const BATCH_MAX: usize = 256;

/// An error reading the recorder, as text: the consumer reports it and
/// goes on; what it could not read is still recorded.
pub type BacklogError = Box<dyn std::error::Error + Send + Sync>;

/// The recorded stream, read by id: what the bus skipped is here.
#[async_trait::async_trait]
pub trait Backlog: Send + Sync + 'static {
    /// Events recorded after `after` (by id), oldest first; an
    /// implementation bounds how many one call returns.
    async fn recorded_after(&self, after: EventId) -> Result<Vec<RecordedEvent>, BacklogError>;
}

/// Where each durable consumer's cursor is kept, by consumer name.
#[async_trait::async_trait]
pub trait Cursors: Send + Sync + 'static {
    async fn load(&self, consumer: &str) -> Result<Option<EventId>, BacklogError>;
    async fn save(&self, consumer: &str, cursor: EventId) -> Result<(), BacklogError>;
}

/// What one wake-up of a consumer brings.
#[derive(Debug, Default)]
pub struct Batch {
    /// Events new to this consumer, from the bus or read back.
    pub events: Vec<Arc<RecordedEvent>>,
    /// Events the bus skipped that could not be read back (how many, why):
    /// they are in the recorder, and a durable consumer's next run reads them.
    pub unread: Option<(u64, String)>,
}

/// A named reader of the recorded stream (see the module doc).
pub struct Consumer {
    name: String,
    live: futures::stream::ReadyChunks<Subscription>,
    backlog: Arc<dyn Backlog>,
    seen: Seen,
}

impl Consumer {
    /// A consumer of what is recorded from now on: `live` must be
    /// subscribed before anything the consumer should see is recorded.
    pub fn new(name: &str, live: Subscription, backlog: Arc<dyn Backlog>) -> Self {
        Self { name: name.to_string(), live: live.ready_chunks(BATCH_MAX), backlog, seen: Seen::default() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next events, waiting for them; `None` once the bus is closed.
    pub async fn next(&mut self) -> Option<Batch> {
        let items = self.live.next().await?;
        let mut batch = Batch { events: Vec::with_capacity(items.len()), unread: None };
        for item in items {
            match item {
                BusItem::Event(recorded) if self.seen.fresh(recorded.event.id) => batch.events.push(recorded),
                BusItem::Event(_) => {}
                BusItem::Lagged(skipped) => {
                    tracing::warn!(consumer = %self.name, skipped, "fell behind the event stream; reading the skipped events back");
                    match self.read_back().await {
                        Ok(missed) => batch.events.extend(missed),
                        Err(e) => batch.unread = Some((skipped, e.to_string())),
                    }
                }
            }
        }
        Some(batch)
    }

    /// Notes events read from the recorder by the caller (a durable
    /// consumer's catch-up at start), so the bus does not hand them over again.
    pub fn note(&mut self, id: EventId) -> bool {
        self.seen.fresh(id)
    }

    /// The newest event this consumer has taken.
    pub fn last(&self) -> Option<EventId> {
        self.seen.last
    }

    /// What the bus skipped, oldest first, noted as seen: everything
    /// recorded from a little before the newest event taken that was not
    /// taken — never from before the oldest id still remembered, so
    /// nothing taken is taken again.
    async fn read_back(&mut self) -> Result<Vec<Arc<RecordedEvent>>, BacklogError> {
        let Some(last) = self.seen.last else { return Ok(Vec::new()) };
        let margin = chrono::Duration::from_std(READ_BACK_MARGIN).unwrap_or_default();
        let from = glassbox_core::first_id_at(chrono::DateTime::<chrono::Utc>::from(last.datetime()) - margin);
        let from = self.seen.order.front().map_or(last, |oldest| from.max(*oldest));
        let recorded = self.backlog.recorded_after(from).await?;
        Ok(recorded.into_iter().filter(|r| self.seen.fresh(r.event.id)).map(Arc::new).collect())
    }
}

/// The ids a consumer took, bounded: each event once, whether it came from
/// the bus or the recorder, in whatever order.
#[derive(Default)]
struct Seen {
    last: Option<EventId>,
    ids: HashSet<EventId>,
    order: VecDeque<EventId>,
}

impl Seen {
    fn fresh(&mut self, id: EventId) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > SEEN_MAX
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        self.last = self.last.max(Some(id));
        true
    }
}

/// A durable consumer's acknowledgements: its cursor is the oldest event
/// taken whose work is not all acknowledged, or, with none pending, the
/// newest taken. Saved, it is where the next run reads from (less a margin).
#[derive(Default)]
pub struct Acks {
    inner: Mutex<AcksInner>,
}

#[derive(Default)]
struct AcksInner {
    /// Each event taken with work outstanding, and how many acks it awaits.
    pending: BTreeMap<EventId, u32>,
    newest: Option<EventId>,
}

impl Acks {
    /// Notes an event taken that awaits `acks` acknowledgements (0: nothing to do).
    pub fn took(&self, id: EventId, acks: u32) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.newest = inner.newest.max(Some(id));
        if acks > 0 {
            *inner.pending.entry(id).or_default() += acks;
        }
    }

    /// One piece of `id`'s work is done; an event not pending is ignored
    /// (a replay, work the consumer did not take).
    pub fn ack(&self, id: EventId) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(left) = inner.pending.get_mut(&id) {
            *left -= 1;
            if *left == 0 {
                inner.pending.remove(&id);
            }
        }
    }

    /// The cursor; `None` until something is taken.
    pub fn cursor(&self) -> Option<EventId> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.pending.keys().next().copied().or(inner.newest)
    }

    /// Events with work outstanding.
    pub fn pending(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).pending.len()
    }
}

/// Saves a durable consumer's cursor whenever it moved, at most once per
/// `every`, until `stopped` turns true (the owner saves a last time at its
/// stop). A failed save is retried at the next tick: a crash meanwhile
/// costs a longer read at the next start, never an event.
pub async fn keep_cursor(
    name: String,
    acks: std::sync::Weak<Acks>,
    cursors: Arc<dyn Cursors>,
    every: Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut saved = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let Some(cursor) = acks.upgrade().and_then(|a| a.cursor()) else { return };
        if saved == Some(cursor) {
            continue;
        }
        match cursors.save(&name, cursor).await {
            Ok(()) => saved = Some(cursor),
            Err(e) => tracing::warn!(consumer = %name, error = %e, "could not save the cursor; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use glassbox_core::{Draft, IdMinter};

    use super::*;
    use crate::{Bus, LocalBus};

    fn recorded(minter: &IdMinter) -> RecordedEvent {
        let event = Draft { source: "s".into(), ty: "t".into(), ..Draft::default() }.into_event(
            minter.mint(),
            Utc::now(),
            None,
        );
        RecordedEvent { event, states: Vec::new() }
    }

    /// A recorder in memory, as the backlog.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<RecordedEvent>>, Mutex<bool>);

    #[async_trait::async_trait]
    impl Backlog for Recorded {
        async fn recorded_after(&self, after: EventId) -> Result<Vec<RecordedEvent>, BacklogError> {
            if *self.1.lock().unwrap() {
                return Err("the recorder is closed".into());
            }
            Ok(self.0.lock().unwrap().iter().filter(|r| r.event.id > after).cloned().collect())
        }
    }

    #[test]
    fn each_event_is_taken_once_in_whatever_order_it_comes() {
        let minter = IdMinter::new();
        let (older, newer) = (minter.mint(), minter.mint());
        let mut seen = Seen::default();
        assert!(seen.fresh(newer));
        assert!(seen.fresh(older), "an older id arriving later is still new");
        assert!(!seen.fresh(newer) && !seen.fresh(older), "each once");
        assert_eq!(seen.last, Some(newer));
        for _ in 0..SEEN_MAX {
            seen.fresh(minter.mint());
        }
        assert_eq!(seen.ids.len(), SEEN_MAX, "memory is bounded");
    }

    #[tokio::test]
    async fn what_the_bus_skipped_is_read_back_and_not_taken_twice() {
        let (bus, minter, backlog) = (LocalBus::new(4), IdMinter::new(), Arc::new(Recorded::default()));
        let mut consumer = Consumer::new("test", bus.subscribe(), backlog.clone());
        let events: Vec<RecordedEvent> = (0..10).map(|_| recorded(&minter)).collect();
        backlog.0.lock().unwrap().extend(events.iter().cloned());
        bus.publish(events[..1].iter().cloned().map(Arc::new).collect());
        assert_eq!(consumer.next().await.unwrap().events.len(), 1);
        bus.publish(events[1..].iter().cloned().map(Arc::new).collect());
        let mut taken: Vec<EventId> = Vec::new();
        while taken.len() < 9 {
            let batch = consumer.next().await.unwrap();
            assert!(batch.unread.is_none());
            taken.extend(batch.events.iter().map(|r| r.event.id));
        }
        let want: Vec<EventId> = events[1..].iter().map(|r| r.event.id).collect();
        taken.sort();
        assert_eq!(taken, want, "every skipped event once, none twice");
    }

    #[tokio::test]
    async fn a_failed_read_back_is_reported_not_hidden() {
        let (bus, minter, backlog) = (LocalBus::new(2), IdMinter::new(), Arc::new(Recorded::default()));
        let mut consumer = Consumer::new("test", bus.subscribe(), backlog.clone());
        bus.publish(vec![Arc::new(recorded(&minter))]);
        consumer.next().await.unwrap();
        *backlog.1.lock().unwrap() = true;
        bus.publish((0..5).map(|_| Arc::new(recorded(&minter))).collect());
        let batch = consumer.next().await.unwrap();
        let (skipped, why) = batch.unread.expect("the gap is reported");
        assert_eq!(skipped, 3);
        assert!(why.contains("closed"), "{why}");
    }

    #[test]
    fn the_cursor_waits_for_the_oldest_event_not_acknowledged() {
        let minter = IdMinter::new();
        let (a, b, c) = (minter.mint(), minter.mint(), minter.mint());
        let acks = Acks::default();
        assert_eq!(acks.cursor(), None, "nothing taken: nothing to save");
        acks.took(a, 2);
        acks.took(b, 0);
        acks.took(c, 1);
        assert_eq!(acks.cursor(), Some(a));
        acks.ack(c);
        acks.ack(a);
        assert_eq!(acks.cursor(), Some(a), "a awaits one more");
        acks.ack(a);
        assert_eq!(acks.cursor(), Some(c), "none pending: the newest taken");
        acks.ack(b);
        assert_eq!(acks.pending(), 0, "an ack for an event not pending changes nothing");
    }

    /// Cursors in memory.
    #[derive(Default)]
    struct Saved(Mutex<Vec<(String, EventId)>>);

    #[async_trait::async_trait]
    impl Cursors for Saved {
        async fn load(&self, consumer: &str) -> Result<Option<EventId>, BacklogError> {
            Ok(self.0.lock().unwrap().iter().rev().find(|(n, _)| n == consumer).map(|(_, id)| *id))
        }
        async fn save(&self, consumer: &str, cursor: EventId) -> Result<(), BacklogError> {
            self.0.lock().unwrap().push((consumer.to_string(), cursor));
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_cursor_is_saved_when_it_moves_and_only_then() {
        let (minter, acks, saved) = (IdMinter::new(), Arc::new(Acks::default()), Arc::new(Saved::default()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let keeper = tokio::spawn(keep_cursor(
            "fn".into(),
            Arc::downgrade(&acks),
            saved.clone(),
            Duration::from_millis(250),
            stopped,
        ));
        let (a, b) = (minter.mint(), minter.mint());
        acks.took(a, 1);
        acks.took(b, 0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(saved.load("fn").await.unwrap(), Some(a));
        acks.ack(a);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(saved.load("fn").await.unwrap(), Some(b));
        assert_eq!(saved.0.lock().unwrap().len(), 2, "saved when it moved, not every tick");
        stop.send_replace(true);
        keeper.await.unwrap();
    }
}
