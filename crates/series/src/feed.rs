//! The stream into the series: samples derived from every recorded event
//! (and every dropped delivery) while the server lives, and closed buckets
//! written — and handed to the anomaly detectors — every few seconds.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::Utc;
use glassbox_core::{EventId, IdHasher, RecordedEvent};
use glassbox_store::DeviceRegistry;
use glassbox_store::metrics::FINE_STEP_SECONDS;

use super::{Closed, Series, bucket_start, derive};
use glassbox_pipeline::Pipeline;

/// Devices whose group is remembered; the cache is cleared beyond this.
const GROUPS_CACHED_MAX: usize = 100_000;
/// Messages whose group and topic are remembered for their drops.
const ORIGINS_CACHED_MAX: usize = 100_000;
/// Distinct group and topic label pairs those messages share. Topic labels
/// are bounded templates, groups are the operator's: a fleet with more pairs
/// than this forgets every origin each time the table fills (the drops of
/// the messages forgotten are labelled `none`).
const ORIGIN_PAIRS_MAX: usize = 16_384;
/// Drops waiting to be counted; beyond this they are not (the recorder has them).
const DROPS_QUEUE_MAX: usize = 8192;

/// Who takes each bucket as it closes (live diagnosis), so the series do
/// not depend on their readers.
#[async_trait::async_trait]
pub trait ClosedBuckets: Send + Sync + 'static {
    /// Every bucket up to `through` (inclusive) is closed: `closed` holds
    /// its points.
    async fn closed(&self, closed: &[Closed], through: i64);
}

/// Derives samples from every recorded event while the server lives, and
/// writes closed buckets every few seconds.
/// Closed buckets go to `watch` (the anomaly detectors), when given.
pub fn start(
    series: Arc<Series>,
    pipeline: Arc<Pipeline>,
    devices: Arc<dyn DeviceRegistry>,
    watch: Option<Arc<dyn ClosedBuckets>>,
) {
    let events = pipeline.consumer("metrics");
    let (drops_tx, drops) = tokio::sync::mpsc::channel(DROPS_QUEUE_MAX);
    pipeline.tap_transitions(drops_tx, true);
    // Weak: the loop must not keep the registry open after the server stops.
    tokio::spawn(derive_loop(Arc::downgrade(&series), Arc::downgrade(&devices), events, drops));
    tokio::spawn(flush_loop(Arc::downgrade(&series), watch));
}

async fn flush_loop(series: Weak<Series>, watch: Option<Arc<dyn ClosedBuckets>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(FINE_STEP_SECONDS as u64 / 2));
    let mut pruned_at = Utc::now();
    loop {
        tick.tick().await;
        let Some(series) = series.upgrade() else { return };
        let now = Utc::now();
        let closed = series.flush(now, false).await;
        if let Some(watch) = &watch {
            watch.closed(&closed, bucket_start(now) - FINE_STEP_SECONDS).await;
        }
        if now - pruned_at > chrono::Duration::minutes(10) {
            pruned_at = now;
            if let Err(e) = series.store.prune(now.timestamp(), series.retention).await {
                tracing::warn!(error = %e, "could not prune old metric buckets");
            }
        }
    }
}

async fn derive_loop(
    series: Weak<Series>,
    devices: Weak<dyn DeviceRegistry>,
    mut events: glassbox_bus::Consumer,
    mut drops: tokio::sync::mpsc::Receiver<glassbox_store::Transition>,
) {
    let mut groups: HashMap<String, Option<Arc<str>>> = HashMap::new();
    let mut origins = Origins::default();
    let mut batch_groups = Vec::new();
    // Whatever is ready at once is derived in one wake-up and one lock.
    loop {
        let batch = tokio::select! {
            batch = events.next() => match batch {
                Some(batch) => batch,
                None => return,
            },
            Some(dropped) = drops.recv() => {
                let Some(series) = series.upgrade() else { return };
                let sample = derive::dropped(dropped.detail.as_deref(), origins.get(&dropped.event));
                series.add_all(&[(sample, dropped.at)]);
                continue;
            }
        };
        let (Some(series), Some(devices)) = (series.upgrade(), devices.upgrade()) else { return };
        if let Some(glassbox_bus::Unread { skipped, error, .. }) = batch.unread {
            tracing::warn!(skipped, %error, "metrics fell behind and could not read back; counts are short");
        }
        let batch = batch.events;
        // Groups first (a look-up changes the cache), so that samples can
        // borrow their labels from the batch.
        batch_groups.clear();
        for recorded in &batch {
            batch_groups.push(group_of(recorded, &devices, &mut groups).await);
        }
        let (mut derived, mut samples) = (Vec::with_capacity(batch.len() * 5), Vec::new());
        for (recorded, group) in batch.iter().zip(&batch_groups) {
            let origin = derive::origin(recorded, group.as_deref(), series.topics());
            let at = recorded.states.first().map_or(recorded.event.time, |s| s.at);
            derive::samples(recorded, group.as_deref(), origin, &mut samples);
            derived.extend(samples.drain(..).map(|sample| (sample, at)));
            if let Some(origin) = origin {
                origins.note(recorded.event.id, origin);
            }
        }
        series.add_all(&derived);
    }
}

/// The group and topic labels of recent device messages, for their drops.
/// A message keeps only an index into the distinct label pairs, in a ring
/// of the newest ones: noting one is a push, with no hashing. Drops are
/// rare, so the ring is indexed by event only when one is looked up, from
/// where the last look-up stopped (during a flood of drops that is one
/// insert per message, as noting them into a map would be).
#[derive(Default)]
struct Origins {
    /// `(event, pair)` of the newest messages, oldest first.
    ring: VecDeque<(EventId, u32)>,
    /// Messages ever noted: `ring[0]` is number `noted - ring.len()`.
    noted: u64,
    /// Event to its number, for the messages numbered below `indexed`;
    /// numbers that left the ring are stale (rebuilt past twice the ring).
    by_event: HashMap<EventId, u64, BuildHasherDefault<IdHasher>>,
    indexed: u64,
    pairs: Vec<(String, String)>,
    /// Group, then topic label, to the pair's index.
    pair_index: HashMap<String, HashMap<String, u32>>,
    /// The pair noted last: a device's messages come in runs.
    last: Option<u32>,
}

impl Origins {
    fn note(&mut self, event: EventId, origin: derive::Origin<'_>) {
        let pair = match self.last.filter(|last| self.get_pair(*last) == Some(origin)) {
            Some(last) => last,
            None => self.pair(origin),
        };
        self.last = Some(pair);
        if self.ring.len() >= ORIGINS_CACHED_MAX {
            self.ring.pop_front();
        }
        self.ring.push_back((event, pair));
        self.noted += 1;
    }

    /// The index of a pair, added if new.
    fn pair(&mut self, (group, topic): derive::Origin<'_>) -> u32 {
        match self.pair_index.get(group).and_then(|topics| topics.get(topic)) {
            Some(pair) => *pair,
            None => {
                if self.pairs.len() >= ORIGIN_PAIRS_MAX {
                    *self = Self::default();
                }
                let pair = self.pairs.len() as u32;
                self.pairs.push((group.to_string(), topic.to_string()));
                self.pair_index.entry(group.to_string()).or_default().insert(topic.to_string(), pair);
                pair
            }
        }
    }

    fn get(&mut self, event: &EventId) -> Option<derive::Origin<'_>> {
        let first = self.noted - self.ring.len() as u64;
        if self.by_event.len() > 2 * ORIGINS_CACHED_MAX {
            self.by_event.retain(|_, number| *number >= first);
        }
        for number in self.indexed.max(first)..self.noted {
            self.by_event.insert(self.ring[(number - first) as usize].0, number);
        }
        self.indexed = self.noted;
        let number = *self.by_event.get(event)?;
        let (_, pair) = self.ring.get(usize::try_from(number.checked_sub(first)?).ok()?)?;
        self.get_pair(*pair)
    }

    fn get_pair(&self, pair: u32) -> Option<derive::Origin<'_>> {
        let (group, topic) = self.pairs.get(pair as usize)?;
        Some((group, topic))
    }
}

/// The group of the event's device, remembered; forgotten when the device changes.
async fn group_of(
    recorded: &RecordedEvent,
    devices: &Arc<dyn DeviceRegistry>,
    groups: &mut HashMap<String, Option<Arc<str>>>,
) -> Option<Arc<str>> {
    let device = recorded.event.device.as_deref()?;
    if matches!(recorded.event.ty.as_str(), "device.updated" | "device.deleted" | "device.registered") {
        groups.remove(device);
    }
    if let Some(group) = groups.get(device) {
        return group.clone();
    }
    let group = match devices.device(device).await {
        Ok(Some(d)) => d.meta.group.map(Arc::from),
        _ => None,
    };
    if groups.len() >= GROUPS_CACHED_MAX {
        groups.clear();
    }
    groups.insert(device.to_string(), group.clone());
    group
}

#[cfg(test)]
mod tests {
    use glassbox_core::IdMinter;

    use super::*;

    #[test]
    fn origins_share_their_labels_and_forget_the_oldest_message_first() {
        let minter = IdMinter::new();
        let ids: Vec<EventId> = (0..ORIGINS_CACHED_MAX + 2).map(|_| minter.mint()).collect();
        let mut origins = Origins::default();
        for (n, id) in ids.iter().enumerate() {
            origins.note(*id, ("greenhouse", if n % 2 == 0 { "devices/+/telemetry" } else { "other" }));
        }
        assert_eq!(origins.pairs.len(), 2, "two distinct pairs, however many messages");
        assert_eq!(origins.get(&ids[0]), None, "the oldest are forgotten past the bound");
        assert_eq!(origins.get(&ids[1]), None);
        assert_eq!(origins.get(&ids[2]), Some(("greenhouse", "devices/+/telemetry")));
        assert_eq!(origins.get(&ids[ORIGINS_CACHED_MAX + 1]), Some(("greenhouse", "other")));
    }

    #[test]
    fn origins_indexed_on_look_up_find_the_newest_and_stay_bounded() {
        let minter = IdMinter::new();
        let mut origins = Origins::default();
        let topic = |m: usize| if m.is_multiple_of(3) { "a" } else { "b" };
        let mut ids = Vec::new();
        for n in 0..3 * ORIGINS_CACHED_MAX {
            let id = minter.mint();
            ids.push(id);
            origins.note(id, ("g", topic(n)));
            if n % 1000 == 999 {
                assert_eq!(origins.get(&ids[n]), Some(("g", topic(n))), "the newest");
                assert_eq!(origins.get(&ids[n - 500]), Some(("g", topic(n - 500))), "one noted since the last look-up");
                if n >= ORIGINS_CACHED_MAX {
                    assert_eq!(origins.get(&ids[n - ORIGINS_CACHED_MAX]), None, "one that left the ring");
                }
                assert!(origins.by_event.len() <= 2 * ORIGINS_CACHED_MAX + 1000, "{}", origins.by_event.len());
            }
        }
        assert_eq!(origins.get(&minter.mint()), None, "never noted");
    }

    #[test]
    fn origins_start_over_past_the_bound_on_distinct_label_pairs() {
        let minter = IdMinter::new();
        let mut origins = Origins::default();
        let first = minter.mint();
        origins.note(first, ("g-0", "t"));
        for n in 1..ORIGIN_PAIRS_MAX {
            origins.note(minter.mint(), (&format!("g-{n}"), "t"));
        }
        assert_eq!(origins.get(&first), Some(("g-0", "t")));
        let newest = minter.mint();
        origins.note(newest, ("one more", "t"));
        assert_eq!(origins.pairs.len(), 1);
        assert_eq!(origins.get(&first), None);
        assert_eq!(origins.get(&newest), Some(("one more", "t")));
    }
}
