//! `glassbox simulate`: a fleet of sometimes-connected devices over real
//! MQTT, for trying Glassbox (and `glassbox demo`) on live data.
//!
//! Each device registers itself through the API, connects with its own
//! credentials, reports its shadow, publishes telemetry with a daily
//! pattern and noise, applies the desired state its shadow's delta asks for
//! and carries out commands after a delay (failing a few), reporting what
//! changed (see `firmware`), and — for some devices — sleeps for minutes or
//! drops its link now and then.
//! Faults can be set by flag at start or typed while it runs (see `--help`).

use std::collections::{HashMap, HashSet};
use std::f64::consts::TAU;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use glassbox_gateway::client::{self, Options, Writer};
use glassbox_gateway::codec::{Ack, Packet, Properties, Protocol, Publish, QoS, Subscribe, SubscriptionOptions};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::Remote;
use crate::client::Client;

mod firmware;
mod renewal;

use firmware::Firmware;

/// How long a sleepy device sleeps, in seconds: long enough that what is
/// sent to it waits in its queue most of the time (well under
/// `control.offline_max`, 10 minutes, after which liveness would flag it).
const SLEEP_SECONDS: std::ops::Range<u64> = 120..240;

#[derive(clap::Args, Clone)]
#[command(after_help = "While it runs, type a fault and Enter:\n  \
    silent ID | talk ID        stop / resume one device's messages (it stays connected)\n  \
    flap ID | steady ID        make a device connect and drop every few seconds, or stop\n  \
    surge GROUP | calm GROUP   a group publishes ten times as often, or back to normal\n  \
    malformed ID | wellformed ID   a device's payloads turn to garbage, or back\n  \
    status                     what is set now\n\n\
    Devices are named PREFIX-0 … PREFIX-(N-1), in groups PREFIX-group-0 … ; they are registered \
    (or their secret rotated) through the API, so the simulator needs an operator token.")]
pub struct SimulateArgs {
    /// How many devices.
    #[arg(long, default_value_t = 20)]
    pub devices: usize,
    /// Device id prefix.
    #[arg(long, default_value = "sim")]
    pub prefix: String,
    /// Device groups the fleet is spread over.
    #[arg(long, default_value_t = 3)]
    pub groups: usize,
    /// The MQTT listener.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub mqtt: String,
    /// Time between a device's telemetry messages.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Share of devices that sleep: awake for under a minute, then away for 2–4 minutes.
    #[arg(long, default_value_t = 0.2)]
    pub sleepy: f64,
    /// Share of devices whose link drops now and then.
    #[arg(long, default_value_t = 0.1)]
    pub flaky: f64,
    /// Share of commands a device answers with a failure.
    #[arg(long, default_value_t = 0.05)]
    pub command_failures: f64,
    /// Devices silent from the start (repeatable).
    #[arg(long)]
    pub silent: Vec<String>,
    /// Devices that flap from the start (repeatable).
    #[arg(long)]
    pub flap: Vec<String>,
    /// Groups that surge from the start (repeatable).
    #[arg(long)]
    pub surge: Vec<String>,
    /// Devices sending malformed payloads from the start (repeatable).
    #[arg(long)]
    pub malformed: Vec<String>,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Give each device a certificate from the built-in CA for this many
    /// days; a device renews it over MQTT once it ends within 30 days.
    #[arg(long, value_name = "DAYS")]
    pub cert_days: Option<u32>,
    /// Seed for the fleet's randomness (the same seed, the same fleet).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub remote: Remote,
}

/// The faults in force, shared by every device and the fault console.
#[derive(Debug, Default)]
pub struct Faults {
    silent: HashSet<String>,
    flapping: HashSet<String>,
    surging: HashSet<String>,
    malformed: HashSet<String>,
}

impl Faults {
    /// Applies a console line; returns what it did, or what is wrong with it.
    pub fn apply(&mut self, line: &str) -> Result<String, String> {
        let mut words = line.split_whitespace();
        let (verb, target) = (words.next().unwrap_or_default(), words.next().map(str::to_string));
        let set = |faults: &mut HashSet<String>, on: bool, target: Option<String>| -> Result<String, String> {
            let target = target.ok_or_else(|| format!("{verb} needs a device or group"))?;
            if on {
                faults.insert(target.clone())
            } else {
                faults.remove(&target)
            };
            Ok(format!("{verb} {target}"))
        };
        match verb {
            "silent" => set(&mut self.silent, true, target),
            "talk" => set(&mut self.silent, false, target),
            "flap" => set(&mut self.flapping, true, target),
            "steady" => set(&mut self.flapping, false, target),
            "surge" => set(&mut self.surging, true, target),
            "calm" => set(&mut self.surging, false, target),
            "malformed" => set(&mut self.malformed, true, target),
            "wellformed" => set(&mut self.malformed, false, target),
            "status" | "" => Ok(format!(
                "silent {:?} · flapping {:?} · surging {:?} · malformed {:?}",
                self.silent, self.flapping, self.surging, self.malformed
            )),
            other => Err(format!(
                "{other:?}? use silent|talk|flap|steady|malformed|wellformed ID, surge|calm GROUP, or status"
            )),
        }
    }
}

/// One simulated device's character.
#[derive(Debug, Clone)]
pub struct Profile {
    pub id: String,
    pub group: String,
    /// Whether its link drops now and then.
    pub flaky: bool,
    /// Whether it sleeps (disconnects for a while) every few minutes.
    pub sleepy: bool,
    /// Its own offset on the daily curve and base temperature.
    phase: f64,
    base: f64,
}

/// The fleet's devices, as `simulate` would make them. A share of sleepy
/// devices above zero means at least one: the last device sleeps if the
/// draw made none sleepy.
pub fn fleet(args: &SimulateArgs) -> Vec<Profile> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut profiles: Vec<Profile> = (0..args.devices)
        .map(|i| Profile {
            id: format!("{}-{i}", args.prefix),
            group: format!("{}-group-{}", args.prefix, i % args.groups.max(1)),
            sleepy: rng.random_bool(args.sleepy.clamp(0.0, 1.0)),
            flaky: rng.random_bool(args.flaky.clamp(0.0, 1.0)),
            phase: rng.random_range(-1.0..1.0),
            base: rng.random_range(18.0..24.0),
        })
        .collect();
    if args.sleepy > 0.0
        && !profiles.iter().any(|p| p.sleepy)
        && let Some(last) = profiles.last_mut()
    {
        last.sleepy = true;
    }
    profiles
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let faults = Arc::new(Mutex::new(Faults::default()));
    let link = Arc::new(Link::new(&args.mqtt));
    let tasks = start_reporting(&args, faults.clone(), Some(link)).await?;
    println!(
        "simulating {} in {} on {} (telemetry every {}); type `status` or a fault, Ctrl-C to stop",
        crate::render::count(args.devices, "device"),
        crate::render::count(args.groups, "group"),
        args.mqtt,
        humantime::format_duration(args.interval)
    );
    tokio::spawn(console(faults));
    match args.duration {
        Some(d) => {
            let _ = tokio::time::timeout(d, tasks.join_all()).await;
        }
        None => {
            tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
        }
    }
    Ok(())
}

/// Registers the fleet and sets each device living; the faults of the
/// flags are added to `faults`, which steers the devices from then on.
pub async fn start(args: &SimulateArgs, faults: Arc<Mutex<Faults>>) -> anyhow::Result<tokio::task::JoinSet<()>> {
    start_reporting(args, faults, None).await
}

/// [`start`], saying on stderr when the fleet loses the server and when
/// it reaches it again, if `link` is given.
async fn start_reporting(
    args: &SimulateArgs,
    faults: Arc<Mutex<Faults>>,
    link: Option<Arc<Link>>,
) -> anyhow::Result<tokio::task::JoinSet<()>> {
    if let Ok(mut f) = faults.lock() {
        f.silent.extend(args.silent.iter().cloned());
        f.flapping.extend(args.flap.iter().cloned());
        f.surging.extend(args.surge.iter().cloned());
        f.malformed.extend(args.malformed.iter().cloned());
    }
    let client = args.remote.client()?;
    let profiles = fleet(args);
    let secrets = register(&client, &profiles, args.interval).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for (n, profile) in profiles.into_iter().enumerate() {
        let secret = secrets.get(&profile.id).cloned().unwrap_or_default();
        let certificate = match args.cert_days {
            Some(days) => Some(renewal::Held::issue(&client, &profile.id, days).await?),
            None => None,
        };
        let device = Device {
            certificate,
            profile,
            secret,
            args: args.clone(),
            faults: faults.clone(),
            seed: args.seed + n as u64,
            link: link.clone(),
            connect_failures: AtomicU32::new(0),
        };
        tasks.spawn(device.live());
    }
    Ok(tasks)
}

/// Reads fault lines from stdin while the fleet runs.
pub async fn console(faults: Arc<Mutex<Faults>>) {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = faults.lock().map(|mut f| f.apply(&line)).unwrap_or_else(|_| Err("faults unavailable".into()));
        match answer {
            Ok(done) => println!("ok: {done}"),
            Err(e) => println!("error: {e}"),
        }
    }
}

/// Registers each device (or rotates its secret if it exists) with its
/// group, a `simulated` tag and its cadence; returns the secrets.
pub async fn register(
    client: &Client,
    profiles: &[Profile],
    interval: Duration,
) -> anyhow::Result<HashMap<String, String>> {
    let mut secrets = HashMap::new();
    for p in profiles {
        let body = json!({ "id": p.id }).to_string();
        let secret = match client.post("/api/v1/devices", "application/json", body).await {
            Ok(created) => created["secret"].as_str().map(str::to_string),
            Err(e) if e.to_string().starts_with("409") => {
                let path = format!("/api/v1/devices/{}/secret", crate::client::segment(&p.id));
                client.post(&path, "application/json", "{}".into()).await?["secret"].as_str().map(str::to_string)
            }
            Err(e) => return Err(e.context(format!("registering {}", p.id))),
        };
        let meta = json!({
            "group": p.group, "tags": { "simulated": "true" },
            "cadence": humantime::format_duration(interval).to_string(),
        });
        client.patch(&format!("/api/v1/devices/{}", crate::client::segment(&p.id)), meta.to_string()).await?;
        secrets.insert(p.id.clone(), secret.unwrap_or_default());
    }
    Ok(secrets)
}

/// Whether the fleet reaches the MQTT server: said once when it stops
/// (the devices keep trying, backing off) and once when it answers again.
pub struct Link {
    mqtt: String,
    outage: Mutex<bool>,
}

impl Link {
    fn new(mqtt: &str) -> Self {
        Self { mqtt: mqtt.to_string(), outage: Mutex::new(false) }
    }

    fn failed(&self, error: &dyn std::fmt::Display) {
        let Ok(mut outage) = self.outage.lock() else { return };
        if !std::mem::replace(&mut *outage, true) {
            eprintln!(
                "simulate: cannot reach the MQTT server at {} ({error}); the devices keep reconnecting, \
                 each backing off up to {} s (Ctrl-C to stop)",
                self.mqtt,
                RECONNECT_DELAY_MAX.as_secs()
            );
        }
    }

    fn connected(&self) {
        let Ok(mut outage) = self.outage.lock() else { return };
        if std::mem::replace(&mut *outage, false) {
            eprintln!("simulate: the MQTT server at {} answers again; the devices are reconnecting", self.mqtt);
        }
    }
}

/// A device that cannot connect waits 1 s, 2 s, 4 s … up to this.
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(30);

struct Device {
    profile: Profile,
    secret: String,
    args: SimulateArgs,
    faults: Arc<Mutex<Faults>>,
    seed: u64,
    link: Option<Arc<Link>>,
    /// Connects that failed in a row, for the back-off.
    connect_failures: AtomicU32,
    /// Its certificate (`--cert-days`), renewed over MQTT when due.
    certificate: Option<renewal::Held>,
}

/// What the device's state says it should do now: talk; stay connected
/// and say nothing; or connect and drop every second or so.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Talk,
    Silent,
    Flap,
}

impl Device {
    fn mode(&self) -> (Mode, bool, bool) {
        let Ok(f) = self.faults.lock() else { return (Mode::Talk, false, false) };
        let id = &self.profile.id;
        let mode = match (f.silent.contains(id), f.flapping.contains(id)) {
            (true, _) => Mode::Silent,
            (_, true) => Mode::Flap,
            _ => Mode::Talk,
        };
        (mode, f.surging.contains(&self.profile.group), f.malformed.contains(id))
    }

    /// Connects, talks until a fault, sleep or drop ends the connection; again.
    async fn live(self) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let mut firmware = Firmware::new();
        let mut first = true;
        // Spread the fleet's first connections and messages over one interval.
        tokio::time::sleep(self.args.interval.mul_f64(rng.random_range(0.0..1.0))).await;
        loop {
            match self.mode().0 {
                Mode::Flap => {
                    if let Ok(session) = self.connect().await {
                        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
                        drop(session);
                    }
                    tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
                }
                Mode::Talk | Mode::Silent => {
                    let ended = self.session(&mut rng, &mut firmware, first).await;
                    first = false;
                    if let Err(e) = ended {
                        tracing::debug!(device = %self.profile.id, error = %e, "simulated session ended");
                        tokio::time::sleep(self.reconnect_delay(&mut rng)).await;
                    }
                    if self.profile.sleepy && self.mode().0 == Mode::Talk {
                        tokio::time::sleep(Duration::from_secs(rng.random_range(SLEEP_SECONDS))).await;
                    }
                }
            }
        }
    }

    async fn connect(&self) -> anyhow::Result<(client::Reader, Writer)> {
        let properties = Properties { session_expiry_interval: Some(3600), ..Properties::default() };
        let options = Options {
            username: Some(self.profile.id.clone()),
            password: Some(self.secret.clone()),
            protocol: Protocol::V5,
            clean_start: false,
            keep_alive: Duration::from_secs(30),
            properties,
            ..Options::new(self.profile.id.clone())
        };
        let connected = client::connect(&self.args.mqtt, &options).await;
        match (&connected, &self.link) {
            (Ok(_), link) => {
                self.connect_failures.store(0, Ordering::Relaxed);
                link.iter().for_each(|link| link.connected());
            }
            (Err(e), link) => {
                self.connect_failures.fetch_add(1, Ordering::Relaxed);
                link.iter().for_each(|link| link.failed(e));
            }
        }
        let (reader, writer, _) = connected?;
        Ok((reader, writer))
    }

    /// 2 s after a session ends; after failed connects 1 s doubling to
    /// [`RECONNECT_DELAY_MAX`], jittered so a fleet does not reconnect at once.
    fn reconnect_delay(&self, rng: &mut rand::rngs::StdRng) -> Duration {
        let delay = match self.connect_failures.load(Ordering::Relaxed) {
            0 => Duration::from_secs(2),
            failures => Duration::from_secs(1 << failures.min(6).saturating_sub(1)).min(RECONNECT_DELAY_MAX),
        };
        delay.mul_f64(rng.random_range(0.8..1.2))
    }

    /// One connection: subscribe, report, publish telemetry, act on desired
    /// state and commands.
    async fn session(&self, rng: &mut rand::rngs::StdRng, firmware: &mut Firmware, first: bool) -> anyhow::Result<()> {
        let (mut reader, mut writer) = self.connect().await?;
        let id = &self.profile.id;
        // Commands, desired state, and whatever a backend leaves in its inbox (queued while it sleeps).
        let filters = vec![
            (format!("$glassbox/devices/{id}/commands/#"), SubscriptionOptions::qos(QoS::AtLeastOnce)),
            (format!("$glassbox/devices/{id}/shadow/delta"), SubscriptionOptions::qos(QoS::AtLeastOnce)),
            (format!("devices/{id}/inbox/#"), SubscriptionOptions::qos(QoS::AtLeastOnce)),
            (format!("$glassbox/devices/{id}/certificate/renew/+"), SubscriptionOptions::qos(QoS::AtLeastOnce)),
        ];
        writer.send(&Packet::Subscribe(Subscribe { packet_id: 1, properties: Properties::default(), filters })).await?;
        publish(&mut writer, &format!("$glassbox/devices/{id}/shadow/update"), firmware.report_all(), 2).await?;
        if self.certificate.as_ref().is_some_and(renewal::Held::due) {
            let request = renewal::Held::request(id)?;
            publish(&mut writer, &format!("$glassbox/devices/{id}/certificate/renew"), request, 3).await?;
        }
        let until = tokio::time::Instant::now() + self.awake(rng, first);
        let (inbox_tx, mut inbox) = tokio::sync::mpsc::channel::<Publish>(64);
        let mut packet_id: u16 = 3;
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                packet = reader.next() => if let Packet::Publish(p) = packet? {
                    if let Some(pid) = p.packet_id {
                        writer.send(&Packet::PubAck(Ack::new(pid))).await?;
                        writer.flush().await?;
                    }
                    if let (Some(held), true) = (&self.certificate, p.topic.ends_with("/certificate/renew/accepted")) {
                        held.accepted(id, &p.payload);
                        continue;
                    }
                    // What it receives takes the device a moment to carry out.
                    let tx = inbox_tx.clone();
                    let latency = Duration::from_millis(rng.random_range(50..500));
                    tokio::spawn(async move {
                        tokio::time::sleep(latency).await;
                        let _ = tx.send(p).await;
                    });
                },
                Some(received) = inbox.recv() => {
                    let fail = rng.random_bool(self.args.command_failures.clamp(0.0, 1.0));
                    for (topic, body) in firmware.handle(id, &received, fail) {
                        packet_id = packet_id.wrapping_add(1).max(3);
                        publish(&mut writer, &topic, body, packet_id).await?;
                    }
                }
                () = tokio::time::sleep_until(next) => {
                    let (mode, surging, malformed) = self.mode();
                    if mode == Mode::Flap {
                        return Ok(());
                    }
                    if tokio::time::Instant::now() >= until {
                        // Going to sleep: a clean goodbye, its session kept.
                        writer.send(&Packet::Disconnect(Default::default())).await?;
                        writer.flush().await?;
                        return Ok(());
                    }
                    if mode == Mode::Silent {
                        // Connected but saying nothing: only keep-alives.
                        writer.send(&Packet::PingReq).await?;
                        writer.flush().await?;
                        next += Duration::from_secs(10);
                        continue;
                    }
                    if self.profile.flaky && rng.random_bool(0.02) {
                        anyhow::bail!("link dropped");
                    }
                    let body = match malformed {
                        true => "{\"temperature\": 2".to_string(),
                        false => self.telemetry(rng, firmware),
                    };
                    packet_id = packet_id.wrapping_add(1).max(3);
                    publish(&mut writer, &format!("devices/{id}/telemetry"), body, packet_id).await?;
                    let gap = if surging { self.args.interval / 10 } else { self.args.interval };
                    next += gap.mul_f64(rng.random_range(0.9..1.1));
                }
            }
        }
    }

    /// How long a connection stays up. A sleepy device wakes for well under
    /// a minute (its first wake: about one message) and then sleeps for
    /// minutes (see [`Device::live`]), so what is sent to it mostly waits in
    /// its queue; other devices stay up unless a fault or their link ends it.
    fn awake(&self, rng: &mut rand::rngs::StdRng, first: bool) -> Duration {
        match (self.profile.sleepy, first) {
            (true, true) => self.args.interval.mul_f64(1.5),
            (true, false) => Duration::from_secs(rng.random_range(20..60)),
            (false, _) => Duration::from_secs(86_400),
        }
    }

    /// Temperature on a daily curve (warmest mid-afternoon), with noise.
    fn telemetry(&self, rng: &mut rand::rngs::StdRng, firmware: &Firmware) -> String {
        let now = chrono::Utc::now();
        let day = (now.timestamp() % 86_400) as f64 / 86_400.0;
        let daily = (TAU * (day - 0.375) + self.profile.phase * 0.3).sin();
        let temperature = self.profile.base + 4.0 * daily + rng.random_range(-0.4..0.4);
        let humidity = 55.0 - 10.0 * daily + rng.random_range(-2.0..2.0);
        json!({
            "temperature": (temperature * 10.0).round() / 10.0,
            "humidity": humidity.round(),
            "battery": 100 - (now.timestamp() / 3600 % 100),
            "fan": firmware.reported.get("fan").cloned().unwrap_or(Value::Bool(false)),
        })
        .to_string()
    }
}

async fn publish(writer: &mut Writer, topic: &str, body: String, packet_id: u16) -> anyhow::Result<()> {
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: topic.to_string(),
        packet_id: Some(packet_id),
        properties: Properties::default(),
        payload: Bytes::from(body),
    };
    writer.send(&Packet::Publish(publish)).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_set_and_cleared_by_line() {
        let mut faults = Faults::default();
        assert_eq!(faults.apply("silent sim-3"), Ok("silent sim-3".into()));
        assert!(faults.silent.contains("sim-3"));
        faults.apply("talk sim-3").unwrap();
        assert!(faults.silent.is_empty());
        assert!(faults.apply("surge").unwrap_err().contains("needs a device or group"));
        assert!(faults.apply("explode sim-1").unwrap_err().contains("use silent"));
    }

    #[test]
    fn a_share_of_sleepy_devices_above_zero_means_at_least_one() {
        let remote = Remote { server: "http://127.0.0.1:1".into(), token: None };
        let args = |sleepy| SimulateArgs {
            devices: 3,
            prefix: "sim".into(),
            groups: 1,
            mqtt: String::new(),
            interval: Duration::from_secs(5),
            sleepy,
            flaky: 0.0,
            command_failures: 0.0,
            silent: Vec::new(),
            flap: Vec::new(),
            surge: Vec::new(),
            malformed: Vec::new(),
            duration: None,
            cert_days: None,
            seed: 1,
            remote: remote.clone(),
        };
        let sleepy = |share| fleet(&args(share)).iter().filter(|p| p.sleepy).map(|p| p.id.clone()).collect::<Vec<_>>();
        assert_eq!(sleepy(1e-9), vec!["sim-2".to_string()]);
        assert!(sleepy(0.0).is_empty());
        assert_eq!(sleepy(1.0).len(), 3);
    }
}
