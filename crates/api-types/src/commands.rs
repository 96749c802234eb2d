//! A durable command as the API answers it (`/api/v1/commands/{id}`, a
//! device's command list, an issue or a cancel).

use chrono::{DateTime, Utc};
use glassbox_core::CommandState;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One command: what was asked of a device, by whom, and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandView {
    /// The id of its `device.command.queued` event: its chain is the command's story.
    pub id: String,
    pub device: String,
    pub name: String,
    /// What was sent with it, as JSON; null when nothing.
    pub payload: Option<Value>,
    /// Who issued it, as a label (`admin`, `function:fan`).
    pub issuer: String,
    pub idempotency_key: Option<String>,
    pub state: CommandState,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub correlationid: String,
    /// The device's answer (its `result`, else the whole reply), once it answered.
    pub response: Option<Value>,
    /// Why it ended as it did, in words.
    pub reason: Option<String>,
}
