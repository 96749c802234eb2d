//! What each `/api/v1` route needs, in one table ([`ROUTES`]), and the
//! layer that enforces it ([`authorize`]) after `auth::require_token` has
//! resolved who calls. A route missing from the table needs the admin role
//! (deny by default), so a route added without a decision is safe, not
//! open. The role's grants are `glassbox_core::access::Role::allows`.

use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use glassbox_core::access::{Permission, Role, refusal};

use super::ApiError;

/// What a route needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any accepted token, whatever its role (`/metrics`).
    AnyToken,
    Permission(Permission),
}

use Need::{AnyToken, Permission as P};
use Permission::{
    Audit, Clear, Control, Deploy, Ingest, IssueCertificates, ManageTokens, ProvisionDevices, Read, Replay,
};

/// Method, route (as routed, with `{placeholders}`) and what it needs.
/// Left out on purpose, so admin only: `GET /api/v1/perimeter` (it lists
/// every token and risky setting).
pub const ROUTES: &[(&str, &str, Need)] = &[
    ("GET", "/metrics", AnyToken),
    ("GET", "/api/v1/events", P(Read)),
    ("POST", "/api/v1/events", P(Ingest)),
    ("GET", "/api/v1/events/tail", P(Read)),
    ("GET", "/api/v1/events/{id}", P(Read)),
    ("GET", "/api/v1/trace/{id}", P(Read)),
    ("GET", "/api/v1/logs", P(Read)),
    ("GET", "/api/v1/diagnose", P(Read)),
    ("GET", "/api/v1/anomalies", P(Read)),
    ("POST", "/api/v1/diagnose/incidents/{id}/ack", P(Clear)),
    ("POST", "/api/v1/diagnose/incidents/{id}/resolve", P(Clear)),
    ("GET", "/api/v1/diagnose/silences", P(Read)),
    ("POST", "/api/v1/diagnose/silences", P(Clear)),
    ("GET", "/api/v1/metrics", P(Read)),
    ("GET", "/api/v1/metrics/{name}", P(Read)),
    ("GET", "/api/v1/devices", P(Read)),
    ("POST", "/api/v1/devices", P(ProvisionDevices)),
    ("GET", "/api/v1/devices/{id}", P(Read)),
    ("PATCH", "/api/v1/devices/{id}", P(ProvisionDevices)),
    ("DELETE", "/api/v1/devices/{id}", P(ProvisionDevices)),
    ("POST", "/api/v1/devices/{id}/disable", P(Control)),
    ("POST", "/api/v1/devices/{id}/enable", P(Control)),
    ("POST", "/api/v1/devices/{id}/secret", P(ProvisionDevices)),
    ("GET", "/api/v1/devices/{id}/inspect", P(Read)),
    ("DELETE", "/api/v1/devices/{id}/queue", P(Clear)),
    ("GET", "/api/v1/devices/{id}/shadow", P(Read)),
    ("POST", "/api/v1/devices/{id}/shadow", P(Control)),
    ("GET", "/api/v1/mqtt/sessions/{client_id}", P(Read)),
    ("GET", "/api/v1/mqtt/retained", P(Read)),
    ("DELETE", "/api/v1/mqtt/retained", P(Clear)),
    ("GET", "/api/v1/devices/{id}/commands", P(Read)),
    ("POST", "/api/v1/devices/{id}/commands", P(Control)),
    ("GET", "/api/v1/commands/{id}", P(Read)),
    ("POST", "/api/v1/commands/{id}/cancel", P(Control)),
    ("GET", "/api/v1/functions", P(Read)),
    ("GET", "/api/v1/functions/{name}", P(Read)),
    ("POST", "/api/v1/functions/{name}", P(Deploy)),
    ("DELETE", "/api/v1/functions/{name}", P(Deploy)),
    ("GET", "/api/v1/functions/{name}/plan", P(Read)),
    ("GET", "/api/v1/functions/{name}/versions", P(Read)),
    ("POST", "/api/v1/functions/{name}/rollback", P(Deploy)),
    ("POST", "/api/v1/functions/{name}/promote", P(Deploy)),
    ("POST", "/api/v1/functions/{name}/replay", P(Replay)),
    ("POST", "/api/v1/functions/{name}/retire", P(Deploy)),
    ("POST", "/api/v1/functions/{name}/restore", P(Deploy)),
    ("GET", "/api/v1/idle-functions", P(Read)),
    ("GET", "/api/v1/functions/{name}/invocations", P(Read)),
    ("GET", "/api/v1/functions/{name}/dead-letters", P(Read)),
    ("POST", "/api/v1/functions/{name}/dead-letters/redrive", P(Replay)),
    ("POST", "/api/v1/functions/{name}/dead-letters/discard", P(Clear)),
    ("GET", "/api/v1/ca", P(Read)),
    ("GET", "/api/v1/devices/{id}/certificates", P(Read)),
    ("POST", "/api/v1/devices/{id}/certificates", P(IssueCertificates)),
    ("DELETE", "/api/v1/devices/{id}/certificates", P(IssueCertificates)),
    ("DELETE", "/api/v1/devices/{id}/certificates/{serial}", P(IssueCertificates)),
    ("GET", "/api/v1/audit", P(Audit)),
    ("GET", "/api/v1/audit/checkpoint", P(Audit)),
    ("GET", "/api/v1/audit/checkpoints", P(Audit)),
    ("GET", "/api/v1/audit/consistency", P(Audit)),
    ("GET", "/api/v1/audit/{seq}/proof", P(Audit)),
    ("GET", "/api/v1/budgets", P(Read)),
    ("GET", "/api/v1/budgets/{target}", P(Read)),
    // A budget changes what functions may run, as a deploy does.
    ("PUT", "/api/v1/budgets/{target}", P(Deploy)),
    ("DELETE", "/api/v1/budgets/{target}", P(Deploy)),
    ("GET", "/api/v1/tokens", P(ManageTokens)),
    ("POST", "/api/v1/tokens", P(ManageTokens)),
    ("DELETE", "/api/v1/tokens/{name}", P(ManageTokens)),
];

/// What an accepted token may do: its role, and how a refusal names it.
#[derive(Debug, Clone)]
pub struct Grant {
    pub role: Role,
    /// `the admin token`, `token "ci"`.
    pub who: String,
}

impl Grant {
    pub fn admin() -> Self {
        Self { role: Role::Admin, who: "the admin token".into() }
    }

    pub fn token(name: &str, role: Role) -> Self {
        Self { role, who: format!("token {name:?}") }
    }
}

/// What `method` on `route` needs; none: not declared (admin only).
pub fn need(method: &str, route: &str) -> Option<Need> {
    ROUTES.iter().find(|(m, r, _)| *m == method && *r == route).map(|(_, _, need)| *need)
}

/// Refuses (403) a call whose token's role lacks what the route needs,
/// naming the role, what it may not do and which roles may.
pub async fn authorize(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let method = request.method().as_str().to_string();
    let Some(grant) = request.extensions().get::<Grant>().cloned() else {
        return super::error::internal(format!("route {route} is authorized before its token is resolved"))
            .into_response();
    };
    let refused = match need(&method, &route) {
        Some(AnyToken) => None,
        Some(P(permission)) => (!grant.role.allows(permission)).then(|| refusal(&grant.who, grant.role, permission)),
        None => (grant.role != Role::Admin).then(|| {
            format!("{} has role {}, which may not call {method} {route} (needs admin)", grant.who, grant.role)
        }),
    };
    match refused {
        None => next.run(request).await,
        Some(message) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_declared_once() {
        for (i, (method, route, _)) in ROUTES.iter().enumerate() {
            let first = ROUTES.iter().position(|(m, r, _)| m == method && r == route);
            assert_eq!(first, Some(i), "{method} {route} is declared twice");
        }
        assert_eq!(need("POST", "/api/v1/certificates"), None, "undeclared: admin only");
        assert_eq!(need("POST", "/api/v1/events"), Some(P(Ingest)));
    }
}
