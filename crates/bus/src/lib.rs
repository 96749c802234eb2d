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
    Acks, Backlog, BacklogError, Batch, Consumer, Cursors, Durable, READ_BACK_MARGIN, SEEN_MAX, Unread, keep_cursor,
};

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use glassbox_core::RecordedEvent;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum BusItem {
    Event(Arc<RecordedEvent>),
    /// This many events were skipped because the subscriber fell behind.
    Lagged(u64),
}

/// A live stream of recorded events.
pub type Subscription = Pin<Box<dyn Stream<Item = BusItem> + Send>>;

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

    fn subscribe(&self) -> Subscription {
        Box::pin(BroadcastStream::new(self.sender.subscribe()).map(|item| match item {
            Ok(event) => BusItem::Event(event),
            Err(BroadcastStreamRecvError::Lagged(skipped)) => BusItem::Lagged(skipped),
        }))
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
        assert!(matches!(sub.next().await, Some(BusItem::Event(got)) if got.event.id == e.event.id));
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_how_many_it_missed() {
        let bus = LocalBus::new(4);
        let minter = IdMinter::new();
        let mut sub = bus.subscribe();
        bus.publish((0..10).map(|_| recorded(&minter)).collect());
        assert!(matches!(sub.next().await, Some(BusItem::Lagged(6))));
        assert!(matches!(sub.next().await, Some(BusItem::Event(_))));
    }
}
