//! The learned normal: a forecast of each next value and the usual size of
//! the error, from which the detector's surprise is measured.
//!
//! A few small forecasting models run side by side on every point, and the
//! one with the lowest recent error is used (switching only for a clear
//! gain), so no per-series tuning is needed:
//!
//! - `steady`: a robust level (exponential average, each step's error
//!   clipped at a few scales so a spike barely moves it);
//! - `follow`: a fast level, for series that wander like a random walk;
//! - `daily` and `weekly`: a slow level plus a seasonal profile (the usual
//!   deviation from the level at each time of day or week, in bins with
//!   linear interpolation between their centres). They start once the
//!   sampling interval is known and may be chosen after two periods: one to
//!   learn the profile, one to prove it forecasts better.
//!
//! The error scale of each model is a robust exponential mean of its
//! non-zero absolute errors (clipped at a few scales). Leaving exact zeros
//! out keeps it meaningful for quantised and mostly-constant series, where
//! "the usual deviation" is the usual size of a change. Seasonal models also
//! learn the usual error at each phase, so a series that is noisier at busy
//! hours is judged by its busy-hour noise then and its quiet noise at night.

use std::collections::VecDeque;

use crate::stats::{Ewma, median};

pub(crate) const DAY_SECS: f64 = 86_400.0;
pub(crate) const WEEK_SECS: f64 = 7.0 * DAY_SECS;

/// Errors beyond this many scales are clipped when learning.
const CLIP_SCALES: f64 = 5.0;
/// Mean absolute error to standard deviation, for Gaussian errors.
const MEAN_ABS_TO_STD: f64 = 1.25;
const STEADY_ALPHA: f64 = 0.05;
const FOLLOW_ALPHA: f64 = 0.5;
const SCALE_ALPHA: f64 = 0.01;
/// A model replaces the one in use only if its error is this much lower.
const SWITCH_GAIN: f64 = 0.9;
const DAILY_BINS_MAX: f64 = 144.0;
const WEEKLY_BINS_MAX: f64 = 168.0;
/// A seasonal profile needs at least this many points per period.
const POINTS_PER_PERIOD_MIN: f64 = 6.0;
/// A phase's own error scale counts as this many visits of the series-wide
/// one, so a rarely visited phase leans on the series-wide scale.
const SPREAD_PRIOR_VISITS: f64 = 4.0;
/// A profile bin remembers roughly this many periods.
const PROFILE_MEMORY_PERIODS: f64 = 6.0;

/// Which kinds of seasonality the baseline may learn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seasonality {
    /// None: level models only.
    Off,
    /// A time-of-day profile.
    Daily,
    /// Time-of-day and time-of-week profiles (the better one is used).
    Weekly,
}

/// The forecast for one point, made before the point is learned.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Forecast {
    pub expected: f64,
    pub residual: f64,
    pub sigma: f64,
    /// The value less its seasonal part (the value itself without one).
    pub deseasonalized: f64,
}

/// The usual size of a model's error.
#[derive(Clone, Debug)]
struct Scale(Ewma);

impl Scale {
    fn sigma(&self) -> f64 {
        MEAN_ABS_TO_STD * self.0.mean()
    }

    fn learn(&mut self, residual: f64) {
        let a = residual.abs();
        if a == 0.0 {
            return;
        }
        let sigma = self.sigma();
        self.0.update(if sigma > 0.0 { a.min(CLIP_SCALES * sigma) } else { a });
    }
}

/// The usual deviation from the level at each phase of a period.
#[derive(Clone, Debug)]
struct Profile {
    period: f64,
    values: Vec<f64>,
    /// The usual absolute error at each phase (non-zero errors only).
    spreads: Vec<f64>,
    weights: Vec<f64>,
    weight_max: f64,
    cycle: i64,
}

impl Profile {
    fn new(period: f64, interval: f64, bins_max: f64, t: f64) -> Self {
        let per_period = period / interval;
        let bins = per_period.round().clamp(4.0, bins_max) as usize;
        let weight_max = (per_period / bins as f64 * PROFILE_MEMORY_PERIODS).max(1.0);
        let (values, spreads, weights) = (vec![0.0; bins], vec![0.0; bins], vec![0.0; bins]);
        Self { period, values, spreads, weights, weight_max, cycle: Self::cycle(t, period) }
    }

    fn cycle(t: f64, period: f64) -> i64 {
        (t / period).floor() as i64
    }

    /// The two bins around `t` and the weight of the second.
    fn locate(&self, t: f64) -> (usize, usize, f64) {
        let n = self.values.len();
        let phase = t.rem_euclid(self.period) / self.period * n as f64 - 0.5;
        let lo = phase.floor();
        let i = (lo as i64).rem_euclid(n as i64) as usize;
        (i, (i + 1) % n, phase - lo)
    }

    fn value(&self, t: f64) -> f64 {
        let (i, j, f) = self.locate(t);
        self.values[i] * (1.0 - f) + self.values[j] * f
    }

    /// (usual absolute error, weight) at `t`, interpolated.
    fn spread(&self, t: f64) -> (f64, f64) {
        let (i, j, f) = self.locate(t);
        let spread = self.spreads[i] * (1.0 - f) + self.spreads[j] * f;
        (spread, self.weights[i] * (1.0 - f) + self.weights[j] * f)
    }

    /// Learns the deviation `error` (of the value from level and profile)
    /// and the size of the model's error, `size` (0: not learned).
    fn learn(&mut self, t: f64, error: f64, size: f64) {
        let (i, j, f) = self.locate(t);
        for (k, w) in [(i, 1.0 - f), (j, f)] {
            if w > 0.0 {
                self.weights[k] = (self.weights[k] + w).min(self.weight_max);
                let step = w / self.weights[k];
                self.values[k] += error * step;
                if size > 0.0 {
                    self.spreads[k] += (size - self.spreads[k]) * step;
                }
            }
        }
    }

    /// Once per period, moves the profile's mean into the level (returned)
    /// so level and profile do not drift against each other.
    fn recentre(&mut self, t: f64) -> f64 {
        let cycle = Self::cycle(t, self.period);
        if cycle == self.cycle {
            return 0.0;
        }
        self.cycle = cycle;
        let mean = self.values.iter().sum::<f64>() / self.values.len() as f64;
        self.values.iter_mut().for_each(|v| *v -= mean);
        mean
    }
}

#[derive(Clone, Debug)]
struct Model {
    level: f64,
    alpha: f64,
    profile: Option<Profile>,
    scale: Scale,
    /// Recent clipped absolute error, to choose between models.
    error: Ewma,
    /// When the model's errors become comparable (its first period learned).
    comparable_at: f64,
    /// When it may be chosen.
    eligible_at: f64,
}

impl Model {
    fn level(level: f64, alpha: f64, selection_alpha: f64, t: f64) -> Self {
        let (scale, error) = (Scale(Ewma::new(SCALE_ALPHA)), Ewma::new(selection_alpha));
        Self { level, alpha, profile: None, scale, error, comparable_at: t, eligible_at: t }
    }

    fn seasonal(from: &Model, profile: Profile, interval: f64, selection_alpha: f64, t: f64) -> Self {
        let alpha = (interval / profile.period).clamp(1e-4, STEADY_ALPHA);
        let period = profile.period;
        let mut model = Self::level(from.level, alpha, selection_alpha, t);
        model.scale = from.scale.clone();
        model.profile = Some(profile);
        model.comparable_at = t + period;
        model.eligible_at = t + 2.0 * period;
        model
    }

    fn seasonal_part(&self, t: f64) -> f64 {
        self.profile.as_ref().map_or(0.0, |p| p.value(t))
    }

    fn expected(&self, t: f64) -> f64 {
        self.level + self.seasonal_part(t)
    }

    /// The usual error at `t`: the series-wide scale, or with a seasonal
    /// profile, that phase's own (once a period has been learned), shrunk
    /// toward the series-wide one while the phase has few visits.
    fn sigma(&self, t: f64) -> f64 {
        let global = self.scale.sigma();
        let Some(profile) = self.profile.as_ref().filter(|_| t >= self.comparable_at) else {
            return global;
        };
        let (spread, weight) = profile.spread(t);
        if spread <= 0.0 {
            return global;
        }
        (weight * MEAN_ABS_TO_STD * spread + SPREAD_PRIOR_VISITS * global) / (weight + SPREAD_PRIOR_VISITS)
    }

    fn learn(&mut self, t: f64, x: f64) {
        let residual = x - self.expected(t);
        let sigma = self.sigma(t);
        let bound = if sigma > 0.0 { CLIP_SCALES * sigma } else { f64::INFINITY };
        let clipped = residual.clamp(-bound, bound);
        if t >= self.comparable_at {
            self.error.update(clipped.abs());
        }
        self.scale.learn(residual);
        self.level += self.alpha * clipped;
        if let Some(profile) = &mut self.profile {
            profile.learn(t, (1.0 - self.alpha) * clipped, clipped.abs());
            self.level += profile.recentre(t);
        }
    }
}

/// The models, the one in use, and the last few points (to re-learn the
/// level after a shift).
#[derive(Clone, Debug)]
pub(crate) struct Baseline {
    models: Vec<Model>,
    active: usize,
    seasonality: Seasonality,
    seasonal_started: bool,
    selection_alpha: f64,
    recent: VecDeque<(f64, f64)>,
    recent_max: usize,
}

impl Baseline {
    pub(crate) fn new(seasonality: Seasonality, selection_alpha: f64, recent_max: usize) -> Self {
        Self {
            models: Vec::new(),
            active: 0,
            seasonality,
            seasonal_started: false,
            selection_alpha,
            recent: VecDeque::with_capacity(recent_max),
            recent_max: recent_max.max(1),
        }
    }

    /// The forecast for `t` and the error of `x` against it, once a point
    /// has been seen.
    pub(crate) fn forecast(&self, t: f64, x: f64) -> Option<Forecast> {
        let model = self.models.get(self.active)?;
        let expected = model.expected(t);
        let deseasonalized = x - model.seasonal_part(t);
        Some(Forecast { expected, residual: x - expected, sigma: model.sigma(t), deseasonalized })
    }

    /// The daily and the weekly model's errors for `x` at `t`, in their
    /// usual error sizes, once each has learned a period (else `None`).
    /// Learns nothing: for backtests, which ask the seasonal models about
    /// every point whichever model is in use.
    pub(crate) fn seasonal_errors(&self, t: f64, x: f64) -> [Option<f64>; 2] {
        let mut errors = [None, None];
        for m in &self.models {
            let Some(profile) = m.profile.as_ref().filter(|_| t >= m.comparable_at) else { continue };
            let sigma = m.sigma(t);
            let slot = usize::from(profile.period >= WEEK_SECS);
            errors[slot] = Some(if sigma > 0.0 { (x - m.expected(t)) / sigma } else { 0.0 });
        }
        errors
    }

    /// Bytes held on the heap (models, profiles, recent points).
    pub(crate) fn heap_bytes(&self) -> usize {
        let profiles: usize = self
            .models
            .iter()
            .filter_map(|m| m.profile.as_ref())
            .map(|p| (p.values.capacity() + p.spreads.capacity() + p.weights.capacity()) * size_of::<f64>())
            .sum();
        self.models.capacity() * size_of::<Model>() + profiles + self.recent.capacity() * size_of::<(f64, f64)>()
    }

    /// Which model is in use: `steady`, `follow`, `daily` or `weekly`.
    pub(crate) fn model_name(&self) -> &'static str {
        match self.models.get(self.active) {
            None => "none",
            Some(m) => match &m.profile {
                None if m.alpha >= FOLLOW_ALPHA => "follow",
                None => "steady",
                Some(p) if p.period >= WEEK_SECS => "weekly",
                Some(_) => "daily",
            },
        }
    }

    /// The level of the model in use.
    pub(crate) fn level(&self) -> f64 {
        self.models.get(self.active).map_or(0.0, |m| m.level)
    }

    /// Learns from the point; true if it made another model the one in use.
    pub(crate) fn learn(&mut self, t: f64, x: f64, interval: Option<f64>) -> bool {
        if self.recent.len() == self.recent_max {
            self.recent.pop_front();
        }
        self.recent.push_back((t, x));
        if self.models.is_empty() {
            self.models.push(Model::level(x, STEADY_ALPHA, self.selection_alpha, t));
            self.models.push(Model::level(x, FOLLOW_ALPHA, self.selection_alpha, t));
            return false;
        }
        if let Some(interval) = interval.filter(|_| !self.seasonal_started) {
            self.start_seasonal(t, interval);
        }
        self.align_errors(t);
        self.models.iter_mut().for_each(|m| m.learn(t, x));
        let before = self.active;
        self.select(t);
        self.active != before
    }

    /// Errors are compared over the same points: when a model's errors
    /// become comparable (its first period learned), every model's error
    /// average starts again.
    fn align_errors(&mut self, t: f64) {
        let newly_comparable =
            self.models.iter().any(|m| m.profile.is_some() && m.error.is_empty() && t >= m.comparable_at);
        if newly_comparable {
            self.models.iter_mut().for_each(|m| m.error = Ewma::new(self.selection_alpha));
        }
    }

    fn start_seasonal(&mut self, t: f64, interval: f64) {
        self.seasonal_started = true;
        let periods: &[(f64, f64)] = match self.seasonality {
            Seasonality::Off => &[],
            Seasonality::Daily => &[(DAY_SECS, DAILY_BINS_MAX)],
            Seasonality::Weekly => &[(DAY_SECS, DAILY_BINS_MAX), (WEEK_SECS, WEEKLY_BINS_MAX)],
        };
        for &(period, bins_max) in periods {
            if period / interval >= POINTS_PER_PERIOD_MIN {
                let profile = Profile::new(period, interval, bins_max, t);
                let model = Model::seasonal(&self.models[0], profile, interval, self.selection_alpha, t);
                self.models.push(model);
            }
        }
    }

    fn select(&mut self, t: f64) {
        let eligible = |m: &Model| t >= m.eligible_at && !m.error.is_empty();
        let best = (0..self.models.len())
            .filter(|&i| eligible(&self.models[i]))
            .min_by(|&a, &b| self.models[a].error.mean().total_cmp(&self.models[b].error.mean()));
        if let Some(best) = best
            && self.models[best].error.mean() < SWITCH_GAIN * self.models[self.active].error.mean()
        {
            self.active = best;
        }
    }

    /// Sets every model's level to the median of the last points (less
    /// their seasonal part): the series has moved and stayed there.
    pub(crate) fn relearn_level(&mut self) {
        for model in &mut self.models {
            let mut levels: Vec<f64> = self.recent.iter().map(|&(t, x)| x - model.seasonal_part(t)).collect();
            if let Some(level) = median(&mut levels) {
                model.level = level;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(baseline: &mut Baseline, points: impl Iterator<Item = (f64, f64)>) -> Vec<f64> {
        let mut errors = Vec::new();
        for (t, x) in points {
            if let Some(f) = baseline.forecast(t, x) {
                errors.push(f.residual.abs());
            }
            baseline.learn(t, x, Some(300.0));
        }
        errors
    }

    fn daily(t: f64) -> f64 {
        100.0 + 50.0 * (t / DAY_SECS * std::f64::consts::TAU).sin()
    }

    #[test]
    fn learns_a_daily_profile_and_chooses_it() {
        let mut b = Baseline::new(Seasonality::Weekly, 0.002, 16);
        let errors = run(&mut b, (0..288 * 5).map(|i| (i as f64 * 300.0, daily(i as f64 * 300.0))));
        assert_eq!(b.model_name(), "daily");
        let last_day = &errors[errors.len() - 288..];
        assert!(last_day.iter().all(|e| *e < 3.0), "max error {:?}", last_day.iter().cloned().fold(0.0, f64::max));
    }

    #[test]
    fn without_seasonality_a_level_model_is_used() {
        let mut b = Baseline::new(Seasonality::Off, 0.002, 16);
        run(&mut b, (0..288 * 5).map(|i| (i as f64 * 300.0, daily(i as f64 * 300.0))));
        assert!(["steady", "follow"].contains(&b.model_name()));
    }

    #[test]
    fn relearning_moves_the_level_to_the_recent_median() {
        let mut b = Baseline::new(Seasonality::Off, 0.002, 8);
        run(&mut b, (0..100).map(|i| (i as f64, 10.0)));
        run(&mut b, (100..108).map(|i| (i as f64, 50.0)));
        b.relearn_level();
        let f = b.forecast(108.0, 50.0).unwrap();
        assert_eq!(f.expected, 50.0);
    }
}
