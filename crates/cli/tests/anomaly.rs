//! `glassbox anomaly backtest` on small CSVs, through the real binary.

use std::path::Path;
use std::process::{Command, Output};

fn glassbox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glassbox")).args(args).output().expect("glassbox runs")
}

/// 800 rows every 5 minutes in NAB's format: a calm series with a little
/// deterministic noise, a spike at row 600, a missing value, a duplicate
/// and an out-of-order timestamp.
fn history() -> String {
    let mut text = String::from("timestamp,value\n");
    let mut state: u64 = 42;
    for i in 0..800u64 {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let noise = (state >> 33) as f64 / (1u64 << 31) as f64 - 0.5;
        let value = if i == 600 { 250.0 } else { 100.0 + 4.0 * noise };
        let minutes = i * 5;
        let time = format!("2014-04-{:02} {:02}:{:02}:00", 1 + minutes / 1440, minutes % 1440 / 60, minutes % 60);
        match i {
            300 => text.push_str(&format!("{time},\n")),
            400 => text.push_str(&format!("{time},{value:.3}\n{time},{value:.3}\n")),
            500 => text.push_str(&format!("{time},{value:.3}\n2014-04-01 00:00:00,1\n")),
            _ => text.push_str(&format!("{time},{value:.3}\n")),
        }
    }
    text
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn backtest_scores_every_row_and_flags_the_spike_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "history.csv", &history());
    let output = dir.path().join("scored.csv");
    let episodes = dir.path().join("episodes.csv");
    let run = glassbox(&[
        "anomaly",
        "backtest",
        "--input",
        &input,
        "--output",
        output.to_str().unwrap(),
        "--episodes",
        episodes.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("802 rows: 1 alert in 1 episode"), "{stderr}");
    assert!(stderr.contains("1 missing value, 1 duplicate timestamp and 1 out-of-order timestamp"), "{stderr}");
    let scored = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<&str> = scored.lines().collect();
    assert_eq!(lines[0], "timestamp,value,score,anomaly");
    assert_eq!(lines.len(), 803, "one output row per input row");
    let flagged: Vec<&str> = lines.iter().copied().filter(|l| l.ends_with(",1")).collect();
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert!(flagged[0].starts_with("2014-04-03 02:00:00,250.000,"), "{}", flagged[0]);
    for line in &lines[1..] {
        let score: f64 = line.split(',').nth(2).unwrap().parse().unwrap();
        assert!((0.0..=1.0).contains(&score), "{line}");
    }
    let alerting = lines[1..].iter().filter(|l| l.split(',').nth(2).unwrap().parse::<f64>().unwrap() >= 0.5).count();
    assert_eq!(alerting, 1, "inside the episode, scores stay below the threshold");
    let episodes = std::fs::read_to_string(&episodes).unwrap();
    assert!(episodes.starts_with("start,peak,peak_score,end,signal\n2014-04-03 02:00:00,"), "{episodes}");
}

#[test]
fn a_malformed_row_stops_the_run_naming_its_line_unless_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = history();
    text.push_str("2014-04-05 00:00:00,12abc\n");
    let input = write(dir.path(), "bad.csv", &text);
    let output = dir.path().join("out.csv");
    let run = glassbox(&["anomaly", "backtest", "--input", &input, "--output", output.to_str().unwrap()]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("line 804: value \"12abc\" is not a number"), "{stderr}");
    assert!(!output.exists(), "no half-written output");

    let run =
        glassbox(&["anomaly", "backtest", "--input", &input, "--output", output.to_str().unwrap(), "--skip-bad-rows"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("skipped line 804: value \"12abc\" is not a number"), "{stderr}");
    assert!(stderr.contains("left out 1 unreadable row"), "{stderr}");
}

#[test]
fn invalid_settings_are_refused_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "h.csv", &history());
    let run = glassbox(&[
        "anomaly",
        "backtest",
        "--input",
        &input,
        "--output",
        "-",
        "--threshold",
        "1.5",
        "--calm-points",
        "0",
    ]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("threshold 1.5 must be in (0, 1]") && stderr.contains("calm points"), "{stderr}");
}
