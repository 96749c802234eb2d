//! What the recorded stream tells the diagnosis besides metrics: changes
//! that may cause anomalies (deploys, rollbacks, device registry changes,
//! configuration changes, batches of desired-state updates and commands),
//! the dependencies it reveals (a device whose events trigger a function),
//! and the liveness detector's silences. Pure: the caller applies them.

use std::collections::HashSet;

use glassbox_core::RecordedEvent;
use glassbox_diagnose::{Change, SeriesSpec, Subject};
use serde_json::Value;

use crate::series::derive::NONE;

/// Shadow and command events closer than this are one batch (one change).
const BATCH_SECONDS: f64 = 60.0;

/// One thing a recorded event tells the diagnosis.
pub(super) enum Noted {
    Change(Change),
    Depends(Subject, Subject),
    /// Liveness flagged the device silent (`device.silent`), or it spoke again.
    Silent(SeriesSpec, f64),
    Active(String, f64),
}

/// Shadow and command events being gathered into one change per minute.
#[derive(Default)]
pub(super) struct Batches(Vec<Batch>);

struct Batch {
    kind: &'static str,
    first: f64,
    count: usize,
    devices: HashSet<String>,
    event_id: String,
}

impl Batches {
    fn add(&mut self, kind: &'static str, at: f64, device: Option<&str>, event_id: String) {
        match self.0.iter_mut().find(|b| b.kind == kind) {
            Some(b) => {
                b.count += 1;
                b.devices.extend(device.map(str::to_string));
            }
            None => {
                let devices = device.map(str::to_string).into_iter().collect();
                self.0.push(Batch { kind, first: at, count: 1, devices, event_id });
            }
        }
    }

    /// A batch whose minute is over at `now`, as one change.
    fn due(&mut self, now: f64) -> Option<Change> {
        let due = self.0.iter().position(|b| now - b.first >= BATCH_SECONDS)?;
        let b = self.0.remove(due);
        let subject = match b.devices.len() {
            1 => Subject::Device(b.devices.into_iter().next().unwrap_or_default()),
            _ => Subject::Platform,
        };
        let what = if b.kind == "shadow_batch" { "desired-state update" } else { "command" };
        let summary = format!("{} {what}{} sent to {subject}", b.count, if b.count == 1 { "" } else { "s" });
        Some(Change { at: b.first, kind: b.kind.into(), subject, summary, event_id: Some(b.event_id) })
    }
}

/// The liveness series of a device: flagged by the control plane, not measured.
fn liveness(device: &str) -> SeriesSpec {
    SeriesSpec {
        key: format!("device_liveness{{device=\"{device}\"}}"),
        what: "liveness".into(),
        unit: String::new(),
        subject: Subject::Device(device.to_string()),
    }
}

/// What `recorded` tells the diagnosis (and a batch that its time closed).
pub(super) fn note(recorded: &RecordedEvent, batches: &mut Batches) -> Vec<Noted> {
    let event = &recorded.event;
    let at = recorded.states.first().map_or(event.time, |s| s.at).timestamp_micros() as f64 / 1e6;
    let mut noted: Vec<Noted> = batches.due(at).map(Noted::Change).into_iter().collect();
    let device = event.device.as_deref();
    match event.ty.as_str() {
        "device.silent" => noted.extend(device.map(|d| Noted::Silent(liveness(d), at))),
        "device.active" => noted.extend(device.map(|d| Noted::Active(liveness(d).key, at))),
        // The invocation record's subject is its function.
        "function.invoked" => {
            if let (Some(d), Some(f)) = (device, event.subject.as_deref()) {
                noted.push(Noted::Depends(Subject::Device(d.into()), Subject::Function(f.into())));
            }
        }
        "device.command.queued" => batches.add("command_batch", at, device, event.id.to_string()),
        "device.shadow.updated" => {
            let data = event.data.json().unwrap_or(Value::Null);
            if !data["state"]["desired"].is_null() {
                batches.add("shadow_batch", at, device, event.id.to_string());
            }
        }
        _ => noted.extend(change(recorded, at).map(Noted::Change)),
    }
    noted
}

/// A deploy, rollback, device registry or configuration change, as recorded.
fn change(recorded: &RecordedEvent, at: f64) -> Option<Change> {
    let event = &recorded.event;
    let registry = [
        "device.registered",
        "device.updated",
        "device.disabled",
        "device.enabled",
        "device.deleted",
        "device.secret_rotated",
    ];
    let platform = ["function.deployed", "function.rolled_back", "config.changed"];
    if !registry.contains(&event.ty.as_str()) && !platform.contains(&event.ty.as_str()) {
        return None; // Device payloads and everything else are never parsed.
    }
    let data = event.data.json().unwrap_or(Value::Null);
    let text = |key: &str| data[key].as_str().unwrap_or(NONE).to_string();
    let (kind, subject, summary) = match event.ty.as_str() {
        "function.deployed" => (
            "deploy".to_string(),
            Subject::Function(text("function")),
            format!(
                "deploy of {} v{} ({}) by {}",
                text("function"),
                data["version"],
                short_digest(&text("digest")),
                text("by")
            ),
        ),
        "function.rolled_back" => (
            "rollback".to_string(),
            Subject::Function(text("function")),
            format!("rollback of {} from v{} to v{} by {}", text("function"), data["from"], data["to"], text("by")),
        ),
        "config.changed" => {
            let keys = data["changed"].as_array().map(|k| k.iter().filter_map(Value::as_str).collect::<Vec<_>>());
            (
                "config".to_string(),
                Subject::Platform,
                format!("configuration change ({})", keys.unwrap_or_default().join(", ")),
            )
        }
        ty => {
            let what = ty.trim_start_matches("device.");
            let id = event.device.as_deref().unwrap_or("?");
            let summary = format!("device {id} {}", what.replace('_', " "));
            (format!("device_{what}"), Subject::Device(id.to_string()), summary)
        }
    };
    Some(Change { at, kind, subject, summary, event_id: Some(event.id.to_string()) })
}

fn short_digest(digest: &str) -> String {
    digest.chars().take(19).collect()
}
