//! What the platform records when a device changes: its registry entry
//! (`device.registered`, …), its session queue, its desired or reported
//! state, its commands. Each record carries the [`Principal`] who made the
//! change, and — for compatibility with readers of the older records — that
//! principal's label as the string field it always had (`actor`, `issuer`,
//! `by`). Shared by the control plane, which writes them, and every reader
//! (diagnosis batches them into changes).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Principal, PrincipalKind};

/// A device was registered (data: [`RegistryChanged`]).
pub const DEVICE_REGISTERED: &str = "device.registered";
/// A device's metadata changed (data: [`RegistryChanged`]).
pub const DEVICE_UPDATED: &str = "device.updated";
/// A device was disabled: its connection closed, new ones refused (data: [`RegistryChanged`]).
pub const DEVICE_DISABLED: &str = "device.disabled";
/// A device was enabled again (data: [`RegistryChanged`]).
pub const DEVICE_ENABLED: &str = "device.enabled";
/// A device got a new secret; the old one stopped working (data: [`RegistryChanged`]).
pub const DEVICE_SECRET_ROTATED: &str = "device.secret_rotated";
/// A device left the registry; its recorded events stay (data: [`RegistryChanged`]).
pub const DEVICE_DELETED: &str = "device.deleted";
/// The messages waiting in a device's session queue were dropped (data: [`QueueCleared`]).
pub const DEVICE_QUEUE_CLEARED: &str = "device.queue_cleared";
/// A device's shadow changed (data: [`ShadowUpdated`]).
pub const DEVICE_SHADOW_UPDATED: &str = "device.shadow.updated";
/// A command was issued to a device (data: [`CommandQueued`]).
pub const DEVICE_COMMAND_QUEUED: &str = "device.command.queued";
/// An open command was cancelled (data: [`CommandStep`]).
pub const DEVICE_COMMAND_CANCELLED: &str = "device.command.cancelled";
/// A device's answer named no open command of its own (data: [`CommandStep`]).
pub const DEVICE_COMMAND_RESPONSE_REJECTED: &str = "device.command.response_rejected";

/// The registry changes: every one of them is about its event's `device`.
pub const REGISTRY_CHANGES: [&str; 6] =
    [DEVICE_REGISTERED, DEVICE_UPDATED, DEVICE_DISABLED, DEVICE_ENABLED, DEVICE_SECRET_ROTATED, DEVICE_DELETED];

/// The data of a registry change ([`REGISTRY_CHANGES`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryChanged {
    /// Who changed it, as a label (`admin`): the principal without its address.
    pub actor: String,
    pub principal: Principal,
}

impl RegistryChanged {
    pub fn by(principal: &Principal) -> Self {
        Self { actor: principal.label(), principal: principal.clone() }
    }
}

/// The data of a [`DEVICE_QUEUE_CLEARED`] record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCleared {
    /// Who cleared it, as a label (`admin`).
    pub actor: String,
    pub principal: Principal,
    /// Messages dropped (each recorded as dropped, reason `cleared`).
    pub cleared: usize,
    /// Whether the broker held a session for the device.
    pub session: bool,
}

/// The data of a [`DEVICE_SHADOW_UPDATED`] record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowUpdated {
    /// Who updated it, in the words shadow records always used:
    /// `device`, `operator`, `function:fan` ([`ShadowUpdated::actor_of`]).
    pub actor: String,
    /// Who, whole; none only in records written before principals were
    /// recorded (diagnosis still reads those).
    #[serde(default)]
    pub principal: Option<Principal>,
    /// The shadow's version after the update.
    pub version: u64,
    /// The update as sent: desired and reported state, either absent (null).
    pub state: ShadowState,
    /// Desired state the device has not reported yet, after the update.
    pub delta: Map<String, Value>,
}

impl ShadowUpdated {
    /// The `actor` of a shadow record: the device itself (`device`), an
    /// operator (the admin or a named token: `operator`), or the
    /// principal's label (`function:fan`, `system:…`).
    pub fn actor_of(principal: &Principal) -> String {
        match principal.kind {
            PrincipalKind::Device => PrincipalKind::Device.as_str().to_string(),
            PrincipalKind::Admin | PrincipalKind::Token => OPERATOR_ROLE.to_string(),
            PrincipalKind::Function | PrincipalKind::System => principal.label(),
        }
    }
}

/// The role shadow records name an operator by.
const OPERATOR_ROLE: &str = "operator";

/// The state a shadow update sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowState {
    pub desired: Option<Value>,
    pub reported: Option<Value>,
}

/// The data of a [`DEVICE_COMMAND_QUEUED`] record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandQueued {
    pub name: String,
    pub payload: Option<Value>,
    /// Its time-to-live in words (`1h`).
    pub ttl: String,
    /// Who issued it, as a label (`admin`, `function:fan`).
    pub issuer: String,
    pub idempotency_key: Option<String>,
    pub principal: Principal,
}

/// The data of a command's later steps (`device.command.<state>`: delivered,
/// succeeded, failed, expired, cancelled; and a rejected response): who
/// moved it — the device that acknowledged or answered it, the operator who
/// cancelled it, the platform that expired it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandStep {
    /// The command's id; none when a rejected response named none.
    pub command: Option<String>,
    /// Why it moved (a cancel, an expiry, a device's message), if said.
    pub reason: Option<String>,
    pub principal: Principal,
    /// A cancel's author, as a label (`admin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// How it got here, when not the usual way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The device's answer, as it sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    /// The event that carried the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_event: Option<String>,
}

impl CommandStep {
    /// A step of `command` moved by `principal`, for `reason`.
    pub fn new(command: Option<&str>, reason: Option<String>, principal: &Principal) -> Self {
        Self {
            command: command.map(str::to_string),
            reason,
            principal: principal.clone(),
            by: None,
            detail: None,
            response: None,
            response_event: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthMethod;

    #[test]
    fn a_shadow_update_names_its_actor_as_shadow_records_always_did() {
        use crate::AuthMethod;
        let device = Principal::device("th-1", AuthMethod::DeviceSecret, None);
        assert_eq!(ShadowUpdated::actor_of(&device), "device");
        assert_eq!(ShadowUpdated::actor_of(&Principal::admin(AuthMethod::BearerToken, None)), "operator");
        assert_eq!(ShadowUpdated::actor_of(&Principal::function("fan")), "function:fan");
    }

    #[test]
    fn a_registry_change_keeps_the_actor_label_beside_the_principal() {
        let admin = Principal::admin(AuthMethod::BearerToken, Some("127.0.0.1:4000".into()));
        let json = serde_json::to_value(RegistryChanged::by(&admin)).unwrap();
        assert_eq!(json["actor"], "admin");
        assert_eq!(json["principal"]["source"], "127.0.0.1:4000");
    }

    #[test]
    fn a_command_step_writes_only_what_it_has() {
        let device = Principal::device("th-1", AuthMethod::DeviceSecret, None);
        let json = serde_json::to_value(CommandStep::new(Some("01J"), None, &device)).unwrap();
        assert_eq!(json, serde_json::json!({"command": "01J", "reason": null, "principal": json["principal"]}));
        assert_eq!(json["principal"]["name"], "th-1");
    }
}
