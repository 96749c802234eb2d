//! The port between the services and the device transport.
//!
//! The control plane reaches devices through [`DeviceLink`] (deliver a
//! recorded message, see whether a device is listening, close or end its
//! session, clear its queue) and hears from their reserved topics through
//! [`Reserved`]. The MQTT gateway implements the first and calls the second;
//! neither side names the other's types, so services stay below the
//! transport, and a cluster can put a link that routes to the node holding a
//! device's session behind the same trait. The gateway asks
//! [`MessageBudgets`] whether a device may publish one more message (the
//! budgets service implements it, in memory).
//!
//! Owns no state and no I/O: only the contract.

use async_trait::async_trait;
use bytes::Bytes;
use glassbox_core::{DisconnectReason, EventId, Principal};
use serde::Serialize;

/// The topics the platform and a device talk on:
/// `$glassbox/devices/<id>/<rest>`.
pub const RESERVED_PREFIX: &str = "$glassbox/devices/";

/// The reserved topic `rest` of `device`.
pub fn reserved_topic(device: &str, rest: &str) -> String {
    format!("{RESERVED_PREFIX}{device}/{rest}")
}

/// A message from the platform to a device, already recorded as `event`;
/// delivered at QoS 1 to the topic's subscribers like any PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMessage {
    pub event: EventId,
    pub topic: String,
    pub payload: Bytes,
    /// Where the device should answer (MQTT 5 response topic).
    pub response_topic: Option<String>,
    /// What the device's answer must carry back (MQTT 5 correlation data).
    pub correlation: Option<Bytes>,
}

/// Whether a device can hear a message sent now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Presence {
    pub connected: bool,
    /// The filters its session subscribes to.
    pub filters: Vec<String>,
}

impl Presence {
    /// Connected and subscribed to a filter matching `topic`.
    pub fn listens_to(&self, topic: &str) -> bool {
        self.connected && self.filters.iter().any(|f| glassbox_core::topic::matches(f, topic))
    }
}

/// What clearing a queue dropped: how many, and the first of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cleared {
    pub count: usize,
    /// The oldest ones (a bounded list), oldest first.
    pub messages: Vec<ClearedMessage>,
}

/// One cleared message: its event, topic and payload size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClearedMessage {
    pub event: String,
    pub topic: String,
    pub bytes: usize,
}

/// A retained message, as listed: never its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedMessage {
    pub topic: String,
    /// Payload bytes.
    pub bytes: usize,
    /// The event it was recorded as (its time and publisher are on the record).
    pub event: EventId,
    /// The client that set it; none when it was restored at start.
    pub publisher: Option<String>,
}

/// What services may ask of the transport that holds devices' sessions.
#[async_trait]
pub trait DeviceLink: Send + Sync + 'static {
    /// Delivers `message`; resolves once what it queued for stored sessions
    /// is stored. A link that is gone (stopping) drops it: the message is
    /// recorded, and a durable command is sent again on the next connect.
    async fn deliver(&self, message: DeviceMessage);

    /// The device's presence; `None` when no session is held for it.
    fn presence(&self, device: &str) -> Option<Presence>;

    /// Closes the device's connection at once with `reason`; true if it
    /// was connected.
    fn disconnect(&self, device: &str, reason: DisconnectReason) -> bool;

    /// Ends the device's session, queue and all (its device was deleted).
    async fn end_session(&self, device: &str, why: &str);

    /// Clears the device's queue of messages not yet sent, each drop naming
    /// `by`; `None` when no session is held for it.
    async fn clear_queue(&self, device: &str, by: &Principal) -> Option<Cleared>;

    /// The retained messages on topics matching `filter` (a valid filter,
    /// not shared), by topic, at most `limit`.
    fn retained(&self, filter: &str, limit: usize) -> Vec<RetainedMessage>;

    /// Removes the retained messages on topics matching `filter`, as a
    /// client's empty retained PUBLISH would (but sending nothing to
    /// subscribers); resolves once the removal is stored. Returns them.
    async fn clear_retained(&self, filter: &str) -> Vec<RetainedMessage>;
}

/// The platform's side of the reserved topics: the transport calls it for
/// what a device does there.
#[async_trait]
pub trait Reserved: Send + Sync + 'static {
    /// Device `device`, logged in as `by`, published `payload` on
    /// `$glassbox/devices/<device>/<rest>`, recorded as `event`;
    /// `correlation` is its 5.0 correlation data.
    async fn published(&self, published: ReservedPublish<'_>);
    /// The device, logged in as `by`, acknowledged (PUBACK, PUBREC) a
    /// message the platform sent it with [`DeviceLink::deliver`], recorded
    /// as `event`.
    async fn acknowledged(&self, device: &str, by: &Principal, event: EventId);
    /// The device connected (and its session is ready to receive).
    async fn connected(&self, device: &str);
    /// The device subscribed to `filter` under its reserved topics.
    async fn subscribed(&self, device: &str, filter: &str);
}

/// A PUBLISH a device made on one of its reserved topics.
#[derive(Debug, Clone, Copy)]
pub struct ReservedPublish<'a> {
    pub device: &'a str,
    pub by: &'a Principal,
    /// The topic after `$glassbox/devices/<device>/`.
    pub rest: &'a str,
    pub payload: &'a [u8],
    pub correlation: Option<&'a [u8]>,
    pub event: EventId,
}

/// Per-device message budgets, as the gateway sees them: asked once per
/// PUBLISH a device sends (after the rate limit and the ACL), in memory,
/// without I/O, so it must be cheap. Implemented by the budgets service.
pub trait MessageBudgets: Send + Sync + 'static {
    /// Whether `device` may publish one more message now; a message
    /// admitted is counted against its budgets.
    fn admit_message(&self, device: &str) -> MessageVerdict;
}

/// The answer of [`MessageBudgets::admit_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageVerdict {
    /// Take it.
    Admit,
    /// Refuse it (`budget_exceeded`), for this reason: the budget, its
    /// use and when its window rolls over.
    Refuse(String),
}
