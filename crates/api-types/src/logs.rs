//! `GET /api/v1/logs`: function and platform log lines, oldest first.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logs {
    pub lines: Vec<LogEntry>,
    /// True when more lines matched than `limit`: the oldest were left out.
    pub truncated: bool,
    /// Platform lines the bounded ring has dropped since start.
    pub platform_lines_dropped: u64,
}

/// One line, with the ids it is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// `{invocation}/{n}`, `{invocation}/dropped` or `platform/{seq}`:
    /// stable, so a follower skips what it has seen.
    pub id: String,
    pub at: DateTime<Utc>,
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    pub message: String,
    /// `function` (the guest's) or `platform` (Glassbox's).
    pub source: String,
    pub function: Option<String>,
    pub event_id: Option<String>,
    pub correlationid: Option<String>,
    pub device: Option<String>,
    #[serde(flatten)]
    pub origin: LogOrigin,
}

/// Where a line was kept: on an invocation's record, or in the platform's
/// ring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LogOrigin {
    Invocation {
        /// Set for what a component printed (`stdout`, `stderr`) rather
        /// than logged.
        stream: Option<String>,
        version: u32,
        /// The id of the `function.invoked` event that holds the line.
        invocation: String,
    },
    Platform {
        /// The module that logged it, e.g. `glassbox_server::functions`.
        target: String,
        /// The line's structured fields.
        fields: Map<String, Value>,
    },
}
