//! `glassbox trace ID`: a correlation chain as a tree of events linked by
//! causation, each with its states and the time between them.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use glassbox_api_types::Trace;
use glassbox_core::{EgressRequest, FUNCTION_INVOKED, Invocation, InvocationKey, LogLine, payload_in};
use serde_json::Value;

use crate::Remote;
use crate::render::{self, millis_between, text};

#[derive(clap::Args)]
#[command(after_help = "ID may be any event id of the chain, or the correlation id itself.")]
pub struct TraceArgs {
    /// An event id or a correlation id.
    id: String,
    #[command(flatten)]
    remote: Remote,
    /// Print {correlationid, events: [...], invocations: [...]} as JSON;
    /// each invocation has function, version, start, wall_us, outcome and logs.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: TraceArgs) -> anyhow::Result<()> {
    let client = args.remote.client()?;
    let path = format!("/api/v1/trace/{}", crate::client::segment(&args.id));
    let chain: Trace<Value> = client.fetch(&path, &[]).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&chain)?);
        return Ok(());
    }
    Tree::new(&chain.events).print(&chain.correlationid, chain.truncated);
    Ok(())
}

/// An invocation's record: which version ran, how it started and ended,
/// what it cost, and its log lines; a record that does not read says why.
fn print_invocation(event: &Value, prefix: &str) {
    let data: Invocation = match payload_in(event) {
        Ok(data) => data,
        Err(e) => return println!("{prefix}({e})"),
    };
    let start = if data.cold { "cold" } else { "warm" };
    let micros = |us: u64| render::duration_ms(us as f64 / 1000.0);
    let error = data.error.as_deref().map(|e| format!("  error: {e}")).unwrap_or_default();
    println!(
        "{prefix}fn {}@{}  {}  {} (cpu {})  {start} start (instantiate {})  cost ${:.9}{error}",
        data.key.function,
        data.key.version,
        data.key.outcome,
        micros(data.wall_us),
        micros(data.cpu_us),
        micros(data.instantiate_us),
        data.cost,
    );
    for line in &data.logs {
        // The platform's own line about the invocation (why it failed) is marked as such.
        let by = if line.source() == LogLine::PLATFORM { "platform: " } else { "" };
        println!("{prefix}  log {:<5} +{}  {by}{}", line.level, micros(line.at_us), line.message);
    }
    if data.logs_dropped > 0 {
        println!("{prefix}  ({} more log lines dropped: over the per-invocation limit)", data.logs_dropped);
    }
    if let Some(http) = &data.http {
        println!("{prefix}  http  {} {} → {}  {} B", http.method, http.path, http.status, http.response_bytes);
    }
    for out in &data.egress {
        println!("{prefix}  {}", egress_line(out));
    }
}

/// One outbound request of an invocation: where, when, and how it went.
fn egress_line(out: &EgressRequest) -> String {
    let at = render::duration_ms(out.at_us as f64 / 1000.0);
    let target = format!("{} {}://{}:{}", out.method, out.scheme, out.host, out.port);
    let result = match (out.outcome.as_str(), out.status) {
        ("completed", Some(status)) => format!(
            "{status}  {} B out  {} B in  {}",
            out.bytes_out,
            out.bytes_in,
            render::duration_ms(out.duration_us as f64 / 1000.0)
        ),
        (outcome, _) => format!("{outcome}: {}", out.error.as_deref().unwrap_or("-")),
    };
    let traced = if out.traceparent { "  (traceparent sent)" } else { "" };
    format!("egress +{at}  {target} → {result}{traced}")
}

/// Events of one chain indexed by causation.
struct Tree<'a> {
    events: &'a [Value],
    children: HashMap<&'a str, Vec<usize>>,
    roots: Vec<usize>,
    start: Option<DateTime<Utc>>,
}

fn received_at(event: &Value) -> Option<DateTime<Utc>> {
    event["states"].get(0).and_then(|s| render::time(&s["at"]))
}

impl<'a> Tree<'a> {
    fn new(events: &'a [Value]) -> Self {
        let ids: HashSet<&str> = events.iter().map(|e| text(e, "id")).collect();
        let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut roots = Vec::new();
        for (index, event) in events.iter().enumerate() {
            match event["causationid"].as_str().filter(|parent| ids.contains(parent)) {
                Some(parent) => children.entry(parent).or_default().push(index),
                None => roots.push(index),
            }
        }
        let start = events.iter().filter_map(received_at).min();
        Self { events, children, roots, start }
    }

    fn print(&self, correlationid: &str, truncated: bool) {
        let end = self
            .events
            .iter()
            .flat_map(|e| e["states"].as_array().cloned().unwrap_or_default())
            .filter_map(|s| render::time(&s["at"]))
            .max();
        let span = match (self.start, end) {
            (Some(start), Some(end)) => render::duration_ms(millis_between(start, end)),
            _ => "-".into(),
        };
        println!("chain {correlationid} · {} · {span}", render::count(self.events.len(), "event"));
        if truncated {
            println!("(truncated: the chain has more events than shown)");
        }
        for (i, root) in self.roots.iter().enumerate() {
            self.print_event(*root, "", i + 1 == self.roots.len());
        }
    }

    fn print_event(&self, index: usize, prefix: &str, last: bool) {
        let event = &self.events[index];
        let offset = match (self.start, received_at(event)) {
            (Some(start), Some(at)) => format!("+{}", render::duration_ms(millis_between(start, at))),
            _ => String::new(),
        };
        let device = event["device"].as_str().map(|d| format!("  device={d}")).unwrap_or_default();
        println!(
            "{prefix}{}{}  {}  source={}{device}  hop={}  {offset}",
            if last { "└─ " } else { "├─ " },
            text(event, "id"),
            text(event, "type"),
            text(event, "source"),
            event["hop"]
        );
        let child_prefix = format!("{prefix}{}", if last { "   " } else { "│  " });
        let children = self.children.get(text(event, "id")).map(Vec::as_slice).unwrap_or_default();
        let bar = if children.is_empty() { " " } else { "│" };
        if event["type"] == FUNCTION_INVOKED {
            print_invocation(event, &format!("{child_prefix}{bar}  "));
        }
        let consumers = self.functions_invoked(children);
        self.print_states(event, &child_prefix, !children.is_empty(), &consumers);
        for (i, child) in children.iter().enumerate() {
            self.print_event(*child, &child_prefix, i + 1 == children.len());
        }
    }

    /// The functions the event triggered, from the invocations recorded as
    /// its children, each once (retries are invocations too).
    fn functions_invoked(&self, children: &[usize]) -> Vec<String> {
        let mut names: Vec<String> = children
            .iter()
            .map(|c| &self.events[*c])
            .filter(|e| e["type"] == FUNCTION_INVOKED)
            .filter_map(|e| payload_in::<InvocationKey>(e).ok().map(|key| key.function))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    fn print_states(&self, event: &Value, prefix: &str, more_below: bool, consumers: &[String]) {
        let states = event["states"].as_array().cloned().unwrap_or_default();
        let mut previous: Option<DateTime<Utc>> = None;
        for state in &states {
            let at = render::time(&state["at"]);
            let delta = match (previous, at) {
                (Some(p), Some(a)) => format!("+{}", render::duration_ms(millis_between(p, a))),
                _ => render::short_time(&state["at"]),
            };
            previous = at.or(previous);
            let (target, detail) = match routed_nowhere_but_to(state, consumers) {
                Some(functions) => (format!("  → {functions}"), "  (no MQTT subscribers)".to_string()),
                None => (
                    state["target"].as_str().map(|t| format!("  → {t}")).unwrap_or_default(),
                    state["detail"].as_str().map(|d| format!("  ({d})")).unwrap_or_default(),
                ),
            };
            let bar = if more_below { "│" } else { " " };
            println!("{prefix}{bar}  {:<13} {delta}{target}{detail}", text(state, "state"));
        }
    }
}

/// The gateway notes `routed → mqtt (no subscribers)` when no MQTT session
/// takes a message; functions take it through their own triggers, recorded
/// as its `function.invoked` children. For such a message this names the
/// functions it went to, so the line says where it went, not only where not.
fn routed_nowhere_but_to(state: &Value, functions: &[String]) -> Option<String> {
    let nowhere = state["state"] == "routed" && state["target"] == "mqtt" && state["detail"] == "no subscribers";
    let names: Vec<String> = functions.iter().map(|f| format!("function {f}")).collect();
    (nowhere && !names.is_empty()).then(|| names.join(", "))
}
