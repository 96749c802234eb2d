//! What the platform records about the work functions do on events: the
//! outcome records a durable consumer reads back to know which events are
//! done (an invocation, a dead letter), and the records of work handed back
//! at a stop and resumed at the next start. Shared by the function
//! dispatcher, which writes them, and every reader.

use serde::{Deserialize, Serialize};

/// One run of a function on an event (data: [`InvocationKey`] and more).
pub const FUNCTION_INVOKED: &str = "function.invoked";
/// A function gave up on an event (data: [`DeadLetter`]).
pub const FUNCTION_DEAD_LETTER: &str = "function.dead_letter";
/// Events a function had not run when the server stopped (data: [`HandedBack`]).
pub const FUNCTION_HANDED_BACK: &str = "function.handed_back";
/// Events a function found unfinished at start and took up (data: [`Resumed`]).
pub const FUNCTION_RESUMED: &str = "function.resumed";

/// The identifying part of a [`FUNCTION_INVOKED`] record; the record has
/// more (timings, logs, cost), which only people read.
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

/// The data of a [`FUNCTION_DEAD_LETTER`] record: what replay needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub function: String,
    pub version: u32,
    pub digest: String,
    pub reason: String,
    /// The event given up on.
    pub event: String,
}

/// The data of a [`FUNCTION_HANDED_BACK`] record.
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

/// The data of a [`FUNCTION_RESUMED`] record.
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
