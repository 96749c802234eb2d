//! The backtest's score column (`glassbox anomaly backtest`): the seasonal
//! question it adds to the live detector's must not make quiet series noisy
//! (the unit tests in `src/backtest.rs` show what it finds that the
//! detector alone does not).

use glassbox_anomaly::synthetic::Rng;
use glassbox_anomaly::{Backtest, Settings};

const DAY: f64 = 86_400.0;

/// A series' value at a time (seconds), with a source of noise.
type Shape = Box<dyn Fn(f64, &mut Rng) -> f64>;
/// Two weeks of five-minute points, like most NAB series.
const POINTS: usize = 4032;

fn wave(t: f64) -> f64 {
    50.0 + 30.0 * (t / DAY * std::f64::consts::TAU).sin()
}

fn square(t: f64) -> f64 {
    if t % DAY < DAY / 2.0 { 20.0 } else { 80.0 }
}

/// Rows at or above `threshold` after the first 15% (NAB's probation).
fn alerts(values: impl Fn(f64, &mut Rng) -> f64, threshold: f64) -> usize {
    let mut rng = Rng::new(5);
    let mut backtest = Backtest::new(&Settings::default()).unwrap();
    let scores: Vec<f64> = (0..POINTS)
        .map(|i| {
            let t = i as f64 * 300.0;
            let value = values(t, &mut rng);
            backtest.observe(t, value).score
        })
        .collect();
    scores[POINTS * 15 / 100..].iter().filter(|&&s| s >= threshold).count()
}

#[test]
fn quiet_series_raise_at_most_a_rare_backtest_alert() {
    // Series without anomalies, seasonal or not (NAB's artificialNoAnomaly
    // kind): at the score one in 100,000 (0.5), at most one row each.
    let quiet: [(&str, Shape); 6] = [
        ("daily wave", Box::new(|t, _| wave(t))),
        ("daily wave, small noise", Box::new(|t, r| wave(t) + 0.5 * r.normal())),
        ("daily square wave", Box::new(|t, _| square(t))),
        ("daily square wave, noise", Box::new(|t, r| square(t) + r.normal())),
        ("flat line", Box::new(|_, _| 42.0)),
        ("noise", Box::new(|_, r| 50.0 + 10.0 * r.normal())),
    ];
    for (name, values) in quiet {
        let raised = alerts(values, 0.5);
        assert!(raised <= 1, "{name}: {raised} rows at or above 0.5");
    }
}

#[test]
fn a_day_without_its_peak_is_found_by_the_backtest() {
    // The daily wave's peak does not come on day 10: the first row at or
    // above 0.5 after NAB's probation (the first 15%, in which the first
    // day's wave is still new and out of range) is in that day.
    let missing = 9.0 * DAY..10.0 * DAY;
    let values = |t: f64, r: &mut Rng| {
        let base = if missing.contains(&t) { wave(t).min(50.0) } else { wave(t) };
        base + 0.5 * r.normal()
    };
    let mut rng = Rng::new(6);
    let mut backtest = Backtest::new(&Settings::default()).unwrap();
    let mut found = None;
    for i in 0..POINTS {
        let t = i as f64 * 300.0;
        let value = values(t, &mut rng);
        let row = backtest.observe(t, value);
        if i >= POINTS * 15 / 100 && row.score >= 0.5 && found.is_none() {
            found = Some(t);
        }
    }
    let found = found.expect("the missing peak scores at least 0.5");
    assert!(missing.contains(&found), "first row at or above 0.5 at {} days", found / DAY);
}
