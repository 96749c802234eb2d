//! What the control plane tells a device about its shadow, on
//! `$glassbox/devices/<id>/shadow/…`: the delta, and the answers to its
//! `update` and `get` requests. Each message is also recorded as an event
//! whose data is the message itself, so the types here are both the wire
//! bytes a device parses (keys as AWS IoT's device shadows name them:
//! `clientToken`) and the payloads every reader of the recorded events
//! (diagnosis, `trace`, the CLI's simulated firmware, tests) reads.
//!
//! They live here rather than beside the merge model in `glassbox-devices`
//! because they are platform events like any other: their type names and
//! payloads belong with the rest, where a reader finds them without
//! depending on how shadows merge. `glassbox-devices` builds a
//! [`ShadowDocument`] from its `Shadow`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Payload;
use crate::ShadowState;

/// Desired state the device has not reported, pushed on `shadow/delta`
/// (data: [`ShadowDelta`]).
pub const DEVICE_SHADOW_DELTA: &str = "device.shadow.delta";
/// An answer on `shadow/update/accepted` or `shadow/get/accepted` (data: [`ShadowAccepted`]).
pub const DEVICE_SHADOW_ACCEPTED: &str = "device.shadow.accepted";
/// An answer on `shadow/update/rejected` or `shadow/get/rejected` (data: [`ShadowRejected`]).
pub const DEVICE_SHADOW_REJECTED: &str = "device.shadow.rejected";

/// The message on `shadow/delta`: what `desired` asks that `reported` lacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowDelta {
    /// The delta: desired keys whose reported value differs or is missing.
    pub state: Map<String, Value>,
    /// The shadow's version it was computed at.
    pub version: u64,
    pub timestamp: DateTime<Utc>,
}

/// A whole shadow as a device or client sees it (`shadow/get/accepted`,
/// the API's shadow answer, a function's `shadow-get`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowDocument {
    pub device: String,
    pub version: u64,
    pub desired: Map<String, Value>,
    pub reported: Map<String, Value>,
    /// Desired state not reported yet.
    pub delta: Map<String, Value>,
    pub metadata: ShadowMetadata,
    /// When it last changed; none for a shadow never set.
    pub updated_at: Option<DateTime<Utc>>,
}

/// `desired` and `reported` mirrored, each leaf `{"timestamp": …}`: when
/// that value last changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowMetadata {
    pub desired: Map<String, Value>,
    pub reported: Map<String, Value>,
}

/// The answer on `shadow/update/accepted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateAccepted {
    /// The update as the device sent it.
    pub state: ShadowState,
    /// The shadow's version after the update.
    pub version: u64,
    /// The device's `clientToken`, echoed (null when it sent none).
    #[serde(rename = "clientToken")]
    pub client_token: Option<String>,
    pub timestamp: DateTime<Utc>,
}

/// The data of a [`DEVICE_SHADOW_ACCEPTED`] event: an accepted update, or
/// the shadow a `get` asked for. The message on the wire is the variant
/// alone, without a tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ShadowAccepted {
    Update(UpdateAccepted),
    Get(ShadowDocument),
}

/// The answer on `shadow/get/rejected`: the shadow could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetRejected {
    /// An HTTP-like status: 503 when the store is unavailable.
    pub code: u16,
    pub message: String,
}

/// The answer on `shadow/update/rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRejected {
    /// An HTTP-like status: 400 invalid, 404 unknown device, 409 stale
    /// version, 413 too large, 503 store unavailable.
    pub code: u16,
    /// What was wrong, and how to send it right.
    pub message: String,
    /// The device's `clientToken`, echoed (null when it sent none or the
    /// update could not be read).
    #[serde(rename = "clientToken")]
    pub client_token: Option<String>,
}

/// The data of a [`DEVICE_SHADOW_REJECTED`] event: a refused `get` or
/// `update`. Untagged on the wire; a `get`'s refusal is the one without a
/// `clientToken` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ShadowRejected {
    Get(GetRejected),
    Update(UpdateRejected),
}

impl ShadowRejected {
    /// The status code, whichever request it refused.
    pub fn code(&self) -> u16 {
        match self {
            Self::Get(r) => r.code,
            Self::Update(r) => r.code,
        }
    }

    /// What was wrong, whichever request it refused.
    pub fn message(&self) -> &str {
        match self {
            Self::Get(r) => &r.message,
            Self::Update(r) => &r.message,
        }
    }
}

impl Payload for ShadowDelta {
    const TYPE: &'static str = DEVICE_SHADOW_DELTA;
}

impl Payload for ShadowAccepted {
    const TYPE: &'static str = DEVICE_SHADOW_ACCEPTED;
}

impl Payload for ShadowRejected {
    const TYPE: &'static str = DEVICE_SHADOW_REJECTED;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-05T07:00:00.5Z").unwrap().to_utc()
    }

    #[test]
    fn shadow_answers_keep_the_aws_iot_keys() {
        let accepted = ShadowAccepted::Update(UpdateAccepted {
            state: ShadowState { desired: None, reported: Some(json!({"mode": "eco"})) },
            version: 2,
            client_token: Some("t1".into()),
            timestamp: at(),
        });
        let wire = json!({
            "state": {"desired": null, "reported": {"mode": "eco"}}, "version": 2, "clientToken": "t1",
            "timestamp": "2026-12-05T07:00:00.500Z",
        });
        assert_eq!(serde_json::to_value(&accepted).unwrap(), wire);
        assert_eq!(serde_json::from_value::<ShadowAccepted>(wire).unwrap(), accepted);
        let delta =
            ShadowDelta { state: json!({"fan": true}).as_object().unwrap().clone(), version: 3, timestamp: at() };
        let wire = json!({"state": {"fan": true}, "version": 3, "timestamp": "2026-12-05T07:00:00.500Z"});
        assert_eq!(serde_json::to_value(&delta).unwrap(), wire);
        assert_eq!(serde_json::from_value::<ShadowDelta>(wire).unwrap(), delta);
    }

    #[test]
    fn a_get_answer_reads_back_as_the_document_it_was() {
        let document = ShadowDocument {
            device: "th-1".into(),
            version: 1,
            desired: json!({"a": 1}).as_object().unwrap().clone(),
            reported: Map::new(),
            delta: json!({"a": 1}).as_object().unwrap().clone(),
            metadata: ShadowMetadata::default(),
            updated_at: Some(at()),
        };
        let wire = serde_json::to_value(ShadowAccepted::Get(document.clone())).unwrap();
        assert_eq!(wire["device"], "th-1");
        assert_eq!(serde_json::from_value::<ShadowAccepted>(wire).unwrap(), ShadowAccepted::Get(document));
    }

    #[test]
    fn a_refusal_says_which_request_it_refused_by_its_keys() {
        let get = json!({"code": 503, "message": "store unavailable"});
        let read: ShadowRejected = serde_json::from_value(get.clone()).unwrap();
        assert!(matches!(&read, ShadowRejected::Get(r) if r.code == 503));
        assert_eq!(serde_json::to_value(&read).unwrap(), get);
        let update = json!({"code": 409, "message": "stale", "clientToken": null});
        let read: ShadowRejected = serde_json::from_value(update.clone()).unwrap();
        assert_eq!((read.code(), read.message()), (409, "stale"));
        assert!(matches!(read, ShadowRejected::Update(UpdateRejected { client_token: None, .. })));
        assert_eq!(serde_json::to_value(&read).unwrap(), update, "an update's refusal keeps its null clientToken");
    }
}
