//! `metrics.db`: the metric time series. Derived data (the recorder can
//! rebuild it), so `synchronous=OFF`: a crash may lose the last buckets.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use glassbox_store::StoreError;
use glassbox_store::metrics::{
    COARSE_STEP_SECONDS, FINE_STEP_SECONDS, MetricPoint, MetricStore, Retention, resolution,
};
use rusqlite::{Connection, params};

use super::schema;

/// The metrics file's name inside the data directory.
pub const METRICS_FILE_NAME: &str = "metrics.db";

pub struct SqliteMetrics {
    conn: Arc<Mutex<Connection>>,
    retention: Retention,
}

impl SqliteMetrics {
    pub fn open(dir: &Path, retention: Retention) -> Result<Self, StoreError> {
        let path = dir.join(METRICS_FILE_NAME);
        let opened = |e: String| StoreError::Unavailable(format!("cannot open {}: {e}", path.display()));
        let mut conn = Connection::open(&path).map_err(|e| opened(e.to_string()))?;
        // A stopped server's last flush may still be writing (a restart in one process).
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| opened(e.to_string()))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| opened(e.to_string()))?;
        conn.pragma_update(None, "synchronous", "OFF").map_err(|e| opened(e.to_string()))?;
        schema::migrate(&mut conn, schema::METRICS).map_err(opened)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), retention })
    }

    /// Runs `work` on the connection on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut conn =
                conn.lock().map_err(|_| StoreError::Internal("the metrics connection is poisoned".into()))?;
            work(&mut conn).map_err(|e| StoreError::Internal(format!("metrics: {e}")))
        });
        done.await.map_err(|e| StoreError::Internal(format!("metrics task: {e}")))?
    }
}

const UPSERT: &str = "INSERT INTO {table} (series, at, count, sum, min, max) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
    ON CONFLICT (series, at) DO UPDATE SET count = count + excluded.count, sum = sum + excluded.sum,
    min = MIN(min, excluded.min), max = MAX(max, excluded.max)";

#[async_trait]
impl MetricStore for SqliteMetrics {
    async fn append(&self, points: Vec<MetricPoint>) -> Result<(), StoreError> {
        if points.is_empty() {
            return Ok(());
        }
        self.with(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut fine = tx.prepare_cached(&UPSERT.replace("{table}", "points_fine"))?;
                let mut coarse = tx.prepare_cached(&UPSERT.replace("{table}", "points_coarse"))?;
                for p in &points {
                    let count = p.count as i64;
                    fine.execute(params![p.series, p.at, count, p.sum, p.min, p.max])?;
                    let at = p.at - p.at.rem_euclid(COARSE_STEP_SECONDS);
                    coarse.execute(params![p.series, at, count, p.sum, p.min, p.max])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn range(&self, prefix: &str, since: i64, until: i64, step: i64) -> Result<Vec<MetricPoint>, StoreError> {
        let (base, step) = resolution(step, since, until.max(since), self.retention);
        let table = if base == FINE_STEP_SECONDS { "points_fine" } else { "points_coarse" };
        let (prefix, upper) = (prefix.to_string(), prefix_end(prefix));
        self.with(move |conn| {
            let sql = format!(
                "SELECT series, (at / ?4) * ?4 AS bucket, SUM(count), SUM(sum), MIN(min), MAX(max) FROM {table}
                 WHERE series >= ?1 AND series < ?2 AND at >= ?3 AND at < ?5
                 GROUP BY series, bucket ORDER BY series, bucket"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(params![prefix, upper, since, step, until], |row| {
                Ok(MetricPoint {
                    series: row.get(0)?,
                    at: row.get(1)?,
                    count: row.get::<_, i64>(2)? as u64,
                    sum: row.get(3)?,
                    min: row.get(4)?,
                    max: row.get(5)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn prune(&self, now: i64, retention: Retention) -> Result<u64, StoreError> {
        self.with(move |conn| {
            let fine = conn.execute("DELETE FROM points_fine WHERE at < ?1", [now - retention.fine_seconds])?;
            let coarse = conn.execute("DELETE FROM points_coarse WHERE at < ?1", [now - retention.coarse_seconds])?;
            Ok((fine + coarse) as u64)
        })
        .await
    }
}

/// The smallest string greater than every string starting with `prefix`.
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}
