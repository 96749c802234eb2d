//! `glassbox devices …`: the device registry.

use glassbox_api_types::{DevicePage, DeviceSecret, DeviceToggled, LiveDevice, QueueCleared, Warned};
use glassbox_store::Device;
use serde::Serialize;
use serde_json::{Value, json};

use std::path::PathBuf;

use crate::Remote;
use crate::render;

#[derive(clap::Subcommand)]
pub enum DevicesCommand {
    /// Register a device; prints its secret, shown only this once.
    #[command(after_help = "The device connects over MQTT with client id = user name = ID and password = SECRET.\n\
        With --cert it also gets a key and a certificate from the CA (files ID.key, ID.crt and ca.crt)\n\
        to connect over TLS without a password: glassbox serve --mqtts 127.0.0.1:8883")]
    Create(CreateArgs),
    /// Registered devices, in id order.
    List(ListArgs),
    /// One device.
    Get(IdArgs),
    /// Set a device's metadata: tags, group, owner, attributes, cadence, certificate-only.
    #[command(
        visible_alias = "update",
        after_help = "glassbox devices set pump-1 --tag site=north --group pumps --owner acme --cadence 60s\n\
        glassbox devices set pump-1 --untag site --attr firmware=1.4.2 --no-group"
    )]
    Set(SetArgs),
    /// The device's shadow: desired and reported state, their delta, the version.
    Shadow(IdArgs),
    /// Explain one device in words: connected or not and why, its session
    /// queue and subscriptions, last message, and connection timeline.
    Inspect(IdArgs),
    /// Refuse the device's future connections.
    Disable(IdArgs),
    /// Accept the device's connections again.
    Enable(IdArgs),
    /// Issue a new secret (shown once); the old one stops working.
    RotateSecret(IdArgs),
    /// Drop the messages waiting in the device's offline queue: each is
    /// recorded as dropped with reason `cleared`, and the clearing itself
    /// as a `device.queue_cleared` event. Messages already sent and awaiting
    /// the device's acknowledgement stay. Prints what it cleared (the
    /// oldest 20 by event id and topic).
    #[command(after_help = "glassbox devices inspect pump-1        how many are queued, and since when
        glassbox devices clear-queue pump-1
        glassbox events query --device pump-1 --type device.queue_cleared")]
    ClearQueue(IdArgs),
    /// Remove the device from the registry; its recorded events stay.
    Delete(IdArgs),
    /// The device's X.509 certificates from the built-in CA: issue, list, revoke.
    #[command(subcommand)]
    Certificate(crate::certificates::CertificateCommand),
}

#[derive(clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    id: IdArgs,
    /// Also make a key and a CSR here and have the CA sign it: writes
    /// ID.key (0600), ID.crt and ca.crt into --out.
    #[arg(long)]
    cert: bool,
    /// Where --cert writes its files.
    #[arg(long, value_name = "DIR", default_value = ".", requires = "cert")]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct IdArgs {
    /// The device id: 1-128 letters, digits, - _ . or :
    id: String,
    #[command(flatten)]
    remote: Remote,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct SetArgs {
    /// The device id.
    id: String,
    /// Add or change a tag (KEY=VALUE); repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    tag: Vec<String>,
    /// Remove a tag; repeatable.
    #[arg(long, value_name = "KEY")]
    untag: Vec<String>,
    #[arg(long)]
    group: Option<String>,
    /// Clear the group.
    #[arg(long, conflicts_with = "group")]
    no_group: bool,
    /// Who the device (or its data) belongs to.
    #[arg(long)]
    owner: Option<String>,
    /// Set a free-form attribute (KEY=VALUE, VALUE as JSON if it parses); repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    attr: Vec<String>,
    /// How often the device should be heard from (e.g. 60s); "none" to learn it.
    #[arg(long)]
    cadence: Option<String>,
    /// Only a client certificate logs the device in (true), or its secret too (false).
    #[arg(long, value_name = "true|false")]
    certificate_only: Option<bool>,
    #[command(flatten)]
    remote: Remote,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Continue after this device id.
    #[arg(long)]
    after: Option<String>,
    /// Devices per page (1-1000).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Only devices with this tag (KEY=VALUE).
    #[arg(long, value_name = "KEY=VALUE")]
    tag: Option<String>,
    /// Only devices in this group.
    #[arg(long)]
    group: Option<String>,
    /// Only devices of this owner.
    #[arg(long)]
    owner: Option<String>,
    /// Only devices connected now (true) or not (false).
    #[arg(long)]
    connected: Option<bool>,
    /// Only devices flagged silent (quiet beyond their cadence, or away too long).
    #[arg(long)]
    silent: bool,
    #[command(flatten)]
    remote: Remote,
    /// Print a JSON array of devices.
    #[arg(long)]
    json: bool,
}

pub async fn run(command: DevicesCommand) -> anyhow::Result<()> {
    match command {
        DevicesCommand::Create(CreateArgs { id: a, cert, out }) => {
            let client = a.remote.client()?;
            let body = json!({ "id": a.id }).to_string();
            let device = client.post_as("/api/v1/devices", "application/json", body).await?;
            print_with_secret(&device, a.json)?;
            match cert {
                true => crate::certificates::quick_start(&client, &a.id, &out).await,
                false => Ok(()),
            }
        }
        DevicesCommand::List(a) => list(a).await,
        DevicesCommand::Get(a) => {
            let path = format!("/api/v1/devices/{}", crate::client::segment(&a.id));
            let device: Device = a.remote.client()?.fetch(&path, &[]).await?;
            print_device(&device, row(&device, None), a.json)
        }
        DevicesCommand::Set(a) => {
            let body = meta_patch(&a)?;
            let path = format!("/api/v1/devices/{}", crate::client::segment(&a.id));
            let device: Warned<LiveDevice<Device>> = a.remote.client()?.patch_as(&path, body.to_string()).await?;
            print_device(&device, row(&device.answer.device, Some(&device.answer)), a.json)
        }
        DevicesCommand::Shadow(a) => {
            let path = format!("/api/v1/devices/{}/shadow", crate::client::segment(&a.id));
            let shadow: glassbox_core::ShadowDocument = a.remote.client()?.fetch(&path, &[]).await?;
            crate::control::print_shadow(&shadow, a.json)
        }
        DevicesCommand::Inspect(a) => {
            let path = format!("/api/v1/devices/{}/inspect", crate::client::segment(&a.id));
            let view: crate::inspect::Inspection = a.remote.client()?.fetch(&path, &[]).await?;
            match a.json {
                true => println!("{}", serde_json::to_string_pretty(&view)?),
                false => crate::inspect::print(&view),
            }
            Ok(())
        }
        DevicesCommand::Disable(a) => action(a, "disable").await,
        DevicesCommand::Enable(a) => action(a, "enable").await,
        DevicesCommand::RotateSecret(a) => {
            let path = format!("/api/v1/devices/{}/secret", crate::client::segment(&a.id));
            let device = a.remote.client()?.post_as(&path, "application/json", String::new()).await?;
            print_with_secret(&device, a.json)
        }
        DevicesCommand::ClearQueue(a) => {
            let path = format!("/api/v1/devices/{}/queue", crate::client::segment(&a.id));
            let answer: Warned<QueueCleared> = a.remote.client()?.delete_as(&path).await?;
            match (a.json, answer.answer.session) {
                (true, _) => println!("{}", serde_json::to_string(&answer)?),
                (false, true) => print_cleared(&answer.answer, &a.id),
                (false, false) => println!("{} has no session, so nothing was queued", a.id),
            }
            if let Some(warning) = &answer.warning {
                eprintln!("warning: {warning}");
            }
            Ok(())
        }
        DevicesCommand::Certificate(command) => crate::certificates::run(command).await,
        DevicesCommand::Delete(a) => {
            a.remote.client()?.delete(&format!("/api/v1/devices/{}", crate::client::segment(&a.id))).await?;
            match a.json {
                true => println!("{}", json!({ "id": a.id, "deleted": true })),
                false => println!("deleted device {}", crate::client::segment(&a.id)),
            }
            Ok(())
        }
    }
}

async fn action(a: IdArgs, verb: &str) -> anyhow::Result<()> {
    let path = format!("/api/v1/devices/{}/{verb}", crate::client::segment(&a.id));
    let device: Warned<DeviceToggled<Device>> =
        a.remote.client()?.post_as(&path, "application/json", String::new()).await?;
    print_device(&device, row(&device.answer.device, None), a.json)
}

async fn list(a: ListArgs) -> anyhow::Result<()> {
    let mut query = vec![("limit", a.limit.to_string())];
    if let Some(after) = &a.after {
        query.push(("after", after.clone()));
    }
    if let Some(tag) = &a.tag {
        query.push(("tag", tag.clone()));
    }
    if let Some(group) = &a.group {
        query.push(("group", group.clone()));
    }
    if let Some(owner) = &a.owner {
        query.push(("owner", owner.clone()));
    }
    if let Some(connected) = a.connected {
        query.push(("connected", connected.to_string()));
    }
    if a.silent {
        query.push(("silent", "true".into()));
    }
    let page: DevicePage<Device> = a.remote.client()?.fetch("/api/v1/devices", &query).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&page.devices)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = page.devices.iter().map(|d| row(&d.device, Some(d))).collect();
    render::table(&HEADERS, &rows);
    if let Some(next) = &page.next_after {
        eprintln!("more with --after {next}");
    }
    Ok(())
}

const HEADERS: [&str; 6] = ["ID", "STATUS", "CONNECTED", "GROUP", "TAGS", "REGISTERED"];

/// A device's table row; `live`, when the answer carries the live state.
fn row(d: &Device, live: Option<&LiveDevice<Device>>) -> Vec<String> {
    let status = match (d.disabled, live.is_some_and(|l| l.silent)) {
        (true, _) => "disabled",
        (false, true) => "SILENT",
        (false, false) => "enabled",
    };
    let connected = match live.map(|l| l.connected) {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    };
    let tags = d.meta.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    vec![
        d.id.clone(),
        status.into(),
        connected.into(),
        d.meta.group.clone().unwrap_or_else(|| "-".into()),
        if tags.is_empty() { "-".into() } else { tags },
        render::clock(d.created_at),
    ]
}

fn meta_patch(a: &SetArgs) -> anyhow::Result<Value> {
    let pair = |p: &String| -> anyhow::Result<(String, String)> {
        let (k, v) = p.split_once('=').ok_or_else(|| anyhow::anyhow!("{p:?} is not KEY=VALUE"))?;
        Ok((k.to_string(), v.to_string()))
    };
    let mut patch = serde_json::Map::new();
    let mut tags = serde_json::Map::new();
    for p in &a.tag {
        let (k, v) = pair(p)?;
        tags.insert(k, json!(v));
    }
    for k in &a.untag {
        tags.insert(k.clone(), Value::Null);
    }
    if !tags.is_empty() {
        patch.insert("tags".into(), Value::Object(tags));
    }
    if let Some(group) = &a.group {
        patch.insert("group".into(), json!(group));
    }
    if a.no_group {
        patch.insert("group".into(), Value::Null);
    }
    if let Some(owner) = &a.owner {
        patch.insert("owner".into(), json!(owner));
    }
    let mut attributes = serde_json::Map::new();
    for p in &a.attr {
        let (k, v) = pair(p)?;
        attributes.insert(k, serde_json::from_str(&v).unwrap_or(Value::String(v)));
    }
    if !attributes.is_empty() {
        patch.insert("attributes".into(), Value::Object(attributes));
    }
    if let Some(cadence) = &a.cadence {
        patch.insert("cadence".into(), if cadence == "none" { Value::Null } else { json!(cadence) });
    }
    if let Some(only) = a.certificate_only {
        patch.insert("certificate_only".into(), json!(only));
    }
    if patch.is_empty() {
        anyhow::bail!(
            "nothing to set: give --tag, --untag, --group, --no-group, --owner, --attr, --cadence or --certificate-only"
        );
    }
    Ok(Value::Object(patch))
}

/// The answer as JSON, or its device's table row.
fn print_device(answer: &impl Serialize, row: Vec<String>, json: bool) -> anyhow::Result<()> {
    match json {
        true => println!("{}", serde_json::to_string_pretty(answer)?),
        false => render::table(&HEADERS, &[row]),
    }
    Ok(())
}

fn print_with_secret(answer: &Warned<DeviceSecret<Device>>, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(answer)?);
        return Ok(());
    }
    let id = &answer.answer.device.id;
    println!("device {id}");
    println!("secret {} (shown once; only its hash is stored)", answer.answer.secret);
    println!("MQTT credentials: client id and user name {id}, password the secret");
    Ok(())
}

/// What `clear-queue` dropped: the count, then each message the server
/// named (event id, topic, size), and how many more it did not name.
fn print_cleared(answer: &QueueCleared, device: &str) {
    let named = &answer.messages;
    let colon = if named.is_empty() { "" } else { ":" };
    let cleared = render::count(answer.cleared, "queued message");
    println!("cleared {cleared} of {device}; each is recorded as dropped (reason cleared){colon}");
    for message in named {
        println!("  {}  {}  ({} bytes)", message.event, message.topic, message.bytes);
    }
    let more = answer.cleared.saturating_sub(named.len());
    if more > 0 {
        println!("  … and {more} more");
    }
    if let Some(first) = named.first().map(|m| &m.event) {
        println!("glassbox events get {first}    one of them, with its states");
    }
}
