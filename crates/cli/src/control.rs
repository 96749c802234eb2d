//! `glassbox control …` (desired state for devices) and the shadow printout
//! shared with `glassbox devices shadow`.

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use crate::Remote;

#[derive(clap::Subcommand)]
pub enum ControlCommand {
    /// Set desired state on a device's shadow. The device gets the delta on
    /// `$glassbox/devices/ID/shadow/delta` now if connected, else when it
    /// reconnects or subscribes.
    #[command(after_help = "Values are JSON where they parse as JSON, else strings; dots nest and null removes:\n  \
        glassbox control desired thermo-1 mode=eco target=21.5 fan.speed=2 schedule=null")]
    Desired(DesiredArgs),
}

#[derive(clap::Args)]
pub struct DesiredArgs {
    /// The device id.
    id: String,
    /// KEY=VALUE pairs.
    #[arg(required = true, value_name = "KEY=VALUE")]
    pairs: Vec<String>,
    /// Apply only if the shadow is still at this version (else 409).
    #[arg(long)]
    version: Option<u64>,
    #[command(flatten)]
    remote: Remote,
    /// Print the shadow as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(command: ControlCommand) -> anyhow::Result<()> {
    match command {
        ControlCommand::Desired(a) => {
            let desired = pairs_to_object(&a.pairs)?;
            let mut body = json!({ "state": { "desired": desired } });
            if let Some(version) = a.version {
                body["version"] = json!(version);
            }
            let path = format!("/api/v1/devices/{}/shadow", crate::client::segment(&a.id));
            let shadow = a.remote.client()?.post(&path, "application/json", body.to_string()).await?;
            print_shadow(&shadow, a.json)
        }
    }
}

/// `a=1 b.c=x` → `{"a": 1, "b": {"c": "x"}}`.
fn pairs_to_object(pairs: &[String]) -> anyhow::Result<Value> {
    let mut root = Map::new();
    for pair in pairs {
        let (key, raw) = pair.split_once('=').with_context(|| format!("{pair:?} is not KEY=VALUE"))?;
        if key.is_empty() || key.split('.').any(str::is_empty) {
            bail!("{pair:?}: the key must not be empty (dots separate nested keys)");
        }
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
        let mut levels: Vec<&str> = key.split('.').collect();
        let last = levels.pop().expect("split yields one at least");
        let mut node = &mut root;
        for level in levels {
            let entry = node.entry(level.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            node = entry.as_object_mut().expect("made an object above");
        }
        node.insert(last.to_string(), value);
    }
    Ok(Value::Object(root))
}

pub fn print_shadow(shadow: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(shadow)?);
        return Ok(());
    }
    let pretty = |v: &Value| serde_json::to_string(v).unwrap_or_default();
    println!("shadow of {} at version {}", crate::render::text(shadow, "device"), shadow["version"]);
    println!("desired:  {}", pretty(&shadow["desired"]));
    println!("reported: {}", pretty(&shadow["reported"]));
    match shadow["delta"].as_object().is_some_and(|d| !d.is_empty()) {
        true => println!("delta:    {} (the device has not reported these yet)", pretty(&shadow["delta"])),
        false => println!("delta:    none: the device reports what is desired"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_become_nested_json() {
        let pairs: Vec<String> = ["mode=eco", "target=21.5", "fan.speed=2", "fan.on=true", "old=null", "name=\"x y\""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let value = pairs_to_object(&pairs).unwrap();
        assert_eq!(
            value,
            json!({"mode": "eco", "target": 21.5, "fan": {"speed": 2, "on": true}, "old": null, "name": "x y"})
        );
        assert!(pairs_to_object(&["novalue".to_string()]).is_err());
        assert!(pairs_to_object(&["a..b=1".to_string()]).is_err());
    }
}
