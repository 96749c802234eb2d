//! How rare is a value of a statistic, judged by this series' own history?
//!
//! A [`Tail`] learns the upper tail of a non-negative statistic (a standardised
//! error, a gap ratio) by peaks over threshold: how often the statistic
//! exceeds a fixed threshold `u`, and how far beyond it goes. Two shapes of
//! tail are fitted to the exceedances, each by maximum likelihood:
//!
//! - **exponential** in the excess `x - u` (light tails, e.g. Gaussian
//!   errors);
//! - **Pareto** in the ratio `x / u` (heavy tails: errors that are now and
//!   then many times larger than usual, common in real metrics);
//!
//! and the probability averages the two, weighted by their likelihoods.
//! So a series whose errors are heavy-tailed needs a much bigger surprise
//! to raise an alarm, and a calm one does not.
//!
//! Runs of consecutive exceedances count once, by their largest value
//! (runs declustering): the tail says how often and how far excursions go,
//! and an excursion in progress does not teach the detector to accept
//! itself. What was seen decays at the long-run rate so the fit follows
//! slow changes; a weak, constant prior keeps a new series conservative.

/// One excursion counts at most this many mean excesses beyond `u`, so a
/// single enormous anomaly cannot blind the detector to later ones.
const EXCESS_CAP_MEANS: f64 = 10.0;

/// Which tail shapes a [`Tail`] may fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shapes {
    /// Exponential only: for averages, light-tailed by nature (a heavy
    /// fitted tail would only reflect past upsets).
    Light,
    /// Exponential or Pareto, whichever fits better.
    LightOrHeavy,
}

#[derive(Clone, Debug)]
pub(crate) struct Tail {
    threshold: f64,
    shapes: Shapes,
    decay: f64,
    prior: Prior,
    /// Decayed count of values seen and of excursions, and the sums over
    /// excursions of the excess `x - u` and of `ln(x / u)`.
    seen: f64,
    exceeded: f64,
    excess_sum: f64,
    log_ratio_sum: f64,
    /// The largest value of the current run of exceedances.
    cluster_max: Option<f64>,
}

/// What a [`Tail`] assumes before (and besides) what it has seen: an
/// exceedance rate worth `weight` values, and a mean excess worth the
/// excursions those values would hold. The prior never decays, so a long
/// calm stretch returns the estimates toward it instead of toward whatever
/// the first, unsettled points said.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prior {
    pub rate: f64,
    pub mean_excess: f64,
    pub weight: f64,
    /// The prior probability that the tail is heavy (Pareto), before any
    /// excursion has been seen.
    pub heavy: f64,
}

impl Tail {
    pub(crate) fn new(threshold: f64, shapes: Shapes, alpha: f64, prior: Prior) -> Self {
        let decay = 1.0 - alpha;
        let (seen, exceeded, excess_sum, log_ratio_sum) = (0.0, 0.0, 0.0, 0.0);
        Self { threshold, shapes, decay, prior, seen, exceeded, excess_sum, log_ratio_sum, cluster_max: None }
    }

    /// The probability of a value at least `x` (in `(0, 1]`).
    pub(crate) fn p(&self, x: f64) -> f64 {
        if x.is_nan() {
            return 1.0;
        }
        let rate = self.rate();
        if x <= self.threshold {
            // Below the threshold the fit says nothing; interpolate in log
            // space between p(0) = 1 and p(u) = rate so the score is smooth.
            let f = (x / self.threshold).max(0.0);
            return rate.powf(f);
        }
        (rate * self.survival(x)).max(f64::MIN_POSITIVE)
    }

    /// P(X >= x | X > u): the two shapes averaged, each weighted by how
    /// well it explains the excursions seen (Bayesian model averaging with
    /// even prior odds). Near the threshold the better fit dominates; far
    /// out, a heavy tail that is only somewhat plausible still counts,
    /// which keeps rare extremes of heavy-tailed noise from raising alarms.
    fn survival(&self, x: f64) -> f64 {
        let (mean_excess, mean_log_ratio) = self.means();
        let exponential = (-(x - self.threshold) / mean_excess).exp();
        if self.shapes == Shapes::Light {
            return exponential;
        }
        // Log-likelihoods per excursion at the maximum: exponential with
        // mean m: -ln m - 1; Pareto with index a = 1 / mean ln(x/u):
        // ln a - ln u - (a + 1) / a.
        let index = 1.0 / mean_log_ratio;
        let ll_exponential = -mean_excess.ln() - 1.0;
        let ll_pareto = index.ln() - self.threshold.ln() - (index + 1.0) / index;
        let prior_odds = (1.0 - self.prior.heavy) / self.prior.heavy.max(1e-12);
        let evidence = (self.exceeded * (ll_exponential - ll_pareto)).clamp(-700.0, 700.0).exp();
        let pareto_weight = 1.0 / (1.0 + prior_odds * evidence);
        let pareto = (x / self.threshold).powf(-index);
        pareto_weight * pareto + (1.0 - pareto_weight) * exponential
    }

    /// Learns from one value (see the module documentation on runs).
    pub(crate) fn update(&mut self, x: f64) {
        if x.is_nan() {
            return;
        }
        self.seen = self.seen * self.decay + 1.0;
        self.exceeded *= self.decay;
        self.excess_sum *= self.decay;
        self.log_ratio_sum *= self.decay;
        if x > self.threshold {
            self.cluster_max = Some(self.cluster_max.map_or(x, |m| m.max(x)));
        } else if let Some(max) = self.cluster_max.take() {
            let excess = (max - self.threshold).min(EXCESS_CAP_MEANS * self.means().0);
            self.exceeded += 1.0;
            self.excess_sum += excess;
            self.log_ratio_sum += (1.0 + excess / self.threshold).ln();
        }
    }

    fn rate(&self) -> f64 {
        let p = self.prior;
        ((self.exceeded + p.rate * p.weight) / (self.seen + p.weight)).clamp(1e-12, 1.0)
    }

    /// (mean excess, mean log ratio), each with the prior's excursions at
    /// the prior's mean excess.
    fn means(&self) -> (f64, f64) {
        let p = self.prior;
        let w = (p.rate * p.weight).max(1e-9);
        let k = self.exceeded + w;
        let mean_excess = (self.excess_sum + w * p.mean_excess) / k;
        let mean_log_ratio = (self.log_ratio_sum + w * (1.0 + p.mean_excess / self.threshold).ln()) / k;
        (mean_excess.max(1e-9), mean_log_ratio.max(1e-9))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prior() -> Prior {
        Prior { rate: 0.02, mean_excess: 0.5, weight: 50.0, heavy: 0.5 }
    }

    #[test]
    fn p_falls_as_values_grow_and_stays_in_zero_one() {
        let tail = Tail::new(2.5, Shapes::LightOrHeavy, 0.001, prior());
        let ps: Vec<f64> = [0.0, 1.0, 2.5, 4.0, 8.0, 1e9, f64::INFINITY].iter().map(|&x| tail.p(x)).collect();
        assert!((ps[0] - 1.0).abs() < 1e-12);
        assert!(ps.windows(2).all(|w| w[1] <= w[0]), "{ps:?}");
        assert!(ps.iter().all(|p| *p > 0.0 && *p <= 1.0), "{ps:?}");
    }

    #[test]
    fn a_series_with_frequent_big_values_finds_them_less_surprising() {
        let mut calm = Tail::new(2.5, Shapes::LightOrHeavy, 0.001, prior());
        let mut wild = Tail::new(2.5, Shapes::LightOrHeavy, 0.001, prior());
        for i in 0..5000 {
            calm.update(if i % 100 == 0 { 3.0 } else { 0.5 });
            wild.update(if i % 10 == 0 { 9.0 } else { 0.5 });
        }
        assert!(wild.p(10.0) > 100.0 * calm.p(10.0), "wild {} calm {}", wild.p(10.0), calm.p(10.0));
    }

    #[test]
    fn one_enormous_value_does_not_blind_it() {
        let mut rng = crate::synthetic::Rng::new(3);
        let mut tail = Tail::new(2.5, Shapes::LightOrHeavy, 0.001, prior());
        for _ in 0..2000 {
            tail.update(rng.normal().abs());
        }
        let before = tail.p(8.0);
        tail.update(1e12);
        tail.update(1.0);
        let after = tail.p(8.0);
        // Less surprising than before (the excursion was real), but still
        // beyond one in 100,000.
        assert!(after < 1e-5, "before {before}, after {after}");
    }

    #[test]
    fn heavy_tailed_values_are_judged_by_a_heavy_tail() {
        let mut rng = crate::synthetic::Rng::new(4);
        let mut tail = Tail::new(2.5, Shapes::LightOrHeavy, 0.0005, prior());
        let (mut alarms, n) = (0, 200_000);
        for _ in 0..n {
            let x = rng.student_t3().abs();
            alarms += usize::from(tail.p(x) < 1e-5);
            tail.update(x);
        }
        // Calibrated: about 1e-5 of the values, i.e. ~2 (the plain
        // exponential fit gives hundreds).
        assert!(alarms < 20, "{alarms} of {n} below 1e-5");
    }
}
