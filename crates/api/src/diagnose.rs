//! `/api/v1/diagnose` (what is abnormal, since when, and the likely causes)
//! and `/api/v1/anomalies` (the episodes themselves).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use glassbox_api_types::{Anomalies, Diagnosis, ExpiringCertificate};
use glassbox_core::Problem;
use glassbox_diagnose::Subject;
use serde::Deserialize;

use super::events::parse_time;
use super::params::{Parameters, Query};
use super::{ApiError, AppState};
use glassbox_watch::{Watch, answer};

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
    let diagnosis = watch(&app)?.diagnose(since, Utc::now(), scope.as_ref());
    // None only when a detector panicked holding the lock: a server fault.
    let diagnosis = diagnosis.ok_or_else(|| super::error::internal("the anomaly detectors' lock is poisoned"))?;
    let mut answer = answer::diagnosis(&diagnosis);
    answer.certificates_expiring = expiring(&app, scope.as_ref()).await?;
    Ok(Json(answer))
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
