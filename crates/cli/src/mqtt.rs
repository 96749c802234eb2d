//! `glassbox mqtt retained`: list the broker's retained messages, and
//! clear them on the record.

use glassbox_api_types::{RetainedClearedAnswer, RetainedList, RetainedView, Warned};

use crate::Remote;
use crate::client::segment;
use crate::render;

#[derive(clap::Subcommand)]
pub enum MqttCommand {
    /// List retained messages (topic, size, who set it, when), or clear them.
    Retained(RetainedArgs),
}

#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  \
    glassbox mqtt retained                          every retained message\n  \
    glassbox mqtt retained 'devices/+/status'       those on matching topics\n  \
    glassbox mqtt retained clear 'devices/th-1/#'   remove them (recorded as mqtt.retained_cleared)\n\n\
    A new subscriber gets a topic's retained message at once; clearing removes it as an empty retained \
    PUBLISH would, without sending anything to subscribers. Payloads are never listed: \
    `glassbox events get EVENT_ID` shows the message's event."
)]
pub struct RetainedArgs {
    #[command(subcommand)]
    clear: Option<RetainedCommand>,
    /// Topic filter (`+` one level, `#` the rest). Default: every topic.
    #[arg(default_value = "#")]
    filter: String,
    /// At most this many (up to 10000).
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    #[command(flatten)]
    remote: Remote,
    /// Print {filter, retained: [{topic, bytes, event_id, set_at, set_by}], truncated} as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum RetainedCommand {
    /// Remove the retained messages on topics matching FILTER (`#`: all).
    Clear {
        /// Topic filter, e.g. `devices/th-1/status` or `devices/+/status`.
        filter: String,
        #[command(flatten)]
        remote: Remote,
        /// Print {filter, cleared: [...]} as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: MqttCommand) -> anyhow::Result<()> {
    let MqttCommand::Retained(args) = command;
    match args.clear {
        Some(RetainedCommand::Clear { filter, remote, json }) => clear(&filter, &remote, json).await,
        None => list(&args).await,
    }
}

async fn list(args: &RetainedArgs) -> anyhow::Result<()> {
    let query = [("filter", args.filter.clone()), ("limit", args.limit.to_string())];
    let answer: RetainedList = args.remote.client()?.fetch("/api/v1/mqtt/retained", &query).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    if answer.retained.is_empty() {
        println!("no retained message matches {}", answer.filter);
        return Ok(());
    }
    table(&answer.retained);
    if answer.truncated {
        println!("(more match: narrow the filter or raise --limit)");
    }
    Ok(())
}

async fn clear(filter: &str, remote: &Remote, json: bool) -> anyhow::Result<()> {
    let path = format!("/api/v1/mqtt/retained?filter={}", segment(filter));
    let answer: Warned<RetainedClearedAnswer> = remote.client()?.delete_as(&path).await?;
    match json {
        true => println!("{}", serde_json::to_string_pretty(&answer)?),
        false if answer.answer.cleared.is_empty() => println!("no retained message matched {filter}; nothing cleared"),
        false => {
            table(&answer.answer.cleared);
            println!("cleared {}", render::count(answer.answer.cleared.len(), "retained message"));
        }
    }
    if let Some(warning) = &answer.warning {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

fn table(messages: &[RetainedView]) {
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            let by = m.set_by.clone().unwrap_or_else(|| "(see its event)".into());
            vec![m.topic.clone(), m.bytes.to_string(), by, render::clock(m.set_at), m.event_id.clone()]
        })
        .collect();
    render::table(&["TOPIC", "BYTES", "SET BY", "SET AT", "EVENT"], &rows);
}
