//! `/api/v1/devices/{id}/commands`: durable device commands. Generic over
//! the command as answered `C` (its record with payload and response as
//! JSON; the control service owns its shape).

use serde::{Deserialize, Serialize};

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
