//! What a replay answers (`POST /api/v1/functions/{name}/replay`) and
//! `glassbox debug replay` reads: a dry run's answer, or the invocation as
//! recorded; for an HTTP function, with what it answered the request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::RecordedInvocation;
use crate::sandbox::DryRun;

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

/// What a replay answers. Told apart by their fields: a dry run's answer
/// has `dry_run`, a recorded replay's is the invocation record (with its
/// `id`), and one whose invocation could not be recorded has at most the
/// HTTP function's `response`. Each is read strictly as what its fields
/// say it is, so a malformed answer is an error, not another kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Replayed {
    DryRun(Box<DryRun>),
    Recorded(Box<RecordedReplay>),
}

/// A recorded replay: the invocation as recorded (absent if recording it
/// failed) and, for an HTTP function, what it answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedReplay {
    #[serde(flatten)]
    pub invocation: Option<RecordedInvocation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<ReplayedResponse>,
}

impl<'de> Deserialize<'de> for Replayed {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut answer = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        if answer.contains_key("dry_run") {
            return read::<DryRun, D::Error>(answer.into()).map(|dry| Replayed::DryRun(Box::new(dry)));
        }
        let response = answer.remove("response").map(read::<ReplayedResponse, D::Error>).transpose()?;
        let invocation = match answer.is_empty() {
            true => None,
            false => Some(read::<RecordedInvocation, D::Error>(answer.into())?),
        };
        Ok(Replayed::Recorded(Box::new(RecordedReplay { invocation, response })))
    }
}

/// One part of an answer, read as `T`; its error in the answer's reader's terms.
fn read<T: serde::de::DeserializeOwned, E: serde::de::Error>(value: serde_json::Value) -> Result<T, E> {
    serde_json::from_value(value).map_err(E::custom)
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
        let replayed = Replayed::Recorded(Box::new(RecordedReplay { invocation: None, response: Some(response) }));
        let answer = serde_json::to_value(&replayed).unwrap();
        assert_eq!(answer, json!({"response": {"status": 502, "error": {"code": "failed", "message": "no response"}}}));
        assert_eq!(serde_json::from_value::<Replayed>(answer).unwrap(), replayed, "it reads back");
    }

    fn dry_run() -> DryRun {
        DryRun {
            function: "fan".into(),
            version: 2,
            event_id: "01JD6Y8Q1W3N4ZV7K2M5P9R0ST".into(),
            dry_run: true,
            outcome: "succeeded".into(),
            error: None,
            wall_us: 120,
            logs: Vec::new(),
            egress: Vec::new(),
            would: crate::Would::default(),
            response: None,
        }
    }

    #[test]
    fn a_dry_run_and_a_recorded_replay_read_back_as_what_they_are() {
        let dry = Replayed::DryRun(Box::new(dry_run()));
        let read: Replayed = serde_json::from_value(serde_json::to_value(&dry).unwrap()).unwrap();
        assert_eq!(read, dry);
        let recorded = json!({
            "id": "01JD6Y8Q1W3N4ZV7K2M5P9R0SB", "function": "fan", "version": 2, "digest": "sha256:00",
            "event_id": "01JD6Y8Q1W3N4ZV7K2M5P9R0ST", "attempt": 1, "outcome": "failed",
            "replay_of": "01JD6Y8Q1W3N4ZV7K2M5P9R0ST", "error": "trap", "start": "2026-12-06T10:00:00Z",
            "outputs": ["01JD6Y8Q1W3N4ZV7K2M5P9R0SC"]
        });
        let Replayed::Recorded(read) = serde_json::from_value(recorded.clone()).unwrap() else {
            panic!("a recorded invocation is no dry run")
        };
        let invocation = read.invocation.expect("the invocation");
        assert_eq!((invocation.id.as_str(), invocation.invocation.outputs.len()), ("01JD6Y8Q1W3N4ZV7K2M5P9R0SB", 1));
        assert_eq!(read.response, None);
        let unrecorded: Replayed = serde_json::from_value(json!({})).unwrap();
        assert_eq!(unrecorded, Replayed::Recorded(Box::new(RecordedReplay { invocation: None, response: None })));
    }

    #[test]
    fn a_malformed_answer_is_an_error_not_another_kind() {
        let mut dry = serde_json::to_value(dry_run()).unwrap();
        dry.as_object_mut().unwrap().remove("would");
        let error = serde_json::from_value::<Replayed>(dry).unwrap_err().to_string();
        assert!(error.contains("would"), "{error}");
        let recorded = json!({"id": "01JD6Y8Q1W3N4ZV7K2M5P9R0SB", "function": "fan"});
        assert!(serde_json::from_value::<Replayed>(recorded).is_err(), "an invocation without its fields");
    }
}
