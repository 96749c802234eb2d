//! The platform's own events: each type name a constant and each payload a
//! serde type, shared by the part that records it and every reader (metrics,
//! diagnosis, OTLP, the API, the CLI). A field renamed here is renamed for
//! all of them at once, and a record that no longer fits is an error naming
//! the event, never a metric silently read as zero.
//!
//! Build a record with [`Draft::payload`] (or [`Draft::json`] with the type
//! constant, for payloads recorded under more than one type); read one with
//! [`Event::payload`] after matching its type, or with [`payload_in`] from
//! an event as the API answers it.
//!
//! By family: [`certificate`] (device certificates issued, renewed,
//! revoked, refused, expiring; the renewal messages), [`command`] (the message a device gets, its reply),
//! [`function`] (invocations, dead letters, work handed back and
//! resumed, denied outbound requests), [`connection`] (MQTT connections of
//! devices and other clients), [`mqtt`] (refused publishes), [`liveness`]
//! (silent and active devices), [`trigger`] (HTTP requests, schedule ticks),
//! [`platform`] (configuration changes, anomalies), [`shadow`] (what a
//! device is told about its shadow).

pub mod certificate;
pub mod command;
pub mod connection;
pub mod function;
pub mod liveness;
pub mod mqtt;
pub mod platform;
pub mod shadow;
pub mod trigger;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Data, Draft, Event, RecordedEvent};

/// A message a device (or another MQTT client, or an HTTP producer) sent:
/// user data, so its payload has no platform type.
pub const DEVICE_MESSAGE: &str = "device.message";

/// A platform event's payload recorded under one type.
pub trait Payload: Serialize + DeserializeOwned {
    /// The event type it is recorded under.
    const TYPE: &'static str;
}

/// Why an event's data could not be read as the payload its type promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {id} ({ty}): {problem}")]
pub struct PayloadError {
    pub id: String,
    pub ty: String,
    pub problem: String,
}

impl PayloadError {
    fn new<T>(id: impl Into<String>, ty: impl Into<String>, why: impl std::fmt::Display) -> Self {
        let name = std::any::type_name::<T>().rsplit("::").next().unwrap_or_default();
        Self { id: id.into(), ty: ty.into(), problem: format!("its data is not a {name}: {why}") }
    }
}

impl Data {
    /// A payload as JSON data, serialised as its type documents.
    pub fn of<T: Serialize + ?Sized>(payload: &T) -> Data {
        serde_json::value::to_raw_value(payload).map_or(Data::None, Data::Json)
    }
}

impl Draft {
    /// A platform record: `payload` under its type, from `source`.
    pub fn payload<P: Payload>(source: impl Into<String>, payload: &P) -> Self {
        Self::json(source, P::TYPE, payload)
    }
}

impl Event {
    /// The data as the payload type its event type promises (match the
    /// type first); an error names the event, its type and what did not fit.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        let id = self.id.to_string();
        match &self.data {
            Data::Json(raw) => serde_json::from_str(raw.get()).map_err(|e| PayloadError::new::<T>(id, &self.ty, e)),
            Data::None => Err(PayloadError::new::<T>(id, &self.ty, "it has no data")),
            Data::Binary(_) => Err(PayloadError::new::<T>(id, &self.ty, "its data is binary, not JSON")),
        }
    }
}

impl RecordedEvent {
    /// [`Event::payload`] of the recorded event.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        self.event.payload()
    }
}

/// The payload of an event as the API answers it (CloudEvents JSON, with
/// `id`, `type` and `data`): for clients, which read events over HTTP.
pub fn payload_in<T: DeserializeOwned>(event: &serde_json::Value) -> Result<T, PayloadError> {
    let text = |key: &str| event[key].as_str().unwrap_or("?");
    match event.get("data") {
        Some(data) => payload_of(text("id"), text("type"), data),
        None => Err(PayloadError::new::<T>(text("id"), text("type"), "it has no data")),
    }
}

/// The payload `data` of the event `id` of type `ty`, for clients that
/// read an event's parts separately (an inspection's timeline entry).
pub fn payload_of<T: DeserializeOwned>(id: &str, ty: &str, data: &serde_json::Value) -> Result<T, PayloadError> {
    <T as serde::Deserialize>::deserialize(data).map_err(|e| PayloadError::new::<T>(id, ty, e))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::function::{FUNCTION_RESUMED, Resumed};
    use super::*;
    use crate::IdMinter;

    fn resumed() -> Resumed {
        Resumed { function: "fan".into(), events: 3, retrying: 1, oldest: "01J0000000000000000000000A".into() }
    }

    #[test]
    fn a_payload_built_into_a_draft_reads_back_from_the_event() {
        let draft = Draft::payload("glassbox/functions/fan", &resumed());
        assert_eq!(draft.ty, FUNCTION_RESUMED);
        let event = draft.into_event(IdMinter::new().mint(), Utc::now(), None);
        assert_eq!(event.payload::<Resumed>().unwrap(), resumed());
    }

    #[test]
    fn data_that_does_not_fit_is_an_error_naming_the_event_and_the_type() {
        let draft = Draft::json("glassbox/functions/fan", FUNCTION_RESUMED, &serde_json::json!({"function": 7}));
        let event = draft.into_event(IdMinter::new().mint(), Utc::now(), None);
        let error = event.payload::<Resumed>().unwrap_err().to_string();
        assert!(error.starts_with(&format!("event {} (function.resumed): its data is not a Resumed", event.id)));
        let none = Draft { data: Data::None, ..Draft::payload("x", &resumed()) };
        let error = none.into_event(IdMinter::new().mint(), Utc::now(), None).payload::<Resumed>().unwrap_err();
        assert!(error.to_string().ends_with("it has no data"), "{error}");
    }

    #[test]
    fn a_payload_reads_from_an_event_as_the_api_answers_it() {
        let event =
            Draft::payload("glassbox/functions/fan", &resumed()).into_event(IdMinter::new().mint(), Utc::now(), None);
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(payload_in::<Resumed>(&json).unwrap(), resumed());
        let error = payload_in::<Resumed>(&serde_json::json!({"id": "e1", "type": "t"})).unwrap_err();
        assert_eq!(error.to_string(), "event e1 (t): its data is not a Resumed: it has no data");
    }
}
