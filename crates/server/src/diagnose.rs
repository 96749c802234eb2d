//! The platform watching itself, live: closed metric buckets feed the
//! diagnosis engine's detectors ([`glassbox_diagnose`]); recorded changes
//! (deploys, rollbacks, device registry changes, shadow and command
//! batches) and the observed dependencies (which devices' events trigger
//! which functions) feed its cause ranking. A new anomaly is recorded as an
//! `anomaly.detected` event (so a function can react) and posted to the
//! configured webhook; its end as `anomaly.resolved`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use glassbox_bus::BusItem;
use glassbox_core::{Draft, RecordedEvent};
use glassbox_diagnose::{Alert, Change, Diagnosis, Engine, Episode, SeriesSpec, Subject};
use glassbox_store::metrics::FINE_STEP_SECONDS;
use serde_json::{Value, json};

use crate::pipeline::Pipeline;
use crate::series::catalog::{self as m, Kind};
use crate::series::{Closed, derive::NONE};

/// Shadow and command events closer than this are one batch (one change).
const BATCH_SECONDS: f64 = 60.0;
/// Webhook posts waiting; beyond this alerts are not posted (still recorded).
const WEBHOOK_QUEUE_MAX: usize = 256;

/// How the diagnosis watches: detector settings and where alerts go.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    /// Points (10 s buckets) each series learns before it may alert.
    pub warmup_points: u32,
    /// URL that each new and ended anomaly is POSTed to as JSON; empty: none.
    pub webhook: String,
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self { warmup_points: 90, webhook: String::new() }
    }
}

/// How a watched series fills a bucket without samples.
#[derive(Clone, Copy, PartialEq)]
enum Fill {
    /// Nothing happened: 0.
    Zero,
    /// No measurement: no point.
    Skip,
}

struct Known {
    spec: SeriesSpec,
    fill: Fill,
}

/// A batch of shadow or command changes being gathered.
struct Batch {
    kind: &'static str,
    first: f64,
    count: usize,
    devices: HashSet<String>,
    event_id: String,
}

pub struct Watch {
    engine: Mutex<Engine>,
    known: Mutex<HashMap<String, Known>>,
    /// The last bucket fed to the detectors.
    fed_through: Mutex<Option<i64>>,
    batches: Mutex<Vec<Batch>>,
    pipeline: Weak<Pipeline>,
    webhook: Option<tokio::sync::mpsc::Sender<Value>>,
}

impl Watch {
    pub fn start(settings: &WatchSettings, pipeline: &Arc<Pipeline>) -> anyhow::Result<Arc<Self>> {
        let detector = glassbox_anomaly::Settings {
            warmup_points: settings.warmup_points,
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
            engine: Mutex::new(engine),
            known: Mutex::default(),
            fed_through: Mutex::default(),
            batches: Mutex::default(),
            pipeline: Arc::downgrade(pipeline),
            webhook,
        });
        tokio::spawn(changes_loop(Arc::downgrade(&watch), pipeline.bus().subscribe()));
        Ok(watch)
    }

    /// Feeds the detectors every bucket up to `through` (inclusive): the
    /// closed points, and zero for counted series that had none.
    pub async fn closed(&self, closed: &[Closed], through: i64) {
        let alerts = self.feed(closed, through);
        for alert in alerts {
            self.alert(alert).await;
        }
    }

    fn feed(&self, closed: &[Closed], through: i64) -> Vec<Alert> {
        let (Ok(mut engine), Ok(mut known), Ok(mut fed)) =
            (self.engine.lock(), self.known.lock(), self.fed_through.lock())
        else {
            return Vec::new();
        };
        // Sum each bucket's points per watched series.
        let mut buckets: HashMap<i64, HashMap<String, (f64, u64)>> = HashMap::new();
        for c in closed {
            let Some((spec, fill, value)) = watched(c) else { continue };
            known.entry(spec.key.clone()).or_insert(Known { spec: spec.clone(), fill });
            let slot = buckets.entry(c.point.at).or_default().entry(spec.key).or_insert((0.0, 0));
            slot.0 += value;
            slot.1 += c.point.count;
        }
        let value = |k: &Known, found: Option<&(f64, u64)>| match (found, k.fill) {
            (Some((sum, count)), _) if k.spec.unit == "ms" => Some(sum / (*count).max(1) as f64),
            (Some((sum, _)), _) => Some(*sum),
            (None, Fill::Zero) => Some(0.0),
            (None, Fill::Skip) => None,
        };
        let mut alerts = Vec::new();
        // Buckets from before the last feed (late, or history): as they are.
        let fed_before = fed.unwrap_or(i64::MIN);
        let mut late: Vec<(i64, &String, &(f64, u64))> = buckets
            .iter()
            .filter(|(at, _)| **at <= fed_before)
            .flat_map(|(at, b)| b.iter().map(|(k, v)| (*at, k, v)))
            .collect();
        late.sort_by_key(|(at, _, _)| *at);
        for (at, key, found) in late {
            if let Some(k) = known.get(key)
                && let Some(v) = value(k, Some(found))
            {
                alerts.extend(engine.observe(&k.spec, at as f64, v));
            }
        }
        // Every bucket since: zero where a counted series had nothing.
        let mut at = match *fed {
            Some(last) => last + FINE_STEP_SECONDS,
            None => buckets.keys().copied().min().unwrap_or(through).min(through),
        };
        while at <= through {
            let bucket = buckets.get(&at);
            for (key, k) in known.iter() {
                if let Some(v) = value(k, bucket.and_then(|b| b.get(key))) {
                    alerts.extend(engine.observe(&k.spec, at as f64, v));
                }
            }
            at += FINE_STEP_SECONDS;
        }
        *fed = Some(through.max(fed_before));
        alerts
    }

    async fn alert(&self, alert: Alert) {
        let (ty, episode) = match &alert {
            Alert::Started(e) => ("anomaly.detected", e),
            Alert::Ended(e) => ("anomaly.resolved", e),
        };
        let mut body = episode_json(episode);
        body["words"] = json!(glassbox_diagnose::words_of(episode));
        tracing::warn!(series = %episode.series.key, signal = %episode.signal, score = episode.peak_score, "{ty}");
        if let Some(pipeline) = self.pipeline.upgrade() {
            let draft =
                Draft { subject: Some(episode.series.key.clone()), ..Draft::json("glassbox/diagnose", ty, &body) };
            if let Err(e) = pipeline.ingest(vec![draft], "platform").await {
                tracing::error!(error = %e, "could not record an anomaly");
            }
        }
        if let Some(webhook) = &self.webhook {
            body["type"] = json!(ty);
            if webhook.try_send(body).is_err() {
                tracing::warn!("the anomaly webhook is behind; this alert is not posted (it is recorded)");
            }
        }
    }

    /// Notes a recorded event: a change, a dependency, or a silence the
    /// liveness detector found; returns the alert that raises.
    fn saw(&self, recorded: &RecordedEvent) -> Option<Alert> {
        let event = &recorded.event;
        let at = recorded.states.first().map_or(event.time, |s| s.at).timestamp_micros() as f64 / 1e6;
        if !event.ty.starts_with("device.") && !event.ty.starts_with("function.") && event.ty != "config.changed" {
            return self
                .batch_due(at)
                .and_then(|change| self.engine.lock().ok().map(|mut e| e.change(change)))
                .and(None);
        }
        // Only the platform's own change events are parsed, never device payloads.
        let data = match event.ty.as_str() {
            "device.message" => Value::Null,
            _ => event.data.json().unwrap_or(Value::Null),
        };
        let text = |key: &str| data[key].as_str().unwrap_or(NONE).to_string();
        let id = Some(event.id.to_string());
        let device = || Subject::Device(event.device.clone().unwrap_or_default());
        let liveness = || SeriesSpec {
            key: format!("device_liveness{{device=\"{}\"}}", event.device.as_deref().unwrap_or_default()),
            what: "liveness".into(),
            unit: String::new(),
            subject: device(),
        };
        let change = match event.ty.as_str() {
            "device.silent" => return self.engine.lock().ok()?.flag(&liveness(), at, "silence"),
            "device.active" => return self.engine.lock().ok()?.clear(&liveness().key, at),
            "config.changed" => Some(Change {
                at,
                kind: "config".into(),
                subject: Subject::Platform,
                summary: format!(
                    "configuration change ({})",
                    data["changed"].as_array().map_or(String::new(), |keys| {
                        keys.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")
                    })
                ),
                event_id: id,
            }),
            "function.invoked" => {
                if let (Some(device), Some(function)) = (&event.device, data["function"].as_str())
                    && let Ok(mut engine) = self.engine.lock()
                {
                    engine.relate(Subject::Device(device.clone()), Subject::Function(function.into()));
                }
                None
            }
            "function.deployed" => Some(Change {
                at,
                kind: "deploy".into(),
                subject: Subject::Function(text("function")),
                summary: format!(
                    "deploy of {} v{} ({}) by {}",
                    text("function"),
                    data["version"],
                    short_digest(&text("digest")),
                    text("by")
                ),
                event_id: id,
            }),
            "function.rolled_back" => Some(Change {
                at,
                kind: "rollback".into(),
                subject: Subject::Function(text("function")),
                summary: format!(
                    "rollback of {} from v{} to v{} by {}",
                    text("function"),
                    data["from"],
                    data["to"],
                    text("by")
                ),
                event_id: id,
            }),
            ty @ ("device.registered"
            | "device.updated"
            | "device.disabled"
            | "device.enabled"
            | "device.deleted"
            | "device.secret_rotated") => {
                let what = ty.trim_start_matches("device.").replace('_', " ");
                Some(Change {
                    at,
                    kind: format!("device_{}", ty.trim_start_matches("device.")),
                    subject: device(),
                    summary: format!("device {} {what}", event.device.as_deref().unwrap_or("?")),
                    event_id: id,
                })
            }
            "device.shadow.updated" if !data["state"]["desired"].is_null() => {
                self.batch("shadow_batch", at, event.device.as_deref(), &event.id.to_string())
            }
            "device.command.queued" => self.batch("command_batch", at, event.device.as_deref(), &event.id.to_string()),
            _ => self.batch_due(at),
        };
        if let (Some(change), Ok(mut engine)) = (change, self.engine.lock()) {
            engine.change(change);
        }
        None
    }

    /// Gathers shadow/command events into one change per minute of them;
    /// returns a finished batch.
    fn batch(&self, kind: &'static str, at: f64, device: Option<&str>, event_id: &str) -> Option<Change> {
        let done = self.batch_due(at);
        let Ok(mut batches) = self.batches.lock() else { return done };
        match batches.iter_mut().find(|b| b.kind == kind) {
            Some(b) => {
                b.count += 1;
                b.devices.extend(device.map(str::to_string));
            }
            None => batches.push(Batch {
                kind,
                first: at,
                count: 1,
                devices: device.map(str::to_string).into_iter().collect(),
                event_id: event_id.to_string(),
            }),
        }
        done
    }

    fn batch_due(&self, now: f64) -> Option<Change> {
        let mut batches = self.batches.lock().ok()?;
        let due = batches.iter().position(|b| now - b.first >= BATCH_SECONDS)?;
        let b = batches.remove(due);
        let subject = match b.devices.len() {
            1 => Subject::Device(b.devices.into_iter().next().unwrap_or_default()),
            _ => Subject::Platform,
        };
        let what = if b.kind == "shadow_batch" { "desired-state update" } else { "command" };
        let summary = format!("{} {what}{} sent to {subject}", b.count, if b.count == 1 { "" } else { "s" });
        Some(Change { at: b.first, kind: b.kind.into(), subject, summary, event_id: Some(b.event_id) })
    }

    /// The diagnosis of [since, now], about one subject when given.
    pub fn diagnose(&self, since: DateTime<Utc>, now: DateTime<Utc>, scope: Option<&Subject>) -> Option<Diagnosis> {
        let engine = self.engine.lock().ok()?;
        Some(engine.diagnose(seconds(since), seconds(now), scope))
    }

    /// Episodes overlapping [since, now]; only the open ones when `active`.
    pub fn episodes(&self, since: DateTime<Utc>, now: DateTime<Utc>, active: bool) -> Vec<Episode> {
        let Ok(engine) = self.engine.lock() else { return Vec::new() };
        let found = engine.episodes(seconds(since), seconds(now), None);
        found.into_iter().filter(|e| !active || e.end.is_none()).cloned().collect()
    }
}

fn seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_micros() as f64 / 1e6
}

fn short_digest(digest: &str) -> String {
    digest.chars().take(19).collect()
}

/// The watched series a closed bucket belongs to, how it fills empty
/// buckets, and the bucket's value for it.
fn watched(c: &Closed) -> Option<(SeriesSpec, Fill, f64)> {
    let label = |i: usize| c.labels.get(i).cloned().unwrap_or_default();
    let function = || Subject::Function(label(0));
    let p = &c.point;
    let (key, what, unit, subject, fill, value) = match c.metric.name {
        n if n == m::FUNCTION_DURATION.name => {
            (format!("{n}{{function=\"{}\"}}", label(0)), "latency", "ms", function(), Fill::Skip, p.sum)
        }
        n if n == m::FUNCTION_INVOCATIONS.name => {
            (format!("{n}{{function=\"{}\"}}", label(0)), "invocations", "/10s", function(), Fill::Zero, p.count as f64)
        }
        n if n == m::FUNCTION_ERRORS.name => {
            (p.series.clone(), "errors", "/10s", function(), Fill::Zero, p.count as f64)
        }
        n if n == m::FUNCTION_DEAD_LETTERS.name => {
            (p.series.clone(), "dead letters", "/10s", function(), Fill::Zero, p.count as f64)
        }
        n if n == m::FUNCTION_COST.name => (p.series.clone(), "cost", "/10s", function(), Fill::Zero, p.sum),
        n if n == m::FUNCTION_EGRESS.name => {
            let key = format!("{n}{{function=\"{}\"}}", label(0));
            (key, "outbound requests", "/10s", function(), Fill::Zero, p.count as f64)
        }
        n if n == m::DEVICE_MESSAGES.name => {
            (p.series.clone(), "message rate", "/10s", Subject::Device(label(0)), Fill::Zero, p.count as f64)
        }
        n if n == m::DROPS.name => (p.series.clone(), "drops", "/10s", Subject::Platform, Fill::Zero, p.count as f64),
        n if n == m::MQTT_DISCONNECTS.name => {
            (format!("{n}{{}}"), "disconnections", "/10s", Subject::Platform, Fill::Zero, p.count as f64)
        }
        n if n == m::MQTT_CONNECTS.name => {
            (p.series.clone(), "connections", "/10s", Subject::Platform, Fill::Zero, p.count as f64)
        }
        _ => return None,
    };
    debug_assert!(c.metric.kind != Kind::Distribution || unit == "ms");
    Some((SeriesSpec { key, what: what.into(), unit: unit.into(), subject }, fill, value))
}

/// An episode as the API shows it: times in RFC 3339.
pub fn episode_json(e: &Episode) -> Value {
    let mut value = json!(e);
    rfc3339_times(&mut value);
    value
}

/// Turns the engine's second-count times into RFC 3339, in place.
pub fn rfc3339_times(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match (key.as_str(), v.as_f64()) {
                    ("now" | "since" | "start" | "end" | "peak" | "at", Some(secs)) => {
                        let micros = (secs * 1e6).round() as i64;
                        *v = json!(DateTime::<Utc>::from_timestamp_micros(micros));
                    }
                    _ => rfc3339_times(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rfc3339_times),
        _ => {}
    }
}

async fn changes_loop(watch: Weak<Watch>, events: glassbox_bus::Subscription) {
    // Whatever is ready at once is handled in one wake-up.
    let mut batches = events.ready_chunks(256);
    while let Some(batch) = batches.next().await {
        let Some(watch) = watch.upgrade() else { return };
        for item in batch {
            match item {
                BusItem::Event(recorded) => {
                    if let Some(alert) = watch.saw(&recorded) {
                        watch.alert(alert).await;
                    }
                }
                BusItem::Lagged(skipped) => tracing::warn!(
                    skipped,
                    "diagnosis fell behind the event stream; changes among the skipped are not ranked"
                ),
            }
        }
    }
}

async fn post_loop(url: String, mut alerts: tokio::sync::mpsc::Receiver<Value>) {
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
