//! Metrics derived from what the gateway records: a message dropped for an
//! offline subscriber is counted by reason, group and topic.

mod common;

use std::time::Duration;

use bytes::Bytes;
use glassbox_gateway::client::{self, Options};
use glassbox_gateway::codec::{Packet, Properties, Protocol, Publish, QoS};
use serde_json::{Value, json};

use common::start_with;

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
        json!({"reason": "offline", "group": "greenhouse", "topic": "devices"}),
        "{series}"
    );
    let metrics = server.request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let line = r#"glassbox_drops_total{reason="offline",group="greenhouse",topic="devices"} 1"#;
    assert!(metrics.contains(line), "{metrics}");
}
