//! The device control plane's service: device shadows, reached over the
//! HTTP API and over MQTT on each device's reserved topics
//! (`$glassbox/devices/<id>/shadow/…`, through the gateway's [`Reserved`]).
//!
//! Every accepted change is an event (`device.shadow.updated`) caused by the
//! request (the device's PUBLISH, or the operator's call), and every message
//! sent back to the device (accepted, rejected, delta) is an event caused by
//! that, so `glassbox trace` follows a desired-state change to the device.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use glassbox_core::{Data, Draft, EventId};
use glassbox_devices::{Shadow, ShadowError, ShadowLimits, ShadowUpdate};
use glassbox_gateway::broker::{Broker, RESERVED_PREFIX, Reserved, WeakBroker};
use glassbox_gateway::codec::QoS;
use glassbox_gateway::topic::matches;
use glassbox_store::{DeviceRegistry, StoreError};
use serde_json::{Value, json};

use crate::pipeline::Pipeline;

/// Attempts when a concurrent update moved the shadow on under us.
const CAS_ATTEMPTS: usize = 5;

pub struct Control {
    devices: Arc<dyn DeviceRegistry>,
    pipeline: Arc<Pipeline>,
    /// Weak: the broker holds this service (as its reserved-topic handler).
    broker: WeakBroker,
    limits: ShadowLimits,
}

/// Why a shadow update did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Shadow(#[from] ShadowError),
    #[error("no device {0:?}; `glassbox devices list` shows the registered ones")]
    UnknownDevice(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Control {
    pub fn new(
        devices: Arc<dyn DeviceRegistry>,
        pipeline: Arc<Pipeline>,
        broker: Broker,
        limits: ShadowLimits,
    ) -> Self {
        Self { devices, pipeline, broker: broker.downgrade(), limits }
    }

    /// The device's shadow (empty at version 0 if never set); `None` for an unknown device.
    pub async fn shadow(&self, device: &str) -> Result<Option<Shadow>, StoreError> {
        if self.devices.device(device).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.load(device).await?.1))
    }

    async fn load(&self, device: &str) -> Result<(u64, Shadow), StoreError> {
        match self.devices.shadow(device).await? {
            None => Ok((0, Shadow::default())),
            Some((version, text)) => {
                let shadow = serde_json::from_str(&text)
                    .map_err(|e| StoreError::Internal(format!("stored shadow of {device:?} is damaged: {e}")))?;
                Ok((version, shadow))
            }
        }
    }

    /// Applies an update by `actor` (`operator`, `device`), caused by event
    /// `cause` if any; records the change and pushes a new delta to the device.
    pub async fn update(
        &self,
        device: &str,
        update: &ShadowUpdate,
        actor: &str,
        cause: Option<EventId>,
    ) -> Result<Shadow, UpdateError> {
        if self.devices.device(device).await?.is_none() {
            return Err(UpdateError::UnknownDevice(device.to_string()));
        }
        for _ in 0..CAS_ATTEMPTS {
            let (stored, mut shadow) = self.load(device).await?;
            let delta_before = shadow.delta();
            if !shadow.apply(update, self.limits, Utc::now())? {
                return Ok(shadow);
            }
            let document = serde_json::to_string(&shadow).map_err(|e| StoreError::Internal(e.to_string()))?;
            if !self.devices.put_shadow(device, stored, shadow.version, document).await? {
                continue; // Someone else got there first: apply to theirs.
            }
            let state = json!({ "desired": update.state.desired, "reported": update.state.reported });
            let data = json!({ "actor": actor, "version": shadow.version, "state": state, "delta": shadow.delta() });
            let change = self.record(device, "device.shadow.updated", None, data, cause).await;
            let delta = shadow.delta();
            if !delta.is_empty() && delta != delta_before {
                self.push_delta(device, &shadow, change.or(cause)).await;
            }
            return Ok(shadow);
        }
        Err(UpdateError::Store(StoreError::Unavailable(format!(
            "the shadow of {device:?} kept changing under {CAS_ATTEMPTS} attempts; try again"
        ))))
    }

    /// Records an event about the device; failures are logged (the change
    /// itself is stored) and yield no id.
    async fn record(
        &self,
        device: &str,
        ty: &str,
        subject: Option<String>,
        data: Value,
        cause: Option<EventId>,
    ) -> Option<EventId> {
        let raw = serde_json::value::to_raw_value(&data).ok()?;
        let draft = Draft {
            source: "glassbox/shadow".into(),
            ty: ty.into(),
            subject,
            device: Some(device.into()),
            causationid: cause.map(|c| c.to_string()),
            datacontenttype: Some("application/json".into()),
            data: Data::Json(raw),
            ..Draft::default()
        };
        match self.pipeline.ingest(vec![draft], "platform").await {
            Ok(appended) => appended.first().and_then(|a| a.id.parse().ok()),
            Err(e) => {
                tracing::error!(device, event = ty, error = %e, "could not record a shadow event");
                None
            }
        }
    }

    /// Sends `body` to the device on `$glassbox/devices/<id>/shadow/<suffix>`.
    async fn send(&self, device: &str, suffix: &str, ty: &str, body: Value, cause: Option<EventId>) {
        let topic = format!("{RESERVED_PREFIX}{device}/shadow/{suffix}");
        let payload = body.to_string();
        let Ok(raw) = serde_json::value::RawValue::from_string(payload.clone()) else { return };
        let draft = Draft {
            source: "glassbox/shadow".into(),
            ty: ty.into(),
            subject: Some(topic.clone()),
            device: Some(device.into()),
            causationid: cause.map(|c| c.to_string()),
            datacontenttype: Some("application/json".into()),
            data: Data::Json(raw),
            ..Draft::default()
        };
        let Some(broker) = self.broker.upgrade() else { return };
        if let Err(e) = broker.publish(draft, &topic, Bytes::from(payload), QoS::AtLeastOnce).await {
            tracing::error!(device, topic, error = %e, "could not send a shadow message");
        }
    }

    async fn push_delta(&self, device: &str, shadow: &Shadow, cause: Option<EventId>) {
        let body = json!({ "state": shadow.delta(), "version": shadow.version, "timestamp": Utc::now() });
        self.send(device, "delta", "device.shadow.delta", body, cause).await;
    }

    /// Pushes the delta if there is one (on connect, on subscribe).
    async fn push_pending_delta(&self, device: &str) {
        match self.load(device).await {
            Ok((_, shadow)) if !shadow.delta().is_empty() => self.push_delta(device, &shadow, None).await,
            Ok(_) => {}
            Err(e) => tracing::warn!(device, error = %e, "could not read the shadow to push its delta"),
        }
    }

    async fn mqtt_update(&self, device: &str, payload: &[u8], event: EventId) {
        let update = ShadowUpdate::parse(payload);
        let token = update.as_ref().ok().and_then(|u| u.client_token.clone());
        let outcome = match &update {
            Ok(update) => self.update(device, update, "device", Some(event)).await,
            Err(e) => Err(UpdateError::Shadow(e.clone())),
        };
        match outcome {
            Ok(shadow) => {
                let body = json!({
                    "state": update.ok().map(|u| json!({ "desired": u.state.desired, "reported": u.state.reported })),
                    "version": shadow.version,
                    "clientToken": token,
                    "timestamp": Utc::now(),
                });
                self.send(device, "update/accepted", "device.shadow.accepted", body, Some(event)).await;
            }
            Err(e) => {
                let code = match &e {
                    UpdateError::Shadow(e) => e.code(),
                    UpdateError::UnknownDevice(_) => 404,
                    UpdateError::Store(_) => 503,
                };
                let body = json!({ "code": code, "message": e.to_string(), "clientToken": token });
                self.send(device, "update/rejected", "device.shadow.rejected", body, Some(event)).await;
            }
        }
    }
}

#[async_trait]
impl Reserved for Control {
    async fn published(&self, device: &str, rest: &str, payload: &[u8], event: EventId) {
        match rest {
            "shadow/update" => self.mqtt_update(device, payload, event).await,
            "shadow/get" => match self.shadow(device).await {
                Ok(Some(shadow)) => {
                    let body = shadow.to_json(device);
                    self.send(device, "get/accepted", "device.shadow.accepted", body, Some(event)).await;
                }
                Ok(None) => {}
                Err(e) => {
                    let body = json!({ "code": 503, "message": e.to_string() });
                    self.send(device, "get/rejected", "device.shadow.rejected", body, Some(event)).await;
                }
            },
            _ => {}
        }
    }

    async fn connected(&self, device: &str) {
        self.push_pending_delta(device).await;
    }

    async fn subscribed(&self, device: &str, filter: &str) {
        if matches(filter, &format!("{RESERVED_PREFIX}{device}/shadow/delta")) {
            self.push_pending_delta(device).await;
        }
    }
}
