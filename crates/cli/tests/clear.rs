//! Clear from the command line, as a newcomer would (issue 23): a failing
//! function's dead letters listed, redriven after a fix and traced on their
//! chains; a retained message cleared so a new `mosquitto_sub` gets nothing.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{TOKEN, cli, cli_json, serve};
use serde_json::Value;

fn fixture(name: &str) -> String {
    format!("{}/../runtime/tests/fixtures/{name}.wat", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn three_dead_letters_are_redriven_after_a_fix_and_each_succeeds_on_its_chain() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("data"));
    let deploy = |name: &str, extra: &[&str]| {
        let mut args = vec!["functions", "deploy", name, "--name", "worker", "--trigger", "event:work.item"];
        args.extend_from_slice(extra);
        cli(&served, &args);
    };
    deploy(&fixture("fail"), &["--retries", "0"]);
    for _ in 0..3 {
        cli(&served, &["events", "send", "--source", "shop", "--type", "work.item"]);
    }
    let mut listed = Value::Null;
    for _ in 0..100 {
        listed = cli_json(&served, &["functions", "dead-letters", "worker", "--json"]);
        if listed["dead_letters"].as_array().is_some_and(|d| d.len() == 3) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let events: Vec<String> =
        listed["dead_letters"].as_array().unwrap().iter().map(|d| d["event_id"].as_str().unwrap().into()).collect();
    assert_eq!(events.len(), 3, "{listed:#}");
    let table = cli(&served, &["functions", "dead-letters", "worker"]);
    assert!(table.contains("3 dead letters") && table.contains("bad input"), "{table}");

    deploy(&fixture("ok"), &[]);
    let redriven = cli_json(&served, &["functions", "redrive", "worker", "--rate", "20/s", "--json"]);
    assert_eq!(redriven["cleared"], 3, "{redriven:#}");
    let empty = cli(&served, &["functions", "dead-letters", "worker"]);
    assert!(empty.contains("worker has no dead letters"), "{empty}");
    for event in &events {
        let trace = cli(&served, &["trace", event]);
        assert!(trace.contains("function.dead_letter_cleared"), "the clearing is on the chain: {trace}");
        let chain = cli_json(&served, &["trace", event, "--json"]);
        let succeeded = chain["events"].as_array().unwrap().iter().filter(|e| {
            e["type"] == "function.invoked" && e["data"]["outcome"] == "succeeded" && e["data"]["version"] == 2
        });
        assert_eq!(succeeded.count(), 1, "v2 succeeded on the chain of {event}: {chain:#}");
    }
}

#[test]
fn a_cleared_retained_message_reaches_no_new_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("data"));
    let (host, port) = served.mqtt.rsplit_once(':').unwrap();
    let operator = ["-h", host, "-p", port, "-u", "operator", "-P", TOKEN];
    let published = Command::new("mosquitto_pub")
        .args(operator)
        .args(["-i", "setter", "-t", "site/name", "-m", "north", "-r", "-q", "1"])
        .status()
        .unwrap();
    assert!(published.success());
    let listed = cli(&served, &["mqtt", "retained"]);
    assert!(listed.contains("site/name") && listed.contains("setter"), "{listed}");
    let cleared = cli(&served, &["mqtt", "retained", "clear", "site/#"]);
    assert!(cleared.contains("cleared 1 retained message"), "{cleared}");

    // -W 2: wait two seconds for a message; a retained one would come at once.
    let late = Command::new("mosquitto_sub")
        .args(operator)
        .args(["-i", "late", "-t", "site/#", "-C", "1", "-W", "2"])
        .output()
        .unwrap();
    assert!(!late.status.success() && late.stdout.is_empty(), "nothing retained: {late:?}");
    let recorded = cli_json(&served, &["events", "query", "--type", "mqtt.retained_cleared", "--json"]);
    assert_eq!(recorded[0]["data"]["topics"][0], "site/name", "{recorded:#}");
}
