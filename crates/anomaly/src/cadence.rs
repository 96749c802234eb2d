//! The series' sampling interval, learned from the gaps between points, and
//! how surprising each gap is: a silence is a gap far beyond the usual one.
//!
//! The interval is the median of the first few gaps, then tracked as a
//! running median in log space (each gap nudges it up or down by a fixed
//! ratio), so occasional long gaps or bursts do not move it much. Gaps are
//! judged as ratios to the interval by their own [`Tail`]: a series whose
//! points are irregular learns that a 3× gap is ordinary; a metric scraped
//! every minute does not.

use crate::stats::median;
use crate::tail::{Prior, Shapes, Tail};

/// Gaps used for the first estimate of the interval.
const FIRST_GAPS: usize = 9;
/// Each later gap moves the interval toward itself by at most this much
/// (in log space): a bounded step, so it behaves like a running median.
const TRACK_STEP: f64 = 0.02;
/// Gap ratio above which a gap counts toward the learned tail.
const GAP_THRESHOLD: f64 = 1.5;

/// Why a point was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The value is NaN or infinite.
    NotFinite,
    /// The timestamp is NaN or infinite.
    BadTime,
    /// The timestamp equals the previous point's; the first value is kept.
    Duplicate,
    /// The timestamp is before the previous point's.
    OutOfOrder,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Skip::NotFinite => "value is not a finite number",
            Skip::BadTime => "timestamp is not a finite number",
            Skip::Duplicate => "duplicate timestamp",
            Skip::OutOfOrder => "timestamp out of order",
        })
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Cadence {
    last: Option<f64>,
    first_gaps: Vec<f64>,
    interval: Option<f64>,
    gaps: Tail,
}

impl Cadence {
    pub(crate) fn new(alpha: f64) -> Self {
        // Most series are sampled regularly: long gaps are rare, and without
        // evidence their tail is assumed light.
        let prior = Prior { rate: 0.002, mean_excess: 1.0, weight: 100.0, heavy: 0.1 };
        Self {
            last: None,
            first_gaps: Vec::with_capacity(FIRST_GAPS),
            interval: None,
            gaps: Tail::new(GAP_THRESHOLD, Shapes::LightOrHeavy, alpha, prior),
        }
    }

    /// The learned interval between points, in seconds, once known.
    pub(crate) fn interval(&self) -> Option<f64> {
        self.interval
    }

    pub(crate) fn last(&self) -> Option<f64> {
        self.last
    }

    /// Checks that `t` moves the series forward; returns the gap ratio (the
    /// gap over the learned interval), if the interval is known.
    pub(crate) fn check(&self, t: f64) -> Result<Option<f64>, Skip> {
        if !t.is_finite() {
            return Err(Skip::BadTime);
        }
        match self.last {
            Some(last) if t == last => Err(Skip::Duplicate),
            Some(last) if t < last => Err(Skip::OutOfOrder),
            Some(last) => Ok(self.interval.map(|i| (t - last) / i)),
            None => Ok(None),
        }
    }

    /// How unusual a gap of `ratio` intervals is; 1 below `min_ratio`.
    pub(crate) fn p(&self, ratio: Option<f64>, min_ratio: f64) -> f64 {
        match ratio {
            Some(r) if r >= min_ratio => self.gaps.p(r),
            _ => 1.0,
        }
    }

    /// Learns from a point at `t` that [`Cadence::check`] accepted.
    pub(crate) fn learn(&mut self, t: f64) {
        if let Some(last) = self.last {
            self.learn_gap(t - last);
        }
        self.last = Some(t);
    }

    fn learn_gap(&mut self, gap: f64) {
        match self.interval {
            Some(interval) => {
                self.gaps.update(gap / interval);
                let step = (gap / interval).ln().clamp(-TRACK_STEP, TRACK_STEP);
                self.interval = Some(interval * step.exp());
            }
            None => {
                self.first_gaps.push(gap);
                if self.first_gaps.len() == FIRST_GAPS {
                    self.interval = median(&mut self.first_gaps);
                    self.first_gaps = Vec::new();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_regular_interval_and_finds_a_long_gap_surprising() {
        let mut c = Cadence::new(0.001);
        for i in 0..500 {
            c.learn(i as f64 * 60.0);
        }
        let interval = c.interval().unwrap();
        assert!((interval - 60.0).abs() < 1e-9, "{interval}");
        let ratio = c.check(499.0 * 60.0 + 600.0).unwrap();
        assert!(c.p(ratio, 5.0) < 1e-5, "{}", c.p(ratio, 5.0));
        let short = c.check(499.0 * 60.0 + 120.0).unwrap();
        assert_eq!(c.p(short, 5.0), 1.0);
    }

    #[test]
    fn refuses_duplicates_out_of_order_and_non_finite_times() {
        let mut c = Cadence::new(0.001);
        c.learn(100.0);
        assert_eq!(c.check(100.0), Err(Skip::Duplicate));
        assert_eq!(c.check(99.0), Err(Skip::OutOfOrder));
        assert_eq!(c.check(f64::NAN), Err(Skip::BadTime));
        assert_eq!(c.check(f64::INFINITY), Err(Skip::BadTime));
    }
}
