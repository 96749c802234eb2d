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
    let started = Instant::now();
    let points: usize = series.iter().map(|s| s.rows.len()).sum();
    let scored: Vec<Scored> = series
        .iter()
        .map(|s| Scored {
            name: s.name.clone(),
            scores: backtest(&s.rows, &settings).expect("the default settings are valid"),
            windows: s.windows.clone(),
        })
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
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
    println!("{points} points in {elapsed:.2}s: {:.0} points/s (backtest)", points as f64 / elapsed);
    let (detector_rate, detector_bytes) = detector_alone(&series, &settings);
    println!("{detector_rate:.0} points/s (the live detector alone)");
    println!(
        "largest detector: {detector_bytes} bytes; largest backtest: {} bytes",
        largest_backtest(&series, &settings)
    );
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
