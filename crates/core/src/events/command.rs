//! What passes between the control plane and a device for a command: the
//! message sent on `$glassbox/devices/<id>/commands/<name>` (recorded as
//! the command's `device.command.in_transit` step, its data the message
//! itself) and the device's reply on the command's response topic. The
//! control plane writes the one and reads the other; the CLI's simulated
//! firmware does the opposite, with the same types.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Payload;

/// A command was sent to its device (data: [`CommandMessage`]).
pub const DEVICE_COMMAND_IN_TRANSIT: &str = "device.command.in_transit";

/// The message a device gets on `…/commands/<name>`: it carries the command
/// out and answers on `response_topic` with a [`CommandReply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandMessage {
    /// The command's id: a device de-duplicates by it (delivery is at least once).
    pub id: String,
    pub name: String,
    /// What the operator sent with it, as JSON; null when nothing.
    #[serde(default)]
    pub payload: Option<Value>,
    /// After this, an answer is refused: the command expired.
    pub expires_at: DateTime<Utc>,
    pub response_topic: String,
    /// The command's chain: a device sends it back as the MQTT 5 user
    /// property `correlationid` to put its answer on the chain.
    pub correlationid: String,
}

impl Payload for CommandMessage {
    const TYPE: &'static str = DEVICE_COMMAND_IN_TRANSIT;
}

/// A device's answer to a command, on its response topic:
/// `{"id": "01K…", "status": "succeeded", "result": {…}}` or
/// `{"id": "01K…", "status": "failed", "message": "valve stuck"}`.
/// Other keys are kept with the answer but not read. Only `status` must
/// be right: devices in the field send what they send, so an `id` that is
/// not text counts as absent and a `message` that is not text is kept as
/// its JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandReply {
    /// The command's id; an MQTT 5 device may send it as correlation data instead.
    #[serde(default, deserialize_with = "text_or_none", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub status: ReplyStatus,
    /// What it did, kept as the command's response; `Some(null)` when the
    /// device sent `"result": null`.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why, in words, kept as the command's reason.
    #[serde(default, deserialize_with = "as_text", skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A string as it is; anything else as absent.
fn text_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(text) => Some(text),
        _ => None,
    })
}

/// A key that is present, `null` included (absent keys take the default).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A string as it is, `null` as absent, anything else as its JSON text.
fn as_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        Value::String(text) => Some(text),
        other => Some(other.to_string()),
    })
}

/// How a command ended, as its device says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyStatus {
    Succeeded,
    Failed,
}

impl CommandReply {
    /// What a reply looks like, for the messages that refuse one.
    pub const SHAPE: &'static str = r#"send {"id": "<command id>", "status": "succeeded"} (or "failed")"#;

    /// Reads a reply from what the device sent; an error says what is
    /// wrong and what a reply looks like.
    pub fn parse(body: &Value) -> Result<Self, String> {
        Self::deserialize(body).map_err(|e| format!("the response is not a command reply ({e}); {}", Self::SHAPE))
    }
}

/// Where a command stands (the store keeps it; its steps are recorded as
/// `device.command.<state>` events):
/// `queued → in_transit → delivered → succeeded | failed | expired | cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    /// Accepted; waiting for the device to be connected.
    Queued,
    /// Sent to the device; not yet acknowledged.
    InTransit,
    /// The device acknowledged receipt (MQTT PUBACK), or answered.
    Delivered,
    /// The device answered that it did it.
    Succeeded,
    /// The device answered that it could not.
    Failed,
    /// Its time-to-live passed before it finished.
    Expired,
    /// An operator cancelled it before it finished.
    Cancelled,
}

impl CommandState {
    pub const ALL: [CommandState; 7] = [
        CommandState::Queued,
        CommandState::InTransit,
        CommandState::Delivered,
        CommandState::Succeeded,
        CommandState::Failed,
        CommandState::Expired,
        CommandState::Cancelled,
    ];
    /// States a command can still leave.
    pub const OPEN: [CommandState; 3] = [CommandState::Queued, CommandState::InTransit, CommandState::Delivered];

    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Queued => "queued",
            CommandState::InTransit => "in_transit",
            CommandState::Delivered => "delivered",
            CommandState::Succeeded => "succeeded",
            CommandState::Failed => "failed",
            CommandState::Expired => "expired",
            CommandState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        !Self::OPEN.contains(&self)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_command_message_keeps_the_keys_devices_read() {
        let at = DateTime::parse_from_rfc3339("2026-12-05T07:00:00Z").unwrap().to_utc();
        let message = CommandMessage {
            id: "01K".into(),
            name: "flush".into(),
            payload: None,
            expires_at: at,
            response_topic: "$glassbox/devices/p/commands/flush/response".into(),
            correlationid: "01K".into(),
        };
        let wire = json!({
            "id": "01K", "name": "flush", "payload": null, "expires_at": "2026-12-05T07:00:00Z",
            "response_topic": "$glassbox/devices/p/commands/flush/response", "correlationid": "01K",
        });
        assert_eq!(serde_json::to_value(&message).unwrap(), wire);
        assert_eq!(serde_json::from_value::<CommandMessage>(wire).unwrap(), message);
    }

    #[test]
    fn a_reply_reads_as_documented_and_a_malformed_one_is_refused_in_words() {
        let reply = CommandReply::parse(&json!({"id": "01K", "status": "succeeded", "result": {"ok": true}, "x": 1}));
        let reply = reply.unwrap();
        assert_eq!((reply.id.as_deref(), reply.status), (Some("01K"), ReplyStatus::Succeeded));
        let failed = CommandReply::parse(&json!({"status": "failed", "message": "valve stuck"})).unwrap();
        assert_eq!((failed.id, failed.message.as_deref()), (None, Some("valve stuck")));
        for (body, says) in [
            (json!({"id": "01K", "status": "done"}), "unknown variant `done`"),
            (json!({"id": "01K"}), "missing field `status`"),
            (json!("ok"), "invalid type"),
        ] {
            let error = CommandReply::parse(&body).unwrap_err();
            assert!(error.contains(says) && error.ends_with(CommandReply::SHAPE), "{error}");
        }
    }

    #[test]
    fn only_the_status_of_a_reply_must_be_right() {
        let odd = CommandReply::parse(&json!({"id": 7, "status": "failed", "message": {"code": 3}})).unwrap();
        assert_eq!(odd.id, None, "an id that is not text is absent: the correlation data may name the command");
        assert_eq!(odd.message.as_deref(), Some(r#"{"code":3}"#), "a message that is not text is kept as JSON");
        let null = CommandReply::parse(&json!({"status": "succeeded", "result": null})).unwrap();
        assert_eq!(null.result, Some(Value::Null), "a result of null is a result");
        let none = CommandReply::parse(&json!({"status": "succeeded", "message": null})).unwrap();
        assert_eq!((none.result, none.message), (None, None));
    }
}
