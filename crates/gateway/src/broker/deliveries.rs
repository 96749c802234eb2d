//! Delivery states, recorded off the hot path: connections hand transitions
//! to one task that records them in batches. Bounded; when full, states are
//! counted as lost rather than blocking deliveries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use glassbox_core::{EventId, State};
use glassbox_store::Transition;
use tokio::sync::mpsc;

use super::Recorder;

/// Delivery states waiting to be recorded.
const QUEUE_MAX: usize = 65_536;
/// Most states per record call.
const BATCH_MAX: usize = 4096;

pub(crate) struct Deliveries {
    queue: mpsc::Sender<Transition>,
    /// States that could not be queued (recorder far behind).
    pub unrecorded: Arc<AtomicU64>,
}

impl Deliveries {
    pub fn start(recorder: Arc<dyn Recorder>) -> Self {
        let (queue, mut rx) = mpsc::channel::<Transition>(QUEUE_MAX);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH_MAX);
            while rx.recv_many(&mut batch, BATCH_MAX).await > 0 {
                if let Err(e) = recorder.record(std::mem::take(&mut batch)).await {
                    tracing::warn!(error = %e, "recording delivery states failed");
                }
            }
        });
        Self { queue, unrecorded: Arc::new(AtomicU64::new(0)) }
    }

    pub fn note(&self, event: EventId, state: State, target: &str, detail: Option<String>) {
        let t = Transition { event, state, at: Utc::now(), target: Some(target.to_string()), detail };
        if self.queue.try_send(t).is_err() {
            self.unrecorded.fetch_add(1, Ordering::Relaxed);
        }
    }
}
