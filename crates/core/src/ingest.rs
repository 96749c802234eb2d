//! Producer input → [`Draft`]: validation of structured-mode CloudEvents JSON.
//!
//! Validation reports every offending attribute at once, each named, so a
//! producer can fix its event in one round trip. Nothing here mints ids or
//! touches storage: the pipeline turns a [`Draft`] into an [`Event`].

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::{Data, Event, EventId, TraceParent, validate_device_id};

/// Bounds applied to producer input.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest `data` (decoded bytes for `data_base64`). Default 256 KiB.
    pub data_bytes_max: usize,
    /// Longest string attribute. Default 1024 bytes.
    pub attribute_bytes_max: usize,
    /// Most extension attributes besides Glassbox's own. Default 32.
    pub extensions_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { data_bytes_max: 256 * 1024, attribute_bytes_max: 1024, extensions_max: 32 }
    }
}

/// One thing wrong with an input, and where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

/// Everything wrong with an input event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub problems: Vec<Problem>,
}

impl ValidationError {
    fn single(field: &str, message: impl Into<String>) -> Self {
        Self { problems: vec![Problem { field: field.into(), message: message.into() }] }
    }

    /// True when the whole event is over a size bound (answered with 413).
    pub fn is_too_large(&self) -> bool {
        self.problems.iter().any(|p| p.message.starts_with("too large"))
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid event: ")?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", p.field, p.message)?;
        }
        Ok(())
    }
}

/// A validated event that has no id yet.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    pub source: String,
    pub ty: String,
    pub subject: Option<String>,
    pub time: Option<DateTime<Utc>>,
    pub datacontenttype: Option<String>,
    pub dataschema: Option<String>,
    pub correlationid: Option<String>,
    pub causationid: Option<String>,
    pub hop: Option<u32>,
    pub traceparent: Option<String>,
    pub device: Option<String>,
    pub feature: Option<String>,
    pub datasubject: Option<String>,
    pub tenant: Option<String>,
    pub originid: Option<String>,
    pub extensions: BTreeMap<String, Value>,
    pub data: Data,
}

/// What a draft inherits from its parent event, when the parent is known.
#[derive(Debug, Clone)]
pub struct Lineage {
    pub correlationid: String,
    pub hop: u32,
    pub traceparent: Option<String>,
}

impl Draft {
    /// A draft with `data` as JSON (`application/json`): how the platform
    /// records its own events. Set the other attributes on the result.
    pub fn json<T: serde::Serialize + ?Sized>(source: impl Into<String>, ty: impl Into<String>, data: &T) -> Self {
        let data = Data::of(data);
        Self {
            source: source.into(),
            ty: ty.into(),
            datacontenttype: Some("application/json".into()),
            data,
            ..Self::default()
        }
    }

    /// Completes the draft with its minted id. Correlation, hop and trace
    /// come from the producer, else from the parent, else start a new chain.
    pub fn into_event(self, id: EventId, now: DateTime<Utc>, parent: Option<&Lineage>) -> Event {
        let correlationid =
            self.correlationid.or_else(|| parent.map(|p| p.correlationid.clone())).unwrap_or_else(|| id.to_string());
        // A producer may raise its depth (a chain continued from elsewhere),
        // never lower it: the recursion guard reads it.
        let inherited = match (parent, &self.causationid) {
            (Some(p), _) => p.hop.saturating_add(1),
            (None, Some(_)) => 1,
            (None, None) => 0,
        };
        let hop = self.hop.map_or(inherited, |asked| asked.max(inherited));
        let traceparent = self
            .traceparent
            .or_else(|| parent.and_then(|p| p.traceparent.clone()))
            .or_else(|| Some(TraceParent::for_origin(id).to_string()));
        Event {
            id,
            source: self.source,
            ty: self.ty,
            subject: self.subject,
            // The recorder keeps microseconds.
            time: self.time.unwrap_or(now).trunc_subsecs(6),
            datacontenttype: self.datacontenttype,
            dataschema: self.dataschema,
            correlationid,
            causationid: self.causationid,
            hop,
            traceparent,
            device: self.device,
            feature: self.feature,
            datasubject: self.datasubject,
            tenant: self.tenant,
            originid: self.originid,
            extensions: self.extensions,
            data: self.data,
        }
    }
}

/// Hop values above this are refused at ingress: far past any recursion limit.
const HOP_MAX: u64 = 1 << 16;

/// A string attribute's value: not empty, within the length bound, and no
/// control characters (CloudEvents forbids U+0000–U+001F and U+007F–U+009F).
pub fn check_text(value: &str, limits: &Limits) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > limits.attribute_bytes_max {
        return Err(format!("longer than {} bytes", limits.attribute_bytes_max));
    }
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!(
            "contains the control character U+{:04X}; CloudEvents attributes may not hold control characters",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

/// `causationid`: the parent event's id as Glassbox minted it, returned
/// in its canonical (upper-case) form.
pub fn check_causationid(value: &str) -> Result<String, String> {
    value.parse::<EventId>().map(|id| id.to_string()).map_err(|_| {
        format!(
            "{value:?} is not an event id: give the parent event's id as Glassbox minted it (26 characters, \
             like 01JD6Y8Q1W3N4ZV7K2M5P9R0ST)"
        )
    })
}

/// `dataschema`: an absolute URI (RFC 3986: a scheme, `:`, and the rest,
/// without spaces).
fn check_uri(value: &str) -> Result<(), String> {
    let scheme_ok = |scheme: &str| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    };
    match value.split_once(':') {
        Some((scheme, rest)) if scheme_ok(scheme) && !rest.is_empty() && !value.contains(char::is_whitespace) => Ok(()),
        _ => Err(format!(
            "{value:?} is not a URI: give an absolute URI with a scheme, like https://example.com/schemas/reading.json"
        )),
    }
}

/// Parses one structured-mode CloudEvent (JSON object) into a [`Draft`].
pub fn parse_cloudevent(body: &[u8], limits: &Limits) -> Result<Draft, ValidationError> {
    let attributes: BTreeMap<String, &RawValue> = match serde_json::from_slice::<&RawValue>(body) {
        Err(e) => {
            return Err(ValidationError::single("body", format!("malformed JSON: {e}")));
        }
        Ok(raw) if !raw.get().trim_start().starts_with('{') => {
            return Err(ValidationError::single("body", "expected a JSON object (a structured-mode CloudEvent)"));
        }
        Ok(raw) => serde_json::from_str(raw.get())
            .map_err(|e| ValidationError::single("body", format!("malformed JSON: {e}")))?,
    };
    let mut reader = Reader { attributes, limits, problems: Vec::new() };
    let draft = reader.draft();
    if reader.problems.is_empty() { Ok(draft) } else { Err(ValidationError { problems: reader.problems }) }
}

struct Reader<'a> {
    attributes: BTreeMap<String, &'a RawValue>,
    limits: &'a Limits,
    problems: Vec<Problem>,
}

impl Reader<'_> {
    fn draft(&mut self) -> Draft {
        match self.string("specversion") {
            Some(v) if v == "1.0" => {}
            Some(v) => self.problem("specversion", format!("unsupported version {v:?}; only \"1.0\" is accepted")),
            None => self.missing("specversion"),
        }
        if self.attributes.contains_key("originid") {
            self.problem("originid", "set by Glassbox from the producer's `id`; send `id` instead");
        }
        let source = self.required("source");
        let ty = self.required("type");
        let draft = Draft {
            source,
            ty,
            originid: self.string("id"),
            subject: self.string("subject"),
            time: self.time(),
            datacontenttype: self.string("datacontenttype"),
            dataschema: self.checked("dataschema", |v| check_uri(&v).map(|()| v)),
            correlationid: self.string("correlationid"),
            causationid: self.checked("causationid", |v| check_causationid(&v)),
            hop: self.hop(),
            traceparent: self.traceparent(),
            device: self.checked("device", |v| validate_device_id(&v).map(|()| v)),
            feature: self.string("feature"),
            datasubject: self.string("datasubject"),
            tenant: self.string("tenant"),
            data: self.data(),
            extensions: BTreeMap::new(),
        };
        Draft { extensions: self.extensions(), ..draft }
    }

    fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(Problem { field: field.into(), message: message.into() });
    }

    fn missing(&mut self, field: &str) {
        self.problem(field, "missing required attribute");
    }

    fn required(&mut self, name: &str) -> String {
        let present = self.attributes.contains_key(name);
        match self.string(name) {
            Some(value) => value,
            None if !present => {
                self.missing(name);
                String::new()
            }
            None => String::new(),
        }
    }

    /// A string attribute that passes [`check_text`].
    fn string(&mut self, name: &str) -> Option<String> {
        let raw = self.attributes.remove(name)?;
        match serde_json::from_str::<Value>(raw.get()) {
            Ok(Value::String(s)) => match check_text(&s, self.limits) {
                Ok(()) => return Some(s),
                Err(message) => self.problem(name, message),
            },
            Ok(Value::Null) => {}
            _ => self.problem(name, "must be a string"),
        }
        None
    }

    /// A string attribute that also passes `check`, as `check` returns it.
    fn checked(&mut self, name: &str, check: impl FnOnce(String) -> Result<String, String>) -> Option<String> {
        let value = self.string(name)?;
        check(value).map_err(|message| self.problem(name, message)).ok()
    }

    fn time(&mut self) -> Option<DateTime<Utc>> {
        let value = self.string("time")?;
        match DateTime::parse_from_rfc3339(&value) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(e) => {
                self.problem("time", format!("not an RFC 3339 timestamp ({e}): {value:?}"));
                None
            }
        }
    }

    fn hop(&mut self) -> Option<u32> {
        let raw = self.attributes.remove("hop")?;
        let hop = match serde_json::from_str::<Value>(raw.get()) {
            Ok(Value::Number(n)) => n.as_u64(),
            Ok(Value::String(s)) => s.parse::<u64>().ok(),
            _ => None,
        };
        match hop {
            Some(hop) if hop <= HOP_MAX => Some(hop as u32),
            _ => {
                self.problem("hop", format!("must be an integer from 0 to {HOP_MAX}"));
                None
            }
        }
    }

    fn traceparent(&mut self) -> Option<String> {
        let value = self.string("traceparent")?;
        match TraceParent::parse(&value) {
            Ok(tp) => Some(tp.to_string()),
            Err(e) => {
                self.problem("traceparent", format!("not a W3C traceparent: {e}"));
                None
            }
        }
    }

    fn data(&mut self) -> Data {
        let json = self.attributes.remove("data");
        let base64 = self.attributes.remove("data_base64");
        let data = match (json, base64) {
            (Some(_), Some(_)) => {
                self.problem("data", "give either data or data_base64, not both");
                return Data::None;
            }
            (Some(raw), None) if raw.get() == "null" => Data::None,
            (Some(raw), None) => match crate::check_json(raw.get()) {
                Ok(()) => Data::Json(raw.to_owned()),
                Err(e) => {
                    let why = format!(
                        "cannot be read back as JSON ({e}): at most 127 levels of nesting, numbers within an f64, no lone surrogates in strings; send it as data_base64 if it is opaque"
                    );
                    self.problem("data", why);
                    return Data::None;
                }
            },
            (None, Some(raw)) => match serde_json::from_str::<String>(raw.get()).map(|s| BASE64.decode(s)) {
                Ok(Ok(bytes)) => Data::Binary(bytes),
                _ => {
                    self.problem("data_base64", "must be a base64 string");
                    return Data::None;
                }
            },
            (None, None) => Data::None,
        };
        if data.len() > self.limits.data_bytes_max {
            self.problem(
                "data",
                format!("too large: {} bytes, the limit is {}", data.len(), self.limits.data_bytes_max),
            );
        }
        data
    }

    /// What is left are extension attributes: CloudEvents names (a-z, 0-9,
    /// at most 20 characters) with string, number or boolean values.
    fn extensions(&mut self) -> BTreeMap<String, Value> {
        let attributes = std::mem::take(&mut self.attributes);
        if attributes.len() > self.limits.extensions_max {
            self.problem(
                "extensions",
                format!("{} extension attributes, the limit is {}", attributes.len(), self.limits.extensions_max),
            );
        }
        let mut extensions = BTreeMap::new();
        for (name, raw) in attributes {
            if name.is_empty() || name.len() > 20 || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                self.problem(&name, "not a valid attribute name: use 1-20 lowercase letters and digits");
                continue;
            }
            match serde_json::from_str::<Value>(raw.get()) {
                // An empty string is a value an extension may have.
                Ok(Value::String(s)) => match check_text(&s, self.limits) {
                    Err(message) if !s.is_empty() => self.problem(&name, message),
                    _ => drop(extensions.insert(name, Value::String(s))),
                },
                Ok(v @ (Value::Number(_) | Value::Bool(_))) => {
                    extensions.insert(name, v);
                }
                _ => self.problem(&name, "extension values must be a string, number or boolean"),
            }
        }
        extensions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Draft, ValidationError> {
        parse_cloudevent(json.as_bytes(), &Limits::default())
    }

    fn fields(err: ValidationError) -> Vec<String> {
        err.problems.into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn minimal_event_parses() {
        let d = parse(r#"{"specversion":"1.0","source":"s","type":"t"}"#).unwrap();
        assert_eq!((d.source.as_str(), d.ty.as_str()), ("s", "t"));
        assert!(d.originid.is_none());
    }

    #[test]
    fn producer_id_becomes_originid_and_extensions_are_kept() {
        let d = parse(
            r#"{"specversion":"1.0","id":"abc","source":"s","type":"t","device":"d1","hop":3,
            "region":"eu","priority":2,"data":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(d.originid.as_deref(), Some("abc"));
        assert_eq!(d.device.as_deref(), Some("d1"));
        assert_eq!(d.hop, Some(3));
        assert_eq!(d.extensions.len(), 2);
        assert!(matches!(d.data, Data::Json(ref raw) if raw.get() == r#"{"x":1}"#));
    }

    #[test]
    fn every_missing_required_attribute_is_named() {
        let err = parse("{}").unwrap_err();
        assert_eq!(fields(err), ["specversion", "source", "type"]);
    }

    #[test]
    fn malformed_json_names_the_body() {
        let err = parse(r#"{"specversion":"1.0","#).unwrap_err();
        assert_eq!(err.problems[0].field, "body");
        assert!(err.problems[0].message.contains("malformed JSON"));
        assert_eq!(fields(parse("[1,2]").unwrap_err()), ["body"]);
    }

    #[test]
    fn bad_attribute_values_are_named() {
        let err = parse(
            r#"{"specversion":"0.3","source":"","type":5,"time":"yesterday","hop":-1,
            "traceparent":"nope","data_base64":"!!!","Bad-Name":"x","nested":{"a":1}}"#,
        )
        .unwrap_err();
        let mut got = fields(err);
        got.sort();
        assert_eq!(
            got,
            ["Bad-Name", "data_base64", "hop", "nested", "source", "specversion", "time", "traceparent", "type"]
        );
    }

    #[test]
    fn context_attributes_are_checked_for_what_they_name() {
        let err = parse(
            r#"{"specversion":"1.0","source":"s\u0007","type":"t\u001b[31m","subject":"\u0085",
            "causationid":"zzz","dataschema":"::::","device":"a/b#"}"#,
        )
        .unwrap_err();
        let mut got = fields(err.clone());
        got.sort();
        assert_eq!(got, ["causationid", "dataschema", "device", "source", "subject", "type"], "{err}");
        assert!(err.to_string().contains("U+001B"), "{err}");
        let d = parse(
            r#"{"specversion":"1.0","source":"s","type":"t","causationid":"01jd6y8q1w3n4zv7k2m5p9r0st",
            "dataschema":"urn:example:reading","device":"site.a:7","note":""}"#,
        )
        .unwrap();
        assert_eq!(d.causationid.as_deref(), Some("01JD6Y8Q1W3N4ZV7K2M5P9R0ST"), "canonical form");
        assert!(check_uri("https://example.com/s.json").is_ok() && check_uri("a b:c").is_err());
    }

    #[test]
    fn oversize_data_is_too_large() {
        let limits = Limits { data_bytes_max: 8, ..Limits::default() };
        let err = parse_cloudevent(br#"{"specversion":"1.0","source":"s","type":"t","data":"0123456789"}"#, &limits)
            .unwrap_err();
        assert!(err.is_too_large(), "{err}");
    }

    #[test]
    fn lineage_is_inherited_from_the_parent() {
        let id = crate::IdMinter::new().mint();
        let parent = Lineage { correlationid: "chain-1".into(), hop: 4, traceparent: None };
        let draft = Draft { causationid: Some("p".into()), ..Draft::default() };
        let event = draft.into_event(id, Utc::now(), Some(&parent));
        assert_eq!((event.correlationid.as_str(), event.hop), ("chain-1", 5));
        let lowered = Draft { causationid: Some("p".into()), hop: Some(0), ..Draft::default() };
        assert_eq!(lowered.into_event(id, Utc::now(), Some(&parent)).hop, 5, "a producer cannot lower its depth");
        let raised = Draft { hop: Some(9), ..Draft::default() };
        assert_eq!(raised.into_event(id, Utc::now(), None).hop, 9);
        let origin = Draft::default().into_event(id, Utc::now(), None);
        assert_eq!((origin.correlationid, origin.hop), (id.to_string(), 0));
        assert!(origin.traceparent.unwrap().contains(&format!("{:032x}", id.0)));
    }
}
