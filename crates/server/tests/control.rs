//! Device shadows over MQTT and HTTP, with a real device client over TCP
//! against the whole server.

mod common;

use std::time::Duration;

use bytes::Bytes;
use glassbox_core::{
    CommandMessage, CommandStep, ShadowAccepted, ShadowDelta, ShadowRejected, UpdateRejected, payload_in,
};
use glassbox_gateway::client::{self, Options, Reader, Writer};
use glassbox_gateway::codec::{Ack, Packet, Properties, Protocol, Publish, QoS, Subscribe, SubscriptionOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{Server, start_with};

const TOKEN: &str = "gbx_control_test_token_01";

async fn start() -> Server {
    start_with(TOKEN, |_| {}).await
}

impl Server {
    async fn call_json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let request = self.request(method, path);
        common::answer(match body {
            Some(body) => request.json(&body),
            None => request,
        })
        .await
    }

    async fn device(&self, id: &str) -> String {
        let (status, body) = self.call_json(reqwest::Method::POST, "/api/v1/devices", Some(json!({ "id": id }))).await;
        assert_eq!(status, StatusCode::CREATED);
        body["secret"].as_str().unwrap().to_string()
    }

    async fn desired(&self, id: &str, body: Value) -> (StatusCode, Value) {
        self.call_json(reqwest::Method::POST, &format!("/api/v1/devices/{id}/shadow"), Some(body)).await
    }

    async fn shadow(&self, id: &str) -> Value {
        self.call_json(reqwest::Method::GET, &format!("/api/v1/devices/{id}/shadow"), None).await.1
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

/// The admin, by bearer token, from this test's own address.
fn assert_admin_from_here(principal: &Value) {
    assert_eq!(
        (principal["kind"].clone(), principal["name"].clone(), principal["auth"].clone()),
        (json!("admin"), json!("admin"), json!("bearer_token")),
        "{principal}"
    );
    assert!(principal["source"].as_str().is_some_and(|s| s.starts_with("127.0.0.1:")), "{principal}");
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
    let delta: ShadowDelta = serde_json::from_value(delta).unwrap();
    assert_eq!(Value::Object(delta.state), json!({"mode": "eco", "fan": {"speed": 2}}));
    assert_eq!(delta.version, 1);

    // It applies it and reports; the update is accepted and the delta is gone.
    device
        .publish(
            "shadow/update",
            r#"{"state": {"reported": {"mode": "eco", "fan": {"speed": 2}}}, "clientToken": "t1"}"#,
        )
        .await;
    let (topic, accepted) = device.next_message().await;
    assert_eq!(topic, "shadow/update/accepted");
    assert_eq!((accepted["version"].clone(), accepted["clientToken"].clone()), (json!(2), json!("t1")), "AWS keys");
    let ShadowAccepted::Update(accepted) = serde_json::from_value(accepted).unwrap() else { panic!("not an update") };
    assert_eq!((accepted.version, accepted.client_token.as_deref()), (2, Some("t1")));
    let shadow = server.shadow("thermo-1").await;
    assert_eq!(shadow["delta"], json!({}));
    assert_eq!(shadow["reported"]["fan"]["speed"], 2);
    // Each update names who made it: the operator over HTTP, then the device itself over MQTT.
    let (_, updates) =
        server.call_json(reqwest::Method::GET, "/api/v1/events?type=device.shadow.updated&device=thermo-1", None).await;
    let updates = updates["events"].as_array().unwrap();
    assert_eq!(updates.len(), 2, "{updates:?}");
    let (by_device, by_operator) = (&updates[0]["data"], &updates[1]["data"]);
    assert_eq!(by_device["actor"], "device");
    assert_eq!(
        (by_device["principal"]["kind"].clone(), by_device["principal"]["name"].clone()),
        (json!("device"), json!("thermo-1"))
    );
    assert_eq!(by_device["principal"]["auth"], "device_secret");
    assert!(by_device["principal"]["source"].as_str().is_some_and(|s| s.starts_with("127.0.0.1:")));
    assert_eq!(by_operator["actor"], "operator", "the words shadow records always used");
    assert_admin_from_here(&by_operator["principal"]);
    assert!(shadow["metadata"]["reported"]["fan"]["speed"]["timestamp"].is_string());

    // A desired change while it is connected is pushed at once.
    server.desired("thermo-1", json!({"state": {"desired": {"mode": "boost"}}})).await;
    let (topic, delta) = device.next_message().await;
    let delta: ShadowDelta = serde_json::from_value(delta).unwrap();
    assert_eq!((topic.as_str(), Value::Object(delta.state)), ("shadow/delta", json!({"mode": "boost"})));

    // The change is traceable: the delta event is caused by the update event.
    let (_, page) =
        server.call_json(reqwest::Method::GET, "/api/v1/events?type=device.shadow.delta&device=thermo-1", None).await;
    let newest = &page["events"][0];
    let (_, chain) = server
        .call_json(reqwest::Method::GET, &format!("/api/v1/trace/{}", newest["id"].as_str().unwrap()), None)
        .await;
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
    let rejected: ShadowRejected = serde_json::from_value(rejected).unwrap();
    assert_eq!(rejected.code(), 400);
    assert!(rejected.message().contains("must be a JSON object"), "{rejected:?}");
    device.publish("shadow/update", r#"{"state": {"reported": {"open": true}}, "version": 7}"#).await;
    let (_, rejected) = device.next_message().await;
    let rejected: ShadowRejected = serde_json::from_value(rejected).unwrap();
    assert!(matches!(&rejected, ShadowRejected::Update(UpdateRejected { code: 409, .. })), "{rejected:?}");

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

impl Server {
    async fn command(&self, device: &str, body: Value) -> (StatusCode, Value) {
        self.call_json(reqwest::Method::POST, &format!("/api/v1/devices/{device}/commands"), Some(body)).await
    }

    async fn command_state(&self, id: &str) -> Value {
        self.call_json(reqwest::Method::GET, &format!("/api/v1/commands/{id}"), None).await.1
    }

    async fn wait_for_state(&self, id: &str, state: &str) -> Value {
        for _ in 0..100 {
            let command = self.command_state(id).await;
            if command["state"] == state {
                return command;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("command {id} never reached {state}: {}", self.command_state(id).await);
    }
}

#[tokio::test]
async fn a_command_to_an_offline_device_is_delivered_on_reconnect_and_answered() {
    let server = start().await;
    let secret = server.device("pump-1").await;
    let (status, command) = server
        .command("pump-1", json!({"name": "flush", "payload": {"seconds": 5}, "ttl": "1m", "idempotency_key": "k1"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{command}");
    assert_eq!(command["state"], "queued", "the device is offline");
    let id = command["id"].as_str().unwrap().to_string();
    let (status, again) = server.command("pump-1", json!({"name": "flush", "idempotency_key": "k1"})).await;
    assert_eq!(
        (status, again["id"].as_str(), again["duplicate"].clone()),
        (StatusCode::OK, Some(id.as_str()), json!(true))
    );

    // The device connects and listens for commands: the command arrives.
    let mut device = server.connect("pump-1", &secret).await;
    device.subscribe("commands/#").await;
    let packet = loop {
        match tokio::time::timeout(Duration::from_secs(5), device.reader.next()).await.unwrap().unwrap() {
            Packet::Publish(p) => break p,
            _ => continue,
        }
    };
    assert_eq!(packet.topic, "$glassbox/devices/pump-1/commands/flush");
    assert_eq!(packet.properties.correlation_data.as_deref(), Some(id.as_bytes()), "5.0: correlation data");
    assert_eq!(packet.properties.response_topic.as_deref(), Some("$glassbox/devices/pump-1/commands/flush/response"));
    let message: CommandMessage = serde_json::from_slice(&packet.payload).unwrap();
    assert_eq!((message.id.as_str(), message.payload), (id.as_str(), Some(json!({"seconds": 5}))));
    assert_eq!(server.command_state(&id).await["state"], "in_transit", "sent, not yet acknowledged");
    device.send(Packet::PubAck(Ack::new(packet.packet_id.unwrap()))).await;
    server.wait_for_state(&id, "delivered").await;

    // It answers; the command succeeds with the response kept.
    let answer = json!({"id": id, "status": "succeeded", "result": {"flushed": true}}).to_string();
    device.publish("commands/flush/response", &answer).await;
    let done = server.wait_for_state(&id, "succeeded").await;
    assert_eq!(done["response"], json!({"flushed": true}));

    // A second answer is refused with a recorded reason, not a silent state change.
    device.publish("commands/flush/response", &answer).await;
    let mut rejected = Value::Null;
    for _ in 0..50 {
        let (_, page) =
            server.call_json(reqwest::Method::GET, "/api/v1/events?type=device.command.response_rejected", None).await;
        rejected = page["events"][0].clone();
        if !rejected.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rejected["data"]["reason"].as_str().unwrap().contains("already succeeded"), "{rejected}");
    assert_eq!(server.command_state(&id).await["state"], "succeeded");

    // A reply that is not one is refused, saying what is wrong with it.
    device.publish("commands/flush/response", &json!({"id": id, "status": "done"}).to_string()).await;
    let mut reason = String::new();
    let mut named = None;
    for _ in 0..50 {
        let (_, page) =
            server.call_json(reqwest::Method::GET, "/api/v1/events?type=device.command.response_rejected", None).await;
        let step: CommandStep = payload_in(&page["events"][0]).unwrap();
        (reason, named) = (step.reason.unwrap_or_default(), step.command);
        if reason.contains("not a command reply") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reason.contains("unknown variant `done`, expected `succeeded` or `failed`"), "{reason}");
    assert_eq!(named.as_deref(), Some(id.as_str()), "the refusal names the command the reply named");

    // The whole story is one chain.
    let (_, chain) = server.call_json(reqwest::Method::GET, &format!("/api/v1/trace/{id}"), None).await;
    let types: Vec<&str> = chain["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    for step in
        ["device.command.queued", "device.command.in_transit", "device.command.delivered", "device.command.succeeded"]
    {
        assert!(types.contains(&step), "{step} in {types:?}");
    }
    server.running.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn commands_expire_are_cancelled_and_bad_ones_are_refused() {
    let server = start().await;
    server.device("fan-1").await;
    let (_, short) = server.command("fan-1", json!({"name": "spin", "ttl": "1s"})).await;
    let (_, long) = server.command("fan-1", json!({"name": "stop", "ttl": "1h"})).await;
    let expired = server.wait_for_state(short["id"].as_str().unwrap(), "expired").await;
    assert!(expired["reason"].as_str().unwrap().contains("time-to-live passed while it was queued"), "{expired}");
    let long_id = long["id"].as_str().unwrap();
    let (status, cancelled) =
        server.call_json(reqwest::Method::POST, &format!("/api/v1/commands/{long_id}/cancel"), None).await;
    assert_eq!((status, cancelled["state"].clone()), (StatusCode::OK, json!("cancelled")));
    let (status, again) =
        server.call_json(reqwest::Method::POST, &format!("/api/v1/commands/{long_id}/cancel"), None).await;
    assert_eq!((status, again["error"]["code"].clone()), (StatusCode::CONFLICT, json!("command_finished")));

    let (_, listed) = server.call_json(reqwest::Method::GET, "/api/v1/devices/fan-1/commands", None).await;
    let states: Vec<&str> =
        listed["commands"].as_array().unwrap().iter().map(|c| c["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["cancelled", "expired"], "newest first");

    assert_eq!(server.command("fan-1", json!({"name": "a/b"})).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(server.command("fan-1", json!({"name": "x", "ttl": "forever"})).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(server.command("nobody", json!({"name": "x"})).await.0, StatusCode::NOT_FOUND);
    server.call_json(reqwest::Method::POST, "/api/v1/devices/fan-1/disable", None).await;
    let (status, body) = server.command("fan-1", json!({"name": "x"})).await;
    assert_eq!((status, body["error"]["code"].clone()), (StatusCode::CONFLICT, json!("device_disabled")));
    server.running.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn metadata_filters_the_fleet_and_a_quiet_device_is_flagged_silent_then_cleared() {
    let server = start().await;
    let secret = server.device("meter-7").await;
    server.device("meter-8").await;
    let patch = json!({"tags": {"site": "north"}, "group": "meters", "owner": "acme", "cadence": "1s"});
    let (status, device) = server.call_json(reqwest::Method::PATCH, "/api/v1/devices/meter-7", Some(patch)).await;
    assert_eq!(status, StatusCode::OK, "{device}");
    assert_eq!((device["group"].clone(), device["cadence_seconds"].clone()), (json!("meters"), json!(1)));
    let (status, _) =
        server.call_json(reqwest::Method::PATCH, "/api/v1/devices/meter-7", Some(json!({"colour": 1}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "unknown fields are named and refused");

    let ids = async |query: &str| -> Vec<String> {
        let (_, page) = server.call_json(reqwest::Method::GET, &format!("/api/v1/devices?{query}"), None).await;
        page["devices"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids("tag=site=north").await, ["meter-7"]);
    assert_eq!(ids("group=meters&connected=false").await, ["meter-7"]);
    assert!(ids("group=nobody").await.is_empty());
    assert_eq!(ids("owner=acme&tag=site=north").await, ["meter-7"]);
    assert!(ids("owner=someone-else").await.is_empty());
    assert_eq!(
        ids("owner=acme&after=meter-7").await,
        Vec::<String>::new(),
        "a filtered page continues after its cursor"
    );

    // Connected and talking, then quiet for longer than 3 x its 1 s cadence.
    let mut device = server.connect("meter-7", &secret).await;
    let reading = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "devices/meter-7/reading".into(),
        packet_id: Some(1),
        properties: Properties::default(),
        payload: Bytes::from_static(b"{\"kwh\":1}"),
    };
    device.send(Packet::Publish(reading.clone())).await;
    assert_eq!(ids("connected=true").await, ["meter-7"]);
    let mut flagged = Vec::new();
    for _ in 0..100 {
        flagged = ids("silent=true").await;
        if !flagged.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(flagged, ["meter-7"], "silent beyond its cadence while connected");
    let mut reason = String::new();
    for _ in 0..50 {
        let (_, page) =
            server.call_json(reqwest::Method::GET, "/api/v1/events?type=device.silent&device=meter-7", None).await;
        if let Some(r) = page["events"][0]["data"]["reason"].as_str() {
            reason = r.to_string();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reason.contains("connected but silent") && reason.contains("declared cadence is every 1s"), "{reason}");

    // It talks again: the flag clears, with an event saying so.
    device.send(Packet::Publish(Publish { packet_id: Some(2), ..reading })).await;
    for _ in 0..50 {
        if ids("silent=true").await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ids("silent=true").await.is_empty());
    // The flag clears as the message is seen; its event is recorded just after.
    let mut active = Value::Null;
    for _ in 0..50 {
        let (_, page) =
            server.call_json(reqwest::Method::GET, "/api/v1/events?type=device.active&device=meter-7", None).await;
        active = page["events"][0].clone();
        if !active.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(active["data"]["silent_for_seconds"].as_f64().unwrap() > 0.0, "{active}");
    server.running.unwrap().stop().await.unwrap();
}

/// Clearing: messages waiting for an offline device are dropped on the
/// operator's word, each with reason `cleared`; the device, back, gets none
/// of them, and the clearing itself is recorded.
#[tokio::test]
async fn an_operator_clears_an_offline_devices_queue_and_every_drop_is_recorded() {
    let server = start().await;
    let secret = server.device("tank-1").await;
    let persistent = Options {
        username: Some("tank-1".into()),
        password: Some(secret.clone()),
        protocol: Protocol::V5,
        clean_start: false,
        properties: Properties { session_expiry_interval: Some(3600), ..Properties::default() },
        ..Options::new("tank-1")
    };
    drop(common::subscribed(&server.mqtt, &persistent, "devices/tank-1/notes/#", QoS::AtLeastOnce).await);

    // Three messages for it while it is away, from an operator client.
    let operator =
        Options { username: Some("operator".into()), password: Some(TOKEN.into()), ..Options::new("ops-console") };
    let (mut ops_reader, mut ops, _) = client::connect(&server.mqtt, &operator).await.unwrap();
    for n in 1..=3u16 {
        ops.send(&common::publish("devices/tank-1/notes/n", format!("note {n}"), n)).await.unwrap();
        ops.flush().await.unwrap();
        assert!(matches!(ops_reader.next().await.unwrap(), Packet::PubAck(_)));
    }
    let inspect = "/api/v1/devices/tank-1/inspect";
    server.eventually(inspect, |v| (v["session"]["queued"] == 3).then_some(Value::Null)).await;

    let (status, cleared) = server.call_json(reqwest::Method::DELETE, "/api/v1/devices/tank-1/queue", None).await;
    assert_eq!(
        (status, cleared["cleared"].clone(), cleared["session"].clone()),
        (StatusCode::OK, json!(3), json!(true))
    );
    assert_eq!(server.call_json(reqwest::Method::GET, inspect, None).await.1["session"]["queued"], 0);
    // The answer names what it cleared, oldest first: each message's event, topic and size.
    let named = cleared["messages"].as_array().unwrap();
    let topics_and_sizes: Vec<_> = named.iter().map(|m| (m["topic"].clone(), m["bytes"].clone())).collect();
    assert_eq!(topics_and_sizes, vec![(json!("devices/tank-1/notes/n"), json!(6)); 3], "{cleared}");
    let first = named[0]["event"].as_str().unwrap();
    let (_, event) = server.call_json(reqwest::Method::GET, &format!("/api/v1/events/{first}"), None).await;
    assert_eq!(
        (event["type"].as_str(), event["subject"].as_str()),
        (Some("device.message"), Some("devices/tank-1/notes/n"))
    );
    assert_eq!(event["id"], first, "{event}");
    let cleared_states = |page: &Value| {
        let events = page["events"].as_array()?;
        let dropped = |e: &Value| {
            e["states"].as_array().is_some_and(|states| {
                states.iter().any(|s| {
                    s["state"] == "dropped" && s["detail"].as_str().is_some_and(|d| d.starts_with("cleared: by admin"))
                })
            })
        };
        (events.len() == 3 && events.iter().all(dropped)).then_some(Value::Null)
    };
    server.eventually("/api/v1/events?source=mqtt/ops-console&type=device.message", cleared_states).await;
    let record = server
        .eventually("/api/v1/events?type=device.queue_cleared&device=tank-1", |page| page["events"].get(0).cloned())
        .await;
    let data = record["data"].as_object().unwrap();
    let mut fields: Vec<&str> = data.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["actor", "cleared", "principal", "session"], "{record}");
    assert_eq!((&data["actor"], &data["cleared"], &data["session"]), (&json!("admin"), &json!(3), &json!(true)));
    assert_admin_from_here(&data["principal"]);
    // The device's registration names who registered it, too.
    let registered = server
        .eventually("/api/v1/events?type=device.registered&device=tank-1", |page| page["events"].get(0).cloned())
        .await;
    assert_eq!(registered["data"]["actor"], "admin");
    assert_admin_from_here(&registered["data"]["principal"]);

    // Back, the device finds its session but none of the cleared messages.
    let (mut reader, _writer, ack) = client::connect(&server.mqtt, &persistent).await.unwrap();
    assert!(ack.session_present, "the session itself stays");
    let next = tokio::time::timeout(Duration::from_millis(500), reader.next()).await;
    assert!(next.is_err(), "nothing is delivered: {next:?}");

    let (status, _) = server.call_json(reqwest::Method::DELETE, "/api/v1/devices/nosuch/queue", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.running.unwrap().stop().await.unwrap();
}
