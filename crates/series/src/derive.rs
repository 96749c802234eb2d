//! Recorded events to metric samples: what each kind of event counts for.

use std::borrow::Cow;

use glassbox_core::{
    CLIENT_CONNECTED, CLIENT_CONNECTION_REFUSED, CLIENT_DISCONNECTED, ConnectionsRefused, DEVICE_CONNECTED,
    DEVICE_CONNECTION_REFUSED, DEVICE_DISCONNECTED, DEVICE_MESSAGE, DEVICE_SILENT, DeadLetter, Disconnected, Dropped,
    FUNCTION_DEAD_LETTER, FUNCTION_DROPPED, FUNCTION_EGRESS_DENIED, FUNCTION_INVOKED, Invocation, PUBLISH_REFUSED,
    RecordedEvent, State,
};

use super::catalog::{self as m, Metric};
use super::topics::TopicTemplates;

/// At most this many labels per metric (`drops` has three).
pub const LABELS_MAX: usize = 3;

/// One sample: a metric, its label values (in the metric's label order)
/// and the measured value (1 for counts). Labels borrow from the event
/// they were derived from where they can: deriving allocates nothing for
/// a device message.
#[derive(Debug, Clone)]
pub struct Sample<'a> {
    pub metric: &'static Metric,
    labels: [Cow<'a, str>; LABELS_MAX],
    pub value: f64,
}

impl<'a> Sample<'a> {
    /// A sample with `labels` borrowed (as many as the metric has).
    pub fn new(metric: &'static Metric, labels: &[&'a str], value: f64) -> Self {
        Self::of(metric, labels.iter().map(|l| Cow::Borrowed(*l)), value)
    }

    /// A sample with its own copies of `labels`, for values that do not
    /// outlive deriving (those of a decoded payload).
    pub fn owned(metric: &'static Metric, labels: &[&str], value: f64) -> Sample<'static> {
        Sample::of(metric, labels.iter().map(|l| Cow::Owned(l.to_string())), value)
    }

    fn of(metric: &'static Metric, labels: impl Iterator<Item = Cow<'a, str>>, value: f64) -> Self {
        debug_assert!(metric.labels.len() <= LABELS_MAX, "{} has more labels than a sample holds", metric.name);
        let mut held: [Cow<'a, str>; LABELS_MAX] = Default::default();
        for (slot, label) in held.iter_mut().zip(labels) {
            *slot = label;
        }
        Self { metric, labels: held, value }
    }

    /// The label values, one per label of the metric.
    pub fn labels(&self) -> &[Cow<'a, str>] {
        &self.labels[..self.metric.labels.len().min(LABELS_MAX)]
    }
}

/// The label used where an event has no value for one: no group, no feature.
pub const NONE: &str = "none";

/// The samples one recorded event contributes; `group` is its device's
/// group, when it has a device and the device a group; `origin` is what
/// [`origin`] says of it (a message's topic is matched against the
/// templates once, for its samples and for its drops). Appended to `out`.
pub fn samples<'a>(
    recorded: &'a RecordedEvent,
    group: Option<&'a str>,
    origin: Option<Origin<'a>>,
    out: &mut Vec<Sample<'a>>,
) {
    let event = &recorded.event;
    let group = group.unwrap_or(NONE);
    out.push(Sample::new(&m::EVENTS_RECORDED, &[], 1.0));
    match event.ty.as_str() {
        DEVICE_MESSAGE => {
            let topic = origin.map_or(NONE, |(_, topic)| topic);
            let bytes = event.data.len() as f64;
            out.push(Sample::new(&m::MQTT_MESSAGES, &[group, topic], 1.0));
            out.push(Sample::new(&m::MQTT_BYTES, &[group, topic], bytes));
            if let Some(device) = &event.device {
                out.push(Sample::new(&m::DEVICE_MESSAGES, &[device], 1.0));
                out.push(Sample::new(&m::DEVICE_BYTES, &[device], bytes));
            }
        }
        PUBLISH_REFUSED => out.extend(refused_drop(recorded, origin)),
        DEVICE_CONNECTED | CLIENT_CONNECTED => out.push(Sample::new(&m::MQTT_CONNECTS, &[], 1.0)),
        DEVICE_DISCONNECTED | CLIENT_DISCONNECTED => {
            let reason = recorded.payload::<Disconnected>().map(|d| d.reason.as_str());
            out.push(Sample::owned(&m::MQTT_DISCONNECTS, &[reason.unwrap_or(NONE)], 1.0));
        }
        DEVICE_CONNECTION_REFUSED | CLIENT_CONNECTION_REFUSED => refused(recorded, out),
        DEVICE_SILENT => out.push(Sample::new(&m::DEVICE_SILENCES, &[group], 1.0)),
        FUNCTION_INVOKED => {
            if let Ok(invocation) = recorded.payload::<Invocation>() {
                invoked(&invocation, recorded, out);
            }
        }
        FUNCTION_DEAD_LETTER => {
            let function = event.subject.as_deref().unwrap_or(NONE);
            let reason = recorded.payload::<DeadLetter>().map(|d| d.reason).unwrap_or_default();
            out.push(Sample::new(&m::FUNCTION_DEAD_LETTERS, &[function], 1.0));
            out.push(Sample::owned(&m::DROPS, &[dead_letter_reason(&reason), NONE, NONE], 1.0));
        }
        // An event a function did not run on purpose (a budget).
        FUNCTION_DROPPED => {
            let reason = recorded.payload::<Dropped>().map(|d| d.reason.as_str()).unwrap_or(NONE);
            out.push(Sample::owned(&m::DROPS, &[reason, NONE, NONE], 1.0));
        }
        // A function's outbound request refused by its egress allow list.
        FUNCTION_EGRESS_DENIED => out.push(Sample::new(&m::DROPS, &["egress_denied", NONE, NONE], 1.0)),
        ty => {
            if let Some(state) = ty.strip_prefix("device.command.").filter(|s| !s.contains('.')) {
                out.push(Sample::new(&m::COMMANDS, &[state], 1.0));
            }
        }
    }
}

/// A refused publish's one `drops` sample, when it was recorded with an
/// event-level `dropped` state (no target). A `dropped` state with a target
/// is counted when it is recorded, by the feed's tap ([`dropped`]), never here.
fn refused_drop<'a>(recorded: &'a RecordedEvent, origin: Option<Origin<'a>>) -> Option<Sample<'a>> {
    let state = recorded.states.iter().find(|s| s.state == State::Dropped && s.target.is_none())?;
    Some(dropped(state.detail.as_deref(), origin))
}

/// Refused CONNECTs: one event stands for every refusal from its peer in
/// an interval, counted by reason.
fn refused(recorded: &RecordedEvent, out: &mut Vec<Sample<'_>>) {
    let Ok(refused) = recorded.payload::<ConnectionsRefused>() else {
        return out.push(Sample::owned(&m::MQTT_REFUSED, &[NONE], 1.0));
    };
    if refused.reasons.is_empty() {
        let reason = if refused.reason.is_empty() { NONE } else { &refused.reason };
        return out.push(Sample::owned(&m::MQTT_REFUSED, &[reason], 1.0));
    }
    for (reason, count) in &refused.reasons {
        out.push(Sample::owned(&m::MQTT_REFUSED, &[reason], *count as f64));
    }
}

/// A dead letter's reason as a bounded label: the drop reason it starts
/// with (`recursion_limit: hop 16 …`), or `retries_exhausted`.
fn dead_letter_reason(reason: &str) -> &str {
    match reason.split_once(':') {
        Some((name, _)) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') => name,
        _ => "retries_exhausted",
    }
}

fn invoked<'a>(invocation: &Invocation, recorded: &'a RecordedEvent, out: &mut Vec<Sample<'a>>) {
    let function = invocation.key.function.as_str();
    let us_to_ms = |us: u64| us as f64 / 1000.0;
    out.push(Sample::owned(&m::FUNCTION_INVOCATIONS, &[function, &invocation.key.outcome], 1.0));
    if invocation.failed() {
        out.push(Sample::owned(&m::FUNCTION_ERRORS, &[function], 1.0));
    }
    out.push(Sample::owned(&m::FUNCTION_DURATION, &[function], us_to_ms(invocation.wall_us)));
    out.push(Sample::owned(&m::FUNCTION_CPU, &[function], us_to_ms(invocation.cpu_us)));
    if let Some(queued_us) = invocation.queued_us {
        out.push(Sample::owned(&m::FUNCTION_QUEUE, &[function], us_to_ms(queued_us)));
    }
    if invocation.cold {
        out.push(Sample::owned(&m::FUNCTION_COLD_STARTS, &[function], 1.0));
    }
    let cost = invocation.cost;
    out.push(Sample::owned(&m::FUNCTION_COST, &[function], cost));
    for request in &invocation.egress {
        let outcome = match request.outcome.as_str() {
            o @ ("completed" | "failed" | "denied") => o,
            _ => NONE,
        };
        out.push(Sample::owned(&m::FUNCTION_EGRESS, &[function, outcome], 1.0));
    }
    out.push(Sample::new(&m::FEATURE_COST, &[recorded.event.feature.as_deref().unwrap_or(NONE)], cost));
    if let Some(device) = &recorded.event.device {
        out.push(Sample::new(&m::DEVICE_COST, &[device], cost));
    }
}

/// A dropped delivery's sample: its reason (the detail's leading drop
/// reason), and the group and topic of the message when known.
pub fn dropped<'a>(detail: Option<&'a str>, origin: Option<Origin<'a>>) -> Sample<'a> {
    let reason = detail.and_then(|d| d.split_once(':')).map_or(NONE, |(reason, _)| reason);
    let reason =
        if !reason.is_empty() && reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') { reason } else { NONE };
    let (group, topic) = origin.unwrap_or((NONE, NONE));
    Sample::new(&m::DROPS, &[reason, group, topic], 1.0)
}

/// A device message's group and topic labels.
pub type Origin<'a> = (&'a str, &'a str);

/// The group and topic label of a device message (accepted or refused),
/// for its drops.
pub fn origin<'a>(recorded: &RecordedEvent, group: Option<&'a str>, topics: &'a TopicTemplates) -> Option<Origin<'a>> {
    if !matches!(recorded.event.ty.as_str(), DEVICE_MESSAGE | PUBLISH_REFUSED) {
        return None;
    }
    Some((group.unwrap_or(NONE), topic_label(recorded, topics)))
}

/// A message's `topic` label: the template its topic matches, never the topic.
fn topic_label<'a>(recorded: &RecordedEvent, topics: &'a TopicTemplates) -> &'a str {
    recorded.event.subject.as_deref().map_or(NONE, |topic| topics.label(topic))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use glassbox_core::{Draft, IdMinter};

    use super::*;
    use crate::topics::{self, TopicTemplates};

    fn message(ty: &str, topic: &str) -> RecordedEvent {
        let draft = Draft {
            device: Some("t-1".into()),
            subject: Some(topic.into()),
            ..Draft::json("mqtt/t-1", ty, &serde_json::json!({"celsius": 20}))
        };
        RecordedEvent { event: draft.into_event(IdMinter::new().mint(), Utc::now(), None), states: Vec::new() }
    }

    fn dropped_state(target: Option<&str>, detail: &str) -> glassbox_core::StateRecord {
        glassbox_core::StateRecord {
            state: State::Dropped,
            at: Utc::now(),
            target: target.map(str::to_string),
            detail: Some(detail.into()),
            node: None,
        }
    }

    /// An event's samples, its topic matched as the feed does.
    fn derive<'a>(
        recorded: &'a RecordedEvent,
        group: Option<&'a str>,
        templates: &'a TopicTemplates,
    ) -> Vec<Sample<'a>> {
        let mut out = Vec::new();
        samples(recorded, group, origin(recorded, group, templates), &mut out);
        out
    }

    fn names(samples: &[Sample]) -> Vec<&'static str> {
        samples.iter().map(|s| s.metric.name).collect()
    }

    // Issue 16, findings 1 and 3: a refused PUBLISH derives nothing as a device
    // message; it is counted once in `drops`, by the reason of its dropped state.
    #[test]
    fn a_refused_publish_counts_only_as_a_drop_by_reason() {
        let templates = TopicTemplates::new(&topics::default_templates()).unwrap();
        let refused = message(PUBLISH_REFUSED, "devices/t-2/telemetry");
        assert_eq!(names(&derive(&refused, Some("greenhouse"), &templates)), ["events_recorded"]);

        let origin = origin(&refused, Some("greenhouse"), &templates);
        let drop = dropped(Some("acl_denied: devices/t-2/telemetry is not yours"), origin);
        assert_eq!(drop.metric.name, "drops");
        assert_eq!(drop.labels(), ["acl_denied", "greenhouse", "devices/+/telemetry"]);

        let mut inline = message(PUBLISH_REFUSED, "devices/t-1/telemetry");
        inline.states.push(dropped_state(None, "rate_limited: over the device publish rate of 1/s"));
        let derived = derive(&inline, None, &templates);
        assert_eq!(names(&derived), ["events_recorded", "drops"]);
        assert_eq!(derived[1].labels(), ["rate_limited", "none", "devices/+/telemetry"]);
        // A dropped state with a target is counted by the tap, never here.
        let mut read_back = message(PUBLISH_REFUSED, "devices/t-2/telemetry");
        read_back.states.push(dropped_state(Some("acl"), "acl_denied: not yours"));
        assert_eq!(names(&derive(&read_back, None, &templates)), ["events_recorded"]);

        let accepted = message("device.message", "devices/t-1/telemetry");
        let derived = names(&derive(&accepted, Some("greenhouse"), &templates));
        assert_eq!(derived, ["events_recorded", "mqtt_messages", "mqtt_bytes", "device_messages", "device_bytes"]);
    }

    // Issue 16, finding 4: one recorded refusal event stands for every
    // refusal from its peer in an interval, counted by reason.
    #[test]
    fn refused_connects_count_every_refusal_an_event_stands_for() {
        let templates = TopicTemplates::new(&topics::default_templates()).unwrap();
        let data = serde_json::json!({ "count": 7, "reason": "auth_failure", "reasons": { "auth_failure": 5, "rate_limited": 2 } });
        let draft = Draft::json("glassbox/gateway", "client.connection_refused", &data);
        let event =
            RecordedEvent { event: draft.into_event(IdMinter::new().mint(), Utc::now(), None), states: Vec::new() };
        let refused: Vec<_> = derive(&event, None, &templates)
            .into_iter()
            .filter(|s| s.metric.name == "mqtt_refused")
            .map(|s| (s.labels()[0].to_string(), s.value))
            .collect();
        assert_eq!(refused, [("auth_failure".to_string(), 5.0), ("rate_limited".to_string(), 2.0)]);
    }

    // Issue 16, finding 3: the topic label is a template or `other`, never the raw level.
    #[test]
    fn a_message_topic_label_is_its_template_never_the_raw_topic() {
        let templates = TopicTemplates::new(&topics::default_templates()).unwrap();
        let hostile = message("device.message", &format!("{}/x", "a".repeat(30_000)));
        let derived = derive(&hostile, None, &templates);
        assert_eq!(derived[1].labels(), ["none", "other"]);
        assert_eq!(origin(&hostile, None, &templates), Some(("none", "other")));
    }
}
