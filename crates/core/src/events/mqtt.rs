//! What a refused MQTT PUBLISH is recorded as: not a `device.message` (which
//! triggers functions, feeds metrics and the control plane) but an
//! [`PUBLISH_REFUSED`] event carrying this payload, without the message's
//! payload, plus a `dropped` state with the reason.

use serde::{Deserialize, Serialize};

use super::Payload;
use crate::DropReason;

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
