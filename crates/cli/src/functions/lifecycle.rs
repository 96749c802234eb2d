//! `glassbox functions get|versions|promote|rollback|delete`: a function's
//! versions and which one is live, as people read them.

use glassbox_api_types::{DeployedVersion, FunctionState, LiveChanged, VersionList};
use glassbox_core::Deleted;
use glassbox_functions::{InFlight, Spec};
use serde::Serialize;

use crate::client::{Client, segment};
use crate::render;

/// `/api/v1/functions/{name}` and what follows it.
fn path(name: &str, rest: &str) -> String {
    format!("/api/v1/functions/{}{rest}", segment(name))
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn get(client: &Client, name: &str, json: bool) -> anyhow::Result<()> {
    let function: FunctionState<Spec, InFlight> = client.fetch(&path(name, ""), &[]).await?;
    if json {
        return print_json(&function);
    }
    let versions = function.versions;
    let Some(live) = &function.live else {
        println!(
            "{name}: deleted; {} kept (`glassbox functions versions {name}` lists them, \
             `glassbox functions promote {name} VERSION` makes one live again)",
            render::count(versions, "version")
        );
        return Ok(());
    };
    println!("{name}: live at v{} (of {versions}, newest v{})", live.version, function.latest);
    let spec = &live.spec;
    let mut rows = vec![
        ("digest", live.digest.clone()),
        ("deployed", format!("{} by {}", render::clock(live.deployed_at), live.deployed_by)),
        ("live since", function.live_since.map_or_else(|| "-".into(), render::clock)),
        ("triggers", spec.triggers.join(", ")),
        ("feature", spec.feature.clone().unwrap_or_else(|| "-".into())),
    ];
    rows.extend(limits(spec));
    rows.push(("egress", super::egress(spec)));
    rows.push(("in hand", in_hand(function.in_flight.as_ref())));
    for (key, value) in rows {
        println!("  {key:<12} {value}");
    }
    Ok(())
}

pub async fn versions(client: &Client, name: &str, json: bool) -> anyhow::Result<()> {
    let body: VersionList<Spec> = client.fetch(&path(name, "/versions"), &[]).await?;
    let versions = body.versions;
    if json {
        return print_json(&versions);
    }
    let rows: Vec<Vec<String>> = versions.iter().map(version_row).collect();
    let headers = ["VERSION", "", "TRIGGERS", "LIMITS", "FEATURE", "EGRESS", "DEPLOYED", "BY", "DIGEST"];
    render::table(&headers, &rows);
    if !versions.iter().any(|v| v.live) {
        println!("(none is live: {name} is deleted; `glassbox functions promote {name} VERSION` makes one live again)");
    }
    Ok(())
}

fn version_row(v: &DeployedVersion<Spec>) -> Vec<String> {
    let spec = &v.spec;
    let limits: Vec<String> = limits(spec).into_iter().map(|(k, v)| format!("{k} {v}")).collect();
    vec![
        v.version.to_string(),
        if v.live { "live".into() } else { String::new() },
        spec.triggers.join(", "),
        limits.join(", "),
        spec.feature.clone().unwrap_or_else(|| "-".into()),
        super::egress(spec),
        render::clock(v.deployed_at),
        v.deployed_by.clone(),
        render::short_digest(&v.digest),
    ]
}

pub async fn promote(client: &Client, name: &str, version: u32, json: bool) -> anyhow::Result<()> {
    let body = serde_json::json!({ "version": version }).to_string();
    let change = client.post_as(&path(name, "/promote"), "application/json", body).await?;
    print_change(name, &change, "promoted", json)
}

pub async fn rollback(client: &Client, name: &str, json: bool) -> anyhow::Result<()> {
    let change = client.post_as(&path(name, "/rollback"), "application/json", String::new()).await?;
    print_change(name, &change, "rolled back", json)
}

fn print_change(name: &str, change: &LiveChanged<Spec>, verb: &str, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(change);
    }
    println!("{}", live_change(name, change, verb));
    Ok(())
}

/// `thermostat: promoted to v1 (was v3, sha256:…)`, or that nothing changed.
fn live_change<S>(name: &str, change: &LiveChanged<S>, verb: &str) -> String {
    let live = &change.live;
    let digest = render::short_digest(&live.digest);
    if !change.changed {
        return format!("{name}: v{} is live already ({digest}); nothing changed", live.version);
    }
    let was = change.from.map_or("deleted".to_string(), |v| format!("v{v}"));
    format!("{name}: {verb} to v{} (was {was}); v{} ({digest}) is live", live.version, live.version)
}

pub async fn delete(client: &Client, name: &str, force: bool, purge: bool, json: bool) -> anyhow::Result<()> {
    let query = format!("?force={force}&purge={purge}");
    let deleted: Deleted = client.delete_as(&path(name, &query)).await?;
    if json {
        return print_json(&deleted);
    }
    let was = deleted.version.map_or(String::new(), |v| format!(" (v{v} was live)"));
    println!("deleted {name}{was}: its triggers, routes and schedules no longer run it");
    let (dropped, running) = (deleted.dropped, deleted.running);
    if dropped > 0 {
        println!(
            "  {dropped} queued event(s) get a dead letter (cleared): glassbox events query --type function.dead_letter"
        );
    }
    if running > 0 {
        println!("  {running} invocation(s) running finish and are recorded");
    }
    match deleted.purged {
        true => println!("  its versions and key-value store are purged; its invocation records stay in the recorder"),
        false => println!(
            "  its versions are kept: `glassbox functions promote {name} VERSION` makes one live again, \
             --purge removes them"
        ),
    }
    Ok(())
}

/// A version's limits, labelled, in the order `deploy --help` gives them.
fn limits(spec: &Spec) -> Vec<(&'static str, String)> {
    let ms = |millis: u64| humantime::format_duration(std::time::Duration::from_millis(millis)).to_string();
    let rate = spec.rate_per_second.map_or("-".into(), |r| format!("{r}/s"));
    vec![
        ("timeout", ms(spec.timeout_ms)),
        ("memory", super::mebibytes(spec.memory_bytes)),
        ("concurrency", spec.concurrency.to_string()),
        ("rate", rate),
        ("retries", spec.retries.to_string()),
        ("max age", ms(spec.max_age_ms)),
        ("hop limit", spec.hop_limit.to_string()),
        ("reuse", spec.reuse.to_string()),
    ]
}

/// What a function has in hand, in the server's words.
fn in_hand(in_flight: Option<&InFlight>) -> String {
    let said = in_flight.map(InFlight::words).unwrap_or_default();
    match said.is_empty() {
        true => "nothing queued or running".into(),
        false => said,
    }
}

#[cfg(test)]
mod tests {
    use glassbox_api_types::{DeployedVersion, LiveChanged};
    use glassbox_functions::Spec;

    #[test]
    fn limits_are_labelled_in_units() {
        let spec = Spec {
            timeout_ms: 5000,
            memory_bytes: 67108864,
            concurrency: 8,
            retries: 2,
            max_age_ms: 3600000,
            hop_limit: 16,
            reuse: 1000,
            rate_per_second: None,
            ..Spec::default()
        };
        let limits: Vec<String> = super::limits(&spec).into_iter().map(|(k, v)| format!("{k} {v}")).collect();
        assert_eq!(
            limits.join(", "),
            "timeout 5s, memory 64.0 MiB, concurrency 8, rate -, retries 2, max age 1h, hop limit 16, reuse 1000"
        );
    }

    #[test]
    fn a_promote_of_the_live_version_says_nothing_changed() {
        let live = DeployedVersion {
            name: "fan".into(),
            version: 2,
            digest: "sha256:0123456789abcdef0123".into(),
            spec: (),
            deployed_at: chrono::Utc::now(),
            deployed_by: "admin".into(),
            retired: false,
            live: true,
        };
        let change = |changed, from| LiveChanged { function: "fan".into(), changed, from, live: live.clone() };
        let same = super::live_change("fan", &change(false, Some(2)), "promoted");
        assert_eq!(same, "fan: v2 is live already (sha256:0123456789ab); nothing changed");
        let back = super::live_change("fan", &change(true, Some(3)), "rolled back");
        assert_eq!(back, "fan: rolled back to v2 (was v3); v2 (sha256:0123456789ab) is live");
    }
}
