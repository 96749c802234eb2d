//! Prints the detector's view of one synthetic series around its anomaly:
//! `cargo run --release -p glassbox-anomaly --example trace -- 40 [from] [to]`.

use glassbox_anomaly::synthetic::{Suite, generate};
use glassbox_anomaly::{Detector, Settings};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let index = args.first().copied().unwrap_or(0);
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let per_kind = env("ANOMALY_SERIES", 10) as usize;
    let suite =
        Suite { seed: env("ANOMALY_SEED", 11), series_per_kind: per_kind, clean_series: per_kind, points: 4032 };
    let mut all = generate(&suite);
    if index >= all.len() {
        return Err(
            format!("series {index} does not exist: the suite has {} (0 to {})", all.len(), all.len() - 1).into()
        );
    }
    let series = all.swap_remove(index);
    let onset = series.labels.first().map(|l| l.start).unwrap_or(f64::INFINITY);
    let onset_index = series.points.iter().position(|p| p.0 >= onset).unwrap_or(0);
    let from = args.get(1).copied().unwrap_or(onset_index.saturating_sub(20));
    let to = args.get(2).copied().unwrap_or(onset_index + 150);
    println!("{} interval={} labels={:?}", series.name, series.interval_secs, series.labels);
    let mut detector = Detector::new(Settings::default())?;
    for (i, &(t, x)) in series.points.iter().enumerate() {
        let o = detector.observe(t, x);
        if (from..to).contains(&i) || o.anomalous {
            let p = o.parts;
            println!(
                "{i:5} x={x:12.4} exp={:12.4} z={:7.2} score={:.3} pt={:.2} sh={:.2} dr={:.2} sp={:.2} si={:.2} {}{} {}",
                o.expected.unwrap_or(f64::NAN),
                p.deviation,
                o.score,
                p.point,
                p.shift,
                p.drift,
                p.spread,
                p.silence,
                if o.anomalous { "ALERT " } else { "" },
                o.signal.map_or("", |s| s.as_str()),
                detector.model()
            );
        }
    }
    Ok(())
}
