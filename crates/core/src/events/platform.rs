//! The platform's records about itself: a configuration that changed
//! between two starts, and an anomaly the live diagnosis found or saw end.
//! Both are changes or symptoms an operator asks about (`diagnose`), and
//! events a function may trigger on.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Payload;

/// This start's configuration differs from the last start's (data: [`ConfigChanged`]).
pub const CONFIG_CHANGED: &str = "config.changed";
/// The live diagnosis found an anomaly (data: [`Anomaly`]).
pub const ANOMALY_DETECTED: &str = "anomaly.detected";
/// An anomaly ended: its series is normal again (data: [`Anomaly`]).
pub const ANOMALY_RESOLVED: &str = "anomaly.resolved";
/// An operator acknowledged an incident: someone is on it (data: [`IncidentAcknowledged`]).
pub const INCIDENT_ACKNOWLEDGED: &str = "incident.acknowledged";
/// An operator resolved an incident: it is dealt with (data: [`IncidentResolved`]).
pub const INCIDENT_RESOLVED: &str = "incident.resolved";
/// An operator silenced a subject's anomalies for a while (data: [`Silenced`]).
pub const DIAGNOSE_SILENCED: &str = "diagnose.silenced";

/// The data of a [`CONFIG_CHANGED`] event, recorded by the server at start
/// when an effective setting differs from the last start's; diagnosis
/// ranks it as a cause like a deploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigChanged {
    /// The dotted keys that changed (`mqtt.publish_rate_max`), sorted.
    pub changed: Vec<String>,
    /// Each changed key's value before (null: unset); a secret's as `[redacted]`.
    pub from: BTreeMap<String, serde_json::Value>,
    /// Each changed key's value now.
    pub to: BTreeMap<String, serde_json::Value>,
}

/// The data of an [`ANOMALY_DETECTED`] or [`ANOMALY_RESOLVED`] event (its
/// subject is the series key), recorded by the live diagnosis (the server's
/// `diagnose::Watch`) and POSTed, with its `type`, to the webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// The episode's id, unique within a run of the server.
    pub id: u64,
    pub series: AnomalySeries,
    /// What made it anomalous at its peak: `spike`, `level_up`, `silence`, …
    pub signal: String,
    pub start: DateTime<Utc>,
    /// When it was worst so far.
    pub peak: DateTime<Utc>,
    pub peak_score: f64,
    /// None while the series is still abnormal (always so in `anomaly.detected`).
    pub end: Option<DateTime<Utc>>,
    /// The value at the peak, and the value expected then.
    pub value: f64,
    pub expected: Option<f64>,
    /// What the detector that flagged it said, when another one did (liveness).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The episode in words.
    pub words: String,
    /// Its subject is silenced until then: recorded, but no alert posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced_until: Option<DateTime<Utc>>,
}

/// The series an [`Anomaly`] is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalySeries {
    /// The metric series key (`function_duration_ms{function="fan"}`).
    pub key: String,
    /// What it measures, for people (`latency`, `error count`).
    pub what: String,
    /// The unit of its values (`ms`, `/10s`).
    pub unit: String,
    pub subject: AnomalySubject,
}

/// What an anomaly's series is about: `{"kind": "function", "name": "fan"}`,
/// `{"kind": "platform"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum AnomalySubject {
    Function(String),
    Device(String),
    Group(String),
    Platform,
}

impl AnomalySubject {
    /// Reads `function:NAME`, `device:ID`, `group:NAME` or `platform`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let named = |name: &str, make: fn(String) -> Self| match name.is_empty() {
            true => Err(format!("{text:?} names nothing after the colon")),
            false => Ok(make(name.to_string())),
        };
        match text.split_once(':') {
            Some(("function", name)) => named(name, Self::Function),
            Some(("device", id)) => named(id, Self::Device),
            Some(("group", name)) => named(name, Self::Group),
            None if text == "platform" => Ok(Self::Platform),
            _ => Err(format!("{text:?} is not a subject: give function:NAME, device:ID, group:NAME or platform")),
        }
    }
}

impl std::fmt::Display for AnomalySubject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Function(name) => write!(f, "function:{name}"),
            Self::Device(id) => write!(f, "device:{id}"),
            Self::Group(name) => write!(f, "group:{name}"),
            Self::Platform => f.write_str("platform"),
        }
    }
}

/// What an operator said about an incident, and who: the data of
/// [`IncidentAcknowledged`] and [`IncidentResolved`]. An incident is named
/// by its id and its start, which together stay unique across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentNote {
    pub incident: u64,
    pub incident_start: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub principal: crate::Principal,
}

/// The data of an [`INCIDENT_ACKNOWLEDGED`] event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IncidentAcknowledged(pub IncidentNote);

/// The data of an [`INCIDENT_RESOLVED`] event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IncidentResolved(pub IncidentNote);

/// The data of a [`DIAGNOSE_SILENCED`] event: a maintenance window. The
/// subject's anomalies are still detected and recorded, but raise no alert
/// (the webhook is not called) until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silenced {
    pub subject: AnomalySubject,
    pub until: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub principal: crate::Principal,
}

impl Payload for IncidentAcknowledged {
    const TYPE: &'static str = INCIDENT_ACKNOWLEDGED;
}

impl Payload for IncidentResolved {
    const TYPE: &'static str = INCIDENT_RESOLVED;
}

impl Payload for Silenced {
    const TYPE: &'static str = DIAGNOSE_SILENCED;
}

impl Payload for ConfigChanged {
    const TYPE: &'static str = CONFIG_CHANGED;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_payloads_round_trip_as_documented() {
        let json = serde_json::json!({
            "changed": ["mqtt.publish_rate_max", "server.admin_token"],
            "from": { "mqtt.publish_rate_max": 10, "server.admin_token": "[redacted]" },
            "to": { "mqtt.publish_rate_max": 20, "server.admin_token": null },
        });
        let changed: ConfigChanged = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(changed.to["mqtt.publish_rate_max"], 20);
        assert_eq!(serde_json::to_value(&changed).unwrap(), json);

        let json = serde_json::json!({
            "id": 3,
            "series": { "key": "function_errors{function=\"fan\"}", "what": "error count", "unit": "/10s",
                        "subject": { "kind": "function", "name": "fan" } },
            "signal": "spike", "start": "2026-12-05T07:00:00Z", "peak": "2026-12-05T07:00:10.250Z",
            "peak_score": 9.5, "end": null, "value": 14.0, "expected": 0.5,
            "words": "error count of function fan spiked",
        });
        let anomaly: Anomaly = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(anomaly.series.subject, AnomalySubject::Function("fan".into()));
        assert_eq!(serde_json::to_value(&anomaly).unwrap(), json);
        let platform = serde_json::to_value(AnomalySubject::Platform).unwrap();
        assert_eq!(platform, serde_json::json!({ "kind": "platform" }));
    }
}
