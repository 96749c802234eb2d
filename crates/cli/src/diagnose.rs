//! `glassbox diagnose`: what is abnormal, since when, what it affects, and
//! the most likely causes with their evidence — in words.

use anyhow::bail;
use serde_json::Value;

use crate::Remote;
use crate::render::{short_time, text};

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    glassbox diagnose                        the last hour, everything\n  \
    glassbox diagnose --since 24h --function thermostat\n  \
    glassbox diagnose --device kitchen-1 --json\n\n\
    Each key series (function latency, errors, invocations, cost, dead letters; device message rates; \
    drops; connections) has a detector that learns its normal (the first 15 minutes of each series) \
    and flags one episode per anomaly. Concurrent episodes of related subjects form an incident; \
    recorded changes before it (deploys, rollbacks, device changes, shadow and command batches) are \
    ranked as its causes by time, scope and how the series moved across them.")]
pub struct DiagnoseArgs {
    /// How far back: RFC 3339 or a duration ago (15m, 2h, 7d).
    #[arg(long, default_value = "1h")]
    since: String,
    /// Only incidents about this function (and what it depends on).
    #[arg(long, conflicts_with = "device")]
    function: Option<String>,
    /// Only incidents about this device (and what depends on it).
    #[arg(long)]
    device: Option<String>,
    #[command(flatten)]
    remote: Remote,
    /// Print the diagnosis as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: DiagnoseArgs) -> anyhow::Result<()> {
    let client = args.remote.client()?;
    let mut query = vec![("since", args.since.clone())];
    query.extend(args.function.clone().map(|f| ("function", f)));
    query.extend(args.device.clone().map(|d| ("device", d)));
    let diagnosis = client.get("/api/v1/diagnose", &query).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&diagnosis)?);
        return Ok(());
    }
    if diagnosis.is_null() {
        bail!("the server's diagnosis is unavailable (its detectors' lock is poisoned); restart it");
    }
    println!("{}", text(&diagnosis, "summary"));
    for incident in diagnosis["incidents"].as_array().map(Vec::as_slice).unwrap_or_default() {
        print_incident(incident);
    }
    for unknown in diagnosis["unknowns"].as_array().map(Vec::as_slice).unwrap_or_default() {
        println!("\nNot known: {}", unknown.as_str().unwrap_or_default());
    }
    Ok(())
}

fn print_incident(incident: &Value) {
    let state = match incident["end"].as_str() {
        None => "open".to_string(),
        Some(_) => format!("ended {}", short_time(&incident["end"])),
    };
    println!("\nincident {} · since {} · {state}", incident["id"], short_time(&incident["start"]));
    println!("  {}", text(incident, "summary"));
    let episodes = incident["episodes"].as_array().map(Vec::as_slice).unwrap_or_default();
    println!("  abnormal:");
    for e in episodes {
        println!(
            "    {:<48} {:<14} from {}  peak score {:.2}",
            e["series"]["key"].as_str().unwrap_or("-"),
            text(e, "signal"),
            short_time(&e["start"]),
            e["peak_score"].as_f64().unwrap_or(0.0)
        );
    }
    let causes = incident["causes"].as_array().map(Vec::as_slice).unwrap_or_default();
    if causes.is_empty() {
        println!("  causes: no change recorded in the 30 minutes before");
    }
    for (i, cause) in causes.iter().enumerate() {
        println!(
            "  {} {} ({:.2}): {} at {}{}",
            if i == 0 { "cause:" } else { "      " },
            text(cause, "verdict"),
            cause["confidence"].as_f64().unwrap_or(0.0),
            text(&cause["change"], "summary"),
            short_time(&cause["change"]["at"]),
            cause["change"]["event_id"].as_str().map(|id| format!("  (event {id})")).unwrap_or_default()
        );
        for evidence in cause["evidence"].as_array().map(Vec::as_slice).unwrap_or_default() {
            println!("           - {}", evidence.as_str().unwrap_or_default());
        }
    }
}
