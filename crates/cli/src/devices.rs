//! `glassbox devices …`: the device registry.

use serde_json::{Value, json};

use crate::Remote;
use crate::render;

#[derive(clap::Subcommand)]
pub enum DevicesCommand {
    /// Register a device; prints its secret, shown only this once.
    #[command(after_help = "The device connects over MQTT with client id = user name = ID and password = SECRET.")]
    Create(IdArgs),
    /// Registered devices, in id order.
    List(ListArgs),
    /// One device.
    Get(IdArgs),
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
    /// Remove the device from the registry; its recorded events stay.
    Delete(IdArgs),
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
pub struct ListArgs {
    /// Continue after this device id.
    #[arg(long)]
    after: Option<String>,
    /// Devices per page (1-1000).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[command(flatten)]
    remote: Remote,
    /// Print a JSON array of devices.
    #[arg(long)]
    json: bool,
}

pub async fn run(command: DevicesCommand) -> anyhow::Result<()> {
    match command {
        DevicesCommand::Create(a) => {
            let body = json!({ "id": a.id }).to_string();
            let device = a.remote.client()?.post("/api/v1/devices", "application/json", body).await?;
            print_with_secret(&device, a.json)
        }
        DevicesCommand::List(a) => list(a).await,
        DevicesCommand::Get(a) => {
            let device =
                a.remote.client()?.get(&format!("/api/v1/devices/{}", crate::client::segment(&a.id)), &[]).await?;
            print_device(&device, a.json)
        }
        DevicesCommand::Shadow(a) => {
            let path = format!("/api/v1/devices/{}/shadow", crate::client::segment(&a.id));
            let shadow = a.remote.client()?.get(&path, &[]).await?;
            crate::control::print_shadow(&shadow, a.json)
        }
        DevicesCommand::Inspect(a) => {
            let path = format!("/api/v1/devices/{}/inspect", crate::client::segment(&a.id));
            let view = a.remote.client()?.get(&path, &[]).await?;
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
            let device = a.remote.client()?.post(&path, "application/json", String::new()).await?;
            print_with_secret(&device, a.json)
        }
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
    let device = a.remote.client()?.post(&path, "application/json", String::new()).await?;
    print_device(&device, a.json)
}

async fn list(a: ListArgs) -> anyhow::Result<()> {
    let mut query = vec![("limit", a.limit.to_string())];
    if let Some(after) = &a.after {
        query.push(("after", after.clone()));
    }
    let page = a.remote.client()?.get("/api/v1/devices", &query).await?;
    let devices = page["devices"].as_array().cloned().unwrap_or_default();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&devices)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = devices.iter().map(row).collect();
    render::table(&["ID", "STATUS", "REGISTERED", "UPDATED"], &rows);
    if let Some(next) = page["next_after"].as_str() {
        eprintln!("more with --after {next}");
    }
    Ok(())
}

fn row(d: &Value) -> Vec<String> {
    let status = if d["disabled"].as_bool() == Some(true) { "disabled" } else { "enabled" };
    vec![
        render::text(d, "id").into(),
        status.into(),
        render::short_time(&d["created_at"]),
        render::short_time(&d["updated_at"]),
    ]
}

fn print_device(device: &Value, json: bool) -> anyhow::Result<()> {
    match json {
        true => println!("{}", serde_json::to_string_pretty(device)?),
        false => render::table(&["ID", "STATUS", "REGISTERED", "UPDATED"], &[row(device)]),
    }
    Ok(())
}

fn print_with_secret(device: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(device)?);
        return Ok(());
    }
    let id = render::text(device, "id");
    println!("device {id}");
    println!("secret {} (shown once; only its hash is stored)", render::text(device, "secret"));
    println!("MQTT credentials: client id and user name {id}, password the secret");
    Ok(())
}
