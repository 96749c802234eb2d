//! The real `glassbox` binary end to end: `serve` on a free port, the CLI
//! commands against it, and recovery after SIGKILL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

mod common;

use common::{TOKEN, cli, cli_json, glassbox, serve};

#[test]
fn send_query_get_and_trace_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path());
    let sent = cli_json(
        &served,
        &[
            "events",
            "send",
            "--source",
            "cli",
            "--type",
            "order.created",
            "--device",
            "pump-1",
            "--data",
            r#"{"n":1}"#,
            "--json",
        ],
    );
    let id = sent["id"].as_str().unwrap().to_string();
    let child = cli_json(
        &served,
        &["events", "send", "--source", "cli", "--type", "invoice.issued", "--causation", &id, "--json"],
    );

    // Issue 18: a causation naming no recorded event started a new chain.
    let unknown = "01KBZZZZZZZZZZZZZZZZZZZZZZ";
    let refused = glassbox()
        .args(["events", "send", "--source", "cli", "--type", "orphan", "--causation", unknown])
        .env("GLASSBOX_SERVER", &served.url)
        .env("GLASSBOX_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("names no recorded event"), "{stderr}");

    let by_correlation = cli_json(&served, &["events", "query", "--correlation", &id, "--json"]);
    let events = by_correlation.as_array().expect("a JSON array");
    assert_eq!(events.len(), 2);
    for e in events {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["correlationid"], id.as_str());
        assert_eq!(e["states"][0]["state"], "received");
        assert!(e["states"][0]["at"].is_string());
    }
    let by_device = cli_json(&served, &["events", "query", "--device", "pump-1", "--json"]);
    assert_eq!(by_device[0]["id"], id.as_str());
    let by_type = cli_json(&served, &["events", "query", "--type", "invoice.issued", "--json"]);
    assert_eq!(by_type[0]["id"], child["id"]);

    let got = cli_json(&served, &["events", "get", &id, "--json"]);
    assert_eq!(got["data"]["n"], 1);

    let trace = cli_json(&served, &["trace", child["id"].as_str().unwrap(), "--json"]);
    assert_eq!(trace["correlationid"], id.as_str());
    assert_eq!(trace["events"].as_array().unwrap().len(), 2);

    let tree = cli(&served, &["trace", &id]);
    assert!(tree.contains("order.created") && tree.contains("invoice.issued"), "{tree}");
    assert!(tree.contains("received"), "{tree}");
    let table = cli(&served, &["events", "query"]);
    assert!(table.starts_with("ID") && table.contains("pump-1"), "{table}");
}

#[test]
fn devices_are_created_with_a_secret_and_managed_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path());
    let created = cli_json(&served, &["devices", "create", "thermo-1", "--json"]);
    assert_eq!(created["id"], "thermo-1");
    assert!(created["secret"].as_str().unwrap().starts_with("gbxd_"));
    let disabled = cli_json(&served, &["devices", "disable", "thermo-1", "--json"]);
    assert_eq!(disabled["disabled"], true);
    let listed = cli_json(&served, &["devices", "list", "--json"]);
    assert_eq!(listed[0]["id"], "thermo-1");
    let table = cli(&served, &["devices", "list"]);
    assert!(table.contains("thermo-1") && table.contains("disabled"), "{table}");
    cli(&served, &["devices", "delete", "thermo-1"]);
    let history = cli_json(&served, &["events", "query", "--device", "thermo-1", "--type", "device.*", "--json"]);
    assert_eq!(history.as_array().unwrap().len(), 3, "registered, disabled, deleted: {history}");
}

#[test]
fn cli_errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path());
    let output = glassbox()
        .args(["events", "query"])
        .env("GLASSBOX_SERVER", &served.url)
        .env_remove("GLASSBOX_TOKEN")
        .env_remove("GLASSBOX_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("401") && stderr.contains("GLASSBOX_TOKEN"), "{stderr}");

    let output = glassbox().args(["events", "query", "--server", "http://127.0.0.1:9"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot reach") && stderr.contains("glassbox serve"), "{stderr}");
}

#[test]
fn every_acknowledged_event_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path());
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = served.url.clone();
    let producers: Vec<_> = (0..8)
        .map(|p| {
            let (acked, url) = (acked.clone(), url.clone());
            runtime.spawn(async move {
                let client = reqwest::Client::new();
                for n in 0.. {
                    let body = json!({ "specversion": "1.0", "source": format!("producer-{p}"), "type": "tick", "data": { "n": n } });
                    let sent = client
                        .post(format!("{url}/api/v1/events"))
                        .bearer_auth(TOKEN)
                        .header("content-type", "application/cloudevents+json")
                        .body(body.to_string())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 202 => {
                            let answer: Value = r.json().await.unwrap();
                            acked.lock().unwrap().push(answer["id"].as_str().unwrap().to_string());
                        }
                        _ => break,
                    }
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 500 {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(served); // SIGKILL, mid-stream
    runtime.block_on(async {
        for producer in producers {
            let _ = producer.await;
        }
    });
    let acked = acked.lock().unwrap().clone();

    let served = serve(dir.path());
    let client = reqwest::Client::new();
    let missing: Vec<&String> =
        acked.iter().filter(|id| !runtime.block_on(recorded(&client, &served.url, id))).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events lost: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}

async fn recorded(client: &reqwest::Client, url: &str, id: &str) -> bool {
    let response = client.get(format!("{url}/api/v1/events/{id}")).bearer_auth(TOKEN).send().await.unwrap();
    response.status() == 200
}

#[test]
fn functions_are_deployed_invoked_and_listed_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("data"));
    let echo = concat!(env!("CARGO_MANIFEST_DIR"), "/../runtime/tests/fixtures/echo.wat");
    let deployed =
        cli_json(&served, &["functions", "deploy", echo, "--name", "echo", "--trigger", "event:reading.*", "--json"]);
    assert_eq!((deployed["name"].clone(), deployed["version"].clone()), (json!("echo"), json!(1)));
    assert!(deployed["digest"].as_str().unwrap().starts_with("sha256:"));
    cli(&served, &["events", "send", "--source", "meter", "--type", "reading.taken", "--data", r#"{"kwh":3}"#]);
    let mut invocations = Value::Null;
    for _ in 0..100 {
        invocations = cli_json(&served, &["functions", "invocations", "echo", "--json"]);
        if invocations.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let first = &invocations[0];
    for field in ["event_id", "version", "outcome", "start", "instantiate_us", "wall_us", "cost"] {
        assert!(!first[field].is_null(), "{field} in {first}");
    }
    assert_eq!(first["outcome"], "succeeded");

    // The trace names the invocation with its logs; `logs` finds the line by chain.
    let trace = cli_json(&served, &["trace", first["event_id"].as_str().unwrap(), "--json"]);
    let invocation = &trace["invocations"][0];
    for field in ["function", "version", "start", "wall_us", "outcome", "logs"] {
        assert!(!invocation[field].is_null(), "{field} in {invocation}");
    }
    assert_eq!(invocation["logs"][0]["message"], "hello");
    let tree = cli(&served, &["trace", first["event_id"].as_str().unwrap()]);
    assert!(tree.contains("fn echo@1  succeeded") && tree.contains("hello"), "{tree}");
    let correlation = trace["correlationid"].as_str().unwrap();
    let logs = cli_json(&served, &["logs", "--correlation", correlation, "--json"]);
    let line = &logs["lines"][0];
    assert_eq!((line["message"].clone(), line["function"].clone()), (json!("hello"), json!("echo")), "{logs}");
    let text = cli(&served, &["logs", "--function", "echo"]);
    assert!(text.contains("INFO") && text.contains("fn echo@1") && text.contains("hello"), "{text}");

    // The derived metrics and the live view see the invocation.
    let mut metric = Value::Null;
    for _ in 0..100 {
        metric = cli_json(&served, &["metrics", "function_invocations", "--by", "function", "--since", "5m", "--json"]);
        if metric["series"].as_array().is_some_and(|s| !s.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(metric["series"][0]["labels"]["function"], "echo", "{metric}");
    let table = cli(&served, &["metrics", "function_invocations", "--by", "function,outcome", "--since", "5m"]);
    assert!(table.contains("function=echo outcome=succeeded"), "{table}");
    let frame = cli(&served, &["monitor", "--once"]);
    assert!(frame.contains("function invocations") && frame.contains("echo"), "{frame}");
    assert!(frame.contains("LATENCY  1 invocation in the last minute"), "{frame}");
    assert!(frame.contains("ANOMALIES  none active"), "{frame}");

    // Diagnosis says what it cannot see yet: the detectors are still learning.
    let words = cli(&served, &["diagnose", "--function", "echo"]);
    assert!(words.contains("Nothing abnormal about function echo in the last 1 h."), "{words}");
    let diagnosis = cli_json(&served, &["diagnose", "--json"]);
    assert_eq!(diagnosis["incidents"], json!([]));

    // What it cost, from the same records.
    let cost = cli_json(&served, &["cost", "--by", "function", "--since", "5m", "--json"]);
    assert_eq!((cost[0]["function"].clone(), cost[0]["invocations"].clone()), (json!("echo"), json!(1)), "{cost}");
    assert!(cost[0]["cost"].as_f64().unwrap() > 0.0);
    let by_feature = cli(&served, &["cost", "--by", "feature", "--since", "5m"]);
    assert!(by_feature.contains("none") && by_feature.contains("100.0%"), "{by_feature}");

    let listed = cli(&served, &["functions", "list"]);
    assert!(listed.contains("echo") && listed.contains("live"), "{listed}");
    let refused = glassbox()
        .args(["functions", "rollback", "echo"])
        .env("GLASSBOX_SERVER", &served.url)
        .env("GLASSBOX_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("nothing to roll back to"));
}

/// Issue 18: a failure was only in `trace` and `--json`. `invocations`
/// lists failures with their error, `logs --level error` shows the
/// platform's line about each, and `monitor` points at the list.
#[test]
fn function_failures_are_listed_logged_and_pointed_at() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("data"));
    let fail = concat!(env!("CARGO_MANIFEST_DIR"), "/../runtime/tests/fixtures/fail.wat");
    cli(&served, &["functions", "deploy", fail, "--name", "flaky", "--trigger", "event:work.*", "--retries", "0"]);
    cli(&served, &["events", "send", "--source", "cli", "--type", "work.item", "--device", "d1"]);
    let mut table = String::new();
    for _ in 0..100 {
        table = cli(&served, &["functions", "invocations", "flaky", "--errors"]);
        if table.lines().count() > 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let header = table.lines().next().unwrap();
    assert!(header.contains("OUTCOME") && header.ends_with("ERROR"), "{table}");
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(row.contains("failed") && row.ends_with("bad input"), "{table}");
    let succeeded = cli(&served, &["functions", "invocations", "flaky", "--outcome", "succeeded"]);
    assert_eq!(succeeded.lines().count(), 1, "only the header: {succeeded}");

    let logs = cli(&served, &["logs", "--function", "flaky", "--level", "error"]);
    let event = row.split_whitespace().rev().nth(2).unwrap();
    assert!(
        logs.contains("ERROR  fn flaky@1 (platform)  d1  invocation failed (attempt 1 of 1): failed: bad input"),
        "{logs}"
    );
    assert!(logs.contains(&format!("correlation={event}")), "{event} in {logs}");

    let pointer = "→ glassbox functions invocations flaky --errors";
    let mut frame = String::new();
    for _ in 0..100 {
        frame = cli(&served, &["monitor", "--once"]);
        if frame.contains(pointer) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let line = frame.lines().find(|l| l.starts_with("flaky ")).unwrap_or_else(|| panic!("{frame}"));
    assert!(line.contains("100.0%") && line.ends_with(pointer), "{frame}");
}

/// Issue 18: `control send --wait` to an offline device printed nothing and
/// waited out the whole TTL. Now it says at once that the command is
/// queued and why, and when --wait-timeout passes, where it is and how to
/// follow it (exit 124).
#[test]
fn control_send_wait_to_an_offline_device_says_queued_and_how_to_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path());
    cli(&served, &["devices", "create", "d1"]);
    let started = std::time::Instant::now();
    let output = glassbox()
        .args(["control", "send", "d1", "fan", "--wait", "--wait-timeout", "1s"])
        .env("GLASSBOX_SERVER", &served.url)
        .env("GLASSBOX_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(124), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(started.elapsed() < Duration::from_secs(30), "it ends after --wait-timeout, not the TTL");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("command ")
            && lines[0].contains(" fan → d1: queued (d1 is offline: it is sent when d1 connects"),
        "{stdout}"
    );
    let id = lines[0].split_whitespace().nth(1).unwrap();
    assert!(lines[1].starts_with("still queued after 1s (the command goes on until it expires at "), "{stdout}");
    assert_eq!(lines[2], format!("  follow it: glassbox control command {id} --wait"));
    let command = cli_json(&served, &["control", "command", id, "--json"]);
    assert_eq!(command["state"], "queued", "the wait ended, the command did not");
}

/// `control send --wait --json`: a JSON line at once, then one per step as
/// the device connects, acknowledges and answers; exit 0 when it succeeded.
#[test]
fn control_send_wait_prints_each_step_as_the_device_takes_it() {
    use glassbox_gateway::client::{self, Options};
    use glassbox_gateway::codec::{Ack, Packet, Properties, Protocol, Publish, QoS, Subscribe, SubscriptionOptions};
    use std::io::BufRead;

    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path());
    let secret = cli_json(&served, &["devices", "create", "d1", "--json"])["secret"].as_str().unwrap().to_string();
    let mut child = glassbox()
        .args(["control", "send", "d1", "flush", "--payload", r#"{"seconds":5}"#, "--wait", "--wait-timeout", "60s"])
        .arg("--json")
        .env("GLASSBOX_SERVER", &served.url)
        .env("GLASSBOX_TOKEN", TOKEN)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, steps) = std::sync::mpsc::channel::<Value>();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = lines.send(serde_json::from_str(&line).unwrap_or(Value::String(line)));
        }
    });
    let next = || steps.recv_timeout(Duration::from_secs(20)).expect("a line within 20 s");
    // At once, before the device is anywhere.
    let queued = next();
    assert_eq!((queued["state"].as_str(), queued["finished"].as_bool()), (Some("queued"), Some(false)), "{queued}");
    assert!(queued["detail"].as_str().unwrap().starts_with("d1 is offline"), "{queued}");
    let id = queued["id"].as_str().unwrap().to_string();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let options =
        Options { username: Some("d1".into()), password: Some(secret), protocol: Protocol::V5, ..Options::new("d1") };
    let (mut reader, mut writer, _) = runtime.block_on(client::connect(&served.mqtt, &options)).unwrap();
    let filters = vec![("$glassbox/devices/d1/commands/#".to_string(), SubscriptionOptions::qos(QoS::AtLeastOnce))];
    let command = runtime.block_on(async {
        let subscribe = Subscribe { packet_id: 1, properties: Properties::default(), filters };
        writer.send(&Packet::Subscribe(subscribe)).await.unwrap();
        writer.flush().await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), reader.next()).await.unwrap().unwrap() {
                Packet::Publish(p) => break p,
                _ => continue,
            }
        }
    });
    let in_transit = next();
    assert_eq!((in_transit["state"].as_str(), in_transit["id"].as_str()), (Some("in_transit"), Some(id.as_str())));
    assert_eq!(in_transit["detail"], "sent on $glassbox/devices/d1/commands/flush");
    runtime.block_on(async {
        writer.send(&Packet::PubAck(Ack::new(command.packet_id.unwrap()))).await.unwrap();
        writer.flush().await.unwrap();
    });
    let delivered = next();
    assert_eq!(
        (delivered["state"].as_str(), delivered["detail"].as_str()),
        (Some("delivered"), Some("d1 acknowledged it"))
    );
    let answer = json!({"id": id, "status": "succeeded", "result": {"flushed": true}}).to_string();
    let response = Publish {
        topic: "$glassbox/devices/d1/commands/flush/response".into(),
        packet_id: Some(2),
        payload: answer.into(),
        ..command
    };
    runtime.block_on(async {
        writer.send(&Packet::Publish(response)).await.unwrap();
        writer.flush().await.unwrap();
    });
    let succeeded = next();
    assert_eq!((succeeded["state"].as_str(), succeeded["finished"].as_bool()), (Some("succeeded"), Some(true)));
    assert_eq!(succeeded["response"], json!({"flushed": true}));
    assert!(child.wait().unwrap().success());
}

#[test]
fn bench_functions_reports_invocation_figures() {
    let output = glassbox().args(["bench", "functions", "--invocations", "200", "--threads", "1"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let last = stdout.lines().last().unwrap();
    let figure = |key: &str| -> f64 {
        last.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in {last}"))
            .parse()
            .unwrap()
    };
    assert!(figure("invocations_per_sec=") > 0.0);
    assert!(figure("p50_us=") > 0.0 && figure("p50_us=") <= figure("p99_us="), "{last}");
}

#[test]
fn a_simulated_fleet_registers_talks_and_answers_commands() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path());
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../runtime/tests/fixtures/command.wat");
    cli(&served, &["functions", "deploy", fixture, "--name", "fan", "--trigger", "mqtt:devices/+/telemetry"]);
    let out = cli(
        &served,
        &[
            "simulate",
            "--devices",
            "3",
            "--mqtt",
            &served.mqtt,
            "--interval",
            "1s",
            "--duration",
            "6s",
            "--sleepy",
            "0",
            "--flaky",
            "0",
        ],
    );
    assert!(out.contains("simulating 3 devices"), "{out}");
    let devices = cli_json(&served, &["devices", "list", "--tag", "simulated=true", "--json"]);
    assert_eq!(devices.as_array().map(Vec::len), Some(3), "{devices}");
    for id in ["sim-0", "sim-1", "sim-2"] {
        let messages = cli_json(&served, &["events", "query", "--device", id, "--type", "device.message", "--json"]);
        assert!(messages.as_array().is_some_and(|m| m.len() >= 3), "{id} talked: {messages}");
    }
    let answered = cli_json(&served, &["events", "query", "--type", "device.command.*", "--json"]);
    let types: Vec<&str> = answered.as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(types.contains(&"device.command.succeeded") || types.contains(&"device.command.failed"), "{types:?}");
}

/// `glassbox … | head`: the reader leaves early; the command ends quietly
/// and successfully, whether it writes through `println!` or `io::Write`.
#[test]
fn output_cut_short_by_its_reader_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("series.csv");
    let rows: String = (0..20_000).map(|i| format!("{},{}\n", 1_700_000_000 + i * 10, 20 + i % 7)).collect();
    std::fs::write(&csv, format!("timestamp,value\n{rows}")).unwrap();
    let backtest = ["anomaly", "backtest", "--input", csv.to_str().unwrap(), "--output", "-"];
    assert_ends_quietly(glassbox().args(backtest));

    let served = serve(&dir.path().join("data"));
    let batch: Vec<Value> = (0..400)
        .map(|n| json!({ "specversion": "1.0", "source": "cli-test", "type": "reading", "data": { "n": n, "pad": "x".repeat(200) } }))
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        let client = reqwest::Client::new();
        let sent = client
            .post(format!("{}/api/v1/events", served.url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/cloudevents-batch+json")
            .body(Value::Array(batch).to_string())
            .send()
            .await
            .unwrap();
        sent.status()
    });
    assert_eq!(status, 202);
    let mut query = glassbox();
    query
        .args(["events", "query", "--limit", "400", "--json"])
        .env("GLASSBOX_SERVER", &served.url)
        .env("GLASSBOX_TOKEN", TOKEN);
    assert_ends_quietly(&mut query);
}

/// Runs `command`, reads a line of its output (more than a pipe holds is
/// coming) and closes the pipe.
fn assert_ends_quietly(command: &mut std::process::Command) {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(!first.is_empty(), "no output");
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.is_empty(), "{:?}: {stderr}", output.status);
}
