//! What a simulated device's firmware does with what it receives, as real
//! firmware would (docs/control.md, "the device's side"): it applies the
//! desired state the shadow's delta asks for and reports it, so the delta
//! empties; it carries out commands, answers each on its response topic and
//! reports what changed (a `fan` command turns the fan on or off, and the
//! telemetry says so).

use std::collections::VecDeque;

use glassbox_core::{CommandMessage, CommandReply, ReplyStatus, ShadowDelta};
use glassbox_gateway::codec::Publish;
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Commands remembered with their answer: delivery is at least once, and
/// a command sent again (after a reconnect) gets the same answer.
const ANSWERED_MAX: usize = 64;

/// A shadow report, on `…/shadow/update`.
#[derive(Debug, Serialize)]
struct Report<'a> {
    state: Reported<'a>,
}

#[derive(Debug, Serialize)]
struct Reported<'a> {
    reported: &'a Map<String, Value>,
}

/// The device's state, kept across its connections and sleeps.
pub(super) struct Firmware {
    /// What it reports: its shadow's `reported`.
    pub reported: Map<String, Value>,
    answered: VecDeque<CommandReply>,
}

impl Firmware {
    pub fn new() -> Self {
        let reported = json!({ "firmware": "1.4.2", "fan": false });
        Self { reported: reported.as_object().cloned().unwrap_or_default(), answered: VecDeque::new() }
    }

    /// The whole reported state, as sent on connecting.
    pub fn report_all(&self) -> String {
        report(&self.reported)
    }

    /// What the device publishes in return for `received` (`fail`: whether
    /// a command it carries out fails): for a delta, its report; for a
    /// command, the answer and, if its state changed, its report; nothing
    /// for anything else (the inbox's notes are only read).
    pub fn handle(&mut self, device: &str, received: &Publish, fail: bool) -> Vec<(String, String)> {
        let prefix = format!("$glassbox/devices/{device}/");
        let Some(topic) = received.topic.strip_prefix(&prefix) else { return Vec::new() };
        let shadow_update = format!("{prefix}shadow/update");
        if topic == "shadow/delta" {
            let Ok(delta) = serde_json::from_slice::<ShadowDelta>(&received.payload) else { return Vec::new() };
            self.apply(&delta.state);
            return vec![(shadow_update, report(&delta.state))];
        }
        let is_command = topic.strip_prefix("commands/").is_some_and(|name| !name.contains('/'));
        let Some(command) =
            is_command.then(|| serde_json::from_slice::<CommandMessage>(&received.payload).ok()).flatten()
        else {
            return Vec::new();
        };
        let (answer, changed) = self.carry_out(&command, fail);
        let mut out = vec![(command.response_topic, serde_json::to_string(&answer).unwrap_or_default())];
        if let Some(changed) = changed {
            out.push((shadow_update, report(&changed)));
        }
        out
    }

    /// Merges what desired asks for into what the device reports, key by
    /// key as the shadow does.
    fn apply(&mut self, delta: &Map<String, Value>) {
        merge(&mut self.reported, delta);
    }

    /// Carries out a command once: its answer, and what changed in the
    /// reported state. Known: `fan` (`{"on": true}`, the default, or
    /// `false`) and `set` (an object merged into the reported state);
    /// anything else succeeds and changes nothing.
    fn carry_out(&mut self, command: &CommandMessage, fail: bool) -> (CommandReply, Option<Map<String, Value>>) {
        if let Some(earlier) = self.answered.iter().find(|a| a.id.as_ref() == Some(&command.id)) {
            return (earlier.clone(), None);
        }
        let change = match command.name.as_str() {
            "fan" => {
                let on = command.payload.as_ref().and_then(|p| p.get("on")).and_then(Value::as_bool).unwrap_or(true);
                json!({ "fan": on }).as_object().cloned()
            }
            "set" => command.payload.as_ref().and_then(Value::as_object).cloned(),
            _ => None,
        };
        let answer = match fail {
            true => CommandReply {
                id: Some(command.id.clone()),
                status: ReplyStatus::Failed,
                result: None,
                message: Some("actuator did not respond".into()),
            },
            false => {
                let result = change.clone().map_or_else(|| json!({ "applied": command.name }), Value::Object);
                let id = Some(command.id.clone());
                CommandReply { id, status: ReplyStatus::Succeeded, result: Some(result), message: None }
            }
        };
        let changed = if fail { None } else { change };
        if let Some(changed) = &changed {
            self.apply(changed);
        }
        if self.answered.len() == ANSWERED_MAX {
            self.answered.pop_front();
        }
        self.answered.push_back(answer.clone());
        (answer, changed)
    }
}

fn report(reported: &Map<String, Value>) -> String {
    serde_json::to_string(&Report { state: Reported { reported } }).unwrap_or_default()
}

/// Objects merge key by key, other values replace, `null` removes.
fn merge(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (key, value) in from {
        match (into.get_mut(key), value) {
            (_, Value::Null) => {
                into.remove(key);
            }
            (Some(Value::Object(inner)), Value::Object(more)) => merge(inner, more),
            _ => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use glassbox_gateway::codec::{Properties, QoS};

    use super::*;

    fn received(topic: &str, body: Value) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: topic.into(),
            packet_id: Some(1),
            properties: Properties::default(),
            payload: Bytes::from(body.to_string()),
        }
    }

    /// A command as the control plane sends it.
    fn command(id: &str, payload: Value, response_topic: &str) -> Value {
        let message = CommandMessage {
            id: id.into(),
            name: "fan".into(),
            payload: Some(payload),
            expires_at: chrono::Utc::now(),
            response_topic: response_topic.into(),
            correlationid: id.into(),
        };
        serde_json::to_value(message).unwrap()
    }

    fn parsed(out: &[(String, String)]) -> Vec<(&str, Value)> {
        out.iter().map(|(topic, body)| (topic.as_str(), serde_json::from_str(body).unwrap())).collect()
    }

    #[test]
    fn a_delta_is_applied_and_reported() {
        let mut firmware = Firmware::new();
        let state = json!({"fan": true, "mode": {"x": 2}}).as_object().cloned().unwrap();
        let delta = serde_json::to_value(ShadowDelta { state, version: 2, timestamp: chrono::Utc::now() }).unwrap();
        let delta = received("$glassbox/devices/d/shadow/delta", delta);
        let out = firmware.handle("d", &delta, false);
        let expected = json!({"state": {"reported": {"fan": true, "mode": {"x": 2}}}});
        assert_eq!(parsed(&out), vec![("$glassbox/devices/d/shadow/update", expected)]);
        assert_eq!(Value::Object(firmware.reported), json!({"firmware": "1.4.2", "fan": true, "mode": {"x": 2}}));
    }

    #[test]
    fn a_fan_command_is_answered_and_changes_what_is_reported_once() {
        let mut firmware = Firmware::new();
        let topic = "$glassbox/devices/d/commands/fan";
        let command = command("c1", json!({"on": true}), "r/fan");
        let out = firmware.handle("d", &received(topic, command.clone()), false);
        let answer = json!({"id": "c1", "status": "succeeded", "result": {"fan": true}});
        let report = json!({"state": {"reported": {"fan": true}}});
        assert_eq!(parsed(&out), vec![("r/fan", answer.clone()), ("$glassbox/devices/d/shadow/update", report)]);
        // Sent again after a reconnect: the same answer, nothing changed again.
        assert_eq!(parsed(&firmware.handle("d", &received(topic, command), true)), vec![("r/fan", answer)]);
    }

    #[test]
    fn a_failed_command_changes_nothing_and_other_messages_get_no_answer() {
        let mut firmware = Firmware::new();
        let command = command("c2", json!({}), "r");
        let out = firmware.handle("d", &received("$glassbox/devices/d/commands/fan", command), true);
        let reply = CommandReply::parse(&parsed(&out)[0].1).unwrap();
        assert_eq!(reply.status, ReplyStatus::Failed);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(firmware.reported["fan"], false);
        for topic in [
            "devices/d/inbox/settings",
            "$glassbox/devices/d/commands/fan/response",
            "$glassbox/devices/e/shadow/delta",
        ] {
            assert!(firmware.handle("d", &received(topic, json!({"state": {}})), false).is_empty(), "{topic}");
        }
    }
}
