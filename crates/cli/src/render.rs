//! Plain-text rendering for people: aligned tables and short times.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Prints rows under headers, each column as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn time(value: &Value) -> Option<DateTime<Utc>> {
    value.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

/// `2026-11-24 19:40:34.132`: local enough to read, precise enough to order.
pub fn short_time(value: &Value) -> String {
    time(value).map_or_else(|| "-".into(), clock)
}

/// A time for people, to the millisecond: `2026-11-25 10:04:01.532`.
pub fn clock(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// A duration for people: `0.412 ms`, `95.5 ms`, `2.41 s`, `1m35s`.
pub fn duration_ms(ms: f64) -> String {
    match ms {
        ms if ms < 10.0 => format!("{ms:.3} ms"),
        ms if ms < 1000.0 => format!("{ms:.1} ms"),
        ms if ms < 60_000.0 => format!("{:.2} s", ms / 1000.0),
        ms => {
            let secs = (ms / 1000.0).round() as u64;
            humantime::format_duration(std::time::Duration::from_secs(secs)).to_string().replace(' ', "")
        }
    }
}

/// `1 event`, `3 events`.
/// `sha256:1f2e3d4c5b6a`: a component's digest, short enough for a table.
pub fn short_digest(digest: &str) -> String {
    digest.chars().take(19).collect()
}

pub fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// Milliseconds between two times, for "+1.234 ms" annotations.
pub fn millis_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(0) as f64 / 1000.0
}

pub fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("-")
}

/// `received → in_transit → delivered`, with targets where there are several.
pub fn state_path(event: &Value) -> String {
    let states = event["states"].as_array().map(Vec::as_slice).unwrap_or_default();
    let names: Vec<String> = states
        .iter()
        .map(|s| match (s["state"].as_str(), s["target"].as_str()) {
            (Some(state), Some(target)) => format!("{state}({target})"),
            (Some(state), None) => state.to_string(),
            _ => "?".into(),
        })
        .collect();
    names.join(" → ")
}

/// The events of a query answer as a table.
pub fn events_table(events: &[Value]) {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let received = e["states"].get(0).map_or(Value::Null, |s| s["at"].clone());
            vec![
                text(e, "id").to_string(),
                short_time(&received),
                text(e, "type").to_string(),
                text(e, "source").to_string(),
                text(e, "device").to_string(),
                state_path(e),
            ]
        })
        .collect();
    table(&["ID", "RECEIVED", "TYPE", "SOURCE", "DEVICE", "STATES"], &rows);
}
