//! Durable device commands: `queued → in_transit → delivered → succeeded |
//! failed | expired | cancelled`, each step an event on the command's chain.
//!
//! A command waits (within its time-to-live) while its device is offline and
//! is sent when it connects; `delivered` means the device acknowledged the
//! message (MQTT PUBACK) or answered it, never merely that it was sent.
//! A command is sent only once the device subscribes to its topic (a
//! message to a device not listening would be lost). Sent commands not yet
//! acknowledged are sent again when the device next connects or subscribes
//! (at least once: the device de-duplicates by the command id).

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use glassbox_core::{
    CommandMessage, CommandQueued, CommandReply, CommandStep, DEVICE_COMMAND_QUEUED, DEVICE_COMMAND_RESPONSE_REJECTED,
    EventId, Principal, ReplyStatus,
};
use glassbox_store::{CommandRecord, CommandState, StoreError};
use serde_json::Value;

use super::Control;
use glassbox_link::reserved_topic;

/// The platform component that expires commands, as their expiry's principal.
const EXPIRY: &str = "command-expiry";

/// Bounds on commands.
#[derive(Debug, Clone, Copy)]
pub struct CommandLimits {
    /// Time-to-live when none is given. Default 1 hour.
    pub ttl_default: Duration,
    /// Longest time-to-live accepted. Default 7 days.
    pub ttl_max: Duration,
    /// Largest payload, as JSON bytes. Default 64 KiB.
    pub payload_bytes_max: usize,
}

impl Default for CommandLimits {
    fn default() -> Self {
        Self {
            ttl_default: Duration::from_secs(3600),
            ttl_max: Duration::from_secs(7 * 24 * 3600),
            payload_bytes_max: 64 * 1024,
        }
    }
}

/// A command as an operator issues it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCommand {
    pub name: String,
    #[serde(default)]
    pub payload: Option<Value>,
    /// `30s`, `5m`, `2h`.
    #[serde(default)]
    pub ttl: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Invalid(String),
    #[error("no device {0:?}; `glassbox devices list` shows the registered ones")]
    UnknownDevice(String),
    #[error("device {0:?} is disabled: it cannot connect to receive commands; enable it first")]
    DeviceDisabled(String),
    #[error("no command {0:?}")]
    UnknownCommand(String),
    #[error("command {id} is already {state}; only queued, in_transit or delivered commands can be cancelled")]
    Finished { id: String, state: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The message a device gets on `$glassbox/devices/<id>/commands/<name>`.
fn message(command: &CommandRecord) -> CommandMessage {
    CommandMessage {
        id: command.id.clone(),
        name: command.name.clone(),
        payload: command.payload.as_deref().and_then(|p| serde_json::from_str::<Value>(p).ok()),
        expires_at: command.expires_at,
        response_topic: response_topic(command),
        correlationid: command.correlationid.clone(),
    }
}

fn command_topic(command: &CommandRecord) -> String {
    reserved_topic(&command.device, &format!("commands/{}", command.name))
}

fn response_topic(command: &CommandRecord) -> String {
    reserved_topic(&command.device, &format!("commands/{}/response", command.name))
}

fn validate_name(name: &str) -> Result<(), CommandError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    match ok {
        true => Ok(()),
        false => Err(CommandError::Invalid(format!(
            "command name {name:?} must be 1-64 letters, digits, - _ or . (it is a topic level)"
        ))),
    }
}

impl Control {
    /// Issues a command; with an idempotency key used before for this
    /// device, returns that command instead (and `false`), sending nothing.
    /// A `cause` (the event a function was handling) puts the command on
    /// that event's chain, so a trace follows it from the device's message.
    /// `by` issues it: its label is the command's `issuer`.
    pub async fn issue(
        &self,
        device: &str,
        new: NewCommand,
        by: &Principal,
        cause: Option<EventId>,
    ) -> Result<(CommandRecord, bool), CommandError> {
        let ttl = self.check_command(device, &new).await?;
        let payload = new.payload.as_ref().map(Value::to_string);
        if let Some(key) = &new.idempotency_key
            && let Some(found) = self.commands.command_by_key(device, key).await?
        {
            return Ok((found, false));
        }
        let now = Utc::now();
        let issuer = by.label();
        let data = CommandQueued {
            name: new.name.clone(),
            payload: new.payload.clone(),
            ttl: humantime::format_duration(ttl).to_string(),
            issuer: issuer.clone(),
            idempotency_key: new.idempotency_key.clone(),
            principal: by.clone(),
        };
        let cause = cause.map(|c| c.to_string());
        let queued = self
            .record(device, DEVICE_COMMAND_QUEUED, Some(new.name.clone()), &data, cause.as_deref())
            .await
            .ok_or_else(|| StoreError::Unavailable("could not record the command".into()))?;
        let record = CommandRecord {
            id: queued.to_string(),
            device: device.into(),
            name: new.name,
            payload,
            issuer,
            idempotency_key: new.idempotency_key,
            state: CommandState::Queued,
            created_at: now,
            expires_at: now + chrono::Duration::from_std(ttl).unwrap_or_default(),
            updated_at: now,
            correlationid: self.correlation_of(queued).await,
            response: None,
            reason: None,
        };
        let (record, created) = self.commands.create_command(record).await?;
        if created && self.listening(device, &command_topic(&record)) {
            self.send_command(&record).await;
            return Ok((self.commands.command(&record.id).await?.unwrap_or(record), true));
        }
        Ok((record, created))
    }

    /// Whether `new` could be issued to `device` now (its name, TTL and
    /// payload within the limits; the device known and enabled), and the
    /// TTL it would get; nothing is recorded or sent. [`Control::issue`]
    /// checks the same, and a dry run stops here.
    pub async fn check_command(&self, device: &str, new: &NewCommand) -> Result<Duration, CommandError> {
        validate_name(&new.name)?;
        let ttl = match &new.ttl {
            None => self.command_limits.ttl_default,
            Some(text) => humantime::parse_duration(text)
                .map_err(|e| CommandError::Invalid(format!("ttl {text:?}: {e}; use e.g. 30s, 5m, 2h")))?,
        };
        if ttl.is_zero() || ttl > self.command_limits.ttl_max {
            let max = humantime::format_duration(self.command_limits.ttl_max);
            return Err(CommandError::Invalid(format!("ttl must be more than 0 and at most {max}")));
        }
        let payload_bytes = new.payload.as_ref().map_or(0, |p| p.to_string().len());
        if payload_bytes > self.command_limits.payload_bytes_max {
            let max = self.command_limits.payload_bytes_max;
            return Err(CommandError::Invalid(format!("payload is {payload_bytes} bytes, over the limit of {max}")));
        }
        match self.devices.device(device).await? {
            None => Err(CommandError::UnknownDevice(device.into())),
            Some(d) if d.disabled => Err(CommandError::DeviceDisabled(device.into())),
            Some(_) => Ok(ttl),
        }
    }

    async fn correlation_of(&self, event: EventId) -> String {
        match self.pipeline.store().lineage(&event.to_string()).await {
            Ok(Some(lineage)) => lineage.correlationid,
            _ => event.to_string(),
        }
    }

    /// Sends a command to its device and marks it `in_transit`.
    async fn send_command(&self, command: &CommandRecord) {
        let suffix = format!("commands/{}", command.name);
        let Some(outgoing) = self.prepare(&command.device, &suffix, &message(command), Some(&command.id)).await else {
            return;
        };
        // Noted before it is sent, so its acknowledgement always finds it.
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).insert(
            outgoing.event,
            command.id.clone(),
            command.expires_at,
        );
        let from = [CommandState::Queued];
        if let Err(e) = self.commands.advance_command(&command.id, &from, CommandState::InTransit, None, None).await {
            tracing::error!(command = %command.id, error = %e, "could not mark a command in transit");
        }
        let correlation = Some(Bytes::from(command.id.clone()));
        self.link.deliver(outgoing.into_message(Some(response_topic(command)), correlation)).await;
    }

    /// Sends every command waiting for this device (queued, or sent and not
    /// acknowledged) that it listens for, oldest first.
    pub(super) async fn send_pending_commands(&self, device: &str) {
        let mut pending = Vec::new();
        for state in [CommandState::Queued, CommandState::InTransit] {
            match self.commands.commands(Some(device), Some(state), 1000).await {
                Ok(found) => pending.extend(found),
                Err(e) => return tracing::warn!(device, error = %e, "could not read pending commands"),
            }
        }
        pending.sort_by(|a, b| a.id.cmp(&b.id));
        let now = Utc::now();
        for command in pending.iter().filter(|c| c.expires_at > now) {
            if self.listening(device, &command_topic(command)) {
                self.send_command(command).await;
            }
        }
    }

    /// The device, as `by`, acknowledged a message; if it was a command, it is delivered.
    pub(super) async fn command_received(&self, device: &str, by: &Principal, event: EventId) {
        let id = self.sent.lock().unwrap_or_else(|e| e.into_inner()).take(&event);
        let Some(id) = id else { return };
        let step = CommandStep::new(Some(&id), None, by);
        self.advance(&id, &[CommandState::InTransit], CommandState::Delivered, None, &event.to_string(), step).await;
        tracing::debug!(device, command = %id, "command delivered");
    }

    /// Moves a command (for `step.reason`) and records the step as
    /// `device.command.<state>`.
    async fn advance(
        &self,
        id: &str,
        from: &[CommandState],
        to: CommandState,
        response: Option<String>,
        cause: &str,
        step: CommandStep,
    ) -> Option<CommandRecord> {
        let moved = self.commands.advance_command(id, from, to, response, step.reason.clone()).await;
        let command = match moved {
            Ok(Some(command)) => command,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(command = id, error = %e, "could not move a command");
                return None;
            }
        };
        let ty = format!("device.command.{}", to.as_str());
        self.record(&command.device, &ty, Some(command.name.clone()), &step, Some(cause)).await;
        Some(command)
    }

    /// A device, as `by`, answered on `…/commands/<name>/response`: a
    /// [`CommandReply`], naming its command by `id` or by MQTT 5
    /// correlation data. A reply that cannot apply is recorded as
    /// `device.command.response_rejected` with the reason.
    pub(super) async fn response(
        &self,
        device: &str,
        by: &Principal,
        payload: &[u8],
        correlation: Option<&[u8]>,
        event: EventId,
    ) {
        let cause = event.to_string();
        let correlated = correlation.and_then(|c| std::str::from_utf8(c).ok()).map(str::to_string);
        let reject = async |command: Option<&str>, reason: String| {
            let step = CommandStep::new(command, Some(reason), by);
            self.record(device, DEVICE_COMMAND_RESPONSE_REJECTED, None, &step, Some(&cause)).await;
        };
        let body: Value = match serde_json::from_slice(payload) {
            Ok(body) => body,
            Err(e) => {
                let reason = format!("the response is not JSON ({e}); {}", CommandReply::SHAPE);
                return reject(correlated.as_deref(), reason).await;
            }
        };
        // The command it names, even when the rest of it is refused.
        let named = body.get("id").and_then(Value::as_str).map(str::to_string).or(correlated);
        let reply = match CommandReply::parse(&body) {
            Ok(reply) => reply,
            Err(reason) => return reject(named.as_deref(), reason).await,
        };
        let Some(id) = named else {
            return reject(None, format!("the response names no command: {}", CommandReply::SHAPE)).await;
        };
        let command = match self.commands.command(&id).await {
            Ok(Some(command)) if command.device == device => command,
            Ok(_) => return reject(Some(&id), format!("no command {id} for device {device}")).await,
            Err(e) => return tracing::error!(command = %id, error = %e, "could not read a command"),
        };
        if command.state.is_final() {
            return reject(Some(&id), format!("command {id} is already {}", command.state.as_str())).await;
        }
        if matches!(command.state, CommandState::Queued | CommandState::InTransit) {
            let step = CommandStep {
                detail: Some("answered before its acknowledgement was seen".into()),
                ..CommandStep::new(Some(&id), None, by)
            };
            let from = [CommandState::Queued, CommandState::InTransit];
            self.advance(&id, &from, CommandState::Delivered, None, &command.id, step).await;
        }
        let to = match reply.status {
            ReplyStatus::Succeeded => CommandState::Succeeded,
            ReplyStatus::Failed => CommandState::Failed,
        };
        let response = reply.result.as_ref().map_or_else(|| body.to_string(), Value::to_string);
        let step = CommandStep {
            response: Some(body),
            response_event: Some(cause.clone()),
            ..CommandStep::new(Some(&id), reply.message, by)
        };
        if self.advance(&id, &[CommandState::Delivered], to, Some(response), &command.id, step).await.is_none() {
            reject(Some(&id), format!("command {id} finished meanwhile")).await;
        }
    }

    /// One command.
    pub async fn command(&self, id: &str) -> Result<CommandRecord, CommandError> {
        self.commands.command(id).await?.ok_or_else(|| CommandError::UnknownCommand(id.into()))
    }

    /// A device's commands, newest first.
    pub async fn commands(
        &self,
        device: &str,
        state: Option<CommandState>,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, CommandError> {
        if self.devices.device(device).await?.is_none() {
            return Err(CommandError::UnknownDevice(device.into()));
        }
        Ok(self.commands.commands(Some(device), state, limit).await?)
    }

    /// Cancels an open command, as `by`.
    pub async fn cancel(&self, id: &str, by: &Principal) -> Result<CommandRecord, CommandError> {
        let command = self.commands.command(id).await?.ok_or_else(|| CommandError::UnknownCommand(id.into()))?;
        let label = by.label();
        let reason = Some(format!("cancelled by {label}"));
        let step = CommandStep { by: Some(label), ..CommandStep::new(Some(id), reason, by) };
        match self.advance(id, &CommandState::OPEN, CommandState::Cancelled, None, &command.id, step).await {
            Some(cancelled) => Ok(cancelled),
            None => {
                let now = self.commands.command(id).await?.map_or(command.state, |c| c.state);
                Err(CommandError::Finished { id: id.into(), state: now.as_str() })
            }
        }
    }

    /// Expires open commands whose time-to-live passed.
    pub(super) async fn expire_due(&self) {
        let due = match self.commands.due_commands(Utc::now(), 500).await {
            Ok(due) => due,
            Err(e) => return tracing::warn!(error = %e, "could not look for expired commands"),
        };
        let expiry = Principal::system(EXPIRY);
        for command in due {
            let reason = Some(format!("its time-to-live passed while it was {}", command.state.as_str()));
            let step = CommandStep::new(Some(&command.id), reason, &expiry);
            self.advance(&command.id, &CommandState::OPEN, CommandState::Expired, None, &command.id, step).await;
        }
    }
}
