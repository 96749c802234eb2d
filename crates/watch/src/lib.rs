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
pub mod triage;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use glassbox_core::{
    ANOMALY_DETECTED, ANOMALY_RESOLVED, Anomaly, AnomalySeries, AnomalySubject, DIAGNOSE_SILENCED, Draft, EventQuery,
    INCIDENT_ACKNOWLEDGED, INCIDENT_RESOLVED, IncidentAcknowledged, IncidentNote, IncidentResolved, Principal,
    Silenced, TypePattern,
};
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
    /// What operators said about incidents and subjects.
    triage: Mutex<triage::Triage>,
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
            triage: Mutex::default(),
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
        let mut anomaly = anomaly_of(episode);
        anomaly.silenced_until = self.silenced(&anomaly.series.subject, Utc::now());
        tracing::warn!(series = %episode.series.key, signal = %episode.signal, score = episode.peak_score, "{ty}");
        if let Some(pipeline) = self.pipeline.upgrade() {
            let draft =
                Draft { subject: Some(episode.series.key.clone()), ..Draft::json("glassbox/diagnose", ty, &anomaly) };
            if let Err(e) = pipeline.ingest(vec![draft], "platform").await {
                tracing::error!(error = %e, "could not record an anomaly");
            }
        }
        if anomaly.silenced_until.is_some() {
            return tracing::info!(series = %episode.series.key, "{ty}: its subject is silenced, no alert is posted");
        }
        let data = serde_json::to_value(&anomaly).unwrap_or_default();
        self.post(WebhookAlert { ty, data });
    }

    /// Hands an alert to the webhook's poster, if a webhook is set; one
    /// that finds the poster behind is not posted (it is recorded).
    fn post(&self, alert: WebhookAlert) {
        if let Some(webhook) = &self.webhook
            && webhook.try_send(alert).is_err()
        {
            tracing::warn!("the webhook is behind; this alert is not posted (it is recorded)");
        }
    }

    /// Posts a budget's threshold reached (`budget.threshold_reached`,
    /// recorded by the function dispatcher) to the webhook, as its own type.
    fn budget_alert(&self, recorded: &glassbox_core::RecordedEvent) {
        if recorded.event.ty != glassbox_core::BUDGET_THRESHOLD_REACHED {
            return;
        }
        match recorded.payload::<glassbox_core::ThresholdReached>() {
            Ok(reached) => {
                let data = serde_json::to_value(&reached).unwrap_or_default();
                self.post(WebhookAlert { ty: glassbox_core::BUDGET_THRESHOLD_REACHED, data });
            }
            Err(e) => tracing::warn!(error = %e, "a budget threshold record could not be read; it is not posted"),
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

/// Why a triage was refused.
#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    #[error("no incident {0} in the last 24 h; `glassbox diagnose --since 24h` lists them")]
    UnknownIncident(u64),
    #[error("{0}")]
    Invalid(String),
    #[error("the anomaly detectors' lock is poisoned")]
    Poisoned,
    #[error(transparent)]
    Store(#[from] glassbox_store::StoreError),
}

/// Longest silence: a maintenance window, not a way to turn alerts off.
pub const SILENCE_MAX: Duration = Duration::from_secs(30 * 24 * 3600);
/// How far back an incident can be acknowledged or resolved.
const TRIAGE_WINDOW: Duration = Duration::from_secs(24 * 3600);

impl Watch {
    /// Notes, as `by`, that someone is on incident `id` (or, `kind`
    /// resolved, that it is dealt with); recorded as an event.
    pub async fn triage_incident(
        &self,
        kind: triage::Saying,
        id: u64,
        note: Option<String>,
        by: &Principal,
    ) -> Result<triage::IncidentState, TriageError> {
        let now = Utc::now();
        let since = now - chrono::TimeDelta::from_std(TRIAGE_WINDOW).unwrap_or_default();
        let diagnosis = self.diagnose(since, now, None).ok_or(TriageError::Poisoned)?;
        let incident = diagnosis.incidents.iter().find(|i| i.id == id).ok_or(TriageError::UnknownIncident(id))?;
        let note = IncidentNote { incident: id, incident_start: time_of(incident.start), note, principal: by.clone() };
        let draft = match kind {
            triage::Saying::Acknowledged => Draft::payload(SOURCE, &IncidentAcknowledged(note.clone())),
            triage::Saying::Resolved => Draft::payload(SOURCE, &IncidentResolved(note.clone())),
        };
        let at = self.record(draft).await?;
        let mut triage = self.triage.lock().map_err(|_| TriageError::Poisoned)?;
        triage.note(kind, note.clone(), at);
        Ok(triage.incident(id, note.incident_start))
    }

    /// Silences `subject`'s alerts for `length` as `by` (zero ends a
    /// silence now); recorded as an event.
    pub async fn silence(
        &self,
        subject: AnomalySubject,
        length: Duration,
        note: Option<String>,
        by: &Principal,
    ) -> Result<Silenced, TriageError> {
        if length > SILENCE_MAX {
            return Err(TriageError::Invalid("a silence lasts at most 30 days".into()));
        }
        let now = Utc::now();
        let until = now + chrono::TimeDelta::from_std(length).unwrap_or_default();
        let silenced = Silenced { subject, until, note, principal: by.clone() };
        let draft = Draft { subject: Some(silenced.subject.to_string()), ..Draft::payload(SOURCE, &silenced) };
        // Checked before it is recorded, so a refused silence leaves no record.
        {
            let mut triage = self.triage.lock().map_err(|_| TriageError::Poisoned)?;
            triage.silence(silenced.clone(), now, now).map_err(TriageError::Invalid)?;
        }
        let at = self.record(draft).await?;
        let mut triage = self.triage.lock().map_err(|_| TriageError::Poisoned)?;
        triage.silence(silenced.clone(), at, now).map_err(TriageError::Invalid)?;
        Ok(silenced)
    }

    /// The silences in force now.
    pub fn silences(&self) -> Vec<Silenced> {
        self.triage.lock().map(|t| t.silences(Utc::now())).unwrap_or_default()
    }

    /// What was said about incident `id` that started at `start`.
    pub fn incident_state(&self, id: u64, start: DateTime<Utc>) -> triage::IncidentState {
        self.triage.lock().map(|t| t.incident(id, start)).unwrap_or_default()
    }

    /// Until when `subject` is silenced, at `now`.
    pub fn silenced(&self, subject: &AnomalySubject, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.triage.lock().ok()?.silenced(subject, now).map(|s| s.until)
    }

    /// The silence on `subject` in force now.
    pub fn silence_on(&self, subject: &AnomalySubject) -> Option<Silenced> {
        self.triage.lock().ok()?.silenced(subject, Utc::now()).cloned()
    }

    /// Rebuilds what operators said (acknowledgements, resolutions,
    /// silences of the last 31 days) from the record; the server calls it
    /// once at start, before it serves.
    pub async fn recall_triage(&self) {
        let Some(pipeline) = self.pipeline.upgrade() else { return };
        let since = Utc::now() - chrono::TimeDelta::days(31);
        for ty in [INCIDENT_ACKNOWLEDGED, INCIDENT_RESOLVED, DIAGNOSE_SILENCED] {
            let query = EventQuery {
                ty: Some(TypePattern::parse(ty)),
                source: Some(SOURCE.into()),
                since: Some(since),
                limit: RECALLED_MAX,
                ..EventQuery::default()
            };
            let found = match pipeline.store().query(&query).await {
                Ok(page) => page.events,
                Err(e) => return tracing::error!(error = %e, "could not read back acknowledged incidents and silences"),
            };
            let Ok(mut triage) = self.triage.lock() else { return };
            for recorded in found.iter().rev() {
                let at = recorded.event.time;
                let _ = match ty {
                    INCIDENT_ACKNOWLEDGED => recorded
                        .payload()
                        .map(|IncidentAcknowledged(note)| triage.note(triage::Saying::Acknowledged, note, at)),
                    INCIDENT_RESOLVED => {
                        recorded.payload().map(|IncidentResolved(note)| triage.note(triage::Saying::Resolved, note, at))
                    }
                    _ => recorded.payload::<Silenced>().map(|s| drop(triage.silence(s, at, Utc::now()))),
                };
            }
        }
    }

    /// Records `draft`; its time.
    async fn record(&self, draft: Draft) -> Result<DateTime<Utc>, TriageError> {
        let pipeline = self.pipeline.upgrade().ok_or(TriageError::Invalid("the server is stopping".into()))?;
        pipeline.ingest_platform(vec![draft], "api").await?;
        Ok(Utc::now())
    }
}

/// Where triage events come from.
const SOURCE: &str = "glassbox/diagnose";
/// Triage events of each kind read back at start at most.
const RECALLED_MAX: usize = 1_000;

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

/// What the webhook is POSTed: the event's type and its data (an
/// anomaly's, or a budget threshold's).
#[derive(serde::Serialize)]
struct WebhookAlert {
    #[serde(rename = "type")]
    ty: &'static str,
    #[serde(flatten)]
    data: serde_json::Value,
}

/// An episode as its `anomaly.*` event records it: times in RFC 3339, and in words.
fn anomaly_of(e: &Episode) -> Anomaly {
    let series = AnomalySeries {
        key: e.series.key.clone(),
        what: e.series.what.clone(),
        unit: e.series.unit.clone(),
        subject: anomaly_subject(&e.series.subject),
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
        silenced_until: None,
    }
}

/// The engine's second count as a time, to the microsecond.
/// The engine's subject as events name it.
fn anomaly_subject(subject: &Subject) -> AnomalySubject {
    match subject {
        Subject::Function(name) => AnomalySubject::Function(name.clone()),
        Subject::Device(id) => AnomalySubject::Device(id.clone()),
        Subject::Group(name) => AnomalySubject::Group(name.clone()),
        Subject::Platform => AnomalySubject::Platform,
    }
}

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
            watch.budget_alert(&recorded);
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
