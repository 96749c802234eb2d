//! What drives the cost in a window: the correlation chains that cost the
//! most, and each trigger source's share (a device, an HTTP route, a
//! schedule, an event type), read from the window's `function.invoked`
//! records, newest first, at most [`SCANNED_MAX`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use glassbox_api_types::Page;
use glassbox_core::{FUNCTION_INVOKED, Invocation, payload_in};
use serde_json::Value;

use crate::client::Client;
use crate::render;

/// Invocation records read for one report: enough for the top of any
/// window that matters, bounded so a busy month answers in seconds.
pub const SCANNED_MAX: usize = 10_000;
const PAGE: usize = 1000;
/// Chains and sources shown.
const TOP: usize = 5;
const SOURCES: usize = 10;

/// One chain's invocations.
#[derive(Default)]
struct Chain {
    cost: f64,
    invocations: u64,
    functions: Vec<String>,
}

/// What the window's invocation records say.
#[derive(Default)]
pub struct Drivers {
    chains: HashMap<String, Chain>,
    sources: HashMap<String, (f64, u64)>,
    pub scanned: usize,
    pub truncated: bool,
}

/// Reads the window's invocation records (newest first, at most [`SCANNED_MAX`]).
pub async fn read(client: &Client, since: DateTime<Utc>, until: DateTime<Utc>) -> anyhow::Result<Drivers> {
    let mut drivers = Drivers::default();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![
            ("type", FUNCTION_INVOKED.to_string()),
            ("since", since.to_rfc3339()),
            ("until", until.to_rfc3339()),
            ("limit", PAGE.to_string()),
        ];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let page: Page<Value> = client.fetch("/api/v1/events", &query).await?;
        for event in &page.events {
            drivers.add(event);
        }
        drivers.scanned += page.events.len();
        match page.next_cursor {
            Some(next) if drivers.scanned < SCANNED_MAX => cursor = Some(next),
            Some(_) => {
                drivers.truncated = true;
                return Ok(drivers);
            }
            None => return Ok(drivers),
        }
    }
}

impl Drivers {
    fn add(&mut self, event: &Value) {
        let Ok(invocation) = payload_in::<Invocation>(event) else { return };
        let chain = event.get("correlationid").and_then(Value::as_str).unwrap_or("-").to_string();
        let entry = self.chains.entry(chain).or_default();
        entry.cost += invocation.cost;
        entry.invocations += 1;
        if !entry.functions.contains(&invocation.key.function) {
            entry.functions.push(invocation.key.function.clone());
        }
        let source = source_of(event, &invocation);
        let share = self.sources.entry(source).or_default();
        share.0 += invocation.cost;
        share.1 += 1;
    }

    /// Prints the top chains and the sources' shares.
    pub fn print(&self) {
        if self.scanned == 0 {
            return;
        }
        let total: f64 = self.chains.values().fold(0.0, |t, c| t + c.cost);
        let percent = |cost: f64| if total > 0.0 { format!("{:.1}%", 100.0 * cost / total) } else { "-".into() };
        let mut chains: Vec<(&String, &Chain)> = self.chains.iter().collect();
        chains.sort_by(|a, b| b.1.cost.total_cmp(&a.1.cost));
        let rows: Vec<Vec<String>> = chains
            .iter()
            .take(TOP)
            .map(|(id, c)| {
                vec![
                    (*id).clone(),
                    c.invocations.to_string(),
                    format!("${:.9}", c.cost),
                    percent(c.cost),
                    c.functions.join(","),
                ]
            })
            .collect();
        println!("\ntop chains (glassbox trace CHAIN follows one):");
        render::table(&["CHAIN", "INVOCATIONS", "COST $", "SHARE", "FUNCTIONS"], &rows);
        let mut sources: Vec<(&String, &(f64, u64))> = self.sources.iter().collect();
        sources.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
        let rows: Vec<Vec<String>> = sources
            .iter()
            .take(SOURCES)
            .map(|(source, (cost, n))| vec![(*source).clone(), n.to_string(), format!("${cost:.9}"), percent(*cost)])
            .collect();
        println!("\nwhat triggers it:");
        render::table(&["TRIGGER SOURCE", "INVOCATIONS", "COST $", "SHARE"], &rows);
        let limit =
            if self.truncated { format!(" (the newest {}; older ones not read)", self.scanned) } else { String::new() };
        println!("from {}{limit}", render::count(self.scanned, "invocation record"));
    }
}

/// Who triggered an invocation: its device, its HTTP route, another
/// function's output, or else an event with neither (a backend's MQTT
/// publish, an HTTP ingest, a schedule).
fn source_of(event: &Value, invocation: &Invocation) -> String {
    if let Some(device) = event.get("device").and_then(Value::as_str) {
        return format!("device:{device}");
    }
    match &invocation.http {
        Some(http) => format!("route:{} {}", http.method, http.route.as_deref().unwrap_or(&http.path)),
        None if event.get("hop").and_then(Value::as_u64).unwrap_or(0) > 1 => "function output".into(),
        None => "other (no device or route)".into(),
    }
}
