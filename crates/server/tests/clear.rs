//! Clear, on the record (issue 23): what an operator removes leaves a
//! trace of who removed it.

mod common;

use std::time::Duration;

use glassbox_api_types::{DeadLetters, Discarded, RedriveAnswer, RetainedClearedAnswer, RetainedList, Warned};
use glassbox_core::{
    DeadLetterCleared, DeadLetterClearedReason, FUNCTION_DEAD_LETTER_CLEARED, RETAINED_CLEARED, RetainedCleared,
    payload_in,
};
use glassbox_functions::{OpenDeadLetter, Redriven};
use glassbox_gateway::client::{self, Options, Reader};
use glassbox_gateway::codec::{Packet, Protocol, QoS};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{Server, fixture, publish, start_in, start_with, subscribed};

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

/// Asserts an answer conforms to what `docs/openapi.json` gives for `method route`.
#[track_caller]
fn conforms(method: &str, route: &str, answer: &Value) {
    let doc = glassbox_api_types::openapi::Document::parse(glassbox_api::OPENAPI).unwrap();
    let schema = doc.answer(method, route, 200).unwrap_or_else(|| panic!("no schema for {method} {route}"));
    let problems = doc.check(schema, answer);
    assert!(problems.is_empty(), "{method} {route}: {}\n{answer:#}", problems.join("\n"));
}

impl Server {
    async fn deploy(&self, name: &str, fixture_name: &str, query: &str) {
        let path = format!("/api/v1/functions/{name}?{query}");
        let (status, body) = self.call(Method::POST, &path, Some(fixture(fixture_name))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// Sends a `work.item` event; its id.
    async fn work_item(&self, n: u32) -> String {
        let item = json!({"specversion": "1.0", "source": "test", "type": "work.item", "data": {"n": n}});
        let (status, body) = self.call(Method::POST, "/api/v1/events", Some(item.to_string().into_bytes())).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["ids"][0].as_str().or(body["id"].as_str()).unwrap().to_string()
    }

    async fn dead_letters(&self, name: &str) -> Vec<OpenDeadLetter> {
        let (status, body) = self.call(Method::GET, &format!("/api/v1/functions/{name}/dead-letters"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        conforms("get", "/api/v1/functions/{name}/dead-letters", &body);
        serde_json::from_value::<DeadLetters<OpenDeadLetter>>(body).unwrap().dead_letters
    }

    /// Waits until `name` has `n` open dead letters.
    async fn dead_lettered(&self, name: &str, n: usize) -> Vec<OpenDeadLetter> {
        for _ in 0..200 {
            let open = self.dead_letters(name).await;
            if open.len() >= n {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{name} never had {n} dead letters: {:?}", self.dead_letters(name).await)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body.to_string().into_bytes())).await
    }

    async fn retained(&self, filter: &str) -> RetainedList {
        let (status, body) = self.call(Method::GET, &format!("/api/v1/mqtt/retained?filter={filter}"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        conforms("get", "/api/v1/mqtt/retained", &body);
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
    conforms("delete", "/api/v1/mqtt/retained", &body);
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

#[tokio::test]
async fn dead_letters_are_listed_then_redriven_after_a_fix_on_their_own_chains() {
    let server = start_with(TOKEN, |_| {}).await;
    server.deploy("worker", "fail", "trigger=event:work.item&retries=1").await;
    let mut sent = vec![server.work_item(1).await, server.work_item(2).await, server.work_item(3).await];
    let mut open = server.dead_lettered("worker", 3).await;
    let mut listed: Vec<String> = open.iter().map(|d| d.event_id.clone()).collect();
    sent.sort();
    listed.sort();
    assert_eq!(listed, sent, "each event given up on, once");
    open.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    let first = &open[0];
    assert_eq!((first.version, first.attempts), (1, 2), "the first run and one retry");
    assert_eq!((first.outcome.as_deref(), first.error.as_deref()), (Some("failed"), Some("bad input")));
    assert!(first.first_failure.is_some() && first.first_failure <= first.last_failure);
    assert!(first.reason.contains("failed after 2 attempt(s)"), "{}", first.reason);

    // Still broken: a dry run says so and changes nothing.
    let (status, body) = server.post("/api/v1/functions/worker/dead-letters/redrive", json!({"dry_run": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let dry: RedriveAnswer<Redriven> = serde_json::from_value(body).unwrap();
    assert!(dry.redriven.iter().all(|r| r.outcome == "failed" && !r.cleared && r.invocation.is_none()));
    assert_eq!(server.dead_letters("worker").await.len(), 3);

    server.deploy("worker", "ok", "trigger=event:work.item").await;
    let body = json!({"rate": "50/s"});
    let (status, body) = server.post("/api/v1/functions/worker/dead-letters/redrive", body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    conforms("post", "/api/v1/functions/{name}/dead-letters/redrive", &body);
    let answer: RedriveAnswer<Redriven> = serde_json::from_value(body).unwrap();
    assert_eq!(answer.cleared, 3, "{answer:?}");
    assert!(answer.redriven.iter().all(|r| r.version == 2 && r.outcome == "succeeded"));
    assert!(server.dead_letters("worker").await.is_empty(), "a redrive that succeeds leaves the list");

    // Each success is on the original chain: the run and the clearing, naming who.
    for event in &sent {
        let (status, chain) = server.call(Method::GET, &format!("/api/v1/trace/{event}"), None).await;
        assert_eq!(status, StatusCode::OK, "{chain}");
        let events = chain["events"].as_array().unwrap();
        let of = |ty: &str| events.iter().filter(|e| e["type"] == ty).cloned().collect::<Vec<_>>();
        let succeeded = of("function.invoked").into_iter().filter(|i| i["data"]["outcome"] == "succeeded").count();
        assert_eq!(succeeded, 1, "one successful run on the chain of {event}");
        let cleared: DeadLetterCleared = payload_in(&of(FUNCTION_DEAD_LETTER_CLEARED)[0]).unwrap();
        assert_eq!(
            (cleared.reason, cleared.version, cleared.principal.name.as_str()),
            (DeadLetterClearedReason::Redriven, Some(2), "admin")
        );
    }
}

#[tokio::test]
async fn dead_letters_are_discarded_on_the_record_and_only_open_ones_can_be_named() {
    let server = start_with(TOKEN, |_| {}).await;
    server.deploy("worker", "fail", "trigger=event:work.item&retries=0").await;
    let (a, b) = (server.work_item(1).await, server.work_item(2).await);
    server.dead_lettered("worker", 2).await;

    let (status, body) = server
        .post("/api/v1/functions/worker/dead-letters/discard", json!({"ids": ["01JD6Y8Q1W3N4ZV7K2M5P9R0ST"]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("not open dead letters"), "{body}");

    let (status, body) = server.post("/api/v1/functions/worker/dead-letters/discard", json!({"ids": [a]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    conforms("post", "/api/v1/functions/{name}/dead-letters/discard", &body);
    let discarded: Discarded = serde_json::from_value(body).unwrap();
    assert_eq!(discarded.discarded, std::slice::from_ref(&a));
    let left: Vec<String> = server.dead_letters("worker").await.into_iter().map(|d| d.event_id).collect();
    assert_eq!(left, [b]);
    let (_, body) = server.post("/api/v1/functions/worker/dead-letters/discard", json!({"ids": [a]})).await;
    assert!(body.to_string().contains("not open dead letters"), "discarded once: {body}");

    let (_, page) =
        server.call(Method::GET, &format!("/api/v1/events?type={FUNCTION_DEAD_LETTER_CLEARED}"), None).await;
    let cleared: DeadLetterCleared = payload_in(&page["events"][0]).unwrap();
    assert_eq!((cleared.event, cleared.reason, cleared.version), (a, DeadLetterClearedReason::Discarded, None));
    let (status, _) = server.call(Method::GET, "/api/v1/functions/nobody/dead-letters", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Closed latency buckets of `function` (10 s apart from `start`), each one invocation of `ms(i)`.
fn latency(function: &str, start: i64, n: i64, ms: impl Fn(i64) -> f64) -> Vec<glassbox_series::Closed> {
    (0..n)
        .map(|i| {
            let v = ms(i);
            glassbox_series::Closed {
                metric: &glassbox_series::catalog::FUNCTION_DURATION,
                labels: vec![function.into()],
                point: glassbox_store::MetricPoint {
                    series: format!("function_duration_ms{{function=\"{function}\"}}"),
                    at: start + i * 10,
                    count: 1,
                    sum: v,
                    min: v,
                    max: v,
                },
            }
        })
        .collect()
}

#[tokio::test]
async fn an_incident_is_acknowledged_and_resolved_and_a_silenced_subject_raises_no_alert() {
    use glassbox_api_types::{Diagnosis, Incident, Silence, Silences};
    use glassbox_core::{ANOMALY_DETECTED, Anomaly, INCIDENT_ACKNOWLEDGED, IncidentAcknowledged};
    use glassbox_series::ClosedBuckets;

    let server = start_with(TOKEN, |c| c.diagnose.warmup_points = 20).await;
    let (status, body) = server
        .post("/api/v1/diagnose/silences", json!({"subject": "function:work", "for": "2h", "note": "firmware rollout"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let silence: Silence = serde_json::from_value(body).unwrap();
    assert_eq!((silence.subject.as_str(), silence.by.as_str()), ("function:work", "admin"));

    // Forty normal buckets, then a jump: an anomaly on a silenced subject.
    let now = chrono::Utc::now().timestamp();
    let start = now - now.rem_euclid(10) - 600;
    let watch = server.running.as_ref().unwrap().watch.clone().expect("metrics are derived");
    let history = latency("work", start, 50, |i| if i < 40 { 0.3 + 0.05 * (i % 5) as f64 } else { 40.0 });
    watch.closed(&history, start + 490).await;
    let (_, diagnosis) = server.call(Method::GET, "/api/v1/diagnose?since=1h", None).await;
    let diagnosis: Diagnosis = serde_json::from_value(diagnosis).unwrap();
    let incident = diagnosis.incidents.first().expect("an incident");
    assert_eq!(incident.silenced.len(), 1, "the diagnosis shows the silence: {incident:?}");
    let (_, page) = server.call(Method::GET, &format!("/api/v1/events?type={ANOMALY_DETECTED}"), None).await;
    let anomaly: Anomaly = payload_in(&page["events"][0]).unwrap();
    assert_eq!(anomaly.silenced_until, Some(silence.until), "recorded, marked silenced (no alert posted)");

    let path = format!("/api/v1/diagnose/incidents/{}/ack", incident.id);
    let (status, body) = server.post(&path, json!({"note": "rolling back"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let acked: Incident = serde_json::from_value(body).unwrap();
    let said = acked.acknowledged.expect("acknowledged");
    assert_eq!((said.by.as_str(), said.note.as_deref(), acked.resolved), ("admin", Some("rolling back"), None));
    let path = format!("/api/v1/diagnose/incidents/{}/resolve", incident.id);
    let (_, body) = server.post(&path, json!({})).await;
    assert!(serde_json::from_value::<Incident>(body).unwrap().resolved.is_some());
    let (_, page) = server.call(Method::GET, &format!("/api/v1/events?type={INCIDENT_ACKNOWLEDGED}"), None).await;
    let IncidentAcknowledged(note) = payload_in(&page["events"][0]).unwrap();
    assert_eq!((note.incident, note.principal.name.as_str()), (incident.id, "admin"));

    let (status, body) = server.post("/api/v1/diagnose/incidents/999999/ack", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    for (subject, length) in [("fan", "2h"), ("function:work", "90d"), ("function:work", "soon")] {
        let (status, body) = server.post("/api/v1/diagnose/silences", json!({"subject": subject, "for": length})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{subject} {length}: {body}");
    }

    // Silences outlive a restart; ending one is recorded too.
    let server = server.restart(|c| c.diagnose.warmup_points = 20).await;
    let (_, body) = server.call(Method::GET, "/api/v1/diagnose/silences", None).await;
    let silences: Silences = serde_json::from_value(body).unwrap();
    assert_eq!(silences.silences, [silence], "read back from the record");
    server.post("/api/v1/diagnose/silences", json!({"subject": "function:work", "for": "0s"})).await;
    let (_, body) = server.call(Method::GET, "/api/v1/diagnose/silences", None).await;
    assert_eq!(body["silences"].as_array().map(Vec::len), Some(0), "{body}");
}
