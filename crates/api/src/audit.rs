//! `/api/v1/audit`: the audit log, its signed checkpoints and proofs, from
//! `control::AuditLog`. Entries come as the log keeps them (every field a
//! hash covers), so `glassbox audit verify` recomputes them client-side.

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use glassbox_api_types::{AuditPage, CheckpointList, CheckpointView, ConsistencyProof, InclusionProof};
use glassbox_control::{AuditError, AuditLog};
use glassbox_core::Problem;
use glassbox_store::{AuditQuery, StoredCheckpoint};
use serde::Deserialize;

use super::events::parse_time;
use super::params::{Parameters, Path, Query};
use super::{ApiError, AppState};

/// Entries per page unless `limit` says fewer; and at most.
const PAGE_DEFAULT: usize = 100;
const PAGE_MAX: usize = 10_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    since: Option<String>,
    after: Option<u64>,
    before: Option<u64>,
    limit: Option<usize>,
    /// `newest` for the newest entries first.
    order: Option<String>,
}

impl Parameters for LogParams {}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_parameters(vec![Problem { field: field.into(), message: message.into() }])
}

/// `GET /api/v1/audit?actor=&action=&target=&since=&after=&limit=&order=newest`
pub async fn log(State(app): State<AppState>, Query(p): Query<LogParams>) -> Result<Json<AuditPage>, ApiError> {
    let limit = page_limit(p.limit, PAGE_DEFAULT)?;
    let newest_first = match p.order.as_deref() {
        None | Some("oldest") => false,
        Some("newest") => true,
        Some(other) => return Err(invalid("order", format!("{other:?}: give oldest or newest"))),
    };
    let since = p.since.as_deref().map(|s| parse_time(s, Utc::now()).map_err(|e| invalid("since", e))).transpose()?;
    let query = AuditQuery {
        actor: p.actor,
        action: p.action,
        target: p.target,
        since,
        after: p.after,
        before: p.before,
        limit,
        newest_first,
    };
    let entries = app.audit.entries(&query).await?;
    let next = match (entries.len() == limit, newest_first) {
        (false, _) | (_, true) => None,
        (true, false) => entries.last().map(|e| e.seq),
    };
    Ok(Json(AuditPage { entries, next }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointParams {
    after: Option<u64>,
    limit: Option<usize>,
}

impl Parameters for CheckpointParams {}

/// `GET /api/v1/audit/checkpoints?after=&limit=`: the signed checkpoints, smallest first.
pub async fn checkpoints(
    State(app): State<AppState>,
    Query(p): Query<CheckpointParams>,
) -> Result<Json<CheckpointList>, ApiError> {
    let limit = page_limit(p.limit, PAGE_MAX)?;
    let log = app.audit.as_ref();
    let found = log.checkpoints(p.after.unwrap_or(0), limit).await?;
    let next = (found.len() == limit).then(|| found.last().map(|c| c.size)).flatten();
    let checkpoints = found.into_iter().map(|c| view(log, c)).collect();
    Ok(Json(CheckpointList { checkpoints, key: log.key().to_string(), next }))
}

/// `GET /api/v1/audit/checkpoint`: the latest checkpoint, signed now if
/// entries came since the last one.
pub async fn checkpoint(State(app): State<AppState>) -> Result<Json<CheckpointView>, ApiError> {
    let log = app.audit.as_ref();
    let latest = log.checkpoint().await?;
    let latest = latest.ok_or_else(|| ApiError::not_found("the audit log is empty: no change was made yet"))?;
    Ok(Json(view(log, latest)))
}

/// `GET /api/v1/audit/{seq}/proof`: entry `seq` and its inclusion proof.
pub async fn proof(State(app): State<AppState>, Path(seq): Path<u64>) -> Result<Json<InclusionProof>, ApiError> {
    let log = app.audit.as_ref();
    let found = log.prove(seq).await.map_err(error)?;
    Ok(Json(InclusionProof {
        index: found.entry.seq - 1,
        entry: found.entry,
        checkpoint: view(log, found.checkpoint),
        proof: found.proof,
        key: log.key().to_string(),
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyParams {
    from: Option<u64>,
    to: Option<u64>,
}

impl Parameters for ConsistencyParams {}

/// `GET /api/v1/audit/consistency?from=SIZE[&to=SIZE]`
pub async fn consistency(
    State(app): State<AppState>,
    Query(p): Query<ConsistencyParams>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    let from = p.from.ok_or_else(|| invalid("from", "give the size of the checkpoint you kept"))?;
    let log = app.audit.as_ref();
    let found = log.consistency(from, p.to).await.map_err(error)?;
    Ok(Json(ConsistencyProof {
        from: found.from,
        from_root: found.from_root,
        to: view(log, found.to),
        proof: found.proof,
        key: log.key().to_string(),
    }))
}

/// `limit`, or `default` when absent: 1 to [`PAGE_MAX`].
fn page_limit(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match limit.unwrap_or(default) {
        0 => Err(invalid("limit", format!("give 1 to {PAGE_MAX}"))),
        n if n > PAGE_MAX => Err(invalid("limit", format!("give 1 to {PAGE_MAX}"))),
        n => Ok(n),
    }
}

fn view(log: &AuditLog, c: StoredCheckpoint) -> CheckpointView {
    CheckpointView { origin: log.key().name.clone(), size: c.size, root: c.root, at: c.at, note: c.note }
}

fn error(e: AuditError) -> ApiError {
    match e {
        AuditError::Unknown(..) => ApiError::not_found(e.to_string()),
        AuditError::Invalid(message) => ApiError::bad_request("invalid_parameter", message),
        AuditError::Store(e) => e.into(),
    }
}
