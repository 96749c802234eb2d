//! `[control]`: the device control plane's settings as the configuration
//! file holds them, resolved into the services' own settings.

use std::time::Duration;

use glassbox_devices::ShadowLimits;
use serde::{Deserialize, Serialize};

use crate::LivenessSettings;

/// `[control]`: the device control plane.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Largest shadow (desired + reported, JSON bytes). Default 8192.
    pub shadow_bytes_max: usize,
    /// Deepest nesting of a shadow document. Default 6.
    pub shadow_depth_max: usize,
    /// A device disconnected longer than this raises `device.silent`. Default `10m`.
    #[serde(with = "glassbox_core::human_duration")]
    pub offline_max: Duration,
}

impl Default for ControlConfig {
    fn default() -> Self {
        let limits = ShadowLimits::default();
        Self {
            shadow_bytes_max: limits.bytes_max,
            shadow_depth_max: limits.depth_max,
            offline_max: LivenessSettings::default().offline_max,
        }
    }
}

impl ControlConfig {
    pub fn shadow_limits(&self) -> ShadowLimits {
        ShadowLimits { bytes_max: self.shadow_bytes_max, depth_max: self.shadow_depth_max }
    }

    pub fn liveness(&self) -> LivenessSettings {
        LivenessSettings { offline_max: self.offline_max }
    }
}
