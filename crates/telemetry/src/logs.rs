//! The platform's own operational log lines, kept so `glassbox logs` can
//! show them beside the functions' lines, with the ids they name.
//!
//! A `tracing` layer copies every line at INFO or above from Glassbox's own
//! crates into a bounded ring in memory: the oldest line goes when it is
//! full, and the number gone is counted. Function log lines are not here;
//! they are recorded on their invocation (`function.invoked`), durably.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Level, Subscriber};

/// Lines kept; the oldest is dropped beyond this.
pub const PLATFORM_LINES_MAX: usize = 10_000;

/// One line of the platform's log, with its structured fields.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformLine {
    /// Rises by one per line; a follower skips what it has seen.
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub level: &'static str,
    /// The module that wrote it (`glassbox_gateway::broker`, …).
    pub target: String,
    pub message: String,
    pub fields: Map<String, Value>,
}

impl PlatformLine {
    /// The value of a field naming an id (`device`, `function`, …), as text.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }
}

/// The bounded ring of platform lines. The process makes one, hands it to
/// the [`PlatformLayer`] it installs and to the server that reads it; no
/// static: a test's server reads only what its own layer wrote.
pub struct PlatformLog {
    lines: Mutex<VecDeque<PlatformLine>>,
    next_seq: AtomicU64,
    dropped: AtomicU64,
}

impl PlatformLog {
    /// An empty ring, shared by the layer that writes and the API that reads.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            lines: Mutex::new(VecDeque::with_capacity(1024)),
            next_seq: AtomicU64::new(1),
            dropped: AtomicU64::new(0),
        })
    }

    fn push(&self, mut line: PlatformLine) {
        let Ok(mut lines) = self.lines.lock() else { return };
        line.seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        if lines.len() >= PLATFORM_LINES_MAX {
            lines.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        lines.push_back(line);
    }

    /// The kept lines that `keep` accepts, oldest first, at most `limit`
    /// (the newest ones when there are more).
    pub fn lines(&self, keep: impl Fn(&PlatformLine) -> bool, limit: usize) -> Vec<PlatformLine> {
        let Ok(lines) = self.lines.lock() else { return Vec::new() };
        let mut found: Vec<PlatformLine> = lines.iter().rev().filter(|l| keep(l)).take(limit).cloned().collect();
        found.reverse();
        found
    }

    /// Lines dropped from the ring since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The layer that copies Glassbox's INFO-and-above lines into a [`PlatformLog`].
pub struct PlatformLayer(Arc<PlatformLog>);

impl PlatformLayer {
    /// A layer writing into `log`.
    pub fn new(log: Arc<PlatformLog>) -> Self {
        Self(log)
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for PlatformLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > Level::INFO || !meta.target().starts_with("glassbox") {
            return;
        }
        let mut visitor = FieldVisitor::default();
        event.record(&mut visitor);
        self.0.push(PlatformLine {
            seq: 0,
            at: Utc::now(),
            level: level_name(*meta.level()),
            target: meta.target().to_string(),
            message: visitor.message,
            fields: visitor.fields,
        });
    }
}

/// A level's name as the logs API writes it.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

#[derive(Default)]
struct FieldVisitor {
    message: String,
    fields: Map<String, Value>,
}

impl Visit for FieldVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.put(field, Value::String(text));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
}

impl FieldVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        match (field.name(), value) {
            ("message", Value::String(text)) => self.message = text,
            (name, value) => {
                self.fields.insert(name.to_string(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn glassbox_lines_are_kept_with_their_fields() {
        let log = PlatformLog::new();
        let subscriber = tracing_subscriber::registry().with(PlatformLayer::new(log.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "glassbox_server::test", device = "kitchen-1", skipped = 3u64, "fell behind");
            tracing::debug!(target: "glassbox_server::test", device = "kitchen-1", "too chatty to keep");
            tracing::warn!(target: "other_crate", device = "kitchen-1", "not ours");
        });
        let lines = log.lines(|l| l.field("device") == Some("kitchen-1"), 10);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0].message, "fell behind");
        assert_eq!(lines[0].level, "warn");
        assert_eq!(lines[0].fields["skipped"], 3);
    }
}
