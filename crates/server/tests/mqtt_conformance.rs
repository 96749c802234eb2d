//! MQTT 3.1.1 and 5.0 conformance, over TCP against the whole server (real
//! SQLite files). Each test names the normative statements it checks.
//! The server runs in open mode with `test/nosubscribe` denied, the set-up
//! standard conformance suites expect.

use std::time::Duration;

use bytes::Bytes;
use glassbox_gateway::client::{self, Options, Reader, Writer};
use glassbox_gateway::codec::{
    Ack, Disconnect, Packet, Properties, Protocol, Publish, QoS, RetainHandling, Subscribe, SubscriptionOptions,
    Unsubscribe, Will,
};
use glassbox_server::{Config, Running};
use serde_json::Value;

const TOKEN: &str = "gbx_conformance_token_01";
const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(400);

struct Server {
    running: Option<Running>,
    mqtt: String,
    http: String,
    config: Config,
    _dir: tempfile::TempDir,
}

async fn start_with(adjust: impl FnOnce(&mut Config)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config { data_dir: dir.path().join("data"), ..Config::default() };
    config.http.listen = "127.0.0.1:0".into();
    config.mqtt.listen = "127.0.0.1:0".into();
    config.mqtt.allow_anonymous = true;
    config.mqtt.deny_subscribe = vec!["test/nosubscribe".into()];
    adjust(&mut config);
    let running = glassbox_server::start(config.clone(), Some(TOKEN)).await.unwrap();
    Server {
        mqtt: running.mqtt_addr.to_string(),
        http: format!("http://{}", running.http_addr),
        running: Some(running),
        config,
        _dir: dir,
    }
}

async fn start() -> Server {
    start_with(|_| {}).await
}

impl Server {
    /// Stops gracefully and starts again on the same data directory.
    async fn restart(mut self) -> Server {
        self.running.take().unwrap().stop().await.unwrap();
        let running = glassbox_server::start(self.config.clone(), Some(TOKEN)).await.unwrap();
        self.mqtt = running.mqtt_addr.to_string();
        self.http = format!("http://{}", running.http_addr);
        self.running = Some(running);
        self
    }

    async fn stop(mut self) {
        self.running.take().unwrap().stop().await.unwrap();
    }

    async fn api(&self, path: &str) -> Value {
        let response =
            reqwest::Client::new().get(format!("{}{path}", self.http)).bearer_auth(TOKEN).send().await.unwrap();
        response.json().await.unwrap()
    }

    /// The events of a source, newest first, with their states.
    async fn events_from(&self, client_id: &str) -> Vec<Value> {
        let page = self.api(&format!("/api/v1/events?source=mqtt/{client_id}&type=device.message")).await;
        page["events"].as_array().cloned().unwrap_or_default()
    }

    async fn client(&self, options: Options) -> Client {
        let (reader, writer, ack) = client::connect(&self.mqtt, &options).await.unwrap();
        Client { reader, writer, session_present: ack.session_present, properties: ack.properties }
    }

    async fn v3(&self, id: &str) -> Client {
        self.client(Options::new(id)).await
    }

    async fn v5(&self, id: &str) -> Client {
        self.client(Options { protocol: Protocol::V5, ..Options::new(id) }).await
    }
}

fn persistent(id: &str) -> Options {
    Options { clean_start: false, ..Options::new(id) }
}

fn v5_expiring(id: &str, clean: bool, expiry: u32) -> Options {
    Options {
        protocol: Protocol::V5,
        clean_start: clean,
        properties: Properties { session_expiry_interval: Some(expiry), ..Properties::default() },
        ..Options::new(id)
    }
}

struct Client {
    reader: Reader,
    writer: Writer,
    session_present: bool,
    properties: Properties,
}

impl Client {
    async fn send(&mut self, packet: Packet) {
        self.writer.send(&packet).await.unwrap();
        self.writer.flush().await.unwrap();
    }

    async fn next(&mut self) -> Packet {
        tokio::time::timeout(WAIT, self.reader.next()).await.expect("a packet in time").expect("a packet")
    }

    /// The next packet, or `None` if none comes within [`QUIET`].
    async fn maybe_next(&mut self) -> Option<Packet> {
        tokio::time::timeout(QUIET, self.reader.next()).await.ok().and_then(Result::ok)
    }

    async fn closed(&mut self) -> Option<Packet> {
        loop {
            match tokio::time::timeout(WAIT, self.reader.next()).await.expect("closed in time") {
                Err(_) => return None,
                Ok(Packet::Disconnect(d)) => return Some(Packet::Disconnect(d)),
                Ok(_) => continue,
            }
        }
    }

    async fn subscribe_with(&mut self, filter: &str, options: SubscriptionOptions, properties: Properties) -> Vec<u8> {
        self.send(Packet::Subscribe(Subscribe { packet_id: 1, properties, filters: vec![(filter.into(), options)] }))
            .await;
        match self.next().await {
            Packet::SubAck(ack) => ack.reasons,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) -> u8 {
        self.subscribe_with(filter, SubscriptionOptions::qos(qos), Properties::default()).await[0]
    }

    async fn publish_with(&mut self, topic: &str, payload: &str, qos: QoS, retain: bool, properties: Properties) {
        let packet_id = (qos != QoS::AtMostOnce).then_some(7);
        let publish = Publish {
            dup: false,
            qos,
            retain,
            topic: topic.into(),
            packet_id,
            properties,
            payload: Bytes::from(payload.to_string()),
        };
        self.send(Packet::Publish(publish)).await;
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => assert!(matches!(self.next().await, Packet::PubAck(_))),
            QoS::ExactlyOnce => {
                assert!(matches!(self.next().await, Packet::PubRec(_)));
                self.send(Packet::PubRel(Ack::new(7))).await;
                assert!(matches!(self.next().await, Packet::PubComp(_)));
            }
        }
    }

    async fn publish(&mut self, topic: &str, payload: &str, qos: QoS) {
        self.publish_with(topic, payload, qos, false, Properties::default()).await;
    }

    /// The next PUBLISH, acknowledged per its QoS.
    async fn receive(&mut self) -> Publish {
        match self.next().await {
            Packet::Publish(p) => {
                self.ack(&p).await;
                p
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    async fn ack(&mut self, p: &Publish) {
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.send(Packet::PubAck(Ack::new(id))).await,
            (QoS::ExactlyOnce, Some(id)) => {
                self.send(Packet::PubRec(Ack::new(id))).await;
                assert!(matches!(self.next().await, Packet::PubRel(_)));
                self.send(Packet::PubComp(Ack::new(id))).await;
            }
            _ => {}
        }
    }

    async fn disconnect(mut self) {
        self.send(Packet::Disconnect(Disconnect { reason: 0, properties: Properties::default() })).await;
    }
}

fn text(p: &Publish) -> &str {
    std::str::from_utf8(&p.payload).unwrap()
}

/// Polls until `check` holds or the wait runs out.
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn has_state(event: &Value, state: &str, detail_prefix: &str) -> bool {
    event["states"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["state"] == state && s["detail"].as_str().unwrap_or("").starts_with(detail_prefix))
}

// MQTT-3.2.2-1..3: session present is 0 for a clean session and for a new
// persistent one, 1 when a persistent session is resumed.
#[tokio::test]
async fn session_present_reflects_a_resumed_session() {
    let server = start().await;
    let first = server.client(persistent("sp-1")).await;
    assert!(!first.session_present, "a new session");
    first.disconnect().await;
    let second = server.client(persistent("sp-1")).await;
    assert!(second.session_present, "the session was kept");
    second.disconnect().await;
    let clean = server.v3("sp-1").await;
    assert!(!clean.session_present, "a clean session discards the old one");
    server.stop().await;
}

// MQTT-3.1.0-2: a second CONNECT is a protocol violation; the server closes.
// MQTT-4.8.0-1 (bad input): the violation affects only that client.
#[tokio::test]
async fn a_second_connect_closes_only_that_client() {
    let server = start().await;
    let mut bystander = server.v3("bystander").await;
    bystander.subscribe("t/ok", QoS::AtMostOnce).await;
    let mut bad = server.v5("twice").await;
    let connect = glassbox_gateway::codec::Connect {
        protocol: Protocol::V5,
        clean_start: true,
        keep_alive: 60,
        client_id: "twice".into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    bad.send(Packet::Connect(Box::new(connect))).await;
    match bad.closed().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, 0x82, "protocol error"),
        other => panic!("expected DISCONNECT 0x82, got {other:?}"),
    }
    let mut publisher = server.v3("pub").await;
    publisher.publish("t/ok", "still here", QoS::AtMostOnce).await;
    assert_eq!(text(&bystander.receive().await), "still here");
    server.stop().await;
}

// MQTT-4.3.3: QoS 2 delivers exactly once: a resent PUBLISH before PUBREL
// is acknowledged again but neither recorded nor delivered twice; the
// server's own QoS 2 delivery runs PUBLISH → PUBREC → PUBREL → PUBCOMP.
#[tokio::test]
async fn qos2_is_exactly_once_in_both_directions() {
    let server = start().await;
    let mut sub = server.v5("q2-sub").await;
    assert_eq!(sub.subscribe("q2/t", QoS::ExactlyOnce).await, 2);
    let mut publisher = server.v5("q2-pub").await;
    let publish = Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: "q2/t".into(),
        packet_id: Some(42),
        properties: Properties::default(),
        payload: Bytes::from_static(b"once"),
    };
    publisher.send(Packet::Publish(publish.clone())).await;
    assert!(matches!(publisher.next().await, Packet::PubRec(a) if a.packet_id == 42));
    publisher.send(Packet::Publish(Publish { dup: true, ..publish })).await;
    assert!(matches!(publisher.next().await, Packet::PubRec(a) if a.packet_id == 42), "resend acknowledged again");
    publisher.send(Packet::PubRel(Ack::new(42))).await;
    assert!(matches!(publisher.next().await, Packet::PubComp(a) if a.packet_id == 42));

    let got = match sub.next().await {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    };
    assert_eq!((got.qos, text(&got)), (QoS::ExactlyOnce, "once"));
    let id = got.packet_id.unwrap();
    sub.send(Packet::PubRec(Ack::new(id))).await;
    assert!(matches!(sub.next().await, Packet::PubRel(a) if a.packet_id == id));
    sub.send(Packet::PubComp(Ack::new(id))).await;
    assert!(sub.maybe_next().await.is_none(), "delivered once");

    eventually("the delivery is recorded", async || {
        let events = server.events_from("q2-pub").await;
        events.len() == 1 && has_state(&events[0], "delivered", "")
    })
    .await;
    server.stop().await;
}

// MQTT 5 §4.3.3: a PUBREC of 0x80 or more ends the QoS 2 exchange, so the
// client may reuse the packet id at once; the next PUBLISH with it is a new
// message, recorded, not a resend of the refused one.
#[tokio::test]
async fn a_refused_qos2_publish_frees_its_packet_id() {
    let server = start_with(|c| c.mqtt.publish_rate_max = 1).await;
    let created: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/devices", server.http))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"id": "q2d"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let options = Options {
        username: Some("q2d".into()),
        password: created["secret"].as_str().map(str::to_string),
        protocol: Protocol::V5,
        ..Options::new("q2d")
    };
    let mut device = server.client(options).await;
    let publish = |id: u16, payload: &'static str| {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: "devices/q2d/t".into(),
            packet_id: Some(id),
            properties: Properties::default(),
            payload: Bytes::from_static(payload.as_bytes()),
        })
    };
    // Over the device's rate of 1 a second: the second is refused (0x96).
    device.send(publish(1, "first")).await;
    device.send(publish(2, "refused")).await;
    let mut recs = Vec::new();
    for _ in 0..2 {
        match device.next().await {
            Packet::PubRec(rec) => recs.push((rec.packet_id, rec.reason)),
            other => panic!("expected PUBREC, got {other:?}"),
        }
    }
    assert_eq!(recs, [(1, 0), (2, 0x96)]);
    device.send(Packet::PubRel(Ack::new(1))).await;
    assert!(matches!(device.next().await, Packet::PubComp(c) if c.packet_id == 1));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    device.send(publish(2, r#""again""#)).await;
    assert!(matches!(device.next().await, Packet::PubRec(rec) if rec.packet_id == 2 && rec.reason == 0));
    device.send(Packet::PubRel(Ack::new(2))).await;
    assert!(matches!(device.next().await, Packet::PubComp(c) if c.packet_id == 2));
    eventually("the reused id's message is recorded", async || {
        server.events_from("q2d").await.iter().any(|e| e["data"] == "again")
    })
    .await;
    server.stop().await;
}

// MQTT-3.3.1-5..11: a retained message goes to later subscribers with
// RETAIN set, to established ones without; an empty retained payload
// clears it. Retained messages survive a restart.
#[tokio::test]
async fn retained_messages_reach_later_subscribers_and_survive_a_restart() {
    let server = start().await;
    let mut live = server.v3("ret-live").await;
    live.subscribe("ret/#", QoS::AtLeastOnce).await;
    let mut publisher = server.v3("ret-pub").await;
    publisher.publish_with("ret/a", "kept", QoS::AtLeastOnce, true, Properties::default()).await;
    let got = live.receive().await;
    assert!(!got.retain, "an established subscription sees RETAIN 0");
    drop(publisher);

    let server = server.restart().await;
    let mut late = server.v3("ret-late").await;
    late.subscribe("ret/+", QoS::AtLeastOnce).await;
    let got = late.receive().await;
    assert!(got.retain, "a new subscription sees RETAIN 1");
    assert_eq!((got.topic.as_str(), text(&got)), ("ret/a", "kept"));

    let mut publisher = server.v3("ret-pub").await;
    publisher.publish_with("ret/a", "", QoS::AtLeastOnce, true, Properties::default()).await;
    let mut later = server.v3("ret-later").await;
    later.subscribe("ret/#", QoS::AtLeastOnce).await;
    assert!(later.maybe_next().await.is_none(), "an empty retained payload cleared it");
    server.stop().await;
}

// MQTT-3.1.2-8, -10: the will is published when the connection ends
// without DISCONNECT, not after a normal DISCONNECT.
#[tokio::test]
async fn the_will_is_published_only_on_abnormal_disconnect() {
    let server = start().await;
    let mut watcher = server.v3("will-watch").await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    let will = |id: &str| Will {
        topic: format!("wills/{id}"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
    };
    let polite = server.client(Options { will: Some(will("polite")), ..Options::new("polite") }).await;
    polite.disconnect().await;
    let crashing = server.client(Options { will: Some(will("crash")), ..Options::new("crash") }).await;
    drop(crashing);
    let got = watcher.receive().await;
    assert_eq!((got.topic.as_str(), text(&got)), ("wills/crash", "gone"));
    assert!(watcher.maybe_next().await.is_none(), "no will after a normal DISCONNECT");
    server.stop().await;
}

// MQTT-3.1.3-9 (5.0): a reconnect within the will delay cancels the will.
#[tokio::test]
async fn a_reconnect_within_the_will_delay_cancels_the_will() {
    let server = start().await;
    let mut watcher = server.v5("delay-watch").await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    let will = Will {
        topic: "wills/delayed".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties { will_delay_interval: Some(2), ..Properties::default() },
    };
    let options = Options { will: Some(will), ..v5_expiring("delayed", false, 60) };
    drop(server.client(options.clone()).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let back = server.client(options.clone()).await;
    assert!(back.session_present);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert!(watcher.maybe_next().await.is_none(), "the reconnect cancelled the will");
    drop(back);
    let got = tokio::time::timeout(Duration::from_secs(5), watcher.receive()).await.unwrap();
    assert_eq!(got.topic, "wills/delayed", "published once the delay passed without a reconnect");
    server.stop().await;
}

// MQTT-3.3.5-1 (5.0: 3.3.4): overlapping subscriptions deliver one copy at
// the highest granted QoS, carrying every matching subscription id.
#[tokio::test]
async fn overlapping_subscriptions_deliver_once_with_every_subscription_id() {
    let server = start().await;
    let mut sub = server.v5("overlap").await;
    let with_id = |id| Properties { subscription_identifiers: vec![id], ..Properties::default() };
    sub.subscribe_with("ov/#", SubscriptionOptions::qos(QoS::AtMostOnce), with_id(1)).await;
    sub.subscribe_with("ov/+/x", SubscriptionOptions::qos(QoS::AtLeastOnce), with_id(2)).await;
    let mut publisher = server.v5("ov-pub").await;
    publisher.publish("ov/a/x", "one", QoS::AtLeastOnce).await;
    let got = sub.receive().await;
    assert_eq!(got.qos, QoS::AtLeastOnce);
    let mut ids = got.properties.subscription_identifiers.clone();
    ids.sort();
    assert_eq!(ids, [1, 2]);
    assert!(sub.maybe_next().await.is_none(), "one copy");
    server.stop().await;
}

// MQTT-4.7.2-1: filters starting with a wildcard do not match topics
// starting with `$`; `$`-filters do.
#[tokio::test]
async fn wildcards_do_not_match_dollar_topics() {
    let server = start().await;
    let mut all = server.v3("all").await;
    all.subscribe("#", QoS::AtMostOnce).await;
    let mut dollar = server.v3("dollar").await;
    dollar.subscribe("$app/#", QoS::AtMostOnce).await;
    let mut publisher = server.v3("dollar-pub").await;
    publisher.publish("$app/status", "hidden", QoS::AtLeastOnce).await;
    assert_eq!(text(&dollar.receive().await), "hidden");
    assert!(all.maybe_next().await.is_none(), "# does not match $app/status");
    server.stop().await;
}

// MQTT-3.1.2-4/5 and 4.4: a persistent session keeps QoS 1/2 messages while
// the client is away and delivers them on return — also across a restart;
// QoS 0 is not queued, and that drop is recorded with its reason.
#[tokio::test]
async fn offline_messages_reach_a_returning_client_across_a_restart() {
    let server = start().await;
    let mut away = server.client(persistent("sleeper")).await;
    away.subscribe("sleep/#", QoS::AtLeastOnce).await;
    away.disconnect().await;
    let mut publisher = server.v3("waker").await;
    publisher.publish("sleep/1", "first", QoS::AtLeastOnce).await;
    publisher.publish("sleep/0", "lost", QoS::AtMostOnce).await;
    publisher.publish("sleep/2", "second", QoS::ExactlyOnce).await;
    drop(publisher);

    let session = server.api("/api/v1/mqtt/sessions/sleeper").await;
    assert_eq!(session["connected"], false);
    assert_eq!(session["queued"], 2, "{session}");
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", server.http))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.lines().any(|l| l == "glassbox_mqtt_queued_messages 2"), "queue depth is a metric");

    let server = server.restart().await;
    let mut back = server.client(persistent("sleeper")).await;
    assert!(back.session_present);
    let (a, b) = (back.receive().await, back.receive().await);
    assert_eq!((text(&a), text(&b)), ("first", "second"), "in order");
    assert_eq!(b.qos, QoS::AtLeastOnce, "granted QoS caps the delivery");
    assert!(back.maybe_next().await.is_none());

    eventually("the QoS 0 drop is recorded", async || {
        server.events_from("waker").await.iter().any(|e| has_state(e, "dropped", "offline"))
    })
    .await;
    eventually("the queued messages are delivered", async || {
        let events = server.events_from("waker").await;
        events.iter().filter(|e| has_state(e, "delivered", "")).count() == 2
    })
    .await;
    server.stop().await;
}

// Offline queue bounds: beyond them the policy drops the oldest, and each
// drop is recorded as `queue_full`.
#[tokio::test]
async fn a_full_offline_queue_drops_the_oldest_with_a_reason() {
    let server = start_with(|c| c.mqtt.queue_messages_max = 2).await;
    let mut away = server.client(persistent("bounded")).await;
    away.subscribe("b/#", QoS::AtLeastOnce).await;
    away.disconnect().await;
    let mut publisher = server.v3("b-pub").await;
    for n in 1..=4 {
        publisher.publish("b/t", &format!("m{n}"), QoS::AtLeastOnce).await;
    }
    let mut back = server.client(persistent("bounded")).await;
    let (a, b) = (back.receive().await, back.receive().await);
    assert_eq!((text(&a), text(&b)), ("m3", "m4"));
    eventually("two queue_full drops are recorded", async || {
        let events = server.events_from("b-pub").await;
        events.iter().filter(|e| has_state(e, "dropped", "queue_full")).count() == 2
    })
    .await;
    server.stop().await;
}

// MQTT-3.1.2-23 (5.0): a session ends once its expiry interval passes
// after disconnect; MQTT-3.3.2-5: an expired message is not delivered.
#[tokio::test]
async fn sessions_and_messages_expire() {
    let server = start().await;
    let mut brief = server.client(v5_expiring("brief", true, 1)).await;
    brief.subscribe("exp/#", QoS::AtLeastOnce).await;
    drop(brief);
    let mut kept = server.client(v5_expiring("kept", true, 60)).await;
    kept.subscribe("exp/#", QoS::AtLeastOnce).await;
    kept.disconnect().await;
    let mut publisher = server.v5("exp-pub").await;
    let expiring = Properties { message_expiry_interval: Some(1), ..Properties::default() };
    publisher.publish_with("exp/short", "stale", QoS::AtLeastOnce, false, expiring).await;
    let lasting = Properties { message_expiry_interval: Some(60), ..Properties::default() };
    publisher.publish_with("exp/long", "fresh", QoS::AtLeastOnce, false, lasting).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;

    let again = server.client(v5_expiring("brief", false, 1)).await;
    assert!(!again.session_present, "the session expired");
    let mut back = server.client(v5_expiring("kept", false, 60)).await;
    assert!(back.session_present);
    let got = back.receive().await;
    assert_eq!(text(&got), "fresh", "the expired message was dropped");
    let left = got.properties.message_expiry_interval.unwrap();
    assert!((50..=60).contains(&left), "expiry counts down: {left}");
    assert!(back.maybe_next().await.is_none());
    eventually("the expiry is recorded", async || {
        server.events_from("exp-pub").await.iter().any(|e| has_state(e, "dropped", "expired"))
    })
    .await;
    server.stop().await;
}

// MQTT-3.1.2-24: a client silent for 1.5 x its keep-alive is disconnected,
// with the reason recorded.
#[tokio::test]
async fn a_silent_client_is_disconnected_after_one_and_a_half_keep_alives() {
    let server = start().await;
    let options = Options { keep_alive: Duration::from_secs(1), protocol: Protocol::V5, ..Options::new("quiet") };
    let mut quiet = server.client(options).await;
    match quiet.closed().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, 0x8D, "keep alive timeout"),
        other => panic!("expected DISCONNECT 0x8D, got {other:?}"),
    }
    eventually("the disconnect reason is recorded", async || {
        let page = server.api("/api/v1/events?type=client.disconnected").await;
        page["events"].as_array().unwrap().iter().any(|e| e["data"]["reason"] == "keep_alive_timeout")
    })
    .await;
    server.stop().await;
}

// 5.0 subscription options (3.8.3.1): no local, retain as published,
// retain handling "do not send".
#[tokio::test]
async fn subscription_options_are_honoured() {
    let server = start().await;
    let mut me = server.v5("opts").await;
    let options = |no_local, rap, handling| SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local,
        retain_as_published: rap,
        retain_handling: handling,
    };
    me.publish_with("opt/r", "old", QoS::AtLeastOnce, true, Properties::default()).await;
    me.subscribe_with("opt/r", options(false, true, RetainHandling::DoNotSend), Properties::default()).await;
    me.subscribe_with("opt/mine", options(true, false, RetainHandling::SendAtSubscribe), Properties::default()).await;
    assert!(me.maybe_next().await.is_none(), "retain handling 2 sends no retained message");
    me.publish("opt/mine", "echo", QoS::AtLeastOnce).await;
    assert!(me.maybe_next().await.is_none(), "no local: not sent back to its publisher");
    let mut other = server.v5("opts-pub").await;
    other.publish_with("opt/r", "new", QoS::AtLeastOnce, true, Properties::default()).await;
    let got = me.receive().await;
    assert!(got.retain, "retain as published keeps the flag");
    server.stop().await;
}

// 5.0 topic aliases (3.3.2.3.4) and request/response properties (4.10).
#[tokio::test]
async fn topic_aliases_and_request_response_properties() {
    let server = start().await;
    let mut responder = server.v5("responder").await;
    responder.subscribe("req/#", QoS::AtLeastOnce).await;
    let mut requester = server.v5("requester").await;
    assert_eq!(requester.properties.topic_alias_maximum, Some(64));
    let request = Properties {
        topic_alias: Some(3),
        response_topic: Some("resp/requester".into()),
        correlation_data: Some(Bytes::from_static(b"c-1")),
        ..Properties::default()
    };
    requester.publish_with("req/time", "first", QoS::AtLeastOnce, false, request).await;
    let aliased = Properties { topic_alias: Some(3), ..Properties::default() };
    requester.publish_with("", "second", QoS::AtLeastOnce, false, aliased).await;
    let first = responder.receive().await;
    assert_eq!(first.properties.response_topic.as_deref(), Some("resp/requester"));
    assert_eq!(first.properties.correlation_data.as_deref(), Some(&b"c-1"[..]));
    let second = responder.receive().await;
    assert_eq!((second.topic.as_str(), text(&second)), ("req/time", "second"), "the alias stands for the topic");

    let bad = Properties { topic_alias: Some(65), ..Properties::default() };
    let publish = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "req/x".into(),
        packet_id: None,
        properties: bad,
        payload: Bytes::new(),
    };
    requester.send(Packet::Publish(publish)).await;
    assert!(matches!(requester.closed().await, Some(Packet::Disconnect(d)) if d.reason == 0x82));
    server.stop().await;
}

// 4.8.2: a shared subscription's group gets each message once, split
// between its members.
#[tokio::test]
async fn a_share_group_splits_the_stream() {
    let server = start().await;
    let mut a = server.v5("worker-a").await;
    let mut b = server.v5("worker-b").await;
    assert_eq!(a.subscribe("$share/workers/jobs/#", QoS::AtLeastOnce).await, 1);
    assert_eq!(b.subscribe("$share/workers/jobs/#", QoS::AtLeastOnce).await, 1);
    let mut publisher = server.v5("jobs-pub").await;
    for n in 0..10 {
        publisher.publish("jobs/x", &format!("{n}"), QoS::AtLeastOnce).await;
    }
    let mut got = Vec::new();
    for client in [&mut a, &mut b] {
        while let Some(Packet::Publish(p)) = client.maybe_next().await {
            client.ack(&p).await;
            got.push(text(&p).parse::<u32>().unwrap());
        }
    }
    got.sort();
    assert_eq!(got, (0..10).collect::<Vec<_>>(), "each message once across the group");
    server.stop().await;
}

// 5.0 flow control (4.9): no more unacknowledged QoS 1 messages than the
// client's receive maximum.
#[tokio::test]
async fn deliveries_respect_the_receive_maximum() {
    let server = start().await;
    let options = Options {
        protocol: Protocol::V5,
        properties: Properties { receive_maximum: Some(2), ..Properties::default() },
        ..Options::new("slow")
    };
    let mut slow = server.client(options).await;
    slow.subscribe("flow/#", QoS::AtLeastOnce).await;
    let mut publisher = server.v5("flow-pub").await;
    for n in 0..5 {
        publisher.publish("flow/t", &format!("{n}"), QoS::AtLeastOnce).await;
    }
    let mut unacked = Vec::new();
    while let Some(Packet::Publish(p)) = slow.maybe_next().await {
        unacked.push(p);
    }
    assert_eq!(unacked.len(), 2, "the window is 2");
    for p in &unacked {
        slow.ack(p).await;
    }
    let mut rest = 0;
    while let Some(Packet::Publish(p)) = slow.maybe_next().await {
        slow.ack(&p).await;
        rest += 1;
    }
    assert_eq!(rest, 3);
    server.stop().await;
}

// MQTT-3.1.4-2: a second connection with the same client id takes over;
// the first is told why (5.0) and the takeover is recorded.
#[tokio::test]
async fn a_duplicate_client_id_takes_over_the_session() {
    let server = start().await;
    let mut first = server.v5("dup-id").await;
    let _second = server.v5("dup-id").await;
    assert!(matches!(first.closed().await, Some(Packet::Disconnect(d)) if d.reason == 0x8E));
    eventually("the takeover is recorded", async || {
        let page = server.api("/api/v1/events?type=client.disconnected").await;
        page["events"].as_array().unwrap().iter().any(|e| e["data"]["reason"] == "session_takeover")
    })
    .await;
    server.stop().await;
}

// MQTT-4.7.3 / 3.8.3: invalid filters are refused per filter; the
// deny-subscribe list applies in open mode; a PUBLISH to a wildcard topic
// is a protocol violation.
#[tokio::test]
async fn invalid_topics_and_denied_filters_are_refused() {
    let server = start().await;
    let mut v3 = server.v3("filters").await;
    assert_eq!(v3.subscribe("a/#/b", QoS::AtMostOnce).await, 0x80);
    assert_eq!(v3.subscribe("test/nosubscribe", QoS::AtMostOnce).await, 0x80);
    let mut v5 = server.v5("filters5").await;
    assert_eq!(v5.subscribe("a/b+", QoS::AtMostOnce).await, 0x8F);
    assert_eq!(v5.subscribe("test/nosubscribe", QoS::AtMostOnce).await, 0x87);
    v5.send(Packet::Unsubscribe(Unsubscribe {
        packet_id: 2,
        properties: Properties::default(),
        filters: vec!["never".into()],
    }))
    .await;
    assert!(matches!(v5.next().await, Packet::UnsubAck(a) if a.reasons == [0x11]));
    let publish = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "a/+".into(),
        packet_id: None,
        properties: Properties::default(),
        payload: Bytes::new(),
    };
    v3.send(Packet::Publish(publish)).await;
    assert!(v3.closed().await.is_none(), "3.1.1: the server just closes");
    server.stop().await;
}

/// A QoS 0 PUBLISH of `payload` on `topic`.
fn qos0(topic: &str, payload: &[u8]) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: topic.into(),
        packet_id: None,
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload),
    })
}

// 5.0 topic aliases from the server (3.3.2.3.4, MQTT-3.3.2-17): a client
// whose CONNECT allows them gets the topic once with a new alias, then the
// alias alone; never more aliases than it allowed; none if it allowed none.
#[tokio::test]
async fn the_server_assigns_topic_aliases_within_the_clients_maximum() {
    let server = start().await;
    let options = Options {
        protocol: Protocol::V5,
        properties: Properties { topic_alias_maximum: Some(2), ..Properties::default() },
        ..Options::new("alias-sub")
    };
    let mut sub = server.client(options).await;
    sub.subscribe("alias/#", QoS::AtMostOnce).await;
    let mut plain = server.v5("alias-plain").await;
    plain.subscribe("alias/#", QoS::AtMostOnce).await;
    let mut publisher = server.v5("alias-pub").await;
    for topic in ["alias/a", "alias/a", "alias/b", "alias/c", "alias/b"] {
        publisher.send(qos0(topic, topic.as_bytes())).await;
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        let p = sub.receive().await;
        got.push((p.topic.clone(), p.properties.topic_alias, String::from_utf8(p.payload.to_vec()).unwrap()));
    }
    let expected = [
        ("alias/a", Some(1), "alias/a"),
        ("", Some(1), "alias/a"),
        ("alias/b", Some(2), "alias/b"),
        ("alias/c", None, "alias/c"),
        ("", Some(2), "alias/b"),
    ];
    let expected: Vec<_> = expected.iter().map(|(t, a, p)| (t.to_string(), *a, p.to_string())).collect();
    assert_eq!(got, expected, "topic then alias; beyond the maximum of 2, the topic in full");
    for _ in 0..5 {
        let p = plain.receive().await;
        assert!(p.properties.topic_alias.is_none() && !p.topic.is_empty(), "no alias for a client allowing none");
    }
    server.stop().await;
}

// 5.0 Maximum Packet Size (3.1.2.11.4, MQTT-3.1.2-25): a message that fits
// the client's maximum is delivered; one that would exceed it is not sent
// to that client and is recorded as dropped for it, with the reason.
#[tokio::test]
async fn a_message_larger_than_the_clients_maximum_packet_size_is_dropped_for_it() {
    let server = start().await;
    let options = Options {
        protocol: Protocol::V5,
        properties: Properties { maximum_packet_size: Some(64), ..Properties::default() },
        ..Options::new("small-sub")
    };
    let mut small = server.client(options).await;
    small.subscribe("size/#", QoS::AtLeastOnce).await;
    let mut publisher = server.v5("size-pub").await;
    publisher.publish("size/t", "small", QoS::AtLeastOnce).await;
    let got = small.receive().await;
    assert_eq!(text(&got), "small", "a 20-byte PUBLISH fits a maximum of 64");
    publisher.publish("size/t", &"x".repeat(100), QoS::AtLeastOnce).await;
    publisher.publish("size/t", "after", QoS::AtLeastOnce).await;
    assert_eq!(text(&small.receive().await), "after", "the large one is skipped, not sent");
    eventually("the large message is dropped for the small client, with the reason", async || {
        let events = server.events_from("size-pub").await;
        let dropped = |s: &Value| {
            s["state"] == "dropped"
                && s["target"] == "small-sub"
                && s["detail"].as_str().unwrap_or("").starts_with("too_large: ")
        };
        let dropped: Vec<_> = events.iter().filter(|e| e["states"].as_array().unwrap().iter().any(dropped)).collect();
        dropped.len() == 1
    })
    .await;
    server.stop().await;
}

// 5.0 Server Keep Alive (3.2.2.3.14, MQTT-3.1.2-21): a client asking for a
// longer keep-alive than `mqtt.keep_alive_max`, or for none, is told the
// maximum in CONNACK and held to it; one within it is told nothing.
#[tokio::test]
async fn the_server_keep_alive_caps_the_clients_and_is_enforced() {
    let server = start_with(|c| c.mqtt.keep_alive_max = 1).await;
    let asking =
        |id: &str, secs| Options { protocol: Protocol::V5, keep_alive: Duration::from_secs(secs), ..Options::new(id) };
    let within = server.client(asking("ka-within", 1)).await;
    assert_eq!(within.properties.server_keep_alive, None, "1 s is within the maximum");
    let mut none = server.client(asking("ka-none", 0)).await;
    assert_eq!(none.properties.server_keep_alive, Some(1), "no keep-alive asked: the maximum");
    let mut long = server.client(asking("ka-long", 600)).await;
    assert_eq!(long.properties.server_keep_alive, Some(1), "600 s asked: the maximum");
    let started = tokio::time::Instant::now();
    for client in [&mut none, &mut long] {
        match client.closed().await {
            Some(Packet::Disconnect(d)) => assert_eq!(d.reason, 0x8D, "held to the server's keep-alive"),
            other => panic!("expected DISCONNECT 0x8D, got {other:?}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(4), "closed after 1.5 x 1 s, not 1.5 x 600 s");
    eventually("the granted keep-alive is recorded", async || {
        let page = server.api("/api/v1/events?type=client.connected").await;
        page["events"].as_array().unwrap().iter().any(|e| e["subject"] == "ka-long" && e["data"]["keep_alive"] == 1)
    })
    .await;
    server.stop().await;
}

// 5.0 Receive Maximum (3.3.4, MQTT-3.3.4-9): a client with more QoS 2
// PUBLISHes unanswered (no PUBREL yet) than the receive maximum the server
// announced is disconnected with 0x93, and the reason is recorded.
#[tokio::test]
async fn exceeding_the_servers_receive_maximum_with_qos2_disconnects_with_0x93() {
    let server = start_with(|c| c.mqtt.inflight_max = 4).await;
    let mut client = server.v5("greedy").await;
    assert_eq!(client.properties.receive_maximum, Some(4));
    for id in 1..=5u16 {
        let publish = Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: "greedy/t".into(),
            packet_id: Some(id),
            properties: Properties::default(),
            payload: Bytes::from(format!("{id}")),
        };
        client.send(Packet::Publish(publish)).await;
    }
    let mut recs = 0;
    let reason = loop {
        match client.next().await {
            Packet::PubRec(_) => recs += 1,
            Packet::Disconnect(d) => break d.reason,
            other => panic!("expected PUBREC or DISCONNECT, got {other:?}"),
        }
    };
    assert_eq!(reason, 0x93, "receive maximum exceeded");
    assert!(recs <= 4, "no more than the receive maximum answered, got {recs}");
    eventually("the reason is recorded", async || {
        let page = server.api("/api/v1/events?type=client.disconnected").await;
        page["events"].as_array().unwrap().iter().any(|e| e["data"]["reason"] == "receive_maximum_exceeded")
    })
    .await;
    // Within the maximum, QoS 2 goes on: release frees room.
    let mut polite = server.v5("polite").await;
    for _ in 0..6 {
        polite.publish("polite/t", "x", QoS::ExactlyOnce).await;
    }
    server.stop().await;
}
