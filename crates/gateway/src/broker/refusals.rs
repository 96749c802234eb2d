//! Refused CONNECTs, aggregated per peer address: the first refusal from a
//! peer is recorded at once, the following ones within the interval are
//! counted and recorded together when it ends. A flood of bad logins so
//! costs at most one small `connection_refused` event per peer per interval
//! (claimed names truncated, a few kept), whatever it claims.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use glassbox_core::{ConnectionPayload, ConnectionsRefused, DisconnectReason, Draft};

use super::{Shared, lock};

/// Peers tallied at once; refusals from further peers share one tally.
pub(crate) const REFUSED_PEERS_MAX: usize = 10_000;
/// Claimed names kept per event.
const CLAIMED_NAMES_MAX: usize = 4;
/// Bytes kept of a claimed name (client id or user name).
pub(crate) const CLAIMED_NAME_BYTES_MAX: usize = 128;
/// Bytes kept of a refusal's detail.
const DETAIL_BYTES_MAX: usize = 256;
/// The tally of peers beyond [`REFUSED_PEERS_MAX`].
const OTHER_PEERS: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// One refused CONNECT.
pub(crate) struct Refusal<'a> {
    pub reason: DisconnectReason,
    pub detail: &'a str,
    /// The device the client presented itself as (user name = client id).
    pub device: Option<&'a str>,
    /// The user name, else the client id.
    pub claimed: &'a str,
    /// Refused at once during a login back-off, credentials not checked.
    pub backoff: bool,
}

#[derive(Default)]
struct Tally {
    /// When this peer's last event was recorded.
    recorded_at: Option<Instant>,
    count: u64,
    reasons: BTreeMap<&'static str, u64>,
    claimed: Vec<String>,
    backoff: u64,
    detail: String,
    /// `Some(Some(d))` while every refusal claimed device `d`.
    device: Option<Option<String>>,
}

impl Tally {
    fn add(&mut self, refusal: &Refusal<'_>) {
        self.count += 1;
        *self.reasons.entry(refusal.reason.as_str()).or_default() += 1;
        self.backoff += u64::from(refusal.backoff);
        let claimed = truncate(refusal.claimed, CLAIMED_NAME_BYTES_MAX);
        if !claimed.is_empty() && self.claimed.len() < CLAIMED_NAMES_MAX && !self.claimed.iter().any(|c| *c == claimed)
        {
            self.claimed.push(claimed.to_string());
        }
        if self.detail.is_empty() {
            self.detail = truncate(refusal.detail, DETAIL_BYTES_MAX).to_string();
        }
        let device = refusal.device.filter(|d| d.len() <= CLAIMED_NAME_BYTES_MAX).map(str::to_string);
        self.device = match self.device.take() {
            None => Some(device),
            Some(same) if same == device => Some(same),
            Some(_) => Some(None),
        };
    }

    /// The event for what was counted since the last one; resets the counts.
    fn take(&mut self, peer: IpAddr, interval: Duration, now: Instant) -> Draft {
        let tally = std::mem::take(self);
        self.recorded_at = Some(now);
        let reason = tally.reasons.iter().max_by_key(|(_, n)| **n).map_or("", |(r, _)| *r);
        let peer = if peer == OTHER_PEERS { "other peers".to_string() } else { peer.to_string() };
        let data = ConnectionsRefused {
            peer: peer.clone(),
            count: tally.count,
            reason: reason.to_string(),
            reasons: tally.reasons.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
            claimed: tally.claimed,
            detail: tally.detail,
            backoff: tally.backoff,
            interval_seconds: interval.as_secs_f64(),
        };
        let device = tally.device.flatten();
        let ty = ConnectionsRefused::type_for(device.as_deref());
        Draft { subject: Some(device.clone().unwrap_or(peer)), device, ..Draft::json("glassbox/gateway", ty, &data) }
    }
}

pub(crate) struct Refusals {
    interval: Duration,
    peers: Mutex<HashMap<IpAddr, Tally>>,
}

impl Refusals {
    pub fn new(interval: Duration) -> Self {
        Self { interval, peers: Mutex::new(HashMap::new()) }
    }

    /// Counts a refusal; returns the event to record now, if this peer's
    /// interval allows one.
    pub fn note(&self, peer: IpAddr, refusal: &Refusal<'_>, now: Instant) -> Option<Draft> {
        let mut peers = lock(&self.peers);
        let mut key = peer_key(peer);
        if peers.len() >= REFUSED_PEERS_MAX && !peers.contains_key(&key) {
            key = OTHER_PEERS;
        }
        let tally = peers.entry(key).or_default();
        tally.add(refusal);
        let due = tally.recorded_at.is_none_or(|at| now.duration_since(at) >= self.interval);
        due.then(|| tally.take(key, self.interval, now))
    }

    /// The events of tallies whose interval ended; forgets quiet peers.
    pub fn due(&self, now: Instant) -> Vec<Draft> {
        let mut drafts = Vec::new();
        lock(&self.peers).retain(|peer, tally| {
            let ended = tally.recorded_at.is_none_or(|at| now.duration_since(at) >= self.interval);
            if ended && tally.count > 0 {
                drafts.push(tally.take(*peer, self.interval, now));
                return true;
            }
            !ended
        });
        drafts
    }
}

/// IPv4 addresses as they are; IPv6 by /64, what one host usually holds.
pub(crate) fn peer_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Records a refusal's event, if one is due.
pub(crate) async fn record(shared: &Shared, peer: IpAddr, refusal: &Refusal<'_>) {
    if let Some(draft) = shared.refusals.note(peer, refusal, Instant::now()) {
        ingest(shared, draft).await;
    }
}

async fn ingest(shared: &Shared, draft: Draft) {
    if let Err(e) = shared.recorder.ingest(vec![draft], "mqtt").await {
        tracing::warn!(error = %e, "could not record refused connections");
    }
}

/// Records the counts of ended intervals, once a second, while the broker lives.
pub(crate) async fn record_due(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        for draft in shared.refusals.due(Instant::now()) {
            ingest(&shared, draft).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(claimed: &str) -> Refusal<'_> {
        Refusal {
            reason: DisconnectReason::AuthFailure,
            detail: "unknown device",
            device: Some(claimed),
            claimed,
            backoff: false,
        }
    }

    #[test]
    fn one_event_per_peer_per_interval_with_the_counts() {
        let refusals = Refusals::new(Duration::from_secs(10));
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert!(refusals.note(peer, &refusal("a"), t0).is_some(), "the first is recorded at once");
        let long = "x".repeat(30_000);
        for i in 0..100 {
            let claimed = if i % 2 == 0 { long.as_str() } else { "b" };
            assert!(refusals.note(peer, &refusal(claimed), t0 + Duration::from_millis(i)).is_none());
        }
        assert!(refusals.due(t0 + Duration::from_secs(5)).is_empty());
        let due = refusals.due(t0 + Duration::from_secs(10));
        assert_eq!(due.len(), 1);
        let data = due[0].data.json().unwrap();
        assert_eq!(data["count"], 100);
        assert_eq!(data["claimed"].as_array().unwrap().len(), 2);
        assert!(data["claimed"].as_array().unwrap().iter().all(|c| c.as_str().unwrap().len() <= 128));
        assert_eq!(due[0].ty, "client.connection_refused", "several names: not one device's");
        assert!(refusals.due(t0 + Duration::from_secs(30)).is_empty());
        assert!(lock(&refusals.peers).is_empty(), "a quiet peer is forgotten");
    }

    #[test]
    fn cuts_at_a_character_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 128), "abc");
    }
}
