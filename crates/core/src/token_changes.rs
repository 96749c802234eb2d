//! What the platform records when a named token is created or revoked.
//! Each record carries the [`Principal`] who made the change and its label
//! as `actor`, like every other change record; never the token itself.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Principal;
use crate::access::Role;
use crate::events::Payload;

/// A named token was created (data: [`TokenCreated`]).
pub const TOKEN_CREATED: &str = "token.created";
/// A named token was revoked; it stops working at once (data: [`TokenRevoked`]).
pub const TOKEN_REVOKED: &str = "token.revoked";

/// The data of a [`TOKEN_CREATED`] record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// Who created it, as a label (`admin`).
    pub actor: String,
    pub principal: Principal,
    /// The token's name.
    pub name: String,
    pub role: Role,
    /// When it stops working; none: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
}

/// The data of a [`TOKEN_REVOKED`] record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoked {
    /// Who revoked it, as a label (`admin`).
    pub actor: String,
    pub principal: Principal,
    pub name: String,
    pub role: Role,
    /// MQTT connections made with it that were closed.
    pub disconnected: usize,
}

impl Payload for TokenCreated {
    const TYPE: &'static str = TOKEN_CREATED;
}

impl Payload for TokenRevoked {
    const TYPE: &'static str = TOKEN_REVOKED;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthMethod;

    #[test]
    fn token_changes_round_trip() {
        let principal = Principal::admin(AuthMethod::BearerToken, None);
        let created =
            TokenCreated { actor: "admin".into(), principal, name: "ci".into(), role: Role::Viewer, expires: None };
        let json = serde_json::to_value(&created).unwrap();
        assert_eq!(json["role"], "viewer");
        assert_eq!(serde_json::from_value::<TokenCreated>(json).unwrap(), created);
    }
}
