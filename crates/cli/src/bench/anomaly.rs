//! `glassbox bench anomaly`: the streaming anomaly detector on a labelled
//! synthetic suite (seasonal, wandering, count and heavy-tailed series with
//! injected spikes, level shifts, variance changes, silences and trend
//! changes, plus clean series): precision, recall and detection delay per
//! kind, false alarms, and throughput on one core.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use glassbox_anomaly::evaluation::{KindReport, Report, judge, median, replay};
use glassbox_anomaly::synthetic::{Series, Shape, Suite, generate};
use glassbox_anomaly::{Detector, Settings};

use crate::anomaly::SettingsArgs;

#[derive(clap::Args)]
#[command(after_help = SCORING_HELP)]
pub struct AnomalyBenchArgs {
    /// Seed of the suite (the same seed gives the same series everywhere).
    #[arg(long, default_value_t = Suite::default().seed)]
    seed: u64,
    /// Series per anomaly kind (five kinds, one anomaly per series).
    #[arg(long, default_value_t = Suite::default().series_per_kind)]
    series_per_kind: usize,
    /// Series with no anomaly at all.
    #[arg(long, default_value_t = Suite::default().clean_series)]
    clean_series: usize,
    /// Points per series (at the series' own interval: 1 min to 1 h).
    #[arg(long, default_value_t = Suite::default().points)]
    points: usize,
    /// An alert up to this many intervals after a label's last point still
    /// detects it.
    #[arg(long, default_value_t = 100.0)]
    tolerance_points: f64,
    /// Detectors fed side by side for the many-series throughput figure.
    #[arg(long, default_value_t = 10_000)]
    many: usize,
    /// Also write every series as CSV (`timestamp,value`, for `glassbox
    /// anomaly backtest`) and their labels (`labels.csv`) here.
    #[arg(long)]
    write_dir: Option<PathBuf>,
    /// Instead of the synthetic suite, score the detector on the Numenta
    /// Anomaly Benchmark series in this directory (`data/<category>/*.csv`
    /// and `labels/combined_windows.json`) by NAB v1.1's rules: standard,
    /// low-FP and low-FN scores, and each series' part.
    #[arg(long)]
    nab: Option<PathBuf>,
    #[command(flatten)]
    settings: SettingsArgs,
}

const SCORING_HELP: &str = "\
Scoring: each label is a window from its first affected point to its last,
plus --tolerance-points intervals. The first alert inside a window detects
it, with a delay from the label's start; more alerts in the same window
count neither way. Every alert outside all windows is a false alarm.
  recall     detected windows / windows
  precision  detected windows / (detected windows + false alarms)
Alerts are replayed as a live host would see them: every point through the
detector, and a silence check at each expected point that did not arrive.

The last line holds the figures scripts read, e.g.
  precision=0.85 recall=0.80 f1=0.82 false_alarms_per_10k_points=0.2 delay_p50_points=1 points_per_sec=2500000";

pub async fn run(args: AnomalyBenchArgs) -> anyhow::Result<()> {
    let settings = args.settings.settings()?;
    if let Some(dir) = &args.nab {
        return super::nab::run(dir, &settings);
    }
    let suite = Suite {
        seed: args.seed,
        series_per_kind: args.series_per_kind,
        clean_series: args.clean_series,
        points: args.points,
    };
    let series = generate(&suite);
    if let Some(dir) = &args.write_dir {
        write_suite(dir, &series, args.tolerance_points)?;
    }
    let started = Instant::now();
    let mut report = Report::default();
    let mut calls = 0usize;
    for s in &series {
        // Count series are judged as counts, as the server judges its own.
        let count_unit = if s.shape == Shape::Counts { 1.0 } else { settings.count_unit };
        let mut detector = Detector::new(Settings { count_unit, ..settings.clone() })?;
        let alerts = replay(s, &mut detector);
        calls += s.points.len() + s.missing.len();
        report.add(&judge(s, &alerts, args.tolerance_points));
    }
    let elapsed = started.elapsed().as_secs_f64();
    print_report(&suite, &report);
    let many = many_series(&series, args.many, &settings)?;
    let total = report.total();
    let f1 = harmonic(report.precision(), report.recall());
    let rate = calls as f64 / elapsed;
    println!(
        "throughput (one core): {rate:.0} points/s over the suite; {many:.0} points/s across {} detectors fed in turn; \
         {} bytes per detector",
        args.many,
        memory_bytes(&series, &settings)?
    );
    println!(
        "precision={:.3} recall={:.3} f1={f1:.3} false_alarms_per_10k_points={:.3} delay_p50_points={:.1} \
         points_per_sec={rate:.0}",
        report.precision(),
        report.recall(),
        report.false_alarms_per_10k_points(),
        median(&total.delays_points),
    );
    Ok(())
}

fn harmonic(a: f64, b: f64) -> f64 {
    if a + b == 0.0 { 0.0 } else { 2.0 * a * b / (a + b) }
}

fn print_report(suite: &Suite, report: &Report) {
    println!(
        "{} series ({} per kind, {} clean), {} points, seed {}",
        report.series, suite.series_per_kind, suite.clean_series, report.points, suite.seed
    );
    println!(
        "{:<16} {:>7} {:>8} {:>7} {:>13} {:>13}",
        "kind", "windows", "detected", "recall", "delay p50", "delay p90"
    );
    let row = |name: &str, k: &KindReport| {
        println!(
            "{name:<16} {:>7} {:>8} {:>7.2} {:>13} {:>13}",
            k.windows,
            k.detected,
            k.recall(),
            delay(k, 0.5),
            delay(k, 0.9)
        );
    };
    for (kind, k) in &report.by_kind {
        row(kind.as_str(), k);
    }
    row("all", &report.total());
    println!(
        "false alarms: {} ({:.3} per 10,000 points); precision {:.3}, recall {:.3}",
        report.false_alarms,
        report.false_alarms_per_10k_points(),
        report.precision(),
        report.recall()
    );
}

/// A delay percentile as "points (time)", or "-" if nothing was detected.
fn delay(k: &KindReport, q: f64) -> String {
    let pick = |values: &[f64]| {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(((v.len() as f64 - 1.0) * q).round() as usize).copied()
    };
    match (pick(&k.delays_points), pick(&k.delays_secs)) {
        (Some(points), Some(secs)) => {
            let time = humantime::format_duration(std::time::Duration::from_secs(secs.max(0.0) as u64));
            format!("{points:.0} ({time})")
        }
        _ => "-".into(),
    }
}

/// Points per second with `count` detectors fed round robin (up to 2000
/// points each, from the suite's series cycled), as a host watching
/// thousands of series would.
fn many_series(series: &[Series], count: usize, settings: &Settings) -> anyhow::Result<f64> {
    let count = count.max(1);
    let mut detectors: Vec<Detector> = (0..count).map(|_| Detector::new(settings.clone())).collect::<Result<_, _>>()?;
    let length = series.iter().map(|s| s.points.len()).min().unwrap_or(0).min(2000);
    let started = Instant::now();
    let mut fed = 0usize;
    for i in 0..length {
        for (d, detector) in detectors.iter_mut().enumerate() {
            let (t, x) = series[d % series.len()].points[i];
            std::hint::black_box(detector.observe(t, x));
            fed += 1;
        }
    }
    Ok(fed as f64 / started.elapsed().as_secs_f64())
}

/// The largest detector after learning a series of each shape (constant
/// once the seasonal profiles exist).
fn memory_bytes(series: &[Series], settings: &Settings) -> anyhow::Result<usize> {
    let mut largest = 0;
    for s in series.iter().take(5) {
        let mut detector = Detector::new(settings.clone())?;
        for &(t, x) in s.points.iter().take(1000) {
            detector.observe(t, x);
        }
        largest = largest.max(detector.memory_bytes());
    }
    Ok(largest)
}

fn write_suite(dir: &Path, series: &[Series], tolerance_points: f64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let time = |t: f64| {
        chrono::DateTime::from_timestamp(t as i64, 0)
            .map_or_else(|| t.to_string(), |d| d.format("%Y-%m-%d %H:%M:%S").to_string())
    };
    let mut labels = String::from("series,kind,start,end,window_end\n");
    for s in series {
        let mut text = String::from("timestamp,value\n");
        for (t, x) in &s.points {
            text.push_str(&format!("{},{x}\n", time(*t)));
        }
        let path = dir.join(format!("{}.csv", s.name));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        for l in &s.labels {
            let window_end = l.end + tolerance_points * s.interval_secs;
            labels.push_str(&format!(
                "{},{},{},{},{}\n",
                s.name,
                l.kind.as_str(),
                time(l.start),
                time(l.end),
                time(window_end)
            ));
        }
    }
    std::fs::write(dir.join("labels.csv"), labels).context("writing labels.csv")?;
    println!("wrote {} series and labels.csv to {}", series.len(), dir.display());
    Ok(())
}
