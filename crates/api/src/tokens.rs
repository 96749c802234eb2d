//! `/api/v1/tokens`: named tokens with roles, through the token service
//! (`control::NamedTokens`) with the caller's principal, which records each
//! change (`token.created`, `token.revoked`). Admin only (see `access`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use glassbox_api_types::{CreateToken, TokenCreatedAnswer, TokenList, TokenView, Warned};
use glassbox_control::TokenError;
use glassbox_core::access::Role;
use glassbox_store::TokenRecord;

use super::auth::Caller;
use super::body::{JsonBody, Shape};
use super::params::Path;
use super::{ApiError, AppState};

impl Shape for CreateToken {
    const EXAMPLE: &'static str = r#"{"name": "ci", "role": "deployer", "expires": "90d"}"#;
}

/// `POST /api/v1/tokens`: 201 with the token, shown only here.
pub async fn create(
    State(app): State<AppState>,
    Caller(by): Caller,
    JsonBody(body): JsonBody<CreateToken>,
) -> Result<(StatusCode, Json<Warned<TokenCreatedAnswer>>), ApiError> {
    let role: Role = body
        .role
        .parse()
        .map_err(|e: glassbox_core::access::UnknownRole| ApiError::bad_request("invalid_role", e.to_string()))?;
    let expires = body.expires.as_deref().map(expiry).transpose()?;
    let created = app.named_tokens.create(&body.name, role, expires, &by).await.map_err(error)?;
    let minted = created.value;
    let answer =
        TokenCreatedAnswer { name: minted.record.name, role, token: minted.token, expires: minted.record.expires_at };
    Ok((StatusCode::CREATED, Json(Warned::new(answer, created.unrecorded))))
}

/// `GET /api/v1/tokens`: every token, revoked ones too, never the token itself.
pub async fn list(State(app): State<AppState>) -> Json<TokenList> {
    Json(TokenList { tokens: app.named_tokens.list().into_iter().map(view).collect() })
}

/// `DELETE /api/v1/tokens/{name}`: revokes it; its MQTT connections are closed.
pub async fn revoke(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
) -> Result<Json<Warned<TokenView>>, ApiError> {
    let revoked = app.named_tokens.revoke(&name, &by).await.map_err(error)?;
    Ok(Json(Warned::new(view(revoked.value), revoked.unrecorded)))
}

/// `90d`, `12h` from now, or an RFC 3339 time.
fn expiry(text: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let refused = || {
        ApiError::bad_request(
            "invalid_expires",
            format!("expires {text:?} is neither a duration (90d, 12h) nor an RFC 3339 time"),
        )
    };
    let span = humantime::parse_duration(text).map_err(|_| refused())?;
    chrono::Duration::from_std(span).ok().and_then(|d| Utc::now().checked_add_signed(d)).ok_or_else(refused)
}

fn view(t: TokenRecord) -> TokenView {
    TokenView {
        name: t.name,
        role: t.role,
        created: t.created_at,
        created_by: t.created_by,
        expires: t.expires_at,
        last_used: t.last_used_at,
        revoked: t.revoked_at,
        revoked_by: t.revoked_by,
    }
}

fn error(e: TokenError) -> ApiError {
    match e {
        TokenError::InvalidName(m) => ApiError::bad_request("invalid_name", m),
        TokenError::ExpiryPast(_) => ApiError::bad_request("invalid_expires", e.to_string()),
        TokenError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
        TokenError::Unknown(_) => ApiError::not_found(e.to_string()),
        TokenError::Full => ApiError::new(StatusCode::CONFLICT, "too_many_tokens", e.to_string()),
        TokenError::Store(e) => e.into(),
    }
}
