//! `glassbox tokens …` against a real server, and the token used as the
//! docs show it: curl with the bearer token, and `mosquitto_sub` logging
//! in with the token's name and the token (docs/security.md).

mod common;

use std::process::Command;

use common::{TOKEN, cli, cli_json, glassbox, serve};
use serde_json::Value;

fn mqtt_port(served: &common::Served) -> String {
    served.mqtt.rsplit(':').next().unwrap().to_string()
}

#[test]
fn tokens_are_created_once_listed_used_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path());
    let created = cli_json(&served, &["tokens", "create", "watcher", "--role", "viewer", "--expires", "90d", "--json"]);
    let keys: Vec<&String> = created.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["expires", "name", "role", "token"], "exactly these keys: {created}");
    assert_eq!((created["name"].as_str(), created["role"].as_str()), (Some("watcher"), Some("viewer")));
    let token = created["token"].as_str().unwrap().to_string();

    let curl = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("{}/api/v1/devices", served.url))
        .output()
        .unwrap();
    let devices: Value = serde_json::from_slice(&curl.stdout).unwrap();
    assert!(devices["devices"].is_array(), "{devices}");

    let port = mqtt_port(&served);
    let retained = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port, "-u", "operator", "-P", TOKEN])
        .args(["-t", "devices/pump-1/state", "-r", "-q", "1", "-m", "on"])
        .status()
        .unwrap();
    assert!(retained.success(), "the admin token still logs in as operator");
    let subscribe = || {
        Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port, "-u", "watcher", "-P", &token])
            .args(["-t", "devices/#", "-v", "-C", "1", "-W", "10"])
            .output()
            .unwrap()
    };
    let heard = subscribe();
    assert_eq!(String::from_utf8_lossy(&heard.stdout).trim(), "devices/pump-1/state on");

    let list = cli_json(&served, &["tokens", "list", "--json"]);
    assert_eq!(list[0]["name"], "watcher");
    assert_eq!(list[0]["created_by"], "admin");
    assert!(list[0]["last_used"].is_string(), "{list}");
    assert!(!list.to_string().contains(&token), "never listed");
    let table = cli(&served, &["tokens", "list"]);
    assert!(table.contains("watcher") && table.contains("viewer") && table.contains("LAST USED"), "{table}");

    assert!(cli(&served, &["tokens", "revoke", "watcher"]).contains("revoked token watcher"));
    assert!(!subscribe().status.success(), "a revoked token logs in no more");
}

#[test]
fn an_unknown_role_is_refused_before_asking_naming_the_valid_ones() {
    let output = glassbox().args(["tokens", "create", "ci", "--role", "root"]).output().unwrap();
    assert!(!output.status.success());
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(errors.contains("admin, operator, deployer, viewer, ingest, device-provisioner"), "{errors}");
}

#[test]
fn tokens_help_teaches_with_examples() {
    let output = glassbox().args(["tokens", "create", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for taught in ["glassbox tokens create ci --role deployer --expires 90d", "mosquitto_sub", "device-provisioner"] {
        assert!(help.contains(taught), "{taught} in:\n{help}");
    }
}
