//! `/api/v1/devices`: the device registry. Each change goes through the
//! registry service (`control::Registry`) with the caller's principal, which
//! records it as an event (`device.registered`, `device.disabled`, …) on the
//! device, so registry changes are queryable and traceable like everything else.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use glassbox_store::Device;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::body::{JsonBody, Shape};
use super::params::{Parameters, Path, Query};
use super::{ApiError, AppState};
use glassbox_control::{Changed, RegistryError, WithSecret};

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
) -> Result<(StatusCode, Json<Value>), ApiError> {
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

/// A change's answer: `body`, with a `warning` if its record was not written.
fn answer(mut body: Value, unrecorded: Option<String>) -> Value {
    if let Some(warning) = unrecorded {
        body["warning"] = json!(warning);
    }
    body
}

/// The device, its new secret and whether a connection was closed.
fn with_secret(changed: Changed<WithSecret>) -> Value {
    let WithSecret { device, secret, disconnected } = changed.value;
    let mut body = json!(device);
    body["secret"] = json!(secret);
    if let Some(disconnected) = disconnected {
        body["disconnected"] = json!(disconnected);
    }
    answer(body, changed.unrecorded)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    after: Option<String>,
    limit: Option<usize>,
    /// `key=value`: only devices with this tag.
    tag: Option<String>,
    group: Option<String>,
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
pub async fn list(State(app): State<AppState>, Query(params): Query<ListParams>) -> Result<Json<Value>, ApiError> {
    let limit = params.limit.unwrap_or(100).clamp(1, PAGE_MAX);
    let tag = match params.tag.as_deref() {
        None => None,
        Some(pair) => Some(
            pair.split_once('=')
                .ok_or_else(|| ApiError::bad_request("invalid_parameter", format!("tag {pair:?} must be key=value")))?,
        ),
    };
    let mut found = Vec::new();
    let mut after = params.after.clone();
    let mut next_after = None;
    'scan: loop {
        let batch = app.devices.devices(after.as_deref(), SCAN_STEP).await?;
        let exhausted = batch.len() < SCAN_STEP;
        for device in batch {
            after = Some(device.id.clone());
            let view = with_live_state(&app, &device);
            let keep = tag.is_none_or(|(k, v)| device.meta.tags.get(k).is_some_and(|t| t == v))
                && params.group.as_ref().is_none_or(|g| device.meta.group.as_ref() == Some(g))
                && params.connected.is_none_or(|c| view["connected"] == c)
                && params.silent.is_none_or(|s| view["silent"] == s);
            if keep {
                if found.len() == limit {
                    next_after = found.last().and_then(|d: &Value| d["id"].as_str().map(str::to_string));
                    break 'scan;
                }
                found.push(view);
            }
        }
        if exhausted {
            break;
        }
    }
    Ok(Json(json!({ "devices": found, "next_after": next_after })))
}

/// The device with `connected` and `silent` from the gateway and liveness.
fn with_live_state(app: &AppState, device: &Device) -> Value {
    let mut view = json!(device);
    view["connected"] = json!(app.broker.session(&device.id).is_some_and(|s| s.connected));
    view["silent"] = json!(app.control.liveness(&device.id).is_some_and(|l| l.silent));
    view
}

/// `PATCH /api/v1/devices/{id}`: metadata. Keys present are changed, keys
/// absent kept; `null` clears. `{"tags": {"site": "north", "old": null},
/// "group": "pumps", "owner": "acme", "attributes": {"fw": "1.2"}, "cadence": "60s"}`.
pub async fn update(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<String>,
    JsonBody(DevicePatch(patch)): JsonBody<DevicePatch>,
) -> Result<Json<Value>, ApiError> {
    let updated = app.registry.update(&id, &patch, &by).await.map_err(error)?;
    Ok(Json(answer(with_live_state(&app, &updated.value), updated.unrecorded)))
}

/// A `PATCH` body: metadata keys to change.
#[derive(serde::Deserialize)]
#[serde(transparent)]
pub struct DevicePatch(serde_json::Map<String, Value>);

impl Shape for DevicePatch {
    const EXAMPLE: &'static str = r#"{"tags": {"site": "north"}, "group": "pumps", "cadence": "60s"}"#;
}

/// `GET /api/v1/devices/{id}`.
pub async fn get(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Device>, ApiError> {
    app.devices.device(&id).await?.map(Json).ok_or_else(|| unknown(&id))
}

fn unknown(id: &str) -> ApiError {
    error(RegistryError::Unknown(id.to_string()))
}

/// `POST /api/v1/devices/{id}/disable`: refuses its future connections.
pub async fn disable(state: State<AppState>, by: Caller, id: Path<String>) -> Result<Json<Value>, ApiError> {
    set_disabled(state, by, id, true).await
}

/// `POST /api/v1/devices/{id}/enable`.
pub async fn enable(state: State<AppState>, by: Caller, id: Path<String>) -> Result<Json<Value>, ApiError> {
    set_disabled(state, by, id, false).await
}

async fn set_disabled(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<String>,
    disabled: bool,
) -> Result<Json<Value>, ApiError> {
    let changed = app.registry.set_disabled(&id, disabled, &by).await.map_err(error)?;
    let mut body = json!(changed.value.device);
    if let Some(disconnected) = changed.value.disconnected {
        body["disconnected"] = json!(disconnected);
    }
    Ok(Json(answer(body, changed.unrecorded)))
}

/// `POST /api/v1/devices/{id}/secret`: a new secret, shown only here; the
/// old one stops working, and a connection made with it is closed.
pub async fn rotate_secret(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
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
) -> Result<Json<Value>, ApiError> {
    let changed = app.registry.clear_queue(&id, &by).await.map_err(error)?;
    let session = changed.value.is_some();
    let (count, messages) = changed.value.map_or((0, Vec::new()), |c| (c.count, c.messages));
    let body = json!({ "device": id, "cleared": count, "session": session, "messages": messages });
    Ok(Json(answer(body, changed.unrecorded)))
}
