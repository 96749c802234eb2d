//! `glassbox logs`: function and platform log lines, filtered by the ids
//! they are tagged with, and followed live.

use std::collections::HashSet;
use std::time::Duration;

use glassbox_api_types::{LogEntry, LogOrigin, Logs};

use crate::Remote;
use crate::render::clock;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    glassbox logs --correlation 01J…            every line of one chain\n  \
    glassbox logs --function thermostat --level warn --since 1h\n  \
    glassbox logs --device kitchen-1 --follow     live, as invocations finish\n\n\
    Function lines are recorded on their invocation and kept with the events; platform lines \
    (the server's own, INFO and above) are kept in memory, the newest 10,000.")]
pub struct LogsArgs {
    /// Lines of one correlation chain.
    #[arg(long)]
    correlation: Option<String>,
    /// Lines of the invocations of one event (any event id of a chain).
    #[arg(long)]
    event: Option<String>,
    /// Lines of one function.
    #[arg(long)]
    function: Option<String>,
    /// Lines about one device.
    #[arg(long)]
    device: Option<String>,
    /// The lowest level shown: trace, debug, info, warn or error.
    #[arg(long)]
    level: Option<String>,
    /// Only `function` lines or only `platform` lines.
    #[arg(long)]
    source: Option<String>,
    /// From this time: RFC 3339 or a duration ago (15m, 2h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Before this time: RFC 3339 or a duration ago.
    #[arg(long)]
    until: Option<String>,
    /// The newest N lines (1 to 10000).
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// Keep printing new lines as they come (Ctrl-C to stop).
    #[arg(long, short)]
    follow: bool,
    #[command(flatten)]
    remote: Remote,
    /// Print the answer as JSON ({lines: [...]}); with --follow, one line object per line.
    #[arg(long)]
    json: bool,
}

/// How often `--follow` asks for new lines.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

impl LogsArgs {
    fn query(&self, since: Option<String>) -> Vec<(&'static str, String)> {
        let mut pairs = vec![("limit", self.limit.to_string())];
        let optional = [
            ("correlation", &self.correlation),
            ("event", &self.event),
            ("function", &self.function),
            ("device", &self.device),
            ("level", &self.level),
            ("source", &self.source),
            ("until", &self.until),
        ];
        pairs.extend(optional.into_iter().filter_map(|(k, v)| v.clone().map(|v| (k, v))));
        if let Some(since) = since.or_else(|| self.since.clone()) {
            pairs.push(("since", since));
        }
        pairs
    }

    /// What `--follow` is following, so a quiet screen says it is waiting:
    /// `following log lines of device kitchen-1 at warn and above: 3 so far; waiting for new lines (Ctrl-C to stop)`.
    fn follow_note(&self, shown: usize) -> String {
        let filters = [
            ("chain", &self.correlation),
            ("event", &self.event),
            ("function", &self.function),
            ("device", &self.device),
        ];
        let about: Vec<String> =
            filters.iter().filter_map(|(what, value)| value.as_ref().map(|v| format!("{what} {v}"))).collect();
        let lines = self.source.as_ref().map_or("log lines".to_string(), |source| format!("{source} log lines"));
        let mut note = match about.is_empty() {
            true => format!("following all {lines}"),
            false => format!("following {lines} of {}", about.join(", ")),
        };
        if let Some(level) = &self.level {
            note.push_str(&format!(" at {level} and above"));
        }
        let so_far = match shown {
            0 => "none yet".to_string(),
            n => format!("{} so far", crate::render::count(n, "line")),
        };
        format!("{note}: {so_far}; waiting for new lines (Ctrl-C to stop)")
    }
}

pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
    let client = args.remote.client()?;
    let answer: Logs = client.fetch("/api/v1/logs", &args.query(None)).await?;
    if !args.follow {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&answer)?);
        } else {
            if answer.truncated {
                println!("(older lines left out: narrow the filters, or raise --limit)");
            }
            answer.lines.iter().for_each(print_line);
        }
        return Ok(());
    }
    let lines = answer.lines;
    // On stderr, so `--json` output stays one object per line.
    eprintln!("{}", args.follow_note(lines.len()));
    let mut seen: HashSet<String> = HashSet::new();
    let mut since = None;
    let mut batch = lines;
    loop {
        for line in &batch {
            if seen.insert(line.id.clone()) {
                if args.json {
                    println!("{}", serde_json::to_string(line)?);
                } else {
                    print_line(line);
                }
            }
            since = Some(line.at);
        }
        if seen.len() > 100_000 {
            seen.clear(); // Bounded; a line older than `since` is not asked for again anyway.
        }
        tokio::time::sleep(FOLLOW_INTERVAL).await;
        // Lines of invocations that end later can start earlier: look back a little.
        let from = since.map(|t| (t - chrono::Duration::seconds(60)).to_rfc3339());
        batch = client.fetch::<Logs>("/api/v1/logs", &args.query(from)).await?.lines;
    }
}

/// `2026-11-25 10:04:01.532 WARN  fn thermostat@3  kitchen-1  too hot (31.5)`;
/// the platform's line about an invocation names the function and the chain:
/// `… ERROR  fn thermostat@3 (platform)  kitchen-1  invocation failed (attempt 1 of 3): … correlation=01K…`.
fn print_line(line: &LogEntry) {
    let function = line.function.as_deref().unwrap_or("");
    let (origin, chain, fields) = match &line.origin {
        LogOrigin::Invocation { version, .. } if line.source == "function" => {
            (format!("fn {function}@{version}"), String::new(), String::new())
        }
        LogOrigin::Invocation { version, .. } => {
            let chain = line.correlationid.as_deref().map(|id| format!("  correlation={id}")).unwrap_or_default();
            (format!("fn {function}@{version} (platform)"), chain, String::new())
        }
        LogOrigin::Platform { target, fields } => {
            (target.trim_start_matches("glassbox_").to_string(), String::new(), fields_text(fields))
        }
    };
    let device = line.device.as_deref().map(|d| format!("  {d}")).unwrap_or_default();
    let level = line.level.to_uppercase();
    println!("{}  {level:<5}  {origin}{device}  {}{fields}{chain}", clock(line.at), line.message);
}

/// A platform line's structured fields: `  key=value key=value`, or nothing.
fn fields_text(fields: &serde_json::Map<String, serde_json::Value>) -> String {
    if fields.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> =
        fields.iter().map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string))).collect();
    format!("  {}", pairs.join(" "))
}
