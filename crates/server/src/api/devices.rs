//! `/api/v1/devices`: the device registry. Each change is also recorded as
//! an event (`device.registered`, `device.disabled`, …) on the device, so
//! registry changes are queryable and traceable like everything else.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use glassbox_core::{Data, DisconnectReason, Draft, validate_device_id};
use glassbox_store::Device;

use glassbox_store::devices::new_secret;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};

/// Most devices per list page.
const PAGE_MAX: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDevice {
    id: String,
}

/// `POST /api/v1/devices`: 201 with the device and its secret, shown only here.
pub async fn create(
    State(app): State<AppState>,
    body: Result<Json<CreateDevice>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(CreateDevice { id }) = body.map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
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
}

/// `GET /api/v1/devices`: in id order; `next_after` continues.
pub async fn list(
    State(app): State<AppState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request("invalid_parameter", e.body_text()))?;
    let limit = params.limit.unwrap_or(100).clamp(1, PAGE_MAX);
    let mut devices = app.devices.devices(params.after.as_deref(), limit + 1).await?;
    let next_after = (devices.len() > limit).then(|| devices[limit - 1].id.clone());
    devices.truncate(limit);
    Ok(Json(json!({ "devices": devices, "next_after": next_after })))
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
        body["disconnected"] = json!(app.broker.disconnect(&id, DisconnectReason::Administrative));
    }
    note_change(&app, &id, if disabled { "device.disabled" } else { "device.enabled" }, &mut body).await;
    Ok(Json(body))
}

/// `POST /api/v1/devices/{id}/secret`: a new secret, shown only here; the old one stops working.
pub async fn rotate_secret(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let (secret, hash) = new_secret();
    let device = app.devices.set_device_secret(&id, hash).await?.ok_or_else(|| unknown(&id))?;
    let mut body = json!(device);
    body["secret"] = json!(secret);
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

/// Records a registry change as an event about the device. The change is
/// already made (and a new secret exists only in this answer), so a failure
/// here is reported in the answer as a `warning` and logged, not turned
/// into an error that would hide the secret.
async fn note_change(app: &AppState, id: &str, ty: &str, answer: &mut Value) {
    if let Err(e) = record_change(app, id, ty).await {
        tracing::error!(device = %id, change = %ty, error = %e.message, "registry change made but its event was not recorded");
        if answer.is_object() {
            answer["warning"] =
                json!(format!("the change was made, but its {ty} event could not be recorded: {}", e.message));
        }
    }
}

async fn record_change(app: &AppState, id: &str, ty: &str) -> Result<(), ApiError> {
    let data = serde_json::value::to_raw_value(&json!({ "actor": "admin" })).map_err(super::error::internal)?;
    let draft = Draft {
        source: "glassbox/registry".into(),
        ty: ty.into(),
        device: Some(id.into()),
        datacontenttype: Some("application/json".into()),
        data: Data::Json(data),
        ..Draft::default()
    };
    app.pipeline.ingest(vec![draft], "api").await?;
    Ok(())
}
