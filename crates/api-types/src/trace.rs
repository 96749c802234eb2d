//! `GET /api/v1/trace/{id}`: a correlation chain and its invocations.

use chrono::{DateTime, Utc};
use glassbox_core::{EgressRequest, HttpExchange, Invocation, LogLine};
use serde::{Deserialize, Serialize};

/// The whole chain of an event, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace<E> {
    pub correlationid: String,
    pub events: Vec<E>,
    /// One per `function.invoked` event of the chain.
    pub invocations: Vec<InvocationSummary>,
    /// True when the chain had more events than one answer holds.
    pub truncated: bool,
}

/// One invocation as a trace shows it: the record's fields (not its
/// queueing or log counts), the id of the `function.invoked` event that
/// holds them, and `replay_of` for a replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvocationSummary {
    /// The `function.invoked` event's id.
    pub id: String,
    pub function: String,
    pub version: u32,
    pub digest: String,
    /// The event the function was invoked with.
    pub event_id: String,
    pub attempt: u32,
    pub outcome: String,
    pub error: Option<String>,
    pub start: DateTime<Utc>,
    pub cold: bool,
    pub instantiate_us: u64,
    pub wall_us: u64,
    pub cpu_us: u64,
    pub memory_bytes: u64,
    /// In dollars, by the cost model.
    pub cost: f64,
    pub logs: Vec<LogLine>,
    pub outputs: Vec<String>,
    /// Outbound HTTP requests it made.
    pub egress: Vec<EgressRequest>,
    /// For an HTTP-triggered invocation: its request and status.
    pub http: Option<HttpExchange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
}

impl InvocationSummary {
    /// The summary of `invocation`, recorded as the event `id`.
    pub fn new(id: String, invocation: &Invocation) -> Self {
        let key = &invocation.key;
        Self {
            id,
            function: key.function.clone(),
            version: key.version,
            digest: key.digest.clone(),
            event_id: key.event_id.clone(),
            attempt: key.attempt,
            outcome: key.outcome.clone(),
            error: invocation.error.clone(),
            start: invocation.start,
            cold: invocation.cold,
            instantiate_us: invocation.instantiate_us,
            wall_us: invocation.wall_us,
            cpu_us: invocation.cpu_us,
            memory_bytes: invocation.memory_bytes,
            cost: invocation.cost,
            logs: invocation.logs.clone(),
            outputs: invocation.outputs.clone(),
            egress: invocation.egress.clone(),
            http: invocation.http.clone(),
            replay_of: key.replay_of.clone(),
        }
    }
}
