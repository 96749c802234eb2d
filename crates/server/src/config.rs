//! `glassbox.toml` plus `GLASSBOX_*` environment overrides, validated once
//! into [`Config`]. Every key has a default, so `glassbox serve` needs no file.
//!
//! Each key maps to an environment variable named after its path:
//! `recorder.retention` is `GLASSBOX_RECORDER_RETENTION`, `data_dir` is
//! `GLASSBOX_DATA_DIR`. Precedence: defaults < file < environment < flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
pub use glassbox_control::{AuditConfig, CaConfig, ControlConfig};
use glassbox_gateway::acl::{Access, Acl, Rule};
use glassbox_gateway::broker::{BrokerSettings, QueueBounds, QueuePolicy};
use glassbox_gateway::flapping::FlapSettings;
pub use glassbox_series::MetricsConfig;
pub use glassbox_telemetry::otlp::OtelConfig;
pub use glassbox_watch::WatchSettings;
use serde::{Deserialize, Serialize};

mod layers;
pub use layers::{Entry, FlagValue, Layered, Source, env_var};

/// A complete, commented configuration file holding every default:
/// what `glassbox config example` prints (a test keeps it equal to the code).
pub const EXAMPLE: &str = include_str!("config/example.toml");

/// The whole server configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the recorder keeps its files. Default `./glassbox-data`.
    pub data_dir: PathBuf,
    /// This node's name, recorded with every state. Default: the host name.
    pub node: String,
    /// How long a stop (SIGTERM, Ctrl-C) may take to drain: MQTT
    /// connections stop reading and get the PUBACKs of what was recorded,
    /// then DISCONNECT `server_shutdown`; what is still open after it is
    /// closed at once. `0s`: close at once. Default `10s`.
    #[serde(with = "glassbox_core::human_duration")]
    pub shutdown_grace: Duration,
    pub http: HttpConfig,
    pub mqtt: MqttConfig,
    pub recorder: RecorderConfig,
    pub control: ControlConfig,
    /// `[ca]`: the built-in certificate authority and device certificates.
    pub ca: CaConfig,
    /// `[audit]`: when the audit log's checkpoints are signed, and where copies go.
    pub audit: AuditConfig,
    pub metrics: MetricsConfig,
    pub diagnose: WatchSettings,
    pub otel: OtelConfig,
    /// `[cost]`: the price model for function invocations.
    pub cost: glassbox_functions::Prices,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the HTTP API. Default `127.0.0.1:7070`.
    pub listen: String,
    /// Largest request body accepted by ingest, in bytes. Default 262144 (256 KiB).
    pub body_bytes_max: usize,
    /// How long ingest waits for the recorder before answering 503. Default `10s`.
    #[serde(with = "glassbox_core::human_duration")]
    pub append_timeout: Duration,
    /// A request's head (line and headers) must arrive within this, and an
    /// idle keep-alive connection's next one too; else the connection is
    /// closed. Default `30s`.
    #[serde(with = "glassbox_core::human_duration")]
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this of its head; else the
    /// request fails (408, or 400 from the API) and the connection is closed.
    /// Default `60s` (a 128 MiB component deploy needs about 2 MiB/s).
    #[serde(with = "glassbox_core::human_duration")]
    pub body_read_timeout: Duration,
    /// Connections served at once; one more is answered 503 (`server_busy`)
    /// and closed at once. Default 1024.
    pub connections_max: usize,
    /// Requests per second one client (peer address; an IPv6 /64) may send,
    /// in bursts of up to one second's worth; more are answered 429 with
    /// `retry-after`. 0: no limit. Default 1000.
    pub client_requests_per_second: u32,
    /// Requests per second one public function route (`http:` trigger) takes
    /// from all clients together; more are answered 429 with `retry-after`
    /// and not recorded. 0: no limit. Default 1000.
    pub route_requests_per_second: u32,
    /// Address of the API over TLS (HTTPS), e.g. `127.0.0.1:7443`; "" (the
    /// default): no HTTPS listener. Its certificate: `https_cert`, else
    /// `mqtt.tls_cert`, else one the built-in CA issues at each start for
    /// localhost, 127.0.0.1 and `mqtt.tls_names` (written under `tls/`).
    pub https_listen: String,
    /// PEM certificate chain (leaf first) for HTTPS. Default "".
    pub https_cert: String,
    /// PEM private key of `https_cert`. Default "".
    pub https_key: String,
    /// Address of a listener serving only the public function routes
    /// (`http:` triggers), e.g. `0.0.0.0:8080`; when set, the API listeners
    /// stop serving them, so the admin API need not face the internet.
    /// Default "" (function routes are served on the API listeners).
    pub public_listen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Address of the MQTT listener. Default `127.0.0.1:1883`.
    pub listen: String,
    /// Address of the MQTT-over-TLS listener, used when `tls` is true or
    /// `tls_cert` and `tls_key` are set. Default `127.0.0.1:8883`.
    pub tls_listen: String,
    /// Serve MQTT over TLS on `tls_listen` even without `tls_cert`: with a
    /// server certificate from the built-in CA (`--mqtts` sets it). Default false.
    pub tls: bool,
    /// Names the built-in CA's server certificate holds besides `localhost`
    /// and `127.0.0.1` (DNS names or IP addresses devices connect to). Default none.
    pub tls_names: Vec<String>,
    /// PEM certificate chain (leaf first) for MQTT over TLS. Default "" (no TLS).
    pub tls_cert: String,
    /// PEM private key of `tls_cert`. Default "".
    pub tls_key: String,
    /// Open mode: accept clients without credentials, on any topic but
    /// `deny_subscribe`. For conformance and interop suites. Default false.
    pub allow_anonymous: bool,
    /// Filters anonymous clients may not subscribe to (open mode). Default none.
    pub deny_subscribe: Vec<String>,
    /// Largest MQTT packet in bytes, from 1024 to 268435460 (MQTT's
    /// largest). Default 262144 (256 KiB).
    pub packet_bytes_max: usize,
    /// Connections open at once; more are refused (server busy). Default 20000.
    pub connections_max: usize,
    /// Messages a session's queue holds (while offline, or behind a slow
    /// subscriber); beyond it `queue_policy` drops one (queue_full). Default 1000.
    pub queue_messages_max: usize,
    /// Bytes (topic + payload) a session's queue holds. Default 8388608 (8 MiB).
    pub queue_bytes_max: usize,
    /// `drop_oldest` or `refuse_newest`. Default `drop_oldest`.
    pub queue_policy: QueuePolicy,
    /// Other queue bounds for client ids starting with `client_prefix`.
    pub queue_overrides: Vec<QueueOverride>,
    /// Unacknowledged QoS 1/2 messages per direction and connection. Default 256.
    pub inflight_max: u16,
    /// Topic aliases a 5.0 client may use towards the server. Default 64.
    pub topic_alias_max: u16,
    /// Longest keep-alive granted, in seconds; 0: no limit. Default 0.
    pub keep_alive_max: u16,
    /// Publishes per second one device may send; 0: no limit. Default 1000.
    /// Beyond it a PUBLISH is refused (0x96) and triggers nothing; one refusal
    /// per connection per 10 s is recorded, the others counted into it.
    pub publish_rate_max: u32,
    /// Longest a write to a client may make no progress (it stopped reading);
    /// then the connection ends with `write_timeout`. Default `30s`.
    #[serde(with = "glassbox_core::human_duration")]
    pub write_timeout: Duration,
    /// Longest session expiry granted (also for 3.1.1 persistent sessions). Default `7d`.
    #[serde(with = "glassbox_core::human_duration")]
    pub session_expiry_max: Duration,
    /// Connects within `flapping_window` that make a device flapping. Default 5.
    pub flapping_connects: usize,
    /// Default `1m`.
    #[serde(with = "glassbox_core::human_duration")]
    pub flapping_window: Duration,
    /// Refuse a flapping device's connects until it calms down. Default false.
    pub flapping_throttle: bool,
    /// Extra topic grants for devices; `%d` stands for the device id.
    pub acl: Vec<AclRule>,
    /// Connections that have not completed CONNECT yet; more are closed at
    /// accept (counted as `server_busy` refusals). Default 1000.
    pub pending_connects_max: usize,
    /// Refused CONNECTs make at most one `connection_refused` event per peer
    /// address per interval, with counts by reason. Default `10s`.
    #[serde(with = "glassbox_core::human_duration")]
    pub refusals_interval: Duration,
    /// Longest back-off after repeated failed logins (per peer address and
    /// per claimed id; doubling from 1 s); `0s` turns it off. Default `60s`.
    #[serde(with = "glassbox_core::human_duration")]
    pub login_backoff_max: Duration,
    /// Subscriptions one session may hold; more get 0x97 (5.0) / 0x80 (3.1.1). Default 1000.
    pub subscriptions_max: usize,
    /// Retained messages one client may set; beyond it the retain flag is not
    /// stored (the message is still delivered). Default 1000.
    pub retained_per_client_max: usize,
    /// Retained messages held in all. Default 100000.
    pub retained_max: usize,
}

/// `[[mqtt.queue_overrides]]`: bounds for some clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueOverride {
    pub client_prefix: String,
    pub messages: usize,
    pub bytes: usize,
    #[serde(default = "drop_oldest")]
    pub policy: QueuePolicy,
}

fn drop_oldest() -> QueuePolicy {
    QueuePolicy::DropOldest
}

/// `[[mqtt.acl]]`: e.g. `access = "subscribe"`, `filter = "fleet/broadcast/#"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    /// `publish`, `subscribe` or `both`.
    pub access: String,
    pub filter: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecorderConfig {
    /// Events older than this are deleted, a small batch at a time. `0s` keeps all. Default `7d`.
    #[serde(with = "glassbox_core::human_duration")]
    pub retention: Duration,
    /// A retry with the same `source` and producer `id` inside this window
    /// returns the first event. Default `10m`.
    #[serde(with = "glassbox_core::human_duration")]
    pub dedup_window: Duration,
    /// Most events per group commit. Default 8192.
    pub batch_events_max: usize,
    /// Most writes waiting for the recorder; ingest waits (then 503s) when full. Default 65536.
    pub queue_commands_max: usize,
    /// Largest store file in bytes; ingest answers 503 once reached. 0: no bound. Default 0.
    pub store_bytes_max: u64,
    /// Events buffered per live subscriber (consumers, tails); a slower one
    /// skips the oldest (consumers read them back). At least
    /// `batch_events_max`, since a commit is published at once. Default 16384.
    pub bus_capacity: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./glassbox-data"),
            node: host_name(),
            shutdown_grace: BrokerSettings::default().shutdown_grace,
            http: HttpConfig::default(),
            mqtt: MqttConfig::default(),
            recorder: RecorderConfig::default(),
            control: ControlConfig::default(),
            ca: CaConfig::default(),
            audit: AuditConfig::default(),
            metrics: MetricsConfig::default(),
            diagnose: WatchSettings::default(),
            otel: OtelConfig::default(),
            cost: glassbox_functions::Prices::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7070".into(),
            body_bytes_max: 256 * 1024,
            append_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            connections_max: 1024,
            client_requests_per_second: 1000,
            route_requests_per_second: 1000,
            https_listen: String::new(),
            https_cert: String::new(),
            https_key: String::new(),
            public_listen: String::new(),
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        let broker = glassbox_gateway::broker::BrokerSettings::default();
        Self {
            listen: "127.0.0.1:1883".into(),
            tls_listen: "127.0.0.1:8883".into(),
            tls: false,
            tls_names: Vec::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            allow_anonymous: broker.allow_anonymous,
            deny_subscribe: Vec::new(),
            packet_bytes_max: broker.packet_bytes_max,
            connections_max: broker.connections_max,
            queue_messages_max: broker.queue.messages,
            queue_bytes_max: broker.queue.bytes,
            queue_policy: broker.queue.policy,
            queue_overrides: Vec::new(),
            inflight_max: broker.inflight_max,
            topic_alias_max: broker.topic_alias_max,
            keep_alive_max: broker.keep_alive_max,
            publish_rate_max: broker.publish_rate_max,
            write_timeout: broker.write_timeout,
            session_expiry_max: Duration::from_secs(u64::from(broker.session_expiry_max)),
            flapping_connects: broker.flapping.connects,
            flapping_window: broker.flapping.window,
            flapping_throttle: broker.flapping_throttle,
            acl: Vec::new(),
            pending_connects_max: broker.pending_connects_max,
            refusals_interval: broker.refusals_interval,
            login_backoff_max: broker.login_backoff_max,
            subscriptions_max: broker.subscriptions_max,
            retained_per_client_max: broker.retained_per_client_max,
            retained_max: broker.retained_max,
        }
    }
}

impl Default for RecorderConfig {
    fn default() -> Self {
        let recorder = glassbox_store_sqlite::RecorderSettings::default();
        Self {
            retention: recorder.retention,
            dedup_window: recorder.dedup_window,
            batch_events_max: recorder.batch_events_max,
            queue_commands_max: recorder.queue_commands_max,
            store_bytes_max: recorder.store_bytes_max,
            bus_capacity: glassbox_bus::LocalBus::CAPACITY_DEFAULT,
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "local".into())
}

/// Keys whose values are secrets: wherever the configuration is recorded
/// (`config.changed`, the stored snapshot) only a digest or `[redacted]`.
pub const SECRET_KEYS: &[&str] = &["diagnose.webhook", "audit.webhook"];

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_FILE: &str = "glassbox.toml";

/// The smallest `mqtt.packet_bytes_max`: room for a CONNECT with credentials.
const PACKET_BYTES_MIN: usize = 1024;

impl Config {
    /// Loads defaults, then `file` (or `./glassbox.toml` if present), then
    /// `GLASSBOX_*` variables from `env`, and validates the result.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<Self> {
        Ok(Layered::load(file, env, &[])?.config)
    }

    /// Checks what serde cannot; reports every problem at once.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if self.mqtt.tls_cert.is_empty() != self.mqtt.tls_key.is_empty() {
            problems.push("mqtt.tls_cert and mqtt.tls_key go together: set both, or neither".into());
        }
        if self.ca.cert.is_empty() != self.ca.key.is_empty() {
            problems
                .push("ca.cert and ca.key go together: set both (your own CA), or neither (the built-in one)".into());
        }
        if !(1..=glassbox_pki::DEVICE_DAYS_MAX).contains(&self.ca.device_days) {
            problems.push(format!("ca.device_days must be between 1 and {}", glassbox_pki::DEVICE_DAYS_MAX));
        }
        for (key, price) in
            [("cost.per_request", self.cost.per_request), ("cost.per_gib_second", self.cost.per_gib_second)]
        {
            if !(price.is_finite() && price >= 0.0) {
                problems.push(format!("{key} = {price} is not a price: use a number of 0 or more"));
            }
        }
        let addresses = [
            ("http.listen", &self.http.listen),
            ("mqtt.listen", &self.mqtt.listen),
            ("mqtt.tls_listen", &self.mqtt.tls_listen),
        ];
        for (key, addr) in addresses {
            if addr.parse::<SocketAddr>().is_err() {
                problems.push(format!("{key} = {addr:?} is not an address like 127.0.0.1:7070"));
            }
        }
        if !(1..=64 * 1024 * 1024).contains(&self.http.body_bytes_max) {
            problems.push("http.body_bytes_max must be between 1 and 67108864".into());
        }
        if self.http.connections_max == 0
            || self.http.header_read_timeout.is_zero()
            || self.http.body_read_timeout.is_zero()
        {
            problems.push("http.connections_max, header_read_timeout and body_read_timeout must be above 0".into());
        }
        if self.recorder.batch_events_max == 0
            || self.recorder.queue_commands_max == 0
            || self.recorder.bus_capacity == 0
        {
            problems.push("recorder.batch_events_max, queue_commands_max and bus_capacity must be at least 1".into());
        }
        if self.recorder.bus_capacity < self.recorder.batch_events_max {
            // A commit is published at once: a smaller bus drops part of every
            // large commit for every consumer, which then reads it back.
            problems.push(format!(
                "recorder.bus_capacity ({}) must be at least recorder.batch_events_max ({}): one group commit is \
                 published to the bus at once",
                self.recorder.bus_capacity, self.recorder.batch_events_max
            ));
        }
        for rule in &self.mqtt.acl {
            if !["publish", "subscribe", "both"].contains(&rule.access.as_str()) {
                problems.push(format!("mqtt.acl access {:?} must be publish, subscribe or both", rule.access));
            }
            if glassbox_core::topic::parse_filter(&rule.filter.replace("%d", "x")).is_err() {
                problems.push(format!("mqtt.acl filter {:?} is not a valid topic filter", rule.filter));
            }
        }
        if !(PACKET_BYTES_MIN..=glassbox_gateway::codec::PACKET_BYTES_MAX).contains(&self.mqtt.packet_bytes_max) {
            problems.push(format!(
                "mqtt.packet_bytes_max ({}) must be from {PACKET_BYTES_MIN} to {} (the largest packet MQTT can carry)",
                self.mqtt.packet_bytes_max,
                glassbox_gateway::codec::PACKET_BYTES_MAX
            ));
        }
        if self.mqtt.queue_messages_max == 0 || self.mqtt.queue_bytes_max == 0 || self.mqtt.inflight_max == 0 {
            problems.push("mqtt.queue_messages_max, queue_bytes_max and inflight_max must be at least 1".into());
        }
        if self.mqtt.pending_connects_max == 0 || self.mqtt.refusals_interval.is_zero() {
            problems.push("mqtt.pending_connects_max and refusals_interval must be above 0".into());
        }
        if self.node.is_empty() {
            problems.push("node must not be empty".into());
        }
        problems.extend(self.metrics.problems());
        if !problems.is_empty() {
            bail!("invalid configuration:\n  - {}", problems.join("\n  - "));
        }
        Ok(())
    }

    pub fn broker_settings(&self) -> BrokerSettings {
        let m = &self.mqtt;
        BrokerSettings {
            packet_bytes_max: m.packet_bytes_max,
            connections_max: m.connections_max,
            queue: QueueBounds { messages: m.queue_messages_max, bytes: m.queue_bytes_max, policy: m.queue_policy },
            queue_overrides: m
                .queue_overrides
                .iter()
                .map(|o| {
                    let bounds = QueueBounds { messages: o.messages, bytes: o.bytes, policy: o.policy };
                    (o.client_prefix.clone(), bounds)
                })
                .collect(),
            inflight_max: m.inflight_max,
            topic_alias_max: m.topic_alias_max,
            keep_alive_max: m.keep_alive_max,
            publish_rate_max: m.publish_rate_max,
            session_expiry_max: m.session_expiry_max.as_secs().min(u64::from(u32::MAX)) as u32,
            flapping: FlapSettings { connects: m.flapping_connects, window: m.flapping_window },
            flapping_throttle: m.flapping_throttle,
            allow_anonymous: m.allow_anonymous,
            write_timeout: m.write_timeout,
            pending_connects_max: m.pending_connects_max,
            refusals_interval: m.refusals_interval,
            login_backoff_max: m.login_backoff_max,
            subscriptions_max: m.subscriptions_max,
            retained_per_client_max: m.retained_per_client_max,
            retained_max: m.retained_max,
            shutdown_grace: self.shutdown_grace,
            ..Default::default()
        }
    }

    /// The topic ACL: the built-in defaults plus `[[mqtt.acl]]` rules.
    pub fn acl(&self) -> Acl {
        let rules = self
            .mqtt
            .acl
            .iter()
            .filter_map(|r| {
                let access = match r.access.as_str() {
                    "publish" => Access::Publish,
                    "subscribe" => Access::Subscribe,
                    "both" => Access::Both,
                    _ => return None,
                };
                Some(Rule { access, filter: r.filter.clone() })
            })
            .collect();
        Acl::new(rules, self.mqtt.deny_subscribe.clone())
    }

    pub fn recorder_settings(&self) -> glassbox_store_sqlite::RecorderSettings {
        glassbox_store_sqlite::RecorderSettings {
            retention: self.recorder.retention,
            dedup_window: self.recorder.dedup_window,
            batch_events_max: self.recorder.batch_events_max,
            queue_commands_max: self.recorder.queue_commands_max,
            store_bytes_max: self.recorder.store_bytes_max,
            node: self.node.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// `glassbox config example` cannot drift from the code: the real
    /// loader reads it back as exactly the defaults, and it names every key.
    #[test]
    fn the_example_file_is_every_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("glassbox.toml");
        std::fs::write(&file, EXAMPLE).unwrap();
        let layered = Layered::load(Some(&file), [], &[]).unwrap();
        let from_example = toml::Table::try_from(&layered.config).unwrap();
        assert_eq!(from_example, toml::Table::try_from(Config::default()).unwrap());
        let missing: Vec<String> = layered
            .entries()
            .unwrap()
            .into_iter()
            .filter(|entry| entry.source == Source::Default && entry.key != "node")
            .map(|entry| entry.key)
            .collect();
        assert!(missing.is_empty(), "keys the example does not set: {missing:?}");
        assert!(EXAMPLE.contains("# node = "), "node is host-dependent: shown commented out");
    }

    #[test]
    fn defaults_need_no_file() {
        let config = Config::load(Some(Path::new("/nonexistent/glassbox.toml")), []);
        assert!(config.unwrap_err().to_string().contains("/nonexistent/glassbox.toml"));
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("glassbox.toml");
        std::fs::write(&empty, "").unwrap();
        let config = Config::load(Some(&empty), []).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("./glassbox-data"));
        assert_eq!(config.recorder.retention, Duration::from_secs(7 * 86400));
    }

    #[test]
    fn file_then_environment_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("g.toml");
        std::fs::write(&file, "data_dir = \"/srv/gb\"\n[recorder]\nretention = \"1d\"\nbatch_events_max = 100\n")
            .unwrap();
        let config = Config::load(
            Some(&file),
            env(&[("GLASSBOX_RECORDER_BATCH_EVENTS_MAX", "50"), ("GLASSBOX_HTTP_LISTEN", "0.0.0.0:80")]),
        )
        .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/srv/gb"));
        assert_eq!(config.recorder.retention, Duration::from_secs(86400));
        assert_eq!(config.recorder.batch_events_max, 50);
        assert_eq!(config.http.listen, "0.0.0.0:80");
    }

    #[test]
    fn a_packet_bound_mqtt_cannot_carry_is_refused() {
        let huge = Config::load(None, env(&[("GLASSBOX_MQTT_PACKET_BYTES_MAX", "4294967296")]));
        let message = huge.unwrap_err().to_string();
        assert!(message.contains("mqtt.packet_bytes_max (4294967296) must be from 1024 to 268435460"), "{message}");
        assert!(Config::load(None, env(&[("GLASSBOX_MQTT_PACKET_BYTES_MAX", "12")])).is_err());
        assert!(Config::load(None, env(&[("GLASSBOX_MQTT_PACKET_BYTES_MAX", "268435460")])).is_ok());
    }

    #[test]
    fn a_bus_smaller_than_a_group_commit_is_refused() {
        let small = Config::load(None, env(&[("GLASSBOX_RECORDER_BUS_CAPACITY", "4096")]));
        let message = small.unwrap_err().to_string();
        assert!(message.contains("recorder.bus_capacity (4096) must be at least recorder.batch_events_max (8192)"));
        let both = env(&[("GLASSBOX_RECORDER_BUS_CAPACITY", "4096"), ("GLASSBOX_RECORDER_BATCH_EVENTS_MAX", "4096")]);
        assert!(Config::load(None, both).is_ok());
    }

    #[test]
    fn shutdown_grace_is_a_top_level_duration_the_broker_gets() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("g.toml");
        std::fs::write(&file, "shutdown_grace = \"30s\"\n").unwrap();
        let config = Config::load(Some(&file), []).unwrap();
        assert_eq!(config.shutdown_grace, Duration::from_secs(30));
        let config = Config::load(Some(&file), env(&[("GLASSBOX_SHUTDOWN_GRACE", "2s")])).unwrap();
        assert_eq!(config.broker_settings().shutdown_grace, Duration::from_secs(2));
        std::fs::write(&file, "").unwrap();
        assert_eq!(Config::load(Some(&file), []).unwrap().shutdown_grace, Duration::from_secs(10));
    }

    #[test]
    fn bad_config_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("g.toml");
        std::fs::write(&file, "[recorder]\nretension = \"1d\"\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&file), []).unwrap_err());
        assert!(err.contains("retension"), "{err}");

        std::fs::write(&file, "[recorder]\nretention = \"forever\"\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&file), []).unwrap_err());
        assert!(err.contains("\"forever\" is not a duration"), "{err}");

        std::fs::write(&file, "").unwrap();
        let err = format!(
            "{:#}",
            Config::load(
                Some(&file),
                env(&[("GLASSBOX_HTTP_LISTEN", "nowhere"), ("GLASSBOX_HTTP_BODY_BYTES_MAX", "0")])
            )
            .unwrap_err()
        );
        assert!(err.contains("http.listen") && err.contains("http.body_bytes_max"), "{err}");
        let err = format!(
            "{:#}",
            Config::load(Some(&file), env(&[("GLASSBOX_RECORDER_BATCH_EVENTS_MAX", "lots")])).unwrap_err()
        );
        assert!(err.contains("GLASSBOX_RECORDER_BATCH_EVENTS_MAX"), "{err}");
    }

    #[test]
    fn metric_topic_templates_and_series_cap_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("g.toml");
        std::fs::write(&file, "[metrics]\ntopics = [\"a/#/b\", \"devices/+/telemetry\"]\nseries_per_metric_max = 0\n")
            .unwrap();
        let err = format!("{:#}", Config::load(Some(&file), []).unwrap_err());
        assert!(err.contains("metrics.topics \"a/#/b\"") && err.contains("metrics.series_per_metric_max"), "{err}");
        std::fs::write(&file, "[metrics]\ntopics = [\"fleet/+/t\"]\n").unwrap();
        let settings = Config::load(Some(&file), []).unwrap().metrics.series_settings();
        assert_eq!(settings.topics.label("fleet/a/t"), "fleet/+/t");
        assert_eq!(settings.series_per_metric_max, 2000);
    }
}
