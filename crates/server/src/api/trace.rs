//! `/api/v1/trace/{id}`: the whole correlation chain of an event, from any
//! event id of the chain (a command's id is one) or from the correlation id
//! itself, with the function invocations on it summarised.

use axum::Json;
use axum::extract::State;
use glassbox_core::{EventId, RecordedEvent};
use serde_json::{Value, json};

use super::params::Path;
use super::{ApiError, AppState};

/// Most events returned for one chain; `truncated` says when there were more.
pub const CHAIN_EVENTS_MAX: usize = 10_000;

/// The invocation record fields a trace lifts out of each `function.invoked`.
const INVOCATION_FIELDS: [&str; 18] = [
    "function",
    "version",
    "digest",
    "event_id",
    "attempt",
    "outcome",
    "error",
    "start",
    "cold",
    "instantiate_us",
    "wall_us",
    "cpu_us",
    "memory_bytes",
    "cost",
    "logs",
    "outputs",
    // Outbound HTTP requests, and for an HTTP-triggered one its request and status.
    "egress",
    "http",
];

pub async fn trace(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let store = app.pipeline.store();
    let correlationid = match id.parse::<EventId>() {
        Ok(event_id) => match store.lineage(&event_id.to_string()).await? {
            Some(lineage) => lineage.correlationid,
            None => id.clone(),
        },
        Err(_) => id.clone(),
    };
    let chain = store.chain(&correlationid, CHAIN_EVENTS_MAX).await?;
    if chain.events.is_empty() {
        return Err(ApiError::not_found(format!(
            "no event or correlation chain with id {id}; `glassbox events query` lists recent event ids"
        )));
    }
    let invocations: Vec<Value> = chain.events.iter().filter_map(invocation).collect();
    Ok(Json(json!({
        "correlationid": correlationid,
        "events": chain.events,
        "invocations": invocations,
        "truncated": chain.truncated,
    })))
}

/// One invocation of the chain: its record's fields, the id of the
/// `function.invoked` event that holds them, and its end time.
fn invocation(recorded: &RecordedEvent) -> Option<Value> {
    if recorded.event.ty != "function.invoked" {
        return None;
    }
    let data = recorded.event.data.json()?;
    let mut summary = serde_json::Map::new();
    summary.insert("id".into(), json!(recorded.event.id.to_string()));
    for field in INVOCATION_FIELDS {
        summary.insert(field.into(), data.get(field).cloned().unwrap_or(Value::Null));
    }
    if let Some(replay_of) = data.get("replay_of") {
        summary.insert("replay_of".into(), replay_of.clone());
    }
    Some(Value::Object(summary))
}
