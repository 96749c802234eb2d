//! The detector's settings. The defaults are meant for every series without
//! tuning; they are exposed so operators can try alternatives on their own
//! history (`glassbox anomaly backtest`).

pub use crate::baseline::Seasonality;

/// How a [`crate::Detector`] learns and when it raises an alert.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Score (in `[0, 1]`) at which an episode starts and one alert is
    /// raised. The score `s` of a point means "behaviour this unusual has a
    /// probability of about `10^(-10 s)` under this series' normal", so the
    /// default 0.5 is one in 100,000 points. Default 0.5.
    pub threshold: f64,
    /// Score below which a point counts as calm; an open episode ends after
    /// `calm_points` calm points in a row. Default 0.3 (one in 1,000).
    pub calm_threshold: f64,
    /// Calm points in a row that end an episode. Default 10.
    pub calm_points: u32,
    /// Points learned before any score or alert; scores are 0 meanwhile.
    /// Default 150.
    pub warmup_points: u32,
    /// An episode still anomalous after this many points re-learns the
    /// series' level from its last this-many points, so a lasting level
    /// shift becomes the new normal and the episode can end. Default 16.
    pub relearn_points: u32,
    /// How many recent points the long-run statistics weigh (their memory):
    /// the error distribution, the tails, the choice of model. Default 2000.
    pub memory_points: u32,
    /// A gap shorter than this many learned intervals is never a silence,
    /// however regular the series. Default 5.
    pub silence_intervals_min: f64,
    /// Which seasonal profiles may be learned (each only when the data
    /// allow: at least 6 points per period, and two periods of history).
    /// Default weekly (daily and weekly).
    pub seasonality: Seasonality,
    /// The values count independent occurrences per point, each worth this
    /// much: 1 for a plain count (messages, failures), the amount of one for
    /// a sum of similar amounts (a cost: the price of one invocation). An
    /// error within the count's own Poisson noise — the square root of
    /// expected × `count_unit` — is never surprising. Without this, a low,
    /// quantised count (a device's 1, 2 or 3 messages per bucket, a
    /// schedule's 4 or 5 runs) learns an error scale far below one
    /// occurrence and alerts on a wobble of one. Default 0: not a count.
    pub count_unit: f64,
    /// The smallest error worth a surprise, in the series' unit: the
    /// usual error is never taken below it. For measurements whose small
    /// changes are noise of the measuring (a function's latency, timed on a
    /// busy host, wobbles by tens of microseconds). Default 0: none.
    pub resolution: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            calm_threshold: 0.3,
            calm_points: 10,
            warmup_points: 150,
            relearn_points: 16,
            memory_points: 2000,
            silence_intervals_min: 5.0,
            seasonality: Seasonality::Weekly,
            count_unit: 0.0,
            resolution: 0.0,
        }
    }
}

/// Settings that cannot work, every problem named.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("invalid anomaly settings: {}", .0.join("; "))]
pub struct InvalidSettings(pub Vec<String>);

impl Settings {
    /// Checks every field, reporting all problems at once.
    pub fn validate(&self) -> Result<(), InvalidSettings> {
        let mut problems = Vec::new();
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            problems.push(format!("threshold {} must be in (0, 1]", self.threshold));
        }
        if !(self.calm_threshold >= 0.0 && self.calm_threshold <= self.threshold) {
            problems
                .push(format!("calm threshold {} must be in [0, threshold {}]", self.calm_threshold, self.threshold));
        }
        if self.calm_points == 0 {
            problems.push("calm points must be at least 1".into());
        }
        if self.relearn_points < 3 {
            problems.push(format!("relearn points {} must be at least 3", self.relearn_points));
        }
        if self.memory_points < 50 {
            problems.push(format!("memory points {} must be at least 50", self.memory_points));
        }
        if !(self.resolution >= 0.0 && self.resolution.is_finite()) {
            problems.push(format!("resolution {} must be zero or more", self.resolution));
        }
        if !(self.count_unit >= 0.0 && self.count_unit.is_finite()) {
            problems.push(format!("count unit {} must be zero or more", self.count_unit));
        }
        if self.silence_intervals_min.is_nan() || self.silence_intervals_min < 1.0 {
            problems.push(format!("silence intervals min {} must be at least 1", self.silence_intervals_min));
        }
        if problems.is_empty() { Ok(()) } else { Err(InvalidSettings(problems)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Settings::default().validate(), Ok(()));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let settings = Settings { threshold: 2.0, calm_points: 0, memory_points: 10, ..Settings::default() };
        let err = settings.validate().unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(err.to_string().contains("threshold 2 must be in (0, 1]"), "{err}");
    }
}
