//! Labelled synthetic series for measuring a detector: seasonal, wandering,
//! count and heavy-tailed series, each with at most one injected anomaly
//! (a spike, a level shift, a variance change, a silence or a trend change)
//! and its label, plus clean series that should raise no alert at all.
//!
//! Everything is generated from one seed with a small self-contained
//! generator (SplitMix64), so a suite is the same on every machine and
//! every version of the dependencies. Magnitudes are in units of each
//! series' own noise, then the series is scaled by a random power of ten:
//! a detector that depends on absolute values will show it.

use std::f64::consts::TAU;

/// 2024-01-01T00:00:00Z, a Monday.
pub const EPOCH_SECS: f64 = 1_704_067_200.0;
const DAY: f64 = 86_400.0;

/// An injected anomaly's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// One to three points far from normal.
    Spike,
    /// The level moves by 3–8 noise units and stays.
    LevelShift,
    /// The noise grows 3–6× for 48–192 points.
    VarianceChange,
    /// No points at all for 24–144 intervals.
    Silence,
    /// A slope starts: 4–10 noise units per 100 points, until the end.
    TrendChange,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Spike, Kind::LevelShift, Kind::VarianceChange, Kind::Silence, Kind::TrendChange];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Spike => "spike",
            Kind::LevelShift => "level_shift",
            Kind::VarianceChange => "variance_change",
            Kind::Silence => "silence",
            Kind::TrendChange => "trend_change",
        }
    }
}

/// The normal behaviour a series is built on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Level, a daily cycle, Gaussian noise that follows the cycle
    /// (0.2–1.8× its average: busy hours are noisier).
    Daily,
    /// A daily cycle that is much weaker at weekends.
    Weekly,
    /// No cycle; autocorrelated (AR(1)) noise around a level.
    Wandering,
    /// Poisson counts whose rate follows a daily cycle (e.g. messages per
    /// interval).
    Counts,
    /// A weak daily cycle and heavy-tailed (Student-t, 3 degrees) noise.
    HeavyTailed,
}

impl Shape {
    pub const ALL: [Shape; 5] = [Shape::Daily, Shape::Weekly, Shape::Wandering, Shape::Counts, Shape::HeavyTailed];

    pub fn as_str(self) -> &'static str {
        match self {
            Shape::Daily => "daily",
            Shape::Weekly => "weekly",
            Shape::Wandering => "wandering",
            Shape::Counts => "counts",
            Shape::HeavyTailed => "heavy",
        }
    }
}

/// Where an anomaly was injected: from its first affected point to its
/// last (both timestamps of the regular grid, seconds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Label {
    pub kind: Kind,
    pub start: f64,
    pub end: f64,
}

/// One generated series.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub shape: Shape,
    pub interval_secs: f64,
    /// `(timestamp seconds, value)`, in time order.
    pub points: Vec<(f64, f64)>,
    /// Grid times with no point (a silence), in order.
    pub missing: Vec<f64>,
    pub labels: Vec<Label>,
}

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct Suite {
    pub seed: u64,
    /// Series per anomaly kind (each with one anomaly).
    pub series_per_kind: usize,
    /// Series with no anomaly.
    pub clean_series: usize,
    /// Grid points per series (before silences remove some).
    pub points: usize,
}

impl Default for Suite {
    fn default() -> Self {
        Self { seed: 7, series_per_kind: 20, clean_series: 20, points: 4032 }
    }
}

/// Generates the suite: for each kind, `series_per_kind` series cycling
/// through the shapes; then the clean ones.
pub fn generate(suite: &Suite) -> Vec<Series> {
    let kinds = Kind::ALL.iter().flat_map(|&k| std::iter::repeat_n(Some(k), suite.series_per_kind));
    let plan: Vec<Option<Kind>> = kinds.chain(std::iter::repeat_n(None, suite.clean_series)).collect();
    plan.iter()
        .enumerate()
        .map(|(i, kind)| {
            // Hash (seed, index) into far-apart states: nearby SplitMix64
            // states would give the same stream shifted by a few draws.
            let mut rng = Rng::new(Rng::new(suite.seed).next_u64() ^ Rng::new(i as u64 ^ 0xA5A5_A5A5).next_u64());
            let shape = Shape::ALL[i % Shape::ALL.len()];
            let name = format!("{:03}-{}-{}", i, shape.as_str(), kind.map_or("clean", Kind::as_str));
            build(&mut rng, name, shape, *kind, suite.points)
        })
        .collect()
}

/// Per-series parameters, in noise units.
struct Params {
    interval: f64,
    level: f64,
    noise: f64,
    amplitude: f64,
    phase: f64,
    ar: f64,
    scale: f64,
}

impl Params {
    fn draw(rng: &mut Rng, shape: Shape) -> Self {
        let interval = [60.0, 300.0, 300.0, 600.0, 3600.0][rng.below(5)];
        let noise = rng.range(2.0, 8.0);
        let amplitude = match shape {
            Shape::Wandering => 0.0,
            Shape::HeavyTailed => rng.range(1.0, 4.0) * noise,
            _ => rng.range(2.0, 8.0) * noise,
        };
        let scale = 10f64.powf(rng.range(-3.0, 7.0));
        let (phase, ar) = (rng.range(0.0, TAU), rng.range(0.5, 0.9));
        Self { interval, level: 100.0, noise, amplitude, phase, ar, scale }
    }

    fn cycle(&self, t: f64) -> f64 {
        let x = TAU * t / DAY + self.phase;
        0.8 * x.sin() + 0.3 * (2.0 * x).sin()
    }
}

/// The anomaly's effect on point `i`: added value and noise multiplier.
struct Injection {
    kind: Kind,
    first: usize,
    last: usize,
    size: f64,
}

impl Injection {
    fn draw(rng: &mut Rng, kind: Kind, points: usize) -> Self {
        let first = (points as f64 * rng.range(0.4, 0.85)) as usize;
        let sign = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
        let (len, size) = match kind {
            Kind::Spike => (1 + rng.below(3), sign * rng.range(6.0, 12.0)),
            Kind::LevelShift => (points - first, sign * rng.range(3.0, 8.0)),
            Kind::VarianceChange => (48 + rng.below(145), rng.range(3.0, 6.0)),
            Kind::Silence => (24 + rng.below(121), 0.0),
            Kind::TrendChange => (points - first, sign * rng.range(4.0, 10.0) / 100.0),
        };
        Self { kind, first, last: (first + len - 1).min(points - 1), size }
    }

    /// (offset in noise units, noise multiplier, present) at point `i`.
    fn at(&self, i: usize) -> (f64, f64, bool) {
        if i < self.first || i > self.last {
            return (0.0, 1.0, true);
        }
        match self.kind {
            Kind::Spike | Kind::LevelShift => (self.size, 1.0, true),
            Kind::VarianceChange => (0.0, self.size, true),
            Kind::Silence => (0.0, 1.0, false),
            Kind::TrendChange => (self.size * (i - self.first) as f64, 1.0, true),
        }
    }
}

fn build(rng: &mut Rng, name: String, shape: Shape, kind: Option<Kind>, points: usize) -> Series {
    let p = Params::draw(rng, shape);
    let injection = kind.map(|k| Injection::draw(rng, k, points));
    let mut series =
        Series { name, shape, interval_secs: p.interval, points: Vec::new(), missing: Vec::new(), labels: Vec::new() };
    let mut ar = 0.0;
    for i in 0..points {
        let t = EPOCH_SECS + i as f64 * p.interval;
        let (offset, noise_mult, present) = injection.as_ref().map_or((0.0, 1.0, true), |inj| inj.at(i));
        ar = p.ar * ar + (1.0 - p.ar * p.ar).sqrt() * rng.normal();
        let value = value_at(rng, shape, &p, t, ar, offset, noise_mult);
        if present {
            series.points.push((t, value));
        } else {
            series.missing.push(t);
        }
    }
    if let Some(inj) = injection {
        let at = |i: usize| EPOCH_SECS + i as f64 * p.interval;
        series.labels.push(Label { kind: inj.kind, start: at(inj.first), end: at(inj.last.max(inj.first)) });
        if matches!(inj.kind, Kind::LevelShift | Kind::TrendChange) {
            series.labels[0].end = at(inj.first);
        }
    }
    series
}

fn value_at(rng: &mut Rng, shape: Shape, p: &Params, t: f64, ar: f64, offset: f64, noise_mult: f64) -> f64 {
    match shape {
        Shape::Counts => {
            let rate = p.noise * p.noise * (1.0 + 0.6 * p.cycle(t) / 1.1);
            let sd = rate.sqrt();
            let extra = (noise_mult - 1.0) * sd * rng.normal();
            (rng.poisson(rate) + offset * p.noise + extra).round().max(0.0)
        }
        Shape::Daily | Shape::Weekly | Shape::HeavyTailed | Shape::Wandering => {
            let weekend = ((t - EPOCH_SECS) / DAY).floor().rem_euclid(7.0) >= 5.0;
            let amplitude = if shape == Shape::Weekly && weekend { 0.2 * p.amplitude } else { p.amplitude };
            let noise = match shape {
                Shape::HeavyTailed => rng.student_t3() / 3f64.sqrt(),
                Shape::Wandering => ar,
                _ => rng.normal(),
            };
            // Daily series are noisier when busy, as real ones are.
            let noise = if shape == Shape::Daily { noise * (1.0 + 0.7 * p.cycle(t)) } else { noise };
            let base = p.level * p.noise + amplitude * p.cycle(t);
            p.scale * (base + p.noise * (noise * noise_mult + offset))
        }
    }
}

/// SplitMix64: small, fast, and the same everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform();
        (-2.0 * u.ln()).sqrt() * (TAU * self.uniform()).cos()
    }

    /// Student-t with 3 degrees of freedom (variance 3).
    pub fn student_t3(&mut self) -> f64 {
        let chi2: f64 = (0..3).map(|_| self.normal().powi(2)).sum();
        self.normal() / (chi2 / 3.0).sqrt()
    }

    /// Poisson: by multiplication below 30, a rounded normal above.
    pub fn poisson(&mut self, rate: f64) -> f64 {
        if rate >= 30.0 {
            return (rate + rate.sqrt() * self.normal()).round().max(0.0);
        }
        let (limit, mut k, mut p) = ((-rate).exp(), 0.0, 1.0);
        loop {
            p *= self.uniform();
            if p <= limit {
                return k;
            }
            k += 1.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suite_is_the_same_for_the_same_seed() {
        let suite = Suite { seed: 3, series_per_kind: 2, clean_series: 2, points: 500 };
        let (a, b) = (generate(&suite), generate(&suite));
        assert_eq!(a.len(), 12);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.points, y.points);
            assert_eq!(x.labels, y.labels);
        }
    }

    #[test]
    fn every_anomalous_series_has_one_label_and_silences_remove_points() {
        let suite = Suite { seed: 1, series_per_kind: 3, clean_series: 1, points: 1000 };
        for s in generate(&suite) {
            let expected_labels = usize::from(!s.name.ends_with("clean"));
            assert_eq!(s.labels.len(), expected_labels, "{}", s.name);
            let silent = s.labels.first().is_some_and(|l| l.kind == Kind::Silence);
            assert_eq!(!s.missing.is_empty(), silent, "{}", s.name);
            assert_eq!(s.points.len() + s.missing.len(), 1000);
            assert!(s.points.iter().all(|(t, v)| t.is_finite() && v.is_finite()));
        }
    }
}
