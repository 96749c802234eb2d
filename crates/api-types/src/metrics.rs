//! `/api/v1/metrics`: the derived metrics, and one metric's series.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `GET /api/v1/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub metrics: Vec<MetricInfo>,
}

/// One derived metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricInfo {
    pub name: String,
    pub help: String,
    pub kind: MetricKind,
    pub labels: Vec<String>,
    /// Also on `/metrics` for Prometheus.
    pub exported: bool,
    /// How many series (label combinations) it has now.
    pub series: usize,
}

/// What a metric's value per step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    /// How many things happened.
    Count,
    /// A total of amounts (bytes, dollars).
    Sum,
    /// Durations: the value is the mean, with count, sum, min and max.
    Distribution,
}

/// `GET /api/v1/metrics/{name}`: its series over a time range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRange {
    pub name: String,
    pub help: String,
    pub kind: MetricKind,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// The width of one point, chosen when not asked for.
    pub step_seconds: i64,
    /// The labels the series are summed by (the others are summed over).
    pub by: Vec<String>,
    pub series: Vec<SeriesRange>,
}

/// One series: its labels (the grouped ones) and points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesRange {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<Point>,
}

/// One step of a series, zero where nothing happened: its value by the
/// metric's kind, and the aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub at: DateTime<Utc>,
    pub value: f64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}
