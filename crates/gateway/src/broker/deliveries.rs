//! Delivery states, recorded off the hot path: connections hand transitions
//! to one task that records them in batches. Bounded; when full, states are
//! counted as lost rather than blocking deliveries.
//!
//! A delivery's `in_transit` is held back for one round (at most
//! [`HOLD`]): if its end (`delivered`, `dropped`) comes meanwhile, as it
//! does for a subscriber keeping up, both go to the store as one transition
//! (the end, carrying when it went in transit), which records the two
//! states. This halves the recorder's work per delivery without losing
//! either state or its time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use glassbox_core::{EventId, State};
use glassbox_store::Transition;
use tokio::sync::mpsc;

use super::Recorder;

/// Delivery states waiting to be recorded.
const QUEUE_MAX: usize = 65_536;
/// Most states per record call.
const BATCH_MAX: usize = 4096;
/// Longest an `in_transit` waits for its delivery's end.
const HOLD: Duration = Duration::from_millis(100);

pub(crate) struct Deliveries {
    queue: mpsc::Sender<Transition>,
    /// States that could not be queued (recorder far behind).
    pub unrecorded: Arc<AtomicU64>,
}

type Key = (EventId, Option<String>);

impl Deliveries {
    pub fn start(recorder: Arc<dyn Recorder>) -> Self {
        let (queue, rx) = mpsc::channel::<Transition>(QUEUE_MAX);
        tokio::spawn(record_loop(recorder, rx));
        Self { queue, unrecorded: Arc::new(AtomicU64::new(0)) }
    }

    pub fn note(&self, event: EventId, state: State, target: &str, detail: Option<String>) {
        let t = Transition::new(event, state, Some(target.to_string()), detail);
        if self.queue.try_send(t).is_err() {
            self.unrecorded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn record_loop(recorder: Arc<dyn Recorder>, mut rx: mpsc::Receiver<Transition>) {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    // `held` and the next round's map trade places each round, keeping
    // their room rather than growing a new map from empty every round.
    let (mut held, mut spare): (HashMap<Key, Transition>, HashMap<Key, Transition>) = Default::default();
    loop {
        let received = match held.is_empty() {
            true => rx.recv_many(&mut batch, BATCH_MAX).await,
            false => tokio::time::timeout(HOLD, rx.recv_many(&mut batch, BATCH_MAX)).await.unwrap_or(0),
        };
        let closed = received == 0 && batch.is_empty() && rx.is_closed();
        let (mut out, mut next) = (Vec::with_capacity(batch.len()), std::mem::take(&mut spare));
        for mut t in batch.drain(..) {
            let key = (t.event, t.target.clone());
            match t.state {
                State::InTransit => {
                    if let Some(earlier) = next.insert(key, t) {
                        out.push(earlier);
                    }
                }
                State::Delivered | State::Dropped => {
                    if let Some(in_transit) = held.remove(&key).or_else(|| next.remove(&key)) {
                        t.in_transit_at = Some(in_transit.at);
                    }
                    out.push(t);
                }
                _ => out.push(t),
            }
        }
        // Held a whole round without an end: record them on their own.
        out.extend(held.drain().map(|(_, t)| t));
        spare = std::mem::replace(&mut held, next);
        if closed {
            out.extend(held.drain().map(|(_, t)| t));
        }
        if !out.is_empty()
            && let Err(e) = recorder.record(out).await
        {
            tracing::warn!(error = %e, "recording delivery states failed");
        }
        if closed {
            return;
        }
    }
}
