//! The Numenta Anomaly Benchmark's scoring (NAB v1.1), so the detector can
//! be judged on real labelled series by the rules its published
//! competitors were (`glassbox bench anomaly --nab DIR`, and
//! `cargo run --release -p glassbox-anomaly --example nab`).
//!
//! Every row whose score reaches a threshold is a detection. Inside a
//! labelled window the earliest detection earns up to `tp` (less the later
//! it comes: a scaled sigmoid of its position); a window with none costs
//! `fn`; every detection outside the windows costs up to `fp` (less just
//! after a window). The first 15% of each series (at most 750 rows) is a
//! probation period, left out. One threshold for the whole corpus, the
//! best one, is found by sweeping every score; the raw total is normalised
//! so that detecting nothing scores 0 and a perfect detector 100. This
//! reproduces the independent Python scorer beside the data
//! (`nab_score.py`) to the rounding.
//!
//! No I/O: callers read the files; [`nab_time`] parses NAB's timestamps.

use crate::Settings;

/// The weights of one of NAB's application profiles.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub tp: f64,
    pub fn_: f64,
    pub fp: f64,
}

/// NAB v1.1's three profiles (`config/profiles.json`), standard first.
pub const PROFILES: [Profile; 3] = [
    Profile { name: "standard", tp: 1.0, fn_: 1.0, fp: 0.11 },
    Profile { name: "reward_low_FP_rate", tp: 1.0, fn_: 1.0, fp: 0.22 },
    Profile { name: "reward_low_FN_rate", tp: 1.0, fn_: 2.0, fp: 0.11 },
];

/// The share of each series, from its start, that is not scored.
const PROBATION_SHARE: f64 = 0.15;
/// The probation period never exceeds this many rows.
const PROBATION_ROWS_MAX: f64 = PROBATION_SHARE * 5000.0;

/// One labelled series and a detector's score for each of its rows.
#[derive(Clone, Debug)]
pub struct Scored {
    pub name: String,
    pub scores: Vec<f64>,
    /// The labelled windows, as inclusive row ranges, in time order.
    pub windows: Vec<(usize, usize)>,
}

/// One series' part of a profile's result, at the corpus threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct FileResult {
    pub name: String,
    /// The raw NAB score of this series (its share of the corpus total).
    pub raw: f64,
    /// This series' score normalised like the corpus (0 = no detections,
    /// 100 = perfect); `None` for a series without windows.
    pub normalized: Option<f64>,
    pub windows: usize,
    pub detected: usize,
    pub false_positives: usize,
}

/// A profile's result on the corpus.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileResult {
    pub profile: Profile,
    /// 0 = no detections, 100 = perfect.
    pub normalized: f64,
    pub raw: f64,
    /// The best threshold (detections are rows scoring at least this).
    pub threshold: f64,
    pub files: Vec<FileResult>,
}

/// A scored row of the sweep: its score, its weight if detected, and its
/// window (series index, window index) if inside one.
#[derive(Clone, Copy, Debug)]
struct Row {
    score: f64,
    weight: f64,
    window: Option<(usize, usize)>,
    series: usize,
}

/// `2 / (1 + e^(5y)) - 1`, and -1 well after a window.
fn scaled_sigmoid(y: f64) -> f64 {
    if y > 3.0 { -1.0 } else { 2.0 / (1.0 + (5.0 * y).exp()) - 1.0 }
}

fn probation_rows(n: usize) -> usize {
    let share = (PROBATION_SHARE * n as f64).floor();
    share.min(PROBATION_ROWS_MAX).ceil() as usize
}

/// The weight of a detection at each scored row of one series.
fn sweep_rows(index: usize, series: &Scored, profile: &Profile, rows: &mut Vec<Row>) {
    let n = series.scores.len();
    let probation = probation_rows(n);
    let max_tp = scaled_sigmoid(-1.0);
    let mut next = 0;
    let mut current: Option<(usize, usize, usize)> = None;
    let mut previous: Option<(usize, usize)> = None;
    for i in 0..n {
        if current.is_none() && next < series.windows.len() && i == series.windows[next].0 {
            current = Some((series.windows[next].0, series.windows[next].1, next));
            next += 1;
        }
        let (weight, window) = match (current, previous) {
            (Some((left, right, w)), _) => {
                let width = (right - left + 1) as f64;
                let position = -((right - i + 1) as f64) / width;
                (scaled_sigmoid(position) * profile.tp / max_tp, Some((index, w)))
            }
            (None, None) => (-profile.fp, None),
            (None, Some((right, width))) => {
                let y = (i as f64 - right as f64).abs() / (width as f64 - 1.0);
                (scaled_sigmoid(y) * profile.fp, None)
            }
        };
        if i >= probation {
            rows.push(Row { score: series.scores[i], weight, window, series: index });
        }
        if let Some((left, right, _)) = current.filter(|c| c.1 == i) {
            previous = Some((right, right - left + 1));
            current = None;
        }
    }
}

/// Scores a corpus under one profile: the best single threshold, and each
/// series' share at it.
pub fn score(corpus: &[Scored], profile: &Profile) -> ProfileResult {
    let mut rows = Vec::new();
    for (i, series) in corpus.iter().enumerate() {
        sweep_rows(i, series, profile, &mut rows);
    }
    let threshold = best_threshold(&mut rows, profile);
    let files = per_file(corpus, &rows, threshold, profile);
    let raw = files.iter().map(|f| f.raw).sum();
    let windows: usize = corpus.iter().map(|s| s.windows.len()).sum();
    ProfileResult { profile: *profile, normalized: normalize(raw, windows, profile), raw, threshold, files }
}

/// Scores a corpus under every profile ([`PROFILES`]).
pub fn score_all(corpus: &[Scored]) -> Vec<ProfileResult> {
    PROFILES.iter().map(|p| score(corpus, p)).collect()
}

fn normalize(raw: f64, windows: usize, profile: &Profile) -> f64 {
    let null = -profile.fn_ * windows as f64;
    let perfect = profile.tp * windows as f64;
    100.0 * (raw - null) / (perfect - null)
}

/// Admits rows from the highest score down, a whole score at a time, and
/// returns the score at which the running total was best.
fn best_threshold(rows: &mut [Row], profile: &Profile) -> f64 {
    rows.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut best_in_window = std::collections::HashMap::new();
    for row in rows.iter() {
        if let Some(w) = row.window {
            best_in_window.insert(w, -profile.fn_);
        }
    }
    let mut total: f64 = best_in_window.values().sum();
    let (mut best, mut threshold) = (total, 1.1);
    let mut i = 0;
    while i < rows.len() {
        let score = rows[i].score;
        while i < rows.len() && rows[i].score == score {
            let row = rows[i];
            match row.window {
                None => total += row.weight,
                Some(w) => {
                    let held = best_in_window.entry(w).or_insert(-profile.fn_);
                    if row.weight > *held {
                        total += row.weight - *held;
                        *held = row.weight;
                    }
                }
            }
            i += 1;
        }
        if total > best {
            (best, threshold) = (total, score);
        }
    }
    threshold
}

fn per_file(corpus: &[Scored], rows: &[Row], threshold: f64, profile: &Profile) -> Vec<FileResult> {
    let mut files: Vec<FileResult> = corpus
        .iter()
        .map(|s| FileResult {
            name: s.name.clone(),
            raw: 0.0,
            normalized: None,
            windows: s.windows.len(),
            detected: 0,
            false_positives: 0,
        })
        .collect();
    let mut best_in_window = std::collections::HashMap::new();
    for row in rows {
        match row.window {
            Some(w) => {
                let held = best_in_window.entry(w).or_insert(-profile.fn_);
                if row.score >= threshold && row.weight > *held {
                    *held = row.weight;
                }
            }
            None if row.score >= threshold => {
                files[row.series].raw += row.weight;
                files[row.series].false_positives += 1;
            }
            None => {}
        }
    }
    for ((series, _), held) in best_in_window {
        files[series].raw += held;
        files[series].detected += usize::from(held > -profile.fn_);
    }
    for file in &mut files {
        file.normalized = (file.windows > 0).then(|| normalize(file.raw, file.windows, profile));
    }
    files
}

/// Runs a fresh detector over one series' `(time, value)` rows, as
/// `glassbox anomaly backtest` writes its score column: inside an episode
/// already alerted a row's score is capped at the calm threshold, and a
/// score is kept only where it is a new high of the last
/// [`crate::PEAK_HOLD_POINTS`] points ([`Peaks`]), so at any threshold the
/// rows at or above it are alerts, one per burst.
pub fn backtest(rows: &[(f64, f64)], settings: &Settings) -> Result<Vec<f64>, crate::InvalidSettings> {
    let mut backtest = crate::Backtest::new(settings)?;
    Ok(rows.iter().map(|&(t, value)| backtest.observe(t, value).score).collect())
}

/// Seconds since 1970 of a NAB timestamp (`YYYY-MM-DD HH:MM:SS`, with
/// optional fractional seconds), read as UTC.
pub fn nab_time(text: &str) -> Option<f64> {
    let text = text.trim();
    let (date, time) = text.split_once([' ', 'T'])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let (h, min) = (t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?);
    let s = t.next()?.parse::<f64>().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    Some((days_from_civil(y, m, day) * 86_400 + h * 3600 + min * 60) as f64 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_seconds() {
        assert_eq!(nab_time("1970-01-01 00:00:00"), Some(0.0));
        assert_eq!(nab_time("2014-02-14 14:30:00"), Some(1_392_388_200.0));
        assert_eq!(nab_time("2014-04-10 07:15:00.000000"), Some(1_397_114_100.0));
        assert_eq!(nab_time("yesterday"), None);
    }

    fn series(scores: Vec<f64>, windows: Vec<(usize, usize)>) -> Scored {
        Scored { name: "s".into(), scores, windows }
    }

    #[test]
    fn no_detections_score_zero_and_an_early_one_nearly_a_hundred() {
        let quiet = series(vec![0.0; 1000], vec![(500, 599)]);
        assert!(score(&[quiet], &PROFILES[0]).normalized.abs() < 1e-9);
        let mut scores = vec![0.0; 1000];
        scores[500] = 1.0;
        let early = score(&[series(scores, vec![(500, 599)])], &PROFILES[0]);
        assert!(early.normalized > 99.0, "{early:?}");
        assert_eq!(early.files[0].detected, 1);
    }

    #[test]
    fn false_positives_cost_and_late_detections_earn_less() {
        let mut scores = vec![0.0; 1000];
        scores[590] = 1.0;
        let late = score(&[series(scores.clone(), vec![(500, 599)])], &PROFILES[0]);
        scores[300] = 1.0;
        let with_fp = score(&[series(scores, vec![(500, 599)])], &PROFILES[0]);
        assert!(late.normalized < 65.0 && late.normalized > 50.0, "{late:?}");
        assert!(with_fp.raw < late.raw, "{with_fp:?}");
        assert_eq!(with_fp.files[0].false_positives, 1);
    }
}
