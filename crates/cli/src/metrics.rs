//! `glassbox metrics`: the metrics Glassbox derives from its recorder, as
//! time series: totals, peaks and a sparkline per series.

use anyhow::bail;
use glassbox_api_types::{MetricKind, MetricRange, Metrics, SeriesRange};

use crate::Remote;
use crate::render;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    glassbox metrics                                         the metrics there are\n  \
    glassbox metrics function_invocations --by function,outcome --since 1h\n  \
    glassbox metrics function_duration_ms --where function=thermostat --step 1m\n  \
    glassbox metrics device_messages --by device --since 24h   per device (not exported to Prometheus)")]
pub struct MetricsArgs {
    /// The metric; leave out to list them all.
    name: Option<String>,
    /// Sum the series by these labels (comma-separated); all summed when absent.
    #[arg(long, value_delimiter = ',')]
    by: Vec<String>,
    /// Only series with this label value (LABEL=VALUE; repeatable).
    #[arg(long = "where", value_name = "LABEL=VALUE")]
    filters: Vec<String>,
    /// From this time: RFC 3339 or a duration ago (15m, 2h, 7d).
    #[arg(long, default_value = "1h")]
    since: String,
    /// Before this time (default: now).
    #[arg(long)]
    until: Option<String>,
    /// The time per point (10s, 1m, 1h); about 60 points when absent.
    #[arg(long)]
    step: Option<String>,
    #[command(flatten)]
    remote: Remote,
    /// Print the API's answer as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: MetricsArgs) -> anyhow::Result<()> {
    let client = args.remote.client()?;
    let Some(name) = &args.name else {
        let list: Metrics = client.fetch("/api/v1/metrics", &[]).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = list
            .metrics
            .iter()
            .map(|m| vec![m.name.clone(), m.labels.join(","), m.series.to_string(), m.help.clone()])
            .collect();
        render::table(&["METRIC", "LABELS", "SERIES", "WHAT"], &rows);
        return Ok(());
    };
    let mut query = vec![("since", args.since.clone())];
    if !args.by.is_empty() {
        query.push(("by", args.by.join(",")));
    }
    query.extend(args.until.clone().map(|u| ("until", u)));
    query.extend(args.step.clone().map(|s| ("step", s)));
    let mut labels = Vec::new();
    for filter in &args.filters {
        let Some((label, value)) = filter.split_once('=') else {
            bail!("--where {filter:?} is not LABEL=VALUE (for example --where function=thermostat)");
        };
        labels.push((label.to_string(), value.to_string()));
    }
    let mut path = format!("/api/v1/metrics/{}", crate::client::segment(name));
    if !labels.is_empty() {
        let pairs: Vec<String> = labels
            .iter()
            .map(|(l, v)| format!("{}={}", crate::client::segment(l), crate::client::segment(v)))
            .collect();
        path = format!("{path}?{}", pairs.join("&"));
    }
    let answer: MetricRange = client.fetch(&path, &query).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    print_series(&answer);
    Ok(())
}

fn print_series(answer: &MetricRange) {
    let kind = answer.kind;
    println!(
        "{} ({}) · {} to {} · one point per {}s",
        answer.name,
        kind_name(kind),
        render::clock(answer.since),
        render::clock(answer.until),
        answer.step_seconds
    );
    if answer.series.is_empty() {
        println!("no samples in this range");
        return;
    }
    let total_header = if kind == MetricKind::Distribution { "MEAN" } else { "TOTAL" };
    let rows: Vec<Vec<String>> = answer.series.iter().map(|s| series_row(kind, s)).collect();
    render::table(&["SERIES", total_header, "PEAK", "OVER TIME"], &rows);
}

/// One series: its labels, its total (a distribution's mean), its peak and its sparkline.
fn series_row(kind: MetricKind, series: &SeriesRange) -> Vec<String> {
    let labels: Vec<String> = series.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let points = &series.points;
    let values: Vec<f64> = points.iter().map(|p| p.value).collect();
    let (count, sum) = points.iter().fold((0u64, 0.0), |(c, s), p| (c + p.count, s + p.sum));
    let total = match kind {
        MetricKind::Distribution if count > 0 => sum / count as f64,
        MetricKind::Count => count as f64,
        _ => sum,
    };
    let peak = match kind {
        MetricKind::Distribution => points.iter().map(|p| p.max).fold(0.0, f64::max),
        _ => values.iter().copied().fold(0.0, f64::max),
    };
    let name = if labels.is_empty() { "(all)".to_string() } else { labels.join(" ") };
    vec![name, number(total), number(peak), sparkline(&values)]
}

fn kind_name(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Count => "count",
        MetricKind::Sum => "sum",
        MetricKind::Distribution => "distribution",
    }
}

/// One series of a metrics answer summed over its points.
pub struct Total {
    /// The value of the label asked for ("-" when absent).
    pub key: String,
    pub count: u64,
    pub sum: f64,
}

/// Each series of a metrics answer grouped `--by label`, summed over time,
/// largest `sum` first.
pub fn totals(answer: &MetricRange, label: &str) -> Vec<Total> {
    let mut totals: Vec<Total> = answer
        .series
        .iter()
        .map(|s| Total {
            key: s.labels.get(label).map_or("-", String::as_str).to_string(),
            count: s.points.iter().map(|p| p.count).sum(),
            sum: s.points.iter().map(|p| p.sum).sum(),
        })
        .collect();
    totals.sort_by(|a, b| b.sum.total_cmp(&a.sum));
    totals
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 { format!("{value:.0}") } else { format!("{value:.3}") }
}

/// `▁▂▅█▃`: one character per point, scaled to the series' maximum.
pub fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().fold(0.0, f64::max);
    values
        .iter()
        .map(|v| match max {
            m if m <= 0.0 => ' ',
            _ if *v <= 0.0 => '·',
            m => BARS[(((v / m) * 7.0).round() as usize).min(7)],
        })
        .collect()
}
