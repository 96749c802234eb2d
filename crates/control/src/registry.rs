//! The device registry as a service: who may connect, and every change to
//! that — register, update, disable, enable, rotate a secret, delete, clear
//! a queue. It mints secrets, writes the registry, ends connections the
//! change revokes, and records the change (`device.registered`, …) with the
//! principal who made it. The API's handlers only translate HTTP.
//!
//! A change is written first and recorded after (decision 0015): a record
//! of a change that never happened would mislead liveness and diagnosis. A
//! record that cannot be written is retried, then reported — logged as an
//! error and returned as [`Changed::unrecorded`], which the API answers as
//! a `warning` — never dropped silently, and never turned into an error
//! that would hide a secret shown only once.

use std::sync::Arc;

use glassbox_core::{
    DEVICE_DELETED, DEVICE_DISABLED, DEVICE_ENABLED, DEVICE_QUEUE_CLEARED, DEVICE_REGISTERED, DEVICE_SECRET_ROTATED,
    DEVICE_UPDATED, DisconnectReason, Draft, Principal, QueueCleared, RegistryChanged, secrets, validate_device_id,
};
use glassbox_link::{Cleared, DeviceLink};
use glassbox_store::{Device, DeviceRegistry, StoreError};
use serde::Serialize;
use serde_json::{Map, Value};

use super::Control;
use super::metadata::patched;
use super::record::{Changed, record_change};
use glassbox_pipeline::Pipeline;

/// The device secret's prefix: `gbxd_` and 256 random bits in hex.
const SECRET_PREFIX: &str = "gbxd_";

pub struct Registry {
    devices: Arc<dyn DeviceRegistry>,
    link: Arc<dyn DeviceLink>,
    control: Arc<Control>,
    pipeline: Arc<Pipeline>,
}

/// Why a registry change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    InvalidId(String),
    #[error("{0}")]
    InvalidMetadata(String),
    #[error("no device {0:?}; `glassbox devices list` shows the registered ones")]
    Unknown(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A device and its new secret, shown only in this answer.
#[derive(Debug)]
pub struct WithSecret {
    pub device: Device,
    pub secret: String,
    /// Whether a connection made with the old secret was closed (rotation only).
    pub disconnected: Option<bool>,
}

/// A device disabled or enabled.
#[derive(Debug)]
pub struct Toggled {
    pub device: Device,
    /// Whether disabling it closed its connection; none when enabling.
    pub disconnected: Option<bool>,
}

impl Registry {
    pub fn new(
        devices: Arc<dyn DeviceRegistry>,
        link: Arc<dyn DeviceLink>,
        control: Arc<Control>,
        pipeline: Arc<Pipeline>,
    ) -> Self {
        Self { devices, link, control, pipeline }
    }

    /// Registers device `id` with a new secret.
    pub async fn create(&self, id: &str, by: &Principal) -> Result<Changed<WithSecret>, RegistryError> {
        validate_device_id(id).map_err(RegistryError::InvalidId)?;
        let (secret, hash) = secrets::mint(SECRET_PREFIX);
        let device = self.devices.create_device(id, hash).await?;
        let unrecorded = self.record(id, DEVICE_REGISTERED, &RegistryChanged::by(by)).await;
        Ok(Changed { value: WithSecret { device, secret, disconnected: None }, unrecorded })
    }

    /// Changes the metadata keys `patch` names (see `metadata`).
    pub async fn update(
        &self,
        id: &str,
        patch: &Map<String, Value>,
        by: &Principal,
    ) -> Result<Changed<Device>, RegistryError> {
        let device = self.devices.device(id).await?.ok_or_else(|| unknown(id))?;
        let meta = patched(device.meta, patch).map_err(RegistryError::InvalidMetadata)?;
        let cadence = meta.cadence_seconds;
        let device = self.devices.set_device_meta(id, meta).await?.ok_or_else(|| unknown(id))?;
        self.control.declare_cadence(id, cadence);
        let unrecorded = self.record(id, DEVICE_UPDATED, &RegistryChanged::by(by)).await;
        Ok(Changed { value: device, unrecorded })
    }

    /// Disables a device (its connection is closed, new ones refused) or enables it.
    pub async fn set_disabled(
        &self,
        id: &str,
        disabled: bool,
        by: &Principal,
    ) -> Result<Changed<Toggled>, RegistryError> {
        let device = self.devices.set_device_disabled(id, disabled).await?.ok_or_else(|| unknown(id))?;
        let disconnected = disabled.then(|| self.link.disconnect(id, DisconnectReason::DeviceDisabled));
        let ty = if disabled { DEVICE_DISABLED } else { DEVICE_ENABLED };
        let unrecorded = self.record(id, ty, &RegistryChanged::by(by)).await;
        Ok(Changed { value: Toggled { device, disconnected }, unrecorded })
    }

    /// Gives a device a new secret: the old one stops working, and a
    /// connection made with it is closed.
    pub async fn rotate_secret(&self, id: &str, by: &Principal) -> Result<Changed<WithSecret>, RegistryError> {
        let (secret, hash) = secrets::mint(SECRET_PREFIX);
        let device = self.devices.set_device_secret(id, hash).await?.ok_or_else(|| unknown(id))?;
        let disconnected = Some(self.link.disconnect(id, DisconnectReason::Administrative));
        let unrecorded = self.record(id, DEVICE_SECRET_ROTATED, &RegistryChanged::by(by)).await;
        Ok(Changed { value: WithSecret { device, secret, disconnected }, unrecorded })
    }

    /// Removes a device and ends its session; its recorded events stay.
    pub async fn delete(&self, id: &str, by: &Principal) -> Result<Changed<Device>, RegistryError> {
        let device = self.devices.delete_device(id).await?.ok_or_else(|| unknown(id))?;
        self.link.end_session(id, "the device was deleted").await;
        let unrecorded = self.record(id, DEVICE_DELETED, &RegistryChanged::by(by)).await;
        Ok(Changed { value: device, unrecorded })
    }

    /// Drops the messages waiting in the device's session queue (each
    /// recorded as dropped, reason `cleared`, naming `by`); none when the
    /// broker holds no session for it.
    pub async fn clear_queue(&self, id: &str, by: &Principal) -> Result<Changed<Option<Cleared>>, RegistryError> {
        self.devices.device(id).await?.ok_or_else(|| unknown(id))?;
        let cleared = self.link.clear_queue(id, by).await;
        let data = QueueCleared {
            actor: by.label(),
            principal: by.clone(),
            cleared: cleared.as_ref().map_or(0, |c| c.count),
            session: cleared.is_some(),
        };
        let unrecorded = self.record(id, DEVICE_QUEUE_CLEARED, &data).await;
        Ok(Changed { value: cleared, unrecorded })
    }

    /// Records a change already made as an event about the device,
    /// retrying a failure; returns why it could not, if it could not.
    async fn record(&self, id: &str, ty: &str, data: &impl Serialize) -> Option<String> {
        let draft = Draft { device: Some(id.into()), ..Draft::json("glassbox/registry", ty, data) };
        record_change(&self.pipeline, draft, "api").await
    }
}

fn unknown(id: &str) -> RegistryError {
    RegistryError::Unknown(id.to_string())
}
