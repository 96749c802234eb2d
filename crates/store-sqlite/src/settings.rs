//! The recorder's bounds and windows: how the single writer batches, queues
//! and retains. The server builds them from its `recorder` configuration and
//! passes them to [`crate::SqliteStore::open`].

use std::time::Duration;

/// Bounds and windows of the embedded recorder.
#[derive(Debug, Clone)]
pub struct RecorderSettings {
    /// Events older than this are deleted in small batches. Zero keeps all.
    pub retention: Duration,
    /// A retry with the same `source` and `originid` within this window
    /// returns the first event instead of recording another.
    pub dedup_window: Duration,
    /// Most events in one commit.
    pub batch_events_max: usize,
    /// Most commands waiting for the writer; appends wait when it is full.
    pub queue_commands_max: usize,
    /// Largest store file; writes fail with "full" beyond it. Zero: no bound.
    pub store_bytes_max: u64,
    /// The name recorded as `node` on every state.
    pub node: String,
}

impl Default for RecorderSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 24 * 3600),
            dedup_window: Duration::from_secs(10 * 60),
            batch_events_max: 8192,
            queue_commands_max: 65536,
            store_bytes_max: 0,
            node: "local".into(),
        }
    }
}
