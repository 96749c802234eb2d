//! A function's whole life over the real HTTP API: get, versions, promote
//! forward and back, rollback step by step, delete (refused with work in
//! hand, forced, purged), deploying the name again, and restarts after a
//! delete. Components are the runtime's WAT fixtures.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{Server, fixture, start_with};

const TOKEN: &str = "gbx_lifecycle_test_token";

impl Server {
    async fn deploy(&self, name: &str, fixture_name: &str, query: &str) -> Value {
        let path = format!("/api/v1/functions/{name}?{query}");
        let (status, body) = self.call(Method::POST, &path, Some(fixture(fixture_name))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    async fn promote(&self, name: &str, version: u32) -> (StatusCode, Value) {
        let body = json!({ "version": version }).to_string().into_bytes();
        self.call(Method::POST, &format!("/api/v1/functions/{name}/promote"), Some(body)).await
    }

    async fn rollback(&self, name: &str) -> (StatusCode, Value) {
        self.call(Method::POST, &format!("/api/v1/functions/{name}/rollback"), None).await
    }

    async fn delete(&self, name: &str, query: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, &format!("/api/v1/functions/{name}?{query}"), None).await
    }

    async fn events(&self, query: &str) -> Vec<Value> {
        let (_, page) = self.call(Method::GET, &format!("/api/v1/events?{query}&limit=1000"), None).await;
        page["events"].as_array().cloned().unwrap_or_default()
    }

    async fn post_items(&self, count: usize) {
        let items: Vec<Value> = (0..count)
            .map(|n| json!({"specversion": "1.0", "source": "test", "type": "work.item", "data": n}))
            .collect();
        let response = self
            .request(Method::POST, "/api/v1/events")
            .header("content-type", "application/cloudevents-batch+json")
            .body(serde_json::to_vec(&items).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }

    /// The outcomes recorded for `name` (invocations and dead letters), once
    /// there are `count` of them (waiting up to 10 s).
    async fn outcomes(&self, name: &str, count: usize) -> Vec<Value> {
        let query = format!("source=glassbox/functions/{name}&type=function.*");
        let outcome = |e: &Value| e["type"] == "function.invoked" || e["type"] == "function.dead_letter";
        let mut found = Vec::new();
        for _ in 0..200 {
            found = self.events(&query).await.into_iter().filter(outcome).collect();
            if found.len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        found
    }

    async fn stop(mut self) {
        self.running.take().unwrap().stop().await.unwrap();
    }
}

/// The event each outcome is about: one per event, none twice.
fn one_outcome_each(outcomes: &[Value]) -> usize {
    let about: HashSet<&str> = outcomes.iter().map(|o| o["causationid"].as_str().unwrap()).collect();
    assert_eq!(about.len(), outcomes.len(), "an event with two outcomes: {outcomes:#?}");
    about.len()
}

#[tokio::test]
async fn get_shows_the_live_version_whole_and_versions_lists_each_with_its_spec() {
    let server = start_with(TOKEN, |_| {}).await;
    server.deploy("job", "echo", "trigger=event:job.run&feature=billing").await;
    server.deploy("job", "ok", "trigger=event:job.run&timeout=2s&memory=32MiB&concurrency=2&rate=10/s").await;
    let (status, function) = server.call(Method::GET, "/api/v1/functions/job", None).await;
    assert_eq!(status, StatusCode::OK, "{function}");
    assert_eq!((function["state"].clone(), function["versions"].clone()), (json!("live"), json!(2)));
    let live = &function["live"];
    assert_eq!((live["version"].clone(), live["deployed_by"].clone()), (json!(2), json!("admin")));
    let spec = &live["spec"];
    assert_eq!(spec["triggers"], json!(["event:job.run"]));
    assert_eq!((spec["timeout_ms"].clone(), spec["memory_bytes"].clone()), (json!(2000), json!(32 << 20)));
    assert_eq!((spec["concurrency"].clone(), spec["rate_per_second"].clone()), (json!(2), json!(10.0)));
    assert!(spec["retries"].is_u64() && spec["max_age_ms"].is_u64() && spec["hop_limit"].is_u64(), "{spec}");
    assert!(live["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(function["in_flight"]["queued"], 0);

    let (_, body) = server.call(Method::GET, "/api/v1/functions/job/versions", None).await;
    let versions = body["versions"].as_array().unwrap();
    let numbers: Vec<u64> = versions.iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [2, 1], "newest first");
    assert_eq!((versions[1]["spec"]["feature"].clone(), versions[1]["live"].clone()), (json!("billing"), json!(false)));
    let (status, _) = server.call(Method::GET, "/api/v1/functions/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

/// Issue 18: after one rollback there was "nothing to roll back to", and
/// no way forward again.
#[tokio::test]
async fn promote_goes_forward_or_back_and_each_rollback_goes_one_version_further_back() {
    let server = start_with(TOKEN, |_| {}).await;
    for fixture_name in ["echo", "ok", "echo"] {
        server.deploy("job", fixture_name, "trigger=event:job.run").await;
    }
    let (status, back) = server.rollback("job").await;
    assert_eq!(status, StatusCode::OK, "{back}");
    assert_eq!(
        (back["from"].clone(), back["live"]["version"].clone(), back["changed"].clone()),
        (json!(3), json!(2), json!(true))
    );
    let (_, back) = server.rollback("job").await;
    assert_eq!((back["from"].clone(), back["live"]["version"].clone()), (json!(2), json!(1)), "rolled back twice");
    let (status, refused) = server.rollback("job").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(refused["error"]["message"].as_str().unwrap().contains("promote job VERSION"), "{refused}");

    let (status, forward) = server.promote("job", 3).await;
    assert_eq!(status, StatusCode::OK, "{forward}");
    let (_, function) = server.call(Method::GET, "/api/v1/functions/job", None).await;
    let time = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert!(time(&function["live_since"]) > time(&function["live"]["deployed_at"]), "since the promote: {function}");
    assert_eq!((forward["from"].clone(), forward["live"]["version"].clone()), (json!(1), json!(3)));
    let (status, same) = server.promote("job", 3).await;
    assert_eq!((status, same["changed"].clone(), same["from"].clone()), (StatusCode::OK, json!(false), json!(3)));
    let (status, unknown) = server.promote("job", 9).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(unknown["error"]["message"].as_str().unwrap().contains("has no version 9; it has 1, 2, 3"), "{unknown}");

    // The promoted version is the one that runs.
    let run = json!({"specversion": "1.0", "source": "test", "type": "job.run"}).to_string().into_bytes();
    server.call(Method::POST, "/api/v1/events", Some(run)).await;
    let ran = server.outcomes("job", 1).await;
    assert_eq!(ran[0]["data"]["version"], 3, "{ran:#?}");

    let promoted = server.events("type=function.promoted").await;
    assert_eq!(promoted.len(), 1, "a promote of the live version records nothing: {promoted:#?}");
    let data = &promoted[0]["data"];
    assert_eq!((data["from"].clone(), data["to"].clone(), data["by"].clone()), (json!(1), json!(3), json!("admin")));
    assert_eq!(server.events("type=function.rolled_back").await.len(), 2);
    server.stop().await;
}

/// Deleting with events queued is refused unless forced; forced, every
/// event the function had taken still gets one outcome (a run, or a dead
/// letter saying it was deleted), nothing runs it after, and a restart
/// takes nothing of it up.
#[tokio::test]
async fn delete_is_refused_with_work_in_hand_and_forced_gives_each_event_one_outcome() {
    let server = start_with(TOKEN, |_| {}).await;
    server.deploy("slow", "slow", "trigger=event:work.item&concurrency=1").await;
    server.post_items(40).await;
    server.outcomes("slow", 1).await;

    let (status, refused) = server.delete("slow", "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("queued") && message.contains("--force"), "{message}");

    let (status, deleted) = server.delete("slow", "force=true").await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!((deleted["version"].clone(), deleted["forced"].clone()), (json!(1), json!(true)));
    assert!(deleted["dropped"].as_u64().unwrap() > 0, "{deleted}");
    let outcomes = server.outcomes("slow", 40).await;
    assert_eq!(one_outcome_each(&outcomes), 40);
    let cleared = outcomes.iter().filter(|o| o["type"] == "function.dead_letter").collect::<Vec<_>>();
    assert!(!cleared.is_empty());
    assert!(
        cleared.iter().all(|o| o["data"]["reason"] == "cleared: function slow was deleted by admin"),
        "{cleared:#?}"
    );

    // Gone from the list and from the triggers; its history still answers.
    let (_, list) = server.call(Method::GET, "/api/v1/functions", None).await;
    assert_eq!(list["functions"], json!([]));
    let (_, function) = server.call(Method::GET, "/api/v1/functions/slow", None).await;
    assert_eq!((function["state"].clone(), function["live"].clone()), (json!("deleted"), Value::Null));
    let (status, _) = server.call(Method::GET, "/api/v1/functions/slow/invocations", None).await;
    assert_eq!(status, StatusCode::OK);
    server.post_items(5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.outcomes("slow", 40).await.len(), 40, "nothing runs a deleted function");
    let recorded = server.events("type=function.deleted").await;
    assert_eq!(recorded[0]["data"]["by"], "admin");

    let server = server.restart(|_| {}).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.events("type=function.resumed").await.is_empty(), "a deleted function is not taken up");
    assert_eq!(server.outcomes("slow", 40).await.len(), 40);
    server.stop().await;
}

/// Events handed back at a stop are taken up at the next start; deleted
/// then, they get their dead letter, and the start after resumes nothing.
#[tokio::test]
async fn work_taken_up_at_a_start_and_then_deleted_is_never_resumed_again() {
    let server = start_with(TOKEN, |_| {}).await;
    server.deploy("slow", "slow", "trigger=event:work.item&concurrency=1").await;
    server.post_items(60).await;
    server.outcomes("slow", 1).await;
    let server = server.restart(|_| {}).await;
    let (status, deleted) = server.delete("slow", "force=true").await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(one_outcome_each(&server.outcomes("slow", 60).await), 60);

    let server = server.restart(|_| {}).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.events("type=function.resumed").await.len() <= 1, "only the first restart took work up");
    assert_eq!(one_outcome_each(&server.outcomes("slow", 60).await), 60, "nothing ran twice");
    server.stop().await;
}

#[tokio::test]
async fn a_deleted_name_can_be_deployed_again_promoted_back_or_purged() {
    let server = start_with(TOKEN, |_| {}).await;
    server.deploy("job", "echo", "trigger=event:job.run").await;
    let (status, _) = server.delete("job", "").await;
    assert_eq!(status, StatusCode::OK, "nothing in hand: no --force needed");
    let (status, again) = server.delete("job", "").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(again["error"]["message"].as_str().unwrap().contains("deleted already"), "{again}");
    let (status, rollback) = server.rollback("job").await;
    assert_eq!(status, StatusCode::CONFLICT, "{rollback}");
    let replay = json!({"event_id": "01JD6Y8Q1W3N4ZV7K2M5P9R0ST", "dry_run": true}).to_string().into_bytes();
    let (status, refused) = server.call(Method::POST, "/api/v1/functions/job/replay", Some(replay)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused["error"]["message"].as_str().unwrap().contains("job is deleted: nothing is live"), "{refused}");

    // Deployed again, its numbers continue.
    let redeployed = server.deploy("job", "ok", "trigger=event:job.run").await;
    assert_eq!(redeployed["version"], 2);
    server.delete("job", "").await;
    let (status, back) = server.promote("job", 1).await;
    assert_eq!(status, StatusCode::OK, "a promote makes a deleted function live again: {back}");
    assert_eq!((back["from"].clone(), back["live"]["version"].clone()), (Value::Null, json!(1)));

    let (status, purged) = server.delete("job", "purge=true").await;
    assert_eq!((status, purged["purged"].clone()), (StatusCode::OK, json!(true)), "{purged}");
    let (status, _) = server.call(Method::GET, "/api/v1/functions/job/versions", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "purged: no versions left");
    assert_eq!(server.deploy("job", "echo", "trigger=event:job.run").await["version"], 1, "purged: numbers restart");
    let deleted = server.events("type=function.deleted").await;
    assert_eq!(deleted.len(), 3);
    let (status, unknown) = server.delete("nope", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");
    server.stop().await;
}

/// Events recorded while a function was deleted were no one's to run: a
/// start after it is deployed again does not take them up.
#[tokio::test]
async fn events_recorded_while_a_function_was_deleted_are_not_taken_up_after_a_redeploy() {
    let server = start_with(TOKEN, |_| {}).await;
    server.deploy("job", "ok", "trigger=event:work.item").await;
    server.delete("job", "").await;
    server.post_items(5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.deploy("job", "ok", "trigger=event:work.item").await;
    let server = server.restart(|_| {}).await;
    // One event after the start: once it has its outcome, the start's
    // resume is long done, and its outcome must be the only one.
    server.post_items(1).await;
    server.outcomes("job", 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let outcomes = server.outcomes("job", 1).await;
    let newest = server.events("type=work.item").await[0]["id"].clone();
    assert_eq!(outcomes[0]["data"]["event_id"], newest, "the outcome is the new event's: {outcomes:?}");
    assert_eq!(outcomes.len(), 1, "only the event after the start ran, none of the deleted time: {outcomes:?}");
    server.stop().await;
}
