//! One series' detector: each point is forecast by the [`Baseline`], its
//! error is standardised by the usual error size, and five questions are
//! asked of it, each answered with a probability from this series' own
//! history ([`Tail`]):
//!
//! - **point**: how unusual is this one error? (spikes, dips, the first
//!   points of a shift);
//! - **shift**: how unusual is the mean of the recent standardised errors,
//!   compared with the usual spread of that mean? (level shifts, trend
//!   changes, a seasonal pattern that fails to happen; like Numenta's
//!   anomaly likelihood, comparing a short window with the long run);
//! - **drift**: the same over a longer window (trend changes, small
//!   lasting shifts);
//! - **spread**: the same for the mean of their sizes (variance changes, a
//!   stuck sensor);
//! - **silence**: how unusual is the gap since the previous point?
//!
//! The smallest probability, corrected for asking five questions, becomes
//! the score: `-log10(p) / 10`, clamped to `[0, 1]`. The [`EpisodeTracker`]
//! turns scores into one alert per episode.

use crate::baseline::{Baseline, Forecast};
use crate::cadence::{Cadence, Skip};
use crate::episode::{Episode, EpisodeTracker, Signal, Transition};
use crate::settings::{InvalidSettings, Settings};
use crate::stats::EwmVar;
use crate::tail::{Prior, Shapes, Tail};

/// Values (in the series' unit) are clamped to this magnitude, so that
/// differences stay finite. Nothing squares a value.
const VALUE_MAX: f64 = 1e300;
/// A standardised error when there is no error scale yet (a constant
/// series that changes).
const Z_MAX: f64 = 1e6;
/// Errors enter the recent-window statistics clipped to this many scales.
const WINDOW_Z_CLIP: f64 = 6.0;
/// The recent windows: exponential averages over about this many points
/// (short: shifts; long: drifts and small lasting shifts).
const SHIFT_POINTS: f64 = 10.0;
const DRIFT_POINTS: f64 = 30.0;
/// The drift question compares values with a slow reference level that
/// forgets over about this many points.
const REFERENCE_POINTS: f64 = 240.0;
/// The spread of a window statistic is at least this (in scales).
const WINDOW_STD_MIN: f64 = 0.05;
/// Errors of at least this many scales, of one sign, form a run.
const RUN_Z: f64 = 2.0;
/// Points before the long-run statistics start learning (the first errors
/// are measured against a scale that is still forming).
const SETTLE_POINTS: u64 = 50;
/// The number of questions asked of each point (Bonferroni correction).
const QUESTIONS: f64 = 5.0;
/// `score = -log10(p) / SCORE_DECADES`.
const SCORE_DECADES: f64 = 10.0;
/// Threshold (in standardised units) of the tails, and their prior.
const TAIL_THRESHOLD: f64 = 2.5;
const TAIL_PRIOR: Prior = Prior { rate: 0.02, mean_excess: 0.5, weight: 50.0, heavy: 0.5 };

/// Where a point stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Scored against the learned normal.
    Scored,
    /// Learned, but the detector is still in its warm-up: score 0, no alert.
    WarmingUp,
    /// Not used (not learned, not scored), and why.
    Skipped(Skip),
}

/// The detector's verdict on one point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    /// How unusual the point is, in `[0, 1]`: behaviour with a probability
    /// of about `10^(-10 score)` under the learned normal.
    pub score: f64,
    /// True only at the first point of a new episode: raise one alert now.
    pub anomalous: bool,
    pub status: Status,
    /// The forecast the point was compared with, once there is one.
    pub expected: Option<f64>,
    /// What contributed most to the score.
    pub signal: Option<Signal>,
    /// The score of each question asked of the point (same scale as
    /// `score`, before the correction for asking several), and the error in
    /// usual error sizes: why the score is what it is.
    pub parts: Parts,
    /// An episode that ended at this point.
    pub ended: Option<Episode>,
}

/// The parts of a point's score.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Parts {
    /// This point's error alone.
    pub point: f64,
    /// The mean of the recent errors (a shift of level).
    pub shift: f64,
    /// The mean of the errors over a longer window (a drift).
    pub drift: f64,
    /// The mean size of the recent errors (a change of variability).
    pub spread: f64,
    /// The gap since the previous point.
    pub silence: f64,
    /// This point's error, in usual error sizes (signed).
    pub deviation: f64,
}

impl Observation {
    fn unscored(status: Status) -> Self {
        Self {
            score: 0.0,
            anomalous: false,
            status,
            expected: None,
            signal: None,
            parts: Parts::default(),
            ended: None,
        }
    }
}

/// An error in usual error sizes; with no usual size yet (a constant
/// series), any change is as large as it gets.
fn standardise(residual: f64, sigma: f64) -> f64 {
    match (residual, sigma) {
        (0.0, _) => 0.0,
        (r, s) if s > 0.0 => (r / s).clamp(-Z_MAX, Z_MAX),
        (r, _) => Z_MAX.copysign(r),
    }
}

/// The power of two nearest a value's magnitude (1 for zero): dividing by
/// it is exact.
fn unit_of(value: f64) -> f64 {
    if value == 0.0 {
        return 1.0;
    }
    2f64.powi(value.abs().log2().round().clamp(-1000.0, 1000.0) as i32)
}

fn score_of(p: f64) -> f64 {
    // `+ 0.0` turns the -0 of p = 1 into 0.
    (-p.max(f64::MIN_POSITIVE).log10() / SCORE_DECADES).clamp(0.0, 1.0) + 0.0
}

/// A short exponential average of a standardised statistic, judged against
/// the long-run distribution of that same average.
#[derive(Clone, Debug)]
struct Window {
    points: f64,
    short: f64,
    long: EwmVar,
    tail: Tail,
}

impl Window {
    fn new(points: f64, alpha: f64) -> Self {
        Self {
            points,
            short: 0.0,
            long: EwmVar::new(alpha),
            tail: Tail::new(TAIL_THRESHOLD, Shapes::Light, alpha, TAIL_PRIOR),
        }
    }

    /// The short average with `x` added, and its deviation from the long run.
    fn next(&self, x: f64) -> (f64, f64) {
        let short = self.short + (x - self.short) / self.points;
        if self.long.seen() < 1.0 {
            return (short, 0.0);
        }
        (short, (short - self.long.mean()) / self.long.std().max(WINDOW_STD_MIN))
    }

    fn learn(&mut self, short: f64, deviation: f64, settled: bool) {
        self.short = short;
        if settled {
            self.long.update(short);
            self.tail.update(deviation.abs());
        }
    }

    /// Forgets the recent past: the window starts again at the long-run mean.
    fn reset(&mut self) {
        self.short = self.long.mean();
    }
}

/// The streaming detector of one series: constant memory (a few KiB) and
/// O(1) work per point. Feed it points in time order with
/// [`Detector::observe`]; see the crate documentation for what it learns.
#[derive(Clone, Debug)]
pub struct Detector {
    settings: Settings,
    cadence: Cadence,
    baseline: Baseline,
    point: Tail,
    shift: Window,
    drift: Window,
    spread: Window,
    /// The slow reference level of the drift question.
    reference: Option<f64>,
    /// Values are learned divided by this power of two (from the first
    /// value), so series of any magnitude, 1e-300 or 1e300, are alike.
    unit: Option<f64>,
    episodes: EpisodeTracker,
    points: u64,
    run: i64,
}

impl Default for Detector {
    fn default() -> Self {
        Self::build(Settings::default())
    }
}

/// The probabilities of one point, before they become a score.
struct Judgement {
    p: f64,
    signal: Signal,
    parts: Parts,
    z: f64,
    shift: (f64, f64),
    drift: (f64, f64),
    spread: (f64, f64),
}

impl Detector {
    pub fn new(settings: Settings) -> Result<Self, InvalidSettings> {
        settings.validate()?;
        Ok(Self::build(settings))
    }

    fn build(settings: Settings) -> Self {
        let alpha = 1.0 / f64::from(settings.memory_points);
        let episodes = EpisodeTracker::new(settings.threshold, settings.calm_threshold, settings.calm_points);
        Self {
            cadence: Cadence::new(alpha),
            baseline: Baseline::new(settings.seasonality, alpha, settings.relearn_points as usize),
            point: Tail::new(TAIL_THRESHOLD, Shapes::LightOrHeavy, alpha, TAIL_PRIOR),
            shift: Window::new(SHIFT_POINTS, alpha),
            drift: Window::new(DRIFT_POINTS, alpha),
            spread: Window::new(SHIFT_POINTS, alpha),
            reference: None,
            unit: None,
            episodes,
            points: 0,
            run: 0,
            settings,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The learned interval between points, in seconds, once known.
    pub fn interval(&self) -> Option<f64> {
        self.cadence.interval()
    }

    /// The forecasting model in use: `steady`, `follow`, `daily`, `weekly`
    /// (or `none` before the first point).
    pub fn model(&self) -> &'static str {
        self.baseline.model_name()
    }

    /// The memory this detector holds, in bytes (constant once its
    /// seasonal profiles exist: a few KiB).
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.baseline.heap_bytes()
    }

    /// The daily and the weekly model's errors for `value` at `t`, in
    /// their usual error sizes, once each has learned a period; learns
    /// nothing (see [`crate::Backtest`]).
    pub(crate) fn seasonal_errors(&self, t: f64, value: f64) -> [Option<f64>; 2] {
        match self.unit {
            Some(unit) if value.is_finite() => {
                self.baseline.seasonal_errors(t, (value / unit).clamp(-VALUE_MAX, VALUE_MAX))
            }
            _ => [None, None],
        }
    }

    /// The open episode, if any.
    pub fn episode(&self) -> Option<&Episode> {
        self.episodes.open()
    }

    /// Scores the point (`t` in seconds, any epoch), then learns from it.
    /// Non-finite values and times, duplicate and out-of-order timestamps
    /// are skipped without touching what was learned.
    pub fn observe(&mut self, t: f64, value: f64) -> Observation {
        let ratio = match self.cadence.check(t) {
            Ok(ratio) => ratio,
            Err(skip) => return Observation::unscored(Status::Skipped(skip)),
        };
        if !value.is_finite() {
            return Observation::unscored(Status::Skipped(Skip::NotFinite));
        }
        let unit = *self.unit.get_or_insert_with(|| unit_of(value));
        let x = (value / unit).clamp(-VALUE_MAX, VALUE_MAX);
        let forecast = self.baseline.forecast(t, x).map(|f| self.with_measurement_noise(f, unit));
        let p_gap = self.cadence.p(ratio, self.settings.silence_intervals_min);
        let judgement = forecast.map(|f| self.judge(&f, p_gap));
        self.learn(t, x, forecast.as_ref(), judgement.as_ref());
        let mut observation = Observation::unscored(Status::Scored);
        observation.expected = forecast.map(|f| f.expected * unit);
        observation.parts = judgement.as_ref().map(|j| j.parts).unwrap_or_default();
        match judgement {
            Some(j) => self.conclude(t, observation, j.p, j.signal),
            None => self.conclude(t, observation, 1.0, Signal::Spike),
        }
    }

    /// For a live host, between points: how unusual is it that nothing has
    /// arrived by `now`? Scores the silence and may open an episode; learns
    /// nothing.
    pub fn silence(&mut self, now: f64) -> Observation {
        let ratio = match (self.cadence.last(), self.cadence.interval()) {
            (Some(last), Some(interval)) if now > last => Some((now - last) / interval),
            _ => None,
        };
        let p = self.cadence.p(ratio, self.settings.silence_intervals_min);
        let mut observation = Observation::unscored(Status::Scored);
        observation.parts.silence = score_of(p);
        self.conclude(now, observation, (QUESTIONS * p).min(1.0), Signal::Silence)
    }

    /// The error scale is at least the measurement's own noise: the
    /// resolution, and for counts the Poisson noise of the expected count
    /// (both in the series' unit, then back to the learned one).
    fn with_measurement_noise(&self, mut forecast: Forecast, unit: f64) -> Forecast {
        let poisson = ((forecast.expected * unit).max(0.0) * self.settings.count_unit).sqrt();
        let floor = self.settings.resolution.max(poisson);
        forecast.sigma = forecast.sigma.max(floor / unit);
        forecast
    }

    fn judge(&self, forecast: &Forecast, p_gap: f64) -> Judgement {
        let z = standardise(forecast.residual, forecast.sigma);
        let clipped = z.clamp(-WINDOW_Z_CLIP, WINDOW_Z_CLIP);
        let from_reference = self.reference.map_or(0.0, |r| standardise(forecast.deseasonalized - r, forecast.sigma));
        let shift = self.shift.next(clipped);
        let drift = self.drift.next(from_reference.clamp(-WINDOW_Z_CLIP, WINDOW_Z_CLIP));

        let spread = self.spread.next(clipped.abs());
        let candidates = [
            (self.point.p(z.abs()), if z >= 0.0 { Signal::Spike } else { Signal::Dip }),
            (self.shift.tail.p(shift.1.abs()), if shift.1 >= 0.0 { Signal::LevelUp } else { Signal::LevelDown }),
            (self.drift.tail.p(drift.1.abs()), if drift.1 >= 0.0 { Signal::DriftUp } else { Signal::DriftDown }),
            (
                self.spread.tail.p(spread.1.abs()),
                if spread.1 >= 0.0 { Signal::MoreVariable } else { Signal::LessVariable },
            ),
            (p_gap, Signal::Silence),
        ];
        let parts = Parts {
            point: score_of(candidates[0].0),
            shift: score_of(candidates[1].0),
            drift: score_of(candidates[2].0),
            spread: score_of(candidates[3].0),
            silence: score_of(candidates[4].0),
            deviation: z,
        };
        let (p, signal) =
            candidates.into_iter().fold((1.0, Signal::Spike), |best, c| if c.0 < best.0 { c } else { best });
        Judgement { p: (QUESTIONS * p).min(1.0), signal, parts, z, shift, drift, spread }
    }

    fn learn(&mut self, t: f64, x: f64, forecast: Option<&Forecast>, judgement: Option<&Judgement>) {
        self.cadence.learn(t);
        let switched = self.baseline.learn(t, x, self.cadence.interval());
        self.points += 1;
        self.learn_reference(forecast, switched);
        let Some(j) = judgement else { return };
        let settled = self.points > SETTLE_POINTS;
        if settled {
            self.point.update(j.z.abs());
        }
        self.shift.learn(j.shift.0, j.shift.1, settled);
        self.drift.learn(j.drift.0, j.drift.1, settled);
        self.spread.learn(j.spread.0, j.spread.1, settled);
        self.run = match (j.z >= RUN_Z, j.z <= -RUN_Z) {
            (true, _) => self.run.max(0) + 1,
            (_, true) => self.run.min(0) - 1,
            _ => 0,
        };
        let lasting = self.episodes.open().is_some_and(|e| e.points % u64::from(self.settings.relearn_points) == 0);
        if self.run.unsigned_abs() >= u64::from(self.settings.relearn_points) || lasting {
            self.baseline.relearn_level();
            self.shift.reset();
            self.drift.reset();
            self.reference = Some(self.baseline.level());
            self.run = 0;
        }
    }

    /// Follows the deseasonalised values slowly (each step clipped, like the
    /// levels); starts again at the new model's level when the model changes.
    fn learn_reference(&mut self, forecast: Option<&Forecast>, switched: bool) {
        let (Some(f), Some(r)) = (forecast, self.reference) else {
            self.reference = Some(self.baseline.level());
            return;
        };
        if switched {
            self.reference = Some(self.baseline.level());
            return;
        }
        let bound = if f.sigma > 0.0 { WINDOW_Z_CLIP * f.sigma } else { f64::INFINITY };
        self.reference = Some(r + (f.deseasonalized - r).clamp(-bound, bound) / REFERENCE_POINTS);
    }

    fn conclude(&mut self, t: f64, mut observation: Observation, p: f64, signal: Signal) -> Observation {
        if self.points <= u64::from(self.settings.warmup_points) {
            observation.status = Status::WarmingUp;
            return observation;
        }
        let score = score_of(p);
        observation.score = score;
        observation.signal = (score > 0.0).then_some(signal);
        match self.episodes.observe(t, score, signal) {
            Transition::Started => observation.anomalous = true,
            Transition::Ended(episode) => observation.ended = Some(episode),
            Transition::None => {}
        }
        observation
    }
}
