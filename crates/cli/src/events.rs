//! `glassbox events query|get|tail|send`.

use anyhow::{Context, bail};
use glassbox_api_types::{Accepted, Lagged, Page};
use serde_json::{Value, json};

use crate::Remote;
use crate::client::SseMessage;
use crate::render;

#[derive(clap::Subcommand)]
pub enum EventsCommand {
    /// Recorded events matching filters, newest first.
    #[command(after_help = "Examples:\n  glassbox events query --device thermo-1 --since 15m\n  \
        glassbox events query --type 'device.*' --state dropped --json\n  \
        glassbox events query --correlation 01JD6Y8Q1W3N4ZV7K2M5P9R0ST")]
    Query(QueryArgs),
    /// One event, whole: attributes, data and every state.
    Get(GetArgs),
    /// Follow newly recorded events as they arrive (Ctrl-C to stop).
    Tail(TailArgs),
    /// Send an event over HTTP, as a producer would; prints its id.
    #[command(
        after_help = "Example:\n  glassbox events send --source shop --type order.created --data '{\"order\":42}'"
    )]
    Send(SendArgs),
}

/// Filters shared by query and tail.
#[derive(clap::Args, Clone)]
pub struct Filters {
    /// Only this correlation chain.
    #[arg(long)]
    correlation: Option<String>,
    /// Only events of this device.
    #[arg(long)]
    device: Option<String>,
    /// Only this type; a trailing * matches a prefix (device.*).
    #[arg(long = "type", value_name = "TYPE")]
    ty: Option<String>,
    /// Only events from this source.
    #[arg(long)]
    source: Option<String>,
}

impl Filters {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        [("correlation", &self.correlation), ("device", &self.device), ("type", &self.ty), ("source", &self.source)]
            .into_iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
            .collect()
    }
}

#[derive(clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    filters: Filters,
    /// Only events that reached this state: received, routed, in_transit,
    /// delivered, processed, failed, expired, dropped, dead_lettered.
    #[arg(long)]
    state: Option<String>,
    /// Received at or after: an RFC 3339 time or a duration ago (15m, 2h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Received before: an RFC 3339 time or a duration ago.
    #[arg(long)]
    until: Option<String>,
    /// Events per page (1-1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: u16,
    /// Continue after a previous page (its next cursor).
    #[arg(long)]
    cursor: Option<String>,
    /// Follow cursors and print every matching event.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    remote: Remote,
    /// Print a JSON array of events.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct GetArgs {
    /// The event id.
    id: String,
    #[command(flatten)]
    remote: Remote,
    /// Print the event as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct TailArgs {
    #[command(flatten)]
    filters: Filters,
    #[command(flatten)]
    remote: Remote,
    /// Print one JSON event per line.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct SendArgs {
    /// The event's source (who produced it).
    #[arg(long)]
    source: String,
    /// The event's type.
    #[arg(long = "type", value_name = "TYPE")]
    ty: String,
    /// JSON data.
    #[arg(long)]
    data: Option<String>,
    /// Your own id for the event; a retry with the same id is recorded once.
    #[arg(long)]
    id: Option<String>,
    /// The event's subject.
    #[arg(long)]
    subject: Option<String>,
    /// The device the event is about.
    #[arg(long)]
    device: Option<String>,
    /// Join this correlation chain instead of starting one.
    #[arg(long)]
    correlation: Option<String>,
    /// The parent event's id (its chain and depth are inherited); it must
    /// be an event Glassbox recorded, else the send is refused. To tie the
    /// event to another system's, use --correlation.
    #[arg(long)]
    causation: Option<String>,
    #[command(flatten)]
    remote: Remote,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::Query(args) => query(args).await,
        EventsCommand::Get(args) => get(args).await,
        EventsCommand::Tail(args) => tail(args).await,
        EventsCommand::Send(args) => send(args).await,
    }
}

async fn query(args: QueryArgs) -> anyhow::Result<()> {
    let client = args.remote.client()?;
    let mut params = args.filters.pairs();
    for (key, value) in [("state", &args.state), ("since", &args.since), ("until", &args.until)] {
        if let Some(value) = value {
            params.push((key, value.clone()));
        }
    }
    params.push(("limit", args.limit.to_string()));
    let mut cursor = args.cursor.clone();
    let mut events = Vec::new();
    loop {
        let mut page_params = params.clone();
        if let Some(cursor) = &cursor {
            page_params.push(("cursor", cursor.clone()));
        }
        let page: Page<Value> = client.fetch("/api/v1/events", &page_params).await?;
        events.extend(page.events);
        cursor = page.next_cursor;
        if !args.all || cursor.is_none() {
            break;
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(());
    }
    render::events_table(&events);
    match cursor {
        Some(cursor) => eprintln!("{} shown; more with --cursor {cursor}", render::count(events.len(), "event")),
        None => eprintln!("{}", render::count(events.len(), "event")),
    }
    Ok(())
}

async fn get(args: GetArgs) -> anyhow::Result<()> {
    let client = args.remote.client()?;
    let event = client.get(&format!("/api/v1/events/{}", crate::client::segment(&args.id)), &[]).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&event)?);
        return Ok(());
    }
    print_event(&event);
    Ok(())
}

fn print_event(event: &Value) {
    let Some(attributes) = event.as_object() else {
        return;
    };
    for (key, value) in attributes {
        if matches!(key.as_str(), "states" | "data" | "data_base64" | "specversion") {
            continue;
        }
        println!("{key:>16}: {}", value.as_str().map_or_else(|| value.to_string(), str::to_string));
    }
    if let Some(data) = event.get("data") {
        println!(
            "{:>16}: {}",
            "data",
            serde_json::to_string_pretty(data).unwrap_or_default().replace('\n', "\n                  ")
        );
    }
    if let Some(data) = event.get("data_base64") {
        println!("{:>16}: {data} (base64)", "data");
    }
    println!();
    let states = event["states"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = states
        .iter()
        .map(|s| {
            vec![
                render::text(s, "state").into(),
                render::short_time(&s["at"]),
                render::text(s, "target").into(),
                render::text(s, "detail").into(),
                render::text(s, "node").into(),
            ]
        })
        .collect();
    render::table(&["STATE", "AT", "TARGET", "DETAIL", "NODE"], &rows);
}

async fn tail(args: TailArgs) -> anyhow::Result<()> {
    let client = args.remote.client()?;
    let mut stream = client.stream("/api/v1/events/tail", &args.filters.pairs()).await?;
    if !args.json {
        eprintln!("following new events (Ctrl-C to stop)");
    }
    while let Some(message) = stream.next().await? {
        print_sse(&message, args.json)?;
    }
    bail!("the server closed the event stream (it is stopping or restarting); run the tail again to resume")
}

fn print_sse(message: &SseMessage, json: bool) -> anyhow::Result<()> {
    let data = &message.data;
    match message.kind.as_str() {
        "event" if json => println!("{data}"),
        "event" => {
            let event: Value = serde_json::from_str(data).context("the server sent an event that is not JSON")?;
            let received = event["states"].get(0).map_or(Value::Null, |s| s["at"].clone());
            println!(
                "{}  {}  {}  source={}  device={}",
                render::short_time(&received),
                render::text(&event, "id"),
                render::text(&event, "type"),
                render::text(&event, "source"),
                render::text(&event, "device")
            );
        }
        "lagged" => {
            let lagged: Lagged =
                serde_json::from_str(data).context("the server sent a lagged item of another shape")?;
            let skipped = render::count(lagged.skipped as usize, "event");
            eprintln!("warning: this tail fell behind and skipped {skipped}; query them with `glassbox events query`")
        }
        _ => {}
    }
    Ok(())
}

async fn send(args: SendArgs) -> anyhow::Result<()> {
    let client = args.remote.client()?;
    let mut event = json!({ "specversion": "1.0", "source": args.source, "type": args.ty });
    if let Some(data) = &args.data {
        let data: Value = serde_json::from_str(data)
            .context("--data is not JSON; to send text, quote it as a JSON string: --data '\"hello\"'")?;
        event["data"] = data;
        event["datacontenttype"] = json!("application/json");
    }
    for (key, value) in [
        ("id", &args.id),
        ("subject", &args.subject),
        ("device", &args.device),
        ("correlationid", &args.correlation),
        ("causationid", &args.causation),
    ] {
        if let Some(value) = value {
            event[key] = json!(value);
        }
    }
    let answer: Accepted = client.post_as("/api/v1/events", "application/cloudevents+json", event.to_string()).await?;
    if args.json {
        println!("{}", serde_json::to_string(&answer)?);
    } else {
        let duplicate = if answer.duplicate { "  (duplicate of an earlier send)" } else { "" };
        println!("{}  correlation {}{duplicate}", answer.id, answer.correlationid);
    }
    Ok(())
}
