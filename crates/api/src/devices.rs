//! `/api/v1/devices`: the device registry. Each change goes through the
//! registry service (`control::Registry`) with the caller's principal, which
//! records it as an event (`device.registered`, `device.disabled`, …) on the
//! device, so registry changes are queryable and traceable like everything else.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use glassbox_api_types::{ClearedMessage, DevicePage, DeviceSecret, DeviceToggled, LiveDevice, QueueCleared, Warned};
use glassbox_store::{Device, DeviceQuery};
use serde::Deserialize;
use serde_json::Value;

use super::auth::Caller;
use super::body::{JsonBody, Shape};
use super::params::{Parameters, Path, Query};
use super::{ApiError, AppState};
use glassbox_control::{Changed, RegistryError, Toggled, WithSecret};

/// Most devices per list page.
const PAGE_MAX: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDevice {
    id: String,
}

impl Shape for CreateDevice {
    const EXAMPLE: &'static str = r#"{"id": "thermo-1"}"#;
}

/// `POST /api/v1/devices`: 201 with the device and its secret, shown only here.
pub async fn create(
    State(app): State<AppState>,
    Caller(by): Caller,
    JsonBody(CreateDevice { id }): JsonBody<CreateDevice>,
) -> Result<(StatusCode, Json<Warned<DeviceSecret<Device>>>), ApiError> {
    let created = app.registry.create(&id, &by).await.map_err(error)?;
    Ok((StatusCode::CREATED, Json(with_secret(created))))
}

fn error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::InvalidId(m) => ApiError::bad_request("invalid_id", m),
        RegistryError::InvalidMetadata(m) => ApiError::bad_request("invalid_metadata", m),
        RegistryError::Unknown(_) => ApiError::not_found(e.to_string()),
        RegistryError::Store(e) => e.into(),
    }
}

/// The device, its new secret and whether a connection was closed.
fn with_secret(changed: Changed<WithSecret>) -> Warned<DeviceSecret<Device>> {
    let WithSecret { device, secret, disconnected } = changed.value;
    Warned::new(DeviceSecret { device, secret, disconnected }, changed.unrecorded)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    after: Option<String>,
    limit: Option<usize>,
    /// `key=value`: only devices with this tag.
    tag: Option<String>,
    group: Option<String>,
    /// Only devices of this owner.
    owner: Option<String>,
    /// Only devices connected (true) or not (false) now.
    connected: Option<bool>,
    /// Only devices flagged silent (true) or not (false).
    silent: Option<bool>,
}

impl Parameters for ListParams {
    fn accepts(name: &str) -> Option<String> {
        match name {
            "limit" => Some(format!("an integer from 1 to {PAGE_MAX}, and follow next_after for more")),
            "connected" | "silent" => Some("true or false".into()),
            _ => None,
        }
    }
}

/// Registry rows read per step while filtering.
const SCAN_STEP: usize = 1000;

/// `GET /api/v1/devices`: in id order, filtered; `next_after` continues.
/// Each device carries its live state: `connected` and `silent`.
pub async fn list(
    State(app): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<DevicePage<Device>>, ApiError> {
    let limit = params.limit.unwrap_or(100).clamp(1, PAGE_MAX);
    let tag = params.tag.as_deref().map(tag_filter).transpose()?;
    // What is stored is filtered by the store; live state (connected,
    // silent) here, page by page.
    let mut query =
        DeviceQuery { after: params.after, limit: SCAN_STEP, tag, group: params.group, owner: params.owner };
    let mut found = Vec::new();
    let mut next_after = None;
    'scan: loop {
        let batch = app.devices.devices(&query).await?;
        let exhausted = batch.len() < SCAN_STEP;
        for device in batch {
            query.after = Some(device.id.clone());
            let view = with_live_state(&app, device);
            let keep =
                params.connected.is_none_or(|c| view.connected == c) && params.silent.is_none_or(|s| view.silent == s);
            if keep {
                if found.len() == limit {
                    next_after = found.last().map(|d: &LiveDevice<Device>| d.device.id.clone());
                    break 'scan;
                }
                found.push(view);
            }
        }
        if exhausted {
            break;
        }
    }
    Ok(Json(DevicePage { devices: found, next_after }))
}

/// A `tag` parameter, `key=value`.
fn tag_filter(pair: &str) -> Result<(String, String), ApiError> {
    let (key, value) = pair
        .split_once('=')
        .ok_or_else(|| ApiError::bad_request("invalid_parameter", format!("tag {pair:?} must be key=value")))?;
    Ok((key.to_string(), value.to_string()))
}

/// The device with `connected` and `silent` from the gateway and liveness.
fn with_live_state(app: &AppState, device: Device) -> LiveDevice<Device> {
    let connected = app.broker.session(&device.id).is_some_and(|s| s.connected);
    let silent = app.control.liveness(&device.id).is_some_and(|l| l.silent);
    LiveDevice { device, connected, silent }
}

/// `PATCH /api/v1/devices/{id}`: metadata. Keys present are changed, keys
/// absent kept; `null` clears. `{"tags": {"site": "north", "old": null},
/// "group": "pumps", "owner": "acme", "attributes": {"fw": "1.2"}, "cadence": "60s"}`.
pub async fn update(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<String>,
    JsonBody(DevicePatch(patch)): JsonBody<DevicePatch>,
) -> Result<Json<Warned<LiveDevice<Device>>>, ApiError> {
    let updated = app.registry.update(&id, &patch, &by).await.map_err(error)?;
    Ok(Json(Warned::new(with_live_state(&app, updated.value), updated.unrecorded)))
}

/// A `PATCH` body: metadata keys to change.
#[derive(serde::Deserialize)]
#[serde(transparent)]
pub struct DevicePatch(serde_json::Map<String, Value>);

impl Shape for DevicePatch {
    const EXAMPLE: &'static str = r#"{"tags": {"site": "north"}, "group": "pumps", "cadence": "60s"}"#;
}

/// `GET /api/v1/devices/{id}`: the device with its live state, as listed.
pub async fn get(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<LiveDevice<Device>>, ApiError> {
    let device = app.devices.device(&id).await?.ok_or_else(|| unknown(&id))?;
    Ok(Json(with_live_state(&app, device)))
}

fn unknown(id: &str) -> ApiError {
    error(RegistryError::Unknown(id.to_string()))
}

/// `POST /api/v1/devices/{id}/disable`: refuses its future connections.
pub async fn disable(state: State<AppState>, by: Caller, id: Path<String>) -> Result<Json<Toggle>, ApiError> {
    set_disabled(state, by, id, true).await
}

/// `POST /api/v1/devices/{id}/enable`.
pub async fn enable(state: State<AppState>, by: Caller, id: Path<String>) -> Result<Json<Toggle>, ApiError> {
    set_disabled(state, by, id, false).await
}

/// A disable's or enable's answer.
type Toggle = Warned<DeviceToggled<Device>>;

async fn set_disabled(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<String>,
    disabled: bool,
) -> Result<Json<Toggle>, ApiError> {
    let changed = app.registry.set_disabled(&id, disabled, &by).await.map_err(error)?;
    let Toggled { device, disconnected } = changed.value;
    Ok(Json(Warned::new(DeviceToggled { device, disconnected }, changed.unrecorded)))
}

/// `POST /api/v1/devices/{id}/secret`: a new secret, shown only here; the
/// old one stops working, and a connection made with it is closed.
pub async fn rotate_secret(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<String>,
) -> Result<Json<Warned<DeviceSecret<Device>>>, ApiError> {
    let rotated = app.registry.rotate_secret(&id, &by).await.map_err(error)?;
    Ok(Json(with_secret(rotated)))
}

/// `DELETE /api/v1/devices/{id}`: 204; its recorded events stay. (A 204
/// has no body for a warning: an unrecorded delete is in the server log.)
pub async fn delete(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.registry.delete(&id, &by).await.map_err(error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/devices/{id}/queue`: drops the messages waiting in the
/// device's session queue, each recorded as dropped with reason `cleared`,
/// and records the clearing itself (`device.queue_cleared`). The answer
/// names the oldest of them (`messages`, at most `CLEARED_LISTED_MAX`).
pub async fn clear_queue(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<String>,
) -> Result<Json<Warned<QueueCleared>>, ApiError> {
    let changed = app.registry.clear_queue(&id, &by).await.map_err(error)?;
    let session = changed.value.is_some();
    let (cleared, messages) = changed.value.map_or((0, Vec::new()), |c| (c.count, c.messages));
    let messages =
        messages.into_iter().map(|m| ClearedMessage { event: m.event, topic: m.topic, bytes: m.bytes }).collect();
    Ok(Json(Warned::new(QueueCleared { device: id, cleared, session, messages }, changed.unrecorded)))
}
