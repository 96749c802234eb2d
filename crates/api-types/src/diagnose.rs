//! `/api/v1/diagnose` (what is abnormal, since when, and the likely
//! causes) and `/api/v1/anomalies` (the episodes themselves).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `GET /api/v1/diagnose`: the answer to "what is abnormal, since when,
/// and why?".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub now: DateTime<Utc>,
    pub since: DateTime<Utc>,
    pub incidents: Vec<Incident>,
    pub series_watched: usize,
    /// Series still learning their normal: they cannot alert yet.
    pub series_learning: usize,
    /// What the diagnosis cannot see, in words.
    pub unknowns: Vec<String>,
    pub summary: String,
    /// Device certificates that end within the widest expiry warning
    /// (`ca.expiry_warnings`, 30 days by default), soonest first.
    #[serde(default)]
    pub certificates_expiring: Vec<ExpiringCertificate>,
}

/// A device certificate nearing its end, neither revoked nor renewed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpiringCertificate {
    pub device: String,
    pub serial: String,
    pub not_after: DateTime<Utc>,
}

/// Concurrent episodes of related subjects, with their probable causes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// The id of its first episode.
    pub id: u64,
    pub start: DateTime<Utc>,
    /// None while any of its episodes is open.
    pub end: Option<DateTime<Utc>>,
    pub subjects: Vec<Subject>,
    pub episodes: Vec<Episode>,
    pub causes: Vec<Cause>,
    /// The whole incident in words.
    pub summary: String,
    /// Someone said they are on it (`glassbox diagnose ack`).
    #[serde(default)]
    pub acknowledged: Option<Triaged>,
    /// Someone said it is dealt with (`glassbox diagnose resolve`).
    #[serde(default)]
    pub resolved: Option<Triaged>,
    /// The subjects of its episodes silenced now, each until when: their
    /// anomalies raise no alert (`glassbox diagnose silence`).
    #[serde(default)]
    pub silenced: Vec<Silence>,
    /// For an invocation storm (an episode of a function's
    /// `function_invocations`): the correlation chains that ran the most
    /// invocations of its functions in its time, most first (at most 3;
    /// from at most 10,000 invocation records per function).
    #[serde(default)]
    pub chains: Vec<IncidentChain>,
}

/// A correlation chain driving an invocation storm: `glassbox trace
/// CORRELATION` follows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentChain {
    pub correlation: String,
    /// The function whose storm it drives.
    pub function: String,
    /// Its invocations of that function in the incident's time.
    pub invocations: u64,
}

/// An acknowledgement or a resolution: who, when, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triaged {
    pub at: DateTime<Utc>,
    /// Who, as a label (`admin`, `token:oncall`).
    pub by: String,
    pub note: Option<String>,
}

/// `POST /api/v1/diagnose/incidents/{id}/ack` and `…/resolve`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A maintenance window on a subject: its anomalies are recorded but
/// raise no alert until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// `function:NAME`, `device:ID`, `group:NAME` or `platform`.
    pub subject: String,
    pub until: DateTime<Utc>,
    pub by: String,
    pub note: Option<String>,
}

/// `GET /api/v1/diagnose/silences`: the silences in force, soonest to end first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silences {
    pub silences: Vec<Silence>,
}

/// `POST /api/v1/diagnose/silences`: silence a subject for a while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    /// `function:NAME`, `device:ID`, `group:NAME` or `platform`.
    pub subject: String,
    /// How long: `30m`, `2h`, `1d` (at most 30 days); `0s` ends a silence now.
    #[serde(rename = "for")]
    pub length: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `GET /api/v1/anomalies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomalies {
    pub anomalies: Vec<Episode>,
}

/// One anomaly episode of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    pub id: u64,
    pub series: WatchedSeries,
    /// What made it anomalous at its peak: `spike`, `level_up`, `silence`, …
    pub signal: String,
    pub start: DateTime<Utc>,
    pub peak: DateTime<Utc>,
    pub peak_score: f64,
    /// None while the series is still abnormal.
    pub end: Option<DateTime<Utc>>,
    /// The value at its peak, and the value expected then.
    pub value: f64,
    pub expected: Option<f64>,
    /// What the detector that flagged it said, when another one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A watched series: its key, what it measures in words, and its subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchedSeries {
    /// The metric series key (`function_duration_ms{function="fan"}`).
    pub key: String,
    /// What it measures, for people (`latency`, `error count`).
    pub what: String,
    /// The unit of its values (`ms`, `/10s`).
    pub unit: String,
    pub subject: Subject,
}

/// A probable cause of an incident, with the evidence for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    pub change: Change,
    /// In [0, 1], shared among the candidates.
    pub confidence: f64,
    /// `likely`, `possible` or `unlikely`.
    pub verdict: String,
    pub evidence: Vec<String>,
}

/// A recorded change that may change how the platform behaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub at: DateTime<Utc>,
    /// `deploy`, `rollback`, `device_registered`, `shadow_batch`, …
    pub kind: String,
    pub subject: Subject,
    /// In words: "deploy of fan v2 (sha256:…) by admin".
    pub summary: String,
    /// The event that recorded it.
    pub event_id: Option<String>,
}

/// What a series or a change is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Subject {
    Function(String),
    Device(String),
    Group(String),
    Platform,
}
