//! How rare is a value of a statistic, judged by this series' own history?
//!
//! A [`Tail`] learns the upper tail of a non-negative statistic (a standardised
//! error, a gap ratio) by peaks over threshold: how often the statistic exceeds
//! a fixed threshold `u`, and the distribution of the excess over `u`, fitted
//! as a generalised Pareto distribution by the method of moments. The shape is
//! kept in `[0, 0.45]`: an exponential tail for well-behaved errors, a heavier
//! one when this series' errors are heavy-tailed, so a series that is often
//! "surprising" needs a bigger surprise to raise an alarm.
//!
//! Everything decays at the long-run rate, starting from a weak prior, so a
//! new series begins conservative and the estimates follow slow changes.

/// Tail shape bounds: 0 is exponential; above ~0.5 the variance is infinite.
const SHAPE_MAX: f64 = 0.45;
/// One exceedance moves the fit by at most this many mean excesses, so a
/// single enormous anomaly cannot blind the detector to later ones.
const EXCESS_CAP_MEANS: f64 = 4.0;

#[derive(Clone, Debug)]
pub(crate) struct Tail {
    threshold: f64,
    decay: f64,
    /// Decayed count of values seen, of exceedances, and the sums of the
    /// excess and its square over the exceedances.
    seen: f64,
    exceeded: f64,
    excess_sum: f64,
    excess_sq_sum: f64,
}

/// The prior a [`Tail`] starts from, as if it had seen `weight` values.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prior {
    pub rate: f64,
    pub mean_excess: f64,
    pub weight: f64,
}

impl Tail {
    pub(crate) fn new(threshold: f64, alpha: f64, prior: Prior) -> Self {
        let exceeded = prior.rate * prior.weight;
        let m = prior.mean_excess;
        Self {
            threshold,
            decay: 1.0 - alpha,
            seen: prior.weight,
            exceeded,
            excess_sum: exceeded * m,
            // An exponential prior: variance equals the squared mean.
            excess_sq_sum: exceeded * 2.0 * m * m,
        }
    }

    /// The probability of a value at least `x` (in `(0, 1]`).
    pub(crate) fn p(&self, x: f64) -> f64 {
        let rate = (self.exceeded / self.seen).clamp(1e-12, 1.0);
        if x.is_nan() {
            return 1.0;
        }
        if x <= self.threshold {
            // Below the threshold the fit says nothing; interpolate in log
            // space between p(0) = 1 and p(u) = rate so the score is smooth.
            let f = (x / self.threshold).max(0.0);
            return rate.powf(f);
        }
        let (shape, scale) = self.fit();
        let y = x - self.threshold;
        let survival = if shape < 1e-6 { (-y / scale).exp() } else { (1.0 + shape * y / scale).powf(-1.0 / shape) };
        (rate * survival).max(f64::MIN_POSITIVE)
    }

    pub(crate) fn update(&mut self, x: f64) {
        if x.is_nan() {
            return;
        }
        let cap = EXCESS_CAP_MEANS * self.mean_excess().max(self.threshold * 0.1);
        self.seen = self.seen * self.decay + 1.0;
        self.exceeded *= self.decay;
        self.excess_sum *= self.decay;
        self.excess_sq_sum *= self.decay;
        if x > self.threshold {
            let y = (x - self.threshold).min(cap);
            self.exceeded += 1.0;
            self.excess_sum += y;
            self.excess_sq_sum += y * y;
        }
    }

    fn mean_excess(&self) -> f64 {
        if self.exceeded > 0.0 { self.excess_sum / self.exceeded } else { 0.0 }
    }

    /// (shape, scale) of the generalised Pareto excess, by moments.
    fn fit(&self) -> (f64, f64) {
        let mean = self.mean_excess().max(1e-9);
        let var = (self.excess_sq_sum / self.exceeded.max(1e-12) - mean * mean).max(0.0);
        if var <= mean * mean {
            return (0.0, mean);
        }
        let shape = (0.5 * (1.0 - mean * mean / var)).clamp(0.0, SHAPE_MAX);
        (shape, mean * (1.0 - shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prior() -> Prior {
        Prior { rate: 0.02, mean_excess: 0.5, weight: 50.0 }
    }

    #[test]
    fn p_falls_as_values_grow_and_stays_in_zero_one() {
        let tail = Tail::new(2.5, 0.001, prior());
        let ps: Vec<f64> = [0.0, 1.0, 2.5, 4.0, 8.0, 1e9, f64::INFINITY].iter().map(|&x| tail.p(x)).collect();
        assert!((ps[0] - 1.0).abs() < 1e-12);
        assert!(ps.windows(2).all(|w| w[1] <= w[0]), "{ps:?}");
        assert!(ps.iter().all(|p| *p > 0.0 && *p <= 1.0), "{ps:?}");
    }

    #[test]
    fn a_series_with_frequent_big_values_finds_them_less_surprising() {
        let mut calm = Tail::new(2.5, 0.001, prior());
        let mut wild = Tail::new(2.5, 0.001, prior());
        for i in 0..5000 {
            calm.update(if i % 100 == 0 { 3.0 } else { 0.5 });
            wild.update(if i % 10 == 0 { 9.0 } else { 0.5 });
        }
        assert!(wild.p(10.0) > 100.0 * calm.p(10.0), "wild {} calm {}", wild.p(10.0), calm.p(10.0));
    }

    #[test]
    fn one_enormous_value_does_not_blind_it() {
        let mut tail = Tail::new(2.5, 0.001, prior());
        for _ in 0..2000 {
            tail.update(1.0);
        }
        let before = tail.p(8.0);
        tail.update(1e12);
        assert!(tail.p(8.0) < 1e-4, "before {before}, after {}", tail.p(8.0));
    }
}
