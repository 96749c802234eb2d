//! Development aid: runs the synthetic suite and prints every false alarm
//! and every missed window, with the parts of the score.
//! `ANOMALY_SEED=1 ANOMALY_SERIES=30 cargo run --release -p glassbox-anomaly --example suite`

use std::collections::BTreeMap;

use glassbox_anomaly::synthetic::{Suite, generate};
use glassbox_anomaly::{Detector, Settings};

fn main() -> Result<(), glassbox_anomaly::InvalidSettings> {
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let per_kind = env("ANOMALY_SERIES", 30) as usize;
    let suite = Suite { seed: env("ANOMALY_SEED", 1), series_per_kind: per_kind, clean_series: per_kind, points: 4032 };
    let mut fp_by: BTreeMap<String, usize> = BTreeMap::new();
    let mut missed_by: BTreeMap<String, usize> = BTreeMap::new();
    for series in generate(&suite) {
        let threshold = std::env::var("ANOMALY_THRESHOLD").ok().and_then(|v| v.parse().ok()).unwrap_or(0.5);
        let settings = Settings { threshold, calm_threshold: 0.3f64.min(threshold), ..Settings::default() };
        let mut detector = Detector::new(settings)?;
        let window = series.labels.first().map(|l| (l.start, l.end + 100.0 * series.interval_secs));
        let mut hit = false;
        for (i, &(t, x)) in series.points.iter().enumerate() {
            let o = detector.observe(t, x);
            if !o.anomalous {
                continue;
            }
            let inside = window.is_some_and(|(s, e)| t >= s && t <= e);
            hit |= inside;
            if !inside {
                let signal = o.signal.map_or("", |s| s.as_str());
                *fp_by.entry(format!("{} {}", series.shape.as_str(), signal)).or_default() += 1;
                println!(
                    "FP {:30} i={i:5} score={:.2} {signal:14} {:?} model={}",
                    series.name,
                    o.score,
                    o.parts,
                    detector.model()
                );
            }
        }
        if window.is_some() && !hit {
            *missed_by.entry(series.name[4..].to_string()).or_default() += 1;
        }
    }
    println!("false alarms by shape and signal: {fp_by:?}");
    println!("TOTAL false_alarms={} missed={}", fp_by.values().sum::<usize>(), missed_by.values().sum::<usize>());
    println!("missed by shape and kind: {missed_by:?}");
    Ok(())
}
