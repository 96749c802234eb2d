//! Cost control from the command line, as a newcomer would (issue 22's
//! "done when"): a budget of 50 invocations a minute with `--action stop`
//! on a function, 200 messages published with `mosquitto_pub`: 50
//! invocations, 150 drops recorded with reason `budget_exceeded`, seen
//! through the CLI; `functions idle` lists a function never invoked and
//! not one that runs; a retired function's trigger runs nothing (across a
//! restart too), and after `restore` it runs again.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{TOKEN, cli, cli_json, glassbox, serve};
use serde_json::Value;

fn fixture(name: &str) -> String {
    format!("{}/../runtime/tests/fixtures/{name}.wat", env!("CARGO_MANIFEST_DIR"))
}

/// Waits for the start of the next minute when less than 20 s of this one
/// are left, so the 200 messages fall in one 1m window (windows start on
/// the minute).
fn clear_of_the_minute_boundary() {
    let second = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() % 60;
    if second >= 40 {
        std::thread::sleep(Duration::from_secs(61 - second));
    }
}

/// Publishes `n` JSON messages at QoS 1 with `mosquitto_pub -l` and `login`
/// (its login and protocol options) to `topic`; returns its stderr and whether it succeeded.
fn mosquitto_pub(mqtt: &str, login: &[&str], topic: &str, n: usize) -> (String, bool) {
    let (host, port) = mqtt.rsplit_once(':').unwrap();
    let mut publisher = Command::new("mosquitto_pub")
        .args(["-h", host, "-p", port, "-q", "1", "-t", topic, "-l"])
        .args(login)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = publisher.stdin.take().unwrap();
    for i in 0..n {
        writeln!(stdin, "{{\"n\": {i}}}").unwrap();
    }
    drop(stdin);
    let out = publisher.wait_with_output().unwrap();
    (String::from_utf8_lossy(&out.stderr).into_owned(), out.status.success())
}

/// Publishes `n` messages on `topic` as the operator.
fn publish(mqtt: &str, topic: &str, n: usize) {
    let (stderr, ok) = mosquitto_pub(mqtt, &["-u", "operator", "-P", TOKEN, "-i", "meter"], topic, n);
    assert!(ok, "{stderr}");
}

fn count(served: &common::Served, ty: &str) -> Vec<Value> {
    let found = cli_json(served, &["events", "query", "--type", ty, "--limit", "1000", "--json"]);
    found.as_array().cloned().unwrap_or_default()
}

#[test]
fn a_stop_budget_of_50_a_minute_runs_50_of_200_messages_and_drops_150_as_budget_exceeded() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("data"));
    cli(&served, &["functions", "deploy", &fixture("ok"), "--name", "meter", "--trigger", "mqtt:meters/#"]);
    let set = cli(&served, &["budgets", "set", "meter", "--invocations", "50", "--per", "1m", "--action", "stop"]);
    assert_eq!(set.trim(), "budget on meter: 50 invocations per 1m, action stop, recorded at 50%, 80%, 100%");

    clear_of_the_minute_boundary();
    publish(&served.mqtt, "meters/m-1", 200);
    let mut budget = Value::Null;
    for _ in 0..200 {
        budget = cli_json(&served, &["budgets", "get", "meter", "--json"]);
        let window = &budget["window"];
        if window["ran"] == 50 && window["refused"] == 150 && count(&served, "function.dropped").len() == 150 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!((&budget["window"]["admitted"], &budget["window"]["refused"]), (&50.into(), &150.into()), "{budget:#}");
    assert_eq!(budget["window"]["percent"], 100.0, "{budget:#}");

    let dropped = count(&served, "function.dropped");
    assert_eq!(dropped.len(), 150);
    assert!(dropped.iter().all(|d| d["data"]["reason"] == "budget_exceeded" && d["data"]["function"] == "meter"));
    let detail = dropped[0]["data"]["detail"].as_str().unwrap();
    assert!(detail.starts_with("budget_exceeded: budget meter of 50 invocations per 1m used (50), until "), "{detail}");
    let invoked = count(&served, "function.invoked");
    assert_eq!(invoked.len(), 50, "50 ran");
    let reached: Vec<i64> =
        count(&served, "budget.threshold_reached").iter().filter_map(|r| r["data"]["percent"].as_i64()).collect();
    assert_eq!(reached.len(), 3, "50%, 80% and 100%, once each: {reached:?}");
    let set_record = count(&served, "budget.set");
    assert_eq!(set_record[0]["data"]["principal"]["kind"], "admin", "{:#}", set_record[0]);

    let table = cli(&served, &["cost", "--since", "5m"]);
    assert!(table.contains("TARGET") && table.contains("meter") && table.contains("50 (100%)"), "{table}");
    assert!(table.contains("now, until"), "exhausted: {table}");
    // Beside each total, the window before it; then what drives the cost.
    assert!(table.contains("PREVIOUS $") && table.contains("new"), "a trend: {table}");
    assert!(table.contains("top chains") && table.contains("TRIGGER SOURCE"), "{table}");
    assert!(table.contains("from 50 invocation records"), "{table}");
    let json = cli_json(&served, &["cost", "--since", "5m", "--json"]);
    assert_eq!(
        (&json[0]["function"], &json[0]["invocations"], &json[0]["previous_cost"]),
        (&"meter".into(), &50.into(), &0.0.into()),
        "{json}"
    );

    let deleted = cli(&served, &["budgets", "delete", "meter"]);
    assert_eq!(deleted.trim(), "deleted the budget on meter");
    assert_eq!(cli_json(&served, &["budgets", "list", "--json"]), Value::Array(Vec::new()));
    assert_eq!(count(&served, "budget.deleted").len(), 1);
}

#[test]
fn a_throttle_budget_holds_what_is_past_it_and_runs_it_in_the_next_window() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("data"));
    cli(&served, &["functions", "deploy", &fixture("ok"), "--name", "slow", "--trigger", "event:tick"]);
    cli(&served, &["budgets", "set", "slow", "--invocations", "3", "--per", "1m", "--action", "throttle"]);
    clear_of_the_minute_boundary();
    let sent: Vec<String> = (0..5)
        .map(|_| {
            let sent = cli_json(&served, &["events", "send", "--source", "clock", "--type", "tick", "--json"]);
            sent["id"].as_str().unwrap().to_string()
        })
        .collect();
    let ran = |served: &common::Served| -> Vec<String> {
        let listed = cli_json(served, &["functions", "invocations", "slow", "--json"]);
        listed.as_array().unwrap().iter().filter_map(|i| i["event_id"].as_str().map(str::to_string)).collect()
    };
    let mut budget = Value::Null;
    for _ in 0..100 {
        budget = cli_json(&served, &["budgets", "get", "slow", "--json"]);
        if budget["window"]["ran"] == 3 && budget["window"]["refused"] == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!((&budget["window"]["ran"], &budget["window"]["refused"]), (&3.into(), &2.into()), "{budget:#}");
    assert_eq!(ran(&served).len(), 3, "two wait for the next window");
    assert!(count(&served, "function.dropped").is_empty(), "held, not dropped");
    // The next window (at most a minute away) lets the two go, in order.
    let mut done = Vec::new();
    for _ in 0..1500 {
        done = ran(&served);
        if done.len() == 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut expected = sent.clone();
    expected.sort();
    done.sort();
    assert_eq!(done, expected, "every event ran once");
}

#[test]
fn an_http_route_past_its_stop_budget_answers_429_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("data"));
    cli(
        &served,
        &["functions", "deploy", &fixture("http-command"), "--name", "button", "--trigger", "http:POST /button"],
    );
    cli(&served, &["budgets", "set", "button", "--invocations", "2", "--per", "1d", "--action", "stop"]);
    let statuses: Vec<String> = (0..4)
        .map(|_| {
            let out = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
                .arg(format!("{}/button", served.url))
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        })
        .collect();
    // The fixture answers 500 here (its command goes to a device that does not exist): it ran.
    assert_eq!(statuses, ["500", "500", "429", "429"]);
    let dropped = count(&served, "function.dropped");
    assert_eq!(dropped.len(), 2, "each refused request is on the record");
    assert!(dropped.iter().all(|d| d["data"]["reason"] == "budget_exceeded"));
    assert_eq!(count(&served, "function.invoked").len(), 2, "the refused ones ran nothing");
}

#[test]
fn bad_budgets_are_refused_naming_what_to_fix() {
    let refused = |args: &[&str], wanted: &str| {
        let output = glassbox().args(args).env("GLASSBOX_SERVER", "http://127.0.0.1:9").output().unwrap();
        assert!(!output.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(err.contains(wanted), "{args:?}: {err}");
    };
    let set = |target: &'static str, rest: &[&'static str]| {
        let mut args = vec!["budgets", "set", target];
        args.extend_from_slice(rest);
        args
    };
    let stop = ["--per", "1m", "--action", "stop"];
    refused(&set("tenant:x", &[&["--invocations", "5"], &stop[..]].concat()), "unknown kind \"tenant\"");
    refused(&set("meter", &[&["--invocations", "0"], &stop[..]].concat()), "more than zero");
    refused(&set("meter", &[&["--cost=-1"], &stop[..]].concat()), "more than zero");
    refused(&set("meter", &["--invocations", "5", "--per", "2m", "--action", "stop"]), "use one of 1m, 1h, 1d, 30d");
    refused(&set("meter", &["--invocations", "5", "--per", "1m", "--action", "halt"]), "alert, throttle, stop");
    refused(&set("meter", &[&["--invocations", "5", "--at", "80,50"], &stop[..]].concat()), "ascending");
    refused(&set("meter", &stop), "--invocations");
    refused(&set("device:d1", &[&["--invocations", "5"], &stop[..]].concat()), "a device budget counts messages");
    refused(&set("meter", &[&["--messages", "5"], &stop[..]].concat()), "per device:ID or group:NAME");
    let throttle = ["--messages", "5", "--per", "1m", "--action", "throttle"];
    refused(&set("group:barn", &throttle), "a message cannot be held back");
}

/// The invocations of `function` on the event `id`.
fn runs_on(served: &common::Served, function: &str, id: &str) -> usize {
    let listed = cli_json(served, &["functions", "invocations", function, "--json"]);
    listed.as_array().map_or(0, |all| all.iter().filter(|i| i["event_id"] == id).count())
}

/// Sends a `work.item` event; returns its id once `witness` (a function on
/// the same trigger) has run on it, so the dispatcher has offered it to
/// every live function whose trigger matches.
fn send_and_wait(served: &common::Served) -> String {
    let sent = cli_json(served, &["events", "send", "--source", "shop", "--type", "work.item", "--json"]);
    let id = sent["id"].as_str().or_else(|| sent[0]["id"].as_str()).unwrap_or_else(|| panic!("{sent:#}")).to_string();
    for _ in 0..200 {
        if runs_on(served, "witness", &id) == 1 {
            return id;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("witness never ran on {id}");
}

#[test]
fn an_idle_function_is_listed_and_a_retired_one_runs_nothing_until_restored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = serve(&data);
    let deploy = |served: &common::Served, name: &str, trigger: &str| {
        cli(served, &["functions", "deploy", &fixture("ok"), "--name", name, "--trigger", trigger]);
    };
    deploy(&served, "worker", "event:work.item");
    deploy(&served, "witness", "event:work.item");
    deploy(&served, "unused", "event:never.happens");
    let first = send_and_wait(&served);
    for _ in 0..100 {
        if runs_on(&served, "worker", &first) == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let idle = cli_json(&served, &["functions", "idle", "--json"]);
    let find = |name: &str| idle.as_array().unwrap().iter().find(|f| f["name"] == name).cloned().unwrap();
    let unused = find("unused");
    assert_eq!(
        (&unused["idle"], &unused["last_invocation"], &unused["invocations"]),
        (&true.into(), &Value::Null, &0.into())
    );
    assert!(unused["why"].as_str().unwrap().starts_with("never invoked since its deploy at"), "{unused:#}");
    assert_eq!(unused["triggers"][0], "event:never.happens");
    assert_eq!((&find("worker")["idle"], &find("worker")["invocations"]), (&false.into(), &1.into()));
    let table = cli(&served, &["functions", "idle"]);
    assert!(table.contains("unused") && !table.contains("worker"), "{table}");

    let retired = cli(&served, &["functions", "retire", "worker"]);
    assert!(retired.starts_with("retired worker v1: its triggers (event:work.item) stopped"), "{retired}");
    let listed = cli(&served, &["functions", "list"]);
    let line = listed.lines().find(|l| l.starts_with("worker")).unwrap();
    assert!(line.contains("retired"), "{listed}");
    let while_retired = send_and_wait(&served);
    assert_eq!(runs_on(&served, "worker", &while_retired), 0, "a retired function's trigger runs nothing");

    // Retired across a restart.
    drop(served);
    let served = serve(&data);
    let after_restart = send_and_wait(&served);
    assert_eq!(runs_on(&served, "worker", &after_restart), 0, "still retired after a restart");

    let restored = cli(&served, &["functions", "restore", "worker"]);
    assert!(restored.starts_with("restored worker v1"), "{restored}");
    let again = send_and_wait(&served);
    let mut runs = 0;
    for _ in 0..100 {
        runs = runs_on(&served, "worker", &again);
        if runs == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(runs, 1, "restored: its trigger runs it again");
    let (retired, restored) = (count(&served, "function.retired"), count(&served, "function.restored"));
    assert_eq!((retired.len(), restored.len()), (1, 1));
    assert_eq!(retired[0]["data"]["principal"]["kind"], "admin", "{:#}", retired[0]);
    assert_eq!(restored[0]["data"]["function"], "worker");
}

/// Waits until `ready` holds for the budget on `target` (at most 10 s); returns it.
fn budget_when(served: &common::Served, target: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let mut budget = Value::Null;
    for _ in 0..200 {
        budget = cli_json(served, &["budgets", "get", target, "--json"]);
        if ready(&budget) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    budget
}

/// Waits for the start of the next minute when less than 35 s of this one
/// are left: a restart and its publishes must fall in one 1m window.
fn well_clear_of_the_minute_boundary() {
    let second = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() % 60;
    if second >= 25 {
        std::thread::sleep(Duration::from_secs(61 - second));
    }
}

#[test]
fn a_stop_budget_keeps_its_window_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = serve(&data);
    cli(&served, &["functions", "deploy", &fixture("ok"), "--name", "meter", "--trigger", "mqtt:meters/#"]);
    cli(&served, &["budgets", "set", "meter", "--invocations", "10", "--per", "1m", "--action", "stop"]);
    well_clear_of_the_minute_boundary();
    publish(&served.mqtt, "meters/m-1", 6);
    let before = budget_when(&served, "meter", |b| b["window"]["ran"] == 6);
    assert_eq!(before["window"]["admitted"], 6, "{before:#}");

    // Killed, as a crash would: nothing is saved at a stop, the window is read back from the record.
    drop(served);
    let served = serve(&data);
    let after = cli_json(&served, &["budgets", "get", "meter", "--json"]);
    assert_eq!((&after["window"]["admitted"], &after["window"]["ran"]), (&6.into(), &6.into()), "{after:#}");
    assert_eq!(after["window"]["percent"], 60.0, "{after:#}");

    publish(&served.mqtt, "meters/m-1", 10);
    let budget = budget_when(&served, "meter", |b| b["window"]["ran"] == 10 && b["window"]["refused"] == 6);
    assert_eq!((&budget["window"]["admitted"], &budget["window"]["refused"]), (&10.into(), &6.into()), "{budget:#}");
    let mut dropped = Vec::new();
    for _ in 0..100 {
        dropped = count(&served, "function.dropped");
        if dropped.len() == 6 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(dropped.len(), 6, "only the 4 left of 10 ran after the restart");
    assert_eq!(count(&served, "function.invoked").len(), 10);
}

/// Publishes `n` messages at QoS 1 over MQTT 5 as device `id`; returns mosquitto_pub's stderr.
fn publish_as(mqtt: &str, id: &str, secret: &str, n: usize) -> String {
    let login = ["-V", "mqttv5", "-i", id, "-u", id, "-P", secret];
    mosquitto_pub(mqtt, &login, &format!("devices/{id}/telemetry"), n).0
}

fn events_of(served: &common::Served, ty: &str, device: &str) -> Vec<Value> {
    let found = cli_json(served, &["events", "query", "--type", ty, "--device", device, "--limit", "1000", "--json"]);
    found.as_array().cloned().unwrap_or_default()
}

/// Refusals recorded for `device`: each record counts itself and those counted with it.
fn refusals(served: &common::Served, device: &str) -> (u64, Vec<Value>) {
    let refused = events_of(served, "mqtt.publish_refused", device);
    let total = refused.iter().map(|r| 1 + r["data"]["unrecorded"].as_u64().unwrap_or(0)).sum();
    (total, refused)
}

#[test]
fn a_device_message_budget_refuses_what_is_past_it_at_publish_and_other_devices_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = serve(&data);
    cli(&served, &["functions", "deploy", &fixture("ok"), "--name", "meter", "--trigger", "mqtt:devices/+/telemetry"]);
    let secret =
        |id: &str| cli_json(&served, &["devices", "create", id, "--json"])["secret"].as_str().unwrap().to_string();
    let (d1, d2) = (secret("d1"), secret("d2"));
    let set = cli(&served, &["budgets", "set", "device:d1", "--messages", "20", "--per", "1m", "--action", "stop"]);
    assert_eq!(set.trim(), "budget on device:d1: 20 messages per 1m, action stop, recorded at 50%, 80%, 100%");

    well_clear_of_the_minute_boundary();
    let said = publish_as(&served.mqtt, "d1", &d1, 50);
    publish_as(&served.mqtt, "d2", &d2, 5);
    let budget = budget_when(&served, "device:d1", |b| b["window"]["refused"] == 30);
    assert_eq!((&budget["window"]["admitted"], &budget["window"]["refused"]), (&20.into(), &30.into()), "{budget:#}");
    assert_eq!(budget["window"]["percent"], 100.0, "{budget:#}");

    let mut refused = (0, Vec::new());
    for _ in 0..100 {
        refused = refusals(&served, "d1");
        if refused.0 == 30 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(refused.0, 30, "each refusal recorded or counted: {:#?} (mosquitto_pub said {said})", refused.1);
    assert!(refused.1.len() <= 3, "a flood is counted, not recorded message by message: {}", refused.1.len());
    let first = &refused.1.last().unwrap()["data"];
    assert_eq!(first["reason"], "budget_exceeded");
    let detail = first["detail"].as_str().unwrap();
    assert!(detail.starts_with("budget device:d1 of 20 messages per 1m used (20), until "), "{detail}");
    assert_eq!(events_of(&served, "device.message", "d1").len(), 20, "only the admitted are recorded");
    assert_eq!(events_of(&served, "device.message", "d2").len(), 5, "another device is not limited");
    assert!(refusals(&served, "d2").1.is_empty());
    let list = cli(&served, &["budgets", "list"]);
    assert!(list.lines().any(|l| l.starts_with("device:d1") && l.contains("30")), "{list}");

    // Across a restart the device's window is still used up.
    drop(served);
    let served = serve(&data);
    let after = cli_json(&served, &["budgets", "get", "device:d1", "--json"]);
    assert_eq!((&after["window"]["admitted"], &after["window"]["refused"]), (&20.into(), &30.into()), "{after:#}");
    publish_as(&served.mqtt, "d1", &d1, 1);
    let budget = budget_when(&served, "device:d1", |b| b["window"]["refused"] == 31);
    assert_eq!((&budget["window"]["admitted"], &budget["window"]["refused"]), (&20.into(), &31.into()), "{budget:#}");
    assert_eq!(events_of(&served, "device.message", "d1").len(), 20);
}
