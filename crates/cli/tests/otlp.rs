//! OpenTelemetry export end to end: `glassbox serve --otlp-endpoint` sends
//! spans and function logs to a real OTLP/HTTP receiver
//! (`scripts/otlp_receiver.py`, decoding with the OpenTelemetry project's
//! protobuf definitions). A message published by `mosquitto_pub` with an
//! MQTT 5 `traceparent` user property continues the caller's trace through
//! the function it triggers and the command that function sends.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{cli, cli_json, serve_with};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

struct Receiver {
    child: Child,
    url: String,
    out: std::path::PathBuf,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_receiver(dir: &std::path::Path) -> Receiver {
    let ok = Command::new("python3").args(["-c", "import opentelemetry.proto"]).status().is_ok_and(|s| s.success());
    assert!(ok, "this test needs the OTLP message definitions: pip install opentelemetry-proto (scripts/test does)");
    let out = dir.join("received.jsonl");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/otlp_receiver.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg("0")
        .arg(&out)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the receiver starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().strip_prefix("listening on ").expect("the receiver says its port").to_string();
    Receiver { child, url: format!("http://127.0.0.1:{port}"), out }
}

/// What the receiver has received so far.
fn received(receiver: &Receiver) -> Vec<Value> {
    let text = std::fs::read_to_string(&receiver.out).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn find<'a>(items: &'a [Value], signal: &str, name: &str) -> Option<&'a Value> {
    items.iter().find(|i| i["signal"] == signal && (i["name"] == name || i["body"] == name))
}

#[test]
fn spans_and_logs_reach_an_otlp_receiver_on_the_callers_trace() {
    let found = Command::new("mosquitto_pub").arg("--help").output().is_ok();
    assert!(found, "this test needs mosquitto_pub: install Debian's mosquitto-clients (scripts/test does)");
    let dir = tempfile::tempdir().unwrap();
    let receiver = start_receiver(dir.path());
    let served = serve_with(&dir.path().join("data"), &["--otlp-endpoint", &receiver.url]);
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../runtime/tests/fixtures/command.wat");
    cli(&served, &["functions", "deploy", fixture, "--name", "fan", "--trigger", "mqtt:devices/+/telemetry"]);
    let device = cli_json(&served, &["devices", "create", "d1", "--json"]);
    let secret = device["secret"].as_str().unwrap();
    let (host, port) = served.mqtt.rsplit_once(':').unwrap();
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let published = Command::new("mosquitto_pub")
        .args(["-h", host, "-p", port, "-V", "mqttv5", "-q", "1", "-i", "d1", "-u", "d1", "-P", secret])
        .args(["-t", "devices/d1/telemetry", "-m", r#"{"celsius":31.5}"#])
        .args(["-D", "publish", "user-property", "traceparent", &traceparent])
        .status()
        .unwrap();
    assert!(published.success());

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut items = Vec::new();
    while Instant::now() < deadline {
        items = received(&receiver);
        if ["device.message", "invoke fan", "device.command.queued", "sending fan"]
            .iter()
            .all(|name| items.iter().any(|i| i["name"] == *name || i["body"] == *name))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let message = find(&items, "span", "device.message").unwrap_or_else(|| panic!("no message span in {items:?}"));
    assert_eq!(message["trace_id"], TRACE_ID, "the caller's trace continues");
    assert_eq!(message["parent_span_id"], CALLER_SPAN, "under the caller's span");
    assert_eq!(message["service"], "glassbox");
    assert_eq!(message["attributes"]["glassbox.device"], "d1");

    let invocation = find(&items, "span", "invoke fan").unwrap_or_else(|| panic!("no invocation span in {items:?}"));
    assert_eq!(invocation["trace_id"], TRACE_ID);
    assert_eq!(invocation["parent_span_id"], message["span_id"], "the invocation is a child of the message");
    assert_eq!(invocation["attributes"]["glassbox.outcome"], "succeeded");
    assert_eq!(invocation["status"]["code"], 1, "ok");
    assert!(invocation["end_ns"].as_u64() >= invocation["start_ns"].as_u64());

    let command = find(&items, "span", "device.command.queued").unwrap();
    assert_eq!(
        (command["trace_id"].clone(), command["parent_span_id"].clone()),
        (TRACE_ID.into(), message["span_id"].clone())
    );

    let log = find(&items, "log", "sending fan").unwrap_or_else(|| panic!("no log record in {items:?}"));
    assert_eq!((log["trace_id"].clone(), log["span_id"].clone()), (TRACE_ID.into(), invocation["span_id"].clone()));
    assert_eq!(log["severity"], "INFO");

    // The same trace is what `glassbox trace` shows.
    let event_id = message["attributes"]["glassbox.event.id"].as_str().unwrap();
    let chain = cli_json(&served, &["trace", event_id, "--json"]);
    let traceparents: Vec<&str> =
        chain["events"].as_array().unwrap().iter().filter_map(|e| e["traceparent"].as_str()).collect();
    assert!(traceparents.iter().all(|tp| tp.contains(TRACE_ID)), "{traceparents:?}");
    let metrics = reqwest_metrics(&served.url);
    assert!(metrics.contains("glassbox_otlp_spans_exported_total"), "{metrics}");
}

fn reqwest_metrics(url: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let metrics = reqwest::Client::new().get(format!("{url}/metrics")).bearer_auth(common::TOKEN);
    runtime.block_on(async { metrics.send().await.unwrap().text().await.unwrap() })
}

#[test]
fn an_unreachable_endpoint_drops_and_counts_without_slowing_ingest() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 9 of loopback (discard; closed here).
    let served = serve_with(&dir.path().join("data"), &["--otlp-endpoint", "http://127.0.0.1:9"]);
    let started = Instant::now();
    for n in 0..20 {
        cli(
            &served,
            &["events", "send", "--source", "meter", "--type", "reading", "--data", &format!("{{\"n\":{n}}}")],
        );
    }
    let sent_in = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut metrics = String::new();
    while Instant::now() < deadline {
        metrics = reqwest_metrics(&served.url);
        if metrics.lines().any(|l| l.starts_with("glassbox_otlp_dropped_total ") && !l.ends_with(" 0")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(metrics.contains("glassbox_otlp_failed_requests_total 1"), "{metrics}");
    assert!(!metrics.contains("glassbox_otlp_dropped_total 0"), "{metrics}");
    let page = cli_json(&served, &["events", "query", "--type", "reading", "--json"]);
    assert_eq!(page.as_array().map(Vec::len), Some(20), "every event recorded: {sent_in:?}");
}
