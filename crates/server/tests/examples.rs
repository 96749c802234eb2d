//! The JavaScript, Python and Rust examples (`examples/js-telemetry`,
//! `examples/python-telemetry`, `examples/rust-telemetry`) end to end: deployed to a running server,
//! triggered by telemetry a device publishes over MQTT, and checked in what
//! the server recorded — the invocation (succeeded, with its logs, including
//! captured stdout), the `telemetry.hot` event on the device message's chain,
//! and the `fan` command the function issued.
//!
//! The components are built by `scripts/test` (or each example's
//! `build.sh`); a missing one fails the test and names the script to run.

mod common;

use bytes::Bytes;
use glassbox_gateway::client::{self, Options};
use glassbox_gateway::codec::{Packet, Properties, Protocol, Publish, QoS};
use reqwest::{Method, StatusCode};
use serde_json::json;

use common::{Server, start_with};

const TOKEN: &str = "gbx_examples_test_token";

fn component(example: &str) -> Vec<u8> {
    let path = format!("{}/../../examples/{example}/telemetry.wasm", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{path}: {e}. Build the example first: examples/{example}/build.sh \
             (scripts/test builds every example before running the tests)"
        )
    })
}

async fn publish(server: &Server, device: &str, secret: &str, payload: &'static [u8]) {
    let options = Options {
        username: Some(device.into()),
        password: Some(secret.into()),
        protocol: Protocol::V5,
        ..Options::new(device)
    };
    let (mut reader, mut writer, _) = client::connect(&server.mqtt, &options).await.unwrap();
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: format!("devices/{device}/telemetry"),
        packet_id: Some(1),
        properties: Properties::default(),
        payload: Bytes::from_static(payload),
    };
    writer.send(&Packet::Publish(publish)).await.unwrap();
    writer.flush().await.unwrap();
    assert!(matches!(reader.next().await.unwrap(), Packet::PubAck(_)));
}

async fn exercise(example: &str, printed: &str) {
    let bytes = component(example);
    let server = start_with(TOKEN, |_| {}).await;
    let deploy = format!("/api/v1/functions/{example}?trigger=mqtt:devices/%2B/telemetry");
    let (status, deployed) = server.call(Method::POST, &deploy, Some(bytes)).await;
    assert_eq!(status, StatusCode::CREATED, "{example}: {deployed}");
    let device = "s1";
    let (_, created) =
        server.call(Method::POST, "/api/v1/devices", Some(json!({"id": device}).to_string().into_bytes())).await;
    publish(&server, device, created["secret"].as_str().unwrap(), br#"{"temperature": 31.5}"#).await;

    // The invocation: succeeded, with the function's log lines and its stdout.
    let invocations = format!("/api/v1/functions/{example}/invocations");
    let invocation = server.eventually(&invocations, |b| b["invocations"].as_array()?.first().cloned()).await;
    assert_eq!(invocation["outcome"], "succeeded", "{example}: {invocation}");
    assert_eq!(invocation["cold"], true);
    let logs: Vec<(&str, &str, Option<&str>)> = invocation["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["level"].as_str().unwrap(), l["message"].as_str().unwrap(), l["stream"].as_str()))
        .collect();
    assert_eq!(logs[0], ("info", "s1: 31.5 °C (threshold 30 °C)", None), "{example}: {logs:?}");
    let trigger = invocation["event_id"].as_str().unwrap().to_string();
    let printed = format!("{printed} {trigger}");
    assert_eq!(logs[1], ("info", printed.as_str(), Some("stdout")), "{example}: {logs:?}");
    assert_eq!(logs[2].0, "warn", "{example}: {logs:?}");
    assert!(logs[2].1.starts_with("s1 is hot: fan on (command "), "{example}: {logs:?}");

    // Its output: telemetry.hot, caused by the device message, on its chain.
    let hot =
        server.eventually("/api/v1/events?type=telemetry.hot", |b| b["events"].as_array()?.first().cloned()).await;
    assert_eq!(hot["source"], format!("fn/{example}"));
    assert_eq!(hot["causationid"], trigger.as_str());
    assert_eq!(hot["device"], device);
    assert_eq!(hot["data"]["temperature"], 31.5, "{hot}");
    assert_eq!(invocation["outputs"], json!([hot["id"]]));
    let (_, chain) = server.call(Method::GET, &format!("/api/v1/trace/{trigger}"), None).await;
    let types: Vec<&str> = chain["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    for ty in ["device.message", "function.invoked", "telemetry.hot"] {
        assert!(types.contains(&ty), "{ty} in {types:?}");
    }

    // The command it issued: `fan` {"on": true} to the device, by the function.
    let commands = format!("/api/v1/devices/{device}/commands");
    let command = server.eventually(&commands, |b| b["commands"].as_array()?.first().cloned()).await;
    assert_eq!((command["name"].clone(), command["payload"].clone()), (json!("fan"), json!({"on": true})));
    assert_eq!(command["issuer"], format!("function:{example}"));
    assert!(logs[2].1.contains(command["id"].as_str().unwrap()), "the id the function was given: {logs:?}");

    // Cool telemetry: another invocation, warm now, and nothing more out.
    publish(&server, device, created["secret"].as_str().unwrap(), br#"{"temperature": 20}"#).await;
    let second = server
        .eventually(&invocations, |b| {
            let all = b["invocations"].as_array()?;
            (all.len() >= 2).then(|| all.iter().find(|i| i["event_id"] != trigger.as_str()).cloned()).flatten()
        })
        .await;
    assert_eq!((second["outcome"].clone(), second["cold"].clone()), (json!("succeeded"), json!(false)), "{second}");
    assert_eq!(second["outputs"], json!([]));
    let (_, all) = server.call(Method::GET, &commands, None).await;
    assert_eq!(all["commands"].as_array().unwrap().len(), 1, "no command when cool");

    let mut server = server;
    server.running.take().unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn the_javascript_example_runs_on_device_telemetry() {
    exercise("js-telemetry", "js-telemetry saw event").await;
}

#[tokio::test]
async fn the_python_example_runs_on_device_telemetry() {
    exercise("python-telemetry", "python-telemetry saw event").await;
}

#[tokio::test]
async fn the_rust_example_runs_on_device_telemetry() {
    exercise("rust-telemetry", "rust-telemetry saw event").await;
}
