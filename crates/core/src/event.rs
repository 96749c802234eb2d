//! The event record and its CloudEvents 1.0 JSON form.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

use crate::{EventId, State};

/// An event's payload, kept as the producer sent it.
#[derive(Debug, Clone, Default)]
pub enum Data {
    #[default]
    None,
    /// JSON text, stored and returned byte for byte (`data` in CloudEvents JSON).
    Json(Box<RawValue>),
    /// Opaque bytes (`data_base64` in CloudEvents JSON).
    Binary(Vec<u8>),
}

impl PartialEq for Data {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Data::None, Data::None) => true,
            (Data::Json(a), Data::Json(b)) => a.get() == b.get(),
            (Data::Binary(a), Data::Binary(b)) => a == b,
            _ => false,
        }
    }
}

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::None => 0,
            Data::Json(raw) => raw.get().len(),
            Data::Binary(bytes) => bytes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// JSON text as data, if every reader can parse it back: [`check_json`].
    pub fn json_text(text: &str) -> Result<Data, serde_json::Error> {
        check_json(text)?;
        RawValue::from_string(text.to_string()).map(Data::Json)
    }

    /// The data parsed as JSON, when it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        match self {
            Data::Json(raw) => serde_json::from_str(raw.get()).ok(),
            _ => None,
        }
    }
}

/// Checks that `text` parses back as a `serde_json::Value`, which is how
/// every reader (the API, the CLI, metrics, functions) reads data: within
/// serde_json's nesting limit (127 levels), numbers that fit an `f64`, strings
/// without lone surrogates. Syntactically valid JSON can fail this
/// (`1e999999`, `"\ud800"`, 129 nested arrays); such data is refused or
/// kept as bytes at ingest, never stored as JSON that breaks a read.
/// Allocates nothing but strings with escapes.
pub fn check_json(text: &str) -> Result<(), serde_json::Error> {
    serde_json::from_str::<Readable>(text).map(|_| ())
}

/// Parses any JSON value the way `serde_json::Value` does, keeping nothing.
struct Readable;

impl<'de> serde::Deserialize<'de> for Readable {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ReadableVisitor)
    }
}

struct ReadableVisitor;

impl<'de> serde::de::Visitor<'de> for ReadableVisitor {
    type Value = Readable;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_str<E>(self, _: &str) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_unit<E>(self) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Readable, A::Error> {
        while seq.next_element::<Readable>()?.is_some() {}
        Ok(Readable)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Readable, A::Error> {
        while map.next_entry::<Readable, Readable>()?.is_some() {}
        Ok(Readable)
    }
}

/// One event: the CloudEvents context attributes, Glassbox's extensions and
/// the data. Immutable once recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub source: String,
    pub ty: String,
    pub subject: Option<String>,
    /// The producer's time, or the receive time when the producer gave none.
    pub time: DateTime<Utc>,
    pub datacontenttype: Option<String>,
    pub dataschema: Option<String>,
    /// The chain this event belongs to: inherited from its parent, accepted
    /// from the producer, or the event's own id at the origin.
    pub correlationid: String,
    /// The parent event's id; `None` at the origin of a chain.
    pub causationid: Option<String>,
    /// Lineage depth: 0 at the origin, parent's hop + 1 below it.
    pub hop: u32,
    /// W3C trace context, so OpenTelemetry tools see the same trace.
    pub traceparent: Option<String>,
    pub device: Option<String>,
    pub feature: Option<String>,
    pub datasubject: Option<String>,
    pub tenant: Option<String>,
    /// The producer's own `id`, kept for de-duplication of retries.
    pub originid: Option<String>,
    /// Other CloudEvents extension attributes, as the producer sent them.
    pub extensions: BTreeMap<String, serde_json::Value>,
    pub data: Data,
}

/// One step of an event's life: `received`, `in_transit` to a target, …
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StateRecord {
    pub state: State,
    #[serde(serialize_with = "serialize_time")]
    pub at: DateTime<Utc>,
    /// The delivery target (function, subscriber, device); `None` for
    /// event-level states such as `received`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Why, or with what: the ingress of `received`, the reason of `dropped`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The node that recorded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// An event as the recorder holds it: the event and its states in order.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub event: Event,
    pub states: Vec<StateRecord>,
}

fn serialize_time<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(time))
}

/// RFC 3339 with microseconds, the precision the recorder keeps.
pub fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Event {
    fn serialize_fields<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        map.serialize_entry("specversion", "1.0")?;
        map.serialize_entry("id", &self.id.to_string())?;
        map.serialize_entry("source", &self.source)?;
        map.serialize_entry("type", &self.ty)?;
        entry_opt(map, "subject", &self.subject)?;
        map.serialize_entry("time", &format_time(&self.time))?;
        entry_opt(map, "datacontenttype", &self.datacontenttype)?;
        entry_opt(map, "dataschema", &self.dataschema)?;
        map.serialize_entry("correlationid", &self.correlationid)?;
        entry_opt(map, "causationid", &self.causationid)?;
        map.serialize_entry("hop", &self.hop)?;
        entry_opt(map, "traceparent", &self.traceparent)?;
        entry_opt(map, "device", &self.device)?;
        entry_opt(map, "feature", &self.feature)?;
        entry_opt(map, "datasubject", &self.datasubject)?;
        entry_opt(map, "tenant", &self.tenant)?;
        entry_opt(map, "originid", &self.originid)?;
        for (name, value) in &self.extensions {
            map.serialize_entry(name, value)?;
        }
        match &self.data {
            Data::None => Ok(()),
            Data::Json(raw) => map.serialize_entry("data", raw),
            Data::Binary(bytes) => map.serialize_entry("data_base64", &BASE64.encode(bytes)),
        }
    }
}

fn entry_opt<M: SerializeMap>(map: &mut M, key: &str, value: &Option<String>) -> Result<(), M::Error> {
    match value {
        Some(value) => map.serialize_entry(key, value),
        None => Ok(()),
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        self.serialize_fields(&mut map)?;
        map.end()
    }
}

/// Serialized as the CloudEvent plus a `states` array.
impl Serialize for RecordedEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        self.event.serialize_fields(&mut map)?;
        map.serialize_entry("states", &self.states)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17, finding 1: the poison shapes that are valid JSON text but
    /// break every reader, and the deepest nesting a reader still takes.
    #[test]
    fn data_no_reader_can_parse_back_is_not_json_data() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        for poison in
            [deep(128), deep(129), r#""\ud800""#.to_string(), "1e999999".to_string(), r#"{"a":[1,"\udfff"]}"#.into()]
        {
            assert!(serde_json::from_str::<serde_json::Value>(&poison).is_err(), "a reader fails on {poison}");
            assert!(Data::json_text(&poison).is_err(), "{poison} is refused");
        }
        for fine in
            [deep(127), r#""\ud83d\ude00""#.to_string(), "1e308".into(), r#"{"a":{"b":[1,2.5,null,true]}}"#.into()]
        {
            assert!(serde_json::from_str::<serde_json::Value>(&fine).is_ok(), "a reader takes {fine}");
            assert!(Data::json_text(&fine).is_ok(), "{fine} is accepted");
        }
    }
    use crate::IdMinter;

    fn sample() -> Event {
        let id = IdMinter::new().mint();
        Event {
            id,
            source: "sensors/thermo-1".into(),
            ty: "telemetry.temperature".into(),
            subject: None,
            time: Utc::now(),
            datacontenttype: Some("application/json".into()),
            dataschema: None,
            correlationid: id.to_string(),
            causationid: None,
            hop: 0,
            traceparent: None,
            device: Some("thermo-1".into()),
            feature: None,
            datasubject: None,
            tenant: None,
            originid: None,
            extensions: BTreeMap::from([("region".to_string(), "eu".into())]),
            data: Data::Json(RawValue::from_string(r#"{"c": 21.5}"#.into()).unwrap()),
        }
    }

    #[test]
    fn serializes_as_cloudevents_json_with_extensions() {
        let event = sample();
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["type"], "telemetry.temperature");
        assert_eq!(json["correlationid"], event.id.to_string());
        assert_eq!(json["hop"], 0);
        assert_eq!(json["device"], "thermo-1");
        assert_eq!(json["region"], "eu");
        assert_eq!(json["data"]["c"], 21.5);
        assert!(json.get("causationid").is_none(), "absent at the origin");
    }

    #[test]
    fn binary_data_is_base64() {
        let mut event = sample();
        event.data = Data::Binary(vec![0, 1, 2, 255]);
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["data_base64"], "AAEC/w==");
        assert!(json.get("data").is_none());
    }
}
