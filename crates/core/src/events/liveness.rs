//! The control plane's liveness records: a device that went quiet past its
//! cadence, and one that spoke again. Recorded by the control plane's
//! liveness check (`glassbox-server`'s `control/`); read by metrics
//! (`device_silences`), diagnosis (a silence is an anomaly of the device)
//! and `devices inspect`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Payload;

/// A device went quiet (data: [`Silent`]).
pub const DEVICE_SILENT: &str = "device.silent";
/// A silent device spoke again (data: [`Active`]).
pub const DEVICE_ACTIVE: &str = "device.active";

/// The data of a [`DEVICE_SILENT`] event, recorded once per silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silent {
    /// Why it counts as silent, in words (its cadence, connected or not).
    pub reason: String,
    /// Its last message; none when it never sent one.
    pub last_message: Option<DateTime<Utc>>,
}

/// The data of a [`DEVICE_ACTIVE`] event, recorded when a silent device's
/// next message (or connect) arrives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Active {
    /// How long it had been flagged silent.
    pub silent_for_seconds: f64,
}

impl Payload for Silent {
    const TYPE: &'static str = DEVICE_SILENT;
}

impl Payload for Active {
    const TYPE: &'static str = DEVICE_ACTIVE;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_payloads_round_trip_as_documented() {
        let at = DateTime::parse_from_rfc3339("2026-12-05T07:00:00.5Z").unwrap().to_utc();
        let silent =
            Silent { reason: "silent for 16s; its declared cadence is every 5s".into(), last_message: Some(at) };
        let json = serde_json::json!({
            "reason": "silent for 16s; its declared cadence is every 5s", "last_message": "2026-12-05T07:00:00.500Z",
        });
        assert_eq!(serde_json::to_value(&silent).unwrap(), json);
        assert_eq!(serde_json::from_value::<Silent>(json).unwrap(), silent);
        let never = serde_json::json!({ "reason": "never spoke", "last_message": null });
        assert_eq!(serde_json::to_value(Silent { reason: "never spoke".into(), last_message: None }).unwrap(), never);
        let active = serde_json::json!({ "silent_for_seconds": 42.5 });
        assert_eq!(serde_json::to_value(Active { silent_for_seconds: 42.5 }).unwrap(), active);
        assert_eq!(serde_json::from_value::<Active>(active).unwrap(), Active { silent_for_seconds: 42.5 });
    }
}
