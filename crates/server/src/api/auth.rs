//! Operator authentication: bearer tokens checked against stored SHA-256
//! hashes. The admin token is set with `GLASSBOX_ADMIN_TOKEN`, or generated
//! at first start, printed once and kept only as its hash.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use glassbox_store::{EventStore, StoreError};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::error::too_many;
use super::serve::Peer;
use super::{ApiError, AppState, throttle};

/// The settings key holding the admin token's hash.
const ADMIN_TOKEN_KEY: &str = "auth.admin_token_sha256";

/// Hashes of the tokens the API accepts.
#[derive(Debug, Clone)]
pub struct Tokens {
    hashes: Vec<[u8; 32]>,
}

impl Tokens {
    /// The accepted tokens' SHA-256 hashes (the MQTT gateway checks operators against them).
    pub fn hashes(&self) -> &[[u8; 32]] {
        &self.hashes
    }

    pub fn accepts(&self, token: &str) -> bool {
        let presented = hash(token);
        // Compare every byte of every hash: no early exit to time.
        self.hashes.iter().fold(false, |found, known| found | constant_time_eq(known, &presented))
    }
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Outcome of [`admin_token`]: a newly generated token must be shown once.
pub struct AdminToken {
    pub tokens: Tokens,
    pub generated: Option<String>,
}

/// Loads the admin token's hash, replacing it with `configured` when given,
/// or generating a token on first start.
pub async fn admin_token(store: &Arc<dyn EventStore>, configured: Option<&str>) -> Result<AdminToken, StoreError> {
    let (stored_hex, generated) = match configured {
        Some(token) => (hex::encode(hash(token)), None),
        None => match store.setting(ADMIN_TOKEN_KEY).await? {
            Some(existing) => (existing, None),
            None => {
                let token = new_token();
                (hex::encode(hash(&token)), Some(token))
            }
        },
    };
    if store.setting(ADMIN_TOKEN_KEY).await?.as_deref() != Some(stored_hex.as_str()) {
        store.put_setting(ADMIN_TOKEN_KEY, &stored_hex).await?;
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(&stored_hex, &mut bytes)
        .map_err(|_| StoreError::Internal(format!("setting {ADMIN_TOKEN_KEY} is not a SHA-256 hash")))?;
    Ok(AdminToken { tokens: Tokens { hashes: vec![bytes] }, generated })
}

/// `gbx_` and 256 random bits in hex.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("gbx_{}", hex::encode(bytes))
}

/// Rejects requests without a valid `Authorization: Bearer` token. A
/// peer, or a token prefix, that failed too often is refused (429) for a
/// back-off that doubles with each further failure.
pub async fn require_token(State(app): State<AppState>, request: Request, next: Next) -> Result<Response, Response> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(token) = presented else {
        return Err(unauthorized(
            &app,
            "missing bearer token: send `Authorization: Bearer <token>` (the CLI reads --token or GLASSBOX_TOKEN)",
        ));
    };
    let peer = request.extensions().get::<Peer>().map(|p| format!("peer:{}", throttle::client_key(p.0)));
    let keys: Vec<String> = peer.into_iter().chain([throttle::token_key(token)]).collect();
    let logins = &app.perimeter.logins;
    if let Some(wait) = keys.iter().filter_map(|k| logins.check(k).err()).max() {
        let message = "too many failed logins from this address or with this token; wait the seconds in \
                       retry-after (each further failure doubles the wait)";
        return Err(too_many("login_backoff", message, wait));
    }
    if !app.tokens.accepts(token) {
        keys.iter().for_each(|k| logins.failed(k));
        return Err(unauthorized(
            &app,
            "token not recognised: use the admin token printed at first start or set with GLASSBOX_ADMIN_TOKEN",
        ));
    }
    keys.iter().for_each(|k| logins.succeeded(k));
    Ok(next.run(request).await)
}

fn unauthorized(app: &AppState, message: &str) -> Response {
    app.pipeline.counters.unauthorized.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_hashed_token() {
        let token = new_token();
        let tokens = Tokens { hashes: vec![hash(&token)] };
        assert!(tokens.accepts(&token));
        assert!(!tokens.accepts("gbx_wrong"));
        assert!(token.starts_with("gbx_") && token.len() == 68);
    }
}
