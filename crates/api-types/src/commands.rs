//! `/api/v1/devices/{id}/commands` and `/api/v1/commands/{id}`: durable
//! device commands. [`CommandView`] is a command as answered (its record
//! with payload and response as JSON, built by the API's `command_view`);
//! the wrappers are generic over the command `C` so a client may read it
//! as it likes.

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

/// `POST /api/v1/devices/{id}/commands`: the command, 201 when issued now,
/// or 200 with the earlier one and `duplicate` true for an idempotency key
/// used before (nothing is sent again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandIssued<C> {
    #[serde(flatten)]
    pub command: C,
    pub duplicate: bool,
}

/// `GET /api/v1/devices/{id}/commands`: the device's commands, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandList<C> {
    pub commands: Vec<C>,
}
