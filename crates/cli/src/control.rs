//! `glassbox control …` (desired state for devices) and the shadow printout
//! shared with `glassbox devices shadow`.

use anyhow::{Context, bail};
use glassbox_api_types::{CommandIssued, CommandList, CommandView};
use glassbox_core::ShadowDocument;
use serde_json::{Map, Value, json};

use crate::Remote;

mod wait;

use wait::WaitArgs;

#[derive(clap::Subcommand)]
pub enum ControlCommand {
    /// Set desired state on a device's shadow. The device gets the delta on
    /// `$glassbox/devices/ID/shadow/delta` now if connected, else when it
    /// reconnects or subscribes.
    #[command(after_help = "Values are JSON where they parse as JSON, else strings; dots nest and null removes:\n  \
        glassbox control desired thermo-1 mode=eco target=21.5 fan.speed=2 schedule=null\n  \
        glassbox control desired thermo-1 mode=boost --if-version 3")]
    Desired(DesiredArgs),
    /// Send a durable command to a device. It waits while the device is
    /// offline (within --ttl) and is delivered when it reconnects.
    #[command(
        after_help = "The device receives {\"id\", \"name\", \"payload\", \"expires_at\", \"response_topic\"} on\n  \
        $glassbox/devices/ID/commands/NAME and answers on .../commands/NAME/response with\n  \
        {\"id\": \"<command id>\", \"status\": \"succeeded\" | \"failed\", \"result\": …}.\n\n\
        States: queued -> in_transit -> delivered (the device acknowledged it) -> succeeded | failed | expired | cancelled.\n\n\
        With --wait it prints the command id and state at once, then each step as it happens:\n  \
        glassbox control send pump-1 flush --wait --wait-timeout 2m\n\
        Exit codes with --wait: 0 succeeded; 1 failed, expired or cancelled (or an error); 124 still going \
        after --wait-timeout (follow it with `glassbox control command ID --wait`)."
    )]
    Send(SendArgs),
    /// A device's commands, newest first, with their states.
    Commands(CommandsArgs),
    /// One command, whole; with --wait, its steps until it finishes.
    Command(CommandArgs),
    /// Cancel a command that has not finished.
    Cancel(CommandIdArgs),
}

#[derive(clap::Args)]
pub struct SendArgs {
    /// The device id.
    id: String,
    /// The command name (a topic level: letters, digits, - _ .).
    name: String,
    /// JSON payload.
    #[arg(long)]
    payload: Option<String>,
    /// How long it may wait for the device (e.g. 30s, 5m, 2h; default 1h).
    #[arg(long)]
    ttl: Option<String>,
    /// Sending again with the same key returns the first command instead of sending twice.
    #[arg(long)]
    idempotency_key: Option<String>,
    #[command(flatten)]
    wait: WaitArgs,
    #[command(flatten)]
    remote: Remote,
    /// Print JSON (with --wait, a JSON line per step).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct CommandArgs {
    /// The command id (printed by `control send`).
    command: String,
    #[command(flatten)]
    wait: WaitArgs,
    #[command(flatten)]
    remote: Remote,
    /// Print JSON (with --wait, a JSON line per step).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct CommandsArgs {
    /// The device id.
    #[arg(long)]
    device: String,
    /// Only commands in this state.
    #[arg(long)]
    state: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    remote: Remote,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct CommandIdArgs {
    /// The command id (printed by `control send`).
    command: String,
    #[command(flatten)]
    remote: Remote,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct DesiredArgs {
    /// The device id.
    id: String,
    /// KEY=VALUE pairs.
    #[arg(required = true, value_name = "KEY=VALUE")]
    pairs: Vec<String>,
    /// Apply only if the shadow is still at this version (else 409).
    #[arg(long, value_name = "VERSION")]
    if_version: Option<u64>,
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
            if let Some(version) = a.if_version {
                body["version"] = json!(version);
            }
            let path = format!("/api/v1/devices/{}/shadow", crate::client::segment(&a.id));
            let shadow: ShadowDocument =
                a.remote.client()?.post_as(&path, "application/json", body.to_string()).await?;
            print_shadow(&shadow, a.json)
        }
        ControlCommand::Send(a) => send(a).await,
        ControlCommand::Commands(a) => {
            let mut query = vec![("limit", a.limit.to_string())];
            if let Some(state) = &a.state {
                query.push(("state", state.clone()));
            }
            let path = format!("/api/v1/devices/{}/commands", crate::client::segment(&a.device));
            let page: CommandList<CommandView> = a.remote.client()?.fetch(&path, &query).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&page.commands)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = page.commands.iter().map(command_row).collect();
            crate::render::table(&["ID", "NAME", "STATE", "CREATED", "UPDATED", "REASON"], &rows);
            Ok(())
        }
        ControlCommand::Command(a) => one_command(a).await,
        ControlCommand::Cancel(a) => {
            let path = format!("/api/v1/commands/{}/cancel", crate::client::segment(&a.command));
            let command: CommandView = a.remote.client()?.post_as(&path, "application/json", String::new()).await?;
            print_command(&command, a.json)
        }
    }
}

async fn send(a: SendArgs) -> anyhow::Result<()> {
    let payload = match &a.payload {
        None => Value::Null,
        Some(text) => serde_json::from_str(text).with_context(|| format!("--payload {text:?} is not JSON"))?,
    };
    let body = json!({ "name": a.name, "payload": payload, "ttl": a.ttl, "idempotency_key": a.idempotency_key });
    let client = a.remote.client()?;
    // Listening before sending: every step after it is seen.
    let steps = match a.wait.wait {
        true => Some(wait::Steps::open(&client, &a.id).await?),
        false => None,
    };
    let path = format!("/api/v1/devices/{}/commands", crate::client::segment(&a.id));
    let issued: CommandIssued<CommandView> = client.post_as(&path, "application/json", body.to_string()).await?;
    if issued.duplicate && !a.json {
        eprintln!("this idempotency key was used before: showing that command; nothing was sent again");
    }
    match steps {
        Some(steps) => wait::follow(&client, steps, issued.command, a.wait.wait_timeout, a.json).await,
        None if a.json => {
            println!("{}", serde_json::to_string_pretty(&issued)?);
            Ok(())
        }
        None => print_command(&issued.command, false),
    }
}

async fn one_command(a: CommandArgs) -> anyhow::Result<()> {
    let client = a.remote.client()?;
    let path = format!("/api/v1/commands/{}", crate::client::segment(&a.command));
    let command: CommandView = client.fetch(&path, &[]).await?;
    if !a.wait.wait {
        return print_command(&command, a.json);
    }
    let steps = wait::Steps::open(&client, &command.device).await?;
    // Read again once listening: a step taken in between is not missed.
    let command = client.fetch(&path, &[]).await?;
    wait::follow(&client, steps, command, a.wait.wait_timeout, a.json).await
}

fn command_row(c: &CommandView) -> Vec<String> {
    vec![
        c.id.clone(),
        c.name.clone(),
        c.state.as_str().into(),
        crate::render::clock(c.created_at),
        crate::render::clock(c.updated_at),
        c.reason.clone().unwrap_or_default(),
    ]
}

fn print_command(command: &CommandView, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(command)?);
        return Ok(());
    }
    let CommandView { id, name, device, state, .. } = command;
    println!("command {id} ({name} to {device}): {}", state.as_str());
    println!("  expires {}", crate::render::clock(command.expires_at));
    if let Some(response) = &command.response {
        println!("  response: {}", serde_json::to_string(response)?);
    }
    if let Some(reason) = &command.reason {
        println!("  reason: {reason}");
    }
    println!("  trace: glassbox trace {id}");
    Ok(())
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
        let path: Vec<&str> = key.split('.').collect();
        insert_path(&mut root, &path, value);
    }
    Ok(Value::Object(root))
}

/// Sets `value` at `path` (`["fan", "speed"]`), making objects on the way.
fn insert_path(map: &mut Map<String, Value>, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => drop(map.insert(last.to_string(), value)),
        [first, rest @ ..] => {
            let entry = map.entry(first.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Value::Object(inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

pub fn print_shadow(shadow: &ShadowDocument, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(shadow)?);
        return Ok(());
    }
    let pretty = |v: &Map<String, Value>| serde_json::to_string(v).unwrap_or_default();
    println!("shadow of {} at version {}", shadow.device, shadow.version);
    println!("desired:  {}", pretty(&shadow.desired));
    println!("reported: {}", pretty(&shadow.reported));
    match shadow.delta.is_empty() {
        false => println!("delta:    {} (the device has not reported these yet)", pretty(&shadow.delta)),
        true => println!("delta:    none: the device reports what is desired"),
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
