//! Dry runs: a replay with `dry_run` runs against a sandbox of the host
//! services. Reads see the real state (a key's value, a device's shadow);
//! every write stays in the sandbox, local to the invocation — a key set
//! and then read back shows the new value, a desired state set and then
//! read shows the new shadow — and is listed in what the run [`Would`]
//! have done. Commands are checked as a real run checks them (the device
//! known and enabled, name, TTL and payload within limits), then listed,
//! not queued. Emitted events and outbound requests come from the
//! invocation's report (outputs are never recorded, requests never sent).
//! Nothing outside the invocation changes: no event is recorded, no
//! command queued, no shadow or key-value row written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use glassbox_core::EgressRequest;
use glassbox_devices::Shadow;
use glassbox_runtime::{KvQuota, Outbound, Output, Report, Services};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Live;
use super::replayed::ReplayedResponse;
use super::services::{HostServices, desired_update, new_command};

/// The host services as a dry run sees them: the real state to read, an
/// overlay of its own writes, and the list of what it would have done.
pub struct Sandbox {
    host: Arc<HostServices>,
    function: String,
    overlay: Mutex<Overlay>,
}

/// The dry run's own writes, over the real state.
#[derive(Default)]
struct Overlay {
    /// Keys it set (`Some`) or deleted (`None`).
    kv: HashMap<String, Option<Vec<u8>>>,
    /// Shadows as its desired-state updates left them.
    shadows: HashMap<String, Shadow>,
    commands: Vec<WouldCommand>,
    desired: Vec<WouldDesire>,
    writes: Vec<KvWrite>,
}

/// What a dry run would have done, had it been a real run, in the order it
/// asked: nothing of it was done. The `would` of a dry-run replay's answer.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Would {
    /// Commands it would have queued for devices.
    pub commands: Vec<WouldCommand>,
    /// Desired-state updates it would have made.
    pub desired: Vec<WouldDesire>,
    /// Key-value writes and deletes it would have made.
    pub kv: Vec<KvWrite>,
    /// Events it would have recorded (emitted and returned outputs; none
    /// unless the invocation succeeded, as in a real run).
    pub events: Vec<WouldEmit>,
    /// Outbound requests it made, none of them sent.
    pub requests: Vec<WouldRequest>,
}

/// A command a dry run would have queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WouldCommand {
    pub device: String,
    pub name: String,
    pub payload: Option<Value>,
    /// The TTL it would have had (`1m`; the server's default when the
    /// function gave none).
    pub ttl: String,
}

/// A desired-state update a dry run would have made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WouldDesire {
    pub device: String,
    /// The desired state it would have merged in, as the function gave it.
    pub state: Value,
    /// The shadow's version after it.
    pub version: u64,
    /// Whether it would have changed the shadow (else a real run records
    /// and sends nothing for it either).
    pub changed: bool,
}

/// A key-value write or delete a dry run would have made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvWrite {
    pub key: String,
    /// The value it would have set, when it is UTF-8 text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value it would have set, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    /// Whether it would have deleted the key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// An event a dry run would have recorded, caused by the replayed event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WouldEmit {
    #[serde(rename = "type")]
    pub type_: String,
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// The data, when it is JSON (as it would be recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// The data, when it is not JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
}

/// An outbound request a dry run made and did not send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WouldRequest {
    pub method: String,
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// Whether the function's egress list would have let a real run send it.
    pub allowed: bool,
}

/// What a dry-run replay answers: how the run went, and what it would
/// have done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DryRun {
    pub function: String,
    pub version: u32,
    pub event_id: String,
    /// Always true: tells this answer from a recorded invocation.
    pub dry_run: bool,
    /// `succeeded`, `failed`, `timed_out`, …
    pub outcome: String,
    pub error: Option<String>,
    pub wall_us: u64,
    pub logs: Vec<glassbox_core::LogLine>,
    /// Its outbound requests as a real run would record them (all denied).
    pub egress: Vec<EgressRequest>,
    pub would: Would,
    /// For an HTTP function: what it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<ReplayedResponse>,
}

impl DryRun {
    /// The answer for `report`, a dry run of `live` on `event_id` in `sandbox`.
    pub(crate) fn new(live: &Live, event_id: &str, report: Report, sandbox: &Sandbox) -> Self {
        let would = sandbox.would(&report, &live.egress);
        Self {
            function: live.version.name.clone(),
            version: live.version.version,
            event_id: event_id.to_string(),
            dry_run: true,
            outcome: report.outcome.as_str().to_string(),
            error: report.outcome.detail().map(str::to_string),
            wall_us: report.wall.as_micros() as u64,
            logs: report.logs.iter().map(super::record::log_line).collect(),
            egress: report.egress.iter().map(super::record::egress_request).collect(),
            would,
            response: None,
        }
    }
}

impl HostServices {
    /// A sandbox of these services for one dry run of `function`.
    pub fn sandbox(self: &Arc<Self>, function: &str) -> Arc<Sandbox> {
        Arc::new(Sandbox { host: self.clone(), function: function.to_string(), overlay: Mutex::default() })
    }
}

impl Sandbox {
    fn overlay(&self) -> MutexGuard<'_, Overlay> {
        self.overlay.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the run would have done: the writes it asked for, and from its
    /// report the events and requests; `egress` is the function's egress
    /// list, to say which requests a real run would have sent.
    pub fn would(&self, report: &Report, egress: &Outbound) -> Would {
        let mut overlay = self.overlay();
        Would {
            commands: std::mem::take(&mut overlay.commands),
            desired: std::mem::take(&mut overlay.desired),
            kv: std::mem::take(&mut overlay.writes),
            events: report.outputs.iter().map(WouldEmit::from).collect(),
            requests: report
                .egress
                .iter()
                .map(|r| WouldRequest {
                    method: r.method.clone(),
                    scheme: r.scheme.clone(),
                    host: r.host.clone(),
                    port: r.port,
                    allowed: egress.allows(&r.scheme, &r.host, r.port),
                })
                .collect(),
        }
    }

    /// The key's value as this run sees it: its own write, else the store's.
    fn read_kv(&self, key: &str) -> Option<Vec<u8>> {
        if let Some(written) = self.overlay().kv.get(key) {
            return written.clone();
        }
        let host = &self.host;
        host.handle.block_on(host.store.kv_get(&self.function, key)).ok().flatten()
    }
}

impl From<&Output> for WouldEmit {
    fn from(output: &Output) -> Self {
        let json = std::str::from_utf8(&output.data).ok().and_then(|t| serde_json::from_str::<Value>(t).ok());
        let data_base64 = match (&json, output.data.is_empty()) {
            (None, false) => Some(BASE64.encode(&output.data)),
            _ => None,
        };
        Self {
            type_: output.type_.clone(),
            subject: output.subject.clone(),
            datacontenttype: output.datacontenttype.clone(),
            data: json,
            data_base64,
        }
    }
}

impl KvWrite {
    fn set(key: &str, value: &[u8]) -> Self {
        let (value, value_base64) = match std::str::from_utf8(value) {
            Ok(text) => (Some(text.to_string()), None),
            Err(_) => (None, Some(BASE64.encode(value))),
        };
        Self { key: key.to_string(), value, value_base64, deleted: false }
    }

    fn delete(key: &str) -> Self {
        Self { key: key.to_string(), value: None, value_base64: None, deleted: true }
    }
}

/// Writes go to the overlay; reads see the overlay, then the real state.
/// The store's quota (`kv_keys_max`, `kv_bytes_max`) is not checked: the
/// sandbox does not know what the store holds in all.
impl Services for Sandbox {
    fn kv_get(&self, _function: &str, key: &str) -> Option<Vec<u8>> {
        self.read_kv(key)
    }

    fn kv_set(&self, _function: &str, key: &str, value: Vec<u8>, _quota: KvQuota) -> Result<(), String> {
        let mut overlay = self.overlay();
        overlay.writes.push(KvWrite::set(key, &value));
        overlay.kv.insert(key.to_string(), Some(value));
        Ok(())
    }

    fn kv_delete(&self, _function: &str, key: &str) {
        let mut overlay = self.overlay();
        overlay.writes.push(KvWrite::delete(key));
        overlay.kv.insert(key.to_string(), None);
    }

    fn shadow(&self, device: &str) -> Result<String, String> {
        if let Some(shadow) = self.overlay().shadows.get(device) {
            return serde_json::to_string(&shadow.document(device)).map_err(|e| e.to_string());
        }
        self.host.shadow(device)
    }

    fn update_desired(&self, device: &str, desired_json: &str) -> Result<u64, String> {
        let update = desired_update(desired_json)?;
        let base = self.overlay().shadows.get(device).cloned();
        let preview = self.host.control.preview_shadow(device, base, &update);
        let (shadow, changed) = self.host.handle.block_on(preview).map_err(|e| e.to_string())?;
        let version = shadow.version;
        let state = update.state.desired.unwrap_or_default();
        let mut overlay = self.overlay();
        overlay.desired.push(WouldDesire { device: device.to_string(), state, version, changed });
        overlay.shadows.insert(device.to_string(), shadow);
        Ok(version)
    }

    fn send_command(&self, device: &str, name: &str, payload_json: &str, ttl: Duration) -> Result<String, String> {
        let command = new_command(name, payload_json, ttl)?;
        let checked = self.host.handle.block_on(self.host.control.check_command(device, &command));
        let ttl = humantime::format_duration(checked.map_err(|e| e.to_string())?).to_string();
        let mut overlay = self.overlay();
        let would = WouldCommand { device: device.to_string(), name: command.name, payload: command.payload, ttl };
        overlay.commands.push(would);
        // No command exists: the id says so (a function that logs it shows it).
        Ok(format!("dry-run-{}", overlay.commands.len()))
    }
}
