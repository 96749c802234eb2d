//! Small exponentially weighted statistics, the building blocks of every
//! learned quantity. Each starts as a plain running average (so the first
//! values are not pulled toward an arbitrary start) and becomes an
//! exponential average once it has seen `1 / alpha` values: constant memory,
//! O(1) per value, and it forgets old behaviour at a known rate.

/// An exponentially weighted mean.
#[derive(Clone, Debug)]
pub(crate) struct Ewma {
    mean: f64,
    seen: f64,
    alpha: f64,
}

impl Ewma {
    pub(crate) fn new(alpha: f64) -> Self {
        Self { mean: 0.0, seen: 0.0, alpha }
    }

    pub(crate) fn update(&mut self, x: f64) {
        self.seen += 1.0;
        self.mean += (x - self.mean) * self.alpha.max(1.0 / self.seen);
    }

    pub(crate) fn mean(&self) -> f64 {
        self.mean
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.seen == 0.0
    }
}

/// An exponentially weighted mean and variance (West's update).
#[derive(Clone, Debug)]
pub(crate) struct EwmVar {
    mean: f64,
    var: f64,
    seen: f64,
    alpha: f64,
}

impl EwmVar {
    pub(crate) fn new(alpha: f64) -> Self {
        Self { mean: 0.0, var: 0.0, seen: 0.0, alpha }
    }

    pub(crate) fn update(&mut self, x: f64) {
        self.seen += 1.0;
        let step = self.alpha.max(1.0 / self.seen);
        let d = x - self.mean;
        self.mean += step * d;
        self.var = (1.0 - step) * (self.var + step * d * d);
    }

    pub(crate) fn mean(&self) -> f64 {
        self.mean
    }

    pub(crate) fn std(&self) -> f64 {
        self.var.max(0.0).sqrt()
    }

    pub(crate) fn seen(&self) -> f64 {
        self.seen
    }
}

/// The median of a few values (sorts a copy; used on small windows only).
pub(crate) fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 { values[mid] } else { 0.5 * (values[mid - 1] + values[mid]) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_is_a_running_mean_until_it_has_seen_one_over_alpha_values() {
        let mut m = Ewma::new(0.1);
        for x in [1.0, 2.0, 3.0] {
            m.update(x);
        }
        assert!((m.mean() - 2.0).abs() < 1e-12);
    }

    #[test]
    fn ewm_var_estimates_the_spread_of_alternating_values() {
        let mut v = EwmVar::new(0.01);
        for i in 0..10_000 {
            v.update(if i % 2 == 0 { 1.0 } else { -1.0 });
        }
        assert!(v.mean().abs() < 0.02);
        assert!((v.std() - 1.0).abs() < 0.02);
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }
}
