//! Metric time series: aggregates (count, sum, min, max) per series and
//! time bucket, at two resolutions with their own retention. The server
//! derives them from the recorded stream; this keeps them and answers
//! range queries at any step that is a multiple of a resolution.

use async_trait::async_trait;

use crate::StoreError;

/// The fine resolution: buckets of this many seconds.
pub const FINE_STEP_SECONDS: i64 = 10;
/// The coarse resolution, rolled up as fine buckets are written.
pub const COARSE_STEP_SECONDS: i64 = 300;

/// One series' aggregate over one bucket. `series` is the series key
/// (`name{label="value",…}`), `at` the bucket's start in unix seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    pub series: String,
    pub at: i64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl MetricPoint {
    /// Folds another aggregate of the same series into this one.
    pub fn merge(&mut self, other: &MetricPoint) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// How long each resolution is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub fine_seconds: i64,
    pub coarse_seconds: i64,
}

impl Default for Retention {
    /// Fine buckets for 6 hours, coarse ones for 30 days.
    fn default() -> Self {
        Self { fine_seconds: 6 * 3600, coarse_seconds: 30 * 86_400 }
    }
}

#[async_trait]
pub trait MetricStore: Send + Sync + 'static {
    /// Adds closed fine buckets (merged into any stored for the same series
    /// and time) and rolls them into the coarse ones.
    async fn append(&self, points: Vec<MetricPoint>) -> Result<(), StoreError>;

    /// The points of series whose key starts with `prefix`, in
    /// [since, until), aggregated to `step` seconds (rounded to a multiple
    /// of the resolution that serves it), ordered by series and time.
    async fn range(&self, prefix: &str, since: i64, until: i64, step: i64) -> Result<Vec<MetricPoint>, StoreError>;

    /// Deletes what is past its retention; returns the rows deleted.
    async fn prune(&self, now: i64, retention: Retention) -> Result<u64, StoreError>;
}

/// The resolution a query at `step` over [since, now) reads, and the step
/// rounded to a multiple of it.
pub fn resolution(step: i64, since: i64, now: i64, retention: Retention) -> (i64, i64) {
    let coarse = step >= COARSE_STEP_SECONDS || now - since > retention.fine_seconds;
    let base = if coarse { COARSE_STEP_SECONDS } else { FINE_STEP_SECONDS };
    (base, (step.max(base) / base) * base)
}
