//! `/api/v1/diagnose` (what is abnormal, since when, and the likely causes)
//! and `/api/v1/anomalies` (the episodes themselves).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use glassbox_api_types::{
    Anomalies, Diagnosis, ExpiringCertificate, Incident, IncidentChain, Silence, SilenceRequest, Silences,
    TriageRequest,
};
use glassbox_core::{AnomalySubject, Principal, Problem};
use glassbox_diagnose::Subject;
use serde::Deserialize;

use super::auth::Caller;
use super::body::{JsonBody, Shape};
use super::events::parse_time;
use super::params::{Parameters, Path, Query};
use super::{ApiError, AppState};
use glassbox_watch::triage::Saying;
use glassbox_watch::{TriageError, Watch, answer};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagnoseParams {
    since: Option<String>,
    function: Option<String>,
    device: Option<String>,
}

impl Parameters for DiagnoseParams {}

fn watch(app: &AppState) -> Result<&Watch, ApiError> {
    app.watch.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_watching",
            "this server derives no metrics ([metrics] derive = false), so it detects no anomalies",
        )
    })
}

fn since(text: Option<&str>) -> Result<chrono::DateTime<Utc>, ApiError> {
    parse_time(text.unwrap_or("1h"), Utc::now())
        .map_err(|e| ApiError::invalid_parameters(vec![Problem { field: "since".into(), message: e }]))
}

/// `GET /api/v1/diagnose?since=1h[&function=F|&device=D]`
pub async fn diagnose(
    State(app): State<AppState>,
    Query(p): Query<DiagnoseParams>,
) -> Result<Json<Diagnosis>, ApiError> {
    let scope = match (p.function, p.device) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("invalid_parameter", "give function or device, not both"));
        }
        (Some(f), None) => {
            app.functions.versions(&f).await.map_err(super::functions::error)?;
            Some(Subject::Function(f))
        }
        (None, Some(d)) => match app.devices.device(&d).await? {
            Some(_) => Some(Subject::Device(d)),
            None => return Err(ApiError::not_found(format!("no device {d:?}; `glassbox devices list` shows them"))),
        },
        (None, None) => None,
    };
    let since = since(p.since.as_deref())?;
    let watch = watch(&app)?;
    let diagnosis = watch.diagnose(since, Utc::now(), scope.as_ref());
    // None only when a detector panicked holding the lock: a server fault.
    let diagnosis = diagnosis.ok_or_else(|| super::error::internal("the anomaly detectors' lock is poisoned"))?;
    let mut answer = answer::diagnosis(&diagnosis, watch);
    answer.certificates_expiring = expiring(&app, scope.as_ref()).await?;
    for incident in &mut answer.incidents {
        incident.chains = storm_chains(&app, incident).await?;
    }
    Ok(Json(answer))
}

/// The chains driving an invocation storm: for an incident with an episode
/// of a function's `function_invocations`, the chains that ran the most of
/// its invocations in the incident's time (read from the record).
async fn storm_chains(app: &AppState, incident: &Incident) -> Result<Vec<IncidentChain>, ApiError> {
    let mut storming: Vec<String> = incident
        .episodes
        .iter()
        .filter(|e| e.series.key.starts_with("function_invocations{"))
        .filter_map(|e| match &e.series.subject {
            glassbox_api_types::Subject::Function(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    // Episodes are in time order: one function can come back (another outcome, a second swing).
    storming.sort_unstable();
    storming.dedup();
    if storming.is_empty() {
        return Ok(Vec::new());
    }
    let until = incident.end.unwrap_or_else(Utc::now);
    let chains = app.functions.storm_chains(&storming, incident.start, until).await?;
    Ok(chains
        .into_iter()
        .map(|c| IncidentChain { correlation: c.correlation, function: c.function, invocations: c.invocations })
        .collect())
}

/// Most expiring certificates a diagnosis lists.
const EXPIRING_MAX: usize = 20;

/// Device certificates ending within the widest expiry warning, soonest
/// first (of the scoped device only, when a device is the scope).
async fn expiring(app: &AppState, scope: Option<&Subject>) -> Result<Vec<ExpiringCertificate>, ApiError> {
    let found = app.certificates.expiring_soon(EXPIRING_MAX).await?;
    let in_scope = |device: &str| match scope {
        Some(Subject::Device(d)) => d == device,
        Some(_) => false,
        None => true,
    };
    Ok(found
        .into_iter()
        .filter(|c| in_scope(&c.device))
        .map(|c| ExpiringCertificate { device: c.device, serial: c.serial, not_after: c.not_after })
        .collect())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyParams {
    since: Option<String>,
    active: Option<bool>,
}

impl Parameters for AnomalyParams {
    fn accepts(name: &str) -> Option<String> {
        (name == "active").then(|| "true or false".into())
    }
}

/// `GET /api/v1/anomalies?since=1h&active=true`
pub async fn anomalies(
    State(app): State<AppState>,
    Query(p): Query<AnomalyParams>,
) -> Result<Json<Anomalies>, ApiError> {
    let since = since(p.since.as_deref())?;
    let episodes = watch(&app)?.episodes(since, Utc::now(), p.active == Some(true));
    Ok(Json(Anomalies { anomalies: episodes.iter().map(answer::episode).collect() }))
}

impl Shape for TriageRequest {
    const EXAMPLE: &'static str = r#"{"note": "rolling back fan to v1"}"#;
}

impl Shape for SilenceRequest {
    const EXAMPLE: &'static str = r#"{"subject": "function:fan", "for": "2h", "note": "firmware rollout"}"#;
}

fn triage_error(e: TriageError) -> ApiError {
    match e {
        TriageError::UnknownIncident(_) => ApiError::not_found(e.to_string()),
        TriageError::Invalid(m) => ApiError::bad_request("invalid_triage", m),
        TriageError::Poisoned => super::error::internal("the anomaly detectors' lock is poisoned"),
        TriageError::Store(e) => e.into(),
    }
}

/// `POST /api/v1/diagnose/incidents/{id}/ack` `{"note"?}`: someone is on it.
pub async fn acknowledge(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<u64>,
    JsonBody(r): JsonBody<TriageRequest>,
) -> Result<Json<Incident>, ApiError> {
    triage(&app, Saying::Acknowledged, id, r.note, &by).await
}

/// `POST /api/v1/diagnose/incidents/{id}/resolve` `{"note"?}`: it is dealt with.
pub async fn resolve(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<u64>,
    JsonBody(r): JsonBody<TriageRequest>,
) -> Result<Json<Incident>, ApiError> {
    triage(&app, Saying::Resolved, id, r.note, &by).await
}

/// Records the saying; answers the incident as the diagnosis shows it now.
async fn triage(
    app: &AppState,
    kind: Saying,
    id: u64,
    note: Option<String>,
    by: &Principal,
) -> Result<Json<Incident>, ApiError> {
    let watch = watch(app)?;
    watch.triage_incident(kind, id, note, by).await.map_err(triage_error)?;
    let now = Utc::now();
    let diagnosis = watch.diagnose(now - chrono::TimeDelta::days(1), now, None);
    let diagnosis = diagnosis.ok_or_else(|| super::error::internal("the anomaly detectors' lock is poisoned"))?;
    let answer = answer::diagnosis(&diagnosis, watch);
    let incident = answer.incidents.into_iter().find(|i| i.id == id);
    incident.map(Json).ok_or_else(|| ApiError::not_found(TriageError::UnknownIncident(id).to_string()))
}

/// `POST /api/v1/diagnose/silences` `{"subject", "for", "note"?}`.
pub async fn silence(
    State(app): State<AppState>,
    Caller(by): Caller,
    JsonBody(r): JsonBody<SilenceRequest>,
) -> Result<Json<Silence>, ApiError> {
    let subject = AnomalySubject::parse(&r.subject).map_err(|m| ApiError::bad_request("invalid_triage", m))?;
    let length = humantime::parse_duration(&r.length)
        .map_err(|e| ApiError::bad_request("invalid_triage", format!("for {:?}: {e} (e.g. 30m, 2h, 1d)", r.length)))?;
    let silenced = watch(&app)?.silence(subject, length, r.note, &by).await.map_err(triage_error)?;
    Ok(Json(answer::silence(&silenced)))
}

/// `GET /api/v1/diagnose/silences`: the silences in force.
pub async fn silences(State(app): State<AppState>) -> Result<Json<Silences>, ApiError> {
    let silences = watch(&app)?.silences().iter().map(answer::silence).collect();
    Ok(Json(Silences { silences }))
}
