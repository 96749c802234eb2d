//! `glassbox functions get|versions|promote|rollback|delete` through the
//! real binary against a real server: what a person reads, and the refusals.

use serde_json::json;

mod common;

use common::{TOKEN, cli, cli_json, glassbox, serve};

fn fixture(name: &str) -> String {
    format!("{}/../runtime/tests/fixtures/{name}.wat", env!("CARGO_MANIFEST_DIR"))
}

/// Runs the CLI expecting it to fail; returns what it said on stderr.
fn refused(served: &common::Served, args: &[&str]) -> String {
    let output =
        glassbox().args(args).env("GLASSBOX_SERVER", &served.url).env("GLASSBOX_TOKEN", TOKEN).output().unwrap();
    assert!(!output.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_function_is_read_promoted_rolled_back_and_deleted_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("data"));
    let (echo, ok) = (fixture("echo"), fixture("ok"));
    cli(&served, &["functions", "deploy", &echo, "--name", "fan", "--trigger", "event:fan.*", "--feature", "climate"]);
    cli(&served, &["functions", "deploy", &ok, "--name", "fan", "--trigger", "event:fan.*", "--timeout", "2s"]);

    let got = cli(&served, &["functions", "get", "fan"]);
    assert!(got.starts_with("fan: live at v2 (of 2, newest v2)"), "{got}");
    for line in ["triggers     event:fan.*", "timeout      2s", "memory       64.0 MiB", "in hand      nothing queued"]
    {
        assert!(got.contains(line), "{line:?} in {got}");
    }
    assert!(got.contains("by admin") && got.contains("sha256:"), "{got}");
    let whole = cli_json(&served, &["functions", "get", "fan", "--json"]);
    assert_eq!((whole["state"].clone(), whole["live"]["spec"]["timeout_ms"].clone()), (json!("live"), json!(2000)));

    let table = cli(&served, &["functions", "versions", "fan"]);
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("VERSION") && header.contains("LIMITS") && header.contains("FEATURE"), "{table}");
    let v1 = table.lines().find(|l| l.starts_with("1 ")).unwrap();
    assert!(v1.contains("climate") && v1.contains("timeout 5s") && v1.contains("admin"), "{table}");
    assert!(table.lines().find(|l| l.starts_with("2 ")).unwrap().contains("live"), "{table}");

    let back = cli(&served, &["functions", "rollback", "fan"]);
    assert!(back.starts_with("fan: rolled back to v1 (was v2)"), "{back}");
    assert!(refused(&served, &["functions", "rollback", "fan"]).contains("409 fan v1 is its oldest version"));
    let forward = cli(&served, &["functions", "promote", "fan", "2"]);
    assert!(forward.starts_with("fan: promoted to v2 (was v1)"), "{forward}");
    let same = cli(&served, &["functions", "promote", "fan", "2"]);
    assert!(same.starts_with("fan: v2 is live already") && same.contains("nothing changed"), "{same}");
    assert!(refused(&served, &["functions", "promote", "fan", "7"]).contains("fan has no version 7; it has 1, 2"));

    let deleted = cli(&served, &["functions", "delete", "fan"]);
    assert!(deleted.starts_with("deleted fan (v2 was live)"), "{deleted}");
    assert!(deleted.contains("versions are kept"), "{deleted}");
    assert!(cli(&served, &["functions", "get", "fan"]).starts_with("fan: deleted; 2 versions kept"));
    assert!(!cli(&served, &["functions", "list"]).contains("fan"));
    assert!(refused(&served, &["functions", "delete", "fan"]).contains("--purge"));
    let purged = cli_json(&served, &["functions", "delete", "fan", "--purge", "--json"]);
    assert_eq!((purged["purged"].clone(), purged["version"].clone()), (json!(true), json!(null)));
    assert!(refused(&served, &["functions", "get", "fan"]).contains("404"));

    let events = cli_json(&served, &["events", "query", "--type", "function.*", "--json"]);
    let mut kinds: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds, ["function.deleted", "function.deployed", "function.promoted", "function.rolled_back"]);
}
