//! What a refused MQTT PUBLISH is recorded as: not a `device.message` (which
//! triggers functions, feeds metrics and the control plane) but an
//! [`PUBLISH_REFUSED`] event carrying this payload, without the message's
//! payload, plus a `dropped` state with the reason.

use serde::{Deserialize, Serialize};

use super::Payload;
use crate::{DropReason, Principal};

/// The event type of a refused PUBLISH (or will).
pub const PUBLISH_REFUSED: &str = "mqtt.publish_refused";

/// The data of a [`PUBLISH_REFUSED`] event, recorded by the gateway when it
/// refuses a PUBLISH or a will (ACL, size, rate); read by metrics (`drops`)
/// and `devices inspect`.
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

impl Payload for PublishRefused {
    const TYPE: &'static str = PUBLISH_REFUSED;
}

/// The event type of an operator's clearing of retained messages.
pub const RETAINED_CLEARED: &str = "mqtt.retained_cleared";

/// The data of a [`RETAINED_CLEARED`] event: which retained messages were
/// removed, by whom; recorded even when the filter matched none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetainedCleared {
    /// The topic filter given.
    pub filter: String,
    pub principal: Principal,
    /// The topics whose retained message was removed, by topic.
    pub topics: Vec<String>,
    /// The events those messages were recorded as, in the same order.
    pub events: Vec<String>,
}

impl Payload for RetainedCleared {
    const TYPE: &'static str = RETAINED_CLEARED;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_publish_round_trips_as_documented() {
        let json = serde_json::json!({
            "topic": "devices/t-2/telemetry", "qos": 1, "retain": false, "bytes": 42, "reason": "acl_denied",
            "detail": "devices/t-2/telemetry is not yours",
        });
        let refused: PublishRefused = serde_json::from_value(json.clone()).unwrap();
        assert_eq!((refused.reason, refused.unrecorded), (DropReason::AclDenied, 0));
        assert_eq!(serde_json::to_value(&refused).unwrap(), json, "no unrecorded count when there is none");
        let flood = PublishRefused { unrecorded: 9, ..refused };
        assert_eq!(serde_json::to_value(flood).unwrap()["unrecorded"], 9);
    }
}
