//! Write, then record (decision 0015): every service here makes its change
//! first and records it after, retrying a record that fails, and reports
//! one that still fails as [`Changed::unrecorded`] — logged as an error and
//! answered by the API as a `warning` — never dropped silently.

use std::time::Duration;

use glassbox_core::Draft;
use glassbox_pipeline::Pipeline;

/// Waits before each further attempt to record a change already made.
const RECORD_RETRIES: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(500)];

/// A change made, and whether its record was written.
#[derive(Debug)]
pub struct Changed<T> {
    pub value: T,
    /// Why the change's record could not be written, after retries; none
    /// when it was.
    pub unrecorded: Option<String>,
}

/// Records a change already made (arriving `via` an ingress: `api`,
/// `platform`), retrying a failure; returns why it could not, if it could
/// not.
pub async fn record_change(pipeline: &Pipeline, draft: Draft, via: &str) -> Option<String> {
    let mut waits = RECORD_RETRIES.iter();
    loop {
        let error = match pipeline.ingest_platform(vec![draft.clone()], via).await {
            Ok(_) => return None,
            Err(e) => e,
        };
        match waits.next() {
            Some(wait) => tokio::time::sleep(*wait).await,
            None => {
                let ty = &draft.ty;
                tracing::error!(source = %draft.source, change = %ty, %error, "change made but its event was not recorded");
                return Some(format!("the change was made, but its {ty} event could not be recorded: {error}"));
            }
        }
    }
}
