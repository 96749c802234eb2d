//! `GET /api/v1/perimeter`: the attack surface in one answer. What the
//! server was started with (listeners, settings) is judged once at start
//! ([`Surface`]); what changes while it runs (routes, egress, tokens,
//! devices) is read at each request.

use axum::Json;
use axum::extract::State;
use glassbox_api_types::perimeter::{
    DeviceCredentials, FunctionEgress, Listener, Note, Perimeter, PublicRoute, RiskySetting, TokenExposure,
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
        tokens: tokens(),
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

/// The API tokens: the bootstrap admin token.
fn tokens() -> Vec<TokenExposure> {
    vec![TokenExposure {
        name: "admin".into(),
        role: "admin".into(),
        created_by: None,
        last_used: None,
        expires: None,
        note: Note::warn("the bootstrap token holds every power and never expires: keep it for emergencies"),
    }]
}

/// Registered devices by credential kind.
async fn devices(app: &AppState) -> Result<DeviceCredentials, ApiError> {
    let (mut total, mut disabled) = (0, 0);
    let mut query = DeviceQuery::page(None, 1_000);
    loop {
        let page = app.devices.devices(&query).await?;
        total += page.len() as u64;
        disabled += page.iter().filter(|d| d.disabled).count() as u64;
        match page.last() {
            Some(last) if page.len() == query.limit => query.after = Some(last.id.clone()),
            _ => break,
        }
    }
    let note = match total - disabled {
        0 => Note::ok("no device can log in"),
        n => Note::warn(format!("{n} device(s) log in with a shared secret only: issue certificates")),
    };
    Ok(DeviceCredentials {
        total,
        secret_only: total,
        secret_and_certificate: 0,
        certificate_only: 0,
        disabled,
        expiring: Vec::new(),
        note,
    })
}
