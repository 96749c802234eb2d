//! The audit log through a running server: checkpoints signed as changes
//! come and posted to the `[audit]` webhook, verifiable with the key the
//! API gives; the chain continued across a restart with the same key, and
//! a checkpoint signed at shutdown.

mod common;

use std::time::Duration;

use glassbox_audit::{Checkpoint, VerifierKey};
use reqwest::{Method, StatusCode};
use serde_json::json;

use common::{Server, start_with, webhook};

const TOKEN: &str = "gbx_audit_test_token";

async fn create_device(server: &Server, id: &str) {
    let (status, body) =
        server.call(Method::POST, "/api/v1/devices", Some(json!({"id": id}).to_string().into_bytes())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn key(server: &Server) -> VerifierKey {
    let (_, list) = server.call(Method::GET, "/api/v1/audit/checkpoints", None).await;
    list["key"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn checkpoints_reach_the_webhook_signed_with_the_logs_key() {
    let (hook, mut posted) = webhook().await;
    let server = start_with(TOKEN, |config| {
        config.audit.webhook = hook;
        config.audit.checkpoint_entries = 2;
        config.audit.checkpoint_interval = Duration::from_secs(3600);
    })
    .await;
    create_device(&server, "th-1").await;
    create_device(&server, "th-2").await;
    let note =
        tokio::time::timeout(Duration::from_secs(15), posted.recv()).await.expect("a checkpoint is posted").unwrap();
    let checkpoint = Checkpoint::open(&note, &key(&server).await).expect("signed with the log's key");
    assert_eq!(checkpoint.size, 2);
    let (_, latest) = server.call(Method::GET, "/api/v1/audit/checkpoint", None).await;
    assert_eq!(latest["note"], note.as_str());
}

#[tokio::test]
async fn the_chain_continues_across_a_restart_and_the_stop_signs_a_checkpoint() {
    let server = start_with(TOKEN, |_| {}).await;
    create_device(&server, "th-1").await;
    let before = key(&server).await;
    let server = server.restart(|_| {}).await;
    let (_, kept) = server.call(Method::GET, "/api/v1/audit/checkpoints", None).await;
    assert_eq!(kept["checkpoints"][0]["size"], 1, "signed at the stop: {kept}");
    create_device(&server, "th-2").await;
    assert_eq!(key(&server).await, before, "the same key after a restart");

    let (status, page) = server.call(Method::GET, "/api/v1/audit?target=device:th-2", None).await;
    assert_eq!(status, StatusCode::OK);
    let second = &page["entries"][0];
    let (_, all) = server.call(Method::GET, "/api/v1/audit", None).await;
    let first = &all["entries"][0];
    assert_eq!((first["seq"].as_u64(), second["seq"].as_u64()), (Some(1), Some(2)), "{all}");
    assert_eq!(second["prev"], first["hash"], "chained across the restart");
    let (status, proof) = server.call(Method::GET, "/api/v1/audit/2/proof", None).await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    assert_eq!(proof["checkpoint"]["size"], 2);
    let (status, missing) = server.call(Method::GET, "/api/v1/audit/9/proof", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    let (status, bad) = server.call(Method::GET, "/api/v1/audit?limit=0", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
}

#[tokio::test]
async fn a_producer_cannot_write_an_audit_entry_and_a_deploy_is_one() {
    let server = start_with(TOKEN, |_| {}).await;
    // An event claiming to be an admin's token creation, sent in as any producer may.
    let forged = json!({"specversion": "1.0", "id": "f-1", "source": "glassbox/tokens", "type": "token.created",
        "data": {"actor": "admin", "principal": {"kind": "admin", "name": "admin", "auth": "bearer_token"},
                 "name": "backdoor", "role": "admin", "expires": null}});
    let (status, body) = server.call(Method::POST, "/api/v1/events", Some(forged.to_string().into_bytes())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let path = "/api/v1/functions/work?trigger=event:work.item";
    let (status, body) = server.call(Method::POST, path, Some(common::fixture("ok"))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let budget = json!({"limit": {"measure": "invocations", "amount": 50}, "per": "1m", "action": "stop"});
    let (status, body) = server.call(Method::PUT, "/api/v1/budgets/work", Some(budget.to_string().into_bytes())).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (_, page) = server.call(Method::GET, "/api/v1/audit", None).await;
    let actions: Vec<&str> =
        page["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["function.deploy", "budget.set"], "the forged event is recorded, but is no entry: {page}");
    assert_eq!(page["entries"][1]["target"], "budget:work");
    assert_eq!(page["entries"][0]["target"], "function:work");
    assert_eq!(page["entries"][0]["actor"], "admin");
}
