//! MQTT sessions and the per-device connection view behind
//! `glassbox devices inspect`.

use axum::Json;
use axum::extract::{Path, State};
use glassbox_core::{EventQuery, RecordedEvent, TypePattern};
use glassbox_gateway::broker::SessionInfo;
use serde_json::{Value, json};

use super::{ApiError, AppState};

/// Connection lifecycle event types, newest first in the timeline.
const LIFECYCLE: [&str; 6] = [
    "device.connected",
    "device.disconnected",
    "device.connection_refused",
    "device.flapping",
    "device.session_expired",
    "device.subscribe_denied",
];
/// Timeline entries returned.
const TIMELINE_MAX: usize = 20;

/// `GET /api/v1/mqtt/sessions/{client_id}`: a session the broker holds.
pub async fn session(
    State(app): State<AppState>,
    Path(client_id): Path<String>,
) -> Result<Json<SessionInfo>, ApiError> {
    app.broker.session(&client_id).map(Json).ok_or_else(|| {
        ApiError::not_found(format!(
            "no MQTT session for client id {client_id:?}: it never connected, its session ended, or it was a clean session that disconnected"
        ))
    })
}

/// `GET /api/v1/devices/{id}/inspect`: the device, its session, its last
/// message and its recent connection timeline.
pub async fn inspect(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let device = app.devices.device(&id).await?.ok_or_else(|| {
        ApiError::not_found(format!("no device {id:?}; `glassbox devices list` shows the registered ones"))
    })?;
    let store = app.pipeline.store();
    let query = |ty: &str, limit: usize| EventQuery {
        device: Some(id.clone()),
        ty: Some(TypePattern::parse(ty)),
        limit,
        ..EventQuery::default()
    };
    let mut timeline: Vec<RecordedEvent> = Vec::new();
    for ty in LIFECYCLE {
        timeline.extend(store.query(&query(ty, TIMELINE_MAX)).await?.events);
    }
    timeline.sort_by_key(|e| std::cmp::Reverse(e.event.id));
    timeline.truncate(TIMELINE_MAX);
    let timeline: Vec<Value> = timeline
        .iter()
        .map(|e| json!({ "id": e.event.id.to_string(), "type": e.event.ty, "time": e.event.time, "data": event_data(e) }))
        .collect();
    let last_message = store.query(&query("device.message", 1)).await?.events.into_iter().next();
    Ok(Json(json!({
        "device": device,
        "session": app.broker.session(&id),
        "last_message": last_message,
        "timeline": timeline,
    })))
}

fn event_data(event: &RecordedEvent) -> Value {
    serde_json::to_value(&event.event).ok().and_then(|v| v.get("data").cloned()).unwrap_or(Value::Null)
}
