//! Metrics derived from what the gateway records: a message dropped for an
//! offline subscriber is counted by reason, group and topic template; a
//! hostile flood of topics leaves the series, `/metrics` and `metrics.db`
//! bounded.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use glassbox_gateway::client::{self, Options};
use glassbox_gateway::codec::{Packet, Properties, Protocol, Publish, QoS};
use serde_json::{Value, json};

use common::{Server, start_with};
use glassbox_server::config::AclRule;
use reqwest::Method;

const TOKEN: &str = "gbx_metrics_test_token_01";

#[tokio::test]
async fn drops_are_counted_by_reason_group_and_topic() {
    let server = start_with(TOKEN, |_| {}).await;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/api/v1/devices", server.http))
        .bearer_auth(TOKEN)
        .json(&json!({"id": "t-1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    http.patch(format!("{}/api/v1/devices/t-1", server.http))
        .bearer_auth(TOKEN)
        .json(&json!({"group": "greenhouse"}))
        .send()
        .await
        .unwrap();

    // A persistent subscriber that goes away: QoS 0 messages for it are dropped as `offline`.
    let subscriber = Options {
        username: Some("operator".into()),
        password: Some(TOKEN.into()),
        protocol: Protocol::V5,
        clean_start: false,
        properties: Properties { session_expiry_interval: Some(3600), ..Properties::default() },
        ..Options::new("dashboard")
    };
    let (reader, mut writer) = common::subscribed(&server.mqtt, &subscriber, "devices/#", QoS::AtMostOnce).await;
    writer
        .send(&Packet::Disconnect(glassbox_gateway::codec::Disconnect { reason: 0, properties: Properties::default() }))
        .await
        .unwrap();
    writer.flush().await.unwrap();
    drop((reader, writer));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let device = Options {
        username: Some("t-1".into()),
        password: Some(created["secret"].as_str().unwrap().into()),
        ..Options::new("t-1")
    };
    let (_reader, mut writer, _) = client::connect(&server.mqtt, &device).await.unwrap();
    let reading = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "devices/t-1/telemetry".into(),
        packet_id: None,
        properties: Properties::default(),
        payload: Bytes::from_static(b"{\"celsius\":20}"),
    };
    writer.send(&Packet::Publish(reading)).await.unwrap();
    writer.flush().await.unwrap();

    let mut series = Value::Null;
    for _ in 0..100 {
        let url = format!("{}/api/v1/metrics/drops?since=5m&by=reason,group,topic", server.http);
        let answer: Value = http.get(url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
        series = answer["series"].clone();
        if series.as_array().is_some_and(|s| !s.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        series[0]["labels"],
        json!({"reason": "offline", "group": "greenhouse", "topic": "devices/+/telemetry"}),
        "{series}"
    );
    let metrics = server.request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let line = r#"glassbox_drops_total{reason="offline",group="greenhouse",topic="devices/+/telemetry"} 1"#;
    assert!(metrics.contains(line), "{metrics}");
}

/// Topics in the flood, each with its own first level of [`FLOOD_LEVEL_BYTES`].
const FLOOD_TOPICS: usize = 2_000;
const FLOOD_LEVEL_BYTES: usize = 30_000;
/// The bounds the flood must stay within (docs/observability.md): it makes
/// a handful of series (one per topic template and group, per metric), so
/// tens of series, a scrape of a few KiB and a `metrics.db` of a few
/// hundred KiB. Today's raw first level made 4,000 series of 30 KB keys.
const SERIES_BOUND: u64 = 100;
const SCRAPE_BYTES_BOUND: usize = 256 * 1024;
const METRICS_DB_BYTES_BOUND: u64 = 4 * 1024 * 1024;

// Issue 16, finding 3: one device publishing 2,000 topics with 30 KB first
// levels inflated the series (and RSS), `metrics.db` and `/metrics` without
// limit, and near the series cap real series were refused.
#[tokio::test]
async fn a_hostile_topic_flood_leaves_series_scrape_and_metrics_db_bounded() {
    let mut data_dir = PathBuf::new();
    let mut server = start_with(TOKEN, |config| {
        data_dir = config.data_dir.clone();
        config.mqtt.publish_rate_max = 0; // Every message of the flood is accepted.
        config.mqtt.acl.push(AclRule { access: "publish".into(), filter: "#".into() });
    })
    .await;
    let secret = register(&server, "t-1", "greenhouse").await;
    let device = Options { username: Some("t-1".into()), password: Some(secret), ..Options::new("t-1") };
    let (mut reader, mut writer, _) = client::connect(&server.mqtt, &device).await.unwrap();
    for i in 0..FLOOD_TOPICS {
        let topic = format!("{}{i:05}/x", "a".repeat(FLOOD_LEVEL_BYTES - 5));
        writer.send(&at_most_once(&topic, b"{\"n\":1}")).await.unwrap();
        if i % 100 == 99 {
            writer.flush().await.unwrap();
        }
    }
    // A real series made after the flood; its PUBACK means the flood is recorded.
    writer.send(&common::publish("devices/t-1/telemetry", &b"{\"celsius\":20}"[..], 1)).await.unwrap();
    writer.flush().await.unwrap();
    while !matches!(reader.next().await.unwrap(), Packet::PubAck(_)) {}
    let all = (FLOOD_TOPICS + 1) as f64;
    server
        .eventually("/api/v1/metrics/mqtt_messages?since=5m", |answer| {
            let total: f64 = answer["series"][0]["points"].as_array()?.iter().filter_map(|p| p["value"].as_f64()).sum();
            (total == all).then_some(Value::Null)
        })
        .await;

    let scrape = server.request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(scrape.len() <= SCRAPE_BYTES_BOUND, "/metrics is {} bytes", scrape.len());
    let series: u64 = gauge(&scrape, "glassbox_metric_series").parse().unwrap();
    assert!(series <= SERIES_BOUND, "{series} series");
    let real = r#"glassbox_mqtt_messages_total{group="greenhouse",topic="devices/+/telemetry"} 1"#;
    assert!(scrape.lines().any(|l| l == real), "{scrape}");
    let flood = format!(r#"glassbox_mqtt_messages_total{{group="greenhouse",topic="other"}} {FLOOD_TOPICS}"#);
    assert!(scrape.lines().any(|l| l == flood), "{scrape}");

    server.running.take().unwrap().stop().await.unwrap(); // Writes every open bucket.
    let db = file_bytes(&data_dir, "metrics.db") + file_bytes(&data_dir, "metrics.db-wal");
    assert!(db <= METRICS_DB_BYTES_BOUND, "metrics.db and its WAL hold {db} bytes");
}

/// Registers a device in `group`; its secret.
async fn register(server: &Server, id: &str, group: &str) -> String {
    let (_, created) = server.call(Method::POST, "/api/v1/devices", Some(json!({"id": id}).to_string().into())).await;
    let patch = json!({"group": group}).to_string().into();
    server.call(Method::PATCH, &format!("/api/v1/devices/{id}"), Some(patch)).await;
    created["secret"].as_str().unwrap().to_string()
}

fn at_most_once(topic: &str, payload: &'static [u8]) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: topic.into(),
        packet_id: None,
        properties: Properties::default(),
        payload: Bytes::from_static(payload),
    })
}

/// The value of an unlabelled gauge in a Prometheus scrape.
fn gauge<'a>(scrape: &'a str, name: &str) -> &'a str {
    let line = scrape.lines().find(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ')));
    line.and_then(|l| l.split(' ').nth(1)).unwrap_or_else(|| panic!("no {name} in /metrics"))
}

fn file_bytes(dir: &Path, name: &str) -> u64 {
    std::fs::metadata(dir.join(name)).map_or(0, |m| m.len())
}
