//! `glassbox demo`: the server on the embedded store, a simulated fleet,
//! three example functions, a backend that leaves messages in the devices'
//! inboxes, and a printed tour of the operability verbs with real ids —
//! then a few scripted incidents, so that `glassbox diagnose` has
//! something real to find.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use glassbox_api_types::Page;
use glassbox_core::{FUNCTION_INVOKED, InvocationKey, payload_in};
use glassbox_gateway::client::{self, Options};
use glassbox_gateway::codec::{Packet, Properties, Publish, QoS};
use glassbox_telemetry::logs::{PlatformLayer, PlatformLog};
use serde_json::Value;

use crate::Remote;
use crate::client::Client;
use crate::simulate::{self, Faults, Profile, SimulateArgs};

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    glassbox demo                                 everything on 127.0.0.1:7070 (HTTP) and :1883 (MQTT)\n  \
    glassbox demo --data-dir demo-data            keep what it recorded after it stops\n  \
    glassbox demo --incidents-after 10m           a longer quiet start\n\n\
    The detectors learn each series' normal for --warmup-points × 10 s (2 minutes) before they may \
    raise an alert; the scripted incidents begin after that. While it runs, type a fault and Enter \
    (silent ID, flap ID, surge GROUP, malformed ID, status; see `glassbox simulate --help`).")]
pub struct DemoArgs {
    /// Keep the demo's data here (default: a temporary directory, removed when it stops).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP API address.
    #[arg(long, default_value = "127.0.0.1:7070")]
    http: String,
    /// MQTT listener address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// How many simulated devices (at least 3).
    #[arg(long, default_value_t = 12)]
    devices: usize,
    /// Time between a device's telemetry messages.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// 10-second points each series learns before it may raise an alert
    /// (a server's default is 90: 15 minutes).
    #[arg(long, default_value_t = 12)]
    warmup_points: u32,
    /// When the first scripted incident happens.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    incidents_after: Duration,
    /// The slow version comes this long after the first incident and is
    /// rolled back as long after; the device falls silent six minutes after
    /// the rollback, once that has calmed down (diagnose joins related
    /// episodes less than three minutes apart into one incident).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    incident_gap: Duration,
    /// Script no incidents: a quiet fleet.
    #[arg(long)]
    no_incidents: bool,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

/// The demo's functions, from one template (`relay.wat`).
fn relay(output_type: &str, spin: u32, log: &str) -> Vec<u8> {
    include_str!("relay.wat")
        .replace("@TYPELEN@", &output_type.len().to_string())
        .replace("@TYPE@", output_type)
        .replace("@LOGLEN@", &log.len().to_string())
        .replace("@LOG@", log)
        .replace("@SPIN@", &spin.to_string())
        .into_bytes()
}

/// The ticker's schedule.
const TICK: &str = "schedule:@every 2s";

mod incidents;
mod tour;

use tour::Tour;

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let (data_dir, _temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temporary = tempfile::Builder::new().prefix("glassbox-demo-").tempdir()?;
            (temporary.path().to_path_buf(), Some(temporary))
        }
    };
    let (log, platform_log) = log_to_file(&data_dir)?;
    let token = match std::env::var("GLASSBOX_ADMIN_TOKEN") {
        Ok(token) if token.len() >= 16 => token,
        _ => format!("gbx_demo_{:032x}", rand::random::<u128>()),
    };
    let mut config = glassbox_server::Config { data_dir: data_dir.clone(), ..glassbox_server::Config::default() };
    config.http.listen = args.http.clone();
    config.mqtt.listen = args.mqtt.clone();
    config.diagnose.warmup_points = args.warmup_points;
    config.validate()?;
    let running = glassbox_server::start_with_log(config, Some(&token), platform_log).await.with_context(|| {
        format!(
            "starting the demo on {} (HTTP) and {} (MQTT); if another glassbox runs there, stop it or pass \
             --http and --mqtt",
            args.http, args.mqtt
        )
    })?;
    let remote = Remote { server: format!("http://{}", running.http_addr), token: Some(token.clone()) };
    let client = remote.client()?;
    deploy(&client, "telemetry", relay("telemetry.accepted", 0, "telemetry accepted"), &["mqtt:devices/+/telemetry"])
        .await?;
    deploy(&client, "enrich", relay("telemetry.enriched", 0, "telemetry enriched"), &["event:telemetry.accepted"])
        .await?;
    deploy(&client, "ticker", relay("demo.tick", 0, "tick"), &[TICK]).await?;

    let fleet = fleet(&args, running.mqtt_addr.to_string(), remote.clone());
    let faults = Arc::new(Mutex::new(Faults::default()));
    let _devices = simulate::start(&fleet, faults.clone()).await?;
    let profiles = simulate::fleet(&fleet);
    let roles = Roles::pick(&profiles);
    tokio::spawn(backend(running.mqtt_addr.to_string(), token.clone(), profiles));

    let sample = first_message(&client, &roles.steady).await?;
    let schedule = incidents::Schedule::new(args.incidents_after, args.incident_gap);
    let kept = args.data_dir.is_some();
    let tour = Tour { remote: &remote, data_dir: &data_dir, log: &log, kept, roles: &roles, schedule, sample };
    println!("{}", tour.text(&args));
    if !args.no_incidents {
        tokio::spawn(incidents::script(client, faults.clone(), roles.clone(), schedule));
    }
    tokio::spawn(simulate::console(faults));
    running.run_until(stopped(crate::serve::interrupted()?, args.duration)).await
}

/// The simulated fleet: at least three devices (the tour and the incidents
/// need three roles), some sleepy, some on flaky links.
fn fleet(args: &DemoArgs, mqtt: String, remote: Remote) -> SimulateArgs {
    SimulateArgs {
        devices: args.devices.max(3),
        prefix: "sim".into(),
        groups: 3,
        mqtt,
        interval: args.interval,
        sleepy: 0.2,
        flaky: 0.1,
        // The tour's command should succeed: a newcomer's first one failing
        // at random says nothing useful (`glassbox simulate` fails 5%).
        command_failures: 0.0,
        silent: Vec::new(),
        flap: Vec::new(),
        surge: Vec::new(),
        malformed: Vec::new(),
        duration: None,
        // Week-long certificates, inside the first expiry warning at once:
        // each device renews over MQTT early in the demo, on the record.
        cert_days: Some(7),
        seed: 1,
        remote,
    }
}

/// Resolves when the demo is `interrupted` (Ctrl-C, SIGTERM) or `duration` has passed.
async fn stopped(interrupted: impl Future<Output = ()>, duration: Option<Duration>) {
    let elapsed = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = interrupted => {}
        () = elapsed => {}
    }
    println!("demo stopping");
}

/// Deploys `component` as the next version of `name`, live at once.
async fn deploy(client: &Client, name: &str, component: Vec<u8>, triggers: &[&str]) -> anyhow::Result<Value> {
    let query = [("trigger", triggers.join(",")), ("feature", "demo".to_string())];
    let path = format!("/api/v1/functions/{name}");
    client.post_bytes(&path, &query, "application/wasm", component).await.with_context(|| format!("deploying {name}"))
}

/// The devices the tour and the incidents are about.
#[derive(Clone)]
struct Roles {
    /// Always awake: the one the tour follows.
    steady: String,
    /// Sleeps now and then, so messages queue for it.
    sleepy: String,
    /// Goes silent in the third incident.
    silenced: String,
}

impl Roles {
    /// Three different devices (the fleet has at least three), each the
    /// kind its role wants where the fleet has one.
    fn pick(profiles: &[Profile]) -> Self {
        let mut taken: Vec<&str> = Vec::new();
        let mut choose = |wanted: &dyn Fn(&Profile) -> bool| {
            let free = |p: &&Profile| !taken.contains(&p.id.as_str());
            let found = profiles.iter().filter(free).find(|p| wanted(p)).or_else(|| profiles.iter().find(free));
            let id = found.map_or("sim-0", |p| p.id.as_str());
            taken.push(id);
            id.to_string()
        };
        let steady = choose(&|p| !p.sleepy && !p.flaky);
        let sleepy = choose(&|p| p.sleepy);
        let silenced = choose(&|p| !p.sleepy && !p.flaky);
        Self { steady, sleepy, silenced }
    }
}

/// How often the backend leaves a note in each device's inbox: a sleeping
/// device (2–4 minutes away) has a dozen or more waiting.
const NOTE_EVERY: Duration = Duration::from_secs(10);

/// A backend leaving a note in every device's inbox each [`NOTE_EVERY`]
/// (QoS 1), so that messages queue for devices while they sleep.
async fn backend(mqtt: String, token: String, profiles: Vec<Profile>) {
    let username = Some(glassbox_gateway::broker::OPERATOR_USERNAME.to_string());
    let options = Options { username, password: Some(token), ..Options::new("demo-backend") };
    let mut tick = tokio::time::interval(NOTE_EVERY);
    loop {
        let Ok((mut reader, mut writer, _)) = client::connect(&mqtt, &options).await else {
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        };
        // Acknowledgements are not waited for; reading them keeps the socket flowing.
        tokio::spawn(async move { while reader.next().await.is_ok() {} });
        let mut packet_id: u16 = 0;
        'connected: loop {
            tick.tick().await;
            for p in &profiles {
                packet_id = packet_id.wrapping_add(1).max(1);
                let note = serde_json::json!({ "sample_every": "5s", "sent_at": chrono::Utc::now() });
                let publish = Publish {
                    dup: false,
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    topic: format!("devices/{}/inbox/settings", p.id),
                    packet_id: Some(packet_id),
                    properties: Properties::default(),
                    payload: Bytes::from(note.to_string()),
                };
                if writer.send(&Packet::Publish(publish)).await.is_err() || writer.flush().await.is_err() {
                    break 'connected;
                }
            }
        }
    }
}

/// The server's log lines go to `glassbox.log` in the data directory (at
/// INFO, or `GLASSBOX_LOG`), not to the terminal the tour is printed on;
/// they stay in `glassbox logs` too. Returns the file's path and that ring.
fn log_to_file(data_dir: &std::path::Path) -> anyhow::Result<(PathBuf, Arc<PlatformLog>)> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join("glassbox.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening the demo's log file {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("GLASSBOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let to_file = tracing_subscriber::fmt::layer().with_writer(Mutex::new(file)).with_ansi(false).with_filter(filter);
    let platform_log = PlatformLog::new();
    let _ = tracing_subscriber::registry().with(to_file).with(PlatformLayer::new(platform_log.clone())).try_init();
    Ok((path, platform_log))
}

/// The id of a telemetry message of `device` (a `device.message`) that
/// `telemetry` handled, for the tour to follow (waits up to 30 s for one).
async fn first_message(client: &Client, device: &str) -> anyhow::Result<String> {
    let query = [("type", FUNCTION_INVOKED.to_string()), ("device", device.to_string()), ("limit", "20".into())];
    for _ in 0..300 {
        let page: Page<Value> = client.fetch("/api/v1/events", &query).await?;
        let invocations = page.events;
        // `enrich` runs on `telemetry`'s output, of the same device: skip it.
        let mut keys = invocations.iter().filter_map(|e| payload_in::<InvocationKey>(e).ok());
        if let Some(handled) = keys.find(|key| key.function == "telemetry") {
            return Ok(handled.event_id);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("no telemetry from {device} reached its function within 30 s; is the MQTT listener reachable?")
}
