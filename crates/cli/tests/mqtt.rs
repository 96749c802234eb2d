//! The MQTT gateway end to end: the real binary, `mosquitto_pub` (installed
//! by `.ci/run`) and the codec's own client, over TCP.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use glassbox_gateway::client::{self, Options};
use glassbox_gateway::codec::{Ack, Packet, Properties, Protocol, Publish, QoS, Subscribe, SubscriptionOptions};
use serde_json::Value;

const TOKEN: &str = "gbx_mqtt_test_token_01";

struct Served {
    child: Child,
    http: String,
    mqtt: String,
    mqtts: Option<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Served {
    serve_with(&[])
}

fn serve_with(extra: &[&str]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(["serve", "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(extra)
        .env("GLASSBOX_ADMIN_TOKEN", TOKEN)
        // Refused connects are counted per peer and interval: a short one keeps the tests quick.
        .env("GLASSBOX_MQTT_REFUSALS_INTERVAL", "1s")
        .env("GLASSBOX_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let line = stdout.lines().map(Result::unwrap).find(|l| l.contains("ready")).expect("a ready line");
    let field = |key: &str| line.split_whitespace().find_map(|w| w.strip_prefix(key)).unwrap().to_string();
    let mqtts = line.split_whitespace().find_map(|w| w.strip_prefix("mqtts=")).map(str::to_string);
    Served { http: field("http="), mqtt: field("mqtt="), mqtts, child, _dir: dir }
}

impl Served {
    fn cli(&self, args: &[&str]) -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_glassbox"))
            .args(args)
            .env("GLASSBOX_SERVER", &self.http)
            .env("GLASSBOX_TOKEN", TOKEN)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Runs a command that prints text, expecting success.
    fn text(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_glassbox"))
            .args(args)
            .env("GLASSBOX_SERVER", &self.http)
            .env("GLASSBOX_TOKEN", TOKEN)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// The events `args` select, once there are `count` of them (5 s at most).
    fn events_eventually(&self, args: &[&str], count: usize) -> Vec<Value> {
        for _ in 0..100 {
            let events = self.events(args);
            if events.len() >= count {
                return events;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("fewer than {count} events for {args:?}")
    }

    fn device(&self, id: &str) -> String {
        self.cli(&["devices", "create", id, "--json"])["secret"].as_str().unwrap().to_string()
    }

    fn events(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["events", "query", "--json"];
        all.extend_from_slice(args);
        self.cli(&all).as_array().unwrap().clone()
    }

    fn port(&self) -> String {
        self.mqtt.rsplit(':').next().unwrap().to_string()
    }
}

fn states(event: &Value) -> Vec<String> {
    event["states"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap().to_string()).collect()
}

fn options(id: &str, user: &str, password: &str, protocol: Protocol) -> Options {
    Options { username: Some(user.into()), password: Some(password.into()), protocol, ..Options::new(id) }
}

#[test]
fn a_device_publishes_with_mosquitto_pub_and_the_message_is_recorded() {
    let served = serve();
    let secret = served.device("pump-1");
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &served.port(), "-i", "pump-1", "-u", "pump-1", "-P", &secret])
        .args(["-t", "devices/pump-1/telemetry", "-q", "1", "-m", r#"{"rpm":1200}"#])
        .status()
        .expect("mosquitto_pub must be installed (apt-get install mosquitto-clients; .ci/run does it)");
    assert!(status.success());
    let messages = served.events(&["--device", "pump-1", "--type", "device.message"]);
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["subject"], "devices/pump-1/telemetry");
    assert_eq!(m["data"]["rpm"], 1200);
    assert_eq!(states(m)[0], "received");
    std::thread::sleep(Duration::from_millis(300));
    let lifecycle: Vec<String> = served
        .events(&["--device", "pump-1", "--type", "device.*"])
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert!(lifecycle.contains(&"device.connected".to_string()), "{lifecycle:?}");
    assert!(lifecycle.contains(&"device.disconnected".to_string()), "{lifecycle:?}");
}

#[test]
fn bad_credentials_and_disabled_devices_are_refused_with_a_recorded_reason() {
    let served = serve();
    let secret = served.device("valve-1");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let wrong = runtime.block_on(client::connect(&served.mqtt, &options("valve-1", "valve-1", "nope", Protocol::V5)));
    assert!(matches!(wrong, Err(client::ClientError::Refused(0x86))), "{:?}", wrong.err());
    let wrong311 =
        runtime.block_on(client::connect(&served.mqtt, &options("valve-1", "valve-1", "nope", Protocol::V311)));
    assert!(matches!(wrong311, Err(client::ClientError::Refused(4))));

    served.cli(&["devices", "disable", "valve-1", "--json"]);
    let disabled =
        runtime.block_on(client::connect(&served.mqtt, &options("valve-1", "valve-1", &secret, Protocol::V5)));
    assert!(matches!(disabled, Err(client::ClientError::Refused(0x87))));

    // Counted per peer: the first at once, the others together once the interval ends.
    let mut reasons = std::collections::BTreeMap::new();
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        reasons.clear();
        for event in served.events(&["--device", "valve-1", "--type", "device.connection_refused"]) {
            for (reason, n) in event["data"]["reasons"].as_object().unwrap() {
                *reasons.entry(reason.clone()).or_insert(0) += n.as_u64().unwrap();
            }
        }
        if reasons.values().sum::<u64>() == 3 {
            break;
        }
    }
    assert_eq!(reasons, [("auth_failure".to_string(), 2), ("device_disabled".to_string(), 1)].into());
}

#[test]
fn publishes_are_acknowledged_after_recording_and_delivered_to_subscribers() {
    let served = serve();
    let secret = served.device("meter-1");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // An operator subscribes to every device's telemetry.
        let (mut sub_rx, mut sub_tx, _) =
            client::connect(&served.mqtt, &options("backend", "operator", TOKEN, Protocol::V5)).await.unwrap();
        let filters = vec![("devices/+/telemetry".to_string(), SubscriptionOptions::qos(QoS::AtLeastOnce))];
        sub_tx
            .send(&Packet::Subscribe(Subscribe { packet_id: 1, properties: Properties::default(), filters }))
            .await
            .unwrap();
        sub_tx.flush().await.unwrap();
        assert!(matches!(sub_rx.next().await.unwrap(), Packet::SubAck(a) if a.reasons == [1]));

        let (mut rx, mut tx, _) =
            client::connect(&served.mqtt, &options("meter-1", "meter-1", &secret, Protocol::V5)).await.unwrap();
        // Its own prefix, then someone else's: the second is refused with 0x87 (not authorized).
        for (id, topic) in [(1, "devices/meter-1/telemetry"), (2, "devices/other/telemetry")] {
            let publish = Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: topic.into(),
                packet_id: Some(id),
                properties: Properties::default(),
                payload: Bytes::from_static(b"{\"kwh\":3}"),
            };
            tx.send(&Packet::Publish(publish)).await.unwrap();
        }
        tx.flush().await.unwrap();
        let first = rx.next().await.unwrap();
        let second = rx.next().await.unwrap();
        assert!(matches!(first, Packet::PubAck(Ack { packet_id: 1, reason: 0, .. })), "{first:?}");
        assert!(matches!(second, Packet::PubAck(Ack { packet_id: 2, reason: 0x87, .. })), "{second:?}");

        let delivered = tokio::time::timeout(Duration::from_secs(5), sub_rx.next()).await.unwrap().unwrap();
        let Packet::Publish(p) = delivered else { panic!("{delivered:?}") };
        assert_eq!(p.topic, "devices/meter-1/telemetry");
        sub_tx.send(&Packet::PubAck(Ack::new(p.packet_id.unwrap()))).await.unwrap();
        sub_tx.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    let messages = served.events(&["--device", "meter-1", "--type", "device.message"]);
    assert_eq!(messages.len(), 1, "a refused publish is no device message: {messages:#?}");
    assert_eq!(messages[0]["subject"], "devices/meter-1/telemetry");
    assert_eq!(states(&messages[0]), ["received", "in_transit", "delivered"]);
    let refused = served.events(&["--device", "meter-1", "--type", "mqtt.publish_refused"]);
    let denied = &refused[0];
    assert_eq!(
        (denied["subject"].as_str(), denied["data"]["reason"].as_str()),
        (Some("devices/other/telemetry"), Some("acl_denied"))
    );
    assert_eq!(states(denied), ["received", "dropped"]);
    assert!(denied["states"][1]["detail"].as_str().unwrap().starts_with("acl_denied"));

    // Issue 18: inspect showed the refused publish as the "last message".
    let inspect = served.text(&["devices", "inspect", "meter-1"]);
    let line = |prefix: &str| inspect.lines().find(|l| l.starts_with(prefix)).unwrap_or_default().to_string();
    let last = line("last message:");
    let message_id = messages[0]["id"].as_str().unwrap();
    assert!(last.contains("devices/meter-1/telemetry") && last.contains(message_id), "{inspect}");
    let refused = line("last refused publish:");
    let refused_id = denied["id"].as_str().unwrap();
    assert!(refused.contains("on devices/other/telemetry — acl_denied") && refused.contains(refused_id), "{inspect}");
    // Liveness reads back typed (the session: see the TLS test, connected).
    assert_eq!(
        line("liveness: "),
        "liveness: active; cadence not known yet (declare one with devices set --cadence, or it is learned)",
        "{inspect}"
    );
}

#[test]
fn a_device_publishes_over_tls_with_mosquitto_pub() {
    let certs = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_file, key_file) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let (cert_arg, key_arg) = (cert_file.to_str().unwrap(), key_file.to_str().unwrap());
    let served = serve_with(&["--mqtts", "127.0.0.1:0", "--tls-cert", cert_arg, "--tls-key", key_arg]);
    let secret = served.device("tls-1");
    let port = served.mqtts.as_deref().expect("an mqtts= address").rsplit(':').next().unwrap().to_string();
    let publish = |cafile: &str| {
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "--cafile", cafile, "-i", "tls-1", "-u", "tls-1", "-P", &secret])
            .args(["-t", "devices/tls-1/t", "-q", "1", "-m", "over tls"])
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    assert!(publish(cert_arg).success(), "TLS with the server's certificate trusted");
    let messages = served.events(&["--device", "tls-1", "--type", "device.message"]);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["subject"], "devices/tls-1/t");
    assert_eq!(messages[0]["data_base64"], "b3ZlciB0bHM=", "the payload, as sent");
    // Issue 18: neither device.connected nor inspect said the connection used TLS.
    let connected = served.events_eventually(&["--device", "tls-1", "--type", "device.connected"], 1);
    let data = &connected[0]["data"];
    assert_eq!((data["tls"].clone(), data["tls_version"].clone()), (Value::Bool(true), "TLS 1.3".into()), "{data}");
    assert!(data["tls_cipher"].as_str().unwrap().starts_with("TLS13_"), "{data}");
    let inspect = served.text(&["devices", "inspect", "tls-1"]);
    assert!(inspect.contains("TLS 1.3 (TLS13_"), "the timeline says so: {inspect}");
    // While connected, the connection line says so too.
    let mut listening = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port, "--cafile", cert_arg, "-i", "tls-1", "-u", "tls-1", "-P", &secret])
        .args(["-t", "devices/tls-1/cmd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line_of = |text: &str, prefix: &str| text.lines().find(|l| l.starts_with(prefix)).map(str::to_string);
    let mut inspect = String::new();
    for _ in 0..100 {
        inspect = served.text(&["devices", "inspect", "tls-1"]);
        if line_of(&inspect, "subscriptions: devices/").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = listening.kill();
    let _ = listening.wait();
    let line = line_of(&inspect, "connection: connected").expect("mosquitto_sub connected");
    assert!(line.contains(" over TLS 1.3 (TLS13_"), "{line}");
    // The session as the server keeps it, read back typed.
    let queue = line_of(&inspect, "queue: ").unwrap_or_default();
    assert!(queue.starts_with("queue: 0 messages / 0 B waiting") && queue.contains("policy drop_oldest"), "{inspect}");
    assert_eq!(line_of(&inspect, "subscriptions: ").as_deref(), Some("subscriptions: devices/tls-1/cmd (QoS 0)"));
    let plain = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port, "-i", "tls-1", "-u", "tls-1", "-P", &secret, "-t", "devices/tls-1/t"])
        .args(["-m", "plain", "-q", "1"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!plain.success(), "plain MQTT is not accepted on the TLS port");
}

/// Issue 18: `trace` said `routed → mqtt (no subscribers)` for a message a
/// function consumed; it names the function the message went to.
#[test]
fn trace_names_the_function_a_device_message_went_to() {
    let served = serve();
    let secret = served.device("probe-1");
    let ok = concat!(env!("CARGO_MANIFEST_DIR"), "/../runtime/tests/fixtures/ok.wat");
    served.cli(&["functions", "deploy", ok, "--name", "sink", "--trigger", "mqtt:devices/+/telemetry", "--json"]);
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &served.port(), "-i", "probe-1", "-u", "probe-1", "-P", &secret])
        .args(["-t", "devices/probe-1/telemetry", "-q", "1", "-m", "{}"])
        .status()
        .unwrap();
    assert!(status.success());
    served.events_eventually(&["--type", "function.invoked"], 1);
    let message = &served.events(&["--type", "device.message"])[0];
    let id = message["id"].as_str().unwrap();
    let routed = |tree: &str| tree.lines().find(|l| l.contains("routed")).map(str::to_string);
    let mut tree = served.text(&["trace", id]);
    for _ in 0..100 {
        if routed(&tree).is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        tree = served.text(&["trace", id]);
    }
    let routed = routed(&tree).unwrap_or_else(|| panic!("no routed state: {tree}"));
    assert!(routed.ends_with("→ function sink  (no MQTT subscribers)"), "{tree}");
    let json = served.cli(&["trace", id, "--json"]);
    assert_eq!(json["events"][0]["states"][1]["detail"], "no subscribers", "the record is kept as it is");
}
