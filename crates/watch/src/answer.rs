//! The engine's findings as the API answers them
//! (`glassbox_api_types`): times in RFC 3339 instead of the engine's
//! second counts.

use glassbox_api_types as api;
use glassbox_diagnose::{Cause, Change, Diagnosis, Episode, Incident, SeriesSpec, Subject};

use glassbox_core::Silenced;

use super::triage::Said;
use super::{Watch, anomaly_subject, time_of};

/// `GET /api/v1/diagnose`, each incident with what operators said of it
/// and the silences on its subjects (from `watch`).
pub fn diagnosis(d: &Diagnosis, watch: &Watch) -> api::Diagnosis {
    api::Diagnosis {
        now: time_of(d.now),
        since: time_of(d.since),
        incidents: d.incidents.iter().map(|i| incident(i, watch)).collect(),
        series_watched: d.series_watched,
        series_learning: d.series_learning,
        unknowns: d.unknowns.clone(),
        summary: d.summary.clone(),
        certificates_expiring: Vec::new(),
    }
}

fn incident(i: &Incident, watch: &Watch) -> api::Incident {
    let said = watch.incident_state(i.id, time_of(i.start));
    let silenced =
        i.subjects.iter().filter_map(|s| watch.silence_on(&anomaly_subject(s))).map(|s| silence(&s)).collect();
    api::Incident {
        id: i.id,
        start: time_of(i.start),
        end: i.end.map(time_of),
        subjects: i.subjects.iter().map(subject).collect(),
        episodes: i.episodes.iter().map(episode).collect(),
        causes: i.causes.iter().map(cause).collect(),
        summary: i.summary.clone(),
        acknowledged: said.acknowledged.as_ref().map(triaged),
        resolved: said.resolved.as_ref().map(triaged),
        silenced,
        // Filled by the API from the record (it reads the store; the watch does not).
        chains: Vec::new(),
    }
}

fn triaged(said: &Said) -> api::Triaged {
    api::Triaged { at: said.at, by: said.note.principal.label(), note: said.note.note.clone() }
}

/// A silence, as `/api/v1/diagnose/silences` and a diagnosis show it.
pub fn silence(s: &Silenced) -> api::Silence {
    api::Silence { subject: s.subject.to_string(), until: s.until, by: s.principal.label(), note: s.note.clone() }
}

/// One episode, as `/api/v1/anomalies` and a diagnosis show it.
pub fn episode(e: &Episode) -> api::Episode {
    api::Episode {
        id: e.id,
        series: series(&e.series),
        signal: e.signal.clone(),
        start: time_of(e.start),
        peak: time_of(e.peak),
        peak_score: e.peak_score,
        end: e.end.map(time_of),
        value: e.value,
        expected: e.expected,
        detail: e.detail.clone(),
    }
}

fn series(s: &SeriesSpec) -> api::WatchedSeries {
    api::WatchedSeries { key: s.key.clone(), what: s.what.clone(), unit: s.unit.clone(), subject: subject(&s.subject) }
}

fn cause(c: &Cause) -> api::Cause {
    api::Cause {
        change: change(&c.change),
        confidence: c.confidence,
        verdict: c.verdict.into(),
        evidence: c.evidence.clone(),
    }
}

fn change(c: &Change) -> api::Change {
    api::Change {
        at: time_of(c.at),
        kind: c.kind.clone(),
        subject: subject(&c.subject),
        summary: c.summary.clone(),
        event_id: c.event_id.clone(),
    }
}

fn subject(s: &Subject) -> api::Subject {
    match s {
        Subject::Function(name) => api::Subject::Function(name.clone()),
        Subject::Device(id) => api::Subject::Device(id.clone()),
        Subject::Group(name) => api::Subject::Group(name.clone()),
        Subject::Platform => api::Subject::Platform,
    }
}
