//! Which recorded events are changes, and the entry each one gets.
//!
//! One table ([`ACTIONS`]) from a change's event type to its audit action;
//! [`draft_for`] reads the event's typed payload for who acted and on what.
//! A change whose payload does not read is still entered, attributed to
//! `system:unattributed` with its data as the detail: a change is never
//! left out of the log.

use chrono::{DateTime, Utc};
use glassbox_core::{
    AuthMethod, BUDGET_DELETED, BUDGET_SET, BudgetDeleted, BudgetSet, CONFIG_CHANGED, CertificateIssued,
    CertificateRevoked, CommandQueued, CommandStep, ConfigChanged, DEVICE_CERTIFICATE_ISSUED,
    DEVICE_CERTIFICATE_RENEWED, DEVICE_CERTIFICATE_REVOKED, DEVICE_COMMAND_CANCELLED, DEVICE_COMMAND_QUEUED,
    DEVICE_DELETED, DEVICE_DISABLED, DEVICE_ENABLED, DEVICE_QUEUE_CLEARED, DEVICE_REGISTERED, DEVICE_SECRET_ROTATED,
    DEVICE_SHADOW_UPDATED, DEVICE_UPDATED, DIAGNOSE_SILENCED, Data, DeadLetterCleared, DeadLetterClearedReason,
    Deleted, Deployed, Event, FUNCTION_DEAD_LETTER_CLEARED, FUNCTION_DELETED, FUNCTION_DEPLOYED, FUNCTION_PROMOTED,
    FUNCTION_RESTORED, FUNCTION_RETIRED, FUNCTION_ROLLED_BACK, INCIDENT_ACKNOWLEDGED, INCIDENT_RESOLVED, IncidentNote,
    LiveChanged, PayloadError, Principal, PrincipalKind, QueueCleared, RETAINED_CLEARED, RegistryChanged,
    RetainedCleared, Retired, ShadowUpdated, Silenced, TOKEN_CREATED, TOKEN_REVOKED, TokenCreated, TokenRevoked,
};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::entry::{Auth, Draft};

/// Each change's event type and the action its entry names. An action
/// whose event type is shared (a certificate issued or renewed, a dead
/// letter redriven or discarded, a silence begun or ended) is told apart
/// by [`draft_for`] from the payload.
pub const ACTIONS: &[(&str, &str)] = &[
    (DEVICE_REGISTERED, "device.create"),
    (DEVICE_UPDATED, "device.update"),
    (DEVICE_DISABLED, "device.disable"),
    (DEVICE_ENABLED, "device.enable"),
    (DEVICE_DELETED, "device.delete"),
    (DEVICE_SECRET_ROTATED, "device.rotate_secret"),
    (DEVICE_QUEUE_CLEARED, "device.clear_queue"),
    (DEVICE_SHADOW_UPDATED, "device.set_desired"),
    (DEVICE_COMMAND_QUEUED, "device.command"),
    (DEVICE_COMMAND_CANCELLED, "device.cancel_command"),
    (DEVICE_CERTIFICATE_ISSUED, "certificate.issue"),
    (DEVICE_CERTIFICATE_RENEWED, "certificate.renew"),
    (DEVICE_CERTIFICATE_REVOKED, "certificate.revoke"),
    (TOKEN_CREATED, "token.create"),
    (TOKEN_REVOKED, "token.revoke"),
    (FUNCTION_DEPLOYED, "function.deploy"),
    (FUNCTION_ROLLED_BACK, "function.rollback"),
    (FUNCTION_PROMOTED, "function.promote"),
    (FUNCTION_DELETED, "function.delete"),
    (FUNCTION_RETIRED, "function.retire"),
    (FUNCTION_RESTORED, "function.restore"),
    (BUDGET_SET, "budget.set"),
    (BUDGET_DELETED, "budget.delete"),
    (FUNCTION_DEAD_LETTER_CLEARED, "function.redrive"),
    (RETAINED_CLEARED, "mqtt.clear_retained"),
    (CONFIG_CHANGED, "config.change"),
    (INCIDENT_ACKNOWLEDGED, "incident.acknowledge"),
    (INCIDENT_RESOLVED, "incident.resolve"),
    (DIAGNOSE_SILENCED, "diagnose.silence"),
];

/// Whether events of type `ty` are changes the audit log enters.
pub fn is_change(ty: &str) -> bool {
    ACTIONS.iter().any(|(t, _)| *t == ty)
}

/// Who, on what, with which states, as one change's payload tells.
struct Change {
    principal: Principal,
    action: Option<&'static str>,
    target: String,
    before: Option<String>,
    after: Option<String>,
}

impl Change {
    fn by(principal: Principal, target: String) -> Self {
        Self { principal, action: None, target, before: None, after: None }
    }
}

/// The draft of `event`'s entry, recorded at `at` on `node` with `salt`;
/// none when it is not a change (or is a device reporting its own state).
pub fn draft_for(event: &Event, at: DateTime<Utc>, node: &str, salt: String) -> Option<Draft> {
    let action = ACTIONS.iter().find(|(t, _)| *t == event.ty).map(|(_, a)| *a)?;
    let change = match read(event) {
        Ok(Some(change)) => change,
        Ok(None) => return None,
        Err(_) => Change::by(Principal::system("unattributed"), target_of(event)),
    };
    let detail = match &event.data {
        Data::Json(raw) => serde_json::from_str(raw.get()).unwrap_or(serde_json::Value::Null),
        Data::None | Data::Binary(_) => serde_json::Value::Null,
    };
    let principal = change.principal;
    let key_id = match principal.kind {
        PrincipalKind::System | PrincipalKind::Function => None,
        _ => Some(principal.name.clone()),
    };
    Some(Draft {
        time: Draft::at(at),
        actor: principal.name,
        actor_kind: principal.kind,
        auth: Auth { method: principal.auth, key_id },
        source: principal.source,
        node: node.to_string(),
        action: change.action.unwrap_or(action).to_string(),
        target: change.target,
        before: change.before,
        after: change.after,
        event: event.id.to_string(),
        detail,
        salt,
    })
}

/// The target named by the event itself: its device, subject or source.
fn target_of(event: &Event) -> String {
    match (&event.device, &event.subject) {
        (Some(device), _) => format!("device:{device}"),
        (None, Some(subject)) => subject.clone(),
        (None, None) => event.source.clone(),
    }
}

/// A hash of a state's JSON, for `before` and `after`.
fn state_hash(value: &impl serde::Serialize) -> Option<String> {
    let bytes = serde_json::to_vec(value).ok()?;
    Some(hex::encode(Sha256::digest(bytes)))
}

/// A principal from a record that named its actor only as a label (records
/// written before principals were).
fn labelled(principal: Option<Principal>, by: &str) -> Principal {
    principal.unwrap_or_else(|| Principal {
        kind: PrincipalKind::System,
        name: by.to_string(),
        auth: AuthMethod::Internal,
        source: None,
    })
}

fn read(event: &Event) -> Result<Option<Change>, PayloadError> {
    fn p<T: DeserializeOwned>(event: &Event) -> Result<T, PayloadError> {
        event.payload()
    }
    let device = || target_of(event);
    let change = match event.ty.as_str() {
        DEVICE_REGISTERED
        | DEVICE_UPDATED
        | DEVICE_DISABLED
        | DEVICE_ENABLED
        | DEVICE_DELETED
        | DEVICE_SECRET_ROTATED => Change::by(p::<RegistryChanged>(event)?.principal, device()),
        DEVICE_QUEUE_CLEARED => Change::by(p::<QueueCleared>(event)?.principal, device()),
        DEVICE_SHADOW_UPDATED => {
            let update = p::<ShadowUpdated>(event)?;
            // A device reporting its own state is telemetry, not a change.
            let Some(principal) = update.principal.filter(|p| p.kind != PrincipalKind::Device) else {
                return Ok(None);
            };
            Change { after: state_hash(&update.state.desired), ..Change::by(principal, device()) }
        }
        DEVICE_COMMAND_QUEUED => Change::by(p::<CommandQueued>(event)?.principal, device()),
        DEVICE_COMMAND_CANCELLED => Change::by(p::<CommandStep>(event)?.principal, device()),
        DEVICE_CERTIFICATE_ISSUED | DEVICE_CERTIFICATE_RENEWED => {
            let issued = p::<CertificateIssued>(event)?;
            let action = issued.renews.is_some().then_some("certificate.renew");
            Change {
                action,
                before: issued.renews.clone(),
                after: Some(issued.fingerprint.clone()),
                ..Change::by(issued.principal, device())
            }
        }
        DEVICE_CERTIFICATE_REVOKED => Change::by(p::<CertificateRevoked>(event)?.principal, device()),
        TOKEN_CREATED => {
            let created = p::<TokenCreated>(event)?;
            Change::by(created.principal, format!("token:{}", created.name))
        }
        TOKEN_REVOKED => {
            let revoked = p::<TokenRevoked>(event)?;
            Change::by(revoked.principal, format!("token:{}", revoked.name))
        }
        FUNCTION_DEPLOYED => {
            let deployed = p::<Deployed>(event)?;
            let target = format!("function:{}", deployed.function);
            Change {
                after: Some(deployed.digest.clone()),
                ..Change::by(labelled(deployed.principal, &deployed.by), target)
            }
        }
        FUNCTION_ROLLED_BACK | FUNCTION_PROMOTED => {
            let moved = p::<LiveChanged>(event)?;
            let target = format!("function:{}", moved.function);
            Change {
                before: moved.from.map(|v| format!("v{v}")),
                after: Some(moved.digest.clone()),
                ..Change::by(labelled(moved.principal, &moved.by), target)
            }
        }
        FUNCTION_DELETED => {
            let deleted = p::<Deleted>(event)?;
            Change::by(labelled(deleted.principal, &deleted.by), format!("function:{}", deleted.function))
        }
        FUNCTION_RETIRED | FUNCTION_RESTORED => {
            let retired = p::<Retired>(event)?;
            Change::by(retired.principal, format!("function:{}", retired.function))
        }
        BUDGET_SET => {
            let set = p::<BudgetSet>(event)?;
            Change {
                before: set.previous.as_ref().and_then(state_hash),
                after: state_hash(&set.budget),
                ..Change::by(set.principal, format!("budget:{}", set.budget.target))
            }
        }
        BUDGET_DELETED => {
            let deleted = p::<BudgetDeleted>(event)?;
            Change {
                before: state_hash(&deleted.budget),
                ..Change::by(deleted.principal, format!("budget:{}", deleted.budget.target))
            }
        }
        FUNCTION_DEAD_LETTER_CLEARED => {
            let cleared = p::<DeadLetterCleared>(event)?;
            let action = match cleared.reason {
                DeadLetterClearedReason::Redriven => "function.redrive",
                DeadLetterClearedReason::Discarded => "function.discard",
            };
            Change { action: Some(action), ..Change::by(cleared.principal, format!("function:{}", cleared.function)) }
        }
        RETAINED_CLEARED => {
            let cleared = p::<RetainedCleared>(event)?;
            Change::by(cleared.principal, format!("mqtt:{}", cleared.filter))
        }
        CONFIG_CHANGED => {
            let changed = p::<ConfigChanged>(event)?;
            Change {
                before: state_hash(&changed.from),
                after: state_hash(&changed.to),
                ..Change::by(Principal::system("startup"), "config".into())
            }
        }
        INCIDENT_ACKNOWLEDGED | INCIDENT_RESOLVED => {
            let note = p::<IncidentNote>(event)?;
            Change::by(note.principal, format!("incident:{}", note.incident))
        }
        DIAGNOSE_SILENCED => {
            let silenced = p::<Silenced>(event)?;
            let action = (silenced.until <= event.time).then_some("diagnose.unsilence");
            Change { action, ..Change::by(silenced.principal, silenced.subject.to_string()) }
        }
        _ => return Ok(None),
    };
    Ok(Some(change))
}
