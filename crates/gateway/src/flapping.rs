//! Flapping: a device that reconnects too often. Tracks each device's recent
//! connects in a sliding window and says when it crosses the threshold, once
//! per episode, so a reconnect storm raises one event, not hundreds.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Most devices tracked at once. When full, devices quiet for a whole window
/// are forgotten; if all are active, a new device goes untracked.
pub const TRACKED_DEVICES_MAX: usize = 100_000;

#[derive(Debug, Clone)]
pub struct FlapSettings {
    /// Connects within `window` that make a device flapping. Default 5.
    pub connects: usize,
    /// Default one minute.
    pub window: Duration,
}

impl Default for FlapSettings {
    fn default() -> Self {
        Self { connects: 5, window: Duration::from_secs(60) }
    }
}

/// What a connect means for a device's flapping state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flap {
    /// Within bounds.
    Steady,
    /// Crossed the threshold now: raise `device.flapping` once.
    Started { connects: usize },
    /// Still flapping: already reported.
    Continuing,
}

#[derive(Debug, Default)]
pub struct FlapDetector {
    settings: FlapSettings,
    devices: HashMap<String, Track>,
}

#[derive(Debug, Default)]
struct Track {
    connects: VecDeque<Instant>,
    flapping: bool,
    last_seen: Option<Instant>,
}

impl FlapDetector {
    pub fn new(settings: FlapSettings) -> Self {
        Self { settings, devices: HashMap::new() }
    }

    /// Records a connect of `device` at `now`.
    pub fn connected(&mut self, device: &str, now: Instant) -> Flap {
        if !self.devices.contains_key(device) && self.devices.len() >= TRACKED_DEVICES_MAX {
            self.forget_quiet(now);
            if self.devices.len() >= TRACKED_DEVICES_MAX {
                // Full of devices active within the window: this one goes untracked.
                return Flap::Steady;
            }
        }
        let window = self.settings.window;
        let threshold = self.settings.connects.max(1);
        let track = self.devices.entry(device.to_string()).or_default();
        track.last_seen = Some(now);
        track.connects.push_back(now);
        while track.connects.front().is_some_and(|t| now.duration_since(*t) > window) {
            track.connects.pop_front();
        }
        // Only the last `threshold` connects matter.
        while track.connects.len() > threshold {
            track.connects.pop_front();
        }
        match (track.connects.len() >= threshold, track.flapping) {
            (true, false) => {
                track.flapping = true;
                Flap::Started { connects: track.connects.len() }
            }
            (true, true) => Flap::Continuing,
            (false, _) => {
                track.flapping = false;
                Flap::Steady
            }
        }
    }

    /// Drops devices not seen within the window: they cannot be flapping.
    fn forget_quiet(&mut self, now: Instant) {
        let window = self.settings.window;
        self.devices.retain(|_, t| t.last_seen.is_some_and(|seen| now.duration_since(seen) <= window));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconnect_storm_is_reported_once_and_ends_when_it_calms() {
        let mut detector = FlapDetector::new(FlapSettings { connects: 3, window: Duration::from_secs(10) });
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(detector.connected("d1", at(0)), Flap::Steady);
        assert_eq!(detector.connected("d1", at(1)), Flap::Steady);
        assert_eq!(detector.connected("d1", at(2)), Flap::Started { connects: 3 });
        assert_eq!(detector.connected("d1", at(3)), Flap::Continuing);
        assert_eq!(detector.connected("d2", at(3)), Flap::Steady, "per device");
        assert_eq!(detector.connected("d1", at(30)), Flap::Steady, "the window has passed");
        assert_eq!(detector.connected("d1", at(31)), Flap::Steady);
        assert_eq!(detector.connected("d1", at(32)), Flap::Started { connects: 3 }, "a new episode");
    }
}
