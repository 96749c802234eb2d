//! `glassbox monitor`: a live view of the platform, redrawn every few
//! seconds from the derived metrics and the recent invocations: message and
//! invocation rates, errors, latency percentiles, the busiest and costliest
//! functions and devices, and active anomalies.

use std::fmt::Write as _;
use std::time::Duration;

use glassbox_api_types::{Anomalies, MetricRange, Page};
use glassbox_core::{FUNCTION_INVOKED, Invocation, payload_in};
use serde_json::Value;

use crate::Remote;
use crate::client::Client;
use crate::metrics::{Total, sparkline, totals};
use crate::render;

#[derive(clap::Args)]
#[command(after_help = "Rates are per second over the last complete 10 s bucket (now) and the last \
    minute (with the bucket still filling); trends cover five minutes. Latency percentiles are over the invocations of the last minute.")]
pub struct MonitorArgs {
    /// Seconds between redraws.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Print one frame and exit (for scripts and logs).
    #[arg(long)]
    once: bool,
    /// How many functions and devices the top lists show.
    #[arg(long, default_value_t = 5)]
    top: usize,
    #[command(flatten)]
    remote: Remote,
}

/// The rates shown, as (label, metric, filter).
const RATES: [(&str, &str, &str); 6] = [
    ("device messages", "mqtt_messages", ""),
    ("function invocations", "function_invocations", ""),
    ("function errors", "function_errors", ""),
    ("drops", "drops", ""),
    ("connects", "mqtt_connects", ""),
    ("disconnects", "mqtt_disconnects", ""),
];

pub async fn run(args: MonitorArgs) -> anyhow::Result<()> {
    let client = args.remote.client()?;
    loop {
        let frame = frame(&client, &args).await?;
        if args.once {
            print!("{frame}");
            return Ok(());
        }
        // Clear the screen and draw from the top.
        print!("\x1b[2J\x1b[H{frame}");
        tokio::time::sleep(args.interval).await;
    }
}

async fn frame(client: &Client, args: &MonitorArgs) -> anyhow::Result<String> {
    let mut out = String::new();
    let now = chrono::Utc::now();
    let _ = writeln!(out, "glassbox monitor · {} · {}\n", now.format("%Y-%m-%d %H:%M:%S"), args.remote.server);
    let _ = writeln!(out, "{:<22} {:>9} {:>9}  trend (5 min)", "RATE", "now/s", "1 min/s");
    for (label, metric, _) in RATES {
        let answer = series(client, metric, &[]).await?;
        let values = summed(&answer);
        // The last bucket is still filling: "now" is the one before it.
        let now_rate = values.iter().rev().nth(1).copied().unwrap_or(0.0) / 10.0;
        let minute = values.iter().rev().take(6).fold(0.0, |sum, v| sum + v) / 60.0;
        let _ = writeln!(out, "{label:<22} {now_rate:>9.1} {minute:>9.1}  {}", sparkline(&values));
    }
    out.push('\n');
    out.push_str(&latency(client).await?);
    out.push('\n');
    out.push_str(&top_functions(client, args.top).await?);
    out.push('\n');
    out.push_str(&top_devices(client, args.top).await?);
    out.push('\n');
    out.push_str(&anomalies(client).await);
    Ok(out)
}

/// A metric over the last 5 minutes at 10 s, optionally grouped.
async fn series(client: &Client, metric: &str, by: &[&str]) -> anyhow::Result<MetricRange> {
    let mut query = vec![("since", "5m".to_string()), ("step", "10s".to_string())];
    if !by.is_empty() {
        query.push(("by", by.join(",")));
    }
    client.fetch(&format!("/api/v1/metrics/{metric}"), &query).await
}

/// The values per step, summed over the answer's series.
fn summed(answer: &MetricRange) -> Vec<f64> {
    let mut values: Vec<f64> = Vec::new();
    for series in &answer.series {
        values.resize(values.len().max(series.points.len()), 0.0);
        for (slot, point) in values.iter_mut().zip(&series.points) {
            *slot += point.value;
        }
    }
    values
}

/// The total of `pick` for `key` among `totals` (0 when it has none).
fn of(totals: &[Total], key: &str, pick: fn(&Total) -> f64) -> f64 {
    totals.iter().find(|t| t.key == key).map_or(0.0, pick)
}

const COUNT: fn(&Total) -> f64 = |t| t.count as f64;
const SUM: fn(&Total) -> f64 = |t| t.sum;

async fn latency(client: &Client) -> anyhow::Result<String> {
    let query = [("type", FUNCTION_INVOKED.to_string()), ("since", "1m".to_string()), ("limit", "1000".to_string())];
    let page: Page<Value> = client.fetch("/api/v1/events", &query).await?;
    let mut walls: Vec<f64> = page
        .events
        .iter()
        .filter_map(|e| payload_in::<Invocation>(e).ok())
        .map(|invocation| invocation.wall_us as f64 / 1000.0)
        .collect();
    if walls.is_empty() {
        return Ok("LATENCY  no invocations in the last minute\n".into());
    }
    walls.sort_by(f64::total_cmp);
    let at = |q: f64| walls[((walls.len() - 1) as f64 * q).round() as usize];
    Ok(format!(
        "LATENCY  {} in the last minute: p50 {}  p90 {}  p99 {}  max {}\n",
        render::count(walls.len(), "invocation"),
        render::duration_ms(at(0.5)),
        render::duration_ms(at(0.9)),
        render::duration_ms(at(0.99)),
        render::duration_ms(at(1.0)),
    ))
}

async fn top_functions(client: &Client, top: usize) -> anyhow::Result<String> {
    let by_function =
        async |metric: &str| Ok::<_, anyhow::Error>(totals(&series(client, metric, &["function"]).await?, "function"));
    let mut invocations = by_function("function_invocations").await?;
    if invocations.is_empty() {
        return Ok("FUNCTIONS  none invoked in the last 5 minutes\n".into());
    }
    invocations.sort_by_key(|t| std::cmp::Reverse(t.count));
    let errors = by_function("function_errors").await?;
    let cost = by_function("function_cost").await?;
    let durations = by_function("function_duration_ms").await?;
    let mut out = format!(
        "{:<24} {:>11} {:>7} {:>6} {:>10} {:>12}\n",
        "FUNCTIONS (5 min)", "invocations", "errors", "err%", "mean", "cost"
    );
    for Total { key: name, count, .. } in invocations.iter().take(top) {
        let failed = of(&errors, name, COUNT);
        let mean = of(&durations, name, SUM) / of(&durations, name, COUNT).max(1.0);
        // Errors point at the command that lists them, with their reasons.
        let errors = match failed > 0.0 {
            true => format!("  → glassbox functions invocations {name} --errors"),
            false => String::new(),
        };
        let _ = writeln!(
            out,
            "{name:<24} {count:>11} {failed:>7} {:>5.1}% {:>10} {:>12.6}{errors}",
            100.0 * failed / (*count).max(1) as f64,
            render::duration_ms(mean),
            of(&cost, name, SUM)
        );
    }
    Ok(out)
}

async fn top_devices(client: &Client, top: usize) -> anyhow::Result<String> {
    let by_device =
        async |metric: &str| Ok::<_, anyhow::Error>(totals(&series(client, metric, &["device"]).await?, "device"));
    let mut messages = by_device("device_messages").await?;
    if messages.is_empty() {
        return Ok("DEVICES  no messages in the last 5 minutes\n".into());
    }
    messages.sort_by_key(|t| std::cmp::Reverse(t.count));
    let bytes = by_device("device_bytes").await?;
    let cost = by_device("device_cost").await?;
    let mut out = format!("{:<24} {:>11} {:>11} {:>12}\n", "DEVICES (5 min)", "messages", "bytes", "cost");
    for Total { key: name, count, .. } in messages.iter().take(top) {
        let _ = writeln!(out, "{name:<24} {count:>11} {:>11} {:>12.6}", of(&bytes, name, SUM), of(&cost, name, SUM));
    }
    Ok(out)
}

/// Active anomalies, once the server detects them; says so when it cannot.
async fn anomalies(client: &Client) -> String {
    match client.fetch::<Anomalies>("/api/v1/anomalies", &[("active", "true".to_string())]).await {
        Ok(answer) => {
            let active = answer.anomalies;
            if active.is_empty() {
                return "ANOMALIES  none active\n".into();
            }
            let mut out = String::from("ANOMALIES\n");
            for a in active {
                let since = render::clock(a.start);
                let _ = writeln!(out, "  {}  {}  score {:.2}  since {since}", a.series.key, a.signal, a.peak_score);
            }
            out
        }
        Err(e) => format!("ANOMALIES  unknown: {e}\n"),
    }
}
