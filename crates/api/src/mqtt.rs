//! MQTT sessions, the per-device connection view behind `glassbox devices
//! inspect`, and device shadows.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use glassbox_api_types::{DeviceInspection, RetainedClearedAnswer, RetainedList, RetainedView, TimelineEntry, Warned};
use glassbox_control::{BadFilter, LivenessView, RETAINED_LIST_MAX};
use glassbox_core::{
    DEVICE_ACTIVE, DEVICE_CONNECTED, DEVICE_CONNECTION_REFUSED, DEVICE_DISCONNECTED, DEVICE_FLAPPING, DEVICE_MESSAGE,
    DEVICE_SESSION_EXPIRED, DEVICE_SILENT, DEVICE_SUBSCRIBE_DENIED, EventQuery, PUBLISH_REFUSED, RecordedEvent,
    ShadowDocument, TypePattern, minted_at,
};
use glassbox_devices::{ShadowError, ShadowUpdate};
use glassbox_gateway::broker::SessionInfo;
use glassbox_link::RetainedMessage;
use glassbox_store::Device;
use serde::Deserialize;
use serde_json::Value;

use super::auth::Caller;
use super::body::Body;
use super::params::{Parameters, Path, Query};
use super::{ApiError, AppState};
use glassbox_control::UpdateError;

/// Connection lifecycle event types, newest first in the timeline.
const LIFECYCLE: [&str; 8] = [
    DEVICE_SILENT,
    DEVICE_ACTIVE,
    DEVICE_CONNECTED,
    DEVICE_DISCONNECTED,
    DEVICE_CONNECTION_REFUSED,
    DEVICE_FLAPPING,
    DEVICE_SESSION_EXPIRED,
    DEVICE_SUBSCRIBE_DENIED,
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

/// Which retained messages: a topic filter (`#`: all) and how many at most.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetainedParams {
    filter: Option<String>,
    limit: Option<usize>,
}

impl Parameters for RetainedParams {
    fn accepts(name: &str) -> Option<String> {
        (name == "limit").then(|| format!("an integer from 1 to {RETAINED_LIST_MAX}"))
    }
}

/// Retained messages listed when no `limit` is given.
const RETAINED_LIMIT_DEFAULT: usize = 1_000;

fn retained_view(message: &RetainedMessage) -> RetainedView {
    RetainedView {
        topic: message.topic.clone(),
        bytes: message.bytes,
        event_id: message.event.to_string(),
        set_at: minted_at(message.event),
        set_by: message.publisher.clone(),
    }
}

fn bad_filter(e: BadFilter) -> ApiError {
    ApiError::bad_request("invalid_filter", e.to_string())
}

/// `GET /api/v1/mqtt/retained?filter=&limit=`: the retained messages on
/// topics matching `filter` (default `#`), by topic; never their payloads.
pub async fn retained(
    State(app): State<AppState>,
    Query(params): Query<RetainedParams>,
) -> Result<Json<RetainedList>, ApiError> {
    let filter = params.filter.unwrap_or_else(|| "#".into());
    let limit = params.limit.unwrap_or(RETAINED_LIMIT_DEFAULT).clamp(1, RETAINED_LIST_MAX);
    let found = app.retained.list(&filter, limit + 1).map_err(bad_filter)?;
    let truncated = found.len() > limit;
    let retained = found.iter().take(limit).map(retained_view).collect();
    Ok(Json(RetainedList { filter, retained, truncated }))
}

/// `DELETE /api/v1/mqtt/retained?filter=`: removes the retained messages on
/// topics matching `filter` (required: `#` clears all), recorded as
/// `mqtt.retained_cleared` with the caller.
pub async fn clear_retained(
    State(app): State<AppState>,
    Caller(by): Caller,
    Query(params): Query<RetainedParams>,
) -> Result<Json<Warned<RetainedClearedAnswer>>, ApiError> {
    let filter = params.filter.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_filter",
            "give the topics to clear as ?filter= (e.g. devices/+/status; # clears all)",
        )
    })?;
    let changed = app.retained.clear(&filter, &by).await.map_err(bad_filter)?;
    let cleared = changed.value.iter().map(retained_view).collect();
    Ok(Json(Warned::new(RetainedClearedAnswer { filter, cleared }, changed.unrecorded)))
}

/// `GET /api/v1/devices/{id}/inspect`: the device, its session, its last
/// message, its last refused publish and its recent connection timeline.
/// What `inspect` answers, as the server fills it.
type Inspection = DeviceInspection<Device, SessionInfo, LivenessView, ShadowDocument, RecordedEvent>;

pub async fn inspect(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Inspection>, ApiError> {
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
    let timeline = timeline.iter().map(timeline_entry).collect();
    let last_message = store.query(&query(DEVICE_MESSAGE, 1)).await?.events.into_iter().next();
    // A refused publish is no message the platform accepted: shown on its own.
    let last_refused = store.query(&query(PUBLISH_REFUSED, 1)).await?.events.into_iter().next();
    let shadow = app.control.shadow(&id).await?.map(|s| s.document(&id));
    let open_commands = match app.control.commands(&id, None, 1000).await {
        Ok(commands) => commands.iter().filter(|c| !c.state.is_final()).count(),
        Err(_) => 0,
    };
    Ok(Json(DeviceInspection {
        device,
        session: app.broker.session(&id),
        liveness: app.control.liveness(&id),
        open_commands,
        shadow,
        last_message,
        last_refused_publish: last_refused,
        timeline,
    }))
}

fn timeline_entry(e: &RecordedEvent) -> TimelineEntry {
    TimelineEntry { id: e.event.id.to_string(), ty: e.event.ty.clone(), time: e.event.time, data: event_data(e) }
}

fn event_data(event: &RecordedEvent) -> Value {
    serde_json::to_value(&event.event).ok().and_then(|v| v.get("data").cloned()).unwrap_or(Value::Null)
}

/// `GET /api/v1/devices/{id}/shadow`: desired, reported, delta, version.
pub async fn shadow(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<ShadowDocument>, ApiError> {
    let shadow = app.control.shadow(&id).await?.ok_or_else(|| unknown_device(&id))?;
    Ok(Json(shadow.document(&id)))
}

/// `POST /api/v1/devices/{id}/shadow` with `{"state": {"desired": {…}}, "version": N}`.
pub async fn update_shadow(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<ShadowDocument>, ApiError> {
    let update = ShadowUpdate::parse(&body).map_err(shadow_error)?;
    match app.control.update_shadow(&id, &update, &by, None).await {
        Ok(shadow) => Ok(Json(shadow.document(&id))),
        Err(UpdateError::Shadow(e)) => Err(shadow_error(e)),
        Err(UpdateError::UnknownDevice(_)) => Err(unknown_device(&id)),
        Err(UpdateError::Store(e)) => Err(e.into()),
    }
}

fn unknown_device(id: &str) -> ApiError {
    ApiError::not_found(format!("no device {id:?}; `glassbox devices list` shows the registered ones"))
}

fn shadow_error(e: ShadowError) -> ApiError {
    let (status, code) = match &e {
        ShadowError::VersionConflict { .. } => (StatusCode::CONFLICT, "version_conflict"),
        ShadowError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "shadow_too_large"),
        ShadowError::TooDeep { .. } => (StatusCode::BAD_REQUEST, "shadow_too_deep"),
        ShadowError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_shadow_update"),
    };
    ApiError::new(status, code, e.to_string())
}
