//! `/api/v1/metrics`: the derived metrics, and one metric's series over a
//! time range, filtered by label values and summed by the labels asked for.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use glassbox_api_types::{MetricInfo, MetricKind, MetricRange, Metrics};
use glassbox_core::Problem;

use super::events::parse_time;
use super::params::{Path, Query};
use super::{ApiError, AppState};
use glassbox_series::catalog::{self, Kind};

/// Most points in one answer per series: a bounded answer for any range.
pub const POINTS_MAX: i64 = 10_000;

fn kind_of(kind: Kind) -> MetricKind {
    match kind {
        Kind::Count => MetricKind::Count,
        Kind::Sum => MetricKind::Sum,
        Kind::Distribution => MetricKind::Distribution,
    }
}

/// `GET /api/v1/metrics`: every metric, its labels and how many series it has.
pub async fn list(State(app): State<AppState>) -> Json<Metrics> {
    let metrics = catalog::ALL
        .iter()
        .map(|m| MetricInfo {
            name: m.name.into(),
            help: m.help.into(),
            kind: kind_of(m.kind),
            labels: m.labels.iter().map(|l| l.to_string()).collect(),
            exported: m.exported,
            series: app.series.count(m),
        })
        .collect();
    Json(Metrics { metrics })
}

/// `GET /api/v1/metrics/{name}?since=1h&step=1m&by=function&function=fan`
pub async fn range(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<MetricRange>, ApiError> {
    let metric = catalog::find(&name).ok_or_else(|| {
        let names: Vec<&str> = catalog::ALL.iter().map(|m| m.name).collect();
        ApiError::not_found(format!("no metric named {name:?}; metrics: {}", names.join(", ")))
    })?;
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: String| problems.push(Problem { field: field.into(), message });
    let now = Utc::now();
    let since = params.get("since").map_or("1h", String::as_str);
    let since = parse_time(since, now).map_err(|e| problem("since", e)).ok();
    let until =
        params.get("until").map(|u| parse_time(u, now).map_err(|e| problem("until", e)).ok()).unwrap_or(Some(now));
    let step = match params.get("step") {
        None => None,
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) if d.as_secs() >= 1 => Some(d.as_secs() as i64),
            _ => {
                problem("step", format!("{text:?} is not a step: use a duration like 10s, 1m, 1h"));
                None
            }
        },
    };
    let by: Vec<String> = params.get("by").map(|b| b.split(',').map(str::to_string).collect()).unwrap_or_default();
    for label in &by {
        if !metric.labels.contains(&label.as_str()) {
            problem("by", format!("{name} has no label {label:?}; its labels: {}", metric.labels.join(", ")));
        }
    }
    let mut filters = Vec::new();
    for (key, value) in &params {
        match key.as_str() {
            "since" | "until" | "step" | "by" => {}
            label if metric.labels.contains(&label) => filters.push((key.clone(), value.clone())),
            other => problem(other, format!("{name} has no label {other:?}; its labels: {}", metric.labels.join(", "))),
        }
    }
    let (Some(since), Some(until)) = (since, until) else { return Err(ApiError::invalid_parameters(problems)) };
    if since >= until {
        problems.push(Problem { field: "since".into(), message: "is not before until".into() });
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid_parameters(problems));
    }
    let span = (until - since).num_seconds();
    // About 60 points by default; never more than POINTS_MAX.
    let step = step.unwrap_or((span / 60).max(10)).max(span / POINTS_MAX + 1);
    let (step, series) = app.series.range(metric, &filters, &by, since, until, step).await?;
    Ok(Json(MetricRange {
        name: metric.name.into(),
        help: metric.help.into(),
        kind: kind_of(metric.kind),
        since,
        until,
        step_seconds: step,
        by,
        series,
    }))
}
