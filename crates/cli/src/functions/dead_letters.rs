//! `glassbox functions dead-letters | redrive | discard`: the events a
//! function gave up on, inspected, run again after a fix, or dropped — each
//! removal recorded with who did it.

use glassbox_api_types::{DeadLetters, DiscardRequest, Discarded, RedriveAnswer, RedriveRequest};
use glassbox_functions::{OpenDeadLetter, Redriven};

use crate::Remote;
use crate::client::segment;
use crate::render;

#[derive(clap::Args)]
pub struct DeadLettersArgs {
    name: String,
    /// At most this many, newest first (up to 1000).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[command(flatten)]
    remote: Remote,
    /// Print {function, dead_letters: [{event_id, correlation_id, version, reason, attempts, outcome, error,
    /// first_failure, last_failure, …}]} as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
#[command(disable_version_flag = true)]
pub struct RedriveArgs {
    name: String,
    /// Run this version (default: the live one).
    #[arg(long)]
    version: Option<u32>,
    /// Only these dead letters: event ids, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    ids: Option<Vec<String>>,
    /// Runs started at most, e.g. 10/s or 100/m (default: one after the other).
    #[arg(long)]
    rate: Option<String>,
    /// Run each in a sandbox: see whether it would succeed; nothing is recorded, sent or cleared.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    remote: Remote,
    /// Print {function, dry_run, redriven: [{event_id, version, outcome, error, invocation, cleared}], cleared}.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct DiscardArgs {
    name: String,
    /// Only these dead letters: event ids, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    ids: Option<Vec<String>>,
    #[command(flatten)]
    remote: Remote,
    /// Print {function, discarded: [event ids]}.
    #[arg(long)]
    json: bool,
}

/// The ERROR column's width at most.
const ERROR_COLUMN_MAX: usize = 50;

pub async fn list(a: DeadLettersArgs) -> anyhow::Result<()> {
    let path = format!("/api/v1/functions/{}/dead-letters", segment(&a.name));
    let answer: DeadLetters<OpenDeadLetter> =
        a.remote.client()?.fetch(&path, &[("limit", a.limit.to_string())]).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    if answer.dead_letters.is_empty() {
        println!("{} has no dead letters", a.name);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = answer.dead_letters.iter().map(row).collect();
    render::table(&["EVENT", "VERSION", "ATTEMPTS", "OUTCOME", "FIRST FAILED", "LAST FAILED", "ERROR"], &rows);
    println!(
        "{}; run them again after a fix: glassbox functions redrive {}",
        render::count(rows.len(), "dead letter"),
        a.name
    );
    Ok(())
}

fn row(d: &OpenDeadLetter) -> Vec<String> {
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or("-".into(), render::clock);
    let error = d.error.clone().unwrap_or_else(|| d.reason.clone());
    vec![
        d.event_id.clone(),
        format!("v{}", d.version),
        d.attempts.to_string(),
        d.outcome.clone().unwrap_or_else(|| "never ran".into()),
        when(d.first_failure),
        when(d.last_failure),
        cut(&error),
    ]
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(ERROR_COLUMN_MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

pub async fn redrive(a: RedriveArgs) -> anyhow::Result<()> {
    let path = format!("/api/v1/functions/{}/dead-letters/redrive", segment(&a.name));
    let request = RedriveRequest { version: a.version, ids: a.ids, rate: a.rate, dry_run: a.dry_run };
    let answer: RedriveAnswer<Redriven> =
        a.remote.client()?.post_as(&path, "application/json", serde_json::to_string(&request)?).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = answer
        .redriven
        .iter()
        .map(|r| {
            let left = if r.cleared { "yes" } else { "no" };
            let error = r.error.as_deref().map_or(String::new(), cut);
            vec![r.event_id.clone(), format!("v{}", r.version), r.outcome.clone(), left.into(), error]
        })
        .collect();
    if rows.is_empty() {
        println!("{} has no dead letters to redrive", a.name);
        return Ok(());
    }
    render::table(&["EVENT", "VERSION", "OUTCOME", "CLEARED", "ERROR"], &rows);
    match answer.dry_run {
        true => println!("dry run: nothing was recorded, sent or cleared"),
        false => println!(
            "{} of {} succeeded and left the list; `glassbox trace EVENT` shows each on its chain",
            answer.cleared,
            rows.len()
        ),
    }
    Ok(())
}

pub async fn discard(a: DiscardArgs) -> anyhow::Result<()> {
    let path = format!("/api/v1/functions/{}/dead-letters/discard", segment(&a.name));
    let request = DiscardRequest { ids: a.ids };
    let answer: Discarded =
        a.remote.client()?.post_as(&path, "application/json", serde_json::to_string(&request)?).await?;
    match a.json {
        true => println!("{}", serde_json::to_string_pretty(&answer)?),
        false => {
            answer.discarded.iter().for_each(|id| println!("{id}"));
            println!(
                "discarded {} (recorded as function.dead_letter_cleared)",
                render::count(answer.discarded.len(), "dead letter")
            );
        }
    }
    Ok(())
}
