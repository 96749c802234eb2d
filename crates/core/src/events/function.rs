//! What the platform records about the work functions do on events: the
//! outcome records a durable consumer reads back to know which events are
//! done (an invocation, a dead letter), the outbound requests refused on
//! the way, and the records of work handed back at a stop and resumed at
//! the next start. Recorded by the function dispatcher (`glassbox-server`'s
//! `functions/`), each caused by the event the function ran on; read by
//! metrics, OTLP, logs, trace, diagnosis and the CLI.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Payload;
use crate::DropReason;

/// One run of a function on an event (data: [`Invocation`]).
pub const FUNCTION_INVOKED: &str = "function.invoked";
/// A function gave up on an event (data: [`DeadLetter`]).
pub const FUNCTION_DEAD_LETTER: &str = "function.dead_letter";
/// Events a function had not run when the server stopped (data: [`HandedBack`]).
pub const FUNCTION_HANDED_BACK: &str = "function.handed_back";
/// Events a function found unfinished at start and took up (data: [`Resumed`]).
pub const FUNCTION_RESUMED: &str = "function.resumed";
/// An outbound request a function's egress allow list refused (data: [`EgressDenied`]).
pub const FUNCTION_EGRESS_DENIED: &str = "function.egress_denied";
/// A function did not run an event on purpose: a budget or the chain bound refused it (data: [`Dropped`]).
pub const FUNCTION_DROPPED: &str = "function.dropped";
/// A dead letter left the list: redriven with success, or discarded (data: [`DeadLetterCleared`]).
pub const FUNCTION_DEAD_LETTER_CLEARED: &str = "function.dead_letter_cleared";

/// The identifying part of a [`FUNCTION_INVOKED`] record: what a durable
/// consumer reads back at start to know which events are done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationKey {
    pub function: String,
    pub version: u32,
    pub digest: String,
    /// The event the function ran on.
    pub event_id: String,
    /// 1 for the first run, then each retry.
    pub attempt: u32,
    /// `succeeded`, `failed`, `timed_out`, …
    pub outcome: String,
    /// The event a replay re-ran (a replay is not the event's own run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
}

impl InvocationKey {
    /// Whether the event needs no further run: it succeeded.
    pub fn done(&self) -> bool {
        self.outcome == "succeeded"
    }
}

/// The data of a [`FUNCTION_INVOKED`] record: one run of a function on an
/// event, recorded by the dispatcher when the run ends (with its outputs'
/// ids), as the event's child. Metrics (invocations, errors, duration,
/// cost), OTLP spans, `logs`, `trace` and the CLI read it. Fields added
/// after the first release default when an older record lacks them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invocation {
    #[serde(flatten)]
    pub key: InvocationKey,
    /// Why it did not succeed (the error, the trap); none when it did.
    pub error: Option<String>,
    /// When the run started (instantiation included).
    pub start: DateTime<Utc>,
    /// A new instance was created for it, not a warm one reused.
    #[serde(default)]
    pub cold: bool,
    #[serde(default)]
    pub instantiate_us: u64,
    /// From the start to the outcome: the duration metrics and spans show.
    #[serde(default)]
    pub wall_us: u64,
    /// CPU time of the invocation's thread.
    #[serde(default)]
    pub cpu_us: u64,
    /// The instance's linear memory at the end (its peak).
    #[serde(default)]
    pub memory_bytes: u64,
    /// What the run cost under the `[cost]` prices: per request plus the
    /// memory limit in GiB × the wall time in seconds × per GiB-second.
    #[serde(default)]
    pub cost: f64,
    /// Its log lines, then the platform's line about a failure.
    #[serde(default)]
    pub logs: Vec<LogLine>,
    /// Lines over the per-invocation limit, not kept.
    #[serde(default)]
    pub logs_dropped: u64,
    /// The bytes of the function's own log messages.
    #[serde(default)]
    pub log_bytes: u64,
    /// The ids of the events it returned or emitted, in order.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Its outbound HTTP requests (sent, failed or denied), in order.
    #[serde(default)]
    pub egress: Vec<EgressRequest>,
    /// Outbound requests past the per-invocation bound, not written down.
    #[serde(default)]
    pub egress_dropped: u64,
    /// How long the event waited in the function's queue (absent for
    /// replays and HTTP requests, which do not queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_us: Option<u64>,
    /// For a function serving an HTTP request: the request and its answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpExchange>,
}

impl Invocation {
    /// Whether it did not succeed (an error in metrics, a failed span).
    pub fn failed(&self) -> bool {
        !self.key.done()
    }
}

/// One log line of an invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    pub message: String,
    /// Microseconds since the invocation started.
    pub at_us: u64,
    /// `stdout` or `stderr` for what the guest printed; absent for lines
    /// from the `log` interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// `platform` for the platform's line about the invocation (why it
    /// failed); absent for the function's own lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl LogLine {
    /// The `source` of the platform's own lines.
    pub const PLATFORM: &'static str = "platform";

    /// `function` for the guest's lines, `platform` for the platform's.
    pub fn source(&self) -> &str {
        self.source.as_deref().unwrap_or("function")
    }
}

/// One outbound HTTP request of an invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressRequest {
    pub host: String,
    pub port: u16,
    pub scheme: String,
    pub method: String,
    /// `completed` (a response came back), `failed` (no response: refused,
    /// timed out, …) or `denied` (the allow list refused it; nothing sent).
    pub outcome: String,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// Request body bytes sent.
    pub bytes_out: u64,
    /// Response body bytes the function read.
    pub bytes_in: u64,
    /// From sending to the response's head (or the error).
    pub duration_us: u64,
    /// Whether the chain's `traceparent` was sent with it.
    pub traceparent: bool,
    /// Microseconds since the invocation started.
    pub at_us: u64,
}

/// The `http` part of an invocation that served a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpExchange {
    pub method: String,
    pub path: String,
    /// The route that took it (none for a replay of a request recorded
    /// before routes were kept).
    pub route: Option<String>,
    /// The status answered (the function's, or the platform's when it failed).
    pub status: u16,
    pub response_bytes: u64,
}

/// The data of a [`FUNCTION_EGRESS_DENIED`] record: an outbound request
/// refused by the function's allow list, recorded with the invocation (as
/// a child of the event it ran on); counted in `drops`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressDenied {
    pub function: String,
    pub version: u32,
    pub host: String,
    pub port: u16,
    pub method: String,
    /// Always `egress_denied`.
    pub reason: DropReason,
    /// Which rule, or which address, refused it.
    pub detail: Option<String>,
    /// The event the function ran on.
    pub event_id: String,
}

impl Payload for Invocation {
    const TYPE: &'static str = FUNCTION_INVOKED;
}

impl Payload for DeadLetter {
    const TYPE: &'static str = FUNCTION_DEAD_LETTER;
}

impl Payload for HandedBack {
    const TYPE: &'static str = FUNCTION_HANDED_BACK;
}

impl Payload for Resumed {
    const TYPE: &'static str = FUNCTION_RESUMED;
}

impl Payload for EgressDenied {
    const TYPE: &'static str = FUNCTION_EGRESS_DENIED;
}

/// The data of a [`FUNCTION_DROPPED`] record: an event a function's
/// trigger matched that it did not run, on purpose (a `stop` budget used
/// up, a `throttle` budget's queue full: `budget_exceeded`; its chain past
/// the per-chain bound: `rate_limited`), recorded by the dispatcher as
/// the event's child: the event's one outcome for that function, counted
/// in `drops` by its reason. Not a dead letter: nothing is kept to redrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    pub function: String,
    pub version: u32,
    /// `budget_exceeded` or `rate_limited`.
    pub reason: DropReason,
    /// Which budget (its window, when it rolls over) or which chain.
    pub detail: String,
    /// The event not run.
    pub event: String,
}

impl Payload for Dropped {
    const TYPE: &'static str = FUNCTION_DROPPED;
}

/// The data of a [`FUNCTION_DEAD_LETTER`] record: a function gave up on an
/// event (retries exhausted, or a guard: recursion, budget), recorded by
/// the dispatcher as the event's child; it keeps what replay needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub function: String,
    pub version: u32,
    pub digest: String,
    pub reason: String,
    /// The event given up on.
    pub event: String,
}

/// The data of a [`FUNCTION_DEAD_LETTER_CLEARED`] record: an operator took a
/// dead letter off its function's list, recorded as a child of the event
/// given up on (on its chain), with who did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterCleared {
    pub function: String,
    /// The event given up on.
    pub event: String,
    pub reason: DeadLetterClearedReason,
    /// The version whose run succeeded, for a redrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// The successful `function.invoked` record, for a redrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation: Option<String>,
    pub principal: crate::Principal,
}

/// Why a dead letter left the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterClearedReason {
    /// A redrive ran it again, and the run succeeded.
    Redriven,
    /// An operator dropped it without a successful run.
    Discarded,
}

impl Payload for DeadLetterCleared {
    const TYPE: &'static str = FUNCTION_DEAD_LETTER_CLEARED;
}

/// The data of a [`FUNCTION_HANDED_BACK`] record, written by the dispatcher
/// at a stop for each function with unfinished work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedBack {
    pub function: String,
    /// Events waiting in its queue or its backlog, not started.
    pub queued: u64,
    /// Events waiting to be retried after a failure.
    pub retrying: u64,
    /// Invocations still running when the grace period ended; their
    /// outcome is unknown, so they run again at the next start.
    pub running: u64,
    /// Why: the server stopped, and how long it waited.
    pub reason: String,
}

/// The data of a [`FUNCTION_RESUMED`] record, written by the dispatcher at
/// start for each function that takes up unfinished work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumed {
    pub function: String,
    /// Events taken up: recorded, matched by a trigger, no outcome yet.
    pub events: u64,
    /// Of those, events that had failed before and continue their retries.
    pub retrying: u64,
    /// The oldest of them.
    pub oldest: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `function.invoked` record as the dispatcher writes it and every
    /// reader (metrics, OTLP, logs, trace, the CLI) reads it.
    fn invoked_json() -> serde_json::Value {
        serde_json::json!({
            "function": "fan", "version": 2, "digest": "sha256:ab", "event_id": "01J0000000000000000000000A",
            "attempt": 1, "outcome": "failed", "error": "too hot", "start": "2026-12-05T07:00:00.000001Z",
            "cold": true, "instantiate_us": 150, "wall_us": 1200, "cpu_us": 900, "memory_bytes": 1_114_112,
            "cost": 0.0000021, "logs_dropped": 0, "log_bytes": 5, "outputs": ["01J0000000000000000000000B"],
            "logs": [
                { "level": "info", "message": "hello", "at_us": 40, "stream": "stdout" },
                { "level": "error", "message": "invocation failed (attempt 1 of 3): failed: too hot",
                  "at_us": 1200, "source": "platform" },
            ],
            "egress": [{
                "host": "api.example.com", "port": 443, "scheme": "https", "method": "GET", "outcome": "denied",
                "status": null, "error": "not in the allow list", "bytes_out": 0, "bytes_in": 0, "duration_us": 0,
                "traceparent": false, "at_us": 300,
            }],
            "egress_dropped": 0, "queued_us": 35,
            "http": { "method": "POST", "path": "/hooks/a", "route": null, "status": 500, "response_bytes": 0 },
        })
    }

    #[test]
    fn an_invocation_round_trips_as_documented() {
        let invocation: Invocation = serde_json::from_value(invoked_json()).unwrap();
        assert_eq!((invocation.key.function.as_str(), invocation.key.attempt, invocation.wall_us), ("fan", 1, 1200));
        assert!(invocation.failed());
        assert_eq!(invocation.logs[1].source(), LogLine::PLATFORM);
        assert_eq!(invocation.logs[0].source(), "function");
        assert_eq!(serde_json::to_value(&invocation).unwrap(), invoked_json());
        let key: InvocationKey = serde_json::from_value(invoked_json()).unwrap();
        assert_eq!(key, invocation.key, "the key reads from the whole record");
    }

    #[test]
    fn an_invocation_without_the_later_fields_reads_with_their_defaults() {
        let mut old = invoked_json();
        for field in ["egress", "egress_dropped", "log_bytes", "queued_us", "http"] {
            old.as_object_mut().unwrap().remove(field);
        }
        let invocation: Invocation = serde_json::from_value(old).unwrap();
        assert!(invocation.egress.is_empty() && invocation.http.is_none() && invocation.queued_us.is_none());
    }

    #[test]
    fn outcome_records_round_trip_as_documented() {
        let dead = serde_json::json!({
            "function": "fan", "version": 2, "digest": "sha256:ab", "reason": "retries_exhausted", "event": "e1",
        });
        assert_eq!(serde_json::to_value(serde_json::from_value::<DeadLetter>(dead.clone()).unwrap()).unwrap(), dead);
        let denied = serde_json::json!({
            "function": "fan", "version": 2, "host": "10.0.0.1", "port": 80, "method": "GET",
            "reason": "egress_denied", "detail": "a private address no rule names", "event_id": "e1",
        });
        let parsed: EgressDenied = serde_json::from_value(denied.clone()).unwrap();
        assert_eq!(parsed.reason, DropReason::EgressDenied);
        assert_eq!(serde_json::to_value(parsed).unwrap(), denied);
        let handed = serde_json::json!({
            "function": "fan", "queued": 3, "retrying": 1, "running": 0, "reason": "the server stopped",
        });
        assert_eq!(
            serde_json::to_value(serde_json::from_value::<HandedBack>(handed.clone()).unwrap()).unwrap(),
            handed
        );
        let dropped = serde_json::json!({
            "function": "fan", "version": 2, "reason": "budget_exceeded", "detail": "fan: 50 invocations per 1m",
            "event": "e1",
        });
        let parsed: Dropped = serde_json::from_value(dropped.clone()).unwrap();
        assert_eq!(parsed.reason, DropReason::BudgetExceeded);
        assert_eq!(serde_json::to_value(parsed).unwrap(), dropped);
        let resumed = serde_json::json!({ "function": "fan", "events": 4, "retrying": 1, "oldest": "e1" });
        assert_eq!(serde_json::to_value(serde_json::from_value::<Resumed>(resumed.clone()).unwrap()).unwrap(), resumed);
    }
}
