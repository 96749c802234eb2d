//! `glassbox metrics`: the metrics Glassbox derives from its recorder, as
//! time series: totals, peaks and a sparkline per series.

use anyhow::bail;
use serde_json::Value;

use crate::Remote;
use crate::render::{self, text};

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
        let list = client.get("/api/v1/metrics", &[]).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = list["metrics"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|m| {
                let labels: Vec<&str> =
                    m["labels"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                vec![text(m, "name").into(), labels.join(","), m["series"].to_string(), text(m, "help").into()]
            })
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
    let answer = client.get(&path, &query).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    print_series(&answer);
    Ok(())
}

fn print_series(answer: &Value) {
    let kind = text(answer, "kind");
    let step = answer["step_seconds"].as_i64().unwrap_or(0);
    println!(
        "{} ({kind}) · {} to {} · one point per {step}s",
        text(answer, "name"),
        render::short_time(&answer["since"]),
        render::short_time(&answer["until"])
    );
    let series = answer["series"].as_array().map(Vec::as_slice).unwrap_or_default();
    if series.is_empty() {
        println!("no samples in this range");
        return;
    }
    let total_header = if kind == "distribution" { "MEAN" } else { "TOTAL" };
    let rows: Vec<Vec<String>> = series
        .iter()
        .map(|s| {
            let labels: Vec<String> = s["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            let points = s["points"].as_array().map(Vec::as_slice).unwrap_or_default();
            let values: Vec<f64> = points.iter().map(|p| p["value"].as_f64().unwrap_or(0.0)).collect();
            let (count, sum) = points.iter().fold((0u64, 0.0), |(c, s), p| {
                (c + p["count"].as_u64().unwrap_or(0), s + p["sum"].as_f64().unwrap_or(0.0))
            });
            let total = match kind {
                "distribution" if count > 0 => sum / count as f64,
                "count" => count as f64,
                _ => sum,
            };
            let peak = match kind {
                "distribution" => points.iter().filter_map(|p| p["max"].as_f64()).fold(0.0, f64::max),
                _ => values.iter().copied().fold(0.0, f64::max),
            };
            let name = if labels.is_empty() { "(all)".to_string() } else { labels.join(" ") };
            vec![name, number(total), number(peak), sparkline(&values)]
        })
        .collect();
    render::table(&["SERIES", total_header, "PEAK", "OVER TIME"], &rows);
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
pub fn totals(answer: &Value, label: &str) -> Vec<Total> {
    let series = answer["series"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut totals: Vec<Total> = series
        .iter()
        .map(|s| {
            let points = s["points"].as_array().map(Vec::as_slice).unwrap_or_default();
            Total {
                key: s["labels"][label].as_str().unwrap_or("-").to_string(),
                count: points.iter().filter_map(|p| p["count"].as_u64()).sum(),
                sum: points.iter().filter_map(|p| p["sum"].as_f64()).sum(),
            }
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
