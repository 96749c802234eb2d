//! Device shadows over MQTT and HTTP, with a real device client over TCP
//! against the whole server.

use std::time::Duration;

use bytes::Bytes;
use glassbox_gateway::client::{self, Options, Reader, Writer};
use glassbox_gateway::codec::{Ack, Packet, Properties, Protocol, Publish, QoS, Subscribe, SubscriptionOptions};
use glassbox_server::{Config, Running};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TOKEN: &str = "gbx_control_test_token_01";

struct Server {
    running: Option<Running>,
    http: String,
    mqtt: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config { data_dir: dir.path().join("data"), ..Config::default() };
    config.http.listen = "127.0.0.1:0".into();
    config.mqtt.listen = "127.0.0.1:0".into();
    let running = glassbox_server::start(config, Some(TOKEN)).await.unwrap();
    Server {
        http: format!("http://{}", running.http_addr),
        mqtt: running.mqtt_addr.to_string(),
        running: Some(running),
        _dir: dir,
    }
}

impl Server {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.http)).bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }

    async fn device(&self, id: &str) -> String {
        let (status, body) = self.call(reqwest::Method::POST, "/api/v1/devices", Some(json!({ "id": id }))).await;
        assert_eq!(status, StatusCode::CREATED);
        body["secret"].as_str().unwrap().to_string()
    }

    async fn desired(&self, id: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, &format!("/api/v1/devices/{id}/shadow"), Some(body)).await
    }

    async fn shadow(&self, id: &str) -> Value {
        self.call(reqwest::Method::GET, &format!("/api/v1/devices/{id}/shadow"), None).await.1
    }

    async fn connect(&self, id: &str, secret: &str) -> Device {
        let options = Options {
            username: Some(id.into()),
            password: Some(secret.into()),
            protocol: Protocol::V5,
            ..Options::new(id)
        };
        let (reader, writer, _) = client::connect(&self.mqtt, &options).await.unwrap();
        Device { id: id.into(), reader, writer }
    }
}

struct Device {
    id: String,
    reader: Reader,
    writer: Writer,
}

impl Device {
    async fn send(&mut self, packet: Packet) {
        self.writer.send(&packet).await.unwrap();
        self.writer.flush().await.unwrap();
    }

    async fn subscribe(&mut self, suffix: &str) {
        let filter = format!("$glassbox/devices/{}/{suffix}", self.id);
        let filters = vec![(filter, SubscriptionOptions::qos(QoS::AtLeastOnce))];
        self.send(Packet::Subscribe(Subscribe { packet_id: 1, properties: Properties::default(), filters })).await;
    }

    async fn publish(&mut self, suffix: &str, body: &str) {
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: format!("$glassbox/devices/{}/{suffix}", self.id),
            packet_id: Some(9),
            properties: Properties::default(),
            payload: Bytes::from(body.to_string()),
        };
        self.send(Packet::Publish(publish)).await;
    }

    /// The next message the platform sends (acknowledged), as topic suffix and JSON.
    async fn next_message(&mut self) -> (String, Value) {
        loop {
            let packet = tokio::time::timeout(Duration::from_secs(5), self.reader.next()).await.unwrap().unwrap();
            if let Packet::Publish(p) = packet {
                if let Some(id) = p.packet_id {
                    self.send(Packet::PubAck(Ack::new(id))).await;
                }
                let suffix = p.topic.strip_prefix(&format!("$glassbox/devices/{}/", self.id)).unwrap().to_string();
                if suffix == "shadow/update" {
                    continue; // Its own request, echoed by a `shadow/#` subscription.
                }
                return (suffix, serde_json::from_slice(&p.payload).unwrap());
            }
        }
    }
}

#[tokio::test]
async fn desired_state_set_while_offline_reaches_the_device_and_reported_state_clears_the_delta() {
    let server = start().await;
    let secret = server.device("thermo-1").await;
    let (status, shadow) =
        server.desired("thermo-1", json!({"state": {"desired": {"mode": "eco", "fan": {"speed": 2}}}})).await;
    assert_eq!(status, StatusCode::OK, "{shadow}");
    assert_eq!(shadow["version"], 1);
    assert_eq!(shadow["delta"], json!({"mode": "eco", "fan": {"speed": 2}}));

    // The device comes online and subscribes to its shadow topics: the delta arrives.
    let mut device = server.connect("thermo-1", &secret).await;
    device.subscribe("shadow/#").await;
    let (topic, delta) = device.next_message().await;
    assert_eq!(topic, "shadow/delta");
    assert_eq!(delta["state"], json!({"mode": "eco", "fan": {"speed": 2}}));
    assert_eq!(delta["version"], 1);

    // It applies it and reports; the update is accepted and the delta is gone.
    device
        .publish(
            "shadow/update",
            r#"{"state": {"reported": {"mode": "eco", "fan": {"speed": 2}}}, "clientToken": "t1"}"#,
        )
        .await;
    let (topic, accepted) = device.next_message().await;
    assert_eq!(topic, "shadow/update/accepted");
    assert_eq!((accepted["version"].clone(), accepted["clientToken"].clone()), (json!(2), json!("t1")));
    let shadow = server.shadow("thermo-1").await;
    assert_eq!(shadow["delta"], json!({}));
    assert_eq!(shadow["reported"]["fan"]["speed"], 2);
    assert!(shadow["metadata"]["reported"]["fan"]["speed"]["timestamp"].is_string());

    // A desired change while it is connected is pushed at once.
    server.desired("thermo-1", json!({"state": {"desired": {"mode": "boost"}}})).await;
    let (topic, delta) = device.next_message().await;
    assert_eq!((topic.as_str(), delta["state"].clone()), ("shadow/delta", json!({"mode": "boost"})));

    // The change is traceable: the delta event is caused by the update event.
    let (_, page) =
        server.call(reqwest::Method::GET, "/api/v1/events?type=device.shadow.delta&device=thermo-1", None).await;
    let newest = &page["events"][0];
    let (_, chain) =
        server.call(reqwest::Method::GET, &format!("/api/v1/trace/{}", newest["id"].as_str().unwrap()), None).await;
    let types: Vec<&str> = chain["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["device.shadow.updated", "device.shadow.delta"], "{chain}");
    server.running.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn bad_shadow_updates_are_refused_with_a_reason_over_mqtt_and_http() {
    let server = start().await;
    let secret = server.device("valve-1").await;
    let mut device = server.connect("valve-1", &secret).await;
    device.subscribe("shadow/update/rejected").await;
    device.publish("shadow/update", r#"{"state": {"reported": [1, 2]}}"#).await;
    let (_, rejected) = device.next_message().await;
    assert_eq!(rejected["code"], 400);
    assert!(rejected["message"].as_str().unwrap().contains("must be a JSON object"), "{rejected}");
    device.publish("shadow/update", r#"{"state": {"reported": {"open": true}}, "version": 7}"#).await;
    let (_, rejected) = device.next_message().await;
    assert_eq!(rejected["code"], 409, "{rejected}");

    let (status, body) = server.desired("valve-1", json!({"state": {"desired": {"open": true}}, "version": 3})).await;
    assert_eq!((status, body["error"]["code"].clone()), (StatusCode::CONFLICT, json!("version_conflict")), "{body}");
    let (status, _) = server.desired("valve-1", json!({"state": {"desired": {"blob": "x".repeat(10_000)}}})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = server.desired("valve-1", json!({"state": {"desired": "open"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server.desired("nobody", json!({"state": {"desired": {"a": 1}}})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(server.shadow("valve-1").await["version"], 0, "nothing changed");
    server.running.unwrap().stop().await.unwrap();
}
