//! Event ids: ULIDs minted at ingress, time-ordered and never reused.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use ulid::{Generator, Ulid};

/// An event id: a ULID (26 Crockford base-32 characters), whose first 48 bits
/// are the mint time in milliseconds, so ids sort by time.
pub type EventId = Ulid;

/// Mints strictly increasing ids, even within one millisecond.
///
/// Monotonic ids let the store keep events in id order and let a time range
/// be answered as an id range.
#[derive(Default)]
pub struct IdMinter {
    generator: Mutex<Generator>,
}

impl std::fmt::Debug for IdMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdMinter")
    }
}

impl IdMinter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Mints the next id. Falls back to a fresh random id in the (2^80 ids
    /// in one millisecond) case where the monotonic counter overflows.
    pub fn mint(&self) -> EventId {
        let mut generator = self.generator.lock().unwrap_or_else(|e| e.into_inner());
        generator.generate().unwrap_or_else(|_| Ulid::new())
    }
}

/// The smallest id that could have been minted at `time`: the lower bound of
/// a time-range scan over ids.
pub fn first_id_at(time: DateTime<Utc>) -> EventId {
    Ulid::from_parts(time.timestamp_millis().max(0) as u64, 0)
}

/// The largest id that could have been minted at `time`.
pub fn last_id_at(time: DateTime<Utc>) -> EventId {
    Ulid::from_parts(time.timestamp_millis().max(0) as u64, u128::MAX)
}

/// When `id` was minted (to the millisecond): when its event reached the platform.
pub fn minted_at(id: EventId) -> DateTime<Utc> {
    let ms = i64::try_from(id.timestamp_ms()).unwrap_or(i64::MAX);
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A hasher for sets and maps keyed by event ids that this platform
/// minted: an id's low 80 bits are random (or a counter within one
/// millisecond), so a multiply spreads them over the table without the
/// cost of SipHash. Not for keys a client chooses.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u128(&mut self, id: u128) {
        let folded = (id as u64) ^ ((id >> 64) as u64);
        self.0 = (self.0 ^ folded).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    /// Anything else (not an id): FNV-1a over its bytes.
    fn write(&mut self, bytes: &[u8]) {
        let start = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        self.0 = bytes.iter().fold(start, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    }
}

/// A set of event ids, hashed with [`IdHasher`].
pub type IdSet = std::collections::HashSet<EventId, std::hash::BuildHasherDefault<IdHasher>>;

/// Event ids, each with a value, at most `max` of them: inserting past the
/// bound forgets the oldest inserted. A cache of recent events; a removed
/// id's place in the insertion order is freed when its turn comes.
pub struct RecentIds<V> {
    values: std::collections::HashMap<EventId, V, std::hash::BuildHasherDefault<IdHasher>>,
    order: std::collections::VecDeque<EventId>,
    max: usize,
}

impl<V> RecentIds<V> {
    pub fn new(max: usize) -> Self {
        Self { values: Default::default(), order: Default::default(), max }
    }

    /// Inserts `id` with `value` unless it is here; whether it was new.
    pub fn insert(&mut self, id: EventId, value: V) -> bool {
        let std::collections::hash_map::Entry::Vacant(entry) = self.values.entry(id) else { return false };
        entry.insert(value);
        self.order.push_back(id);
        if self.order.len() > self.max
            && let Some(oldest) = self.order.pop_front()
        {
            self.values.remove(&oldest);
        }
        true
    }

    pub fn get(&self, id: &EventId) -> Option<&V> {
        self.values.get(id)
    }

    pub fn get_mut(&mut self, id: &EventId) -> Option<&mut V> {
        self.values.get_mut(id)
    }

    /// Removes `id`; whether it was here.
    pub fn remove(&mut self, id: &EventId) -> bool {
        self.values.remove(id).is_some()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn clear(&mut self) {
        self.values.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_keep_at_most_their_bound_forgetting_the_oldest() {
        let minter = IdMinter::new();
        let ids: Vec<EventId> = (0..4).map(|_| minter.mint()).collect();
        let mut recent = RecentIds::new(2);
        assert!(recent.insert(ids[0], 0) && !recent.insert(ids[0], 9), "once");
        assert!(recent.insert(ids[1], 1) && recent.insert(ids[2], 2));
        assert_eq!(recent.len(), 2);
        assert!(recent.get_mut(&ids[0]).is_none(), "the oldest is forgotten");
        assert!(recent.remove(&ids[1]) && !recent.remove(&ids[1]));
        *recent.get_mut(&ids[2]).unwrap() += 1;
        assert_eq!(recent.get_mut(&ids[2]), Some(&mut 3));
        recent.clear();
        assert!(recent.is_empty() && recent.insert(ids[3], 0));
    }

    #[test]
    fn ids_minted_in_one_millisecond_spread_over_the_hash() {
        use std::hash::BuildHasher;
        let minter = IdMinter::new();
        let build = std::hash::BuildHasherDefault::<IdHasher>::default();
        // The top 7 bits pick the control byte, the low bits the bucket: both vary.
        let hashes: Vec<u64> = (0..256).map(|_| build.hash_one(minter.mint())).collect();
        let tops: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        let lows: std::collections::HashSet<u64> = hashes.iter().map(|h| h & 0xff).collect();
        assert!(tops.len() > 64 && lows.len() > 128, "tops {} lows {}", tops.len(), lows.len());
    }

    #[test]
    fn minted_ids_strictly_increase() {
        let minter = IdMinter::new();
        let ids: Vec<_> = (0..10_000).map(|_| minter.mint()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn time_bounds_bracket_ids_minted_then() {
        let id = IdMinter::new().mint();
        let at = DateTime::<Utc>::from(id.datetime());
        assert!(first_id_at(at) <= id && id <= last_id_at(at));
    }
}
