//! Issue 17, finding 1: data that is valid JSON text but that no reader can
//! parse back (too deep, a lone surrogate, a number beyond an f64) is
//! refused over HTTP and kept as bytes over MQTT; every read that includes
//! it still answers.

mod common;

use glassbox_gateway::client::{self, Options};
use glassbox_gateway::codec::{Packet, Protocol};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{publish, start_with};

const TOKEN: &str = "gbx_poison_test_token";

fn poisons() -> Vec<(&'static str, String)> {
    vec![
        ("129 levels of nesting", format!("{}{}", "[".repeat(129), "]".repeat(129))),
        ("a lone surrogate", r#""\ud800""#.into()),
        ("a number beyond an f64", "1e999999".into()),
    ]
}

#[tokio::test]
async fn finding_1_poison_data_over_http_is_refused_naming_the_field() {
    let server = start_with(TOKEN, |_| {}).await;
    for (shape, data) in poisons() {
        let body = format!(r#"{{"specversion":"1.0","id":"p","source":"s","type":"t","data":{data}}}"#);
        let request = server
            .request(Method::POST, "/api/v1/events")
            .header("content-type", "application/cloudevents+json")
            .body(body);
        let (status, answer) = common::answer(request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{shape}: {answer}");
        assert_eq!(answer["error"]["problems"][0]["field"], "data", "{shape}: {answer}");
    }
    let (status, page) = server.call(Method::GET, "/api/v1/events", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
}

#[tokio::test]
async fn finding_1_poison_payloads_over_mqtt_are_kept_as_bytes_and_every_read_answers() {
    let server = start_with(TOKEN, |_| {}).await;
    let body = json!({ "id": "dev-p" }).to_string().into_bytes();
    let (_, device) = server.call(Method::POST, "/api/v1/devices", Some(body)).await;
    let options = Options {
        username: Some("dev-p".into()),
        password: Some(device["secret"].as_str().unwrap().into()),
        protocol: Protocol::V5,
        ..Options::new("dev-p")
    };
    let (mut reader, mut writer, _) = client::connect(&server.mqtt, &options).await.unwrap();
    for (id, (_, data)) in (1u16..).zip(poisons()) {
        writer.send(&publish("devices/dev-p/telemetry", data, id)).await.unwrap();
        writer.flush().await.unwrap();
        assert!(matches!(reader.next().await.unwrap(), Packet::PubAck(ack) if ack.reason == 0));
    }

    let (status, page) = server.call(Method::GET, "/api/v1/events?type=device.message&device=dev-p", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    for (event, (shape, data)) in events.iter().rev().zip(poisons()) {
        let kept = base64_decode(event["data_base64"].as_str().unwrap_or_else(|| panic!("{shape}: {event}")));
        assert_eq!(kept, data.as_bytes(), "{shape}: byte for byte");
        let id = event["id"].as_str().unwrap();
        for path in [format!("/api/v1/events/{id}"), format!("/api/v1/trace/{id}")] {
            let (status, body) = server.call(Method::GET, &path, None).await;
            assert_eq!(status, StatusCode::OK, "{shape}: {path}: {body}");
        }
    }
    let (status, inspected) = server.call(Method::GET, "/api/v1/devices/dev-p/inspect", None).await;
    assert_eq!(status, StatusCode::OK, "{inspected}");
    assert_ne!(inspected, Value::Null);
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}
