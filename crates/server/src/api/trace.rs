//! `/api/v1/trace/{id}`: the whole correlation chain of an event, from any
//! event id of the chain (a command's id is one) or from the correlation id
//! itself, with the function invocations on it summarised.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use glassbox_core::{EgressRequest, EventId, FUNCTION_INVOKED, HttpExchange, Invocation, LogLine, RecordedEvent};
use serde::Serialize;
use serde_json::{Value, json};

use super::params::Path;
use super::{ApiError, AppState};

/// Most events returned for one chain; `truncated` says when there were more.
pub const CHAIN_EVENTS_MAX: usize = 10_000;

/// One invocation of the chain as a trace shows it: the record's fields
/// (not its queueing or log counts), the id of the `function.invoked`
/// event that holds them, and `replay_of` for a replay.
#[derive(Serialize)]
struct InvocationSummary<'a> {
    id: String,
    function: &'a str,
    version: u32,
    digest: &'a str,
    event_id: &'a str,
    attempt: u32,
    outcome: &'a str,
    error: Option<&'a str>,
    start: DateTime<Utc>,
    cold: bool,
    instantiate_us: u64,
    wall_us: u64,
    cpu_us: u64,
    memory_bytes: u64,
    cost: f64,
    logs: &'a [LogLine],
    outputs: &'a [String],
    // Outbound HTTP requests, and for an HTTP-triggered one its request and status.
    egress: &'a [EgressRequest],
    http: Option<&'a HttpExchange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_of: Option<&'a str>,
}

impl<'a> InvocationSummary<'a> {
    fn new(id: String, i: &'a Invocation) -> Self {
        let key = &i.key;
        Self {
            id,
            function: &key.function,
            version: key.version,
            digest: &key.digest,
            event_id: &key.event_id,
            attempt: key.attempt,
            outcome: &key.outcome,
            error: i.error.as_deref(),
            start: i.start,
            cold: i.cold,
            instantiate_us: i.instantiate_us,
            wall_us: i.wall_us,
            cpu_us: i.cpu_us,
            memory_bytes: i.memory_bytes,
            cost: i.cost,
            logs: &i.logs,
            outputs: &i.outputs,
            egress: &i.egress,
            http: i.http.as_ref(),
            replay_of: key.replay_of.as_deref(),
        }
    }
}

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

/// One invocation of the chain, summarised; none for other events.
fn invocation(recorded: &RecordedEvent) -> Option<Value> {
    if recorded.event.ty != FUNCTION_INVOKED {
        return None;
    }
    let invocation: Invocation = recorded.payload().ok()?;
    serde_json::to_value(InvocationSummary::new(recorded.event.id.to_string(), &invocation)).ok()
}
