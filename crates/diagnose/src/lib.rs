//! Diagnosis: the platform watching itself.
//!
//! One anomaly detector per key series (function latency, error and
//! invocation rates, device message rates, drops, connection churn, cost)
//! turns points into episodes; concurrent episodes of related subjects are
//! grouped into incidents; the recorded changes before an incident (deploys,
//! rollbacks, device registry changes, shadow and command batches) are
//! ranked as its probable causes by time proximity, scope match and a
//! before/after comparison of the affected series; and the whole is said in
//! words, with how sure it is and what it does not know.
//!
//! The engine does no I/O and keeps no clock: times are seconds (the
//! caller's clock or a simulated one), so the same engine runs live in the
//! server and over simulated time in tests.

mod words;

use std::collections::{HashMap, HashSet, VecDeque};

use glassbox_anomaly::{Detector, InvalidSettings, Settings};
use serde::Serialize;

pub use words::{duration, episode as words_of};

/// Episodes kept; the oldest are forgotten beyond this.
pub const EPISODES_MAX: usize = 10_000;
/// Changes kept; the oldest are forgotten beyond this.
pub const CHANGES_MAX: usize = 10_000;
/// Points of each series kept for before/after comparisons.
const RECENT_POINTS: usize = 720;
/// An episode starting this close to the end of an incident's latest one may join it.
pub const GROUP_WINDOW_SECONDS: f64 = 180.0;
/// Changes this long before an incident are candidate causes.
pub const LOOKBACK_SECONDS: f64 = 1800.0;
/// Changes this long after an incident's start (or its latest peak) are
/// still listed: one inside its first point (a bucket) may be its cause,
/// one after it is not, but a rollback made in response belongs in the
/// story.
const LOOKAHEAD_SECONDS: f64 = 30.0;
/// How much less a change made after the anomaly began counts: it cannot
/// have begun it.
const AFTER_ONSET_WEIGHT: f64 = 0.2;
/// How much less a change replaced before it could matter counts.
const REPLACED_WEIGHT: f64 = 0.2;
/// The time scale of proximity: a change this long before scores 1/e.
const PROXIMITY_SECONDS: f64 = 300.0;
/// Each side of a change compared, at most.
const COMPARE_SECONDS: f64 = 600.0;

/// When a change came, against the onsets of an incident: its start, and
/// its later peaks (a change made while something was mildly off may have
/// made it much worse).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Timing {
    /// `seconds` before the nearest onset it came before, or inside that
    /// onset's first point (a bucket) when `seconds` is negative.
    Before { seconds: f64, peak: bool },
    /// After the first point of every onset: it cannot have begun any.
    After { seconds: f64 },
}

impl Timing {
    fn of(at: f64, start: f64, peaks: &[f64], point_seconds: f64) -> Self {
        let onsets = std::iter::once((start, false)).chain(peaks.iter().map(|p| (*p, true)));
        onsets
            .filter(|(onset, _)| at < onset + point_seconds)
            .map(|(onset, peak)| (onset - at, peak))
            .min_by(|a, b| a.0.max(0.0).total_cmp(&b.0.max(0.0)))
            .map_or(Timing::After { seconds: at - start }, |(seconds, peak)| Timing::Before { seconds, peak })
    }

    /// 1 just before (or inside the first point), 1/e five minutes before.
    fn proximity(self) -> f64 {
        match self {
            Timing::Before { seconds, .. } => (-seconds.max(0.0) / PROXIMITY_SECONDS).exp(),
            Timing::After { .. } => AFTER_ONSET_WEIGHT,
        }
    }

    fn words(self, point_seconds: f64) -> String {
        let point = words::duration(point_seconds);
        match self {
            Timing::After { seconds } => format!("{} after the anomaly began", words::duration(seconds)),
            Timing::Before { seconds, peak: false } if seconds >= 0.0 => {
                format!("{} before the anomaly", words::duration(seconds))
            }
            Timing::Before { peak: false, .. } => format!("within the first {point} of the anomaly"),
            Timing::Before { seconds, peak: true } if seconds >= 0.0 => {
                format!("{} before its worst point, while it was already abnormal", words::duration(seconds))
            }
            Timing::Before { peak: true, .. } => {
                format!("within the {point} of its worst point, while it was already abnormal")
            }
        }
    }
}

/// What a series or a change is about: the nodes of the dependency graph
/// (device → topic → function → output → command).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Subject {
    Function(String),
    Device(String),
    Group(String),
    Platform,
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Function(name) => write!(f, "function {name}"),
            Subject::Device(id) => write!(f, "device {id}"),
            Subject::Group(name) => write!(f, "device group {name}"),
            Subject::Platform => f.write_str("the platform"),
        }
    }
}

/// A watched series: its key, what it measures in words, and its subject.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeriesSpec {
    /// The metric series key (`function_duration_ms{function="fan"}`).
    pub key: String,
    /// What it measures, for people (`latency`, `error count`).
    pub what: String,
    /// The unit of its values (`ms`, `/10s`), for people.
    pub unit: String,
    pub subject: Subject,
    /// Its values count occurrences each worth this much (1 for a count;
    /// 0: not a count), judged with their Poisson noise: see
    /// [`Settings::count_unit`].
    #[serde(skip)]
    pub count_unit: f64,
    /// The smallest change worth a surprise, in its unit (see
    /// [`Settings::resolution`]); 0 for none.
    #[serde(skip)]
    pub resolution: f64,
}

/// A recorded change: something someone (or something) did that may
/// change how the platform behaves.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    pub at: f64,
    /// `deploy`, `rollback`, `device_registered`, `shadow_batch`, …
    pub kind: String,
    pub subject: Subject,
    /// In words: "deploy of fan v2 (sha256:…) by admin".
    pub summary: String,
    /// The event that recorded it.
    pub event_id: Option<String>,
}

/// One anomaly episode of one series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Episode {
    pub id: u64,
    pub series: SeriesSpec,
    /// What made it anomalous at its peak: `spike`, `level_up`, `silence`, …
    pub signal: String,
    pub start: f64,
    pub peak: f64,
    pub peak_score: f64,
    /// `None` while the series is still abnormal.
    pub end: Option<f64>,
    /// The value at its peak (the worst point so far), and the value
    /// expected then.
    pub value: f64,
    pub expected: Option<f64>,
    /// What the detector that flagged it said, when another one did
    /// (liveness: "connected but silent for 16s; its declared cadence is
    /// every 5s").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What one point did.
#[derive(Clone, Debug, PartialEq)]
pub enum Alert {
    Started(Episode),
    Ended(Episode),
}

/// A probable cause of an incident, with the evidence for it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cause {
    pub change: Change,
    /// In [0, 1]: proximity × scope × before/after, shared among the candidates.
    pub confidence: f64,
    /// `likely`, `possible` or `unlikely`.
    pub verdict: &'static str,
    pub evidence: Vec<String>,
}

/// Concurrent episodes of related subjects, with their probable causes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Incident {
    /// The id of its first episode.
    pub id: u64,
    pub start: f64,
    /// `None` while any of its episodes is open.
    pub end: Option<f64>,
    pub subjects: Vec<Subject>,
    pub episodes: Vec<Episode>,
    pub causes: Vec<Cause>,
    /// The whole incident in words.
    pub summary: String,
}

/// The answer to "what is abnormal, since when, and why?".
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diagnosis {
    pub now: f64,
    pub since: f64,
    pub incidents: Vec<Incident>,
    pub series_watched: usize,
    /// Series still learning their normal: they cannot alert yet.
    pub series_learning: usize,
    /// What the diagnosis cannot see, in words.
    pub unknowns: Vec<String>,
    pub summary: String,
}

struct Tracked {
    spec: SeriesSpec,
    detector: Detector,
    points: u64,
    recent: VecDeque<(f64, f64)>,
    open: Option<u64>,
    /// The open episode's worst deviation (in usual error sizes): the peak
    /// among points whose scores saturate.
    peak_deviation: f64,
}

pub struct Engine {
    settings: Settings,
    /// A fresh detector with the engine's settings.
    prototype: Detector,
    series: HashMap<String, Tracked>,
    episodes: VecDeque<Episode>,
    changes: VecDeque<Change>,
    edges: HashSet<(Subject, Subject)>,
    next_id: u64,
    /// The time each point covers from its timestamp on (a bucket's width).
    point_seconds: f64,
}

impl Engine {
    pub fn new(settings: Settings) -> Result<Self, InvalidSettings> {
        let prototype = Detector::new(settings.clone())?;
        Ok(Self {
            settings,
            prototype,
            series: HashMap::new(),
            episodes: VecDeque::new(),
            changes: VecDeque::new(),
            edges: HashSet::new(),
            next_id: 1,
            point_seconds: 0.0,
        })
    }

    /// A fresh detector for `spec`: the engine's settings with how the
    /// series is measured (an invalid resolution is ignored).
    fn detector_for(&self, spec: &SeriesSpec) -> Detector {
        let settings = Settings { count_unit: spec.count_unit, resolution: spec.resolution, ..self.settings.clone() };
        Detector::new(settings).unwrap_or_else(|_| self.prototype.clone())
    }

    /// Points stand for buckets of `seconds` from their timestamp: a bucket
    /// that contains a change counts as after it in before/after comparisons.
    pub fn with_point_seconds(mut self, seconds: f64) -> Self {
        self.point_seconds = seconds.max(0.0);
        self
    }

    /// Feeds one point of a series (created on first sight).
    pub fn observe(&mut self, spec: &SeriesSpec, t: f64, value: f64) -> Option<Alert> {
        let tracked = match self.series.get_mut(&spec.key) {
            Some(tracked) => tracked,
            None => {
                let detector = self.detector_for(spec);
                let (recent, open, peak_deviation) = (VecDeque::new(), None, 0.0);
                let tracked = Tracked { spec: spec.clone(), detector, points: 0, recent, open, peak_deviation };
                self.series.entry(spec.key.clone()).or_insert(tracked)
            }
        };
        let seen = tracked.detector.observe(t, value);
        tracked.points += 1;
        if value.is_finite() {
            if tracked.recent.len() >= RECENT_POINTS {
                tracked.recent.pop_front();
            }
            tracked.recent.push_back((t, value));
        }
        if let (Some(id), Some(ended)) = (tracked.open, seen.ended) {
            tracked.open = None;
            let episode = self.episodes.iter_mut().find(|e| e.id == id)?;
            // The peak stays the one tracked here (the worst deviation
            // among saturated scores); the detector's own ends the episode.
            episode.end = ended.end.or(Some(t));
            episode.peak_score = episode.peak_score.max(ended.peak_score);
            return Some(Alert::Ended(episode.clone()));
        }
        let deviation = seen.parts.deviation.abs();
        if let Some(id) = tracked.open {
            if let Some(episode) = self.episodes.iter_mut().find(|e| e.id == id)
                && (seen.score > episode.peak_score
                    || (seen.score == episode.peak_score && deviation > tracked.peak_deviation))
            {
                tracked.peak_deviation = deviation;
                episode.peak_score = seen.score;
                episode.peak = t;
                episode.value = value;
                episode.expected = seen.expected;
                if let Some(signal) = seen.signal {
                    episode.signal = signal.as_str().to_string();
                }
            }
            return None;
        }
        if !seen.anomalous {
            return None;
        }
        tracked.peak_deviation = deviation;
        let series = tracked.spec.clone();
        let signal = seen.signal.map_or("unusual", |s| s.as_str()).to_string();
        let (score, expected) = (seen.score, seen.expected);
        Some(self.start(Episode {
            id: 0,
            series,
            signal,
            start: t,
            peak: t,
            peak_score: score,
            end: None,
            value,
            expected,
            detail: None,
        }))
    }

    /// Opens `episode` (its id assigned here) on its series and keeps it.
    fn start(&mut self, mut episode: Episode) -> Alert {
        episode.id = self.next_id;
        self.next_id += 1;
        if let Some(tracked) = self.series.get_mut(&episode.series.key) {
            tracked.open = Some(episode.id);
        }
        if self.episodes.len() >= EPISODES_MAX {
            self.episodes.pop_front();
        }
        self.episodes.push_back(episode.clone());
        Alert::Started(episode)
    }

    /// Opens an episode that another detector found (e.g. liveness: a
    /// device past its cadence), with what it said, unless one is open for
    /// the series.
    pub fn flag(&mut self, spec: &SeriesSpec, t: f64, signal: &str, detail: Option<String>) -> Option<Alert> {
        let tracked = self.series.entry(spec.key.clone()).or_insert_with(|| Tracked {
            spec: spec.clone(),
            detector: self.prototype.clone(),
            points: u64::from(self.settings.warmup_points),
            recent: VecDeque::new(),
            open: None,
            peak_deviation: f64::INFINITY,
        });
        if tracked.open.is_some() {
            return None;
        }
        Some(self.start(Episode {
            id: 0,
            series: spec.clone(),
            signal: signal.into(),
            start: t,
            peak: t,
            peak_score: 1.0,
            end: None,
            value: 0.0,
            expected: None,
            detail,
        }))
    }

    /// Ends a flagged episode: the other detector says it is over.
    pub fn clear(&mut self, key: &str, t: f64) -> Option<Alert> {
        let id = self.series.get_mut(key)?.open.take()?;
        let episode = self.episodes.iter_mut().find(|e| e.id == id)?;
        episode.end = Some(t);
        Some(Alert::Ended(episode.clone()))
    }

    /// Notes a change for cause ranking. A change with the event id of one
    /// already noted replaces it (a batch that grew).
    pub fn change(&mut self, change: Change) {
        let same = |c: &Change| c.event_id.is_some() && c.event_id == change.event_id;
        if let Some(noted) = self.changes.iter_mut().rev().find(|c| same(c)) {
            *noted = change;
            return;
        }
        if self.changes.len() >= CHANGES_MAX {
            self.changes.pop_front();
        }
        self.changes.push_back(change);
    }

    /// Notes that `a` and `b` depend on each other (a device's messages
    /// trigger a function; a device is in a group).
    pub fn relate(&mut self, a: Subject, b: Subject) {
        if a != b {
            self.edges.insert((a.clone(), b.clone()));
            self.edges.insert((b, a));
        }
    }

    fn related(&self, a: &Subject, b: &Subject) -> bool {
        a == b || *a == Subject::Platform || *b == Subject::Platform || self.edges.contains(&(a.clone(), b.clone()))
    }

    /// Episodes that overlap [since, now], optionally about one subject.
    pub fn episodes(&self, since: f64, now: f64, scope: Option<&Subject>) -> Vec<&Episode> {
        self.episodes
            .iter()
            .filter(|e| e.start <= now && e.end.is_none_or(|end| end >= since))
            .filter(|e| scope.is_none_or(|s| e.series.subject == *s))
            .collect()
    }

    /// What is abnormal in [since, now], grouped into incidents, each with
    /// its probable causes; about one subject (and what relates to it) when
    /// `scope` is given.
    pub fn diagnose(&self, since: f64, now: f64, scope: Option<&Subject>) -> Diagnosis {
        let mut episodes: Vec<&Episode> = self.episodes(since, now, None);
        episodes.sort_by(|a, b| a.start.total_cmp(&b.start));
        let mut incidents: Vec<Vec<&Episode>> = Vec::new();
        for episode in episodes {
            // An episode joins an incident it overlaps or follows closely:
            // a series' swing back after a storm belongs to the storm.
            let joins = incidents.iter_mut().rev().find(|group| {
                let latest = group.iter().map(|e| e.end.unwrap_or(f64::MAX).max(e.start)).fold(f64::MIN, f64::max);
                (episode.start - latest <= GROUP_WINDOW_SECONDS)
                    && group.iter().any(|e| self.related(&e.series.subject, &episode.series.subject))
            });
            match joins {
                Some(group) => group.push(episode),
                None => incidents.push(vec![episode]),
            }
        }
        let incidents: Vec<Incident> = incidents
            .into_iter()
            .map(|group| self.incident(group, now))
            .filter(|i| scope.is_none_or(|s| i.subjects.iter().any(|subject| self.related(subject, s))))
            .collect();
        let learning = self.series.values().filter(|t| t.points < u64::from(self.settings.warmup_points)).count();
        let mut unknowns = Vec::new();
        if learning > 0 {
            unknowns.push(format!(
                "{learning} of {} series are still learning their normal (the first {} points of each) and cannot \
                 raise alerts yet",
                self.series.len(),
                self.settings.warmup_points
            ));
        }
        if self.series.is_empty() {
            unknowns.push("no series are watched yet: nothing has been recorded".into());
        }
        let summary = words::diagnosis(&incidents, now - since, scope);
        Diagnosis {
            now,
            since,
            incidents,
            series_watched: self.series.len(),
            series_learning: learning,
            unknowns,
            summary,
        }
    }

    fn incident(&self, group: Vec<&Episode>, now: f64) -> Incident {
        let start = group.iter().map(|e| e.start).fold(f64::MAX, f64::min);
        let end = group.iter().map(|e| e.end).try_fold(f64::MIN, |latest, end| end.map(|e| latest.max(e)));
        let mut subjects: Vec<Subject> = group.iter().map(|e| e.series.subject.clone()).collect();
        subjects.sort();
        subjects.dedup();
        let episodes: Vec<Episode> = group.into_iter().cloned().collect();
        let causes = self.causes(&episodes, start, now);
        let summary = words::incident(&episodes, &causes, start, end, now);
        Incident { id: episodes[0].id, start, end, subjects, episodes, causes, summary }
    }

    /// Candidate changes before the incident's start or before one of its
    /// peaks (a change made while something was mildly off that made it
    /// much worse), ranked.
    fn causes(&self, episodes: &[Episode], start: f64, now: f64) -> Vec<Cause> {
        let peaks: Vec<f64> = episodes.iter().map(|e| e.peak).filter(|p| *p > start).collect();
        let latest = peaks.iter().copied().fold(start, f64::max);
        let point_seconds = self.point_seconds.max(1.0);
        let mut scored: Vec<(f64, &Change, Vec<String>)> = self
            .changes
            .iter()
            .filter(|c| c.at >= start - LOOKBACK_SECONDS && c.at <= latest + LOOKAHEAD_SECONDS)
            .map(|change| {
                let timing = Timing::of(change.at, start, &peaks, point_seconds);
                let (mut scope, mut scope_words) = self.scope_match(change, episodes);
                if let Some((newer, when)) = self.superseded(change, start) {
                    scope *= REPLACED_WEIGHT;
                    scope_words = format!("{scope_words}, but {} replaced it {when}", newer.summary);
                }
                let (shift, mut evidence) = self.before_after(change, episodes, now);
                evidence.insert(0, scope_words);
                evidence.insert(0, timing.words(point_seconds));
                (timing.proximity() * scope * shift, change, evidence)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let total: f64 = scored.iter().map(|s| s.0).sum();
        scored
            .into_iter()
            .take(3)
            .map(|(score, change, evidence)| {
                // A strong candidate that stands alone is surer than one of several.
                let confidence = if total > 0.0 { score * score / total } else { 0.0 };
                let verdict = match confidence {
                    c if c >= 0.5 => "likely",
                    c if c >= 0.2 => "possible",
                    _ => "unlikely",
                };
                Cause { change: change.clone(), confidence, verdict, evidence }
            })
            .collect()
    }

    /// The later change of the same kind of thing to the same subject (a
    /// newer deploy replaces an older one's code) that left `change` no part
    /// in an anomaly beginning at `start`, and when: before it began (the
    /// older one was not live while anything was abnormal), or within the
    /// point `change` was made in (too soon for any point to show it).
    fn superseded<'a>(&'a self, change: &'a Change, start: f64) -> Option<(&'a Change, String)> {
        let newer = self.replaced_by(change)?;
        if newer.at <= start {
            Some((newer, "before the anomaly".into()))
        } else if newer.at - change.at < self.point_seconds {
            let soon = match newer.at - change.at {
                s if s < 1.0 => "within a second".to_string(),
                s => format!("{} later", words::duration(s)),
            };
            Some((newer, format!("{soon}, too soon for its effect to show")))
        } else {
            None
        }
    }

    /// The next change that undoes or replaces this one (a deploy,
    /// rollback, promote or delete of the same function), if any.
    fn replaced_by<'a>(&'a self, change: &'a Change) -> Option<&'a Change> {
        self.replacements(change).find(|c| c.at > change.at)
    }

    /// The change this one undoes or replaces, if any.
    fn replaced<'a>(&'a self, change: &'a Change) -> Option<&'a Change> {
        self.replacements(change).filter(|c| c.at < change.at).last()
    }

    /// The deploys, rollbacks, promotes and deletes of `change`'s subject,
    /// oldest first, when it is one itself.
    fn replacements<'a>(&'a self, change: &'a Change) -> impl Iterator<Item = &'a Change> {
        let replaces = |kind: &str| matches!(kind, "deploy" | "rollback" | "promote" | "delete");
        let applies = replaces(&change.kind);
        self.changes.iter().filter(move |c| applies && c.subject == change.subject && replaces(&c.kind))
    }

    fn scope_match(&self, change: &Change, episodes: &[Episode]) -> (f64, String) {
        if episodes.iter().any(|e| e.series.subject == change.subject) {
            return (1.0, format!("it changed {}, the subject of the anomaly", change.subject));
        }
        let related = episodes.iter().find(|e| {
            e.series.subject != Subject::Platform
                && change.subject != Subject::Platform
                && self.related(&change.subject, &e.series.subject)
        });
        if let Some(e) = related {
            return (0.7, format!("it changed {}, which {} depends on", change.subject, e.series.subject));
        }
        if change.subject == Subject::Platform {
            return (0.4, "a platform-wide change".into());
        }
        (0.15, format!("it changed {}, unrelated to what is abnormal", change.subject))
    }

    /// How much the affected series moved across the change: 1 when one of
    /// them clearly shifted there, less when none did. "After" lasts while
    /// the change was in effect: a rollback ends a deploy's. "Before" a
    /// rollback or a promote is while the version it replaces was live (a deploy's before
    /// stays the ten minutes: the version it replaced may have been live
    /// for moments only).
    fn before_after(&self, change: &Change, episodes: &[Episode], now: f64) -> (f64, Vec<String>) {
        let until = self.replaced_by(change).map_or(now, |next| next.at - self.point_seconds);
        let since = match change.kind.as_str() {
            "rollback" | "promote" => self.replaced(change).map_or(f64::MIN, |undone| undone.at),
            _ => f64::MIN,
        };
        let mut best = (0.3, Vec::new());
        for episode in episodes {
            let Some(tracked) = self.series.get(&episode.series.key) else { continue };
            let before: Vec<f64> = tracked
                .recent
                .iter()
                .filter(|(t, _)| *t + self.point_seconds <= change.at && *t >= (change.at - COMPARE_SECONDS).max(since))
                .map(|p| p.1)
                .collect();
            let after: Vec<f64> = tracked
                .recent
                .iter()
                .filter(|(t, _)| *t + self.point_seconds > change.at && *t <= (change.at + COMPARE_SECONDS).min(until))
                .map(|p| p.1)
                .collect();
            if before.len() < 3 || after.is_empty() {
                continue;
            }
            let (b, a) = (median(&before), median(&after));
            let spread = 1.4826 * median(&before.iter().map(|v| (v - b).abs()).collect::<Vec<_>>());
            let moved = (a - b).abs() / (spread + 0.05 * b.abs() + f64::EPSILON);
            let text = format!(
                "{} {} before → {} after",
                episode.series.what,
                words::value(b, &episode.series.unit),
                words::value(a, &episode.series.unit)
            );
            let weight = if moved >= 3.0 { 1.0 } else { 0.3 + 0.7 * moved / 3.0 };
            if weight > best.0 || best.1.is_empty() {
                best = (weight.max(best.0), vec![text]);
            }
        }
        best
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests;
