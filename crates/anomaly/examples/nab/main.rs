//! The detector on the NAB series in `GLASSBOX_NAB_DIR` (or `../shared/nab`),
//! scored by NAB's rules in seconds: the fast loop for tuning the model.
//! `cargo run --release -p glassbox-anomaly --example nab [-- --files]`

mod corpus;

use std::time::Instant;

use glassbox_anomaly::Settings;
use glassbox_anomaly::nab::{Scored, backtest, score_all};

fn main() {
    let Some(dir) = corpus::find_dir() else {
        eprintln!("no NAB directory (set GLASSBOX_NAB_DIR)");
        std::process::exit(2);
    };
    let per_file = std::env::args().any(|a| a == "--files");
    let series = corpus::load(&dir);
    let settings = Settings::default();
    let points: usize = series.iter().map(|s| s.rows.len()).sum();
    let scored: Vec<Scored> = series
        .iter()
        .map(|s| Scored {
            name: s.name.clone(),
            scores: backtest(&s.rows, &settings).expect("the default settings are valid"),
            windows: s.windows.clone(),
        })
        .collect();
    let results = score_all(&scored);
    for r in &results {
        println!("{:20} {:6.2}  threshold {:.4}", r.profile.name, r.normalized, r.threshold);
    }
    if per_file {
        let standard = &results[0];
        for f in &standard.files {
            let norm = f.normalized.map_or("-".into(), |n| format!("{n:6.1}"));
            println!(
                "  {:60} {norm:>6}  raw {:6.2}  windows {}/{}  fp {}",
                f.name, f.raw, f.detected, f.windows, f.false_positives
            );
        }
    }
    // The machine is shared: the best of a few alternating runs of each.
    let (mut backtest_rate, mut detector_rate, mut detector_bytes) = (0f64, 0f64, 0);
    let mut before_rate = 0f64;
    for _ in 0..RUNS {
        backtest_rate = backtest_rate.max(backtest_alone(&series, &settings));
        before_rate = before_rate.max(detector_and_peaks(&series, &settings));
        let (rate, bytes) = detector_alone(&series, &settings);
        (detector_rate, detector_bytes) = (detector_rate.max(rate), bytes);
    }
    println!(
        "{points} points, best of {RUNS} runs: {backtest_rate:.0} points/s (backtest), {before_rate:.0} (the \
         backtest before: detector and Peaks), {detector_rate:.0} (the live detector alone)"
    );
    println!(
        "largest detector: {detector_bytes} bytes; largest backtest: {} bytes",
        largest_backtest(&series, &settings)
    );
}

/// Timed runs of each, alternating.
const RUNS: usize = 5;

/// The backtest over every series: points per second.
fn backtest_alone(series: &[corpus::Series], settings: &Settings) -> f64 {
    let started = Instant::now();
    let mut points = 0;
    for s in series {
        std::hint::black_box(backtest(&s.rows, settings).expect("valid settings"));
        points += s.rows.len();
    }
    points as f64 / started.elapsed().as_secs_f64()
}

/// The backtest as it was before the seasonal question (decision 0020):
/// the detector's score, capped inside an alerted episode, through
/// [`glassbox_anomaly::Peaks`]. Points per second.
fn detector_and_peaks(series: &[corpus::Series], settings: &Settings) -> f64 {
    let started = Instant::now();
    let mut points = 0;
    for s in series {
        let mut detector = glassbox_anomaly::Detector::new(settings.clone()).expect("valid settings");
        let mut peaks = glassbox_anomaly::Peaks::new();
        for &(t, x) in &s.rows {
            let alerted = detector.episode().is_some();
            let o = detector.observe(t, x);
            let reported = if alerted { o.score.min(settings.calm_threshold) } else { o.score };
            std::hint::black_box(peaks.next(o.score, reported));
        }
        points += s.rows.len();
    }
    points as f64 / started.elapsed().as_secs_f64()
}

/// The live detector alone over every series: points per second, and the
/// largest detector's memory after a whole series.
fn detector_alone(series: &[corpus::Series], settings: &Settings) -> (f64, usize) {
    let started = Instant::now();
    let (mut points, mut largest) = (0, 0);
    for s in series {
        let mut detector = glassbox_anomaly::Detector::new(settings.clone()).expect("valid settings");
        for &(t, x) in &s.rows {
            std::hint::black_box(detector.observe(t, x));
        }
        points += s.rows.len();
        largest = largest.max(detector.memory_bytes());
    }
    (points as f64 / started.elapsed().as_secs_f64(), largest)
}

/// The largest backtest's memory (detector included) after a whole series.
fn largest_backtest(series: &[corpus::Series], settings: &Settings) -> usize {
    let mut largest = 0;
    for s in series {
        let mut backtest = glassbox_anomaly::Backtest::new(settings).expect("valid settings");
        for &(t, x) in &s.rows {
            backtest.observe(t, x);
        }
        largest = largest.max(backtest.memory_bytes());
    }
    largest
}
