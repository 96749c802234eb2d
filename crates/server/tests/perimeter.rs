//! The MQTT perimeter (issue 16): what a refused message, a cut-off device
//! and a hostile client can no longer do. Each test names the finding it
//! pins; each failed on the code before the fix.

mod common;

use std::time::Duration;

use bytes::Bytes;
use glassbox_gateway::client::{self, ClientError, Options, Reader, Writer};
use glassbox_gateway::codec::{Packet, Properties, Protocol, Publish, QoS, Will};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{Server, fixture, publish, start_with, subscribed};

const TOKEN: &str = "gbx_perimeter_test_token";

/// Long enough for anything that should happen at once on a loaded machine;
/// the tests wait for what they expect, never assert how long it took.
const PATIENCE: Duration = Duration::from_secs(10);

impl Server {
    async fn device(&self, id: &str) -> Options {
        let body = json!({ "id": id }).to_string().into_bytes();
        let (status, device) = self.call(Method::POST, "/api/v1/devices", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{device}");
        device_options(id, device["secret"].as_str().unwrap())
    }

    async fn deploy_echo(&self, trigger: &str) {
        let path = format!("/api/v1/functions/echo?trigger={}", trigger.replace('+', "%2B"));
        let (status, body) = self.call(Method::POST, &path, Some(fixture("echo"))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// Waits until the function has handled the event `id`; all its invocations then.
    async fn invoked_on(&self, id: &str) -> Vec<Value> {
        self.eventually("/api/v1/functions/echo/invocations?limit=1000", |body| {
            let all = body["invocations"].as_array()?;
            all.iter().any(|i| i["event_id"] == id).then(|| json!(all))
        })
        .await
        .as_array()
        .cloned()
        .unwrap()
    }

    async fn events(&self, query: &str) -> Vec<Value> {
        let (_, page) = self.call(Method::GET, &format!("/api/v1/events?limit=1000&{query}"), None).await;
        page["events"].as_array().cloned().unwrap_or_default()
    }

    async fn connected(&self, client_id: &str) -> bool {
        let (_, session) = self.call(Method::GET, &format!("/api/v1/mqtt/sessions/{client_id}"), None).await;
        session["connected"].as_bool().unwrap_or(false)
    }

    /// Waits until `client_id` has no connection.
    async fn disconnected(&self, client_id: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.connected(client_id).await {
            assert!(tokio::time::Instant::now() < deadline, "{client_id} is still connected");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn device_options(id: &str, secret: &str) -> Options {
    Options { username: Some(id.into()), password: Some(secret.into()), protocol: Protocol::V5, ..Options::new(id) }
}

/// Sends a QoS 1 PUBLISH and reads its PUBACK's reason code.
async fn publish_acked(reader: &mut Reader, writer: &mut Writer, topic: &str, payload: &str, id: u16) -> u8 {
    writer.send(&publish(topic, payload.to_string(), id)).await.unwrap();
    writer.flush().await.unwrap();
    match reader.next().await.unwrap() {
        Packet::PubAck(ack) => ack.reason,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

/// The id of the newest `device.message` on `topic`.
async fn message_on(server: &Server, topic: &str) -> String {
    server
        .eventually("/api/v1/events?type=device.message&limit=1000", |page| {
            let events = page["events"].as_array()?;
            events.iter().find(|e| e["subject"] == topic).map(|e| e["id"].clone())
        })
        .await
        .as_str()
        .unwrap()
        .to_string()
}

/// Reads until the server ends the connection: a DISCONNECT's reason code,
/// or None for a close without one. Panics if it stays open.
async fn cut_off(reader: &mut Reader) -> Option<u8> {
    let read_all = async {
        loop {
            match reader.next().await {
                Ok(Packet::Disconnect(d)) => return Some(d.reason),
                Ok(_) => continue,
                Err(ClientError::Io(_) | ClientError::Closed) => return None,
                Err(e) => panic!("unexpected client error: {e}"),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read_all).await.expect("the server did not end the connection")
}

#[tokio::test]
async fn finding_1_a_publish_the_acl_refuses_is_recorded_as_refused_and_runs_no_function() {
    let server = start_with(TOKEN, |_| {}).await;
    server.deploy_echo("mqtt:devices/+/telemetry").await;
    let a = server.device("dev-a").await;
    server.device("dev-b").await;
    let (mut reader, mut writer, _) = client::connect(&server.mqtt, &a).await.unwrap();

    let refused = publish_acked(&mut reader, &mut writer, "devices/dev-b/telemetry", r#"{"spoofed":1}"#, 1).await;
    assert_eq!(refused, 0x87, "not authorized");
    let accepted = publish_acked(&mut reader, &mut writer, "devices/dev-a/telemetry", r#"{"own":1}"#, 2).await;
    assert_eq!(accepted, 0);

    // The function runs on the accepted message only (it would have run on
    // the refused one first: one queue, in order).
    let own = message_on(&server, "devices/dev-a/telemetry").await;
    let invocations = server.invoked_on(&own).await;
    assert_eq!(invocations.len(), 1, "{invocations:#?}");

    // The refusal is on the record, with its reason, without the payload, and is no device message.
    let messages = server.events("type=device.message").await;
    assert!(messages.iter().all(|e| e["subject"] != "devices/dev-b/telemetry"), "{messages:#?}");
    let refusals = server.events("type=mqtt.publish_refused").await;
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
    let refusal = &refusals[0];
    assert_eq!(
        (refusal["device"].clone(), refusal["subject"].clone()),
        (json!("dev-a"), json!("devices/dev-b/telemetry"))
    );
    assert_eq!(refusal["data"]["reason"], "acl_denied");
    assert_eq!(refusal["data"]["bytes"], 13);
    assert!(!refusal.to_string().contains("spoofed"), "the payload is not kept: {refusal}");
    let (_, whole) =
        server.call(Method::GET, &format!("/api/v1/events/{}", refusal["id"].as_str().unwrap()), None).await;
    let states: Vec<_> = whole["states"].as_array().unwrap().iter().map(|s| s["state"].clone()).collect();
    assert!(states.contains(&json!("dropped")), "{whole:#}");
}

#[tokio::test]
async fn finding_1_publishes_over_the_rate_limit_run_no_function_and_are_counted_not_stored() {
    let server = start_with(TOKEN, |c| c.mqtt.publish_rate_max = 5).await;
    server.deploy_echo("mqtt:devices/+/telemetry").await;
    let options = server.device("dev-r").await;
    let (mut reader, mut writer, _) = client::connect(&server.mqtt, &options).await.unwrap();

    // 40 at once: the burst (5) and what refills meanwhile pass, the rest is refused.
    for id in 1..=40u16 {
        writer.send(&publish("devices/dev-r/telemetry", format!(r#"{{"n":{id}}}"#), id)).await.unwrap();
    }
    writer.flush().await.unwrap();
    let mut accepted = 0;
    let mut refused = 0;
    while accepted + refused < 40 {
        match reader.next().await.unwrap() {
            Packet::PubAck(ack) if ack.reason == 0 => accepted += 1,
            Packet::PubAck(ack) if ack.reason == 0x96 => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(refused >= 20, "{accepted} accepted, {refused} refused");

    // After the rate refills, a last message: when it has run, so has every accepted one before it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(publish_acked(&mut reader, &mut writer, "devices/dev-r/telemetry", r#"{"last":1}"#, 41).await, 0);
    let messages = server.events("type=device.message").await;
    assert_eq!(messages.len(), accepted + 1, "only accepted messages are device messages");
    let last = messages.iter().find(|e| e["data"]["last"] == 1).unwrap()["id"].as_str().unwrap().to_string();
    let invocations = server.invoked_on(&last).await;
    assert_eq!(invocations.len(), accepted + 1, "the function ran on accepted messages only");

    // A flood is counted, not stored message by message: one refusal recorded
    // now, the rest counted into one more when the connection closes.
    assert_eq!(server.events("type=mqtt.publish_refused").await.len(), 1);
    drop((reader, writer));
    let refusals = server
        .eventually("/api/v1/events?type=mqtt.publish_refused", |page| {
            let events = page["events"].as_array()?;
            (events.len() == 2).then(|| page["events"].clone())
        })
        .await;
    let counted: u64 =
        refusals.as_array().unwrap().iter().map(|e| 1 + e["data"]["unrecorded"].as_u64().unwrap_or(0)).sum();
    assert_eq!(counted, refused as u64, "every refusal is accounted for: {refusals:#}");
}

#[tokio::test]
async fn finding_2_rotating_a_secret_ends_the_session_made_with_the_old_one() {
    let server = start_with(TOKEN, |_| {}).await;
    let options = server.device("dev-s").await;
    let (mut reader, mut writer, _) = client::connect(&server.mqtt, &options).await.unwrap();
    assert_eq!(publish_acked(&mut reader, &mut writer, "devices/dev-s/t", "1", 1).await, 0);

    let (status, rotated) = server.call(Method::POST, "/api/v1/devices/dev-s/secret", None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["disconnected"], true);
    assert_eq!(cut_off(&mut reader).await, Some(0x98), "administrative action");
    assert!(client::connect(&server.mqtt, &options).await.is_err(), "the old secret no longer works");
    let renewed = device_options("dev-s", rotated["secret"].as_str().unwrap());
    client::connect(&server.mqtt, &renewed).await.unwrap();
}

/// A device that subscribes, is sent far more than its socket holds, and
/// never reads: its writer is stuck in a write and its reader behind it.
async fn stuck_subscriber(server: &Server, id: &str) -> (Reader, Writer) {
    let options = server.device(id).await;
    let topic = format!("devices/{id}/inbox");
    let stuck = subscribed(&server.mqtt, &options, &topic, QoS::AtLeastOnce).await;
    let operator = Options {
        username: Some("operator".into()),
        password: Some(TOKEN.into()),
        protocol: Protocol::V5,
        ..Options::new("backend")
    };
    let (mut reader, mut writer, _) = client::connect(&server.mqtt, &operator).await.unwrap();
    let payload = Bytes::from(vec![b'x'; 200 * 1024]);
    for id in 1..=60u16 {
        let packet = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: topic.clone(),
            packet_id: Some(id),
            properties: Properties::default(),
            payload: payload.clone(),
        });
        writer.send(&packet).await.unwrap();
        writer.flush().await.unwrap();
        assert!(matches!(reader.next().await.unwrap(), Packet::PubAck(_)));
    }
    stuck
}

#[tokio::test]
async fn finding_2_disabling_a_device_that_stopped_reading_still_ends_its_connection() {
    let server = start_with(TOKEN, |_| {}).await;
    let (_reader, mut writer) = stuck_subscriber(&server, "dev-d").await;
    assert!(server.connected("dev-d").await);

    let (status, body) = server.call(Method::POST, "/api/v1/devices/dev-d/disable", None).await;
    assert_eq!((status, body["disconnected"].clone()), (StatusCode::OK, json!(true)), "{body}");
    server.disconnected("dev-d").await;

    // What it sends now goes nowhere: nothing more is recorded from it.
    let _ = writer.send(&publish("devices/dev-d/t", "after", 9)).await;
    let _ = writer.flush().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let disconnects = server.events("type=device.disconnected&device=dev-d").await;
    assert_eq!(disconnects[0]["data"]["reason"], "device_disabled", "{disconnects:#?}");
    assert!(server.events("type=device.message&device=dev-d").await.is_empty());
}

#[tokio::test]
async fn finding_2_a_client_that_stops_reading_is_cut_off_after_the_write_timeout() {
    let server = start_with(TOKEN, |c| c.mqtt.write_timeout = Duration::from_millis(500)).await;
    let (_reader, _writer) = stuck_subscriber(&server, "dev-w").await;
    server.disconnected("dev-w").await;
    let disconnects = server
        .eventually("/api/v1/events?type=device.disconnected&device=dev-w", |page| page["events"].get(0).cloned())
        .await;
    assert_eq!(disconnects["data"]["reason"], "write_timeout");
}

#[tokio::test]
async fn finding_2_deleting_a_device_that_stopped_reading_ends_its_connection_and_its_events() {
    let server = start_with(TOKEN, |_| {}).await;
    let (_reader, mut writer) = stuck_subscriber(&server, "dev-x").await;
    let (status, _) = server.call(Method::DELETE, "/api/v1/devices/dev-x", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    server.disconnected("dev-x").await;
    let _ = writer.send(&publish("devices/dev-x/t", "after", 9)).await;
    let _ = writer.flush().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.events("type=device.message&device=dev-x").await.is_empty());
}

#[tokio::test]
async fn finding_10_a_will_on_a_wildcard_topic_is_refused() {
    let server = start_with(TOKEN, |_| {}).await;
    let mut options = server.device("dev-v").await;
    options.will = Some(Will {
        topic: "devices/dev-v/+/#".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Properties::default(),
    });
    match client::connect(&server.mqtt, &options).await {
        Err(ClientError::Refused(code)) => assert_eq!(code, 0x90, "topic name invalid"),
        Err(e) => panic!("expected a refusal with 0x90, got {e}"),
        Ok(_) => panic!("a will on a wildcard topic was accepted"),
    }
    options.will.as_mut().unwrap().topic = "devices/dev-v/status".into();
    client::connect(&server.mqtt, &options).await.unwrap();
}

#[tokio::test]
async fn finding_10_in_open_mode_an_anonymous_client_cannot_take_a_registered_devices_id() {
    let server = start_with(TOKEN, |c| c.mqtt.allow_anonymous = true).await;
    let device = server.device("dev-o").await;
    let (_device_reader, _device_writer, _) = client::connect(&server.mqtt, &device).await.unwrap();

    let impostor = Options { protocol: Protocol::V5, ..Options::new("dev-o") };
    match client::connect(&server.mqtt, &impostor).await {
        Err(ClientError::Refused(code)) => assert_eq!(code, 0x86, "bad user name or password"),
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("an anonymous client took over a registered device's id"),
    }
    assert!(server.connected("dev-o").await, "the device keeps its session");
    let stranger = Options { protocol: Protocol::V5, ..Options::new("someone-else") };
    client::connect(&server.mqtt, &stranger).await.unwrap();
}
