//! `glassbox diagnose`: what is abnormal, since when, what it affects, and
//! the most likely causes with their evidence — in words.

use glassbox_api_types::{Diagnosis, Incident};

use crate::Remote;
use crate::render::clock;

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
    let diagnosis: Diagnosis = client.fetch("/api/v1/diagnose", &query).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&diagnosis)?);
        return Ok(());
    }
    println!("{}", diagnosis.summary);
    diagnosis.incidents.iter().for_each(print_incident);
    for unknown in &diagnosis.unknowns {
        println!("\nNot known: {unknown}");
    }
    if !diagnosis.certificates_expiring.is_empty() {
        println!("\nDevice certificates expiring soon (renew them: docs/security.md):");
    }
    for c in &diagnosis.certificates_expiring {
        let left = (c.not_after - chrono::Utc::now()).num_hours() as f64 / 24.0;
        println!("  {}  serial {}  ends {} ({left:.1} days)", c.device, c.serial, crate::render::clock(c.not_after));
    }
    Ok(())
}

fn print_incident(incident: &Incident) {
    let state = match incident.end {
        None => "open".to_string(),
        Some(end) => format!("ended {}", clock(end)),
    };
    println!("\nincident {} · since {} · {state}", incident.id, clock(incident.start));
    println!("  {}", incident.summary);
    println!("  abnormal:");
    for e in &incident.episodes {
        println!("    {:<48} {:<14} from {}  peak score {:.2}", e.series.key, e.signal, clock(e.start), e.peak_score);
    }
    if incident.causes.is_empty() {
        println!("  causes: no change recorded in the 30 minutes before");
    }
    for (i, cause) in incident.causes.iter().enumerate() {
        let change = &cause.change;
        println!(
            "  {} {} ({:.2}): {} at {}{}",
            if i == 0 { "cause:" } else { "      " },
            cause.verdict,
            cause.confidence,
            change.summary,
            clock(change.at),
            change.event_id.as_deref().map(|id| format!("  (event {id})")).unwrap_or_default()
        );
        for evidence in &cause.evidence {
            println!("           - {evidence}");
        }
    }
}
