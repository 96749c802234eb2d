//! `GET /api/v1/devices/{id}/inspect`: one device's connection view, whole;
//! `/api/v1/mqtt/retained`: the retained messages, listed and cleared.
//! Generic over the parts other crates own the shape of: the registry's
//! device record `D`, the gateway's session `S`, liveness's view `L`, the
//! shadow `H` and a recorded event `E` (the server fills them with its
//! types; a client reads each into its own type or JSON).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The device, its session, its last message, its last refused publish and
/// its recent connection timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInspection<D, S, L, H, E> {
    pub device: D,
    /// Null when the gateway holds no session for it.
    pub session: Option<S>,
    /// Null before liveness has heard of it.
    pub liveness: Option<L>,
    /// Commands not yet finished.
    pub open_commands: usize,
    /// Null when it has none.
    pub shadow: Option<H>,
    pub last_message: Option<E>,
    /// A publish the gateway refused is no message the platform accepted:
    /// shown on its own.
    pub last_refused_publish: Option<E>,
    /// Connection lifecycle events, newest first.
    pub timeline: Vec<TimelineEntry>,
}

/// One connection lifecycle event (`device.connected`, `device.silent`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub id: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub time: DateTime<Utc>,
    /// The event's data: its typed payload as JSON.
    pub data: Value,
}

/// A retained message, as listed: never its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetainedView {
    pub topic: String,
    /// Payload bytes.
    pub bytes: usize,
    /// The event it was recorded as: `glassbox events get` shows it whole.
    pub event_id: String,
    /// When it was set (its event's time).
    pub set_at: DateTime<Utc>,
    /// The client that set it; null when it was restored at start (its
    /// event names the publisher).
    pub set_by: Option<String>,
}

/// `GET /api/v1/mqtt/retained?filter=`: the retained messages on topics
/// matching the filter, by topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetainedList {
    pub filter: String,
    pub retained: Vec<RetainedView>,
    /// Whether more matched than the `limit` listed.
    pub truncated: bool,
}

/// `DELETE /api/v1/mqtt/retained?filter=`: what was removed, and the
/// `mqtt.retained_cleared` event that records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetainedClearedAnswer {
    pub filter: String,
    pub cleared: Vec<RetainedView>,
}
