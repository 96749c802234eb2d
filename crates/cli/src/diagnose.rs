//! `glassbox diagnose`: what is abnormal, since when, what it affects, and
//! the most likely causes with their evidence — in words.

use glassbox_api_types::{Diagnosis, Incident, Silence, SilenceRequest, Silences, TriageRequest, Triaged};

use crate::Remote;
use crate::render::{self, clock};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  \
    glassbox diagnose                        the last hour, everything\n  \
    glassbox diagnose --since 24h --function thermostat\n  \
    glassbox diagnose --device kitchen-1 --json\n\n\
    Each key series (function latency, errors, invocations, cost, dead letters; device message rates; \
    drops; connections) has a detector that learns its normal (the first 15 minutes of each series) \
    and flags one episode per anomaly. Concurrent episodes of related subjects form an incident; \
    recorded changes before it (deploys, rollbacks, device changes, shadow and command batches) are \
    ranked as its causes by time, scope and how the series moved across them.\n\n\
    Triage, each recorded with who and why:\n  \
    glassbox diagnose ack 7 --note 'rolling back fan'      someone is on incident 7\n  \
    glassbox diagnose resolve 7 --note 'v1 is live again'  it is dealt with\n  \
    glassbox diagnose silence function:fan --for 2h       a maintenance window: recorded, no alert\n  \
    glassbox diagnose silences                             the silences in force",
    args_conflicts_with_subcommands = true
)]
pub struct DiagnoseArgs {
    #[command(subcommand)]
    triage: Option<TriageCommand>,
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

#[derive(clap::Subcommand)]
enum TriageCommand {
    /// Say someone is on an incident (recorded as incident.acknowledged).
    Ack(NoteArgs),
    /// Say an incident is dealt with (recorded as incident.resolved).
    Resolve(NoteArgs),
    /// A maintenance window: a subject's anomalies are still detected and
    /// recorded, but post no alert to the webhook (recorded as diagnose.silenced).
    Silence(SilenceArgs),
    /// End a subject's silence now.
    Unsilence(UnsilenceArgs),
    /// The silences in force.
    Silences(ListArgs),
}

/// What every triage command takes: why, where the server is, and the output.
#[derive(clap::Args)]
struct Saying {
    /// Why: kept with who and when.
    #[arg(long)]
    note: Option<String>,
    #[command(flatten)]
    remote: Remote,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct NoteArgs {
    /// The incident's id (`glassbox diagnose` shows it).
    incident: u64,
    #[command(flatten)]
    saying: Saying,
}

#[derive(clap::Args)]
struct SilenceArgs {
    /// function:NAME, device:ID, group:NAME or platform.
    subject: String,
    /// How long: 30m, 2h, 1d (at most 30 days).
    #[arg(long = "for", value_name = "DURATION")]
    length: String,
    #[command(flatten)]
    saying: Saying,
}

#[derive(clap::Args)]
struct UnsilenceArgs {
    /// function:NAME, device:ID, group:NAME or platform.
    subject: String,
    #[command(flatten)]
    saying: Saying,
}

#[derive(clap::Args)]
struct ListArgs {
    #[command(flatten)]
    remote: Remote,
    #[arg(long)]
    json: bool,
}

pub async fn run(args: DiagnoseArgs) -> anyhow::Result<()> {
    if let Some(command) = args.triage {
        return triage(command).await;
    }
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

async fn triage(command: TriageCommand) -> anyhow::Result<()> {
    match command {
        TriageCommand::Ack(a) => note(a, "ack").await,
        TriageCommand::Resolve(a) => note(a, "resolve").await,
        TriageCommand::Silence(a) => silence(&a.subject, &a.length, a.saying).await,
        TriageCommand::Unsilence(a) => silence(&a.subject, "0s", a.saying).await,
        TriageCommand::Silences(a) => {
            let answer: Silences = a.remote.client()?.fetch("/api/v1/diagnose/silences", &[]).await?;
            match a.json {
                true => println!("{}", serde_json::to_string_pretty(&answer)?),
                false if answer.silences.is_empty() => println!("nothing is silenced"),
                false => answer.silences.iter().for_each(|s| println!("{}", silence_line(s))),
            }
            Ok(())
        }
    }
}

async fn note(a: NoteArgs, verb: &str) -> anyhow::Result<()> {
    let path = format!("/api/v1/diagnose/incidents/{}/{verb}", a.incident);
    let body = serde_json::to_string(&TriageRequest { note: a.saying.note })?;
    let incident: Incident = a.saying.remote.client()?.post_as(&path, "application/json", body).await?;
    match a.saying.json {
        true => println!("{}", serde_json::to_string_pretty(&incident)?),
        false => print_incident(&incident),
    }
    Ok(())
}

async fn silence(subject: &str, length: &str, saying: Saying) -> anyhow::Result<()> {
    let request = SilenceRequest { subject: subject.into(), length: length.into(), note: saying.note };
    let body = serde_json::to_string(&request)?;
    let path = "/api/v1/diagnose/silences";
    let silence: Silence = saying.remote.client()?.post_as(path, "application/json", body).await?;
    match (saying.json, length) {
        (true, _) => println!("{}", serde_json::to_string_pretty(&silence)?),
        (false, "0s") => println!("{} is no longer silenced", silence.subject),
        (false, _) => println!("{}", silence_line(&silence)),
    }
    Ok(())
}

fn silence_line(s: &Silence) -> String {
    let note = s.note.as_deref().map(|n| format!(": {n}")).unwrap_or_default();
    format!("{} silenced until {} by {}{note}", s.subject, render::clock(s.until), s.by)
}

fn said(what: &str, t: &Triaged) -> String {
    let note = t.note.as_deref().map(|n| format!(": {n}")).unwrap_or_default();
    format!("{what} by {} at {}{note}", t.by, clock(t.at))
}

fn print_incident(incident: &Incident) {
    let mut state = match incident.end {
        None => "open".to_string(),
        Some(end) => format!("ended {}", clock(end)),
    };
    if incident.resolved.is_some() {
        state.push_str(" · resolved");
    } else if incident.acknowledged.is_some() {
        state.push_str(" · acknowledged");
    }
    println!("\nincident {} · since {} · {state}", incident.id, clock(incident.start));
    println!("  {}", incident.summary);
    for (what, t) in [("acknowledged", &incident.acknowledged), ("resolved", &incident.resolved)] {
        if let Some(t) = t {
            println!("  {}", said(what, t));
        }
    }
    for s in &incident.silenced {
        println!("  {} (no alert is posted)", silence_line(s));
    }
    println!("  abnormal:");
    for e in &incident.episodes {
        println!("    {:<48} {:<14} from {}  peak score {:.2}", e.series.key, e.signal, clock(e.start), e.peak_score);
    }
    for (i, chain) in incident.chains.iter().enumerate() {
        println!(
            "  {} {} ran {} {} times  (glassbox trace {})",
            if i == 0 { "chains:" } else { "       " },
            chain.correlation,
            chain.function,
            chain.invocations,
            chain.correlation
        );
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
