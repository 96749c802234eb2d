//! The host services functions call (key-value store, device shadows and
//! commands), bridged from the invocation's blocking thread to the async
//! services. A dry run gets a sandbox of them instead (`sandbox.rs`).

use std::sync::Arc;
use std::time::Duration;

use glassbox_core::{EventId, Principal};
use glassbox_devices::ShadowUpdate;
use glassbox_devices::shadow::UpdateState;
use glassbox_runtime::{KvQuota, Services};
use glassbox_store::FunctionStore;
use tokio::runtime::Handle;

use glassbox_control::{Control, NewCommand};

pub struct HostServices {
    pub(super) store: Arc<dyn FunctionStore>,
    pub(super) control: Arc<Control>,
    pub(super) handle: Handle,
}

/// The services as one invocation sees them: what it changes is caused by
/// the event it handles, and done by the function (`function:<name>`).
struct ForInvocation {
    host: Arc<HostServices>,
    function: Principal,
    cause: EventId,
}

impl HostServices {
    /// A device's shadow as the guest reads it (JSON), or why not.
    pub(super) fn shadow(&self, device: &str) -> Result<String, String> {
        match self.handle.block_on(self.control.shadow(device)) {
            Ok(Some(shadow)) => serde_json::to_string(&shadow.document(device)).map_err(|e| e.to_string()),
            Ok(None) => Err(format!("no device {device:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn new(store: Arc<dyn FunctionStore>, control: Arc<Control>, handle: Handle) -> Self {
        Self { store, control, handle }
    }

    pub fn for_invocation(self: &Arc<Self>, function: &str, cause: EventId) -> Arc<dyn Services> {
        Arc::new(ForInvocation { host: self.clone(), function: Principal::function(function), cause })
    }
}

impl Services for ForInvocation {
    fn kv_get(&self, function: &str, key: &str) -> Option<Vec<u8>> {
        self.host.handle.block_on(self.host.store.kv_get(function, key)).ok().flatten()
    }

    fn kv_set(&self, function: &str, key: &str, value: Vec<u8>, quota: KvQuota) -> Result<(), String> {
        let quota = glassbox_store::KvQuota { keys_max: quota.keys_max, bytes_max: quota.bytes_max };
        self.host.handle.block_on(self.host.store.kv_set(function, key, value, quota)).map_err(|e| e.to_string())
    }

    fn kv_delete(&self, function: &str, key: &str) {
        let _ = self.host.handle.block_on(self.host.store.kv_delete(function, key));
    }

    fn shadow(&self, device: &str) -> Result<String, String> {
        self.host.shadow(device)
    }

    fn update_desired(&self, device: &str, desired_json: &str) -> Result<u64, String> {
        let update = desired_update(desired_json)?;
        let control = &self.host.control;
        let updated =
            self.host.handle.block_on(control.update_shadow(device, &update, &self.function, Some(self.cause)));
        updated.map(|s| s.version).map_err(|e| e.to_string())
    }

    fn send_command(&self, device: &str, name: &str, payload_json: &str, ttl: Duration) -> Result<String, String> {
        let command = new_command(name, payload_json, ttl)?;
        let issued =
            self.host.handle.block_on(self.host.control.issue(device, command, &self.function, Some(self.cause)));
        issued.map(|(c, _)| c.id).map_err(|e| e.to_string())
    }
}

/// A function's `update-desired` call as a shadow update.
pub(super) fn desired_update(desired_json: &str) -> Result<ShadowUpdate, String> {
    let desired = serde_json::from_str(desired_json).map_err(|e| format!("desired is not JSON: {e}"))?;
    Ok(ShadowUpdate { state: UpdateState { desired: Some(desired), reported: None }, ..Default::default() })
}

/// A function's `send-command` call as a command (a zero TTL: the default).
pub(super) fn new_command(name: &str, payload_json: &str, ttl: Duration) -> Result<NewCommand, String> {
    let payload = match payload_json.trim() {
        "" => None,
        text => Some(serde_json::from_str(text).map_err(|e| format!("payload is not JSON: {e}"))?),
    };
    let ttl = (!ttl.is_zero()).then(|| humantime::format_duration(ttl).to_string());
    Ok(NewCommand { name: name.into(), payload, ttl, idempotency_key: None })
}
