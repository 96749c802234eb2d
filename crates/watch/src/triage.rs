//! What operators said about what the diagnosis found: incidents
//! acknowledged ("someone is on it") or resolved ("dealt with"), and
//! subjects silenced for a maintenance window (their anomalies are still
//! detected and recorded, but raise no alert).
//!
//! Each saying is an event on the record, with who and why; this is their
//! view in memory, rebuilt from the record at start. Bounded: the newest
//! [`INCIDENTS_MAX`] incidents' notes and [`SILENCES_MAX`] silences are kept
//! (expired silences go first).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use glassbox_core::{AnomalySubject, IncidentNote, Silenced};

/// Incidents whose notes are kept; beyond, the oldest incident's go.
pub const INCIDENTS_MAX: usize = 10_000;
/// Silences kept; beyond, a new one is refused (expired ones are forgotten first).
pub const SILENCES_MAX: usize = 1_000;

/// What was said about one incident, newest of each kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentState {
    pub acknowledged: Option<Said>,
    pub resolved: Option<Said>,
}

/// One saying: the note and who, when.
#[derive(Debug, Clone, PartialEq)]
pub struct Said {
    pub note: IncidentNote,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub struct Triage {
    /// By incident (start, id): unique across restarts.
    incidents: BTreeMap<(DateTime<Utc>, u64), IncidentState>,
    /// By subject: the newest silence of each (a later one replaces it).
    silences: BTreeMap<String, (Silenced, DateTime<Utc>)>,
}

/// Which kind of saying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saying {
    Acknowledged,
    Resolved,
}

impl Triage {
    /// Notes that `note` was said (`kind`) at `at`; an older saying of the
    /// same kind than the one held changes nothing.
    pub fn note(&mut self, kind: Saying, note: IncidentNote, at: DateTime<Utc>) {
        let key = (note.incident_start, note.incident);
        let state = self.incidents.entry(key).or_default();
        let slot = match kind {
            Saying::Acknowledged => &mut state.acknowledged,
            Saying::Resolved => &mut state.resolved,
        };
        if slot.as_ref().is_none_or(|held| held.at <= at) {
            *slot = Some(Said { note, at });
        }
        while self.incidents.len() > INCIDENTS_MAX {
            self.incidents.pop_first();
        }
    }

    /// What was said about incident `id` that started at `start`.
    pub fn incident(&self, id: u64, start: DateTime<Utc>) -> IncidentState {
        self.incidents.get(&(start, id)).cloned().unwrap_or_default()
    }

    /// Notes a silence said at `at`; refused when [`SILENCES_MAX`] other
    /// subjects are silenced now.
    pub fn silence(&mut self, silenced: Silenced, at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), String> {
        self.silences.retain(|_, (s, _)| s.until > now);
        let key = silenced.subject.to_string();
        if !self.silences.contains_key(&key) && self.silences.len() >= SILENCES_MAX {
            return Err(format!("{SILENCES_MAX} subjects are silenced already; end one with `diagnose unsilence`"));
        }
        if self.silences.get(&key).is_none_or(|(_, held)| *held <= at) {
            self.silences.insert(key, (silenced, at));
        }
        Ok(())
    }

    /// The silence on `subject` in force at `now`, if any.
    pub fn silenced(&self, subject: &AnomalySubject, now: DateTime<Utc>) -> Option<&Silenced> {
        self.silences.get(&subject.to_string()).map(|(s, _)| s).filter(|s| s.until > now)
    }

    /// The silences in force at `now`, soonest to end first.
    pub fn silences(&self, now: DateTime<Utc>) -> Vec<Silenced> {
        let mut active: Vec<Silenced> =
            self.silences.values().map(|(s, _)| s.clone()).filter(|s| s.until > now).collect();
        active.sort_by_key(|s| s.until);
        active
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use glassbox_core::Principal;

    use super::*;

    fn note(incident: u64, start: DateTime<Utc>, text: &str) -> IncidentNote {
        IncidentNote { incident, incident_start: start, note: Some(text.into()), principal: Principal::system("test") }
    }

    #[test]
    fn an_incident_is_named_by_its_id_and_start_and_the_newest_saying_holds() {
        let (mut triage, now) = (Triage::default(), Utc::now());
        triage.note(Saying::Acknowledged, note(1, now, "on it"), now);
        triage.note(Saying::Acknowledged, note(1, now, "older"), now - TimeDelta::seconds(5));
        let state = triage.incident(1, now);
        assert_eq!(state.acknowledged.unwrap().note.note.as_deref(), Some("on it"));
        assert_eq!(state.resolved, None);
        let earlier_run = triage.incident(1, now - TimeDelta::hours(1));
        assert_eq!(earlier_run, IncidentState::default(), "the same id after a restart is another incident");
    }

    #[test]
    fn a_silence_holds_until_it_ends() {
        let (mut triage, now) = (Triage::default(), Utc::now());
        let fan = AnomalySubject::Function("fan".into());
        let until = now + TimeDelta::hours(2);
        let silence = Silenced { subject: fan.clone(), until, note: None, principal: Principal::system("test") };
        triage.silence(silence, now, now).unwrap();
        assert!(triage.silenced(&fan, now + TimeDelta::hours(1)).is_some());
        assert!(triage.silenced(&fan, until).is_none(), "over at its end");
        assert!(triage.silenced(&AnomalySubject::Platform, now).is_none());
        assert_eq!(triage.silences(now).len(), 1);
        assert!(triage.silences(until).is_empty());
    }

    #[test]
    fn silences_are_bounded() {
        let (mut triage, now) = (Triage::default(), Utc::now());
        let until = now + TimeDelta::hours(1);
        for i in 0..SILENCES_MAX {
            let subject = AnomalySubject::Device(format!("d{i}"));
            triage
                .silence(Silenced { subject, until, note: None, principal: Principal::system("t") }, now, now)
                .unwrap();
        }
        let one_more =
            Silenced { subject: AnomalySubject::Platform, until, note: None, principal: Principal::system("t") };
        assert!(triage.silence(one_more.clone(), now, now).unwrap_err().contains("unsilence"));
        assert!(triage.silence(one_more, until, until).is_ok(), "expired ones make room");
    }
}
