//! `glassbox bench anomaly --nab DIR`: the detector on the Numenta Anomaly
//! Benchmark's labelled series, scored by NAB v1.1's rules
//! (`glassbox_anomaly::nab`): the standard, low-FP and low-FN scores and
//! each series' part.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use glassbox_anomaly::Settings;
use glassbox_anomaly::nab::{Scored, backtest, nab_time, score_all};

/// Scores every series of `dir/labels/combined_windows.json` found under
/// `dir/data` and prints the result.
pub fn run(dir: &Path, settings: &Settings) -> anyhow::Result<()> {
    let series = load(dir)?;
    anyhow::ensure!(!series.is_empty(), "no labelled series under {}", dir.join("data").display());
    let started = Instant::now();
    let points: usize = series.iter().map(|(_, rows, _)| rows.len()).sum();
    let scored = series
        .into_iter()
        .map(|(name, rows, windows)| Ok(Scored { name, scores: backtest(&rows, settings)?, windows }))
        .collect::<Result<Vec<Scored>, glassbox_anomaly::InvalidSettings>>()
        .map_err(|e| anyhow::anyhow!("the detector settings: {e}"))?;
    let elapsed = started.elapsed().as_secs_f64();
    let results = score_all(&scored);
    println!(
        "{} series, {points} points, {} windows",
        scored.len(),
        results[0].files.iter().map(|f| f.windows).sum::<usize>()
    );
    println!(
        "{:<40} {:>8} {:>8} {:>8} {:>8} {:>4}",
        "series (standard profile)", "score", "raw", "windows", "detected", "fp"
    );
    for f in &results[0].files {
        let score = f.normalized.map_or("-".into(), |n| format!("{n:.1}"));
        println!(
            "{:<40} {score:>8} {:>8.2} {:>8} {:>8} {:>4}",
            short(&f.name),
            f.raw,
            f.windows,
            f.detected,
            f.false_positives
        );
    }
    for r in &results {
        println!("{:<20} {:6.1}  (raw {:.2}, threshold {:.4})", r.profile.name, r.normalized, r.raw, r.threshold);
    }
    println!(
        "nab_standard={:.2} nab_low_fp={:.2} nab_low_fn={:.2} points_per_sec={:.0}",
        results[0].normalized,
        results[1].normalized,
        results[2].normalized,
        points as f64 / elapsed
    );
    Ok(())
}

fn short(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name).trim_end_matches(".csv")
}

type Series = (String, Vec<(f64, f64)>, Vec<(usize, usize)>);

fn load(dir: &Path) -> anyhow::Result<Vec<Series>> {
    let path = dir.join("labels/combined_windows.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let labels: BTreeMap<String, Vec<[String; 2]>> =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    let mut series = Vec::new();
    for (name, windows) in labels {
        let path = dir.join("data").join(&name);
        if !path.is_file() {
            continue;
        }
        let rows = read_rows(&path)?;
        let row_of = |time: &str| {
            let t = nab_time(time).with_context(|| format!("{name}: window time {time}"))?;
            rows.iter().position(|r| r.0 == t).with_context(|| format!("{name}: window time {time} is not a row"))
        };
        let windows = windows.iter().map(|[a, b]| Ok((row_of(a)?, row_of(b)?))).collect::<anyhow::Result<_>>()?;
        series.push((name, rows, windows));
    }
    Ok(series)
}

/// A NAB data file: a header, then `timestamp,value` rows.
fn read_rows(path: &Path) -> anyhow::Result<Vec<(f64, f64)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .skip(1)
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let row = line.split_once(',').and_then(|(t, v)| Some((nab_time(t)?, v.trim().parse().ok()?)));
            row.with_context(|| format!("{}: line {} is not timestamp,value", path.display(), i + 1))
        })
        .collect()
}
