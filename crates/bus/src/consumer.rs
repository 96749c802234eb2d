//! One way to read the recorded stream: a named [`Consumer`].
//!
//! Every service that acts on recorded events (functions, liveness,
//! metrics, live diagnosis, export) reads them through a consumer, with one
//! guarantee: **each event recorded while the consumer runs is handed to it
//! once** (per run), roughly in id order. The bus is the fast path; when
//! the bus skipped events because the consumer fell behind, the consumer
//! reads them back from the recorder ([`Backlog`]) and then ignores the
//! copies the bus may still deliver (a bounded window of ids taken).
//!
//! A durable consumer also keeps a cursor ([`Acks`], saved through
//! [`Cursors`] under its name): the oldest event handed out whose work is
//! not acknowledged, or the newest acknowledged. After a crash or a stop
//! the next run reads the recorder from a margin before the cursor, so the
//! delivery is at least once across runs and the consumer must be
//! idempotent by event id (functions are: an event's recorded outcome
//! closes it). How the same contract maps to NATS JetStream durable
//! consumers is in `docs/decisions/0016-one-durable-consumer.md`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use glassbox_core::{EventId, IdSet, RecentIds, RecordedEvent};

use crate::{BusItem, Subscription};

/// Most ids a consumer remembers to take each event once.
pub const SEEN_MAX: usize = 1 << 17;
/// How far before the newest event it saw a consumer reads back after the
/// bus skipped some: events reach the bus close to, not exactly in, id
/// order (ids are minted before the recorder's queue; each ingest
/// publishes from its own task), so one with an older id may still have
/// been on its way.
pub const READ_BACK_MARGIN: Duration = Duration::from_secs(2);
/// Most events one read-back reads whole; the rest of a larger gap is
/// reported ([`Batch::unread`]), for a durable consumer's next run.
pub const READ_BACK_MAX: usize = 200_000;
/// Ids a read-back lists per call to the recorder.
const IDS_PAGE: usize = 10_000;

/// An error reading the recorder, as text: the consumer reports it and
/// goes on; what it could not read is still recorded.
pub type BacklogError = Box<dyn std::error::Error + Send + Sync>;

/// The recorded stream, read by id: what the bus skipped is here.
///
/// A read-back first lists ids, then reads whole events for the few a
/// consumer did not take: its window (see [`READ_BACK_MARGIN`]) mostly
/// holds events the consumer already has, and decoding those again cost
/// more than everything else a flat-out QoS 0 flood asked of the server.
#[async_trait::async_trait]
pub trait Backlog: Send + Sync + 'static {
    /// The ids of events recorded after `after`, oldest first, at most `limit`.
    async fn ids_after(&self, after: EventId, limit: usize) -> Result<Vec<EventId>, BacklogError>;

    /// The events of `ids` that exist, oldest first, with their `received`
    /// state alone (as the bus hands them over).
    async fn recorded(&self, ids: Vec<EventId>) -> Result<Vec<RecordedEvent>, BacklogError>;
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
    /// Events the bus skipped that could not be read back (an error, or
    /// past [`READ_BACK_MAX`]): they are in the recorder, and a durable
    /// consumer's next run reads them.
    pub unread: Option<Unread>,
}

/// A gap in what a consumer was handed.
#[derive(Debug)]
pub struct Unread {
    /// How many events the bus skipped.
    pub skipped: u64,
    /// Why they could not be read back.
    pub error: String,
    /// The newest event taken before what was not read: the rest follow it.
    pub after: Option<EventId>,
}

/// A named reader of the recorded stream (see the module doc).
pub struct Consumer {
    name: String,
    live: Subscription,
    backlog: Arc<dyn Backlog>,
    seen: Seen,
    /// Taken from the bus, not yet handed out.
    held: VecDeque<BusItem>,
    /// Handed out by the next return.
    out: Batch,
    /// [`READ_BACK_MAX`], smaller in tests.
    read_back_max: usize,
}

/// What one read-back found.
struct ReadBack {
    /// The events missed, oldest first.
    events: Vec<Arc<RecordedEvent>>,
    /// Cut short at the bound: the newest event read, which the rest follow.
    rest_after: Option<EventId>,
}

impl Consumer {
    /// A consumer of what is recorded from now on: `live` must be
    /// subscribed before anything the consumer should see is recorded.
    pub fn new(name: &str, live: Subscription, backlog: Arc<dyn Backlog>) -> Self {
        Self {
            name: name.to_string(),
            live,
            backlog,
            seen: Seen::default(),
            held: VecDeque::new(),
            out: Batch::default(),
            read_back_max: READ_BACK_MAX,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next events, waiting for them; `None` once the bus is closed.
    /// Cancel-safe (fit for `select!`): what it took from the bus stays
    /// in the consumer until a call returns it.
    pub async fn next(&mut self) -> Option<Batch> {
        if self.held.is_empty() && self.out.events.is_empty() && self.out.unread.is_none() {
            self.held = self.live.next().await?.into();
        }
        while let Some(item) = self.held.front() {
            match item {
                BusItem::Event(recorded) => {
                    let recorded = recorded.clone();
                    if self.seen.take_from_bus(recorded.event.id) {
                        self.out.events.push(recorded);
                    }
                }
                BusItem::Lagged(skipped) => {
                    let skipped = *skipped;
                    tracing::warn!(consumer = %self.name, skipped, "fell behind the event stream; reading the skipped events back");
                    let after = self.seen.last;
                    match self.read_back().await {
                        Ok(ReadBack { events, rest_after }) => {
                            self.out.events.extend(events);
                            if let Some(after) = rest_after {
                                let error = format!("more than {} events to read back", self.read_back_max);
                                self.out.unread = Some(Unread { skipped, error, after: Some(after) });
                            }
                        }
                        Err(e) => self.out.unread = Some(Unread { skipped, error: e.to_string(), after }),
                    }
                }
            }
            self.held.pop_front();
        }
        Some(std::mem::take(&mut self.out))
    }

    /// Notes events read from the recorder by the caller before it takes
    /// any from the bus (a durable consumer's catch-up at start), so the bus
    /// does not hand them over again; false if noted already. (After the
    /// bus handed events over, one noted here could be one of them.)
    pub fn note(&mut self, id: EventId) -> bool {
        debug_assert!(!self.seen.from_bus, "Consumer::note after next(): an event could be handed over twice");
        self.seen.take_from_recorder(id)
    }

    /// The newest event this consumer has taken.
    pub fn last(&self) -> Option<EventId> {
        self.seen.last
    }

    /// What the bus skipped, oldest first, noted as seen: everything
    /// recorded from a little before the newest event taken that was not
    /// taken — never from before the oldest id still remembered, so
    /// nothing taken is taken again — at most `read_back_max` events.
    /// Whatever is still on the bus is read too: which events those are
    /// is not known until the bus hands them over.
    async fn read_back(&mut self) -> Result<ReadBack, BacklogError> {
        let Some(last) = self.seen.last else { return Ok(ReadBack { events: Vec::new(), rest_after: None }) };
        let margin = chrono::Duration::from_std(READ_BACK_MARGIN).unwrap_or_default();
        let from = glassbox_core::first_id_at(chrono::DateTime::<chrono::Utc>::from(last.datetime()) - margin);
        let from = self.seen.order.front().map_or(last, |oldest| from.max(*oldest));
        // Cancelled at any await, nothing is marked taken yet.
        let taken = self.seen.taken_after(from);
        let (mut missed, mut after, mut more) = (Vec::new(), from, true);
        while more && missed.len() <= self.read_back_max {
            let page = self.backlog.ids_after(after, IDS_PAGE).await?;
            (after, more) = (page.last().copied().unwrap_or(after), page.len() == IDS_PAGE);
            let recovered = &self.seen.recovered;
            missed.extend(page.into_iter().filter(|id| !taken.contains(id) && recovered.get(id).is_none()));
        }
        let cut_short = missed.len() > self.read_back_max;
        missed.truncate(self.read_back_max);
        let rest_after = cut_short.then(|| missed.last().copied()).flatten();
        let recorded = self.backlog.recorded(missed).await?;
        let fresh = recorded.into_iter().filter(|r| self.seen.take_from_recorder(r.event.id));
        Ok(ReadBack { events: fresh.map(Arc::new).collect(), rest_after })
    }
}

/// The ids a consumer took, bounded: each event once, whether it came from
/// the bus or the recorder, in whatever order.
///
/// A bus hands each event to a subscriber at most once, so an event from
/// the bus is a repeat only if it was first read from the recorder. Ids
/// are minted in order and a read-back reads only what was minted before
/// it, so a bus event newer than every id read back cannot be one: the
/// common path is one comparison and one push onto a queue, not a hash-set
/// insert and eviction for every event (those cost each consumer about a
/// third of its CPU in a profile of flat-out QoS 1 MQTT). What was taken
/// from the bus is looked up only when a read-back needs it.
struct Seen {
    last: Option<EventId>,
    /// Whether the bus handed anything over yet.
    from_bus: bool,
    /// Every id taken, oldest first, at most [`SEEN_MAX`].
    order: VecDeque<EventId>,
    /// Ids taken from the recorder whose bus copy may still come, at most
    /// [`SEEN_MAX`] (the oldest forgotten first).
    recovered: RecentIds<()>,
    /// The newest id taken from the recorder.
    recovered_max: Option<EventId>,
}

impl Default for Seen {
    fn default() -> Self {
        let (order, recovered) = (VecDeque::new(), RecentIds::new(SEEN_MAX));
        Self { last: None, from_bus: false, order, recovered, recovered_max: None }
    }
}

impl Seen {
    /// An event from the bus: new unless it was read from the recorder.
    fn take_from_bus(&mut self, id: EventId) -> bool {
        self.from_bus = true;
        if self.recovered_max.is_some_and(|newest| id <= newest) && self.recovered.remove(&id) {
            return false;
        }
        self.took(id);
        true
    }

    /// An event read from the recorder that the bus had not handed over:
    /// new unless it was read back before.
    fn take_from_recorder(&mut self, id: EventId) -> bool {
        if !self.recovered.insert(id, ()) {
            return false;
        }
        self.recovered_max = self.recovered_max.max(Some(id));
        self.took(id);
        true
    }

    /// The ids taken after `from`, for a read-back to skip.
    fn taken_after(&self, from: EventId) -> IdSet {
        self.order.iter().filter(|id| **id > from).copied().collect()
    }

    fn took(&mut self, id: EventId) {
        self.order.push_back(id);
        if self.order.len() > SEEN_MAX {
            self.order.pop_front();
        }
        self.last = self.last.max(Some(id));
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

/// A durable consumer's cursor: its [`Acks`], and where they are saved.
/// Saving waits until [`Durable::arm`]: a run that could not take up
/// what the last one left must leave the saved cursor where it was.
pub struct Durable {
    name: String,
    acks: Acks,
    cursors: Arc<dyn Cursors>,
    saved: tokio::sync::Mutex<Option<EventId>>,
    armed: std::sync::atomic::AtomicBool,
}

impl Durable {
    pub fn new(name: &str, cursors: Arc<dyn Cursors>) -> Self {
        let (saved, armed) = (tokio::sync::Mutex::new(None), std::sync::atomic::AtomicBool::new(false));
        Self { name: name.to_string(), acks: Acks::default(), cursors, saved, armed }
    }

    pub fn acks(&self) -> &Acks {
        &self.acks
    }

    /// The cursor the last run saved; none at a first start.
    pub async fn load(&self) -> Result<Option<EventId>, BacklogError> {
        self.cursors.load(&self.name).await
    }

    /// Saves `cursor` at once, whether armed or not (a first start).
    pub async fn save_at(&self, cursor: EventId) -> Result<(), BacklogError> {
        self.cursors.save(&self.name, cursor).await?;
        *self.saved.lock().await = Some(cursor);
        Ok(())
    }

    /// From now on the cursor may be saved.
    pub fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Saves the cursor if armed and it moved since the last save; a failed
    /// save is logged and tried again at the next call: a crash meanwhile
    /// costs a longer read at the next start, never an event.
    pub async fn save(&self) {
        let Some(cursor) = self.acks.cursor() else { return };
        if !self.armed.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let mut saved = self.saved.lock().await;
        if *saved == Some(cursor) {
            return;
        }
        match self.cursors.save(&self.name, cursor).await {
            Ok(()) => *saved = Some(cursor),
            Err(e) => tracing::warn!(consumer = %self.name, error = %e, "could not save the cursor; retrying"),
        }
    }
}

/// Saves a durable consumer's cursor every `every` while it lives, until
/// `stopped` turns true (the owner saves a last time at its stop).
pub async fn keep_cursor(
    durable: std::sync::Weak<Durable>,
    every: Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let Some(durable) = durable.upgrade() else { return };
        durable.save().await;
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

    /// A recorder in memory, as the backlog: its events, whether it is
    /// closed, and the ids it was asked to read whole.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<RecordedEvent>>, Mutex<bool>, Mutex<Vec<EventId>>);

    #[async_trait::async_trait]
    impl Backlog for Recorded {
        async fn ids_after(&self, after: EventId, limit: usize) -> Result<Vec<EventId>, BacklogError> {
            if *self.1.lock().unwrap() {
                return Err("the recorder is closed".into());
            }
            Ok(self.0.lock().unwrap().iter().map(|r| r.event.id).filter(|id| *id > after).take(limit).collect())
        }

        async fn recorded(&self, ids: Vec<EventId>) -> Result<Vec<RecordedEvent>, BacklogError> {
            self.2.lock().unwrap().extend(&ids);
            Ok(self.0.lock().unwrap().iter().filter(|r| ids.contains(&r.event.id)).cloned().collect())
        }
    }

    #[test]
    fn each_event_is_taken_once_in_whatever_order_it_comes() {
        let minter = IdMinter::new();
        let (older, newer, read_back) = (minter.mint(), minter.mint(), minter.mint());
        let mut seen = Seen::default();
        assert!(seen.take_from_bus(newer));
        assert!(seen.take_from_bus(older), "an older id arriving later is still new");
        assert_eq!(seen.last, Some(newer));
        assert_eq!(
            seen.taken_after(older).into_iter().collect::<Vec<_>>(),
            [newer],
            "a read-back skips what was taken"
        );
        assert!(seen.take_from_recorder(read_back));
        assert!(!seen.take_from_recorder(read_back), "read back twice: taken once");
        assert!(!seen.take_from_bus(read_back), "its bus copy, after it was read back");
        assert!(seen.recovered.is_empty(), "a bus copy comes once: forgotten when it came");
        let late = minter.mint();
        assert!(seen.take_from_recorder(late));
        let much_later =
            glassbox_core::first_id_at(chrono::DateTime::<Utc>::from(late.datetime()) + READ_BACK_MARGIN * 10);
        assert!(seen.take_from_bus(much_later), "newer than every id read back: new without a look-up");
        assert!(!seen.take_from_bus(late), "a bus copy that comes late is still a repeat");
        for _ in 0..=SEEN_MAX {
            seen.take_from_recorder(minter.mint());
        }
        assert_eq!((seen.order.len(), seen.recovered.len()), (SEEN_MAX, SEEN_MAX), "memory is bounded");
    }

    #[tokio::test]
    async fn what_the_bus_skipped_is_read_back_and_not_taken_twice() {
        let (bus, minter, backlog) = (LocalBus::new(4), IdMinter::new(), Arc::new(Recorded::default()));
        let mut consumer = Consumer::new("test", bus.subscribe(), backlog.clone());
        let events: Vec<RecordedEvent> = (0..10).map(|_| recorded(&minter)).collect();
        backlog.0.lock().unwrap().extend(events.iter().cloned());
        bus.publish(events[..3].iter().cloned().map(Arc::new).collect());
        assert_eq!(consumer.next().await.unwrap().events.len(), 3);
        bus.publish(events[3..].iter().cloned().map(Arc::new).collect());
        let mut taken: Vec<EventId> = Vec::new();
        while taken.len() < 7 {
            let batch = consumer.next().await.unwrap();
            assert!(batch.unread.is_none());
            taken.extend(batch.events.iter().map(|r| r.event.id));
        }
        let want: Vec<EventId> = events[3..].iter().map(|r| r.event.id).collect();
        taken.sort();
        assert_eq!(taken, want, "every skipped event once, none twice");
        assert_eq!(
            *backlog.2.lock().unwrap(),
            want,
            "read whole: the events not taken, not the ones in the window the consumer has"
        );
    }

    #[tokio::test]
    async fn a_gap_larger_than_a_read_back_is_reported_from_where_it_stopped() {
        let (bus, minter, backlog) = (LocalBus::new(4), IdMinter::new(), Arc::new(Recorded::default()));
        let mut consumer = Consumer::new("test", bus.subscribe(), backlog.clone());
        consumer.read_back_max = 3;
        let events: Vec<RecordedEvent> = (0..11).map(|_| recorded(&minter)).collect();
        backlog.0.lock().unwrap().extend(events.iter().cloned());
        bus.publish(events[..1].iter().cloned().map(Arc::new).collect());
        consumer.next().await.unwrap();
        // 6 skipped, 4 still on the bus: the read-back reads 3 and stops.
        bus.publish(events[1..].iter().cloned().map(Arc::new).collect());
        let batch = consumer.next().await.unwrap();
        let unread = batch.unread.expect("the rest of the gap is reported");
        assert_eq!((unread.skipped, unread.after), (6, Some(events[3].event.id)), "{}", unread.error);
        assert!(unread.error.contains("more than 3 events"), "{}", unread.error);
        let taken: Vec<EventId> = batch.events.iter().map(|r| r.event.id).collect();
        let want: Vec<EventId> = events[1..4].iter().chain(&events[7..]).map(|r| r.event.id).collect();
        assert_eq!(taken, want, "the oldest of the gap, then the bus");
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
        let unread = batch.unread.expect("the gap is reported");
        assert_eq!(unread.skipped, 3);
        assert!(unread.error.contains("closed"), "{}", unread.error);
        assert!(unread.after.is_some());
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
    async fn the_cursor_is_saved_when_it_moves_and_only_once_armed() {
        let (minter, saved) = (IdMinter::new(), Arc::new(Saved::default()));
        let durable = Arc::new(Durable::new("fn", saved.clone()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let keeper = tokio::spawn(keep_cursor(Arc::downgrade(&durable), Duration::from_millis(250), stopped));
        let (a, b) = (minter.mint(), minter.mint());
        durable.acks().took(a, 1);
        durable.acks().took(b, 0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(durable.load().await.unwrap(), None, "not armed: the last run's cursor stays");
        durable.arm();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(durable.load().await.unwrap(), Some(a));
        durable.acks().ack(a);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(durable.load().await.unwrap(), Some(b));
        assert_eq!(saved.0.lock().unwrap().len(), 2, "saved when it moved, not every tick");
        stop.send_replace(true);
        keeper.await.unwrap();
    }
}
