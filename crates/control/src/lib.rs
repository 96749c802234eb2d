//! The device control plane's services, reached over the HTTP API and over
//! MQTT on each device's reserved topics `$glassbox/devices/<id>/…`
//! (through the gateway's [`Reserved`]): shadows (`shadows`) and durable
//! commands (`commands`) in [`Control`]; the device registry's changes in
//! [`Registry`] (`registry`, `metadata`); named API tokens in [`NamedTokens`]
//! (`tokens`); device certificates from the built-in CA, their renewal over
//! MQTT and expiry in [`Certificates`] (`certificates`, with its `[ca]`
//! section, [`CaConfig`]); the audit log's checkpoints and proofs in
//! [`AuditLog`] (`audit`, with its `[audit]` section, [`AuditConfig`]).
//!
//! Everything it does is an event: each accepted change, each message sent
//! to a device, each step of a command, each refused request, with the
//! request that caused it as its causation — so `glassbox trace` follows a
//! desired-state change or a command from the operator to the device and back.
//! Every method that changes something takes the [`Principal`] who asks,
//! and the change's record carries it: the operator (over the API or
//! MQTT), the device itself, a function (`function:<name>`), or the
//! platform (`system:<component>`).
//!
//! Owns: the services above and their settings ([`CommandLimits`],
//! [`LivenessSettings`], and the `[control]` section, [`ControlConfig`]).
//! Must not touch: HTTP routing or JSON request shapes (`glassbox-api`
//! calls these services), reading configuration files (the server does),
//! or the function runtime; it never depends on `glassbox-server`.

pub mod audit;
mod certificates;
mod commands;
mod config;
mod liveness;
mod metadata;
mod record;
mod registry;
mod retained;
mod sent;
mod shadows;
mod tokens;

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use glassbox_core::topic::matches;
use glassbox_core::{Active, DEVICE_ACTIVE, DEVICE_SILENT, Draft, EventId, Payload, Principal, Silent};
use glassbox_devices::ShadowLimits;
use glassbox_link::{DeviceLink, DeviceMessage, Reserved, ReservedPublish, reserved_topic};
use glassbox_store::{CommandStore, DeviceRegistry};
use serde::Serialize;

pub use audit::{AuditConfig, AuditError, AuditLog, Consistency, Inclusion};
pub use certificates::{CaConfig, CertificateError, Certificates, Revoked};
pub use commands::{CommandError, CommandLimits, NewCommand};
pub use config::ControlConfig;
pub use liveness::{CadenceSource, LivenessSettings, LivenessView};
pub use record::{Changed, record_change};
pub use registry::{Registry, RegistryError, Toggled, WithSecret};
pub use retained::{BadFilter, RETAINED_LIST_MAX, RetainedMessages};
pub use shadows::UpdateError;
pub use tokens::{Accepted, Minted, NamedTokens, Refused, TokenError, TokenSessions, name_in};

use glassbox_pipeline::Pipeline;

pub struct Control {
    devices: Arc<dyn DeviceRegistry>,
    commands: Arc<dyn CommandStore>,
    pipeline: Arc<Pipeline>,
    /// How devices are reached. It must not keep the transport alive: the
    /// transport holds this service as its reserved-topic handler.
    link: Arc<dyn DeviceLink>,
    shadow_limits: ShadowLimits,
    command_limits: CommandLimits,
    /// Command messages sent and not yet acknowledged (bounded: see [`sent`]).
    sent: Mutex<sent::Sent>,
    liveness: liveness::Liveness,
    /// Answers renewals on `certificate/renew`; set once the service starts.
    certificates: OnceLock<Weak<Certificates>>,
}

impl Control {
    /// The service, with its expiry sweeper running while it lives.
    pub fn start(
        devices: Arc<dyn DeviceRegistry>,
        commands: Arc<dyn CommandStore>,
        pipeline: Arc<Pipeline>,
        link: Arc<dyn DeviceLink>,
        shadow_limits: ShadowLimits,
        command_limits: CommandLimits,
        liveness: LivenessSettings,
    ) -> Arc<Self> {
        let control = Arc::new(Self {
            devices,
            commands,
            pipeline,
            link,
            shadow_limits,
            command_limits,
            sent: Mutex::new(sent::Sent::default()),
            liveness: liveness::Liveness::new(liveness),
            certificates: OnceLock::new(),
        });
        tokio::spawn(sweep(Arc::downgrade(&control)));
        tokio::spawn(watch(Arc::downgrade(&control), control.pipeline.consumer("liveness")));
        control
    }

    /// Hands renewals on `certificate/renew` to the certificate service.
    fn set_certificates(&self, certificates: Weak<Certificates>) {
        let _ = self.certificates.set(certificates);
    }

    /// A renewal, if the certificate service runs; otherwise nothing answers it.
    async fn renew(&self, device: &str, by: &Principal, payload: &[u8], event: EventId) {
        match self.certificates.get().and_then(Weak::upgrade) {
            Some(certificates) => certificates.renew(device, by, payload, event).await,
            None => tracing::debug!(device, "a certificate renewal, but no certificate service runs"),
        }
    }

    /// A device's group, as registered (none: no such device, or no group),
    /// for services that count by group (budgets).
    pub async fn device_group(&self, device: &str) -> Result<Option<String>, glassbox_store::StoreError> {
        Ok(self.devices.device(device).await?.and_then(|d| d.meta.group))
    }

    /// The device's liveness, once anything was heard of it since start.
    pub fn liveness(&self, device: &str) -> Option<LivenessView> {
        self.liveness.view(device)
    }

    /// A device's declared cadence changed.
    pub fn declare_cadence(&self, device: &str, cadence_seconds: Option<u64>) {
        self.liveness.declare(device, cadence_seconds);
    }

    /// Follows the recorded stream for liveness.
    /// Only registered devices are tracked: an event naming any other
    /// device (a refused connection's claimed name) adds nothing.
    async fn observe(&self, recorded: &glassbox_core::RecordedEvent) {
        let Some(device) = recorded.event.device.as_deref() else { return };
        match recorded.event.ty.as_str() {
            "device.deleted" => return self.liveness.forget(device),
            "device.registered" => self.liveness.registered(device),
            _ => {}
        }
        if !self.liveness.knows(device) && !self.liveness.unregistered(device) {
            match self.devices.device(device).await {
                Ok(Some(found)) => self.liveness.track(device, found.meta.cadence_seconds),
                Ok(None) => self.liveness.note_unregistered(device),
                Err(_) => {}
            }
        }
        if let Some(change) = self.liveness.observe(recorded) {
            self.record_liveness(change).await;
        }
    }

    async fn record_liveness(&self, change: liveness::Change) {
        match change {
            liveness::Change::Silent { device, reason, last_message } => {
                self.record(&device, DEVICE_SILENT, None, &Silent { reason, last_message }, None).await;
            }
            liveness::Change::Active { device, silent_for } => {
                let active = Active { silent_for_seconds: silent_for.as_secs_f64() };
                self.record(&device, DEVICE_ACTIVE, None, &active, None).await;
            }
        }
    }

    /// Records an event about a device from the control plane; a failure is
    /// logged (the change itself is stored) and yields no id.
    async fn record(
        &self,
        device: &str,
        ty: &str,
        subject: Option<String>,
        data: &impl Serialize,
        cause: Option<&str>,
    ) -> Option<EventId> {
        let draft = draft(device, ty, subject, data, cause);
        match self.pipeline.ingest_platform(vec![draft], "platform").await {
            Ok(appended) => appended.first().map(|a| a.id),
            Err(e) => {
                tracing::error!(device, event = ty, error = %e, "could not record a control event");
                None
            }
        }
    }

    /// Sends `message` to the device on `$glassbox/devices/<id>/<suffix>`,
    /// recorded as an event of its payload's type.
    async fn send<P: Payload>(&self, device: &str, suffix: &str, message: &P, cause: Option<&str>) {
        if let Some(outgoing) = self.prepare(device, suffix, message, cause).await {
            self.link.deliver(outgoing.into_message(None, None)).await;
        }
    }

    /// Records a message for the device; the link delivers it. In
    /// between, the caller can note its event id before any answer can come.
    /// The message the device gets is the recorded data, byte for byte.
    async fn prepare<P: Payload>(
        &self,
        device: &str,
        suffix: &str,
        message: &P,
        cause: Option<&str>,
    ) -> Option<Outgoing> {
        let topic = reserved_topic(device, suffix);
        let payload = match serde_json::to_vec(message) {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => {
                tracing::error!(device, event = P::TYPE, error = %e, "could not serialise a message to a device");
                return None;
            }
        };
        let event = self.record(device, P::TYPE, Some(topic.clone()), message, cause).await?;
        Some(Outgoing { event, topic, payload })
    }

    /// Whether the device is connected and subscribed to `topic`: a message
    /// sent now reaches it.
    fn listening(&self, device: &str, topic: &str) -> bool {
        self.link.presence(device).is_some_and(|p| p.listens_to(topic))
    }
}

/// A recorded message on its way to a device.
struct Outgoing {
    event: EventId,
    topic: String,
    payload: Bytes,
}

impl Outgoing {
    fn into_message(self, response_topic: Option<String>, correlation: Option<Bytes>) -> DeviceMessage {
        DeviceMessage { event: self.event, topic: self.topic, payload: self.payload, response_topic, correlation }
    }
}

fn draft(device: &str, ty: &str, subject: Option<String>, data: &impl Serialize, cause: Option<&str>) -> Draft {
    Draft {
        subject,
        device: Some(device.into()),
        causationid: cause.map(str::to_string),
        ..Draft::json("glassbox/control", ty, data)
    }
}

/// Once a second: expires commands whose time-to-live passed, and flags
/// devices that went silent.
async fn sweep(control: Weak<Control>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(control) = control.upgrade() else { return };
        control.expire_due().await;
        control.sent.lock().unwrap_or_else(|e| e.into_inner()).forget_expired(chrono::Utc::now());
        for change in control.liveness.check(chrono::Utc::now()) {
            control.record_liveness(change).await;
        }
    }
}

/// Feeds liveness from the recorded stream while the service lives.
async fn watch(control: Weak<Control>, mut events: glassbox_bus::Consumer) {
    while let Some(batch) = events.next().await {
        let Some(control) = control.upgrade() else { return };
        if let Some(glassbox_bus::Unread { skipped, error, .. }) = batch.unread {
            tracing::error!(skipped, %error, "could not read skipped events back for liveness");
        }
        for recorded in batch.events {
            control.observe(&recorded).await;
        }
    }
}

#[async_trait]
impl Reserved for Control {
    async fn published(&self, published: ReservedPublish<'_>) {
        let ReservedPublish { device, by, rest, payload, correlation, event } = published;
        match rest {
            "shadow/update" => self.mqtt_shadow_update(device, by, payload, event).await,
            "shadow/get" => self.mqtt_shadow_get(device, event).await,
            "certificate/renew" => self.renew(device, by, payload, event).await,
            rest if rest.starts_with("commands/") && rest.ends_with("/response") => {
                self.response(device, by, payload, correlation, event).await
            }
            _ => {}
        }
    }

    async fn acknowledged(&self, device: &str, by: &Principal, event: EventId) {
        self.command_received(device, by, event).await;
    }

    async fn connected(&self, device: &str) {
        self.push_pending_delta(device).await;
        self.send_pending_commands(device).await;
    }

    async fn subscribed(&self, device: &str, filter: &str) {
        if matches(filter, &reserved_topic(device, "shadow/delta")) {
            self.push_pending_delta(device).await;
        }
        // Each pending command is sent if this subscription covers its topic.
        self.send_pending_commands(device).await;
    }
}
