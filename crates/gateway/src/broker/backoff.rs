//! Back-off for repeated failed logins, per peer address (IPv6 by /64) and per claimed
//! id: after a few free failures each further one doubles the wait (from
//! one second up to `login_backoff_max`) during which that peer or id is
//! refused at once, without its credentials being checked. Both tables are
//! bounded; the least recently failing entries make room.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::lock;
use super::refusals::{CLAIMED_NAME_BYTES_MAX, peer_key, truncate};

/// Entries per table (peers; claimed ids).
pub(crate) const BACKOFF_ENTRIES_MAX: usize = 10_000;
/// Failed logins from one peer address before it backs off (a NAT may hide many devices).
const PEER_FREE_FAILURES: u32 = 10;
/// Failed logins for one claimed id before it backs off.
const ID_FREE_FAILURES: u32 = 5;
/// The first wait; each further failure doubles it.
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// Failures are forgotten after this long without one.
const FORGET_AFTER: Duration = Duration::from_secs(600);

struct Entry {
    failures: u32,
    last: Instant,
    until: Instant,
}

struct Table<K> {
    free: u32,
    entries: Mutex<HashMap<K, Entry>>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(free: u32) -> Self {
        Self { free, entries: Mutex::new(HashMap::new()) }
    }

    fn waiting(&self, key: &K, now: Instant) -> Option<Duration> {
        let entries = lock(&self.entries);
        entries.get(key).and_then(|e| e.until.checked_duration_since(now)).filter(|d| !d.is_zero())
    }

    fn failed(&self, key: K, now: Instant, max: Duration) {
        let mut entries = lock(&self.entries);
        if entries.len() >= BACKOFF_ENTRIES_MAX && !entries.contains_key(&key) {
            make_room(&mut entries, now);
        }
        let entry = entries.entry(key).or_insert(Entry { failures: 0, last: now, until: now });
        if now.duration_since(entry.last) > FORGET_AFTER {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
        if let Some(over) = entry.failures.checked_sub(self.free + 1) {
            let wait = FIRST_WAIT.saturating_mul(1u32 << over.min(20)).min(max);
            entry.until = now + wait;
        }
    }

    fn forget(&self, key: &K) {
        lock(&self.entries).remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.entries).len()
    }
}

/// Drops forgotten entries, then the least recently failing quarter if still full.
fn make_room<K: Hash + Eq + Clone>(entries: &mut HashMap<K, Entry>, now: Instant) {
    entries.retain(|_, e| now.duration_since(e.last) <= FORGET_AFTER);
    if entries.len() < BACKOFF_ENTRIES_MAX {
        return;
    }
    let mut lasts: Vec<Instant> = entries.values().map(|e| e.last).collect();
    let cut = lasts.len() / 4;
    let (_, oldest_kept, _) = lasts.select_nth_unstable(cut);
    let oldest_kept = *oldest_kept;
    entries.retain(|_, e| e.last >= oldest_kept);
}

pub(crate) struct LoginBackoff {
    max: Duration,
    peers: Table<IpAddr>,
    ids: Table<String>,
}

impl LoginBackoff {
    pub fn new(max: Duration) -> Self {
        Self { max, peers: Table::new(PEER_FREE_FAILURES), ids: Table::new(ID_FREE_FAILURES) }
    }

    /// How long `peer` or `claimed` must still wait, if either backs off.
    pub fn waiting(&self, peer: IpAddr, claimed: &str, now: Instant) -> Option<Duration> {
        if self.max.is_zero() {
            return None;
        }
        let id = truncate(claimed, CLAIMED_NAME_BYTES_MAX).to_string();
        self.peers.waiting(&peer_key(peer), now).max(self.ids.waiting(&id, now))
    }

    pub fn failed(&self, peer: IpAddr, claimed: &str, now: Instant) {
        if self.max.is_zero() {
            return;
        }
        self.peers.failed(peer_key(peer), now, self.max);
        self.ids.failed(truncate(claimed, CLAIMED_NAME_BYTES_MAX).to_string(), now, self.max);
    }

    /// A successful login clears its id's failures (not its peer's).
    pub fn succeeded(&self, claimed: &str) {
        self.ids.forget(&truncate(claimed, CLAIMED_NAME_BYTES_MAX).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_after_the_free_failures_up_to_the_maximum() {
        let backoff = LoginBackoff::new(Duration::from_secs(8));
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..ID_FREE_FAILURES {
            backoff.failed(peer, "dev", t0);
        }
        assert_eq!(backoff.waiting(peer, "dev", t0), None);
        backoff.failed(peer, "dev", t0);
        assert_eq!(backoff.waiting(peer, "dev", t0), Some(Duration::from_secs(1)));
        backoff.failed(peer, "dev", t0);
        assert_eq!(backoff.waiting(peer, "dev", t0), Some(Duration::from_secs(2)));
        for _ in 0..10 {
            backoff.failed(peer, "dev", t0);
        }
        assert_eq!(backoff.waiting(peer, "dev", t0), Some(Duration::from_secs(8)), "capped");
        assert_eq!(backoff.waiting(peer, "dev", t0 + Duration::from_secs(9)), None);
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(backoff.waiting(other, "other", t0), None, "another peer and id are not held back");
        assert!(backoff.waiting(peer, "other", t0).is_some(), "the peer failed more than its free failures");
        backoff.succeeded("dev");
        assert!(backoff.waiting(other, "dev", t0).is_none());
    }

    #[test]
    fn tables_stay_bounded() {
        let backoff = LoginBackoff::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..(BACKOFF_ENTRIES_MAX as u32 + 500) {
            let peer = IpAddr::from(i.to_be_bytes());
            backoff.failed(peer, &format!("{i}{}", "x".repeat(1000)), t0 + Duration::from_micros(u64::from(i)));
        }
        assert!(backoff.peers.len() <= BACKOFF_ENTRIES_MAX);
        assert!(backoff.ids.len() <= BACKOFF_ENTRIES_MAX);
    }
}
