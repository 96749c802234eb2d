//! Clear, on the record (issue 23): what an operator removes leaves a
//! trace of who removed it.

mod common;

use std::time::Duration;

use glassbox_api_types::{RetainedClearedAnswer, RetainedList, Warned};
use glassbox_core::{RETAINED_CLEARED, RetainedCleared, payload_in};
use glassbox_gateway::client::{self, Options, Reader};
use glassbox_gateway::codec::{Packet, Protocol, QoS};
use reqwest::{Method, StatusCode};

use common::{Server, publish, start_in, start_with, subscribed};

const TOKEN: &str = "gbx_clear_test_token";

fn anonymous(id: &str) -> Options {
    Options { protocol: Protocol::V5, ..Options::new(id) }
}

/// Publishes a retained message and waits for its PUBACK.
async fn retain(mqtt: &str, topic: &str, payload: &str) {
    let (mut reader, mut writer, _) = client::connect(mqtt, &anonymous("setter")).await.unwrap();
    let Packet::Publish(mut message) = publish(topic, payload.as_bytes().to_vec(), 1) else { unreachable!() };
    message.retain = true;
    writer.send(&Packet::Publish(message)).await.unwrap();
    writer.flush().await.unwrap();
    assert!(matches!(reader.next().await.unwrap(), Packet::PubAck(_)));
}

/// The topics of the retained messages a new subscriber to `filter` gets.
async fn retained_for_a_new_subscriber(mqtt: &str, filter: &str) -> Vec<String> {
    let (mut reader, _writer) = subscribed(mqtt, &anonymous("late"), filter, QoS::AtLeastOnce).await;
    let mut topics = Vec::new();
    while let Some(topic) = next_publish(&mut reader).await {
        topics.push(topic);
    }
    topics.sort();
    topics
}

async fn next_publish(reader: &mut Reader) -> Option<String> {
    match tokio::time::timeout(Duration::from_millis(500), reader.next()).await {
        Ok(Ok(Packet::Publish(p))) => Some(p.topic),
        _ => None,
    }
}

impl Server {
    async fn retained(&self, filter: &str) -> RetainedList {
        let (status, body) = self.call(Method::GET, &format!("/api/v1/mqtt/retained?filter={filter}"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).unwrap()
    }
}

#[tokio::test]
async fn a_cleared_retained_message_reaches_no_new_subscriber_and_the_clearing_is_recorded() {
    let server = start_with(TOKEN, |c| c.mqtt.allow_anonymous = true).await;
    retain(&server.mqtt, "devices/th-1/status", "online").await;
    retain(&server.mqtt, "devices/th-2/status", "online").await;
    retain(&server.mqtt, "site/name", "north").await;

    let listed = server.retained("devices/%2B/status").await;
    let topics: Vec<&str> = listed.retained.iter().map(|r| r.topic.as_str()).collect();
    assert_eq!(topics, ["devices/th-1/status", "devices/th-2/status"]);
    assert!(listed.retained.iter().all(|r| r.bytes == 6 && r.set_by.as_deref() == Some("setter")));
    assert_eq!(server.retained("%23").await.retained.len(), 3, "# lists them all");

    let (status, body) = server.call(Method::DELETE, "/api/v1/mqtt/retained?filter=devices/th-1/%23", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: Warned<RetainedClearedAnswer> = serde_json::from_value(body).unwrap();
    let cleared: Vec<&str> = answer.answer.cleared.iter().map(|r| r.topic.as_str()).collect();
    assert_eq!((cleared, answer.warning), (vec!["devices/th-1/status"], None));

    let left = retained_for_a_new_subscriber(&server.mqtt, "devices/#").await;
    assert_eq!(left, ["devices/th-2/status"], "a new subscriber gets only what was not cleared");

    let (_, page) = server.call(Method::GET, &format!("/api/v1/events?type={RETAINED_CLEARED}"), None).await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{page}");
    let recorded: RetainedCleared = payload_in(&events[0]).unwrap();
    assert_eq!(
        (recorded.filter.as_str(), recorded.topics.as_slice()),
        ("devices/th-1/#", &["devices/th-1/status".to_string()][..])
    );
    assert_eq!(recorded.principal.name, "admin", "who cleared it");
    assert_eq!(recorded.events, [answer.answer.cleared[0].event_id.clone()], "which message it was");

    // The clearing is stored: a restart does not bring the message back.
    let server = server.restart(|c| c.mqtt.allow_anonymous = true).await;
    let topics: Vec<String> = server.retained("%23").await.retained.into_iter().map(|r| r.topic).collect();
    assert_eq!(topics, ["devices/th-2/status", "site/name"]);
}

#[tokio::test]
async fn clearing_needs_a_valid_filter_and_records_even_when_nothing_matched() {
    let server = start_in(tempfile::tempdir().unwrap(), TOKEN, |_| {}).await;
    for (query, why) in [("", "give the topics"), ("?filter=a/%23/b", "filter"), ("?filter=%24share/g/a", "shared")] {
        let (status, body) = server.call(Method::DELETE, &format!("/api/v1/mqtt/retained{query}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body.to_string().contains(why), "{query}: {body}");
    }
    let (status, body) = server.call(Method::DELETE, "/api/v1/mqtt/retained?filter=nothing/here", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["cleared"].as_array().map(Vec::len), Some(0));
    let (_, page) = server.call(Method::GET, &format!("/api/v1/events?type={RETAINED_CLEARED}"), None).await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1), "an attempt is on the record too: {page}");
    let (status, _) = server.call(Method::GET, "/api/v1/mqtt/retained?limit=0", None).await;
    assert_eq!(status, StatusCode::OK, "a limit below 1 lists one");
}
