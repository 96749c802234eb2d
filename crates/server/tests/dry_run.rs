//! Dry-run replays change nothing (issue 18, item 1): `glassbox debug
//! replay --dry-run` printed "nothing recorded" while the function's
//! command was queued for the device. A dry run now runs against a sandbox
//! of every host service — device commands, desired state, the key-value
//! store, emitted events, outbound HTTP (in `http_functions.rs`, with the
//! JavaScript example) — for event handlers and HTTP functions alike, and
//! lists in `would` what a real run would have done. One test per service:
//! the dry run leaves the recorder, the device and the store as they were,
//! and its `would` says exactly what it would have done; a real replay still
//! acts. Components are the runtime's WAT fixtures.

mod common;

use std::collections::BTreeSet;

use glassbox_functions::Replayed;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{Server, fixture, start_with};

const TOKEN: &str = "gbx_dry_run_test_token";

impl Server {
    async fn deploy(&self, name: &str, fixture_name: &str, query: &str) {
        let path = format!("/api/v1/functions/{name}?{query}");
        let (status, body) = self.call(Method::POST, &path, Some(fixture(fixture_name))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    async fn register(&self, device: &str) {
        let body = json!({ "id": device }).to_string().into_bytes();
        let (status, answer) = self.call(Method::POST, "/api/v1/devices", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }

    /// Records an event no function is triggered by; its id.
    async fn record(&self, event: Value) -> String {
        let body = json!({ "specversion": "1.0", "source": "test" });
        let body = match (body, event) {
            (Value::Object(mut body), Value::Object(event)) => {
                body.extend(event);
                Value::Object(body)
            }
            _ => unreachable!("both are objects"),
        };
        let (status, appended) = self.call(Method::POST, "/api/v1/events", Some(body.to_string().into_bytes())).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{appended}");
        appended["id"].as_str().unwrap().to_string()
    }

    /// The replay's answer, checked against `docs/openapi.json` and read
    /// back as the type the CLI reads (a dry run's answer as a dry run).
    async fn replay(&self, function: &str, event: &str, dry_run: bool) -> Value {
        let body = json!({ "event_id": event, "dry_run": dry_run }).to_string().into_bytes();
        let (status, answer) =
            self.call(Method::POST, &format!("/api/v1/functions/{function}/replay"), Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let doc = glassbox_api_types::openapi::Document::parse(glassbox_api::OPENAPI).unwrap();
        let schema = doc.answer("post", "/api/v1/functions/{name}/replay", 200).unwrap();
        let problems = doc.check(schema, &answer);
        assert!(problems.is_empty(), "{}\n{answer:#}", problems.join("\n"));
        match serde_json::from_value::<Replayed>(answer.clone()).unwrap() {
            Replayed::DryRun(_) => assert!(dry_run, "{answer:#}"),
            Replayed::Recorded(recorded) => {
                let invocation = recorded.invocation.unwrap_or_else(|| panic!("recorded: {answer:#}"));
                assert_eq!(invocation.invocation.key.replay_of.as_deref(), Some(event), "{answer:#}");
                assert!(!dry_run, "{answer:#}");
            }
        }
        answer
    }

    /// Every recorded event's id, and the ids on `event`'s chain.
    async fn recorded(&self, event: &str) -> (BTreeSet<String>, BTreeSet<String>) {
        let ids = |page: &Value| -> BTreeSet<String> {
            page["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
        };
        let (_, all) = self.call(Method::GET, "/api/v1/events?limit=1000", None).await;
        let (_, chain) = self.call(Method::GET, &format!("/api/v1/trace/{event}"), None).await;
        (ids(&all), ids(&chain))
    }

    async fn commands(&self, device: &str) -> Vec<Value> {
        let (_, listed) = self.call(Method::GET, &format!("/api/v1/devices/{device}/commands"), None).await;
        listed["commands"].as_array().unwrap().clone()
    }

    async fn shadow(&self, device: &str) -> Value {
        self.call(Method::GET, &format!("/api/v1/devices/{device}/shadow"), None).await.1
    }

    async fn stop(mut self) {
        self.running.take().unwrap().stop().await.unwrap();
    }
}

/// What a dry run's `would` lists besides the `listed` kinds: nothing.
fn nothing_else(would: &Value, listed: &[&str]) {
    for other in ["commands", "desired", "kv", "events", "requests"].into_iter().filter(|k| !listed.contains(k)) {
        assert_eq!(would[other], json!([]), "{other} in {would}");
    }
}

// The bug of issue 18, item 1: the dry run queued a real `fan` command.
#[tokio::test]
async fn a_dry_run_sends_no_command_and_lists_the_one_it_would_send() {
    let server = start_with(TOKEN, |_| {}).await;
    server.deploy("fan", "command", "trigger=event:fan.run").await;
    server.register("d1").await;
    let event = server.record(json!({ "type": "fan.check", "device": "d1" })).await;
    let before = server.recorded(&event).await;

    let dry = server.replay("fan", &event, true).await;
    assert_eq!((dry["outcome"].clone(), dry["dry_run"].clone()), (json!("succeeded"), json!(true)), "{dry}");
    assert_eq!(
        dry["would"]["commands"],
        json!([{ "device": "d1", "name": "fan", "payload": { "on": true }, "ttl": "1m" }])
    );
    nothing_else(&dry["would"], &["commands"]);
    assert_eq!(server.commands("d1").await, Vec::<Value>::new(), "no command queued");
    assert_eq!(server.recorded(&event).await, before, "no device.command.queued, nothing recorded");

    // A command the host would refuse is refused in the dry run too.
    let stranger = server.record(json!({ "type": "fan.check", "device": "nosuch" })).await;
    let refused = server.replay("fan", &stranger, true).await;
    assert_eq!((refused["outcome"].clone(), refused["would"]["commands"].clone()), (json!("failed"), json!([])));

    // A real replay still sends it.
    let real = server.replay("fan", &event, false).await;
    assert_eq!(real["outcome"], "succeeded", "{real}");
    let sent = server.commands("d1").await;
    assert_eq!((sent.len(), sent[0]["name"].clone()), (1, json!("fan")), "{sent:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_dry_run_sets_no_desired_state_and_reads_back_its_own() {
    let server = start_with(TOKEN, |_| {}).await;
    server.deploy("steer", "desired", "trigger=event:steer.run").await;
    server.register("d1").await;
    let event = server.record(json!({ "type": "steer.check", "device": "d1" })).await;
    let (shadow, before) = (server.shadow("d1").await, server.recorded(&event).await);
    assert_eq!((shadow["version"].clone(), shadow["desired"].clone()), (json!(0), json!({})), "{shadow}");

    let dry = server.replay("steer", &event, true).await;
    assert_eq!(dry["outcome"], "succeeded", "{dry}");
    let would = &dry["would"];
    assert_eq!(would["desired"], json!([{ "device": "d1", "state": { "fan": true }, "version": 1, "changed": true }]));
    // The shadow it read back holds its own write…
    let read = &would["events"][0];
    assert_eq!((read["type"].clone(), read["data"]["desired"].clone()), (json!("shadow.read"), json!({ "fan": true })));
    assert_eq!(would["events"].as_array().unwrap().len(), 1, "{would}");
    nothing_else(would, &["desired", "events"]);
    // …which is nowhere else.
    assert_eq!(server.shadow("d1").await, shadow, "the shadow is unchanged");
    assert_eq!(server.recorded(&event).await, before, "no device.shadow.updated, nothing recorded");

    let real = server.replay("steer", &event, false).await;
    assert_eq!(real["outcome"], "succeeded", "{real}");
    assert_eq!(server.shadow("d1").await["desired"], json!({ "fan": true }), "a real replay sets it");
    server.stop().await;
}

#[tokio::test]
async fn a_dry_run_writes_no_key_and_reads_back_its_own() {
    let server = start_with(TOKEN, |_| {}).await;
    server.deploy("remember", "remember", "trigger=event:remember.run").await;
    // A real run leaves "seen" = {"n":1}.
    server.record(json!({ "type": "remember.run", "data": { "n": 1 } })).await;
    let first = server.eventually("/api/v1/functions/remember/invocations", |b| b["invocations"].get(0).cloned()).await;
    assert_eq!(first["outcome"], "succeeded", "{first}");
    let event = server.record(json!({ "type": "remember.check", "data": { "n": 2 } })).await;
    let before = server.recorded(&event).await;

    let dry = server.replay("remember", &event, true).await;
    assert_eq!(dry["outcome"], "succeeded", "{dry}");
    let would = &dry["would"];
    assert_eq!(would["kv"], json!([{ "key": "seen", "value": "{\"n\":2}" }, { "key": "old", "deleted": true }]));
    // It read the real value, then its own write.
    let read: Vec<(Value, Value)> =
        would["events"].as_array().unwrap().iter().map(|e| (e["type"].clone(), e["data"].clone())).collect();
    assert_eq!(read, [(json!("kv.before"), json!({ "n": 1 })), (json!("kv.after"), json!({ "n": 2 }))]);
    nothing_else(would, &["kv", "events"]);
    assert_eq!(server.recorded(&event).await, before, "nothing recorded");

    // The store still holds the real run's value: a second dry run reads it.
    let again = server.replay("remember", &event, true).await;
    assert_eq!(again["would"]["events"][0]["data"], json!({ "n": 1 }), "the key is unchanged: {again}");
    // A real replay writes it.
    assert_eq!(server.replay("remember", &event, false).await["outcome"], "succeeded");
    let after = server.replay("remember", &event, true).await;
    assert_eq!(after["would"]["events"][0]["data"], json!({ "n": 2 }), "a real replay writes: {after}");
    server.stop().await;
}

#[tokio::test]
async fn a_dry_run_records_no_event_and_lists_the_ones_it_would_emit() {
    let server = start_with(TOKEN, |_| {}).await;
    server.deploy("echo", "echo", "trigger=event:echo.run").await;
    let event = server.record(json!({ "type": "echo.check", "subject": "s1", "data": { "x": 1 } })).await;
    let before = server.recorded(&event).await;

    let dry = server.replay("echo", &event, true).await;
    assert_eq!(dry["outcome"], "succeeded", "{dry}");
    assert_eq!(dry["would"]["events"], json!([{ "type": "test.echo", "subject": null, "data": { "x": 1 } }]));
    nothing_else(&dry["would"], &["events"]);
    assert_eq!(server.recorded(&event).await, before, "neither the output nor the invocation is recorded");

    let real = server.replay("echo", &event, false).await;
    assert_eq!(real["outputs"].as_array().map(Vec::len), Some(1), "a real replay records its output: {real}");
    let (all, chain) = server.recorded(&event).await;
    assert_eq!((all.len() - before.0.len(), chain.len() - before.1.len()), (2, 2), "the output and the invocation");
    server.stop().await;
}

// The same sandbox for HTTP functions: the replayed request's command is
// listed, not sent.
#[tokio::test]
async fn a_dry_run_of_an_http_request_sends_no_command() {
    let server = start_with(TOKEN, |_| {}).await;
    server.deploy("button", "http-command", "trigger=http:POST%20/button").await;
    server.register("d1").await;
    let response = reqwest::Client::new().post(format!("{}/button", server.http)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let event = response.headers()["x-glassbox-event-id"].to_str().unwrap().to_string();
    assert_eq!(server.commands("d1").await.len(), 1, "the request sent one");
    let before = server.recorded(&event).await;

    let dry = server.replay("button", &event, true).await;
    assert_eq!((dry["outcome"].clone(), dry["response"]["status"].clone()), (json!("succeeded"), json!(200)), "{dry}");
    assert_eq!(
        dry["would"]["commands"],
        json!([{ "device": "d1", "name": "fan", "payload": { "on": true }, "ttl": "1m" }])
    );
    nothing_else(&dry["would"], &["commands"]);
    assert_eq!(server.commands("d1").await.len(), 1, "no second command");
    assert_eq!(server.recorded(&event).await, before, "nothing recorded");

    assert_eq!(server.replay("button", &event, false).await["response"]["status"], 200);
    assert_eq!(server.commands("d1").await.len(), 2, "a real replay sends another");
    server.stop().await;
}
