//! The event bus: recorded events fan out from the recorder to whatever
//! consumes them live (tails now; routers, metrics and detectors later).
//!
//! Events are published only after they are durable, so a consumer never
//! sees an event the recorder could lose. [`LocalBus`] is the in-process
//! default; a NATS JetStream bus implements [`Bus`] for clusters.
//!
//! Bound: each subscriber has a buffer of [`LocalBus::capacity`] events. A
//! subscriber that falls further behind skips the oldest and is told how
//! many with [`BusItem::Lagged`]; publishers never wait for subscribers, and
//! skipped events are still in the recorder: services read the stream
//! through a [`Consumer`], which reads them back.

mod consumer;

pub use consumer::{
    Acks, Backlog, BacklogError, Batch, Consumer, Cursors, Durable, READ_BACK_MARGIN, READ_BACK_MAX, SEEN_MAX, Unread,
    keep_cursor,
};

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use glassbox_core::RecordedEvent;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum BusItem {
    Event(Arc<RecordedEvent>),
    /// This many events were skipped because the subscriber fell behind.
    Lagged(u64),
}

/// A live stream of recorded events, in batches of what was ready (at
/// most [`READY_MAX`] each, never empty).
pub type Subscription = Pin<Box<dyn Stream<Item = Vec<BusItem>> + Send>>;

/// Most events a subscriber takes from the bus in one wake-up. Taking
/// them one `recv` at a time let tokio's cooperative budget (128 per poll)
/// cap a consumer at 128 events per turn of the scheduler: under a
/// flat-out QoS 0 flood consumers fell more than a bus behind and read
/// thousands of events back from the recorder.
pub const READY_MAX: usize = 1024;

pub trait Bus: Send + Sync + 'static {
    /// Hands recorded events to current subscribers; never blocks.
    fn publish(&self, events: Vec<Arc<RecordedEvent>>);

    /// Events published from now on, each at most once (a [`Consumer`]
    /// relies on it: it checks bus events only against those it read back;
    /// a bus that can redeliver, as JetStream can, must drop its repeats).
    fn subscribe(&self) -> Subscription;
}

/// The in-process bus: a bounded broadcast channel.
pub struct LocalBus {
    sender: broadcast::Sender<Arc<RecordedEvent>>,
    capacity: usize,
}

impl LocalBus {
    /// Per-subscriber buffer when none is configured: twice the recorder's
    /// default group commit (8192 events), since a commit is published at
    /// once. A bus smaller than a commit makes every consumer skip events
    /// and read them back from the recorder, which cost flat-out QoS 0
    /// MQTT about a third of the broker's CPU (decision 0021).
    pub const CAPACITY_DEFAULT: usize = 16_384;

    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { sender: broadcast::channel(capacity).0, capacity }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new(Self::CAPACITY_DEFAULT)
    }
}

impl Bus for LocalBus {
    fn publish(&self, events: Vec<Arc<RecordedEvent>>) {
        for event in events {
            // An error only means nobody is subscribed right now.
            let _ = self.sender.send(event);
        }
    }

    /// Waits (cooperatively) for the first event, then takes what else is
    /// ready without waiting.
    fn subscribe(&self) -> Subscription {
        Box::pin(
            futures::stream::unfold(self.sender.subscribe(), |mut receiver| async move {
                let first = match receiver.recv().await {
                    Ok(event) => BusItem::Event(event),
                    Err(RecvError::Lagged(skipped)) => BusItem::Lagged(skipped),
                    Err(RecvError::Closed) => return None,
                };
                let mut ready = vec![first];
                while ready.len() < READY_MAX {
                    match receiver.try_recv() {
                        Ok(event) => ready.push(BusItem::Event(event)),
                        Err(TryRecvError::Lagged(skipped)) => ready.push(BusItem::Lagged(skipped)),
                        Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                    }
                }
                Some((ready, receiver))
            })
            .fuse(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use glassbox_core::{Draft, IdMinter};

    fn recorded(minter: &IdMinter) -> Arc<RecordedEvent> {
        let event = Draft { source: "s".into(), ty: "t".into(), ..Draft::default() }.into_event(
            minter.mint(),
            Utc::now(),
            None,
        );
        Arc::new(RecordedEvent { event, states: Vec::new() })
    }

    #[tokio::test]
    async fn subscribers_receive_events_published_after_subscribing() {
        let bus = LocalBus::new(8);
        let minter = IdMinter::new();
        bus.publish(vec![recorded(&minter)]);
        let mut sub = bus.subscribe();
        let e = recorded(&minter);
        bus.publish(vec![e.clone()]);
        let ready = sub.next().await.unwrap();
        assert!(matches!(&ready[..], [BusItem::Event(got)] if got.event.id == e.event.id));
    }

    #[tokio::test]
    async fn a_subscriber_takes_what_is_ready_at_once_up_to_a_bound() {
        let bus = LocalBus::new(4 * READY_MAX);
        let minter = IdMinter::new();
        let mut sub = bus.subscribe();
        bus.publish((0..READY_MAX + 10).map(|_| recorded(&minter)).collect());
        assert_eq!(sub.next().await.unwrap().len(), READY_MAX, "past tokio's budget of 128 per poll");
        assert_eq!(sub.next().await.unwrap().len(), 10);
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_how_many_it_missed() {
        let bus = LocalBus::new(4);
        let minter = IdMinter::new();
        let mut sub = bus.subscribe();
        bus.publish((0..10).map(|_| recorded(&minter)).collect());
        let ready = sub.next().await.unwrap();
        assert!(matches!(
            &ready[..],
            [BusItem::Lagged(6), BusItem::Event(_), BusItem::Event(_), BusItem::Event(_), BusItem::Event(_)]
        ));
    }
}
