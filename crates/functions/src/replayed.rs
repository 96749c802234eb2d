//! What an HTTP function answered a replayed request, as the replay's
//! answer shows it (beside the recorded invocation, or in a dry run's
//! answer) and `glassbox debug replay` reads it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::RecordedInvocation;

/// The function's answer to a replayed request. Untagged: an answer has a
/// `body`, a failure an `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReplayedResponse {
    /// The function set a response: its status, headers (the last value
    /// of a repeated one) and body (as text, invalid UTF-8 replaced).
    Answered { status: u16, headers: BTreeMap<String, String>, body: String },
    /// It set none, set an error, or failed to run: the status a caller
    /// would have got, and why.
    Failed { status: u16, error: ReplayError },
}

/// Why a replayed request got no response from the function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayError {
    /// The invocation's outcome (`failed`, `timed_out`, …).
    pub code: String,
    pub message: String,
}

impl ReplayedResponse {
    pub fn status(&self) -> u16 {
        match self {
            Self::Answered { status, .. } | Self::Failed { status, .. } => *status,
        }
    }

    /// What it said: the body, or why there was none.
    pub fn said(&self) -> &str {
        match self {
            Self::Answered { body, .. } => body,
            Self::Failed { error, .. } => &error.message,
        }
    }
}

/// A recorded replay of an HTTP function: the invocation as recorded
/// (absent if recording it failed) and what the function answered.
#[derive(Debug, Serialize)]
pub struct RecordedReplay {
    #[serde(flatten)]
    pub invocation: Option<RecordedInvocation>,
    pub response: ReplayedResponse,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_replayed_response_reads_back_by_its_keys() {
        let answered = json!({"status": 200, "headers": {"content-type": "text/plain"}, "body": "hi"});
        let read: ReplayedResponse = serde_json::from_value(answered.clone()).unwrap();
        assert_eq!((read.status(), read.said()), (200, "hi"));
        assert_eq!(serde_json::to_value(&read).unwrap(), answered);
        let failed = json!({"status": 504, "error": {"code": "timed_out", "message": "ran out of time"}});
        let read: ReplayedResponse = serde_json::from_value(failed.clone()).unwrap();
        assert_eq!((read.status(), read.said()), (504, "ran out of time"));
        assert_eq!(serde_json::to_value(&read).unwrap(), failed);
    }

    #[test]
    fn a_replay_whose_record_failed_still_shows_the_response() {
        let response = ReplayedResponse::Failed {
            status: 502,
            error: ReplayError { code: "failed".into(), message: "no response".into() },
        };
        let answer = serde_json::to_value(RecordedReplay { invocation: None, response }).unwrap();
        assert_eq!(answer, json!({"response": {"status": 502, "error": {"code": "failed", "message": "no response"}}}));
    }
}
