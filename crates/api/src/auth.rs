//! Operator authentication: bearer tokens checked against stored SHA-256
//! hashes. The admin token is set with `GLASSBOX_ADMIN_TOKEN`, or generated
//! at first start, printed once and kept only as its hash; named tokens
//! (`glassbox tokens create`) are checked by the token service, and an
//! expired or revoked one is refused (401) saying so. What the caller's
//! role may do is `access`'s to check.
//!
//! A request whose token is accepted carries the [`Principal`] it acts as
//! (the token's holder, over `BearerToken`, from the peer address);
//! handlers take it with the [`Caller`] extractor and hand it to every
//! service method that changes something.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use glassbox_core::secrets::{self, SecretHash};
use glassbox_core::{AuthMethod, Principal, PrincipalKind};
use glassbox_store::{SettingStore, StoreError};

use glassbox_control::{Accepted, Refused};

use super::access::Grant;
use super::error::{internal, too_many};
use super::serve::Peer;
use super::{ApiError, AppState, throttle};

/// The settings key holding the admin token's hash.
const ADMIN_TOKEN_KEY: &str = "auth.admin_token_sha256";

/// The tokens the API accepts: each one's hash and who holds it.
#[derive(Debug, Clone)]
pub struct Tokens {
    known: Vec<Known>,
}

/// An accepted token: its hash, and the principal kind and name it acts as.
/// Named tokens are the token service's (`glassbox_control::NamedTokens`).
#[derive(Debug, Clone)]
struct Known {
    hash: SecretHash,
    kind: PrincipalKind,
    name: String,
}

impl Tokens {
    /// The admin token alone.
    fn admin(hash: SecretHash) -> Self {
        let name = PrincipalKind::Admin.as_str().to_string();
        Self { known: vec![Known { hash, kind: PrincipalKind::Admin, name }] }
    }

    /// The accepted tokens' SHA-256 hashes (the MQTT gateway checks operators against them).
    pub fn hashes(&self) -> Vec<SecretHash> {
        self.known.iter().map(|k| k.hash).collect()
    }

    /// Who `token` belongs to, acting from `source`; `None` if no accepted
    /// token matches. Every known hash is compared, with no early exit to time.
    pub fn resolve(&self, token: &str, source: Option<String>) -> Option<Principal> {
        let presented = secrets::hash(token.as_bytes());
        let found =
            self.known.iter().fold(None, |found, known| match secrets::constant_time_eq(&known.hash, &presented) {
                true => Some(known),
                false => found,
            });
        found.map(|known| Principal {
            kind: known.kind,
            name: known.name.clone(),
            auth: AuthMethod::BearerToken,
            source,
        })
    }
}

/// The principal a request acts as, resolved by [`require_token`]: a
/// handler that changes something takes it as an argument.
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Every route with this extractor sits behind `require_token`; its absence is a routing bug.
        parts.extensions.get::<Principal>().cloned().map(Caller).ok_or_else(|| {
            internal(format!("route {} needs the caller's principal but is not behind require_token", parts.uri.path()))
        })
    }
}

/// Outcome of [`admin_token`]: a newly generated token must be shown once.
pub struct AdminToken {
    pub tokens: Tokens,
    pub generated: Option<String>,
}

/// Loads the admin token's hash, replacing it with `configured` when given,
/// or generating a token on first start.
pub async fn admin_token(store: &dyn SettingStore, configured: Option<&str>) -> Result<AdminToken, StoreError> {
    let (stored_hex, generated) = match configured {
        Some(token) => (hex::encode(secrets::hash(token.as_bytes())), None),
        None => match store.setting(ADMIN_TOKEN_KEY).await? {
            Some(existing) => (existing, None),
            None => {
                let (token, hash) = new_token();
                (hex::encode(hash), Some(token))
            }
        },
    };
    if store.setting(ADMIN_TOKEN_KEY).await?.as_deref() != Some(stored_hex.as_str()) {
        store.put_setting(ADMIN_TOKEN_KEY, &stored_hex).await?;
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(&stored_hex, &mut bytes)
        .map_err(|_| StoreError::Internal(format!("setting {ADMIN_TOKEN_KEY} is not a SHA-256 hash")))?;
    Ok(AdminToken { tokens: Tokens::admin(bytes), generated })
}

/// `gbx_` and 256 random bits in hex, and its hash.
fn new_token() -> (String, SecretHash) {
    secrets::mint("gbx_")
}

/// Rejects requests without a valid `Authorization: Bearer` token, and
/// gives the others the [`Principal`] they act as (see [`Caller`]). A
/// peer, or a token prefix, that failed too often is refused (429) for a
/// back-off that doubles with each further failure.
pub async fn require_token(
    State(app): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, Response> {
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
    let address = request.extensions().get::<Peer>().map(|p| p.0);
    let peer = address.map(|a| format!("peer:{}", throttle::client_key(a)));
    let keys: Vec<String> = peer.into_iter().chain([throttle::token_key(token)]).collect();
    let logins = &app.perimeter.logins;
    if let Some(wait) = keys.iter().filter_map(|k| logins.check(k).err()).max() {
        let message = "too many failed logins from this address or with this token; wait the seconds in \
                       retry-after (each further failure doubles the wait)";
        return Err(too_many("login_backoff", message, wait));
    }
    let (principal, grant) = match resolve(&app, token, address.map(|a| a.to_string())) {
        Ok(resolved) => resolved,
        Err(message) => {
            keys.iter().for_each(|k| logins.failed(k));
            return Err(unauthorized(&app, &message));
        }
    };
    keys.iter().for_each(|k| logins.succeeded(k));
    request.extensions_mut().insert(principal);
    request.extensions_mut().insert(grant);
    Ok(next.run(request).await)
}

/// Who `token` is and what it may do: the admin token, or a named token
/// that is neither expired nor revoked; else why not.
fn resolve(app: &AppState, token: &str, source: Option<String>) -> Result<(Principal, Grant), String> {
    if let Some(admin) = app.tokens.resolve(token, source.clone()) {
        return Ok((admin, Grant::admin()));
    }
    match app.named_tokens.resolve(token) {
        Ok(Accepted { name, role, .. }) => {
            Ok((Principal::token(&name, AuthMethod::BearerToken, source), Grant::token(&name, role)))
        }
        Err(Refused::Unknown) => Err("token not recognised: use the admin token printed at first start or set with \
                                      GLASSBOX_ADMIN_TOKEN, or a token from `glassbox tokens create`"
            .into()),
        Err(refused) => Err(refused.to_string()),
    }
}

fn unauthorized(app: &AppState, message: &str) -> Response {
    app.pipeline.counters.unauthorized.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_only_the_hashed_token_to_its_holder() {
        let (token, hash) = new_token();
        let tokens = Tokens::admin(hash);
        let principal = tokens.resolve(&token, Some("10.0.0.9:5000".into())).unwrap();
        assert_eq!(principal, Principal::admin(AuthMethod::BearerToken, Some("10.0.0.9:5000".into())));
        assert!(tokens.resolve("gbx_wrong", None).is_none());
        assert!(token.starts_with("gbx_") && token.len() == 68);
    }
}
