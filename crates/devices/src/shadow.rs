//! A device shadow: the state an operator wants (`desired`), the state the
//! device says it has (`reported`), and what differs (`delta`, computed).
//! Every change bumps `version`; an update may name the version it was
//! based on and is refused if the shadow moved on (optimistic concurrency).
//! `metadata` mirrors both documents with the time each value last changed.
//!
//! Updates merge like AWS IoT's: objects merge key by key, any other value
//! replaces, and `null` removes a key.

use chrono::{DateTime, SecondsFormat, Utc};
use glassbox_core::{ShadowDocument, ShadowMetadata};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Bounds on one shadow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShadowLimits {
    /// Largest `desired` plus `reported`, as JSON bytes. Default 8 KiB.
    pub bytes_max: usize,
    /// Deepest nesting of objects in either document. Default 6.
    pub depth_max: usize,
}

impl Default for ShadowLimits {
    fn default() -> Self {
        Self { bytes_max: 8 * 1024, depth_max: 6 }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Shadow {
    pub version: u64,
    pub desired: Map<String, Value>,
    pub reported: Map<String, Value>,
    /// `desired` and `reported` mirrored, each leaf `{"timestamp": …}`.
    pub metadata: Metadata,
    pub updated_at: Option<DateTime<Utc>>,
}

/// The shadow's metadata, in the shape its documents carry to devices.
pub type Metadata = ShadowMetadata;

/// An update as sent over MQTT or HTTP: `{"state": {"desired": …,
/// "reported": …}, "version": N, "clientToken": "…"}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowUpdate {
    pub state: UpdateState,
    /// The version this update was based on; refused if the shadow moved on.
    #[serde(default)]
    pub version: Option<u64>,
    /// Echoed in the answer so a device can match it to its request.
    #[serde(default, rename = "clientToken")]
    pub client_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateState {
    #[serde(default)]
    pub desired: Option<Value>,
    #[serde(default)]
    pub reported: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShadowError {
    /// The request is not a valid update; says what is wrong.
    #[error("{0}")]
    Invalid(String),
    #[error("version {given} is stale: the shadow is at version {current}; get it, then update again")]
    VersionConflict { given: u64, current: u64 },
    #[error("the shadow would be {bytes} bytes, over the limit of {max}; remove keys with null")]
    TooLarge { bytes: usize, max: usize },
    #[error("{document} nests {depth} levels deep, over the limit of {max}")]
    TooDeep { document: &'static str, depth: usize, max: usize },
}

impl ShadowError {
    /// The HTTP status and MQTT `rejected` code for it.
    pub fn code(&self) -> u16 {
        match self {
            ShadowError::Invalid(_) | ShadowError::TooDeep { .. } => 400,
            ShadowError::VersionConflict { .. } => 409,
            ShadowError::TooLarge { .. } => 413,
        }
    }
}

/// What an update looks like, for the messages that refuse one.
const UPDATE_SHAPE: &str =
    r#"send {"state": {"desired": {…}}} or {"state": {"reported": {…}}}, optionally with "version": N"#;

impl ShadowUpdate {
    /// Parses an update from JSON bytes, naming what is wrong in the
    /// sender's terms (the fields it sent, not the types that read them).
    pub fn parse(bytes: &[u8]) -> Result<Self, ShadowError> {
        let invalid = |what: String| ShadowError::Invalid(format!("{what}; {UPDATE_SHAPE}"));
        let value: Value = serde_json::from_slice(bytes).map_err(|e| match e.is_eof() && e.column() == 0 {
            true => invalid("the update is empty".into()),
            false => invalid(format!("the update is not JSON (line {}, column {})", e.line(), e.column())),
        })?;
        let Value::Object(mut update) = value else {
            return Err(invalid(format!("the update is {}, not a JSON object", kind(&value))));
        };
        let state = match update.remove("state") {
            Some(Value::Object(state)) => state,
            Some(other) => return Err(invalid(format!("state is {}, not a JSON object", kind(&other)))),
            None => return Err(invalid("the update has no state".into())),
        };
        let version = match update.remove("version") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
            Some(other) => return Err(invalid(format!("version {other} is not a whole number, 0 or more"))),
        };
        let client_token = match update.remove("clientToken") {
            None | Some(Value::Null) => None,
            Some(Value::String(token)) => Some(token),
            Some(other) => return Err(invalid(format!("clientToken is {}, not a string", kind(&other)))),
        };
        let unknown = |keys: Vec<&String>, place: &str, takes: &str| {
            let names: Vec<_> = keys.iter().map(|k| format!("{k:?}")).collect();
            invalid(format!("{place} has {}, which it does not take ({takes} only)", names.join(", ")))
        };
        if !update.is_empty() {
            return Err(unknown(update.keys().collect(), "the update", "state, version and clientToken"));
        }
        let extra: Vec<&String> = state.keys().filter(|k| *k != "desired" && *k != "reported").collect();
        if !extra.is_empty() {
            return Err(unknown(extra, "state", "desired and reported"));
        }
        let state = UpdateState { desired: state.get("desired").cloned(), reported: state.get("reported").cloned() };
        Ok(Self { state, version, client_token })
    }
}

impl Shadow {
    /// What `desired` asks for that `reported` does not show.
    pub fn delta(&self) -> Map<String, Value> {
        delta(&self.desired, &self.reported)
    }

    /// Applies an update: checks it, merges it, bumps the version. Leaves
    /// the shadow unchanged on error. Returns true if anything changed.
    pub fn apply(
        &mut self,
        update: &ShadowUpdate,
        limits: ShadowLimits,
        now: DateTime<Utc>,
    ) -> Result<bool, ShadowError> {
        if let Some(given) = update.version
            && given != self.version
        {
            return Err(ShadowError::VersionConflict { given, current: self.version });
        }
        let desired = as_object("desired", update.state.desired.as_ref())?;
        let reported = as_object("reported", update.state.reported.as_ref())?;
        if desired.is_none() && reported.is_none() {
            return Err(ShadowError::Invalid("the update has neither state.desired nor state.reported".into()));
        }
        let mut next = self.clone();
        let stamp = Value::String(now.to_rfc3339_opts(SecondsFormat::Millis, true));
        if let Some(changes) = desired {
            merge(&mut next.desired, &mut next.metadata.desired, changes, &stamp);
        }
        if let Some(changes) = reported {
            merge(&mut next.reported, &mut next.metadata.reported, changes, &stamp);
        }
        for (name, document) in [("state.desired", &next.desired), ("state.reported", &next.reported)] {
            let depth = depth(document);
            if depth > limits.depth_max {
                return Err(ShadowError::TooDeep { document: name, depth, max: limits.depth_max });
            }
        }
        let bytes = Value::Object(next.desired.clone()).to_string().len()
            + Value::Object(next.reported.clone()).to_string().len();
        if bytes > limits.bytes_max {
            return Err(ShadowError::TooLarge { bytes, max: limits.bytes_max });
        }
        let changed = next.desired != self.desired || next.reported != self.reported;
        if changed {
            next.version += 1;
            next.updated_at = Some(now);
            *self = next;
        }
        Ok(changed)
    }

    /// The shadow as answered to devices and clients: documents, delta,
    /// version, metadata.
    pub fn document(&self, device: &str) -> ShadowDocument {
        ShadowDocument {
            device: device.to_string(),
            version: self.version,
            desired: self.desired.clone(),
            reported: self.reported.clone(),
            delta: self.delta(),
            metadata: self.metadata.clone(),
            updated_at: self.updated_at,
        }
    }
}

fn as_object<'a>(name: &str, value: Option<&'a Value>) -> Result<Option<&'a Map<String, Value>>, ShadowError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(ShadowError::Invalid(format!(
            "state.{name} must be a JSON object of keys and values, not {}",
            kind(other)
        ))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Merges `changes` into `target`, stamping each changed leaf in `meta`.
fn merge(target: &mut Map<String, Value>, meta: &mut Map<String, Value>, changes: &Map<String, Value>, stamp: &Value) {
    for (key, change) in changes {
        match change {
            Value::Null => {
                target.remove(key);
                meta.remove(key);
            }
            Value::Object(inner) => {
                if !matches!(target.get(key), Some(Value::Object(_))) {
                    target.insert(key.clone(), Value::Object(Map::new()));
                }
                if !matches!(meta.get(key), Some(Value::Object(m)) if !m.contains_key("timestamp")) {
                    meta.insert(key.clone(), Value::Object(Map::new()));
                }
                if let (Some(Value::Object(t)), Some(Value::Object(m))) = (target.get_mut(key), meta.get_mut(key)) {
                    merge(t, m, inner, stamp);
                }
                if target.get(key).is_some_and(|v| v.as_object().is_some_and(Map::is_empty)) {
                    target.remove(key);
                    meta.remove(key);
                }
            }
            value => {
                target.insert(key.clone(), value.clone());
                meta.insert(key.clone(), serde_json::json!({ "timestamp": stamp }));
            }
        }
    }
}

fn delta(desired: &Map<String, Value>, reported: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, want) in desired {
        match (want, reported.get(key)) {
            (Value::Object(want), Some(Value::Object(have))) => {
                let inner = delta(want, have);
                if !inner.is_empty() {
                    out.insert(key.clone(), Value::Object(inner));
                }
            }
            (want, Some(have)) if want == have => {}
            (want, _) => drop(out.insert(key.clone(), want.clone())),
        }
    }
    out
}

fn depth(map: &Map<String, Value>) -> usize {
    1 + map.values().map(|v| if let Value::Object(m) = v { depth(m) } else { 0 }).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn update(value: Value) -> ShadowUpdate {
        ShadowUpdate::parse(value.to_string().as_bytes()).unwrap()
    }

    fn apply(shadow: &mut Shadow, value: Value) -> Result<bool, ShadowError> {
        shadow.apply(&update(value), ShadowLimits::default(), Utc::now())
    }

    #[test]
    fn the_delta_is_what_desired_asks_and_reported_lacks() {
        let mut s = Shadow::default();
        apply(&mut s, json!({"state": {"desired": {"mode": "eco", "fan": {"speed": 2, "on": true}}}})).unwrap();
        assert_eq!(s.version, 1);
        assert_eq!(Value::Object(s.delta()), json!({"mode": "eco", "fan": {"speed": 2, "on": true}}));
        apply(&mut s, json!({"state": {"reported": {"mode": "eco", "fan": {"speed": 1, "on": true}, "temp": 21}}}))
            .unwrap();
        assert_eq!(s.version, 2);
        assert_eq!(Value::Object(s.delta()), json!({"fan": {"speed": 2}}));
        apply(&mut s, json!({"state": {"reported": {"fan": {"speed": 2}}}})).unwrap();
        assert!(s.delta().is_empty(), "reported caught up");
    }

    #[test]
    fn null_removes_and_metadata_stamps_leaves() {
        let mut s = Shadow::default();
        apply(&mut s, json!({"state": {"desired": {"a": 1, "b": {"c": 2}}}})).unwrap();
        assert!(s.metadata.desired["b"]["c"]["timestamp"].is_string());
        apply(&mut s, json!({"state": {"desired": {"a": null, "b": {"c": null}}}})).unwrap();
        assert!(s.desired.is_empty(), "{:?}", s.desired);
        assert!(s.metadata.desired.is_empty());
    }

    #[test]
    fn an_update_that_changes_nothing_keeps_the_version() {
        let mut s = Shadow::default();
        apply(&mut s, json!({"state": {"reported": {"a": 1}}})).unwrap();
        assert_eq!(apply(&mut s, json!({"state": {"reported": {"a": 1}}})), Ok(false));
        assert_eq!(s.version, 1);
    }

    #[test]
    fn bad_updates_are_refused_and_leave_the_shadow_alone() {
        let mut s = Shadow::default();
        apply(&mut s, json!({"state": {"desired": {"a": 1}}})).unwrap();
        let before = s.clone();
        assert_eq!(
            apply(&mut s, json!({"state": {"desired": {"a": 2}}, "version": 0})),
            Err(ShadowError::VersionConflict { given: 0, current: 1 })
        );
        assert!(
            matches!(apply(&mut s, json!({"state": {"desired": [1, 2]}})), Err(ShadowError::Invalid(m)) if m.contains("an array"))
        );
        assert!(matches!(apply(&mut s, json!({"state": {}})), Err(ShadowError::Invalid(_))));
        let deep = json!({"state": {"desired": {"1": {"2": {"3": {"4": {"5": {"6": {"7": 1}}}}}}}}});
        assert!(matches!(apply(&mut s, deep), Err(ShadowError::TooDeep { depth: 7, .. })));
        let big = json!({"state": {"reported": {"blob": "x".repeat(9000)}}});
        assert!(matches!(apply(&mut s, big), Err(ShadowError::TooLarge { .. })));
        assert!(matches!(ShadowUpdate::parse(b"not json"), Err(ShadowError::Invalid(_))));
        assert!(matches!(ShadowUpdate::parse(br#"{"state":{},"extra":1}"#), Err(ShadowError::Invalid(_))));
        // What is wrong is said in the sender's terms, not the parser's.
        for (update, says) in [
            (&br#"{"state":"x"}"#[..], "state is a string, not a JSON object"),
            (br#"[1]"#, "the update is an array, not a JSON object"),
            (br#"{"state":{"wanted":{}}}"#, r#"state has "wanted""#),
            (br#"{"state":{},"version":-1}"#, "version -1 is not a whole number"),
            (b"", "the update is empty"),
        ] {
            let message = ShadowUpdate::parse(update).unwrap_err().to_string();
            assert!(message.contains(says) && message.contains(r#"{"state": {"desired""#), "{message}");
            assert!(!message.contains("UpdateState") && !message.contains("struct"), "{message}");
        }
        assert_eq!(s, before);
        assert_eq!(apply(&mut s, json!({"state": {"desired": {"a": 2}}, "version": 1})), Ok(true));
    }
}
