//! `/api/v1/tokens`: named tokens with roles. The token itself appears only
//! in the answer to its creation ([`TokenCreatedAnswer`]); a listing shows
//! everything else.

use chrono::{DateTime, Utc};
use glassbox_core::access::Role;
use serde::{Deserialize, Serialize};

/// `POST /api/v1/tokens`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// `[a-z0-9][a-z0-9._-]{0,62}`; also its MQTT user name.
    pub name: String,
    /// `admin`, `operator`, `deployer`, `viewer`, `ingest` or `device-provisioner`.
    pub role: String,
    /// When it stops working: a duration from now (`90d`, `12h`) or an
    /// RFC 3339 time; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// `POST /api/v1/tokens`'s answer (201): the token, shown only here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreatedAnswer {
    pub name: String,
    pub role: Role,
    /// Send it as `Authorization: Bearer <token>`, or as the MQTT password
    /// with the name as user name.
    pub token: String,
    /// When it stops working; null: never.
    pub expires: Option<DateTime<Utc>>,
}

/// A token as listed: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub name: String,
    pub role: Role,
    pub created: DateTime<Utc>,
    /// Who created it (`admin`, `token:ops`).
    pub created_by: String,
    pub expires: Option<DateTime<Utc>>,
    /// When it was last accepted, to within a minute; null: never.
    pub last_used: Option<DateTime<Utc>>,
    /// When it was revoked; null: it was not.
    pub revoked: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
}

/// `GET /api/v1/tokens`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}
