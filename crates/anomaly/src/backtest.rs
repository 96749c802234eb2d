//! The score a backtest writes for each row (`glassbox anomaly backtest`,
//! `glassbox bench anomaly --nab`): the live [`Detector`]'s score, two more
//! questions, and one alert per burst ([`Peaks`]).
//!
//! A reader of a backtest picks its own threshold afterwards (the Numenta
//! Anomaly Benchmark does), so the score is there to rank rows, across
//! series too. The live detector judges each point by the model that
//! forecasts best, and on a smooth daily wave that is the fast level: a day
//! whose shape changes (a flat middle, a peak that does not come, a jump
//! within the day) then looks ordinary. The **seasonal question** asks it
//! anyway: for each daily or weekly model, how unusual is the recent mean
//! size of its errors (the last [`SEASONAL_WINDOW_POINTS`], clipped at
//! [`SEASONAL_Z_CLIP`] scales) against the long-run spread of that mean?
//! Like the anomaly likelihood of Numenta's HTM detector (a short window of
//! errors against their long-run distribution, a Gaussian tail), with the
//! errors of a model that knows the time of day, whichever model the
//! detector uses. A row's score is the smaller of the two probabilities,
//! doubled for asking two, on the detector's scale (`-log10(p) / 10`).
//!
//! The **range question** is HTM's "spatial anomaly" on NAB: a value beyond
//! every value seen so far by more than [`RANGE_TOLERANCE`] of their range
//! scores 1, whatever the forecasts say. Spiky series learn heavy error
//! tails, so a burst larger than any before scores only moderately against
//! the forecast; it is still a first.
//!
//! The live detector, its episodes and alerts (the `anomaly` column, and
//! `glassbox diagnose`) are unchanged: they ask neither question. Constant
//! memory (the detector, two windows, a range, the hold's queue of at most
//! [`crate::PEAK_HOLD_POINTS`] pairs), O(1) per row.

use crate::stats::EwmVar;
use crate::{Detector, InvalidSettings, Observation, Peaks, Settings, Status};

/// The seasonal question's recent window: an exponential mean over about
/// this many points.
pub const SEASONAL_WINDOW_POINTS: f64 = 15.0;
/// Errors enter the window clipped to this many usual error sizes, so one
/// wild point cannot make a window unusual by itself.
pub const SEASONAL_Z_CLIP: f64 = 6.0;
/// The long-run mean and spread of the window forget over about this many
/// points.
const SEASONAL_MEMORY_POINTS: f64 = 1000.0;
/// The long-run spread of the window is taken as at least this (in usual
/// error sizes), so a model that fits perfectly for a while does not find
/// its first small error extraordinary.
const SEASONAL_STD_MIN: f64 = 0.05;
/// The questions a row's score answers: the detector's and the seasonal one.
const QUESTIONS: f64 = 2.0;
/// A value beyond every value seen so far by more than this share of their
/// range scores 1 (Numenta's HTM detector on NAB: its
/// "spatial anomaly", with the same 5%).
const RANGE_TOLERANCE: f64 = 0.05;

/// The upper tail of the standard normal distribution, `P(Z >= z)`
/// (Numerical Recipes' `erfcc`: relative error below 1.2e-7, and it keeps
/// that accuracy far into the tail, where `1 - cdf` would be 0).
pub(crate) fn normal_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.5 * a);
    let poly = -a * a - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    0.5 * if x >= 0.0 { erfc } else { 2.0 - erfc }
}

/// One seasonal model's recent mean error size, judged against the long
/// run of that same mean.
#[derive(Clone, Debug)]
struct SeasonalWindow {
    recent: f64,
    long: EwmVar,
}

impl SeasonalWindow {
    fn new() -> Self {
        Self { recent: 0.0, long: EwmVar::new(1.0 / SEASONAL_MEMORY_POINTS) }
    }

    /// Adds an error (in usual error sizes) and returns the probability of
    /// a recent mean at least this high; then learns it.
    fn next(&mut self, z: f64) -> f64 {
        self.recent += (z.abs().min(SEASONAL_Z_CLIP) - self.recent) / SEASONAL_WINDOW_POINTS;
        let p = if self.long.seen() >= 1.0 {
            normal_tail((self.recent - self.long.mean()) / self.long.std().max(SEASONAL_STD_MIN))
        } else {
            1.0
        };
        self.long.update(self.recent);
        p
    }
}

/// One row of a backtest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    /// What the live detector made of the row (its score, alert, parts).
    pub observation: Observation,
    /// The row's backtest score, in `[0, 1]`, before the hold: the
    /// detector's and the seasonal question's, or 1 out of range.
    pub raw: f64,
    /// The score to write: `raw` (the detector's part capped at the calm
    /// threshold inside an episode already alerted), 0 unless it is a new
    /// high of the last [`crate::PEAK_HOLD_POINTS`] rows (see [`Peaks`]).
    pub score: f64,
}

/// A backtest of one series: feed it the rows in file order.
#[derive(Clone, Debug)]
pub struct Backtest {
    detector: Detector,
    peaks: Peaks,
    calm_threshold: f64,
    /// The daily and the weekly model's windows.
    seasonal: [SeasonalWindow; 2],
    /// The lowest and highest value seen.
    range: Option<(f64, f64)>,
}

impl Backtest {
    pub fn new(settings: &Settings) -> Result<Self, InvalidSettings> {
        Ok(Self {
            detector: Detector::new(settings.clone())?,
            peaks: Peaks::new(),
            calm_threshold: settings.calm_threshold,
            seasonal: [SeasonalWindow::new(), SeasonalWindow::new()],
            range: None,
        })
    }

    /// The live detector (its model, interval, open episode).
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// The memory this backtest holds, in bytes (the detector's included).
    pub fn memory_bytes(&self) -> usize {
        self.detector.memory_bytes() + size_of::<Self>() - size_of::<Detector>() + self.peaks.heap_bytes()
    }

    /// Scores the row (`t` in seconds), then learns from it.
    pub fn observe(&mut self, t: f64, value: f64) -> Row {
        let alerted_before = self.detector.episode().is_some();
        let errors = self.detector.seasonal_errors(t, value);
        let observation = self.detector.observe(t, value);
        let learned = !matches!(observation.status, Status::Skipped(_));
        let seasonal_p = if learned { self.seasonal_p(errors) } else { 1.0 };
        let out_of_range = learned && self.out_of_range(value);
        if observation.status != Status::Scored {
            return Row { observation, raw: 0.0, score: self.peaks.next(0.0, 0.0) };
        }
        if out_of_range {
            return Row { observation, raw: 1.0, score: self.peaks.next(1.0, 1.0) };
        }
        // -log10(QUESTIONS * min(p_seasonal, p_detector)) / 10, in scores:
        // the larger score less the correction (no exp or log of the
        // detector's score).
        let seasonal_score = -seasonal_p.max(f64::MIN_POSITIVE).log10() / 10.0;
        let correction = QUESTIONS.log10() / 10.0;
        let combine = |detector_score: f64| (detector_score.max(seasonal_score) - correction).clamp(0.0, 1.0) + 0.0;
        let raw = combine(observation.score);
        let reported = if alerted_before { combine(observation.score.min(self.calm_threshold)) } else { raw };
        Row { observation, raw, score: self.peaks.next(raw, reported) }
    }

    /// The seasonal question: the smaller probability of the daily and the
    /// weekly model's windows (1 before either has learned a period).
    fn seasonal_p(&mut self, errors: [Option<f64>; 2]) -> f64 {
        let mut p: f64 = 1.0;
        for (window, z) in self.seasonal.iter_mut().zip(errors) {
            if let Some(z) = z {
                p = p.min(window.next(z));
            }
        }
        p
    }

    /// Whether `value` lies beyond every value seen so far by more than
    /// [`RANGE_TOLERANCE`] of their range; then learns it.
    fn out_of_range(&mut self, value: f64) -> bool {
        let Some((low, high)) = self.range else {
            self.range = Some((value, value));
            return false;
        };
        let margin = RANGE_TOLERANCE * (high - low);
        self.range = Some((low.min(value), high.max(value)));
        high > low && (value > high + margin || value < low - margin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::Rng;

    #[test]
    fn the_normal_tail_is_accurate_far_out() {
        for (z, p) in [
            (0.0, 0.5),
            (1.0, 0.158_655_25),
            (3.0, 1.349_898e-3),
            (6.0, 9.865_876e-10),
            (8.0, 6.220_961e-16),
            (-2.0, 0.977_249_87),
        ] {
            assert!((normal_tail(z) / p - 1.0).abs() < 1e-5, "z {z}: {} vs {p}", normal_tail(z));
        }
        assert!((0.0..1e-300).contains(&normal_tail(40.0)));
    }

    /// Five-minute points of a smooth daily wave with noise; the day from
    /// `flat` on stays at the wave's middle.
    fn wave_with_a_flat_day(flat: usize) -> Vec<(f64, f64)> {
        let mut rng = Rng::new(21);
        (0..288 * 10)
            .map(|i| {
                let t = i as f64 * 300.0;
                let wave = 50.0 * (t / 86_400.0 * std::f64::consts::TAU).sin();
                let value = if (flat..flat + 288).contains(&i) { 0.0 } else { wave };
                (t, 100.0 + value + rng.normal())
            })
            .collect()
    }

    #[test]
    fn a_day_that_loses_its_shape_ranks_above_every_ordinary_day() {
        let flat = 288 * 7;
        let mut backtest = Backtest::new(&Settings::default()).unwrap();
        let rows: Vec<Row> = wave_with_a_flat_day(flat).into_iter().map(|(t, x)| backtest.observe(t, x)).collect();
        let ordinary = rows[288 * 3..flat].iter().map(|r| r.raw).fold(0.0, f64::max);
        let in_flat_day = rows[flat..flat + 288].iter().map(|r| r.raw).fold(0.0, f64::max);
        let detector_alone = rows[flat..flat + 288].iter().map(|r| r.observation.score).fold(0.0, f64::max);
        assert!(in_flat_day > ordinary + 0.2, "flat day {in_flat_day}, ordinary days {ordinary}");
        assert!(in_flat_day > detector_alone, "the seasonal question adds nothing: {in_flat_day} vs {detector_alone}");
    }

    #[test]
    fn without_a_seasonal_model_the_score_is_the_detectors_or_1_out_of_range() {
        let mut rng = Rng::new(22);
        let mut backtest = Backtest::new(&Settings::default()).unwrap();
        let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
        let mut out_of_range = Vec::new();
        // Ten-second points: less than a day, so no seasonal model yet.
        for i in 0..3000 {
            let value = if i == 2000 { 130.0 } else { 100.0 + 2.0 * rng.normal() };
            let row = backtest.observe(i as f64 * 10.0, value);
            let margin = 0.05 * (high - low);
            let outside = i > 150 && (value > high + margin || value < low - margin);
            (low, high) = (low.min(value), high.max(value));
            if outside {
                out_of_range.push(i);
                assert_eq!(row.raw, 1.0, "row {i}");
                continue;
            }
            // Two questions: the detector's probability, doubled.
            let expected = (row.observation.score - 2f64.log10() / 10.0).max(0.0);
            assert!((row.raw - expected).abs() < 1e-9, "row {i}: {} vs {expected}", row.raw);
        }
        // Noise finds a new extreme beyond the tolerance now and then, and
        // less often as its range fills in; the spike is one.
        assert!(out_of_range.contains(&2000), "{out_of_range:?}");
        assert!(out_of_range.len() <= 5, "{out_of_range:?}");
    }
}
