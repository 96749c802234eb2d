//! The stream into the series: samples derived from every recorded event
//! (and every dropped delivery) while the server lives, and closed buckets
//! written — and handed to the anomaly detectors — every few seconds.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::Utc;
use glassbox_core::{EventId, RecentIds, RecordedEvent};
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
    let mut groups: HashMap<String, Option<String>> = HashMap::new();
    let mut origins = Origins::default();
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
                series.add_all(&[(vec![sample], dropped.at)]);
                continue;
            }
        };
        let (Some(series), Some(devices)) = (series.upgrade(), devices.upgrade()) else { return };
        if let Some(glassbox_bus::Unread { skipped, error, .. }) = batch.unread {
            tracing::warn!(skipped, %error, "metrics fell behind and could not read back; counts are short");
        }
        let batch = batch.events;
        let mut derived = Vec::with_capacity(batch.len());
        for recorded in batch {
            let group = group_of(&recorded, &devices, &mut groups).await;
            let origin = derive::origin(&recorded, group.as_deref(), series.topics());
            let at = recorded.states.first().map_or(recorded.event.time, |s| s.at);
            derived.push((derive::samples(&recorded, group.as_deref(), origin), at));
            if let Some(origin) = origin {
                origins.note(recorded.event.id, origin);
            }
        }
        series.add_all(&derived);
    }
}

/// The group and topic labels of recent device messages, for their drops.
/// A message keeps only an index into the distinct label pairs, and the
/// oldest messages are forgotten one at a time: no allocation per message,
/// and no pause to free a whole table at once (clearing 100,000 entries of
/// two strings each held a runtime thread for 5 ms).
struct Origins {
    recent: RecentIds<u32>,
    pairs: Vec<(String, String)>,
    /// Group, then topic label, to the pair's index.
    index: HashMap<String, HashMap<String, u32>>,
}

impl Default for Origins {
    fn default() -> Self {
        Self { recent: RecentIds::new(ORIGINS_CACHED_MAX), pairs: Vec::new(), index: HashMap::new() }
    }
}

impl Origins {
    fn note(&mut self, event: EventId, (group, topic): derive::Origin<'_>) {
        let pair = match self.index.get(group).and_then(|topics| topics.get(topic)) {
            Some(pair) => *pair,
            None => {
                if self.pairs.len() >= ORIGIN_PAIRS_MAX {
                    *self = Self::default();
                }
                let pair = self.pairs.len() as u32;
                self.pairs.push((group.to_string(), topic.to_string()));
                self.index.entry(group.to_string()).or_default().insert(topic.to_string(), pair);
                pair
            }
        };
        self.recent.insert(event, pair);
    }

    fn get(&self, event: &EventId) -> Option<derive::Origin<'_>> {
        let (group, topic) = self.pairs.get(*self.recent.get(event)? as usize)?;
        Some((group, topic))
    }
}

/// The group of the event's device, remembered; forgotten when the device changes.
async fn group_of(
    recorded: &RecordedEvent,
    devices: &Arc<dyn DeviceRegistry>,
    groups: &mut HashMap<String, Option<String>>,
) -> Option<String> {
    let device = recorded.event.device.as_deref()?;
    if matches!(recorded.event.ty.as_str(), "device.updated" | "device.deleted" | "device.registered") {
        groups.remove(device);
    }
    if let Some(group) = groups.get(device) {
        return group.clone();
    }
    let group = match devices.device(device).await {
        Ok(Some(d)) => d.meta.group.clone(),
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
