//! `glassbox anomaly backtest`: the streaming anomaly detector
//! (`glassbox-anomaly`) over a CSV of history, so operators can see what it
//! would have flagged and try settings on their own series.

mod csv;

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use glassbox_anomaly::{
    BURST_RISE, Backtest, Detector, Episode, PEAK_HOLD_POINTS, Seasonality, Settings, Skip, Status,
};

#[derive(clap::Subcommand)]
pub enum AnomalyCommand {
    /// Run the streaming detector over a CSV of `timestamp,value` rows and
    /// write `timestamp,value,score,anomaly` for every row.
    #[command(after_help = BACKTEST_HELP
        .replace("{hold}", &PEAK_HOLD_POINTS.to_string())
        .replace("{rise}", &BURST_RISE.to_string()))]
    Backtest(BacktestArgs),
}

const BACKTEST_HELP: &str = "\
The detector sees the rows one at a time, in file order, as it would live:
it learns the series' interval, level, daily and weekly pattern and usual
error, and scores each row against what it has learned so far.

Output columns:
  timestamp  as written in the input
  value      as written in the input
  score      0 to 1: how unusual the row is; a score s means behaviour with a
             probability of about 10^(-10 s) under the learned normal
             (0.5 is one in 100,000). 0 during the warm-up. Besides the
             detector's own questions, a seasonal series is asked whether
             its recent errors against the daily or weekly pattern are
             unusually large, whichever model the detector uses, and a
             value beyond every value before by more than 5% of their
             range scores 1 (the anomaly column asks neither). Inside an
             episode already alerted, the detector's part is written at
             most at --calm-threshold (it raises no new alert), and a
             row's score is written only where it is higher than every
             score of the previous {hold} rows (while the score climbs row
             after row, only once it is {rise} times the climb's last
             written score; else 0), so at any threshold the rows at or
             above it are alerts, one per burst; --raw-scores writes them
             unchanged.
  anomaly    1 on the row that starts an episode (one alert per anomaly,
             however long it lasts), else 0

Rows the detector cannot use are written with score 0: missing values
(empty, nan, null, NA), duplicate and out-of-order timestamps. A row that
cannot be read at all stops the run with its line number, unless
--skip-bad-rows. Episodes (start, peak, end, what kind) go to stderr, or to
a CSV with --episodes.

Examples:
  glassbox anomaly backtest --input cpu.csv --output cpu-scored.csv
  glassbox anomaly backtest --input cpu.csv --output - --threshold 0.6 | grep ',1$'
  glassbox bench anomaly --write-dir /tmp/series   # labelled series to try it on";

/// The detector's settings as flags; defaults are the detector's own.
#[derive(clap::Args, Clone, Debug)]
pub struct SettingsArgs {
    /// Score (0 to 1] that starts an episode and raises one alert; a score s
    /// means about one in 10^(10 s) points.
    #[arg(long, default_value_t = Settings::default().threshold)]
    threshold: f64,
    /// Score below which a point is calm; an episode ends after
    /// --calm-points calm points in a row.
    #[arg(long, default_value_t = Settings::default().calm_threshold)]
    calm_threshold: f64,
    /// Calm points in a row that end an episode.
    #[arg(long, default_value_t = Settings::default().calm_points)]
    calm_points: u32,
    /// Points learned before anything is scored.
    #[arg(long, default_value_t = Settings::default().warmup_points)]
    warmup_points: u32,
    /// A level shift lasting this many points becomes the new normal.
    #[arg(long, default_value_t = Settings::default().relearn_points)]
    relearn_points: u32,
    /// Points the long-run statistics remember.
    #[arg(long, default_value_t = Settings::default().memory_points)]
    memory_points: u32,
    /// Gaps shorter than this many usual intervals are never a silence.
    #[arg(long, default_value_t = Settings::default().silence_intervals_min)]
    silence_intervals_min: f64,
    /// Seasonal patterns to learn: off, daily, or weekly (daily and weekly).
    #[arg(long, value_parser = ["off", "daily", "weekly"], default_value = "weekly")]
    seasonality: String,
    /// The values are counts per point (messages, failures): a change
    /// within the count's Poisson noise (square root of the expected count)
    /// is never an anomaly. Use it for low counts, which otherwise alert on
    /// a one-count wobble.
    #[arg(long)]
    counts: bool,
    /// The smallest change worth an alert, in the series' unit (e.g. 0.1 for
    /// a latency in ms timed on a busy host): smaller errors are never
    /// surprising.
    #[arg(long, default_value_t = 0.0)]
    resolution: f64,
}

impl SettingsArgs {
    /// The validated settings (every problem named at once).
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let seasonality = match self.seasonality.as_str() {
            "off" => Seasonality::Off,
            "daily" => Seasonality::Daily,
            _ => Seasonality::Weekly,
        };
        let settings = Settings {
            threshold: self.threshold,
            calm_threshold: self.calm_threshold,
            calm_points: self.calm_points,
            warmup_points: self.warmup_points,
            relearn_points: self.relearn_points,
            memory_points: self.memory_points,
            silence_intervals_min: self.silence_intervals_min,
            seasonality,
            count_unit: if self.counts { 1.0 } else { 0.0 },
            resolution: self.resolution,
        };
        settings.validate()?;
        Ok(settings)
    }
}

#[derive(clap::Args)]
pub struct BacktestArgs {
    /// CSV to read: a `timestamp,value` header (or none) and one row per
    /// point; `-` for stdin. Timestamps: RFC 3339, `YYYY-MM-DD HH:MM:SS`
    /// (UTC), or unix time (seconds; milliseconds and finer are told apart
    /// by magnitude).
    #[arg(long)]
    input: PathBuf,
    /// CSV to write (`timestamp,value,score,anomaly`); `-` for stdout.
    #[arg(long)]
    output: PathBuf,
    /// Report unreadable rows on stderr and leave them out, instead of
    /// stopping at the first.
    #[arg(long)]
    skip_bad_rows: bool,
    /// Also write the episodes as CSV (`start,peak,peak_score,end,signal`).
    #[arg(long)]
    episodes: Option<PathBuf>,
    /// Write each row's own score, also inside episodes already alerted.
    #[arg(long)]
    raw_scores: bool,
    #[command(flatten)]
    settings: SettingsArgs,
}

pub async fn run(command: AnomalyCommand) -> anyhow::Result<()> {
    match command {
        AnomalyCommand::Backtest(args) => backtest(args),
    }
}

/// What a backtest saw, for the summary.
#[derive(Default)]
struct Tally {
    rows: usize,
    bad: usize,
    skipped: [usize; 4],
    alerts: usize,
    episodes: Vec<Episode>,
}

fn backtest(args: BacktestArgs) -> anyhow::Result<()> {
    let mut backtest = Backtest::new(&args.settings.settings()?)?;
    let input: Box<dyn std::io::BufRead> = if args.input == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.input).with_context(|| format!("opening {}", args.input.display()))?;
        Box::new(BufReader::new(file))
    };
    let mut reader = csv::Reader::new(input).with_context(|| format!("reading {}", args.input.display()))?;
    let mut output = Output::create(&args.output)?;
    writeln!(output.writer, "timestamp,value,score,anomaly")?;
    let mut tally = Tally::default();
    while let Some(row) = reader.next_row().with_context(|| format!("reading {}", args.input.display()))? {
        let row = match row {
            Ok(row) => row,
            Err(bad) if args.skip_bad_rows => {
                if tally.bad < 20 {
                    eprintln!("skipped {bad}");
                }
                tally.bad += 1;
                continue;
            }
            Err(bad) => anyhow::bail!("{}: {bad} (or use --skip-bad-rows)", args.input.display()),
        };
        let scored = backtest.observe(row.t, row.value);
        tally.count(&scored.observation);
        let score = if args.raw_scores { scored.raw } else { scored.score };
        let flag = u8::from(scored.observation.anomalous);
        writeln!(output.writer, "{},{},{},{flag}", row.timestamp_text, row.value_text, format_score(score))?;
    }
    tally.episodes.extend(backtest.detector().episode().copied());
    output.finish()?;
    if let Some(path) = &args.episodes {
        write_episodes(path, &tally.episodes)?;
    }
    summarise(&tally, backtest.detector());
    Ok(())
}

impl Tally {
    fn count(&mut self, o: &glassbox_anomaly::Observation) {
        self.rows += 1;
        self.alerts += usize::from(o.anomalous);
        self.episodes.extend(o.ended);
        if let Status::Skipped(skip) = o.status {
            let index = match skip {
                Skip::NotFinite => 0,
                Skip::Duplicate => 1,
                Skip::OutOfOrder => 2,
                Skip::BadTime => 3,
            };
            self.skipped[index] += 1;
        }
    }
}

/// The output file, written beside the target and renamed into place only
/// when complete, so a failed run leaves no half-written file.
struct Output {
    writer: BufWriter<Box<dyn Write>>,
    target: Option<(tempfile::NamedTempFile, PathBuf)>,
}

impl Output {
    fn create(path: &Path) -> anyhow::Result<Self> {
        if path == Path::new("-") {
            return Ok(Self { writer: BufWriter::new(Box::new(std::io::stdout())), target: None });
        }
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let temp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("creating {}", path.display()))?;
        let file = temp.reopen().with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { writer: BufWriter::new(Box::new(file)), target: Some((temp, path.to_path_buf())) })
    }

    fn finish(self) -> anyhow::Result<()> {
        let Self { mut writer, target } = self;
        writer.flush().context("writing the output")?;
        drop(writer);
        if let Some((temp, path)) = target {
            temp.persist(&path).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}

/// Up to six decimals, without trailing zeros.
fn format_score(score: f64) -> String {
    let text = format!("{score:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() { "0".into() } else { text.into() }
}

fn time_text(t: f64) -> String {
    chrono::DateTime::from_timestamp_micros((t * 1e6).round() as i64)
        .map_or_else(|| format!("{t}"), |d| d.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn write_episodes(path: &Path, episodes: &[Episode]) -> anyhow::Result<()> {
    let mut text = String::from("start,peak,peak_score,end,signal\n");
    for e in episodes {
        let end = e.end.map_or_else(String::new, time_text);
        let (start, peak, score) = (time_text(e.start), time_text(e.peak), format_score(e.peak_score));
        text.push_str(&format!("{start},{peak},{score},{end},{}\n", e.signal));
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn summarise(tally: &Tally, detector: &Detector) {
    let [not_finite, duplicate, out_of_order, bad_time] = tally.skipped;
    let interval = detector.interval().map_or_else(
        || "unknown".into(),
        |s| humantime::format_duration(std::time::Duration::from_secs_f64(s.max(0.0).round())).to_string(),
    );
    let count = crate::render::count;
    let skipped = format!(
        "{}, {} and {}",
        count(not_finite, "missing value"),
        count(duplicate, "duplicate timestamp"),
        count(out_of_order, "out-of-order timestamp")
    );
    eprintln!(
        "{}: {} in {}; skipped {skipped}{}{}; learned interval {interval}, model {}",
        count(tally.rows, "row"),
        count(tally.alerts, "alert"),
        count(tally.episodes.len(), "episode"),
        if bad_time > 0 { format!(", {}", count(bad_time, "bad timestamp")) } else { String::new() },
        if tally.bad > 0 { format!("; left out {}", count(tally.bad, "unreadable row")) } else { String::new() },
        detector.model(),
    );
    for e in tally.episodes.iter().take(50) {
        let end = e.end.map_or_else(|| "open".into(), time_text);
        eprintln!(
            "  episode {} → {end}: {}, peak {} at {}",
            time_text(e.start),
            e.signal,
            format_score(e.peak_score),
            time_text(e.peak)
        );
    }
    if tally.episodes.len() > 50 {
        eprintln!("  … {} more (see --episodes)", tally.episodes.len() - 50);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_short_and_exact_enough() {
        assert_eq!(format_score(0.0), "0");
        assert_eq!(format_score(0.5), "0.5");
        assert_eq!(format_score(0.1234567), "0.123457");
        assert_eq!(format_score(1.0), "1");
    }
}
