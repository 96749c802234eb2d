//! What the recorded stream tells the diagnosis besides metrics: changes
//! that may cause anomalies (deploys, rollbacks, promotes, deletes, device registry changes,
//! configuration changes, batches of desired-state updates and commands),
//! the dependencies it reveals (a device whose events trigger a function),
//! and the liveness detector's silences. Pure: the caller applies them.

use std::collections::BTreeSet;

use glassbox_core::{
    CONFIG_CHANGED, ConfigChanged, DEVICE_ACTIVE, DEVICE_COMMAND_QUEUED, DEVICE_SHADOW_UPDATED, DEVICE_SILENT, Deleted,
    Deployed, FUNCTION_DELETED, FUNCTION_DEPLOYED, FUNCTION_INVOKED, FUNCTION_PROMOTED, FUNCTION_ROLLED_BACK,
    LiveChanged, REGISTRY_CHANGES, RecordedEvent, ShadowUpdated, Silent,
};
use glassbox_diagnose::{Change, SeriesSpec, Subject};

/// Device changes of one kind closer than this are one batch (one change):
/// provisioning a fleet, or a command sent to every device, is one thing
/// someone did, not a hundred.
const BATCH_SECONDS: f64 = 60.0;
/// Devices named in a batch's summary.
const BATCH_NAMES_MAX: usize = 3;

/// One thing a recorded event tells the diagnosis.
pub(super) enum Noted {
    Change(Change),
    Depends(Subject, Subject),
    /// Liveness flagged the device silent (`device.silent`, with its
    /// reason), or it spoke again.
    Silent(SeriesSpec, f64, Option<String>),
    Active(String, f64),
}

/// Device changes (registry, desired state, commands) being gathered into
/// one change per kind per minute. Each addition returns the batch as it
/// now stands, under its first event's id, so the engine updates one change
/// in place and the journal is never behind.
#[derive(Default)]
pub(super) struct Batches(Vec<Batch>);

struct Batch {
    kind: String,
    first: f64,
    count: usize,
    devices: BTreeSet<String>,
    event_id: String,
}

impl Batches {
    fn add(&mut self, kind: &str, at: f64, device: Option<&str>, event_id: String) -> Change {
        self.0.retain(|b| at - b.first < BATCH_SECONDS);
        let index = match self.0.iter().position(|b| b.kind == kind) {
            Some(i) => i,
            None => {
                let (kind, devices) = (kind.to_string(), BTreeSet::new());
                self.0.push(Batch { kind, first: at, count: 0, devices, event_id });
                self.0.len() - 1
            }
        };
        let batch = &mut self.0[index];
        batch.count += 1;
        batch.devices.extend(device.map(str::to_string));
        batch.change()
    }
}

impl Batch {
    fn change(&self) -> Change {
        let subject = match self.devices.len() {
            1 => Subject::Device(self.devices.first().cloned().unwrap_or_default()),
            _ => Subject::Platform,
        };
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let summary = match self.kind.as_str() {
            "shadow_batch" => format!("{} sent to {subject}", plural(self.count, "desired-state update")),
            "command_batch" => format!("{} sent to {subject}", plural(self.count, "command")),
            registry => {
                let what = registry.trim_start_matches("device_").replace('_', " ");
                match &subject {
                    Subject::Device(id) => format!("device {id} {what}"),
                    _ => {
                        let mut names: Vec<&str> =
                            self.devices.iter().map(String::as_str).take(BATCH_NAMES_MAX).collect();
                        if self.devices.len() > BATCH_NAMES_MAX {
                            names.push("…");
                        }
                        format!("{} {what} ({})", plural(self.devices.len(), "device"), names.join(", "))
                    }
                }
            }
        };
        Change { at: self.first, kind: self.kind.clone(), subject, summary, event_id: Some(self.event_id.clone()) }
    }
}

/// The liveness series of a device: flagged by the control plane, not measured.
fn liveness(device: &str) -> SeriesSpec {
    SeriesSpec {
        key: format!("device_liveness{{device=\"{device}\"}}"),
        what: "liveness".into(),
        unit: String::new(),
        subject: Subject::Device(device.to_string()),
        count_unit: 0.0,
        resolution: 0.0,
    }
}

/// What `recorded` tells the diagnosis (and a batch that its time closed).
pub(super) fn note(recorded: &RecordedEvent, batches: &mut Batches) -> Vec<Noted> {
    let event = &recorded.event;
    let at = recorded.states.first().map_or(event.time, |s| s.at).timestamp_micros() as f64 / 1e6;
    let device = event.device.as_deref();
    let mut batch = |kind: &str| vec![Noted::Change(batches.add(kind, at, device, event.id.to_string()))];
    match event.ty.as_str() {
        DEVICE_SILENT => {
            let reason = recorded.payload::<Silent>().ok().map(|s| s.reason);
            device.map(|d| Noted::Silent(liveness(d), at, reason)).into_iter().collect()
        }
        DEVICE_ACTIVE => device.map(|d| Noted::Active(liveness(d).key, at)).into_iter().collect(),
        // The invocation record's subject is its function.
        FUNCTION_INVOKED => match (device, event.subject.as_deref()) {
            (Some(d), Some(f)) => vec![Noted::Depends(Subject::Device(d.into()), Subject::Function(f.into()))],
            _ => Vec::new(),
        },
        DEVICE_COMMAND_QUEUED => batch("command_batch"),
        // Only a change of desired state is something someone did to the device.
        DEVICE_SHADOW_UPDATED => match typed::<ShadowUpdated>(event) {
            Some(update) if update.state.desired.is_some() => batch("shadow_batch"),
            _ => Vec::new(),
        },
        ty if REGISTRY_CHANGES.contains(&ty) => batch(&format!("device_{}", ty.trim_start_matches("device."))),
        _ => change(recorded, at).map(Noted::Change).into_iter().collect(),
    }
}

/// A deploy, rollback, promote, delete or configuration change, as recorded.
fn change(recorded: &RecordedEvent, at: f64) -> Option<Change> {
    let event = &recorded.event;
    let (kind, subject, summary) = match event.ty.as_str() {
        FUNCTION_DEPLOYED => {
            let d: Deployed = typed(event)?;
            let summary = format!("deploy of {} v{} ({}) by {}", d.function, d.version, short_digest(&d.digest), d.by);
            ("deploy", Subject::Function(d.function), summary)
        }
        FUNCTION_ROLLED_BACK | FUNCTION_PROMOTED => {
            let c: LiveChanged = typed(event)?;
            let verb = if event.ty == FUNCTION_PROMOTED { "promote" } else { "rollback" };
            let from = c.from.map_or("deleted".to_string(), |v| format!("v{v}"));
            let summary = format!("{verb} of {} from {from} to v{} by {}", c.function, c.to, c.by);
            (verb, Subject::Function(c.function), summary)
        }
        FUNCTION_DELETED => {
            let d: Deleted = typed(event)?;
            let version = d.version.map_or(String::new(), |v| format!(" v{v}"));
            ("delete", Subject::Function(d.function.clone()), format!("delete of {}{version} by {}", d.function, d.by))
        }
        CONFIG_CHANGED => {
            let keys = recorded.payload::<ConfigChanged>().map(|c| c.changed).unwrap_or_default();
            ("config", Subject::Platform, format!("configuration change ({})", keys.join(", ")))
        }
        _ => return None, // Device payloads and everything else are never parsed.
    };
    Some(Change { at, kind: kind.into(), subject, summary, event_id: Some(event.id.to_string()) })
}

/// A platform record's data as its shared type; none if it does not fit.
fn typed<T: serde::de::DeserializeOwned>(event: &glassbox_core::Event) -> Option<T> {
    serde_json::from_value(event.data.json()?).ok()
}

fn short_digest(digest: &str) -> String {
    digest.chars().take(19).collect()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use glassbox_core::{Draft, IdMinter};

    use std::collections::HashSet;

    use super::*;

    fn recorded(ty: &str, device: &str, seconds: i64) -> RecordedEvent {
        let draft = Draft { device: Some(device.into()), ..Draft::json("glassbox/api", ty, &serde_json::json!({})) };
        let at = Utc::now() + chrono::Duration::seconds(seconds);
        RecordedEvent { event: draft.into_event(IdMinter::new().mint(), at, None), states: Vec::new() }
    }

    fn changes(events: &[RecordedEvent]) -> Vec<Change> {
        let mut batches = Batches::default();
        let noted = events.iter().flat_map(|e| note(e, &mut batches));
        noted.filter_map(|n| if let Noted::Change(c) = n { Some(c) } else { None }).collect()
    }

    #[test]
    fn a_fleet_registered_within_a_minute_is_one_change_that_grows() {
        let fleet: Vec<_> = (0..5).map(|i| recorded("device.registered", &format!("d{i}"), i)).collect();
        let noted = changes(&fleet);
        assert_eq!(noted.len(), 5, "noted at once, each time");
        assert!(noted.iter().all(|c| c.event_id == noted[0].event_id), "one change, updated in place");
        assert_eq!(noted[0].subject, Subject::Device("d0".into()));
        assert_eq!(noted[0].summary, "device d0 registered");
        let last = noted.last().unwrap();
        assert_eq!((last.kind.as_str(), &last.subject), ("device_registered", &Subject::Platform));
        assert_eq!(last.summary, "5 devices registered (d0, d1, d2, …)");
    }

    fn function_record(ty: &str, data: serde_json::Value) -> RecordedEvent {
        let draft = Draft { subject: Some("fan".into()), ..Draft::json("glassbox/functions/fan", ty, &data) };
        RecordedEvent { event: draft.into_event(IdMinter::new().mint(), Utc::now(), None), states: Vec::new() }
    }

    #[test]
    fn promotes_and_deletes_are_changes_of_their_function_with_the_version_replaced() {
        // As recorded before principals were: no `principal`, and still read.
        let promoted = serde_json::json!({"function": "fan", "from": 3, "to": 1, "digest": "sha256:ab", "by": "ops"});
        let deleted = serde_json::json!({"function": "fan", "version": 1, "by": "ops", "forced": false,
            "purged": false, "dropped": 0, "running": 0});
        let back = serde_json::json!({"function": "fan", "from": null, "to": 2, "digest": "sha256:cd", "by": "ops"});
        let noted = changes(&[
            function_record(FUNCTION_PROMOTED, promoted),
            function_record(FUNCTION_DELETED, deleted),
            function_record(FUNCTION_PROMOTED, back),
        ]);
        let said: Vec<(&str, &str)> = noted.iter().map(|c| (c.kind.as_str(), c.summary.as_str())).collect();
        assert_eq!(
            said,
            [
                ("promote", "promote of fan from v3 to v1 by ops"),
                ("delete", "delete of fan v1 by ops"),
                ("promote", "promote of fan from deleted to v2 by ops"),
            ]
        );
        assert!(noted.iter().all(|c| c.subject == Subject::Function("fan".into())));
    }

    #[test]
    fn a_minute_later_or_another_kind_is_another_change() {
        let events = [
            recorded("device.registered", "d0", 0),
            recorded("device.disabled", "d0", 1),
            recorded("device.registered", "d1", 61),
        ];
        let ids: HashSet<_> = changes(&events).into_iter().map(|c| c.event_id).collect();
        assert_eq!(ids.len(), 3);
    }
}
