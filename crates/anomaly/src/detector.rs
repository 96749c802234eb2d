//! One series' detector: each point is forecast by the [`Baseline`], its
//! error is standardised by the usual error size, and four questions are
//! asked of it, each answered with a probability from this series' own
//! history ([`Tail`]):
//!
//! - **point**: how unusual is this one error? (spikes, dips, the first
//!   points of a shift);
//! - **shift**: how unusual is the mean of the recent standardised errors,
//!   compared with the usual spread of that mean? (level shifts, trend
//!   changes, a seasonal pattern that fails to happen; like Numenta's
//!   anomaly likelihood, comparing a short window with the long run);
//! - **spread**: the same for the mean of their sizes (variance changes, a
//!   stuck sensor);
//! - **silence**: how unusual is the gap since the previous point?
//!
//! The smallest probability, corrected for asking four questions, becomes
//! the score: `-log10(p) / 10`, clamped to `[0, 1]`. The [`EpisodeTracker`]
//! turns scores into one alert per episode.

use crate::baseline::Baseline;
use crate::cadence::{Cadence, Skip};
use crate::episode::{Episode, EpisodeTracker, Signal, Transition};
use crate::settings::{InvalidSettings, Settings};
use crate::stats::EwmVar;
use crate::tail::{Prior, Tail};

/// Values are clamped to this magnitude, so that differences and squares
/// of differences stay finite.
const VALUE_MAX: f64 = 1e150;
/// A standardised error when there is no error scale yet (a constant
/// series that changes).
const Z_MAX: f64 = 1e6;
/// Errors enter the recent-window statistics clipped to this many scales.
const WINDOW_Z_CLIP: f64 = 6.0;
/// The recent window: an exponential average over about this many points.
const WINDOW_POINTS: f64 = 10.0;
/// The spread of a window statistic is at least this (in scales).
const WINDOW_STD_MIN: f64 = 0.05;
/// Errors of at least this many scales, of one sign, form a run.
const RUN_Z: f64 = 2.0;
/// Points before the long-run statistics start learning (the first errors
/// are measured against a scale that is still forming).
const SETTLE_POINTS: u64 = 20;
/// The number of questions asked of each point (Bonferroni correction).
const QUESTIONS: f64 = 4.0;
/// `score = -log10(p) / SCORE_DECADES`.
const SCORE_DECADES: f64 = 10.0;
/// Threshold (in standardised units) of the tails, and their prior.
const TAIL_THRESHOLD: f64 = 2.5;
const TAIL_PRIOR: Prior = Prior { rate: 0.02, mean_excess: 0.5, weight: 50.0 };

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
    /// An episode that ended at this point.
    pub ended: Option<Episode>,
}

impl Observation {
    fn unscored(status: Status) -> Self {
        Self { score: 0.0, anomalous: false, status, expected: None, signal: None, ended: None }
    }
}

/// A short exponential average of a standardised statistic, judged against
/// the long-run distribution of that same average.
#[derive(Clone, Debug)]
struct Window {
    short: f64,
    long: EwmVar,
    tail: Tail,
}

impl Window {
    fn new(alpha: f64) -> Self {
        Self { short: 0.0, long: EwmVar::new(alpha), tail: Tail::new(TAIL_THRESHOLD, alpha, TAIL_PRIOR) }
    }

    /// The short average with `x` added, and its deviation from the long run.
    fn next(&self, x: f64) -> (f64, f64) {
        let short = self.short + (x - self.short) / WINDOW_POINTS;
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
    spread: Window,
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
    z: f64,
    shift: (f64, f64),
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
            point: Tail::new(TAIL_THRESHOLD, alpha, TAIL_PRIOR),
            shift: Window::new(alpha),
            spread: Window::new(alpha),
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
        let x = value.clamp(-VALUE_MAX, VALUE_MAX);
        let forecast = self.baseline.forecast(t, x);
        let p_gap = self.cadence.p(ratio, self.settings.silence_intervals_min);
        let judgement = forecast.map(|f| self.judge(f.residual, f.sigma, p_gap));
        self.learn(t, x, judgement.as_ref());
        let mut observation = Observation::unscored(Status::Scored);
        observation.expected = forecast.map(|f| f.expected);
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
        let p = QUESTIONS * self.cadence.p(ratio, self.settings.silence_intervals_min);
        self.conclude(now, Observation::unscored(Status::Scored), p, Signal::Silence)
    }

    fn judge(&self, residual: f64, sigma: f64, p_gap: f64) -> Judgement {
        let z = match (residual, sigma) {
            (r, _) if r == 0.0 => 0.0,
            (r, s) if s > 0.0 => (r / s).clamp(-Z_MAX, Z_MAX),
            (r, _) => Z_MAX.copysign(r),
        };
        let clipped = z.clamp(-WINDOW_Z_CLIP, WINDOW_Z_CLIP);
        let shift = self.shift.next(clipped);
        let spread = self.spread.next(clipped.abs());
        let candidates = [
            (self.point.p(z.abs()), if z >= 0.0 { Signal::Spike } else { Signal::Dip }),
            (self.shift.tail.p(shift.1.abs()), if shift.1 >= 0.0 { Signal::LevelUp } else { Signal::LevelDown }),
            (
                self.spread.tail.p(spread.1.abs()),
                if spread.1 >= 0.0 { Signal::MoreVariable } else { Signal::LessVariable },
            ),
            (p_gap, Signal::Silence),
        ];
        let (p, signal) =
            candidates.into_iter().fold((1.0, Signal::Spike), |best, c| if c.0 < best.0 { c } else { best });
        Judgement { p: (QUESTIONS * p).min(1.0), signal, z, shift, spread }
    }

    fn learn(&mut self, t: f64, x: f64, judgement: Option<&Judgement>) {
        self.cadence.learn(t);
        self.baseline.learn(t, x, self.cadence.interval());
        self.points += 1;
        let Some(j) = judgement else { return };
        let settled = self.points > SETTLE_POINTS;
        if settled {
            self.point.update(j.z.abs());
        }
        self.shift.learn(j.shift.0, j.shift.1, settled);
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
            self.run = 0;
        }
    }

    fn conclude(&mut self, t: f64, mut observation: Observation, p: f64, signal: Signal) -> Observation {
        if self.points <= u64::from(self.settings.warmup_points) {
            observation.status = Status::WarmingUp;
            return observation;
        }
        let score = (-p.max(f64::MIN_POSITIVE).log10() / SCORE_DECADES).clamp(0.0, 1.0);
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
