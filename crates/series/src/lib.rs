//! Metrics as time series, derived from the recorded stream (never counted
//! on the hot path): every recorded event is turned into samples
//! ([`derive`]), aggregated per series into 10-second buckets in memory,
//! and written to the metric store when each bucket closes. Queries merge
//! the stored buckets with the open ones; `/metrics` exports the totals.
//!
//! Cardinality is bounded whatever clients send: label values are cut to
//! [`LABEL_BYTES_MAX`] ([`bounded_label`]), the `topic` label comes from a
//! bounded set of templates ([`topics`]), each metric keeps at most
//! `series_per_metric_max` series (new label sets beyond fold into its one
//! `other` series, counted in `folded`), and all metrics together at most
//! [`SERIES_MAX`] (samples for new series beyond are counted in `refused`).
//!
//! Owns the catalog of metrics, their derivation, buckets and the `[metrics]`
//! configuration ([`MetricsConfig`]). Reads the stream through the
//! [`glassbox_pipeline::Pipeline`] and writes only to its [`MetricStore`];
//! closed buckets leave through [`ClosedBuckets`], so it must not know who
//! reads them (live diagnosis) nor the HTTP API.

pub mod catalog;
mod config;
pub mod derive;
mod feed;
pub mod topics;

pub use config::MetricsConfig;
pub use feed::{ClosedBuckets, start};

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use glassbox_store::metrics::FINE_STEP_SECONDS;
use glassbox_store::{MetricPoint, MetricStore, Retention};

use self::catalog::{DURATION_BUCKETS_MS, Kind, Metric};
use self::derive::Sample;
use self::topics::{OTHER, TopicTemplates};

/// Most series kept; new ones beyond are refused (and counted).
pub const SERIES_MAX: usize = 20_000;
/// Default of `metrics.series_per_metric_max`.
pub const SERIES_PER_METRIC_MAX_DEFAULT: usize = 2_000;
/// Longest label value kept, in bytes; longer ones are cut ([`bounded_label`]).
pub const LABEL_BYTES_MAX: usize = 128;

/// The bounds `[metrics]` sets on the series.
#[derive(Debug, Clone)]
pub struct SeriesSettings {
    /// How a message's topic becomes its `topic` label.
    pub topics: TopicTemplates,
    /// Series one metric keeps; new label sets beyond fold into its `other` series.
    pub series_per_metric_max: usize,
}

impl Default for SeriesSettings {
    fn default() -> Self {
        let topics = TopicTemplates::new(&topics::default_templates()).unwrap_or_default();
        Self { topics, series_per_metric_max: SERIES_PER_METRIC_MAX_DEFAULT }
    }
}

/// Totals since start of one series, for `/metrics`.
#[derive(Debug, Clone, Default)]
struct Total {
    count: u64,
    sum: f64,
    /// Per duration bucket (non-cumulative), for distributions.
    buckets: Vec<u64>,
}

/// Samples of one series in one bucket, added up.
struct Tally {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Tally {
    fn of(value: f64) -> Self {
        Self { count: 1, sum: value, min: value, max: value }
    }

    fn add(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }
}

#[derive(Default)]
struct Inner {
    /// The open fine bucket of each series that had a sample in it.
    open: HashMap<String, MetricPoint>,
    /// Buckets closed (or late) and not yet written.
    closed: Vec<MetricPoint>,
    /// Every series seen, with its metric, labels and totals.
    series: BTreeMap<String, (&'static Metric, Vec<String>, Total)>,
    /// How many series each metric has (by name).
    per_metric: HashMap<&'static str, usize>,
    /// Samples folded into a metric's `other` series (by name): it was at its cap.
    folded: BTreeMap<&'static str, u64>,
    refused: u64,
}

impl Inner {
    /// The series of one metric: their keys all start with `name{`.
    fn of<'a>(
        &'a self,
        metric: &Metric,
    ) -> impl Iterator<Item = (&'a String, &'a (&'static Metric, Vec<String>, Total))> {
        let prefix = format!("{}{{", metric.name);
        self.series.range(prefix.clone()..).take_while(move |(key, _)| key.starts_with(&prefix))
    }
}

pub struct Series {
    inner: Mutex<Inner>,
    store: Arc<dyn MetricStore>,
    retention: Retention,
    settings: SeriesSettings,
}

/// A bucket just closed, with its series' metric and label values.
#[derive(Debug, Clone)]
pub struct Closed {
    pub metric: &'static Metric,
    pub labels: Vec<String>,
    pub point: MetricPoint,
}

pub use glassbox_api_types::{Point, SeriesRange};

/// The series key, as Prometheus writes a series: `name{a="x",b="y"}`.
/// Built for every sample derived, so it escapes in place, without a
/// `format!` or a copy of the value.
pub fn key(metric: &Metric, labels: &[impl AsRef<str>]) -> String {
    let mut key = String::with_capacity(64);
    key.push_str(metric.name);
    key.push('{');
    for (i, (name, value)) in metric.labels.iter().zip(labels).enumerate() {
        if i > 0 {
            key.push(',');
        }
        key.push_str(name);
        key.push_str("=\"");
        for c in value.as_ref().chars() {
            match c {
                '\\' => key.push_str("\\\\"),
                '"' => key.push_str("\\\""),
                '\n' => key.push_str("\\n"),
                c => key.push(c),
            }
        }
        key.push('"');
    }
    key.push('}');
    key
}

/// A label value of at most [`LABEL_BYTES_MAX`] bytes: a longer one is cut
/// on a char boundary and ends in `…` and 8 hex digits hashing the whole
/// value, so that distinct long values stay distinct series.
pub fn bounded_label(value: &str) -> std::borrow::Cow<'_, str> {
    if value.len() <= LABEL_BYTES_MAX {
        return value.into();
    }
    let mut end = LABEL_BYTES_MAX - "…".len() - 8;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…{:08x}", &value[..end], fnv1a(value.as_bytes()) as u32).into()
}

/// FNV-1a: a hash that is the same in every build (stored keys keep it).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

pub(crate) fn bucket_start(at: DateTime<Utc>) -> i64 {
    let secs = at.timestamp();
    secs - secs.rem_euclid(FINE_STEP_SECONDS)
}

impl Series {
    pub fn new(store: Arc<dyn MetricStore>, retention: Retention, settings: SeriesSettings) -> Self {
        Self { inner: Mutex::default(), store, retention, settings }
    }

    /// How message topics become `topic` labels.
    pub fn topics(&self) -> &TopicTemplates {
        &self.settings.topics
    }

    /// Adds samples (each with the receive time of its event) under one
    /// lock. Counts and sums of one series in one bucket are tallied
    /// first: a batch holds many messages of each device and topic, and
    /// building and looking up a series' key once per batch instead of
    /// once per event is most of what deriving costs. A device's messages
    /// come in runs, so a sample is first compared with its metric's last
    /// tally, and hashed only when that differs. Distribution samples
    /// (durations) are added one by one: each value has its histogram
    /// bucket.
    pub fn add_all(&self, derived: &[(Sample<'_>, DateTime<Utc>)]) {
        let mut tallies: Vec<(&Sample, i64, Tally)> = Vec::new();
        let mut seen: HashMap<(&str, &[Cow<str>], i64), usize> = HashMap::new();
        // Each metric's last tally (a handful of metrics: a short list,
        // matched by name: a catalog constant has no one address).
        let mut last: Vec<(&'static Metric, usize)> = Vec::new();
        for (sample, at) in derived {
            let bucket = bucket_start(*at);
            let metric = sample.metric;
            let tallied = metric.kind != Kind::Distribution;
            let slot = last.iter().position(|(m, _)| m.name == metric.name);
            let same = |i: &usize| tallies[*i].1 == bucket && tallies[*i].0.labels() == sample.labels();
            if let Some(i) = slot.map(|s| last[s].1).filter(|i| tallied && same(i)) {
                tallies[i].2.add(sample.value);
                continue;
            }
            let key = (metric.name, sample.labels(), bucket);
            let i = match seen.get(&key) {
                Some(&i) if tallied => {
                    tallies[i].2.add(sample.value);
                    i
                }
                _ => {
                    seen.insert(key, tallies.len());
                    tallies.push((sample, bucket, Tally::of(sample.value)));
                    tallies.len() - 1
                }
            };
            match slot {
                Some(s) => last[s].1 = i,
                None => last.push((metric, i)),
            }
        }
        let Ok(mut inner) = self.inner.lock() else { return };
        for (sample, bucket, tally) in tallies {
            self.add(&mut inner, sample, bucket, tally);
        }
    }

    fn add(&self, inner: &mut Inner, sample: &Sample, bucket: i64, tally: Tally) {
        let Some(key) = self.series_of(inner, sample, tally.count) else {
            inner.refused += tally.count;
            return;
        };
        if let Some((_, _, total)) = inner.series.get_mut(&key) {
            total.count += tally.count;
            total.sum += tally.sum;
            // Only distributions have buckets, and their samples are never tallied.
            let slot = DURATION_BUCKETS_MS.iter().position(|b| sample.value <= *b);
            if let Some(n) = slot.and_then(|slot| total.buckets.get_mut(slot)) {
                *n += 1;
            }
        }
        let point = MetricPoint {
            series: key.clone(),
            at: bucket,
            count: tally.count,
            sum: tally.sum,
            min: tally.min,
            max: tally.max,
        };
        match inner.open.get_mut(&key) {
            Some(open) if open.at == bucket => open.merge(&point),
            Some(open) if open.at < bucket => {
                let closed = std::mem::replace(open, point);
                inner.closed.push(closed);
            }
            Some(_) => inner.closed.push(point), // Late: merged by the store.
            None => {
                inner.open.insert(key, point);
            }
        }
    }

    /// The key of the series a sample goes to, made if new: its own (labels
    /// bounded), or its metric's `other` series when the metric is at its
    /// cap; none when all series together are at [`SERIES_MAX`].
    fn series_of(&self, inner: &mut Inner, sample: &Sample, count: u64) -> Option<String> {
        let metric = sample.metric;
        let labels: Vec<_> = sample.labels().iter().map(|l| bounded_label(l)).collect();
        let own = key(metric, &labels);
        if inner.series.contains_key(&own) {
            return Some(own);
        }
        let full = inner.per_metric.get(metric.name).copied().unwrap_or(0) >= self.settings.series_per_metric_max;
        let (key, labels) = match full {
            false => (own, labels.iter().map(|l| l.to_string()).collect()),
            true => {
                let other = vec![OTHER.to_string(); metric.labels.len()];
                (key(metric, &other), other)
            }
        };
        if !inner.series.contains_key(&key) {
            if inner.series.len() >= SERIES_MAX {
                return None;
            }
            let total = Total { buckets: vec![0; distribution_buckets(metric)], ..Total::default() };
            inner.series.insert(key.clone(), (metric, labels, total));
            *inner.per_metric.entry(metric.name).or_default() += 1;
        }
        if full {
            *inner.folded.entry(metric.name).or_default() += count;
        }
        Some(key)
    }

    /// Writes the buckets closed before `now` (all of them when `all`);
    /// returns them with their metric and labels.
    pub async fn flush(&self, now: DateTime<Utc>, all: bool) -> Vec<Closed> {
        let current = bucket_start(now);
        let closed = {
            let Ok(mut inner) = self.inner.lock() else { return Vec::new() };
            let mut points = std::mem::take(&mut inner.closed);
            let done: Vec<String> =
                inner.open.iter().filter(|(_, p)| all || p.at < current).map(|(k, _)| k.clone()).collect();
            points.extend(done.iter().filter_map(|k| inner.open.remove(k)));
            let described = points.into_iter().filter_map(|point| {
                let (metric, labels, _) = inner.series.get(&point.series)?;
                Some(Closed { metric, labels: labels.clone(), point })
            });
            described.collect::<Vec<_>>()
        };
        let points = closed.iter().map(|c| c.point.clone()).collect();
        if let Err(e) = self.store.append(points).await {
            tracing::warn!(error = %e, "could not write metric buckets; they are lost (the recorder still has the events)");
        }
        closed
    }

    /// The metric's series over [since, until) at `step` seconds, filtered
    /// by label values and summed by the `by` labels (all summed when empty).
    pub async fn range(
        &self,
        metric: &'static Metric,
        filters: &[(String, String)],
        by: &[String],
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        step: i64,
    ) -> Result<(i64, Vec<SeriesRange>), glassbox_store::StoreError> {
        let (since_s, until_s) = (since.timestamp(), until.timestamp());
        let (_, step) = glassbox_store::metrics::resolution(step, since_s, until_s, self.retention);
        let prefix = format!("{}{{", metric.name);
        let mut points = self.store.range(&prefix, since_s, until_s, step).await?;
        if let Ok(inner) = self.inner.lock() {
            let unwritten = inner.open.values().chain(&inner.closed);
            points.extend(
                unwritten.filter(|p| p.series.starts_with(&prefix) && p.at >= since_s && p.at < until_s).cloned(),
            );
        }
        let mut groups: BTreeMap<Vec<String>, BTreeMap<i64, MetricPoint>> = BTreeMap::new();
        for point in points {
            // The key holds the label values: stored series need no registry.
            let Some(labels) = parse_labels(metric, &point.series) else { continue };
            let value = |name: &str| metric.labels.iter().position(|l| *l == name).and_then(|i| labels.get(i));
            if !filters.iter().all(|(name, want)| value(name) == Some(want)) {
                continue;
            }
            let group: Vec<String> = by.iter().map(|b| value(b).cloned().unwrap_or_default()).collect();
            let at = point.at - point.at.rem_euclid(step);
            groups
                .entry(group)
                .or_default()
                .entry(at)
                .and_modify(|p| p.merge(&point))
                .or_insert(MetricPoint { at, ..point });
        }
        let answer = groups
            .into_iter()
            .map(|(group, points)| SeriesRange {
                labels: by.iter().cloned().zip(group).collect(),
                points: fill(metric, points, since_s - since_s.rem_euclid(step), until_s, step),
            })
            .collect();
        Ok((step, answer))
    }

    /// The totals of exported metrics in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let Ok(inner) = self.inner.lock() else { return };
        for metric in catalog::ALL.iter().filter(|m| m.exported) {
            let name = format!("glassbox_{}", metric.name);
            let rows = inner.of(metric);
            match metric.kind {
                Kind::Count | Kind::Sum => {
                    let _ = write!(out, "# HELP {name}_total {}\n# TYPE {name}_total counter\n", metric.help);
                    for (key, (_, _, total)) in rows {
                        let value = if metric.kind == Kind::Count { total.count as f64 } else { total.sum };
                        let labels = &key[metric.name.len()..];
                        let _ = writeln!(out, "{name}_total{labels} {value}");
                    }
                }
                Kind::Distribution => {
                    let _ = write!(out, "# HELP {name} {}\n# TYPE {name} histogram\n", metric.help);
                    for (key, (_, _, total)) in rows {
                        let inner_labels = key[metric.name.len() + 1..key.len() - 1].to_string();
                        let sep = if inner_labels.is_empty() { "" } else { "," };
                        let mut cumulative = 0;
                        for (bound, n) in DURATION_BUCKETS_MS.iter().zip(&total.buckets) {
                            cumulative += n;
                            let _ = writeln!(out, "{name}_bucket{{{inner_labels}{sep}le=\"{bound}\"}} {cumulative}");
                        }
                        let _ = writeln!(out, "{name}_bucket{{{inner_labels}{sep}le=\"+Inf\"}} {}", total.count);
                        let _ = writeln!(out, "{name}_sum{{{inner_labels}}} {}", total.sum);
                        let _ = writeln!(out, "{name}_count{{{inner_labels}}} {}", total.count);
                    }
                }
            }
        }
        let _ = write!(
            out,
            "# HELP glassbox_metric_series Metric series kept.\n# TYPE glassbox_metric_series gauge\nglassbox_metric_series {}\n\
             # HELP glassbox_metric_series_refused_total Samples not kept: the series limit ({SERIES_MAX}) was reached.\n\
             # TYPE glassbox_metric_series_refused_total counter\nglassbox_metric_series_refused_total {}\n",
            inner.series.len(),
            inner.refused
        );
        let _ = write!(
            out,
            "# HELP glassbox_metric_series_folded_total Samples counted in their metric's `other` series: \
             the metric had metrics.series_per_metric_max ({}) series.\n\
             # TYPE glassbox_metric_series_folded_total counter\n",
            self.settings.series_per_metric_max
        );
        for (metric, folded) in &inner.folded {
            let _ = writeln!(out, "glassbox_metric_series_folded_total{{metric=\"{metric}\"}} {folded}");
        }
    }

    /// How many series a metric has.
    pub fn count(&self, metric: &Metric) -> usize {
        self.inner.lock().map_or(0, |inner| inner.of(metric).count())
    }
}

fn distribution_buckets(metric: &Metric) -> usize {
    if metric.kind == Kind::Distribution { DURATION_BUCKETS_MS.len() } else { 0 }
}

/// Every step from `start` to `until`, zero where nothing happened.
fn fill(metric: &Metric, points: BTreeMap<i64, MetricPoint>, start: i64, until: i64, step: i64) -> Vec<Point> {
    let mut out = Vec::new();
    let mut at = start;
    while at < until {
        let point = points.get(&at);
        let (count, sum) = point.map_or((0, 0.0), |p| (p.count, p.sum));
        let value = match metric.kind {
            Kind::Count => count as f64,
            Kind::Sum => sum,
            Kind::Distribution if count > 0 => sum / count as f64,
            Kind::Distribution => 0.0,
        };
        out.push(Point {
            at: DateTime::from_timestamp(at, 0).unwrap_or_default(),
            value,
            count,
            sum,
            min: point.map_or(0.0, |p| p.min),
            max: point.map_or(0.0, |p| p.max),
        });
        at += step;
    }
    out
}

/// The label values of a stored series key, for series not seen since start.
fn parse_labels(metric: &Metric, key: &str) -> Option<Vec<String>> {
    let body = key.strip_prefix(metric.name)?.strip_prefix('{')?.strip_suffix('}')?;
    let mut values = Vec::with_capacity(metric.labels.len());
    let mut rest = body;
    for (i, name) in metric.labels.iter().enumerate() {
        rest = rest.strip_prefix(name)?.strip_prefix("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (j, '"') => break j,
                (_, c) => value.push(c),
            }
        };
        values.push(value);
        rest = &rest[end + 1..];
        if i + 1 < metric.labels.len() {
            rest = rest.strip_prefix(',')?;
        }
    }
    rest.is_empty().then_some(values)
}

/// The series' totals at `/metrics`.
#[async_trait::async_trait]
impl glassbox_pipeline::metrics::Collector for Series {
    async fn collect(&self, out: &mut String) {
        self.render(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back_into_their_labels() {
        let labels = vec!["thermo\"stat".to_string(), "failed".to_string()];
        let key = key(&catalog::FUNCTION_INVOCATIONS, &labels);
        assert_eq!(key, r#"function_invocations{function="thermo\"stat",outcome="failed"}"#);
        assert_eq!(parse_labels(&catalog::FUNCTION_INVOCATIONS, &key), Some(labels));
        assert_eq!(parse_labels(&catalog::EVENTS_RECORDED, "events_recorded{}"), Some(vec![]));
        assert_eq!(parse_labels(&catalog::FUNCTION_INVOCATIONS, "function_invocations{function=\"x\"}"), None);
    }

    fn series(series_per_metric_max: usize) -> (Series, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = glassbox_store_sqlite::SqliteMetrics::open(dir.path(), Retention::default()).unwrap();
        let settings = SeriesSettings { series_per_metric_max, ..SeriesSettings::default() };
        (Series::new(Arc::new(store), Retention::default(), settings), dir)
    }

    fn invoked(function: &str) -> (Sample<'static>, DateTime<Utc>) {
        (Sample::owned(&catalog::FUNCTION_INVOCATIONS, &[function, "succeeded"], 1.0), Utc::now())
    }

    // Issue 16, finding 3: one metric's flood folds into its `other` series
    // (counted) instead of taking the global cap from the others.
    #[test]
    fn a_metric_at_its_cap_folds_new_label_sets_into_other_and_counts_them() {
        let (series, _dir) = series(100);
        let flood: Vec<_> = (0..3000).map(|i| invoked(&format!("f{i}"))).collect();
        series.add_all(&flood);
        assert_eq!(series.count(&catalog::FUNCTION_INVOCATIONS), 101, "the cap, and one `other`");
        let message = Sample::new(&catalog::MQTT_MESSAGES, &["greenhouse", "devices/+/telemetry"], 1.0);
        series.add_all(&[invoked("f0"), (message, Utc::now())]);
        assert_eq!(series.count(&catalog::MQTT_MESSAGES), 1, "another metric still makes series");

        let mut out = String::new();
        series.render(&mut out);
        assert!(
            out.contains("glassbox_function_invocations_total{function=\"other\",outcome=\"other\"} 2900"),
            "{out}"
        );
        assert!(out.contains("glassbox_function_invocations_total{function=\"f0\",outcome=\"succeeded\"} 2"));
        assert!(out.contains("glassbox_metric_series_folded_total{metric=\"function_invocations\"} 2900"));
    }

    // Tallying a batch by series before adding it must change nothing but the cost.
    #[tokio::test]
    async fn a_batch_tallied_by_series_adds_up_as_its_samples_one_by_one() {
        let (series, _dir) = series(100);
        let now = Utc::now();
        let bytes = |value: f64| (Sample::new(&catalog::DEVICE_BYTES, &["t-1"], value), now);
        let duration = |value: f64| (Sample::new(&catalog::FUNCTION_DURATION, &["f"], value), now);
        let batch: Vec<_> = (1..=100).flat_map(|i| [bytes(f64::from(i)), duration(f64::from(i))]).collect();
        series.add_all(&batch);
        series.add_all(&[bytes(1000.0)]);
        // Runs broken by another device's samples, and by a later bucket.
        let other = |value: f64, at| (Sample::new(&catalog::DEVICE_BYTES, &["t-2"], value), at);
        let later = now + chrono::Duration::seconds(FINE_STEP_SECONDS);
        let mixed = [bytes(1.0), other(2.0, now), bytes(3.0), other(4.0, later), other(8.0, now), other(16.0, later)];
        series.add_all(&mixed);

        let closed = series.flush(now + chrono::Duration::seconds(60), true).await;
        let point = |metric: &Metric| &closed.iter().find(|c| c.metric.name == metric.name).unwrap().point;
        let bytes_of = |device: &str, at: i64| {
            let key = key(&catalog::DEVICE_BYTES, &[device]);
            let mut points = closed.iter().filter(|c| c.point.series == key && c.point.at == at);
            let p = &points.next().unwrap().point;
            (p.count, p.sum, p.min, p.max)
        };
        assert_eq!(bytes_of("t-1", bucket_start(now)), (103, 6054.0, 1.0, 1000.0));
        assert_eq!(bytes_of("t-2", bucket_start(now)), (2, 10.0, 2.0, 8.0));
        assert_eq!(bytes_of("t-2", bucket_start(later)), (2, 20.0, 4.0, 16.0));
        let d = point(&catalog::FUNCTION_DURATION);
        assert_eq!((d.count, d.sum, d.min, d.max), (100, 5050.0, 1.0, 100.0));
        let mut out = String::new();
        series.render(&mut out);
        // Every duration landed in its histogram bucket: the +Inf bucket counts all 100.
        assert!(out.contains("glassbox_function_duration_ms_bucket{function=\"f\",le=\"+Inf\"} 100"), "{out}");
        assert!(out.contains("glassbox_function_duration_ms_bucket{function=\"f\",le=\"5\"} 5"), "{out}");
    }

    // Issue 16, finding 3: a 30 KB label value is kept as at most 128 bytes.
    #[test]
    fn long_label_values_are_cut_on_a_char_boundary_and_stay_distinct() {
        let long = "é".repeat(15_000);
        let cut = bounded_label(&long);
        assert!(cut.len() <= LABEL_BYTES_MAX && cut.starts_with("éé") && cut.contains('…'), "{cut}");
        assert_ne!(cut, bounded_label(&format!("{long}x")), "the hash tells them apart");
        assert_eq!(bounded_label("fan"), "fan");

        let (series, _dir) = series(10);
        series.add_all(&[invoked(&long)]);
        let mut out = String::new();
        series.render(&mut out);
        let line = out.lines().find(|l| l.starts_with("glassbox_function_invocations_total")).unwrap();
        assert!(line.len() < 256, "{line}");
    }
}
