//! `/api/v1/trace/{id}`: the whole correlation chain of an event, from any
//! event id of the chain or from the correlation id itself.

use axum::Json;
use axum::extract::{Path, State};
use glassbox_core::EventId;
use serde_json::{Value, json};

use super::{ApiError, AppState};

/// Most events returned for one chain; `truncated` says when there were more.
pub const CHAIN_EVENTS_MAX: usize = 10_000;

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
        return Err(ApiError::not_found(format!("no event or correlation chain with id {id}")));
    }
    Ok(Json(json!({ "correlationid": correlationid, "events": chain.events, "truncated": chain.truncated })))
}
