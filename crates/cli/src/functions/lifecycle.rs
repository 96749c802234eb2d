//! `glassbox functions get|versions|promote|rollback|delete`: a function's
//! versions and which one is live, as people read them.

use glassbox_functions::InFlight;
use serde_json::Value;

use crate::client::{Client, segment};
use crate::render;

/// `/api/v1/functions/{name}` and what follows it.
fn path(name: &str, rest: &str) -> String {
    format!("/api/v1/functions/{}{rest}", segment(name))
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn get(client: &Client, name: &str, json: bool) -> anyhow::Result<()> {
    let function = client.get(&path(name, ""), &[]).await?;
    if json {
        return print_json(&function);
    }
    let versions = function["versions"].as_u64().unwrap_or(0);
    let live = &function["live"];
    if live.is_null() {
        println!(
            "{name}: deleted; {} kept (`glassbox functions versions {name}` lists them, \
             `glassbox functions promote {name} VERSION` makes one live again)",
            render::count(versions as usize, "version")
        );
        return Ok(());
    }
    println!("{name}: live at v{} (of {versions}, newest v{})", live["version"], function["latest"]);
    let spec = &live["spec"];
    let mut rows = vec![
        ("digest", render::text(live, "digest").to_string()),
        ("deployed", format!("{} by {}", render::short_time(&live["deployed_at"]), render::text(live, "deployed_by"))),
        ("live since", render::short_time(&function["live_since"])),
        ("triggers", triggers(spec)),
        ("feature", spec["feature"].as_str().unwrap_or("-").to_string()),
    ];
    rows.extend(limits(spec));
    rows.push(("egress", super::egress(spec)));
    rows.push(("in hand", in_hand(&function["in_flight"])));
    for (key, value) in rows {
        println!("  {key:<12} {value}");
    }
    Ok(())
}

pub async fn versions(client: &Client, name: &str, json: bool) -> anyhow::Result<()> {
    let body = client.get(&path(name, "/versions"), &[]).await?;
    let versions = body["versions"].as_array().cloned().unwrap_or_default();
    if json {
        return print_json(&Value::Array(versions));
    }
    let rows: Vec<Vec<String>> = versions.iter().map(version_row).collect();
    let headers = ["VERSION", "", "TRIGGERS", "LIMITS", "FEATURE", "EGRESS", "DEPLOYED", "BY", "DIGEST"];
    render::table(&headers, &rows);
    if !versions.iter().any(|v| v["live"] == true) {
        println!("(none is live: {name} is deleted; `glassbox functions promote {name} VERSION` makes one live again)");
    }
    Ok(())
}

fn version_row(v: &Value) -> Vec<String> {
    let spec = &v["spec"];
    let limits: Vec<String> = limits(spec).into_iter().map(|(k, v)| format!("{k} {v}")).collect();
    vec![
        v["version"].to_string(),
        if v["live"] == true { "live".into() } else { String::new() },
        triggers(spec),
        limits.join(", "),
        spec["feature"].as_str().unwrap_or("-").to_string(),
        super::egress(spec),
        render::short_time(&v["deployed_at"]),
        render::text(v, "deployed_by").to_string(),
        render::short_digest(render::text(v, "digest")),
    ]
}

pub async fn promote(client: &Client, name: &str, version: u32, json: bool) -> anyhow::Result<()> {
    let body = serde_json::json!({ "version": version }).to_string();
    let change = client.post(&path(name, "/promote"), "application/json", body).await?;
    print_change(name, &change, "promoted", json)
}

pub async fn rollback(client: &Client, name: &str, json: bool) -> anyhow::Result<()> {
    let change = client.post(&path(name, "/rollback"), "application/json", String::new()).await?;
    print_change(name, &change, "rolled back", json)
}

fn print_change(name: &str, change: &Value, verb: &str, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(change);
    }
    println!("{}", live_change(name, change, verb));
    Ok(())
}

/// `thermostat: promoted to v1 (was v3, sha256:…)`, or that nothing changed.
fn live_change(name: &str, change: &Value, verb: &str) -> String {
    let live = &change["live"];
    let digest = render::short_digest(render::text(live, "digest"));
    if change["changed"] == false {
        return format!("{name}: v{} is live already ({digest}); nothing changed", live["version"]);
    }
    let was = change["from"].as_u64().map_or("deleted".to_string(), |v| format!("v{v}"));
    format!("{name}: {verb} to v{} (was {was}); v{} ({digest}) is live", live["version"], live["version"])
}

pub async fn delete(client: &Client, name: &str, force: bool, purge: bool, json: bool) -> anyhow::Result<()> {
    let query = format!("?force={force}&purge={purge}");
    let deleted = client.delete_json(&path(name, &query)).await?;
    if json {
        return print_json(&deleted);
    }
    let was = deleted["version"].as_u64().map_or(String::new(), |v| format!(" (v{v} was live)"));
    println!("deleted {name}{was}: its triggers, routes and schedules no longer run it");
    let (dropped, running) = (deleted["dropped"].as_u64().unwrap_or(0), deleted["running"].as_u64().unwrap_or(0));
    if dropped > 0 {
        println!(
            "  {dropped} queued event(s) get a dead letter (cleared): glassbox events query --type function.dead_letter"
        );
    }
    if running > 0 {
        println!("  {running} invocation(s) running finish and are recorded");
    }
    match deleted["purged"] == true {
        true => println!("  its versions and key-value store are purged; its invocation records stay in the recorder"),
        false => println!(
            "  its versions are kept: `glassbox functions promote {name} VERSION` makes one live again, \
             --purge removes them"
        ),
    }
    Ok(())
}

/// The triggers, comma-separated.
fn triggers(spec: &Value) -> String {
    let list = spec["triggers"].as_array().map(|t| t.iter().filter_map(Value::as_str).collect::<Vec<_>>());
    list.unwrap_or_default().join(", ")
}

/// A version's limits, labelled, in the order `deploy --help` gives them.
fn limits(spec: &Value) -> Vec<(&'static str, String)> {
    let ms = |key: &str| {
        let millis = spec[key].as_u64().map(std::time::Duration::from_millis);
        millis.map_or("-".into(), |d| humantime::format_duration(d).to_string())
    };
    let number = |key: &str| spec[key].as_u64().map_or("-".into(), |n| n.to_string());
    let rate = spec["rate_per_second"].as_f64().map_or("-".into(), |r| format!("{r}/s"));
    let memory = spec["memory_bytes"].as_u64().map_or("-".into(), super::mebibytes);
    vec![
        ("timeout", ms("timeout_ms")),
        ("memory", memory),
        ("concurrency", number("concurrency")),
        ("rate", rate),
        ("retries", number("retries")),
        ("max age", ms("max_age_ms")),
        ("hop limit", number("hop_limit")),
        ("reuse", number("reuse")),
    ]
}

/// What a function has in hand, in the server's words.
fn in_hand(in_flight: &Value) -> String {
    let said = serde_json::from_value::<InFlight>(in_flight.clone()).map(|i| i.words()).unwrap_or_default();
    match said.is_empty() {
        true => "nothing queued or running".into(),
        false => said,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn limits_are_labelled_in_units() {
        let spec = json!({"timeout_ms": 5000, "memory_bytes": 67108864, "concurrency": 8, "retries": 2,
            "max_age_ms": 3600000, "hop_limit": 16, "reuse": 1000});
        let limits: Vec<String> = super::limits(&spec).into_iter().map(|(k, v)| format!("{k} {v}")).collect();
        assert_eq!(
            limits.join(", "),
            "timeout 5s, memory 64.0 MiB, concurrency 8, rate -, retries 2, max age 1h, hop limit 16, reuse 1000"
        );
    }

    #[test]
    fn a_promote_of_the_live_version_says_nothing_changed() {
        let live = json!({"version": 2, "digest": "sha256:0123456789abcdef0123"});
        let same = super::live_change("fan", &json!({"changed": false, "from": 2, "live": live}), "promoted");
        assert_eq!(same, "fan: v2 is live already (sha256:0123456789ab); nothing changed");
        let back = super::live_change("fan", &json!({"changed": true, "from": 3, "live": live}), "rolled back");
        assert_eq!(back, "fan: rolled back to v2 (was v3); v2 (sha256:0123456789ab) is live");
    }
}
