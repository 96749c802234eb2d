//! `/metrics`: the [`Registry`] each service registers a [`Collector`] into,
//! ingest's own counters, and the Prometheus text exposition helpers every
//! collector writes with. Labels are bounded: a closed list of reasons,
//! never ids.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use glassbox_store::StoreStatus;

/// A part of the platform with metrics: registered once, asked for its
/// lines at every scrape.
#[async_trait::async_trait]
pub trait Collector: Send + Sync {
    /// Appends this part's metrics to `out` in the Prometheus text format.
    async fn collect(&self, out: &mut String);
}

/// What `/metrics` serves: every registered [`Collector`], in the order
/// they registered.
#[derive(Default)]
pub struct Registry {
    collectors: RwLock<Vec<Arc<dyn Collector>>>,
}

impl Registry {
    /// Adds `collector` to every scrape from now on.
    pub fn register(&self, collector: Arc<dyn Collector>) {
        self.collectors.write().unwrap_or_else(|e| e.into_inner()).push(collector);
    }

    /// The Prometheus text exposition of every collector.
    pub async fn render(&self) -> String {
        let collectors = self.collectors.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out = String::new();
        for collector in collectors {
            collector.collect(&mut out).await;
        }
        out
    }
}

/// Why ingest refused an input. A closed list, one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    MalformedJson,
    InvalidEvent,
    TooLarge,
    UnsupportedMediaType,
    StoreUnavailable,
}

impl Rejection {
    pub const ALL: [Rejection; 5] = [
        Rejection::MalformedJson,
        Rejection::InvalidEvent,
        Rejection::TooLarge,
        Rejection::UnsupportedMediaType,
        Rejection::StoreUnavailable,
    ];

    /// The `reason` label's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::MalformedJson => "malformed_json",
            Rejection::InvalidEvent => "invalid_event",
            Rejection::TooLarge => "too_large",
            Rejection::UnsupportedMediaType => "unsupported_media_type",
            Rejection::StoreUnavailable => "store_unavailable",
        }
    }
}

/// What ingest counted: recorded, deduplicated and refused inputs.
#[derive(Debug, Default)]
pub struct Counters {
    pub events_received: AtomicU64,
    pub events_deduplicated: AtomicU64,
    /// API calls refused for a missing or unknown token (any route).
    pub unauthorized: AtomicU64,
    rejected: [AtomicU64; Rejection::ALL.len()],
}

impl Counters {
    /// Counts one input refused for `why`.
    pub fn reject(&self, why: Rejection) {
        self.rejected[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self, why: Rejection) -> u64 {
        self.rejected[why as usize].load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of these counters and the store's.
    pub fn render(&self, store: &StoreStatus) -> String {
        let mut out = String::new();
        counter(
            &mut out,
            "glassbox_events_received_total",
            "Events recorded at ingress.",
            self.events_received.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "glassbox_events_deduplicated_total",
            "Producer retries answered with the first event's id.",
            self.events_deduplicated.load(Ordering::Relaxed),
        );
        let _ = writeln!(out, "# HELP glassbox_ingest_rejected_total Inputs refused at ingress, by reason.");
        let _ = writeln!(out, "# TYPE glassbox_ingest_rejected_total counter");
        for why in Rejection::ALL {
            let _ =
                writeln!(out, "glassbox_ingest_rejected_total{{reason=\"{}\"}} {}", why.as_str(), self.rejected(why));
        }
        counter(
            &mut out,
            "glassbox_api_unauthorized_total",
            "API calls refused for a missing or unknown token.",
            self.unauthorized.load(Ordering::Relaxed),
        );
        counter(&mut out, "glassbox_recorder_commits_total", "Group commits made by the recorder.", store.commits);
        counter(
            &mut out,
            "glassbox_recorder_commits_fsynced_total",
            "Group commits whose answer waited for the disk (the rest held only what nobody outside is answered for: the platform's own records, delivery states, QoS 0 messages).",
            store.commits_durable,
        );
        commit_histogram(&mut out, store);
        counter(
            &mut out,
            "glassbox_recorder_events_expired_total",
            "Events deleted by retention.",
            store.events_expired,
        );
        gauge(&mut out, "glassbox_recorder_queue_depth", "Writes waiting for the recorder.", store.writes_waiting);
        gauge(
            &mut out,
            "glassbox_recorder_index_lag_batches",
            "Committed batches not yet indexed for queries.",
            store.query_lag,
        );
        gauge(
            &mut out,
            "glassbox_recorder_index_failed",
            "1 when index upkeep gave up until restart.",
            store.query_error.is_some() as u64,
        );
        gauge(&mut out, "glassbox_recorder_writable", "1 while the recorder accepts writes.", store.writable as u64);
        out
    }
}

/// How long the recorder's commits and its syncs to disk take, as histograms.
fn commit_histogram(out: &mut String, store: &StoreStatus) {
    histogram(
        out,
        "glassbox_recorder_commit_seconds",
        "Recorder group commits by duration (the write, not the wait for the disk).",
        &glassbox_store::COMMIT_SECONDS_BUCKETS,
        &store.commit_seconds_buckets,
        store.commit_seconds_sum,
    );
    histogram(
        out,
        "glassbox_recorder_sync_seconds",
        "Recorder syncs of committed writes to disk by duration (one may cover several commits).",
        &glassbox_store::COMMIT_SECONDS_BUCKETS,
        &store.sync_seconds_buckets,
        store.sync_seconds_sum,
    );
}

/// A histogram in the Prometheus text format: `counts` per bucket (not
/// cumulative), one per bound and then one beyond the last.
fn histogram(out: &mut String, name: &str, help: &str, bounds: &[f64], counts: &[u64], sum: f64) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} histogram\n");
    let mut cumulative = 0;
    for (bound, count) in bounds.iter().zip(counts) {
        cumulative += count;
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let total: u64 = counts.iter().sum();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}\n{name}_sum {sum}\n{name}_count {total}");
}

/// One counter in the Prometheus text format.
pub fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n");
}

/// One gauge in the Prometheus text format.
pub fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n");
}

/// A histogram the server keeps itself, in the Prometheus text format.
pub fn render_histogram(out: &mut String, name: &str, help: &str, kept: &glassbox_core::Histogram) {
    let (counts, sum) = kept.snapshot();
    histogram(out, name, help, kept.bounds(), &counts, sum);
}
