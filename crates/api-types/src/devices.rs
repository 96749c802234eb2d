//! `/api/v1/devices`: the registry's answers. Generic over the device
//! record `D` (the server fills them with `glassbox_store::Device`, which
//! a client reads them into too), flattened: a device's answer is the
//! record's fields plus what the route adds.

use serde::{Deserialize, Serialize};

/// A change's answer: `answer`, with a `warning` when the change was made
/// but its record could not be written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warned<T> {
    #[serde(flatten)]
    pub answer: T,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl<T> Warned<T> {
    pub fn new(answer: T, warning: Option<String>) -> Self {
        Self { answer, warning }
    }
}

/// A device with its live state: `connected` now (the gateway holds a
/// connected session for it) and `silent` (liveness flags it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveDevice<D> {
    #[serde(flatten)]
    pub device: D,
    pub connected: bool,
    pub silent: bool,
}

/// `GET /api/v1/devices`: one page in id order; `next_after` (the last
/// device's id) continues when there are more, else null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevicePage<D> {
    pub devices: Vec<LiveDevice<D>>,
    pub next_after: Option<String>,
}

/// `POST /api/v1/devices` (201) and `POST /api/v1/devices/{id}/secret`:
/// the device and its secret, shown only in this answer. `disconnected`
/// (rotation only): whether a connection made with the old secret was closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSecret<D> {
    #[serde(flatten)]
    pub device: D,
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnected: Option<bool>,
}

/// `POST /api/v1/devices/{id}/disable` and `…/enable`: the device;
/// `disconnected` (disable only): whether its connection was closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceToggled<D> {
    #[serde(flatten)]
    pub device: D,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnected: Option<bool>,
}

/// `DELETE /api/v1/devices/{id}/queue`: how many waiting messages were
/// dropped (`cleared`), the oldest of them (`messages`), and whether the
/// gateway held a session for the device at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueCleared {
    pub device: String,
    pub cleared: usize,
    pub session: bool,
    pub messages: Vec<ClearedMessage>,
}

/// One message a clearing dropped: its event id, topic and size (topic +
/// payload bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClearedMessage {
    pub event: String,
    pub topic: String,
    pub bytes: usize,
}
