//! Functions end to end: deploy over HTTP, trigger by MQTT and by event
//! type, invocations and outputs recorded on the chain, deadlines, the
//! recursion guard, rollback. Components are the runtime's WAT fixtures.

mod common;

use std::time::Duration;

use bytes::Bytes;
use glassbox_gateway::client::{self, Options};
use glassbox_gateway::codec::{Ack, Packet, Properties, Protocol, Publish, QoS};
use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{Server, fixture, start_with};

const TOKEN: &str = "gbx_functions_test_token";

async fn start() -> Server {
    start_with(TOKEN, |_| {}).await
}

impl Server {
    async fn deploy(&self, name: &str, fixture_name: &str, query: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, &format!("/api/v1/functions/{name}?{query}"), Some(fixture(fixture_name)))
            .await
    }

    async fn invocations(&self, name: &str, at_least: usize) -> Vec<Value> {
        for _ in 0..100 {
            let path = format!("/api/v1/functions/{name}/invocations?limit=1000");
            let (_, body) = self.call(reqwest::Method::GET, &path, None).await;
            let found = body["invocations"].as_array().cloned().unwrap_or_default();
            if found.len() >= at_least {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {at_least} invocations of {name}");
    }

    async fn events(&self, query: &str) -> Vec<Value> {
        let (_, page) = self.call(reqwest::Method::GET, &format!("/api/v1/events?{query}"), None).await;
        page["events"].as_array().cloned().unwrap_or_default()
    }

    /// Posts events as one batch; it must be accepted.
    async fn post_batch(&self, events: &[Value]) {
        let response = self
            .request(reqwest::Method::POST, "/api/v1/events")
            .header("content-type", "application/cloudevents-batch+json")
            .body(serde_json::to_vec(events).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }

    /// Events of a query, once there are some (waiting up to 5 s).
    async fn eventually_events(&self, query: &str) -> Vec<Value> {
        for _ in 0..100 {
            let found = self.events(query).await;
            if !found.is_empty() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Vec::new()
    }

    async fn stop(mut self) {
        self.running.take().unwrap().stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_device_message_triggers_the_function_and_its_output_joins_the_chain() {
    let server = start().await;
    let (status, deployed) = server.deploy("echo", "echo", "trigger=mqtt:devices/%2B/telemetry").await;
    assert_eq!(status, StatusCode::CREATED, "{deployed}");
    assert_eq!((deployed["name"].clone(), deployed["version"].clone()), (json!("echo"), json!(1)));
    assert!(deployed["digest"].as_str().unwrap().starts_with("sha256:"));

    let (_, device) =
        server.call(reqwest::Method::POST, "/api/v1/devices", Some(json!({"id": "t1"}).to_string().into_bytes())).await;
    let options = Options {
        username: Some("t1".into()),
        password: Some(device["secret"].as_str().unwrap().into()),
        protocol: Protocol::V5,
        ..Options::new("t1")
    };
    let (mut reader, mut writer, _) = client::connect(&server.mqtt, &options).await.unwrap();
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "devices/t1/telemetry".into(),
        packet_id: Some(1),
        properties: Properties::default(),
        payload: Bytes::from_static(b"{\"celsius\":21.5}"),
    };
    writer.send(&Packet::Publish(publish)).await.unwrap();
    writer.flush().await.unwrap();
    assert!(matches!(reader.next().await.unwrap(), Packet::PubAck(_)));

    let invocation = server.invocations("echo", 1).await.remove(0);
    assert_eq!(invocation["outcome"], "succeeded", "{invocation}");
    assert_eq!((invocation["version"].clone(), invocation["cold"].clone()), (json!(1), json!(true)));
    for field in ["event_id", "start", "queued_us", "instantiate_us", "wall_us", "cpu_us", "cost", "log_bytes"] {
        assert!(!invocation[field].is_null(), "{field} in {invocation}");
    }
    assert_eq!(invocation["memory_bytes"], 64 << 10, "the fixture's one page of memory");
    assert_eq!(invocation["logs"][0]["message"], "hello");

    // The output is an event caused by the device's message, on its chain.
    let outputs = server.events("type=test.echo").await;
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0]["data"], json!({"celsius": 21.5}), "the function echoed the data");
    assert_eq!(outputs[0]["causationid"], invocation["event_id"]);
    assert_eq!(outputs[0]["hop"], 1);
    let (_, chain) = server
        .call(reqwest::Method::GET, &format!("/api/v1/trace/{}", invocation["event_id"].as_str().unwrap()), None)
        .await;
    let types: Vec<&str> = chain["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    for ty in ["device.message", "test.echo", "function.invoked"] {
        assert!(types.contains(&ty), "{ty} in {types:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_self_triggering_function_stops_at_the_hop_limit_with_a_dead_letter() {
    let server = start().await;
    let (status, _) = server.deploy("loopy", "echo", "trigger=event:test.echo&hop_limit=5").await;
    assert_eq!(status, StatusCode::CREATED);
    // Start the loop with one event from outside.
    let seed = json!({"specversion": "1.0", "source": "test", "type": "test.echo", "data": {"n": 1}});
    let (status, _) = server.call(reqwest::Method::POST, "/api/v1/events", Some(seed.to_string().into_bytes())).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mut dead = Vec::new();
    for _ in 0..100 {
        dead = server.events("type=function.dead_letter").await;
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead.len(), 1, "one dead letter ends the loop");
    assert!(dead[0]["data"]["reason"].as_str().unwrap().starts_with("recursion_limit: hop 5"), "{}", dead[0]);
    let invocations = server.invocations("loopy", 5).await;
    assert_eq!(invocations.len(), 5, "hops 0 to 4 ran");
    let cold = invocations.iter().filter(|i| i["cold"] == true).count();
    assert_eq!(cold, 1, "one after the other, on one warm instance: {invocations:?}");
    server.stop().await;
}

#[tokio::test]
async fn reuse_1_gives_every_invocation_a_fresh_instance() {
    let server = start().await;
    let (status, _) = server.deploy("fresh", "echo", "trigger=event:test.fresh&reuse=1").await;
    assert_eq!(status, StatusCode::CREATED);
    for n in 0..3 {
        let event = json!({"specversion": "1.0", "source": "test", "type": "test.fresh", "data": {"n": n}});
        server.call(reqwest::Method::POST, "/api/v1/events", Some(event.to_string().into_bytes())).await;
    }
    let invocations = server.invocations("fresh", 3).await;
    assert!(invocations.iter().all(|i| i["cold"] == true && i["outcome"] == "succeeded"), "{invocations:?}");
    let (status, refused) = server.deploy("fresh", "echo", "trigger=event:test.fresh&reuse=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused["error"]["message"].as_str().unwrap().contains("reuse must be between 1"), "{refused}");
    server.stop().await;
}

#[tokio::test]
async fn deadlines_stop_a_loop_and_rollback_restores_the_previous_version() {
    let server = start().await;
    server.deploy("job", "echo", "trigger=event:job.run").await;
    let (status, v2) = server.deploy("job", "loop", "trigger=event:job.run&timeout=200ms&retries=0").await;
    assert_eq!((status, v2["version"].clone()), (StatusCode::CREATED, json!(2)));
    let run = json!({"specversion": "1.0", "source": "test", "type": "job.run"}).to_string().into_bytes();
    server.call(reqwest::Method::POST, "/api/v1/events", Some(run.clone())).await;
    let timed_out = server.invocations("job", 1).await.remove(0);
    assert_eq!((timed_out["outcome"].clone(), timed_out["version"].clone()), (json!("timed_out"), json!(2)));
    assert!(timed_out["wall_us"].as_u64().unwrap() < 2_000_000);
    let said = timed_out["logs"].as_array().unwrap().last().cloned().unwrap_or_default();
    let why = "invocation failed (attempt 1 of 1): timed_out: stopped at its deadline of 200ms";
    assert_eq!((said["level"].as_str(), said["message"].as_str()), (Some("error"), Some(why)), "{timed_out}");

    let (status, back) = server.call(reqwest::Method::POST, "/api/v1/functions/job/rollback", None).await;
    let live = &back["live"];
    assert_eq!((status, live["version"].clone(), live["live"].clone()), (StatusCode::OK, json!(1), json!(true)));
    server.call(reqwest::Method::POST, "/api/v1/events", Some(run)).await;
    let after = server.invocations("job", 2).await.remove(0);
    assert_eq!((after["outcome"].clone(), after["version"].clone()), (json!("succeeded"), json!(1)));
    // The event that timed out on v2, replayed against v1: a dry run records nothing…
    let original = timed_out["event_id"].as_str().unwrap().to_string();
    let replay = |body: Value| {
        server.call(reqwest::Method::POST, "/api/v1/functions/job/replay", Some(body.to_string().into_bytes()))
    };
    let (status, dry) = replay(json!({"event_id": original, "version": 1, "dry_run": true})).await;
    assert_eq!(
        (status, dry["outcome"].clone(), dry["dry_run"].clone()),
        (StatusCode::OK, json!("succeeded"), json!(true))
    );
    assert_eq!(dry["logs"][0]["message"], "hello");
    assert_eq!(server.invocations("job", 2).await.len(), 2, "nothing recorded");
    // …a real one is a new invocation linked to the original event.
    let (_, replayed) = replay(json!({"event_id": original, "version": 1})).await;
    assert_eq!((replayed["outcome"].clone(), replayed["replay_of"].clone()), (json!("succeeded"), json!(original)));
    let (_, chain) = server.call(reqwest::Method::GET, &format!("/api/v1/trace/{original}"), None).await;
    let invoked = chain["events"].as_array().unwrap().iter().filter(|e| e["type"] == "function.invoked").count();
    assert_eq!(invoked, 2, "the timed-out run and its replay, on the original's chain");
    let (status, _) = replay(json!({"event_id": original, "version": 9})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let deploys = server.events("type=function.*").await;
    let kinds: Vec<&str> = deploys.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"function.deployed") && kinds.contains(&"function.rolled_back"), "{kinds:?}");
    server.stop().await;
}

#[tokio::test]
async fn bad_deploys_are_refused_with_what_is_wrong() {
    let server = start().await;
    let refused = async |name: &str, body: Vec<u8>, query: &str| {
        let (status, body) =
            server.call(reqwest::Method::POST, &format!("/api/v1/functions/{name}?{query}"), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        body["error"]["message"].as_str().unwrap().to_string()
    };
    assert!(refused("m", b"(module)".to_vec(), "trigger=event:x").await.contains("not a WebAssembly component"));
    assert!(refused("w", b"(component)".to_vec(), "trigger=event:x").await.contains("event-handler world"));
    assert!(refused("t", fixture("ok"), "trigger=cron").await.contains("must be mqtt:"));
    assert!(refused("h", fixture("ok"), "trigger=http:GET%20/x").await.contains("wasi:http/proxy world"));
    assert!(refused("c", fixture("ok"), "trigger=event:x&concurrency=0").await.contains("concurrency"));
    assert!(refused("bad%20name", fixture("ok"), "trigger=event:x").await.contains("function name"));
    server.stop().await;
}

#[tokio::test]
async fn events_the_bus_skipped_are_read_back_and_trigger_exactly_once() {
    // A tiny bus (and commits as small, as the configuration requires): the
    // dispatcher falls behind on a burst and must catch up from the recorder.
    let server = start_with(TOKEN, |c| {
        c.recorder.bus_capacity = 2;
        c.recorder.batch_events_max = 2;
    })
    .await;
    let (status, _) = server.deploy("counter", "ok", "trigger=event:burst.*&concurrency=64").await;
    assert_eq!(status, StatusCode::CREATED);
    let burst: Vec<Value> = (0..200)
        .map(|n| json!({"specversion": "1.0", "source": "test", "type": "burst.tick", "data": {"n": n}}))
        .collect();
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/events", server.http))
        .bearer_auth(TOKEN)
        .header("content-type", "application/cloudevents-batch+json")
        .body(serde_json::to_vec(&burst).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let mut seen = 0;
    for _ in 0..100 {
        let (_, body) =
            server.call(reqwest::Method::GET, "/api/v1/functions/counter/invocations?limit=1000", None).await;
        seen = body["invocations"].as_array().map_or(0, Vec::len);
        if seen >= 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, body) = server.call(reqwest::Method::GET, "/api/v1/functions/counter/invocations?limit=1000", None).await;
    let invocations = body["invocations"].as_array().unwrap();
    let mut triggers: Vec<&str> = invocations.iter().map(|i| i["event_id"].as_str().unwrap()).collect();
    triggers.sort();
    triggers.dedup();
    assert_eq!((seen, invocations.len(), triggers.len()), (200, 200, 200), "each event once");
    server.stop().await;
}

#[tokio::test]
async fn a_failing_invocation_is_retried_with_backoff_then_dead_lettered() {
    let server = start().await;
    let (status, _) = server.deploy("flaky", "fail", "trigger=event:work.item&retries=2").await;
    assert_eq!(status, StatusCode::CREATED);
    let item = json!({"specversion": "1.0", "source": "test", "type": "work.item"}).to_string().into_bytes();
    server.call(reqwest::Method::POST, "/api/v1/events", Some(item)).await;
    let attempts = server.invocations("flaky", 3).await;
    let mut numbers: Vec<u64> = attempts.iter().map(|i| i["attempt"].as_u64().unwrap()).collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2, 3]);
    assert!(attempts.iter().all(|i| i["outcome"] == "failed" && i["error"] == "bad input"));
    let mut dead = Vec::new();
    for _ in 0..50 {
        dead = server.events("type=function.dead_letter").await;
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["data"]["reason"], "failed after 3 attempt(s): failed: bad input");
    assert_eq!(dead[0]["data"]["version"], 1);
    assert_eq!(dead[0]["data"]["event"], attempts[0]["event_id"], "the original event, for replay");
    // Metrics are derived from the recorded events, a moment after them.
    let failed = r#"glassbox_function_invocations_total{function="flaky",outcome="failed"} 3"#;
    let dead_letters = r#"glassbox_function_dead_letters_total{function="flaky"} 1"#;
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = server.request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
        if metrics.contains(failed) && metrics.contains(dead_letters) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(metrics.contains(failed) && metrics.contains(dead_letters), "{metrics}");
    // The server times each invocation from queue to durable record itself.
    let timed = "glassbox_function_dispatch_to_recorded_seconds_count 3";
    assert!(metrics.contains(timed), "{metrics}");
    server.stop().await;
}

/// Issue 18: a failure was only in `trace` and `--json`. Invocations are
/// listed by outcome, with their error, and each failed attempt writes an
/// ERROR line (the platform's, not the guest's) that `logs --level error` shows.
#[tokio::test]
async fn failed_invocations_are_listed_by_outcome_and_logged_as_errors() {
    let server = start().await;
    server.deploy("flaky", "fail", "trigger=event:work.item&retries=1").await;
    server.deploy("fine", "echo", "trigger=event:work.item").await;
    let item = json!({"specversion": "1.0", "source": "test", "type": "work.item"}).to_string().into_bytes();
    server.call(reqwest::Method::POST, "/api/v1/events", Some(item)).await;
    server.invocations("flaky", 2).await;
    server.invocations("fine", 1).await;

    let list = async |query: &str| server.call(reqwest::Method::GET, &format!("/api/v1/functions/{query}"), None).await;
    let (status, failed) = list("flaky/invocations?outcome=failed").await;
    assert_eq!(status, StatusCode::OK, "{failed}");
    let failed = failed["invocations"].as_array().unwrap();
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|i| i["outcome"] == "failed" && i["error"] == "bad input"), "{failed:?}");
    assert!(failed.iter().all(|i| i["log_bytes"] == 0), "the platform's line is not the guest's: {failed:?}");
    let (_, none) = list("fine/invocations?outcome=failed,trapped,timed_out").await;
    assert_eq!(none["invocations"], json!([]));
    let (_, ok) = list("fine/invocations?outcome=succeeded").await;
    assert_eq!(ok["invocations"].as_array().unwrap().len(), 1);
    let (status, refused) = list("fine/invocations?outcome=crashed").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let problem = &refused["error"]["problems"][0];
    assert_eq!(problem["field"], "outcome");
    let accepted = "give one or more of succeeded, failed, trapped, timed_out, memory_exceeded, output_too_large";
    assert!(problem["message"].as_str().unwrap().contains(accepted), "{refused}");

    let (status, logs) = server.call(reqwest::Method::GET, "/api/v1/logs?function=flaky&level=error", None).await;
    assert_eq!(status, StatusCode::OK, "{logs}");
    let lines = logs["lines"].as_array().unwrap();
    let said: Vec<&str> = lines.iter().map(|l| l["message"].as_str().unwrap()).collect();
    assert_eq!(
        said,
        [
            "invocation failed (attempt 1 of 2): failed: bad input",
            "invocation failed (attempt 2 of 2): failed: bad input"
        ]
    );
    for line in lines {
        assert_eq!((line["level"].as_str(), line["source"].as_str()), (Some("error"), Some("platform")));
        assert_eq!(line["correlationid"], failed[0]["event_id"], "the chain of the event: {line}");
    }
    let (_, guest) = server.call(reqwest::Method::GET, "/api/v1/logs?function=flaky&source=function", None).await;
    assert_eq!(guest["lines"], json!([]), "fail.wat logs nothing itself");
    server.stop().await;
}

/// The newcomer's path: a device's message runs a function that commands
/// the device; `trace` shows the whole chain with the invocation and its
/// logs, and `logs` finds the lines by chain, function and device.
#[tokio::test]
async fn a_command_a_function_sends_joins_the_chain_and_trace_and_logs_show_it() {
    let server = start().await;
    let (status, deployed) = server.deploy("fan", "command", "trigger=mqtt:devices/%2B/telemetry").await;
    assert_eq!(status, StatusCode::CREATED, "{deployed}");
    let (_, device) =
        server.call(reqwest::Method::POST, "/api/v1/devices", Some(json!({"id": "d1"}).to_string().into_bytes())).await;
    let options = Options {
        username: Some("d1".into()),
        password: Some(device["secret"].as_str().unwrap().into()),
        protocol: Protocol::V5,
        ..Options::new("d1")
    };
    let commands = "$glassbox/devices/d1/commands/#";
    let (mut reader, mut writer) = common::subscribed(&server.mqtt, &options, commands, QoS::AtLeastOnce).await;
    writer.send(&common::publish("devices/d1/telemetry", &b"{\"celsius\":31.5}"[..], 2)).await.unwrap();
    writer.flush().await.unwrap();

    // The device gets the command and answers it.
    let command = loop {
        match tokio::time::timeout(Duration::from_secs(5), reader.next()).await.unwrap().unwrap() {
            Packet::Publish(p) if p.topic.starts_with("$glassbox/devices/d1/commands/") => break p,
            _ => continue,
        }
    };
    writer.send(&Packet::PubAck(Ack::new(command.packet_id.unwrap()))).await.unwrap();
    let body: Value = serde_json::from_slice(&command.payload).unwrap();
    assert_eq!((body["name"].clone(), body["payload"].clone()), (json!("fan"), json!({"on": true})));
    let answer = json!({"id": body["id"], "status": "succeeded"}).to_string();
    let response = Publish {
        topic: body["response_topic"].as_str().unwrap().into(),
        packet_id: Some(3),
        payload: Bytes::from(answer),
        ..command.clone()
    };
    writer.send(&Packet::Publish(response)).await.unwrap();
    writer.flush().await.unwrap();

    // The trace from the command's id reaches back to the device's message.
    let command_id = body["id"].as_str().unwrap();
    let mut chain = Value::Null;
    for _ in 0..100 {
        chain = server.call(reqwest::Method::GET, &format!("/api/v1/trace/{command_id}"), None).await.1;
        let types: Vec<&str> =
            chain["events"].as_array().into_iter().flatten().filter_map(|e| e["type"].as_str()).collect();
        if types.contains(&"device.command.succeeded") && types.contains(&"function.invoked") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let types: Vec<&str> = chain["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    for ty in ["device.message", "function.invoked", "device.command.queued", "device.command.succeeded"] {
        assert!(types.contains(&ty), "{ty} in {types:?}");
    }
    // Who did each: the function issued it through its host services, the device answered it.
    let principal = |ty: &str| {
        let events = chain["events"].as_array().unwrap();
        events.iter().find(|e| e["type"] == ty).map(|e| e["data"]["principal"].clone()).unwrap_or_default()
    };
    assert_eq!(principal("device.command.queued"), json!({"kind": "function", "name": "fan", "auth": "internal"}));
    let answered = principal("device.command.succeeded");
    assert_eq!(
        (answered["kind"].clone(), answered["name"].clone(), answered["auth"].clone()),
        (json!("device"), json!("d1"), json!("device_secret")),
        "{answered}"
    );
    assert!(answered["source"].as_str().is_some_and(|s| s.starts_with("127.0.0.1:")), "{answered}");
    let invocations = chain["invocations"].as_array().unwrap();
    assert_eq!(invocations.len(), 1, "{chain}");
    let invocation = &invocations[0];
    assert_eq!((invocation["function"].clone(), invocation["version"].clone()), (json!("fan"), json!(1)));
    assert_eq!(invocation["outcome"], "succeeded");
    assert!(invocation["start"].is_string() && invocation["wall_us"].is_u64(), "{invocation}");
    assert_eq!(invocation["logs"][0]["message"], "sending fan");

    // The function's log line, by chain, by function and by device.
    let correlation = chain["correlationid"].as_str().unwrap();
    for filter in [format!("correlation={correlation}"), "function=fan".into(), "device=d1&source=function".into()] {
        let (status, logs) = server.call(reqwest::Method::GET, &format!("/api/v1/logs?{filter}"), None).await;
        assert_eq!(status, StatusCode::OK, "{logs}");
        let lines = logs["lines"].as_array().unwrap();
        let line = lines.iter().find(|l| l["message"] == "sending fan").unwrap_or_else(|| panic!("{filter}: {logs}"));
        assert_eq!((line["function"].clone(), line["device"].clone()), (json!("fan"), json!("d1")));
        assert_eq!(line["correlationid"], correlation);
    }
    let (_, quiet) = server.call(reqwest::Method::GET, "/api/v1/logs?function=fan&level=warn", None).await;
    assert_eq!(quiet["lines"], json!([]), "info lines are below warn");

    // The metrics derived from those events (a moment after them), as time series.
    let (mut status, mut metric) = (StatusCode::OK, Value::Null);
    for _ in 0..100 {
        let query = "/api/v1/metrics/function_invocations?since=5m&step=10s&by=function,outcome";
        (status, metric) = server.call(reqwest::Method::GET, query, None).await;
        let (_, commands) = server.call(reqwest::Method::GET, "/api/v1/metrics/commands?state=succeeded", None).await;
        if metric["series"].as_array().is_some_and(|s| !s.is_empty()) && commands["series"] != json!([]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, StatusCode::OK, "{metric}");
    let series = &metric["series"][0];
    assert_eq!(series["labels"], json!({"function": "fan", "outcome": "succeeded"}), "{metric}");
    let total: u64 = series["points"].as_array().unwrap().iter().map(|p| p["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 1);
    let (_, commands) = server.call(reqwest::Method::GET, "/api/v1/metrics/commands?since=5m&by=state", None).await;
    let states: Vec<&str> =
        commands["series"].as_array().unwrap().iter().map(|s| s["labels"]["state"].as_str().unwrap()).collect();
    for state in ["queued", "succeeded"] {
        assert!(states.contains(&state), "{state} in {states:?}");
    }
    let (status, _) = server.call(reqwest::Method::GET, "/api/v1/metrics/function_invocations?by=colour", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server.call(reqwest::Method::GET, "/api/v1/metrics/nosuch", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn bad_log_filters_are_named() {
    let server = start().await;
    let (status, body) =
        server.call(reqwest::Method::GET, "/api/v1/logs?level=loud&since=yesterday&limit=0", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let fields: Vec<&str> =
        body["error"]["problems"].as_array().unwrap().iter().map(|p| p["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["level", "since", "limit"]);
    let (status, _) = server.call(reqwest::Method::GET, "/api/v1/logs?function=nosuch", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.call(reqwest::Method::GET, "/api/v1/logs?colour=red", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.stop().await;
}

#[tokio::test]
async fn a_scheduled_function_runs_on_its_schedule_with_a_traceable_event() {
    let server = start().await;
    let (status, deployed) = server.deploy("tick", "ok", "trigger=schedule:@every%201s").await;
    assert_eq!(status, StatusCode::CREATED, "{deployed}");
    let invocations = server.invocations("tick", 2).await;
    assert!(invocations.iter().all(|i| i["outcome"] == "succeeded"));
    let fired = server.events("type=schedule.fired").await;
    assert!(fired.len() >= 2, "{fired:?}");
    assert_eq!(
        (fired[0]["subject"].clone(), fired[0]["data"]["trigger"].clone()),
        (json!("tick"), json!("schedule:@every 1s"))
    );
    let ids: Vec<&str> = fired.iter().filter_map(|e| e["id"].as_str()).collect();
    assert!(
        invocations.iter().all(|i| ids.contains(&i["event_id"].as_str().unwrap())),
        "each run is caused by a fired event"
    );
    let (status, refused) = server.deploy("bad", "ok", "trigger=schedule:61%20*%20*%20*%20*").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused["error"]["message"].as_str().unwrap().contains("minute field"), "{refused}");
    server.stop().await;
}

#[tokio::test]
async fn a_rate_limit_spaces_invocations_and_bad_rates_are_refused() {
    let server = start().await;
    let (status, deployed) = server.deploy("paced", "ok", "trigger=event:work.item&rate=4/s").await;
    assert_eq!(status, StatusCode::CREATED, "{deployed}");
    assert_eq!(deployed["spec"]["rate_per_second"], 4.0);
    let item = json!({"specversion": "1.0", "source": "test", "type": "work.item"}).to_string().into_bytes();
    for _ in 0..5 {
        server.call(reqwest::Method::POST, "/api/v1/events", Some(item.clone())).await;
    }
    let invocations = server.invocations("paced", 5).await;
    let mut starts: Vec<chrono::DateTime<chrono::Utc>> =
        invocations.iter().map(|i| i["start"].as_str().unwrap().parse().unwrap()).collect();
    starts.sort();
    let span = (starts[4] - starts[0]).num_milliseconds();
    assert!(span >= 900, "5 starts at 4/s take at least 1 s, took {span} ms");
    let (status, refused) = server.deploy("bad", "ok", "trigger=event:x&rate=5/fortnight").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused["error"]["message"].as_str().unwrap().contains("/s, /m or /h"), "{refused}");
    server.stop().await;
}

/// A stop with a backlog hands it back, recorded as such; the next start
/// runs each event the stop left, and none that already ran, once.
#[tokio::test]
async fn a_backlog_left_at_a_stop_runs_once_at_the_next_start() {
    let server = start().await;
    let (status, _) = server.deploy("slow", "slow", "trigger=event:work.item&concurrency=1").await;
    assert_eq!(status, StatusCode::CREATED);
    let items: Vec<Value> =
        (0..60).map(|n| json!({"specversion": "1.0", "source": "test", "type": "work.item", "data": n})).collect();
    server.post_batch(&items).await;
    server.invocations("slow", 1).await;
    let server = server.restart(|_| {}).await;

    let handed = server.events("type=function.handed_back").await;
    assert_eq!(handed.len(), 1, "{handed:#?}");
    let data = &handed[0]["data"];
    let left = ["queued", "retrying", "running"].iter().map(|k| data[k].as_u64().unwrap()).sum::<u64>();
    assert!(left > 0 && data["function"] == "slow", "{data}");
    assert_eq!(data["reason"], "the server stopped");
    let resumed = server.eventually_events("type=function.resumed").await;
    assert_eq!(resumed.len(), 1, "{resumed:#?}");
    assert_eq!(resumed[0]["data"]["events"].as_u64(), Some(left), "what was handed back is what is taken up");

    let invocations = server.invocations("slow", 60).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = server.restart(|_| {}).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, body) = server.call(reqwest::Method::GET, "/api/v1/functions/slow/invocations?limit=1000", None).await;
    let after = body["invocations"].as_array().unwrap();
    let mut triggers: Vec<&str> = after.iter().map(|i| i["event_id"].as_str().unwrap()).collect();
    triggers.sort();
    triggers.dedup();
    assert_eq!((invocations.len(), after.len(), triggers.len()), (60, 60, 60), "each event once, across two restarts");
    assert_eq!(server.events("type=function.resumed").await.len(), 1, "the second restart found nothing unfinished");
    server.stop().await;
}

/// A burst larger than a function's queue waits in the recorder (the
/// backlog) instead of being dead-lettered: every event runs once.
#[tokio::test]
async fn a_burst_past_the_queue_waits_in_the_backlog_and_runs_once() {
    let server = start().await;
    let (status, _) = server.deploy("steady", "ok", "trigger=event:burst.big&concurrency=1").await;
    assert_eq!(status, StatusCode::CREATED);
    let burst: Vec<Value> =
        (0..2500).map(|n| json!({"specversion": "1.0", "source": "t", "type": "burst.big", "data": n})).collect();
    server.post_batch(&burst).await;
    // Metrics are derived from the invocation records.
    let ran = r#"glassbox_function_invocations_total{function="steady",outcome="succeeded"} "#;
    let mut count = 0;
    for _ in 0..200 {
        let text = server.request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
        count = text.lines().find_map(|l| l.strip_prefix(ran)).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        if count >= 2500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count, 2500, "every event of the burst ran");
    assert!(server.events("type=function.dead_letter").await.is_empty(), "none dead-lettered");
    server.stop().await;
}
