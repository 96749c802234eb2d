//! `GET /api/v1/perimeter`: the attack surface in one answer. What the
//! server was started with (listeners, settings) is judged once at start
//! ([`Surface`]); what changes while it runs (routes, egress, tokens,
//! devices) is read at each request.

use axum::Json;
use axum::extract::State;
use glassbox_api_types::perimeter::{
    CertificateExpiry, DeviceCredentials, FunctionEgress, Listener, Note, Perimeter, PublicRoute, RiskySetting,
    TokenExposure,
};
use glassbox_functions::{Spec, Trigger};
use glassbox_runtime::{Exposure, HostRule};
use glassbox_store::{DeviceQuery, FunctionVersion};

use super::functions::error;
use super::{ApiError, AppState};

/// What the server was started with, judged once.
#[derive(Debug, Clone, Default)]
pub struct Surface {
    pub listeners: Vec<Listener>,
    pub settings: Vec<RiskySetting>,
    /// The listener (its `name`) that serves public function routes.
    pub routes_listener: String,
    /// Requests per second per public route (`http.route_requests_per_second`); 0: no limit.
    pub route_requests_per_second: u32,
}

/// `GET /api/v1/perimeter`.
pub async fn perimeter(State(app): State<AppState>) -> Result<Json<Perimeter>, ApiError> {
    let live = app.functions.list().await.map_err(error)?;
    let specs: Vec<(FunctionVersion, Spec)> =
        live.into_iter().filter_map(|v| serde_json::from_str(&v.spec).ok().map(|s| (v, s))).collect();
    Ok(Json(Perimeter {
        listeners: app.surface.listeners.clone(),
        routes: specs.iter().flat_map(|(v, spec)| routes(&app.surface, v, spec)).collect(),
        tokens: tokens(&app),
        devices: devices(&app).await?,
        egress: specs.iter().map(|(v, spec)| egress(v, spec)).collect(),
        settings: app.surface.settings.clone(),
    }))
}

/// A live function's public routes.
fn routes(surface: &Surface, version: &FunctionVersion, spec: &Spec) -> Vec<PublicRoute> {
    let limit = (surface.route_requests_per_second > 0).then_some(surface.route_requests_per_second);
    let http = spec.triggers.iter().filter_map(|t| match Trigger::parse(t) {
        Ok(Trigger::Http(route)) => Some(route),
        _ => None,
    });
    http.map(|route| {
        let path = if route.prefix { format!("{}*", route.path) } else { route.path.clone() };
        let note = match (limit, spec.rate_per_second, route.prefix) {
            (None, None, _) => Note::high("no rate limit: every request anyone sends runs the function"),
            (_, _, true) => Note::warn("a prefix route: every path under it runs the function"),
            _ => Note::ok("rate limited; the function checks who calls"),
        };
        PublicRoute {
            function: version.name.clone(),
            version: version.version,
            method: route.method.clone().unwrap_or_else(|| "*".into()),
            path,
            listener: surface.routes_listener.clone(),
            rate_limit_per_second: limit,
            invocations_per_second: spec.rate_per_second,
            note,
        }
    })
    .collect()
}

/// A live function's egress allow list, judged by its widest rule.
fn egress(version: &FunctionVersion, spec: &Spec) -> FunctionEgress {
    let rules: Vec<String> = spec.egress.iter().chain(&spec.egress_trace).cloned().collect();
    let judged = rules.iter().filter_map(|r| HostRule::parse(r).ok()).map(|r| r.exposure());
    let worst = judged.fold(None, |worst: Option<Exposure>, e| match (&worst, &e) {
        (Some(Exposure::Dangerous(_)), _) => worst,
        (_, Exposure::Dangerous(_)) | (None | Some(Exposure::Narrow), Exposure::Wide(_)) => Some(e),
        (None, Exposure::Narrow) => Some(e),
        _ => worst,
    });
    let note = match worst {
        None => Note::ok("denied: no outbound request leaves"),
        Some(Exposure::Narrow) => Note::ok(format!("{} named host(s) over https", rules.len())),
        Some(Exposure::Wide(why)) => Note::warn(why),
        Some(Exposure::Dangerous(why)) => Note::high(why),
    };
    FunctionEgress { function: version.name.clone(), version: version.version, rules, note }
}

/// The API tokens: the bootstrap admin token, then each named token not revoked.
fn tokens(app: &AppState) -> Vec<TokenExposure> {
    let admin = TokenExposure {
        name: "admin".into(),
        role: "admin".into(),
        created_by: None,
        last_used: None,
        expires: None,
        note: Note::warn("the bootstrap token holds every power and never expires: keep it for emergencies"),
    };
    let now = chrono::Utc::now();
    let named = app.named_tokens.list().into_iter().filter(|t| t.revoked_at.is_none()).map(|t| TokenExposure {
        note: token_note(&t, now),
        name: t.name,
        role: t.role.to_string(),
        created_by: Some(t.created_by),
        last_used: t.last_used_at,
        expires: t.expires_at,
    });
    std::iter::once(admin).chain(named).collect()
}

/// A named token's risk: unused for 30 days, or powerful and never expiring.
fn token_note(token: &glassbox_store::TokenRecord, now: chrono::DateTime<chrono::Utc>) -> Note {
    use glassbox_core::access::Role;
    let idle = now - token.last_used_at.unwrap_or(token.created_at) > chrono::Duration::days(30);
    match (token.expires_at, idle, token.role) {
        (Some(at), _, _) if at <= now => Note::ok("expired: it no longer works; revoke it to tidy up"),
        (_, true, _) => Note::warn("not used for 30 days: revoke it if nothing needs it"),
        (None, false, Role::Admin | Role::Operator) => {
            Note::warn(format!("role {} never expires: give it --expires", token.role))
        }
        _ => Note::ok(format!("role {}", token.role)),
    }
}

/// Certificates in force the perimeter reads at most.
const CERTIFICATES_MAX: usize = 100_000;

/// Certificates the perimeter lists, soonest expiry first.
const EXPIRING_LISTED: usize = 20;

/// Registered devices by credential kind.
async fn devices(app: &AppState) -> Result<DeviceCredentials, ApiError> {
    let in_force = app.certificates.in_force(CERTIFICATES_MAX).await?;
    let holders: std::collections::HashSet<&str> = in_force.iter().map(|c| c.device.as_str()).collect();
    let (mut total, mut disabled, mut certificate_only, mut with_certificate) = (0, 0, 0, 0);
    let mut query = DeviceQuery::page(None, 1_000);
    loop {
        let page = app.devices.devices(&query).await?;
        total += page.len() as u64;
        disabled += page.iter().filter(|d| d.disabled).count() as u64;
        certificate_only += page.iter().filter(|d| d.meta.certificate_only).count() as u64;
        with_certificate +=
            page.iter().filter(|d| !d.meta.certificate_only && holders.contains(d.id.as_str())).count() as u64;
        match page.last() {
            Some(last) if page.len() == query.limit => query.after = Some(last.id.clone()),
            _ => break,
        }
    }
    let secret_only = total - certificate_only - with_certificate;
    let note = match secret_only {
        0 => Note::ok("no device logs in with a shared secret only"),
        n => Note::warn(format!("{n} device(s) log in with a shared secret only: issue certificates")),
    };
    let expiring = in_force.into_iter().take(EXPIRING_LISTED).map(expiry).collect();
    Ok(DeviceCredentials {
        total,
        secret_only,
        secret_and_certificate: with_certificate,
        certificate_only,
        disabled,
        expiring,
        note,
    })
}

/// A certificate in force and how soon it ends: a warning within 30 days.
fn expiry(c: glassbox_store::CertificateRecord) -> CertificateExpiry {
    let left = c.not_after - chrono::Utc::now();
    let note = match left < chrono::Duration::days(30) {
        true => Note::warn(format!("ends in {} day(s): the device should renew it", left.num_days())),
        false => Note::ok(format!("ends in {} days", left.num_days())),
    };
    CertificateExpiry { device: c.device, serial: c.serial, not_after: c.not_after, note }
}
