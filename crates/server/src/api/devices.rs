//! `/api/v1/devices`: the device registry. Each change is also recorded as
//! an event (`device.registered`, `device.disabled`, …) on the device, so
//! registry changes are queryable and traceable like everything else.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use glassbox_core::{DisconnectReason, Draft, validate_device_id};
use glassbox_store::{Device, DeviceMeta};

use glassbox_store::devices::new_secret;
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::{JsonBody, Shape};
use super::params::{Parameters, Path, Query};
use super::{ApiError, AppState};

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
    JsonBody(CreateDevice { id }): JsonBody<CreateDevice>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    validate_device_id(&id).map_err(|e| ApiError::bad_request("invalid_id", e))?;
    let (secret, hash) = new_secret();
    let device = app.devices.create_device(&id, hash).await?;
    let mut body = json!(device);
    body["secret"] = json!(secret);
    note_change(&app, &id, "device.registered", &mut body).await;
    Ok((StatusCode::CREATED, Json(body)))
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
    Path(id): Path<String>,
    JsonBody(DevicePatch(patch)): JsonBody<DevicePatch>,
) -> Result<Json<Value>, ApiError> {
    let device = app.devices.device(&id).await?.ok_or_else(|| unknown(&id))?;
    let meta = patched(device.meta, &patch).map_err(|m| ApiError::bad_request("invalid_metadata", m))?;
    let cadence = meta.cadence_seconds;
    let device = app.devices.set_device_meta(&id, meta).await?.ok_or_else(|| unknown(&id))?;
    app.control.declare_cadence(&id, cadence);
    let mut body = with_live_state(&app, &device);
    note_change(&app, &id, "device.updated", &mut body).await;
    Ok(Json(body))
}

/// A `PATCH` body: metadata keys to change.
#[derive(serde::Deserialize)]
#[serde(transparent)]
pub struct DevicePatch(serde_json::Map<String, Value>);

impl Shape for DevicePatch {
    const EXAMPLE: &'static str = r#"{"tags": {"site": "north"}, "group": "pumps", "cadence": "60s"}"#;
}

fn patched(mut meta: DeviceMeta, patch: &serde_json::Map<String, Value>) -> Result<DeviceMeta, String> {
    let text = |key: &str, v: &Value, max: usize| -> Result<Option<String>, String> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) if !s.is_empty() && s.len() <= max => Ok(Some(s.clone())),
            _ => Err(format!("{key} must be a string of 1-{max} characters, or null to clear it")),
        }
    };
    for (key, value) in patch {
        match key.as_str() {
            "group" => meta.group = text("group", value, 128)?,
            "owner" => meta.owner = text("owner", value, 256)?,
            "tags" => {
                let tags = value.as_object().ok_or("tags must be an object of key: value (null removes)")?;
                for (k, v) in tags {
                    match text(&format!("tag {k:?}"), v, 256)? {
                        _ if k.is_empty() || k.len() > 64 => {
                            return Err(format!("tag key {k:?} must be 1-64 characters"));
                        }
                        Some(v) => drop(meta.tags.insert(k.clone(), v)),
                        None => drop(meta.tags.remove(k)),
                    }
                }
            }
            "attributes" => {
                let attributes = value.as_object().ok_or("attributes must be an object (null values remove)")?;
                for (k, v) in attributes {
                    match v {
                        Value::Null => drop(meta.attributes.remove(k)),
                        v => drop(meta.attributes.insert(k.clone(), v.clone())),
                    }
                }
            }
            "cadence" => {
                meta.cadence_seconds = match value {
                    Value::Null => None,
                    Value::String(s) => {
                        let d =
                            humantime::parse_duration(s).map_err(|e| format!("cadence {s:?}: {e}; e.g. 30s, 5m"))?;
                        if d.as_secs() == 0 || d.as_secs() > 7 * 24 * 3600 {
                            return Err("cadence must be between 1s and 7d".into());
                        }
                        Some(d.as_secs())
                    }
                    _ => return Err("cadence must be a duration like \"60s\", or null".into()),
                }
            }
            other => {
                return Err(format!("unknown field {other:?}: use tags, group, owner, attributes or cadence"));
            }
        }
    }
    Ok(meta)
}

/// `GET /api/v1/devices/{id}`.
pub async fn get(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Device>, ApiError> {
    app.devices.device(&id).await?.map(Json).ok_or_else(|| unknown(&id))
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!("no device {id:?}; `glassbox devices list` shows the registered ones"))
}

/// `POST /api/v1/devices/{id}/disable`: refuses its future connections.
pub async fn disable(state: State<AppState>, id: Path<String>) -> Result<Json<Value>, ApiError> {
    set_disabled(state, id, true).await
}

/// `POST /api/v1/devices/{id}/enable`.
pub async fn enable(state: State<AppState>, id: Path<String>) -> Result<Json<Value>, ApiError> {
    set_disabled(state, id, false).await
}

async fn set_disabled(
    State(app): State<AppState>,
    Path(id): Path<String>,
    disabled: bool,
) -> Result<Json<Value>, ApiError> {
    let device = app.devices.set_device_disabled(&id, disabled).await?.ok_or_else(|| unknown(&id))?;
    let mut body = json!(device);
    if disabled {
        body["disconnected"] = json!(app.broker.disconnect(&id, DisconnectReason::DeviceDisabled));
    }
    note_change(&app, &id, if disabled { "device.disabled" } else { "device.enabled" }, &mut body).await;
    Ok(Json(body))
}

/// `POST /api/v1/devices/{id}/secret`: a new secret, shown only here; the
/// old one stops working, and a connection made with it is closed.
pub async fn rotate_secret(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let (secret, hash) = new_secret();
    let device = app.devices.set_device_secret(&id, hash).await?.ok_or_else(|| unknown(&id))?;
    let mut body = json!(device);
    body["secret"] = json!(secret);
    body["disconnected"] = json!(app.broker.disconnect(&id, DisconnectReason::Administrative));
    note_change(&app, &id, "device.secret_rotated", &mut body).await;
    Ok(Json(body))
}

/// `DELETE /api/v1/devices/{id}`: 204; its recorded events stay.
pub async fn delete(State(app): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    app.devices.delete_device(&id).await?.ok_or_else(|| unknown(&id))?;
    app.broker.end_session(&id, "the device was deleted").await;
    let mut ignored = Value::Null;
    note_change(&app, &id, "device.deleted", &mut ignored).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/devices/{id}/queue`: drops the messages waiting in the
/// device's session queue, each recorded as dropped with reason `cleared`,
/// and records the clearing itself (`device.queue_cleared`). The answer
/// names the oldest of them (`messages`, at most `CLEARED_LISTED_MAX`).
pub async fn clear_queue(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    app.devices.device(&id).await?.ok_or_else(|| unknown(&id))?;
    let cleared = app.broker.clear_queue(&id, "admin").await;
    let count = cleared.as_ref().map_or(0, |c| c.count);
    let details = json!({ "cleared": count, "session": cleared.is_some() });
    let messages = cleared.map(|c| c.messages).unwrap_or_default();
    let mut body = json!({ "device": id, "cleared": count, "session": details["session"], "messages": messages });
    note_change_with(&app, &id, "device.queue_cleared", details, &mut body).await;
    Ok(Json(body))
}

/// Records a registry change as an event about the device. The change is
/// already made (and a new secret exists only in this answer), so a failure
/// here is reported in the answer as a `warning` and logged, not turned
/// into an error that would hide the secret.
async fn note_change(app: &AppState, id: &str, ty: &str, answer: &mut Value) {
    note_change_with(app, id, ty, json!({}), answer).await;
}

/// [`note_change`], the event's data holding `details` (an object) beside the actor.
async fn note_change_with(app: &AppState, id: &str, ty: &str, details: Value, answer: &mut Value) {
    if let Err(e) = record_change(app, id, ty, details).await {
        tracing::error!(device = %id, change = %ty, error = %e.message, "registry change made but its event was not recorded");
        if answer.is_object() {
            answer["warning"] =
                json!(format!("the change was made, but its {ty} event could not be recorded: {}", e.message));
        }
    }
}

async fn record_change(app: &AppState, id: &str, ty: &str, mut data: Value) -> Result<(), ApiError> {
    data["actor"] = json!("admin");
    let draft = Draft { device: Some(id.into()), ..Draft::json("glassbox/registry", ty, &data) };
    app.pipeline.ingest(vec![draft], "api").await?;
    Ok(())
}
