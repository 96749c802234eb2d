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
//!
//! Noting a state copies no string: a client target is its session's own
//! client id (every connection to the session notes with that one), and a
//! held `in_transit` is found by its event and that id's address. The
//! target is copied once, when the state goes to the store.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use glassbox_core::{EventId, IdHasher, State};
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
    queue: mpsc::Sender<Noted>,
    /// States that could not be queued (recorder far behind).
    pub unrecorded: Arc<AtomicU64>,
}

/// Whom a state is for: a client (its session's id, shared) or a part of
/// the gateway (`acl`, `retained`, ...).
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Client(Arc<str>),
    Gateway(&'static str),
}

impl Target {
    fn as_str(&self) -> &str {
        match self {
            Target::Client(id) => id,
            Target::Gateway(part) => part,
        }
    }

    /// Where the name lives: equal for two notes from the same session.
    fn address(&self) -> usize {
        self.as_str().as_ptr() as usize
    }
}

impl From<&Arc<str>> for Target {
    fn from(client: &Arc<str>) -> Self {
        Target::Client(client.clone())
    }
}

impl From<&'static str> for Target {
    fn from(part: &'static str) -> Self {
        Target::Gateway(part)
    }
}

/// A state as noted, before it goes to the store.
#[derive(Debug)]
struct Noted {
    event: EventId,
    state: State,
    at: DateTime<Utc>,
    target: Target,
    detail: Option<String>,
    in_transit_at: Option<DateTime<Utc>>,
}

impl Noted {
    fn into_transition(self) -> Transition {
        Transition {
            event: self.event,
            state: self.state,
            at: self.at,
            target: Some(self.target.as_str().to_string()),
            detail: self.detail,
            in_transit_at: self.in_transit_at,
        }
    }
}

/// A held `in_transit`'s key: its event and its target's address. The held
/// state keeps its target alive, so no other target has that address
/// meanwhile.
type Key = (EventId, usize);
type Held = HashMap<Key, Noted, BuildHasherDefault<IdHasher>>;

impl Deliveries {
    pub fn start(recorder: Arc<dyn Recorder>) -> Self {
        let (queue, rx) = mpsc::channel::<Noted>(QUEUE_MAX);
        tokio::spawn(record_loop(recorder, rx));
        Self { queue, unrecorded: Arc::new(AtomicU64::new(0)) }
    }

    pub fn note(&self, event: EventId, state: State, target: impl Into<Target>, detail: Option<String>) {
        let noted = Noted { event, state, at: Utc::now(), target: target.into(), detail, in_transit_at: None };
        if self.queue.try_send(noted).is_err() {
            self.unrecorded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn record_loop(recorder: Arc<dyn Recorder>, mut rx: mpsc::Receiver<Noted>) {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    // `held` and the next round's map trade places each round, keeping
    // their room rather than growing a new map from empty every round.
    let (mut held, mut spare): (Held, Held) = Default::default();
    loop {
        let received = match held.is_empty() {
            true => rx.recv_many(&mut batch, BATCH_MAX).await,
            false => tokio::time::timeout(HOLD, rx.recv_many(&mut batch, BATCH_MAX)).await.unwrap_or(0),
        };
        let closed = received == 0 && batch.is_empty() && rx.is_closed();
        let (mut out, mut next) = (Vec::with_capacity(batch.len()), std::mem::take(&mut spare));
        for mut noted in batch.drain(..) {
            let key = (noted.event, noted.target.address());
            match noted.state {
                State::InTransit => {
                    if let Some(earlier) = next.insert(key, noted) {
                        out.push(earlier.into_transition());
                    }
                }
                State::Delivered | State::Dropped => {
                    if let Some(in_transit) = held.remove(&key).or_else(|| next.remove(&key)) {
                        noted.in_transit_at = Some(in_transit.at);
                    }
                    out.push(noted.into_transition());
                }
                _ => out.push(noted.into_transition()),
            }
        }
        // Held a whole round without an end: record them on their own.
        out.extend(held.drain().map(|(_, noted)| noted.into_transition()));
        spare = std::mem::replace(&mut held, next);
        if closed {
            out.extend(held.drain().map(|(_, noted)| noted.into_transition()));
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use glassbox_core::{Draft, IdMinter};
    use glassbox_store::{Appended, Committed, StoreError};

    use super::*;

    /// Keeps what it is asked to record.
    #[derive(Default)]
    struct Kept(Mutex<Vec<Transition>>);

    #[async_trait]
    impl Recorder for Kept {
        async fn ingest(&self, _: Vec<Draft>, _: &str) -> Result<Vec<Appended>, StoreError> {
            unreachable!()
        }
        async fn ingest_committed(&self, _: Vec<Draft>, _: &str) -> Result<Committed, StoreError> {
            unreachable!()
        }
        async fn ingest_unanswered(&self, _: Vec<Draft>, _: &str) -> Result<Vec<Appended>, StoreError> {
            unreachable!()
        }
        async fn record(&self, transitions: Vec<Transition>) -> Result<(), StoreError> {
            self.0.lock().unwrap().extend(transitions);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_delivery_ending_in_time_is_one_transition_for_its_own_target_and_a_late_one_two() {
        let kept = Arc::new(Kept::default());
        let deliveries = Deliveries::start(kept.clone());
        let (event, slow) = (IdMinter::new().mint(), IdMinter::new().mint());
        let [a, b, c]: [Arc<str>; 3] = ["a".into(), "b".into(), "c".into()];
        deliveries.note(event, State::InTransit, &a, None);
        deliveries.note(event, State::InTransit, &b, None);
        deliveries.note(slow, State::InTransit, &a, None);
        // A round passes: the in_transit states are held.
        tokio::time::sleep(Duration::from_millis(1)).await;
        deliveries.note(event, State::Delivered, &c, None);
        deliveries.note(event, State::Delivered, &b, None);
        deliveries.note(event, State::Dropped, &a, Some("queue_full: test".into()));
        tokio::time::sleep(HOLD * 3).await;
        deliveries.note(slow, State::Delivered, &a, None);
        deliveries.note(slow, State::Dropped, "retained", Some("retained_limit: test".into()));
        tokio::time::sleep(HOLD * 2).await;

        let kept = kept.0.lock().unwrap();
        let of = |id: EventId, target: &str| -> Vec<(State, bool)> {
            let mine = kept.iter().filter(|t| t.event == id && t.target.as_deref() == Some(target));
            mine.map(|t| (t.state, t.in_transit_at.is_some())).collect()
        };
        assert_eq!(of(event, "a"), [(State::Dropped, true)], "its end carries when it went in transit");
        assert_eq!(of(event, "b"), [(State::Delivered, true)]);
        assert_eq!(of(event, "c"), [(State::Delivered, false)], "never in transit: no one else's time");
        assert_eq!(
            of(slow, "a"),
            [(State::InTransit, false), (State::Delivered, false)],
            "an end later than the hold: both recorded on their own"
        );
        assert_eq!(of(slow, "retained"), [(State::Dropped, false)], "a part of the gateway is a target too");
    }

    #[tokio::test]
    async fn only_the_session_that_took_a_delivery_ends_it() {
        let kept = Arc::new(Kept::default());
        let deliveries = Deliveries::start(kept.clone());
        let event = IdMinter::new().mint();
        // Another client, and the same name in another session (a clean start replaced it).
        let (first, second, first_again): (Arc<str>, Arc<str>, Arc<str>) =
            ("first".into(), "second".into(), "first".into());
        deliveries.note(event, State::InTransit, &first, None);
        deliveries.note(event, State::Delivered, &second, None);
        deliveries.note(event, State::Delivered, &first_again, None);
        tokio::time::sleep(HOLD * 3).await;

        let kept = kept.0.lock().unwrap();
        let mut states: Vec<_> =
            kept.iter().map(|t| (t.target.clone().unwrap_or_default(), t.state, t.in_transit_at.is_some())).collect();
        states.sort_by_key(|(target, state, _)| (target.clone(), state.code()));
        let unpaired = |target: &str, state| (target.to_string(), state, false);
        assert_eq!(
            states,
            [
                unpaired("first", State::InTransit),
                unpaired("first", State::Delivered),
                unpaired("second", State::Delivered)
            ],
            "each recorded on its own"
        );
    }
}
