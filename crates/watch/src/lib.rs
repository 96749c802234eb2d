//! The platform watching itself, live: closed metric buckets feed the
//! diagnosis engine's detectors ([`glassbox_diagnose`]); recorded changes
//! (deploys, rollbacks, device registry changes, shadow and command
//! batches) and the observed dependencies (which devices' events trigger
//! which functions) feed its cause ranking. A new anomaly is recorded as an
//! `anomaly.detected` event (so a function can react) and posted to the
//! configured webhook; its end as `anomaly.resolved`.
//!
//! Owns the live `Watch`, what counts as a change (`changes.rs`) and the
//! `[diagnose]` configuration ([`WatchSettings`]). The engine itself (pure,
//! on the caller's clock) is `glassbox_diagnose`; the buckets come from
//! `glassbox_series` through its `ClosedBuckets` trait. Must not read the
//! metric store or serve HTTP: the API asks the `Watch`.

pub mod answer;
mod changes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use glassbox_core::{ANOMALY_DETECTED, ANOMALY_RESOLVED, Anomaly, AnomalySeries, AnomalySubject, Draft};
use glassbox_diagnose::{Alert, Diagnosis, Engine, Episode, SeriesSpec, Subject};
use glassbox_store::metrics::FINE_STEP_SECONDS;

use changes::{Batches, Noted};
use glassbox_pipeline::Pipeline;
use glassbox_series::Closed;
use glassbox_series::catalog as m;
use serde::{Deserialize, Serialize};

/// A function's mean latency moving by less than this (ms) is not an
/// anomaly: wall time measured on a busy host wobbles by tens of
/// microseconds with scheduling alone, so a 5 µs function "doubling" to
/// 10 µs is noise, while the same function taking 2 ms is not.
const LATENCY_RESOLUTION_MS: f64 = 0.1;

/// Webhook posts waiting; beyond this alerts are not posted (still recorded).
const WEBHOOK_QUEUE_MAX: usize = 256;

/// `[diagnose]`: anomaly detection on the derived metrics: detector
/// settings and where alerts go.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchSettings {
    /// 10-second points each series learns before it may raise an alert.
    /// Default 90 (15 minutes).
    pub warmup_points: u32,
    /// URL each new and ended anomaly is POSTed to as JSON. Secret (it
    /// often holds a token): `config.changed` records only that it changed.
    /// Default none.
    pub webhook: String,
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self { warmup_points: 90, webhook: String::new() }
    }
}

/// What a watched series' point is made of its bucket.
#[derive(Clone, Copy, PartialEq)]
enum Reading {
    /// The samples' sum (a count, bytes, cost); an empty bucket is 0.
    Total,
    /// The samples' mean (a latency); an empty bucket is no point.
    Mean,
    /// The samples' sum while there are any: a device's message rate while
    /// it reports. An empty bucket is no point, because a device that stops
    /// is liveness's to judge (it knows the cadence and the connection);
    /// counting a sleeping or unplugged device's buckets as zeros would
    /// teach the rate detector that zero is normal, then alarm at its return.
    Reported,
}

impl Reading {
    /// The point of a bucket holding `found` (sum, count), if any.
    fn of(self, found: Option<&(f64, u64)>) -> Option<f64> {
        match (self, found) {
            (Reading::Mean, Some((sum, count))) => Some(sum / (*count).max(1) as f64),
            (Reading::Total | Reading::Reported, Some((sum, _))) => Some(*sum),
            (Reading::Total, None) => Some(0.0),
            (Reading::Mean | Reading::Reported, None) => None,
        }
    }
}

/// The detectors' side, behind one lock: the engine, the series it has
/// seen with how to read them, and the last bucket fed to it.
struct Detectors {
    engine: Engine,
    known: HashMap<String, (SeriesSpec, Reading)>,
    fed_through: Option<i64>,
}

pub struct Watch {
    detectors: Mutex<Detectors>,
    pipeline: Weak<Pipeline>,
    webhook: Option<tokio::sync::mpsc::Sender<WebhookAlert>>,
}

impl Watch {
    pub fn start(settings: &WatchSettings, pipeline: &Arc<Pipeline>) -> anyhow::Result<Arc<Self>> {
        let detector = glassbox_anomaly::Settings {
            warmup_points: settings.warmup_points,
            // A gap in a series is never an alert here: counted series have
            // a point every bucket, a latency has none without invocations,
            // and a device's silence is liveness's to flag.
            silence_intervals_min: f64::INFINITY,
            ..glassbox_anomaly::Settings::default()
        };
        let engine = Engine::new(detector)
            .map_err(|e| anyhow::anyhow!("diagnose.warmup_points: {e}"))?
            .with_point_seconds(FINE_STEP_SECONDS as f64);
        let webhook = match settings.webhook.as_str() {
            "" => None,
            url => {
                let (tx, rx) = tokio::sync::mpsc::channel(WEBHOOK_QUEUE_MAX);
                tokio::spawn(post_loop(url.to_string(), rx));
                Some(tx)
            }
        };
        let watch = Arc::new(Self {
            detectors: Mutex::new(Detectors { engine, known: HashMap::new(), fed_through: None }),
            pipeline: Arc::downgrade(pipeline),
            webhook,
        });
        tokio::spawn(changes_loop(Arc::downgrade(&watch), pipeline.consumer("diagnosis")));
        Ok(watch)
    }
}

#[async_trait::async_trait]
impl glassbox_series::ClosedBuckets for Watch {
    /// Feeds the detectors every bucket up to `through` (inclusive): the
    /// closed points, and zero for counted series that had none.
    async fn closed(&self, closed: &[Closed], through: i64) {
        let alerts = self.feed(closed, through);
        for alert in alerts {
            self.alert(alert).await;
        }
    }
}

impl Watch {
    fn feed(&self, closed: &[Closed], through: i64) -> Vec<Alert> {
        let Ok(mut detectors) = self.detectors.lock() else { return Vec::new() };
        let Detectors { engine, known, fed_through } = &mut *detectors;
        // Sum each bucket's points per watched series.
        let mut buckets: HashMap<i64, HashMap<String, (f64, u64)>> = HashMap::new();
        for c in closed {
            let Some((spec, reading, value)) = watched(c) else { continue };
            known.entry(spec.key.clone()).or_insert((spec.clone(), reading));
            let slot = buckets.entry(c.point.at).or_default().entry(spec.key).or_insert((0.0, 0));
            slot.0 += value;
            slot.1 += c.point.count;
        }
        let mut alerts = Vec::new();
        // Buckets from before the last feed (late, or history): as they are.
        let fed_before = fed_through.unwrap_or(i64::MIN);
        let mut late: Vec<(i64, &String, &(f64, u64))> = buckets
            .iter()
            .filter(|(at, _)| **at <= fed_before)
            .flat_map(|(at, b)| b.iter().map(|(k, v)| (*at, k, v)))
            .collect();
        late.sort_by_key(|(at, _, _)| *at);
        for (at, key, found) in late {
            if let Some((spec, reading)) = known.get(key)
                && let Some(v) = reading.of(Some(found))
            {
                alerts.extend(engine.observe(spec, at as f64, v));
            }
        }
        // Every bucket since: zero where a counted series had nothing.
        let mut at = match *fed_through {
            Some(last) => last + FINE_STEP_SECONDS,
            None => buckets.keys().copied().min().unwrap_or(through).min(through),
        };
        while at <= through {
            let bucket = buckets.get(&at);
            for (key, (spec, reading)) in known.iter() {
                if let Some(v) = reading.of(bucket.and_then(|b| b.get(key))) {
                    alerts.extend(engine.observe(spec, at as f64, v));
                }
            }
            at += FINE_STEP_SECONDS;
        }
        *fed_through = Some(through.max(fed_before));
        alerts
    }

    async fn alert(&self, alert: Alert) {
        let (ty, episode) = match &alert {
            Alert::Started(e) => (ANOMALY_DETECTED, e),
            Alert::Ended(e) => (ANOMALY_RESOLVED, e),
        };
        let anomaly = anomaly_of(episode);
        tracing::warn!(series = %episode.series.key, signal = %episode.signal, score = episode.peak_score, "{ty}");
        if let Some(pipeline) = self.pipeline.upgrade() {
            let draft =
                Draft { subject: Some(episode.series.key.clone()), ..Draft::json("glassbox/diagnose", ty, &anomaly) };
            if let Err(e) = pipeline.ingest(vec![draft], "platform").await {
                tracing::error!(error = %e, "could not record an anomaly");
            }
        }
        if let Some(webhook) = &self.webhook
            && webhook.try_send(WebhookAlert { ty, anomaly }).is_err()
        {
            tracing::warn!("the anomaly webhook is behind; this alert is not posted (it is recorded)");
        }
    }

    /// Applies what the stream noted to the engine; returns an alert a
    /// silence raised or cleared.
    fn apply(&self, noted: Noted) -> Option<Alert> {
        let engine = &mut self.detectors.lock().ok()?.engine;
        match noted {
            Noted::Change(change) => engine.change(change),
            Noted::Depends(a, b) => engine.relate(a, b),
            Noted::Silent(spec, at, reason) => return engine.flag(&spec, at, "silence", reason),
            Noted::Active(key, at) => return engine.clear(&key, at),
        }
        None
    }

    /// The diagnosis of [since, now], about one subject when given.
    pub fn diagnose(&self, since: DateTime<Utc>, now: DateTime<Utc>, scope: Option<&Subject>) -> Option<Diagnosis> {
        let engine = &self.detectors.lock().ok()?.engine;
        Some(engine.diagnose(seconds(since), seconds(now), scope))
    }

    /// Episodes overlapping [since, now]; only the open ones when `active`.
    pub fn episodes(&self, since: DateTime<Utc>, now: DateTime<Utc>, active: bool) -> Vec<Episode> {
        let Ok(detectors) = self.detectors.lock() else { return Vec::new() };
        let engine = &detectors.engine;
        let found = engine.episodes(seconds(since), seconds(now), None);
        found.into_iter().filter(|e| !active || e.end.is_none()).cloned().collect()
    }
}

fn seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_micros() as f64 / 1e6
}

/// The watched series a closed bucket belongs to, how its points are
/// read, and the bucket's value for it.
fn watched(c: &Closed) -> Option<(SeriesSpec, Reading, f64)> {
    let label = |i: usize| c.labels.get(i).cloned().unwrap_or_default();
    let function = || Subject::Function(label(0));
    let p = &c.point;
    let (key, what, unit, subject, reading, value) = match c.metric.name {
        n if n == m::FUNCTION_DURATION.name => {
            (format!("{n}{{function=\"{}\"}}", label(0)), "latency", "ms", function(), Reading::Mean, p.sum)
        }
        n if n == m::FUNCTION_INVOCATIONS.name => (
            format!("{n}{{function=\"{}\"}}", label(0)),
            "invocations",
            "/10s",
            function(),
            Reading::Total,
            p.count as f64,
        ),
        n if n == m::FUNCTION_ERRORS.name => {
            (p.series.clone(), "errors", "/10s", function(), Reading::Total, p.count as f64)
        }
        n if n == m::FUNCTION_DEAD_LETTERS.name => {
            (p.series.clone(), "dead letters", "/10s", function(), Reading::Total, p.count as f64)
        }
        n if n == m::FUNCTION_COST.name => (p.series.clone(), "cost", "/10s", function(), Reading::Total, p.sum),
        n if n == m::FUNCTION_EGRESS.name => {
            let key = format!("{n}{{function=\"{}\"}}", label(0));
            (key, "outbound requests", "/10s", function(), Reading::Total, p.count as f64)
        }
        n if n == m::DEVICE_MESSAGES.name => {
            (p.series.clone(), "message rate", "/10s", Subject::Device(label(0)), Reading::Reported, p.count as f64)
        }
        n if n == m::DROPS.name => {
            (p.series.clone(), "drops", "/10s", Subject::Platform, Reading::Total, p.count as f64)
        }
        n if n == m::MQTT_DISCONNECTS.name => {
            (format!("{n}{{}}"), "disconnections", "/10s", Subject::Platform, Reading::Total, p.count as f64)
        }
        n if n == m::MQTT_CONNECTS.name => {
            (p.series.clone(), "connections", "/10s", Subject::Platform, Reading::Total, p.count as f64)
        }
        _ => return None,
    };
    // Counts are judged with their Poisson noise; a sum (a cost) as a count
    // of occurrences each worth what one was worth when the series was
    // first seen (a function's cost per invocation barely moves).
    let count_unit = match c.metric.kind {
        m::Kind::Count => 1.0,
        m::Kind::Sum if p.count > 0 => p.sum / p.count as f64,
        _ => 0.0,
    };
    let resolution = if c.metric.name == m::FUNCTION_DURATION.name { LATENCY_RESOLUTION_MS } else { 0.0 };
    let spec = SeriesSpec { key, what: what.into(), unit: unit.into(), subject, count_unit, resolution };
    Some((spec, reading, value))
}

/// What the webhook is POSTed: the anomaly event's data and its type.
#[derive(serde::Serialize)]
struct WebhookAlert {
    #[serde(rename = "type")]
    ty: &'static str,
    #[serde(flatten)]
    anomaly: Anomaly,
}

/// An episode as its `anomaly.*` event records it: times in RFC 3339, and in words.
fn anomaly_of(e: &Episode) -> Anomaly {
    let series = AnomalySeries {
        key: e.series.key.clone(),
        what: e.series.what.clone(),
        unit: e.series.unit.clone(),
        subject: match &e.series.subject {
            Subject::Function(name) => AnomalySubject::Function(name.clone()),
            Subject::Device(id) => AnomalySubject::Device(id.clone()),
            Subject::Group(name) => AnomalySubject::Group(name.clone()),
            Subject::Platform => AnomalySubject::Platform,
        },
    };
    Anomaly {
        id: e.id,
        series,
        signal: e.signal.clone(),
        start: time_of(e.start),
        peak: time_of(e.peak),
        peak_score: e.peak_score,
        end: e.end.map(time_of),
        value: e.value,
        expected: e.expected,
        detail: e.detail.clone(),
        words: glassbox_diagnose::words_of(e),
    }
}

/// The engine's second count as a time, to the microsecond.
fn time_of(secs: f64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros((secs * 1e6).round() as i64).unwrap_or_default()
}

async fn changes_loop(watch: Weak<Watch>, mut events: glassbox_bus::Consumer) {
    let mut batches = Batches::default();
    while let Some(batch) = events.next().await {
        let Some(watch) = watch.upgrade() else { return };
        if let Some(glassbox_bus::Unread { skipped, error, .. }) = batch.unread {
            tracing::warn!(skipped, %error, "diagnosis could not read skipped events back; changes among them are not ranked");
        }
        for recorded in batch.events {
            for noted in changes::note(&recorded, &mut batches) {
                if let Some(alert) = watch.apply(noted) {
                    watch.alert(alert).await;
                }
            }
        }
    }
}

async fn post_loop(url: String, mut alerts: tokio::sync::mpsc::Receiver<WebhookAlert>) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
    while let Some(alert) = alerts.recv().await {
        match client.post(&url).json(&alert).send().await.map(|r| r.status()) {
            Ok(status) if status.is_success() => {}
            outcome => {
                let why = outcome.map_or_else(|e| e.to_string(), |s| format!("HTTP {s}"));
                tracing::warn!(url = %url, error = %why, "could not post an anomaly to the webhook (it is recorded)");
            }
        }
    }
}
