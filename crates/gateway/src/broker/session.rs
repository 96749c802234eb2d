//! A session: what the broker keeps for one client id across connections —
//! subscriptions, the queue of deliveries not yet sent, the deliveries in
//! flight, and the link to the connection serving it, if any.
//!
//! One queue serves both states: while connected, the writer drains it
//! within the client's receive window; while disconnected, it is the
//! offline queue, bounded in messages and bytes with a drop policy.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use glassbox_core::{DisconnectReason, DropReason, State};
use glassbox_store::SessionOp;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::aliases::OutboundAliases;
use super::deliveries::Deliveries;
use super::kill::Kill;
use super::message::Delivery;
use super::{QueueBounds, QueuePolicy};
use crate::codec::{Protocol, Publish, QoS};

/// Most cleared messages [`Cleared`] names (all are counted, and each is
/// recorded as dropped).
pub const CLEARED_LISTED_MAX: usize = 20;

pub use glassbox_link::{Cleared, ClearedMessage};

/// Session expiry meaning "never" (3.1.1 persistent sessions, 5.0 0xFFFFFFFF).
pub(crate) const NEVER: u32 = u32::MAX;

/// The options of one subscription, as granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SubOptions {
    pub qos: u8,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_local: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retain_as_published: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
}

/// The connection serving a session.
pub(crate) struct Link {
    pub conn: u64,
    pub protocol: Protocol,
    /// Ends the connection at once (see [`Kill`]).
    pub kill: Kill,
    pub wake: Arc<Notify>,
    /// Deliveries in flight at once: the client's receive maximum, capped.
    pub window: usize,
    /// The largest packet to send it: its maximum packet size, or MQTT's
    /// largest when the broker's own bound comes near it (`usize::MAX`:
    /// nothing to check).
    pub packet_bytes_max: usize,
    /// The topic aliases this connection has assigned on what it sent.
    pub aliases: OutboundAliases,
    pub since: DateTime<Utc>,
    /// What TLS negotiated; `None` for plain TCP.
    pub tls: Option<glassbox_core::TlsSession>,
}

/// A QoS 1 or 2 delivery sent and not yet completed.
pub(crate) struct InFlight {
    pub delivery: Delivery,
    /// QoS 2: PUBREC received and PUBREL sent.
    pub released: bool,
}

pub(crate) struct Session {
    pub client_id: Arc<str>,
    pub device: Option<String>,
    /// Seconds the session outlives its connection; 0 ends it with the connection.
    pub expiry: u32,
    pub subscriptions: HashMap<String, SubOptions>,
    pub queue: VecDeque<Delivery>,
    pub queue_bytes: usize,
    pub bounds: QueueBounds,
    pub inflight: BTreeMap<u16, InFlight>,
    /// QoS 2 packet ids received and recorded, awaiting PUBREL.
    pub awaiting_release: HashSet<u16>,
    next_packet_id: u16,
    next_seq: u64,
    pub link: Option<Link>,
    pub disconnected_at: Option<DateTime<Utc>>,
    pub last_disconnect: Option<DisconnectReason>,
    /// Bumped at every connect: a delayed will checks it is still current.
    pub epoch: u64,
    pub dropped: u64,
}

/// What is stored of a session as one row (its subscriptions and queue are
/// stored row by row).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredSession {
    pub expiry: u32,
    #[serde(default)]
    pub device: Option<String>,
    /// Only in state written before subscriptions had their own rows.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub subscriptions: HashMap<String, SubOptions>,
    #[serde(default)]
    pub disconnected_at: Option<DateTime<Utc>>,
}

impl Session {
    pub fn new(client_id: Arc<str>, device: Option<String>, expiry: u32, bounds: QueueBounds) -> Self {
        Self {
            client_id,
            device,
            expiry,
            subscriptions: HashMap::new(),
            queue: VecDeque::new(),
            queue_bytes: 0,
            bounds,
            inflight: BTreeMap::new(),
            awaiting_release: HashSet::new(),
            next_packet_id: 0,
            next_seq: 1,
            link: None,
            disconnected_at: None,
            last_disconnect: None,
            epoch: 0,
            dropped: 0,
        }
    }

    pub fn persistent(&self) -> bool {
        self.expiry > 0
    }

    pub fn stored(&self) -> SessionOp {
        let state = StoredSession {
            expiry: self.expiry,
            device: self.device.clone(),
            subscriptions: HashMap::new(),
            disconnected_at: self.disconnected_at,
        };
        SessionOp::PutSession {
            client_id: self.client_id.to_string(),
            state: serde_json::to_vec(&state).unwrap_or_default(),
        }
    }

    /// The store's change for a subscription added or replaced.
    pub fn subscribed(&self, filter: &str, options: &SubOptions) -> SessionOp {
        SessionOp::Subscribe {
            client_id: self.client_id.to_string(),
            filter: filter.to_string(),
            options: serde_json::to_vec(options).unwrap_or_default(),
        }
    }

    /// The store's change for a subscription removed.
    pub fn unsubscribed(&self, filter: &str) -> SessionOp {
        SessionOp::Unsubscribe { client_id: self.client_id.to_string(), filter: filter.to_string() }
    }

    /// Every subscription as a store change: for a session that just became persistent.
    pub fn store_subscriptions(&self, ops: &mut Vec<SessionOp>) {
        ops.extend(self.subscriptions.iter().map(|(filter, options)| self.subscribed(filter, options)));
    }

    /// Restores a queued delivery loaded from the store, in seq order.
    pub fn restore(&mut self, delivery: Delivery) {
        self.next_seq = self.next_seq.max(delivery.seq + 1);
        self.queue_bytes += delivery.message.size();
        self.queue.push_back(delivery);
    }

    /// Queues a delivery within the bounds, applying the drop policy; wakes
    /// the writer if connected. Returns what to persist.
    pub fn offer(&mut self, mut delivery: Delivery, deliveries: &Deliveries, ops: &mut Vec<SessionOp>) {
        let event = delivery.message.event;
        let offline = self.link.is_none();
        if offline && delivery.qos == QoS::AtMostOnce {
            self.dropped += 1;
            let detail = format!("{}: the subscriber is offline; QoS 0 is not queued", DropReason::Offline);
            return deliveries.note(event, State::Dropped, &self.client_id, Some(detail));
        }
        let size = delivery.message.size();
        if size > self.bounds.bytes {
            // Evicting everything would not make room: refuse it alone.
            self.dropped += 1;
            let detail =
                format!("{}: {size} bytes, more than the whole {}", DropReason::TooLarge, self.bounds.describe());
            return deliveries.note(event, State::Dropped, &self.client_id, Some(detail));
        }
        while self.queue.len() >= self.bounds.messages || self.queue_bytes + size > self.bounds.bytes {
            let victim = match self.bounds.policy {
                QueuePolicy::DropOldest if !self.queue.is_empty() => self.queue.pop_front(),
                _ => None,
            };
            let Some(victim) = victim else {
                self.dropped += 1;
                let detail = format!("{}: {}", DropReason::QueueFull, self.bounds.describe());
                return deliveries.note(event, State::Dropped, &self.client_id, Some(detail));
            };
            self.queue_bytes -= victim.message.size();
            self.dropped += 1;
            let detail = format!("{}: {}; the oldest message made room", DropReason::QueueFull, self.bounds.describe());
            deliveries.note(victim.message.event, State::Dropped, &self.client_id, Some(detail));
            self.forget(&victim, ops);
        }
        delivery.seq = self.next_seq;
        self.next_seq += 1;
        if offline && self.persistent() {
            ops.push(SessionOp::Enqueue {
                client_id: self.client_id.to_string(),
                seq: delivery.seq,
                message: delivery.encode(),
            });
            delivery.persisted = true;
        }
        let detail = offline.then(|| "queued while offline".to_string());
        deliveries.note(event, State::InTransit, &self.client_id, detail);
        self.queue_bytes += size;
        self.queue.push_back(delivery);
        if let Some(link) = &self.link {
            link.wake.notify_one();
        }
    }

    /// Drops every queued delivery not yet sent (an operator cleared them),
    /// each recorded as dropped with reason `cleared`; returns how many.
    /// Deliveries already sent and awaiting their acknowledgement keep
    /// their packet ids, so they stay (at most the receive maximum).
    pub fn clear(&mut self, deliveries: &Deliveries, who: &str, ops: &mut Vec<SessionOp>) -> Cleared {
        let cleared = std::mem::take(&mut self.queue);
        for delivery in &cleared {
            self.dropped += 1;
            let detail = format!("{}: by {who}", DropReason::Cleared);
            deliveries.note(delivery.message.event, State::Dropped, &self.client_id, Some(detail));
            self.forget(delivery, ops);
        }
        self.queue_bytes = 0;
        let messages = cleared
            .iter()
            .take(CLEARED_LISTED_MAX)
            .map(|d| ClearedMessage {
                event: d.message.event.to_string(),
                topic: d.message.topic.clone(),
                bytes: d.message.payload.len(),
            })
            .collect();
        Cleared { count: cleared.len(), messages }
    }

    /// Removes a finished delivery from the store, if it was there.
    pub fn forget(&self, delivery: &Delivery, ops: &mut Vec<SessionOp>) {
        if delivery.persisted {
            ops.push(SessionOp::Dequeue { client_id: self.client_id.to_string(), seq: delivery.seq });
        }
    }

    /// Takes up to `max` deliveries the link may send now, assigning packet
    /// ids; expired or oversize ones are dropped with their reason.
    pub fn take_sendable(
        &mut self,
        max: usize,
        now: SystemTime,
        deliveries: &Deliveries,
        ops: &mut Vec<SessionOp>,
    ) -> Vec<(Publish, Delivery)> {
        let Some(link) = &self.link else { return Vec::new() };
        let (window, protocol) = (link.window, link.protocol);
        let mut out = Vec::new();
        while out.len() < max {
            // Only QoS 0 may pass a full window (it is not acknowledged).
            let window_full = self.inflight.len() >= window;
            if self.queue.front().is_none_or(|front| front.qos != QoS::AtMostOnce && window_full) {
                break;
            }
            let Some(delivery) = self.queue.pop_front() else { break };
            self.queue_bytes -= delivery.message.size();
            let event = delivery.message.event;
            if delivery.message.expired(now) {
                self.dropped += 1;
                deliveries.note(
                    event,
                    State::Dropped,
                    &self.client_id,
                    Some(format!("{}: message expiry passed", DropReason::Expired)),
                );
                self.forget(&delivery, ops);
                continue;
            }
            // An id not put in flight (the PUBLISH dropped) is free again.
            let packet_id = (delivery.qos != QoS::AtMostOnce).then(|| self.next_packet_id());
            let mut publish = delivery.publish(packet_id, false, protocol, now);
            if let Err(detail) = self.fit_to_link(&mut publish) {
                self.dropped += 1;
                deliveries.note(event, State::Dropped, &self.client_id, Some(detail));
                self.forget(&delivery, ops);
                continue;
            }
            if let Some(id) = packet_id {
                self.inflight.insert(id, InFlight { delivery: delivery.clone(), released: false });
            }
            out.push((publish, delivery));
        }
        out
    }

    /// Gives `publish` the topic alias the link has (or now assigns) for its
    /// topic, and checks it against the client's maximum packet size, as it
    /// will be encoded; `Err` (the drop's detail) if it does not fit. A
    /// PUBLISH that does not fit assigns no alias, since it is not sent.
    fn fit_to_link(&mut self, publish: &mut Publish) -> Result<(), String> {
        let Some(link) = self.link.as_mut() else { return Ok(()) };
        let alias = link.aliases.plan(&publish.topic);
        OutboundAliases::shape(alias, publish);
        // Measured only when there is a maximum to keep (most clients set none).
        if link.packet_bytes_max != usize::MAX {
            let size = crate::codec::publish_len(publish, link.protocol);
            if size > link.packet_bytes_max {
                let max = link.packet_bytes_max;
                return Err(format!(
                    "{}: {size} bytes, larger than the client's maximum packet size {max}",
                    DropReason::TooLarge
                ));
            }
        }
        link.aliases.commit(alias, &publish.topic);
        Ok(())
    }

    fn next_packet_id(&mut self) -> u16 {
        loop {
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self.inflight.contains_key(&self.next_packet_id) {
                return self.next_packet_id;
            }
        }
    }

    /// Ends the session: every undelivered message is dropped with `reason`.
    pub fn discard(&mut self, deliveries: &Deliveries, detail: &str) {
        let queued = self.queue.drain(..).chain(std::mem::take(&mut self.inflight).into_values().map(|f| f.delivery));
        for delivery in queued {
            self.dropped += 1;
            let note = format!("{}: {detail}", DropReason::SessionEnded);
            deliveries.note(delivery.message.event, State::Dropped, &self.client_id, Some(note));
        }
        self.queue_bytes = 0;
    }

    /// Writes every queued and in-flight delivery not yet stored, so a
    /// restart finds them (at disconnect and at shutdown).
    pub fn persist_pending(&mut self, ops: &mut Vec<SessionOp>) {
        if !self.persistent() {
            return;
        }
        let client_id = self.client_id.to_string();
        let pending = self.inflight.values_mut().map(|f| &mut f.delivery).chain(self.queue.iter_mut());
        for delivery in pending.filter(|d| !d.persisted && d.qos != QoS::AtMostOnce) {
            ops.push(SessionOp::Enqueue {
                client_id: client_id.clone(),
                seq: delivery.seq,
                message: delivery.encode(),
            });
            delivery.persisted = true;
        }
    }
}
