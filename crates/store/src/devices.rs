//! The device registry: who may connect. Secrets are random, shown once at
//! creation or rotation, and stored only as SHA-256 hashes
//! (`glassbox_core::secrets` mints and checks them).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreError;

/// A registered device, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Device {
    pub id: String,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(flatten)]
    pub meta: DeviceMeta,
}

/// What operators say about a device: how to find it, whose it is, and how
/// often it should be heard from.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct DeviceMeta {
    pub tags: std::collections::BTreeMap<String, String>,
    pub group: Option<String>,
    /// Who the device's data is about (the data subject) or who runs it.
    pub owner: Option<String>,
    pub attributes: std::collections::BTreeMap<String, serde_json::Value>,
    /// Declared reporting cadence in seconds; learned from its messages if unset.
    pub cadence_seconds: Option<u64>,
    /// Only a client certificate logs it in; its secret no longer does.
    pub certificate_only: bool,
}

/// Which devices to list: one page in id order, narrowed by what operators
/// said about them. Every field set must match (and); unset fields match all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceQuery {
    /// Only ids after this one (the previous page's last id).
    pub after: Option<String>,
    /// At most this many devices.
    pub limit: usize,
    /// Only devices in this group.
    pub group: Option<String>,
    /// Only devices with this tag `(key, value)`.
    pub tag: Option<(String, String)>,
    /// Only devices of this owner.
    pub owner: Option<String>,
}

impl DeviceQuery {
    /// The first `limit` devices, unfiltered.
    pub fn page(after: Option<&str>, limit: usize) -> Self {
        Self { after: after.map(str::to_string), limit, ..Self::default() }
    }

    /// Whether `device` matches the query's filters (not its page bounds):
    /// what every implementation must agree with.
    pub fn matches(&self, device: &Device) -> bool {
        let meta = &device.meta;
        self.group.as_ref().is_none_or(|g| meta.group.as_ref() == Some(g))
            && self.owner.as_ref().is_none_or(|o| meta.owner.as_ref() == Some(o))
            && self.tag.as_ref().is_none_or(|(k, v)| meta.tags.get(k) == Some(v))
    }
}

/// A device secret's hash (minted and checked with `glassbox_core::secrets`);
/// the secret itself is never stored.
pub use glassbox_core::secrets::SecretHash;

/// Registry storage; implemented by every store.
#[async_trait]
pub trait DeviceRegistry: Send + Sync + 'static {
    /// Registers a device; [`StoreError::Conflict`] if the id is taken.
    async fn create_device(&self, id: &str, secret: SecretHash) -> Result<Device, StoreError>;

    async fn device(&self, id: &str) -> Result<Option<Device>, StoreError>;

    /// The device and its secret hash, for authentication.
    async fn device_credentials(&self, id: &str) -> Result<Option<(Device, SecretHash)>, StoreError>;

    /// Devices matching `query`, in id order, one page.
    async fn devices(&self, query: &DeviceQuery) -> Result<Vec<Device>, StoreError>;

    /// `None` if there is no such device.
    async fn set_device_disabled(&self, id: &str, disabled: bool) -> Result<Option<Device>, StoreError>;

    async fn set_device_secret(&self, id: &str, secret: SecretHash) -> Result<Option<Device>, StoreError>;

    /// Replaces the device's metadata; `None` if there is no such device.
    async fn set_device_meta(&self, id: &str, meta: DeviceMeta) -> Result<Option<Device>, StoreError>;

    /// The device's shadow: its version and JSON document; `None` if never set.
    async fn shadow(&self, id: &str) -> Result<Option<(u64, String)>, StoreError>;

    /// Stores a shadow only if the stored version is still `expected` (0:
    /// none yet); `Ok(false)` if another update got there first.
    async fn put_shadow(&self, id: &str, expected: u64, version: u64, document: String) -> Result<bool, StoreError>;

    /// The deleted device, or `None` if there was none.
    async fn delete_device(&self, id: &str) -> Result<Option<Device>, StoreError>;
}
