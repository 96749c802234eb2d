//! Durable device commands: what was asked of a device, by whom, and where
//! it stands. The control plane drives the state machine; the store keeps
//! each command and changes its state only from the states the caller
//! expects (compare and set), so two racing transitions cannot both win.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::StoreError;

pub use glassbox_core::CommandState;

/// One command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandRecord {
    /// The id of its `device.command.queued` event: its chain is the command's story.
    pub id: String,
    pub device: String,
    pub name: String,
    /// JSON text, if any.
    pub payload: Option<String>,
    pub issuer: String,
    pub idempotency_key: Option<String>,
    pub state: CommandState,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub correlationid: String,
    /// The device's answer (JSON text), once it answered.
    pub response: Option<String>,
    /// Why it ended as it did, in words.
    pub reason: Option<String>,
}

#[async_trait]
pub trait CommandStore: Send + Sync + 'static {
    /// Stores a new command; if its idempotency key was used for the device
    /// before, returns that command instead and `false`.
    async fn create_command(&self, command: CommandRecord) -> Result<(CommandRecord, bool), StoreError>;

    async fn command(&self, id: &str) -> Result<Option<CommandRecord>, StoreError>;

    /// The device's command with this idempotency key, if any.
    async fn command_by_key(&self, device: &str, key: &str) -> Result<Option<CommandRecord>, StoreError>;

    /// A device's commands (or all), newest first, optionally in one state.
    async fn commands(
        &self,
        device: Option<&str>,
        state: Option<CommandState>,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError>;

    /// Moves a command to `to` only if it is in one of `from`; `None` if it
    /// was not (or does not exist). `response` and `reason` are kept if given.
    async fn advance_command(
        &self,
        id: &str,
        from: &[CommandState],
        to: CommandState,
        response: Option<String>,
        reason: Option<String>,
    ) -> Result<Option<CommandRecord>, StoreError>;

    /// Open commands whose time-to-live has passed by `now`.
    async fn due_commands(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<CommandRecord>, StoreError>;
}
