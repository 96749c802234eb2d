//! The Rust NAB scorer agrees with the independent Python one beside the
//! data (`nab_score.py`) to 0.01 on every profile, on the detector's own
//! scores of the shared series. Skipped when the data or python3 are absent.

#[path = "../examples/nab/corpus.rs"]
mod corpus;

use std::process::Command;

use glassbox_anomaly::Settings;
use glassbox_anomaly::nab::{Scored, backtest, score_all};

#[test]
fn rust_scores_match_the_python_scorer() {
    let Some(dir) = corpus::find_dir() else {
        eprintln!("skipped: no NAB directory (GLASSBOX_NAB_DIR or ../shared/nab)");
        return;
    };
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: no python3");
        return;
    }
    let series = corpus::load(&dir);
    let results = tempfile_dir();
    let mut scored = Vec::new();
    for s in &series {
        let scores = backtest(&s.rows, &Settings::default()).unwrap();
        write_results(&results, &dir, &s.name, &scores);
        scored.push(Scored { name: s.name.clone(), scores, windows: s.windows.clone() });
    }
    let ours = score_all(&scored);
    let out = Command::new("python3")
        .arg(dir.join("nab_score.py"))
        .arg(dir.join("labels/combined_windows.json"))
        .arg(&results)
        .args(["--detector", "glassbox"])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for r in &ours {
        let line = text.lines().find(|l| l.split_whitespace().nth(1) == Some(r.profile.name)).expect("profile line");
        let theirs: f64 = line.split("normalized=").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
        assert!((theirs - r.normalized).abs() < 0.01, "{}: python {theirs}, rust {}", r.profile.name, r.normalized);
    }
    std::fs::remove_dir_all(&results).ok();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("glassbox-nab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// NAB's results layout: `<root>/<category>/<detector>_<file>` with the
/// data's timestamps and an `anomaly_score` column.
fn write_results(root: &std::path::Path, data: &std::path::Path, name: &str, scores: &[f64]) {
    let (category, file) = name.split_once('/').unwrap();
    std::fs::create_dir_all(root.join(category)).unwrap();
    let source = std::fs::read_to_string(data.join("data").join(name)).unwrap();
    let mut text = String::from("timestamp,value,anomaly_score\n");
    let rows = source.lines().skip(1).filter(|l| !l.trim().is_empty());
    for (line, score) in rows.zip(scores) {
        text.push_str(&format!("{line},{score}\n"));
    }
    std::fs::write(root.join(category).join(format!("glassbox_{file}")), text).unwrap();
}
