//! `/api/v1/devices/{id}/commands` and `/api/v1/commands/{id}`: durable
//! device commands.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use glassbox_api_types::{CommandIssued, CommandList, CommandView};
use glassbox_core::Problem;
use glassbox_store::{CommandRecord, CommandState};
use serde::Deserialize;
use serde_json::Value;

use super::auth::Caller;
use super::body::{JsonBody, Shape};
use super::params::{Parameters, Path, Query};
use super::{ApiError, AppState};
use glassbox_control::{CommandError, NewCommand};

/// Most commands per list.
const LIST_MAX: usize = 1000;

fn error(e: CommandError) -> ApiError {
    match e {
        CommandError::Invalid(m) => ApiError::bad_request("invalid_command", m),
        CommandError::UnknownDevice(_) | CommandError::UnknownCommand(_) => ApiError::not_found(e.to_string()),
        CommandError::DeviceDisabled(_) => ApiError::new(StatusCode::CONFLICT, "device_disabled", e.to_string()),
        CommandError::Finished { .. } => ApiError::new(StatusCode::CONFLICT, "command_finished", e.to_string()),
        CommandError::Store(e) => e.into(),
    }
}

/// `POST /api/v1/devices/{id}/commands`: 201 with the command, or 200 with
/// the earlier one (`"duplicate": true`) for a reused idempotency key.
pub async fn issue(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(device): Path<String>,
    JsonBody(new): JsonBody<NewCommand>,
) -> Result<(StatusCode, Json<CommandIssued<CommandView>>), ApiError> {
    let (command, created) = app.control.issue(&device, new, &by, None).await.map_err(error)?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(CommandIssued { command: command_view(&command), duplicate: !created })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<String>,
    limit: Option<usize>,
}

impl Parameters for ListQuery {
    fn accepts(name: &str) -> Option<String> {
        (name == "limit").then(|| format!("an integer from 1 to {LIST_MAX}"))
    }
}

impl Shape for NewCommand {
    const EXAMPLE: &'static str =
        r#"{"name": "reboot", "payload": {"delay": 5}, "ttl": "5m", "idempotency_key": "k-1"}"#;
}

/// `GET /api/v1/devices/{id}/commands?state=&limit=`: newest first.
pub async fn list(
    State(app): State<AppState>,
    Path(device): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<CommandList<CommandView>>, ApiError> {
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(CommandState::parse(s).ok_or_else(|| {
            let names: Vec<_> = CommandState::ALL.iter().map(|c| c.as_str()).collect();
            let message = format!("{s:?} is not accepted: give one of {}", names.join(", "));
            ApiError::invalid_parameters(vec![Problem { field: "state".into(), message }])
        })?),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, LIST_MAX);
    let commands = app.control.commands(&device, state, limit).await.map_err(error)?;
    Ok(Json(CommandList { commands: commands.iter().map(command_view).collect() }))
}

/// `GET /api/v1/commands/{id}`.
pub async fn get(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<CommandView>, ApiError> {
    let command = app.control.command(&id).await.map_err(error)?;
    Ok(Json(command_view(&command)))
}

/// `POST /api/v1/commands/{id}/cancel`.
pub async fn cancel(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<String>,
) -> Result<Json<CommandView>, ApiError> {
    let command = app.control.cancel(&id, &by).await.map_err(error)?;
    Ok(Json(command_view(&command)))
}

/// The command as answered to clients: its record, with the payload and
/// the response read as JSON.
fn command_view(command: &CommandRecord) -> CommandView {
    let parse = |text: &Option<String>| text.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok());
    CommandView {
        id: command.id.clone(),
        device: command.device.clone(),
        name: command.name.clone(),
        payload: parse(&command.payload),
        issuer: command.issuer.clone(),
        idempotency_key: command.idempotency_key.clone(),
        state: command.state,
        created_at: command.created_at,
        expires_at: command.expires_at,
        updated_at: command.updated_at,
        correlationid: command.correlationid.clone(),
        response: parse(&command.response),
        reason: command.reason.clone(),
    }
}
