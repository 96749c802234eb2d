//! Liveness, apart from connection: each device's expected reporting
//! cadence (declared in its metadata, or learned from its messages), and
//! whether it has gone quiet — silent while connected for longer than the
//! cadence allows, or disconnected for longer than a bound. A device turning
//! silent raises `device.silent` once; talking again raises `device.active`.
//!
//! Fed by the recorded event stream (the bus, with what it skips read back
//! from the recorder), never by the hot path. Held
//! in memory: after a restart, cadences are learned again and a device is
//! judged from the first thing heard from it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use glassbox_core::{DEVICE_CONNECTED, DEVICE_DISCONNECTED, DEVICE_MESSAGE, RecordedEvent};
use serde::{Deserialize, Serialize};

/// How far past its cadence a connected device may go quiet.
const SILENCE_FACTOR: f64 = 3.0;
/// Intervals seen before a learned cadence is trusted.
const LEARN_AFTER: u32 = 3;
/// Weight of the newest interval in the learned cadence.
const LEARN_WEIGHT: f64 = 0.3;
/// Shortest silence ever flagged, however fast the cadence.
const SILENCE_MIN: Duration = Duration::from_secs(2);
/// Names remembered as not registered (so events naming them do not read
/// the registry each time); the memory is cleared when full.
const UNREGISTERED_MAX: usize = 10_000;

#[derive(Debug, Clone)]
pub struct LivenessSettings {
    /// A device disconnected longer than this is silent. Default 10 minutes.
    pub offline_max: Duration,
}

impl Default for LivenessSettings {
    fn default() -> Self {
        Self { offline_max: Duration::from_secs(600) }
    }
}

#[derive(Debug, Default)]
struct Track {
    connected: bool,
    since: Option<DateTime<Utc>>,
    last_message: Option<DateTime<Utc>>,
    learned: Option<f64>,
    intervals: u32,
    declared: Option<u64>,
    silent: Option<(DateTime<Utc>, String)>,
}

impl Track {
    fn cadence(&self) -> Option<(f64, CadenceSource)> {
        match (self.declared, self.learned) {
            (Some(d), _) => Some((d as f64, CadenceSource::Declared)),
            (None, Some(l)) if self.intervals >= LEARN_AFTER => Some((l, CadenceSource::Learned)),
            _ => None,
        }
    }
}

/// Where a device's expected cadence comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CadenceSource {
    /// Its metadata (`devices set --cadence`).
    Declared,
    /// The intervals between its messages.
    Learned,
}

impl CadenceSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CadenceSource::Declared => "declared",
            CadenceSource::Learned => "learned",
        }
    }
}

/// One device's liveness, as shown by `devices inspect` and the list filters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LivenessView {
    pub connected: bool,
    pub since: Option<DateTime<Utc>>,
    pub last_message: Option<DateTime<Utc>>,
    pub cadence_seconds: Option<f64>,
    pub cadence_source: Option<CadenceSource>,
    pub silent: bool,
    pub silent_since: Option<DateTime<Utc>>,
    pub silent_reason: Option<String>,
}

/// A change worth an event.
pub enum Change {
    Silent { device: String, reason: String, last_message: Option<DateTime<Utc>> },
    Active { device: String, silent_for: Duration },
}

pub struct Liveness {
    settings: LivenessSettings,
    tracks: Mutex<HashMap<String, Track>>,
    unregistered: Mutex<std::collections::HashSet<String>>,
}

impl Liveness {
    pub fn new(settings: LivenessSettings) -> Self {
        Self { settings, tracks: Mutex::new(HashMap::new()), unregistered: Mutex::default() }
    }

    fn tracks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Track>> {
        self.tracks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the device is tracked yet (its declared cadence then known).
    pub fn knows(&self, device: &str) -> bool {
        self.tracks().contains_key(device)
    }

    pub fn declare(&self, device: &str, cadence_seconds: Option<u64>) {
        self.tracks().entry(device.to_string()).or_default().declared = cadence_seconds;
    }

    /// Starts tracking a device with the cadence read from the registry,
    /// unless it is tracked already: a [`Liveness::declare`] that raced the
    /// read is newer than what was read.
    pub fn track(&self, device: &str, cadence_seconds: Option<u64>) {
        self.tracks()
            .entry(device.to_string())
            .or_insert_with(|| Track { declared: cadence_seconds, ..Track::default() });
    }

    /// Stops tracking a device (deleted).
    pub fn forget(&self, device: &str) {
        self.tracks().remove(device);
    }

    /// Whether the registry said `name` is no device (and has not registered since).
    pub fn unregistered(&self, name: &str) -> bool {
        self.unregistered.lock().unwrap_or_else(|e| e.into_inner()).contains(name)
    }

    /// The registry says `name` is no device.
    pub fn note_unregistered(&self, name: &str) {
        let mut names = self.unregistered.lock().unwrap_or_else(|e| e.into_inner());
        if names.len() >= UNREGISTERED_MAX {
            names.clear();
        }
        names.insert(name.to_string());
    }

    /// `name` was registered: events naming it are looked up again.
    pub fn registered(&self, name: &str) {
        self.unregistered.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
    }

    /// Devices tracked.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.tracks().len()
    }

    /// Takes in one recorded event about a tracked device (one the registry
    /// knows: see [`Liveness::track`]; events naming any other are ignored,
    /// so a claimed name costs nothing); says if it became active again.
    pub fn observe(&self, recorded: &RecordedEvent) -> Option<Change> {
        let event = &recorded.event;
        let device = event.device.as_deref()?;
        let at = recorded.states.first().map_or(event.time, |s| s.at);
        let mut tracks = self.tracks();
        let track = tracks.get_mut(device)?;
        match event.ty.as_str() {
            DEVICE_MESSAGE if event.source.starts_with("mqtt/") => {
                if let Some(last) = track.last_message {
                    let interval = (at - last).num_milliseconds().max(0) as f64 / 1000.0;
                    track.learned = Some(match track.learned {
                        None => interval,
                        Some(l) => l + LEARN_WEIGHT * (interval - l),
                    });
                    track.intervals += 1;
                }
                track.last_message = Some(at);
                track.connected = true;
            }
            DEVICE_CONNECTED => {
                track.connected = true;
                track.since = Some(at);
            }
            DEVICE_DISCONNECTED => {
                track.connected = false;
                track.since = Some(at);
                return None;
            }
            _ => return None,
        }
        let (since, _) = track.silent.take()?;
        let silent_for = (at - since).to_std().unwrap_or_default();
        Some(Change::Active { device: device.to_string(), silent_for })
    }

    /// Devices that turned silent by `now`, each reported once per episode.
    pub fn check(&self, now: DateTime<Utc>) -> Vec<Change> {
        let mut changes = Vec::new();
        for (device, track) in self.tracks().iter_mut() {
            if track.silent.is_some() {
                continue;
            }
            let reason = match track.connected {
                false => {
                    let Some(since) = track.since else { continue };
                    let away = (now - since).to_std().unwrap_or_default();
                    if away <= self.settings.offline_max {
                        continue;
                    }
                    format!("disconnected for {}", humantime::format_duration(round(away)))
                }
                true => {
                    let (Some((cadence, source)), Some(last)) = (track.cadence(), track.last_message) else { continue };
                    let quiet = (now - last).to_std().unwrap_or_default();
                    let allowed = Duration::from_secs_f64(cadence * SILENCE_FACTOR).max(SILENCE_MIN);
                    if quiet <= allowed {
                        continue;
                    }
                    format!(
                        "connected but silent for {}; its {} cadence is every {}",
                        humantime::format_duration(round(quiet)),
                        source.as_str(),
                        humantime::format_duration(round(Duration::from_secs_f64(cadence)))
                    )
                }
            };
            track.silent = Some((now, reason.clone()));
            changes.push(Change::Silent { device: device.clone(), reason, last_message: track.last_message });
        }
        changes
    }

    pub fn view(&self, device: &str) -> Option<LivenessView> {
        let tracks = self.tracks();
        let track = tracks.get(device)?;
        let cadence = track.cadence();
        Some(LivenessView {
            connected: track.connected,
            since: track.since,
            last_message: track.last_message,
            cadence_seconds: cadence.map(|(c, _)| (c * 1000.0).round() / 1000.0),
            cadence_source: cadence.map(|(_, s)| s),
            silent: track.silent.is_some(),
            silent_since: track.silent.as_ref().map(|(at, _)| *at),
            silent_reason: track.silent.as_ref().map(|(_, r)| r.clone()),
        })
    }
}

/// Whole seconds (milliseconds below ten seconds), for messages.
fn round(d: Duration) -> Duration {
    match d.as_secs() {
        0..10 => Duration::from_millis(d.as_millis() as u64),
        s => Duration::from_secs(s),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration as Span;
    use glassbox_core::{Draft, IdMinter};

    use super::*;

    fn event(device: &str, ty: &str, at: DateTime<Utc>) -> RecordedEvent {
        let source = if ty == "device.message" { format!("mqtt/{device}") } else { "glassbox/gateway".into() };
        let draft = Draft { source, ty: ty.into(), device: Some(device.into()), ..Draft::default() };
        let event = draft.into_event(IdMinter::new().mint(), at, None);
        RecordedEvent { event, states: Vec::new() }
    }

    #[test]
    fn a_learned_cadence_flags_silence_once_and_clears_on_the_next_message() {
        let live = Liveness::new(LivenessSettings::default());
        let t0 = Utc::now();
        live.track("d", None);
        live.observe(&event("d", "device.connected", t0));
        for i in 0..5 {
            live.observe(&event("d", "device.message", t0 + Span::seconds(10 * i)));
        }
        assert_eq!(live.view("d").unwrap().cadence_source, Some(CadenceSource::Learned));
        assert!(live.check(t0 + Span::seconds(60)).is_empty(), "within 3 x 10 s of the last message");
        let flagged = live.check(t0 + Span::seconds(75));
        assert!(
            matches!(&flagged[..], [Change::Silent { reason, .. }] if reason.contains("learned cadence is every 10s"))
        );
        assert!(live.check(t0 + Span::seconds(90)).is_empty(), "once per episode");
        assert!(live.view("d").unwrap().silent);
        let back = live.observe(&event("d", "device.message", t0 + Span::seconds(100)));
        let Some(Change::Active { silent_for, .. }) = back else { panic!("not active again") };
        assert!((silent_for.as_secs_f64() - 25.0).abs() < 0.01, "{silent_for:?}");
        assert!(!live.view("d").unwrap().silent);
    }

    #[test]
    fn a_declared_cadence_wins_and_a_long_disconnect_is_silence() {
        let live = Liveness::new(LivenessSettings { offline_max: Duration::from_secs(60) });
        let t0 = Utc::now();
        live.declare("d", Some(100));
        live.observe(&event("d", "device.message", t0));
        assert!(live.check(t0 + Span::seconds(250)).is_empty(), "3 x the declared 100 s");
        live.observe(&event("d", "device.disconnected", t0 + Span::seconds(260)));
        assert!(live.check(t0 + Span::seconds(300)).is_empty());
        let flagged = live.check(t0 + Span::seconds(330));
        assert!(matches!(&flagged[..], [Change::Silent { reason, .. }] if reason == "disconnected for 1m 10s"));
        let back = live.observe(&event("d", "device.connected", t0 + Span::seconds(400)));
        assert!(matches!(back, Some(Change::Active { .. })));
    }

    #[test]
    fn a_cadence_declared_while_the_registry_was_read_is_kept() {
        let live = Liveness::new(LivenessSettings::default());
        live.declare("d", Some(1));
        live.track("d", None);
        assert_eq!(live.view("d").unwrap().cadence_seconds, Some(1.0));
    }

    #[test]
    fn a_device_with_no_cadence_yet_is_not_judged() {
        let live = Liveness::new(LivenessSettings::default());
        let t0 = Utc::now();
        live.track("d", None);
        live.observe(&event("d", "device.message", t0));
        assert!(live.check(t0 + Span::days(1)).is_empty());
    }

    // Issue 16, finding 4: events naming unregistered devices (claimed names
    // of refused connections) leave no entry; a deleted device's goes.
    #[test]
    fn only_tracked_devices_get_an_entry_and_a_forgotten_one_goes() {
        let live = Liveness::new(LivenessSettings::default());
        let t0 = Utc::now();
        live.track("real", None);
        for i in 0..2000 {
            let claimed = format!("{i}{}", "x".repeat(30_000));
            live.observe(&event(&claimed, "device.connection_refused", t0));
            live.observe(&event(&claimed, "device.connected", t0));
        }
        assert_eq!(live.tracked(), 1);
        live.observe(&event("real", "device.connected", t0));
        assert!(live.view("real").unwrap().connected);
        live.forget("real");
        assert_eq!(live.tracked(), 0);
        live.note_unregistered("later");
        assert!(live.unregistered("later"));
        live.registered("later");
        assert!(!live.unregistered("later"), "registered since: looked up again");
    }
}
