//! `/api/v1/trace/{id}`: the whole correlation chain of an event, from any
//! event id of the chain (a command's id is one) or from the correlation id
//! itself, with the function invocations on it summarised.

use axum::Json;
use axum::extract::State;
use glassbox_api_types::{InvocationSummary, Trace};
use glassbox_core::{EventId, FUNCTION_INVOKED, Invocation, RecordedEvent};

use super::params::Path;
use super::{ApiError, AppState};

/// Most events returned for one chain; `truncated` says when there were more.
pub const CHAIN_EVENTS_MAX: usize = 10_000;

pub async fn trace(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Trace<RecordedEvent>>, ApiError> {
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
    let invocations = chain.events.iter().filter_map(invocation).collect();
    Ok(Json(Trace { correlationid, events: chain.events, invocations, truncated: chain.truncated }))
}

/// One invocation of the chain, summarised; none for other events.
fn invocation(recorded: &RecordedEvent) -> Option<InvocationSummary> {
    if recorded.event.ty != FUNCTION_INVOKED {
        return None;
    }
    let invocation: Invocation = recorded.payload().ok()?;
    Some(InvocationSummary::new(recorded.event.id.to_string(), &invocation))
}
