//! What a refused MQTT PUBLISH is recorded as: not a `device.message` (which
//! triggers functions, feeds metrics and the control plane) but an
//! [`PUBLISH_REFUSED`] event carrying this payload, without the message's
//! payload, plus a `dropped` state with the reason.

use serde::{Deserialize, Serialize};

use crate::DropReason;

/// The event type of a refused PUBLISH (or will).
pub const PUBLISH_REFUSED: &str = "mqtt.publish_refused";

/// The data of a [`PUBLISH_REFUSED`] event. Shared by the gateway, which
/// writes it, and every reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRefused {
    /// The topic the client published to.
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    /// The payload's size; the payload itself is not kept.
    pub bytes: usize,
    pub reason: DropReason,
    /// Why, in words: the rule or limit that refused it.
    pub detail: String,
    /// Refusals for the same reason on this connection since the last one
    /// recorded, counted but not recorded one by one (rate-limited floods).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unrecorded: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The data of a `device.connection_refused` / `client.connection_refused`
/// event: the CONNECTs one peer had refused in one interval, counted.
/// Shared by the gateway, which writes it, and every reader; a reader takes
/// events recorded before the count existed (one refusal, its `reason`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionsRefused {
    /// The peer address (IPv6: its /64), or `other peers` past the bound.
    pub peer: String,
    /// Refusals this event stands for.
    pub count: u64,
    /// The most frequent reason among them.
    pub reason: String,
    /// How many for each reason (a disconnect reason's name).
    pub reasons: std::collections::BTreeMap<String, u64>,
    /// A few of the names claimed, each cut to 128 bytes.
    pub claimed: Vec<String>,
    /// The first refusal's detail, cut to 256 bytes.
    pub detail: String,
    /// Refused at once during a login back-off, credentials not checked.
    pub backoff: u64,
    pub interval_seconds: f64,
}
