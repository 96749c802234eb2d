//! `[metrics]`: what is derived, how topics become labels, how many series
//! a metric keeps, and who may scrape.

use serde::{Deserialize, Serialize};

use crate::topics::{self, TopicTemplates};
use crate::{SERIES_MAX, SERIES_PER_METRIC_MAX_DEFAULT, SeriesSettings};

/// `[metrics]`: the time series derived from the recorded stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Derive metrics from every recorded event. Off only to measure what
    /// deriving costs (`/metrics` then has no per-function series). Default true.
    pub derive: bool,
    /// Topic templates (MQTT filters, at most 64 of 128 bytes each): a
    /// message's `topic` label is the first one its topic matches, written
    /// as the template, else `other`. Default
    /// `["devices/+/telemetry", "devices/+/status", "devices/+/#"]`.
    pub topics: Vec<String>,
    /// Series one metric keeps; samples for new label sets beyond it are
    /// counted in the metric's one `other` series (and in
    /// `glassbox_metric_series_folded_total`). Default 2000.
    pub series_per_metric_max: usize,
    /// Serve `/metrics` without a token. Off: a scraper sends any valid
    /// token (Prometheus: `authorization: credentials_file`). Default false.
    pub public: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            derive: true,
            topics: topics::default_templates(),
            series_per_metric_max: SERIES_PER_METRIC_MAX_DEFAULT,
            public: false,
        }
    }
}

impl MetricsConfig {
    /// Every invalid value, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = TopicTemplates::new(&self.topics).err().unwrap_or_default();
        if !(1..=SERIES_MAX).contains(&self.series_per_metric_max) {
            problems.push(format!("metrics.series_per_metric_max must be between 1 and {SERIES_MAX}"));
        }
        problems
    }

    /// The series' settings (after [`problems`](Self::problems) found none).
    pub fn series_settings(&self) -> SeriesSettings {
        SeriesSettings {
            topics: TopicTemplates::new(&self.topics).unwrap_or_default(),
            series_per_metric_max: self.series_per_metric_max,
        }
    }
}
