//! What starts a function besides a recorded message: an HTTP request to
//! one of its routes, and a tick of its schedule. Recorded by the server's
//! HTTP router and scheduler (`glassbox-server`'s `functions/http.rs` and
//! `functions/schedule.rs`) before the function runs, so each run has an
//! event to trace, and a request can be replayed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Payload;

/// A request to a function's `http:` route (data: [`HttpRequest`]).
pub const HTTP_REQUEST: &str = "http.request";
/// A function's schedule came due (data: [`ScheduleFired`]).
pub const SCHEDULE_FIRED: &str = "schedule.fired";

/// The data of an [`HTTP_REQUEST`] event: what it keeps of a request, the
/// allowed headers (the others' values redacted), the query with
/// secret-looking values redacted, and the body only when the route opts in
/// (`record_body`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub function: String,
    /// The route that took it, as deployed (`POST /hooks/*`).
    pub route: String,
    pub method: String,
    pub path: String,
    /// The query string, secret-looking values redacted.
    pub query: Option<String>,
    /// Header names to values; a value not kept reads `[redacted]`.
    pub headers: BTreeMap<String, String>,
    /// The body's size; the body itself only with `record_body`.
    pub body_bytes: u64,
    /// The body, when kept and JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// The body, when kept and text but not JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_text: Option<String>,
}

/// The data of a [`SCHEDULE_FIRED`] event (its subject is the function).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleFired {
    pub function: String,
    pub version: u32,
    /// The trigger, as deployed (`schedule:*/5 * * * *`).
    pub trigger: String,
    /// When it was due (it fires within a second after).
    pub due: DateTime<Utc>,
}

impl Payload for HttpRequest {
    const TYPE: &'static str = HTTP_REQUEST;
}

impl Payload for ScheduleFired {
    const TYPE: &'static str = SCHEDULE_FIRED;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_payloads_round_trip_as_documented() {
        let json = serde_json::json!({
            "function": "hook", "route": "POST /hooks/*", "method": "POST", "path": "/hooks/github",
            "query": "token=[redacted]", "headers": { "content-type": "application/json", "x-secret": "[redacted]" },
            "body_bytes": 11, "body": { "ok": true },
        });
        let request: HttpRequest = serde_json::from_value(json.clone()).unwrap();
        assert_eq!((request.body_text.as_deref(), request.headers.len()), (None, 2));
        assert_eq!(serde_json::to_value(&request).unwrap(), json);
        let bare = serde_json::json!({
            "function": "hook", "route": "GET /", "method": "GET", "path": "/", "query": null, "headers": {},
            "body_bytes": 0,
        });
        assert_eq!(serde_json::to_value(serde_json::from_value::<HttpRequest>(bare.clone()).unwrap()).unwrap(), bare);

        let json = serde_json::json!({
            "function": "report", "version": 2, "trigger": "schedule:0 9 * * *", "due": "2026-12-05T09:00:00Z",
        });
        let fired: ScheduleFired = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(fired.due, DateTime::parse_from_rfc3339("2026-12-05T09:00:00Z").unwrap());
        assert_eq!(serde_json::to_value(&fired).unwrap(), json);
    }
}
