//! Named API tokens: each one's role and salted hash, who made it, when it
//! expires, was last used and was revoked. The token itself is never
//! stored. A revoked token stays listed (and its name taken), so the record
//! of who held what survives the revocation.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use glassbox_core::access::Role;
use glassbox_core::secrets::SecretHash;

use crate::StoreError;

/// A named token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    /// The random salt hashed before the token.
    pub salt: [u8; 16],
    /// SHA-256 of the salt, then the token (`glassbox_core::secrets::salted_hash`).
    pub hash: SecretHash,
    pub created_at: DateTime<Utc>,
    /// Who created it, as a principal's label (`admin`, `token:ops`).
    pub created_by: String,
    /// When it stops working; none: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last accepted, to within a minute or so; none: never.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked, and by whom (a label).
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
}

/// Where named tokens are kept.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Stores a new token; `false` (and nothing stored) when a token of
    /// that name exists, revoked or not.
    async fn create_token(&self, token: &TokenRecord) -> Result<bool, StoreError>;

    /// Every token, revoked ones too, by name.
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// Marks `name` revoked at `at` by `by`; the token as it is now, none
    /// if no such token. Revoking a revoked token keeps the first revocation.
    async fn revoke_token(&self, name: &str, at: DateTime<Utc>, by: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// Notes that `name` was accepted at `at` (callers write this at most
    /// about once a minute per token, not per request).
    async fn touch_token(&self, name: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
}
