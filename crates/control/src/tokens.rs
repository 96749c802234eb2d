//! Named API tokens as a service: create one (the token is minted here and
//! shown once), list them, revoke one; and resolve a presented token to its
//! name and role for the transports (the API's auth layer, the MQTT
//! gateway's logins). Every change is written, then recorded
//! (`token.created`, `token.revoked`) with the principal who made it.
//!
//! The tokens are held in memory, loaded at start and kept equal to the
//! store by this service's own changes, so checking a request costs no
//! read; one node owns them (a cluster would reload on the bus's
//! `token.*` events). A token's last use is written at most once a minute
//! ([`TOUCH_EVERY`]), so a busy token does not write per request.
//!
//! A token reads `gbx_<name>_<64 hex digits>`: the name in it is how the
//! stored salted hash is found; the admin token (`gbx_<64 hex>`) has none.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use glassbox_core::access::{Role, validate_token_name};
use glassbox_core::{Draft, Principal, TOKEN_CREATED, TOKEN_REVOKED, TokenCreated, TokenRevoked, secrets};
use glassbox_pipeline::Pipeline;
use glassbox_store::{StoreError, TokenRecord, TokenStore};
use serde::Serialize;

use crate::record::{Changed, record_change};

/// Tokens kept at most, revoked ones included (they keep their names so a
/// name is never reused); beyond, creating one is refused (409).
pub const TOKENS_MAX: usize = 10_000;

/// The shortest time between two writes of one token's last use.
pub const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Closes the live connections made with a token (the MQTT gateway's).
pub trait TokenSessions: Send + Sync {
    /// Closes every connection logged in with token `name`; how many.
    fn close(&self, name: &str) -> usize;
}

pub struct NamedTokens {
    store: Arc<dyn TokenStore>,
    pipeline: Arc<Pipeline>,
    known: RwLock<HashMap<String, Known>>,
    sessions: OnceLock<Arc<dyn TokenSessions>>,
}

/// A token as held: its record, and when its last use was last written.
struct Known {
    record: TokenRecord,
    touched: Option<Instant>,
}

/// A token that was accepted: who it is and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub name: String,
    pub role: Role,
    /// When it stops working, if it expires.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Why a named token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not a named token, no such name, or the wrong secret: told apart from nothing.
    #[error("token not recognised")]
    Unknown,
    #[error("token {name:?} expired at {at}; create a new one with `glassbox tokens create`")]
    Expired { name: String, at: DateTime<Utc> },
    #[error("token {name:?} was revoked at {at} by {by}")]
    Revoked { name: String, at: DateTime<Utc>, by: String },
}

/// Why a token change was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    InvalidName(String),
    #[error("a token named {0:?} exists (revoked tokens keep their names); choose another name")]
    Exists(String),
    #[error("expiry {0} is in the past")]
    ExpiryPast(DateTime<Utc>),
    #[error("no token {0:?}; `glassbox tokens list` shows them")]
    Unknown(String),
    #[error("the server holds {TOKENS_MAX} tokens (revoked ones included), its bound; no more can be created")]
    Full,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A token just created: its record and the token itself, shown only now.
#[derive(Debug)]
pub struct Minted {
    pub record: TokenRecord,
    pub token: String,
}

impl NamedTokens {
    /// Loads every stored token.
    pub async fn load(store: Arc<dyn TokenStore>, pipeline: Arc<Pipeline>) -> Result<Arc<Self>, StoreError> {
        let known = store.tokens().await?.into_iter().map(|r| (r.name.clone(), Known { record: r, touched: None }));
        let known = RwLock::new(known.collect());
        Ok(Arc::new(Self { store, pipeline, known, sessions: OnceLock::new() }))
    }

    /// Where revocations close live connections (the gateway, once, at start).
    pub fn set_sessions(&self, sessions: Arc<dyn TokenSessions>) {
        let _ = self.sessions.set(sessions);
    }

    /// Creates token `name` with `role`, working until `expires` (none: no end).
    pub async fn create(
        &self,
        name: &str,
        role: Role,
        expires: Option<DateTime<Utc>>,
        by: &Principal,
    ) -> Result<Changed<Minted>, TokenError> {
        validate_token_name(name).map_err(TokenError::InvalidName)?;
        let now = Utc::now();
        if let Some(at) = expires.filter(|at| *at <= now) {
            return Err(TokenError::ExpiryPast(at));
        }
        if self.read_known().len() >= TOKENS_MAX {
            return Err(TokenError::Full);
        }
        let (token, record) = mint(name, role, expires, now, by);
        if !self.store.create_token(&record).await? {
            return Err(TokenError::Exists(name.into()));
        }
        self.write_known().insert(name.into(), Known { record: record.clone(), touched: None });
        let data = TokenCreated { actor: by.label(), principal: by.clone(), name: name.into(), role, expires };
        let unrecorded = self.record(name, TOKEN_CREATED, &data).await;
        Ok(Changed { value: Minted { record, token }, unrecorded })
    }

    /// Every token, revoked ones too, by name.
    pub fn list(&self) -> Vec<TokenRecord> {
        let mut all: Vec<TokenRecord> = self.read_known().values().map(|k| k.record.clone()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Revokes `name`: it stops working at once, and connections made with it are closed.
    pub async fn revoke(&self, name: &str, by: &Principal) -> Result<Changed<TokenRecord>, TokenError> {
        let record = self.store.revoke_token(name, Utc::now(), &by.label()).await?;
        let record = record.ok_or_else(|| TokenError::Unknown(name.into()))?;
        if let Some(known) = self.write_known().get_mut(name) {
            known.record = TokenRecord { last_used_at: known.record.last_used_at, ..record.clone() };
        }
        let disconnected = self.sessions.get().map_or(0, |s| s.close(name));
        let data = TokenRevoked {
            actor: by.label(),
            principal: by.clone(),
            name: name.into(),
            role: record.role,
            disconnected,
        };
        let unrecorded = self.record(name, TOKEN_REVOKED, &data).await;
        Ok(Changed { value: record, unrecorded })
    }

    /// Who a presented bearer token is (`gbx_<name>_<hex>`), if a named token.
    pub fn resolve(&self, presented: &str) -> Result<Accepted, Refused> {
        let name = name_in(presented).ok_or(Refused::Unknown)?;
        self.login(name, presented.as_bytes())
    }

    /// Checks token `name` presented as `secret` (an MQTT login: user name
    /// and password), noting its use.
    pub fn login(&self, name: &str, secret: &[u8]) -> Result<Accepted, Refused> {
        let accepted = {
            let known = self.read_known();
            let record = &known.get(name).ok_or(Refused::Unknown)?.record;
            check(record, secret, Utc::now())?
        };
        self.touch(name);
        Ok(accepted)
    }

    /// Writes the token's last use unless it was written within [`TOUCH_EVERY`].
    fn touch(&self, name: &str) {
        let now = Utc::now();
        {
            let mut known = self.write_known();
            let Some(entry) = known.get_mut(name) else { return };
            if entry.touched.is_some_and(|at| at.elapsed() < TOUCH_EVERY) {
                return;
            }
            entry.touched = Some(Instant::now());
            entry.record.last_used_at = Some(now);
        }
        let (store, name) = (self.store.clone(), name.to_string());
        tokio::spawn(async move {
            if let Err(error) = store.touch_token(&name, now).await {
                tracing::warn!(token = %name, %error, "could not note the token's last use");
            }
        });
    }

    /// Records a change already made, retrying a failure; why not, if not.
    async fn record(&self, name: &str, ty: &str, data: &impl Serialize) -> Option<String> {
        let draft = Draft { subject: Some(name.into()), ..Draft::json("glassbox/tokens", ty, data) };
        record_change(&self.pipeline, draft, "api").await
    }

    fn read_known(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Known>> {
        self.known.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_known(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Known>> {
        self.known.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A new token for `name` and its record (salted hash only).
fn mint(
    name: &str,
    role: Role,
    expires: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    by: &Principal,
) -> (String, TokenRecord) {
    let (random, _) = secrets::mint("");
    let token = format!("gbx_{name}_{random}");
    let salt = secrets::salt();
    let record = TokenRecord {
        name: name.into(),
        role,
        salt,
        hash: secrets::salted_hash(&salt, token.as_bytes()),
        created_at: now,
        created_by: by.label(),
        expires_at: expires,
        last_used_at: None,
        revoked_at: None,
        revoked_by: None,
    };
    (token, record)
}

/// The name inside a named token: `gbx_<name>_<64 hex digits>`.
pub fn name_in(token: &str) -> Option<&str> {
    let (name, random) = token.strip_prefix("gbx_")?.rsplit_once('_')?;
    (random.len() == 64 && !name.is_empty()).then_some(name)
}

/// Whether `secret` is `record`'s token and still good at `now`. The hash
/// is compared before expiry and revocation, so those are told only to
/// someone holding the token.
fn check(record: &TokenRecord, secret: &[u8], now: DateTime<Utc>) -> Result<Accepted, Refused> {
    let presented = secrets::salted_hash(&record.salt, secret);
    if !secrets::constant_time_eq(&presented, &record.hash) {
        return Err(Refused::Unknown);
    }
    let name = record.name.clone();
    if let Some(at) = record.revoked_at {
        return Err(Refused::Revoked { name, at, by: record.revoked_by.clone().unwrap_or_default() });
    }
    match record.expires_at {
        Some(at) if at <= now => Err(Refused::Expired { name, at }),
        _ => Ok(Accepted { name, role: record.role, expires_at: record.expires_at }),
    }
}

#[cfg(test)]
mod tests {
    use glassbox_core::AuthMethod;

    use super::*;

    #[test]
    fn a_token_is_accepted_until_it_expires_or_is_revoked() {
        let admin = Principal::admin(AuthMethod::BearerToken, None);
        let now = Utc::now();
        let (token, record) = mint("ci", Role::Viewer, Some(now + chrono::Duration::hours(1)), now, &admin);
        assert_eq!(name_in(&token), Some("ci"));
        assert_eq!(
            check(&record, token.as_bytes(), now),
            Ok(Accepted { name: "ci".into(), role: Role::Viewer, expires_at: record.expires_at })
        );
        assert_eq!(check(&record, b"gbx_ci_wrong", now), Err(Refused::Unknown));
        let later = now + chrono::Duration::hours(2);
        assert!(matches!(check(&record, token.as_bytes(), later), Err(Refused::Expired { .. })));
        let revoked = TokenRecord { revoked_at: Some(now), revoked_by: Some("admin".into()), ..record };
        assert!(matches!(check(&revoked, token.as_bytes(), now), Err(Refused::Revoked { .. })));
    }

    #[test]
    fn the_admin_token_names_no_token() {
        let (admin, _) = secrets::mint("gbx_");
        assert_eq!(name_in(&admin), None);
        assert_eq!(name_in(&format!("gbx_a_b_{}", "0".repeat(64))), Some("a_b"));
    }
}
