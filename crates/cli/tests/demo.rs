//! `glassbox demo` end to end: the tour it prints is run command by command
//! (through a shell, as a newcomer would paste it) against the live demo,
//! and what each step promises is checked (the device acts on the command
//! and the desired state, the sleepy device's queue has something to
//! clear, the message followed is a device's); each scripted incident is
//! checked to have happened, `glassbox diagnose` to find each as an
//! incident of its own, with the number the demo announced, and explain it;
//! and no server log line reaches the terminal.
//!
//! The timeline is the demo's, shortened where diagnose allows: the
//! detectors learn for 90 s instead of 2 minutes and the incidents come a
//! minute apart; the silent device still waits six minutes after the
//! rollback (see `Schedule`), so this takes about nine minutes.

mod common;

use std::cell::RefCell;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::glassbox;

/// The demo as a child process, killed when dropped.
struct Demo {
    child: Child,
    /// Its stdout and stderr lines, as they come.
    lines: mpsc::Receiver<String>,
    /// Every line read so far.
    seen: RefCell<Vec<String>>,
    server: String,
    token: String,
    /// The tour's commands, in order.
    tour: Vec<String>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn start() -> Demo {
        let mut child = glassbox()
            .args(["demo", "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--devices", "6", "--interval", "2s"])
            .args(["--warmup-points", "9", "--incidents-after", "100s", "--incident-gap", "30s", "--duration", "15m"])
            .env_remove("GLASSBOX_ADMIN_TOKEN")
            .env_remove("GLASSBOX_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("glassbox demo starts");
        let (tx, lines) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let err_tx = tx.clone();
        std::thread::spawn(move || stdout.lines().map_while(Result::ok).try_for_each(|l| tx.send(l)));
        std::thread::spawn(move || stderr.lines().map_while(Result::ok).try_for_each(|l| err_tx.send(l)));
        let seen = RefCell::new(Vec::new());
        let mut demo = Demo { child, lines, seen, server: String::new(), token: String::new(), tour: Vec::new() };
        loop {
            let line = demo.next_line(Duration::from_secs(60));
            if let Some(exports) = line.strip_prefix("  export ") {
                for pair in exports.split_whitespace() {
                    match pair.split_once('=') {
                        Some(("GLASSBOX_SERVER", v)) => demo.server = v.to_string(),
                        Some(("GLASSBOX_TOKEN", v)) => demo.token = v.to_string(),
                        _ => {}
                    }
                }
            } else if line.starts_with("  glassbox ") {
                demo.tour.push(line.trim().to_string());
            } else if line.starts_with("Each is announced") {
                return demo;
            }
        }
    }

    fn next_line(&self, within: Duration) -> String {
        let line = self.lines.recv_timeout(within).expect("the demo printed its next line in time");
        self.seen.borrow_mut().push(line.clone());
        line
    }

    /// The line of an announcement (`[demo +1.5 min] …`) containing
    /// `what`, printed already or within 8 minutes (the silent device's
    /// wait, and some).
    fn announced(&self, what: &str) -> String {
        let wanted = |line: &String| line.starts_with("[demo +") && line.contains(what);
        if let Some(line) = self.seen.borrow().iter().find(|l| wanted(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(480);
        loop {
            let line = self.next_line(deadline.saturating_duration_since(Instant::now()));
            if wanted(&line) {
                return line;
            }
        }
    }

    /// The incident number the demo announced `diagnose` gives `step`.
    fn announced_incident(&self, step: &str) -> u64 {
        let line = self.announced(&format!("glassbox diagnose shows {step} as incident "));
        let after = line.split(" as incident ").nth(1).unwrap();
        after.split_whitespace().next().unwrap().parse().unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    /// Runs a tour line through `sh`, with `glassbox` on the PATH and the
    /// demo's exports set; returns its output, failing on a non-zero exit.
    fn shell(&self, line: &str) -> String {
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_glassbox")).parent().unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let output = Command::new("sh")
            .args(["-c", line])
            .env("PATH", path)
            .env("GLASSBOX_SERVER", &self.server)
            .env("GLASSBOX_TOKEN", &self.token)
            .output()
            .unwrap();
        let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "`{line}` failed: {err}\n{out}");
        out.into_owned()
    }

    fn json(&self, line: &str) -> Value {
        let out = self.shell(line);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("`{line}` printed no JSON ({e}): {out}"))
    }

    /// Polls `line` (JSON) until `ok` holds, for 60 s at most.
    fn eventually(&self, line: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = self.json(line);
            if ok(&answer) {
                return answer;
            }
            assert!(Instant::now() < deadline, "`{line}` never showed what was expected: {answer}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

#[test]
fn the_demos_tour_works_on_live_data_and_diagnose_finds_and_explains_its_incidents() {
    let demo = Demo::start();
    let verbs = ["functions list", "monitor", "events query", "events get", "trace", "debug replay", "control send"];
    for verb in verbs.iter().chain(&[
        "control desired",
        "devices clear-queue",
        "diagnose",
        "cost",
        "metrics",
        "logs",
        "audit verify",
    ]) {
        assert!(demo.tour.iter().any(|l| l.contains(verb)), "the tour shows `glassbox {verb}`: {:?}", demo.tour);
    }
    let after = |prefix: &str| demo.tour.iter().find_map(|l| l.strip_prefix(prefix)).unwrap().to_string();
    let steady = after("glassbox control send ").split_whitespace().next().unwrap().to_string();
    let sleepy = after("glassbox devices clear-queue ");

    // The message the tour follows is a device's, as it says.
    let message = demo.json(&format!("glassbox events get {} --json", after("glassbox events get ")));
    assert_eq!((&message["type"], &message["device"]), (&json!("device.message"), &json!(steady)), "{message}");
    assert_eq!(message["subject"], format!("devices/{steady}/telemetry"));

    // Every command of the tour works as printed (but the live view, which
    // runs until it is left).
    for line in demo.tour.iter().filter(|l| !l.contains("monitor")) {
        if line.contains("clear-queue") {
            // A reader takes a moment to get here; the sleepy device sleeps for minutes.
            demo.eventually(&format!("glassbox devices inspect {sleepy} --json"), |v| {
                v["session"]["queued"].as_u64() > Some(0)
            });
        }
        let out = demo.shell(line);
        if line.starts_with("glassbox trace ") {
            assert!(out.contains("function.invoked") || out.contains("telemetry"), "{line}: {out}");
        }
        if line.contains("control send") {
            assert!(out.contains("succeeded"), "the device carried the command out: {out}");
        }
        if line.contains("clear-queue") {
            let cleared: u64 = out.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
            assert!(cleared >= 1, "the sleepy device's queue had something to clear: {out}");
            assert!(out.contains(&format!("devices/{sleepy}/inbox/settings")), "it says what it cleared: {out}");
        }
    }
    // The device acted on the command and on the desired state, and reports it.
    let commands = demo.json(&format!("glassbox control commands --device {steady} --json"));
    let fan = commands.as_array().unwrap().iter().find(|c| c["name"] == "fan").expect("the fan command");
    assert_eq!((&fan["state"], &fan["response"]["fan"]), (&json!("succeeded"), &json!(true)), "{fan}");
    let shadow = demo.eventually(&format!("glassbox devices shadow {steady} --json"), |s| {
        s["delta"].as_object().is_none_or(|d| d.is_empty())
    });
    assert_eq!((&shadow["desired"]["fan"], &shadow["reported"]["fan"]), (&json!(false), &json!(false)), "{shadow}");
    // Its telemetry says where its fan is.
    let events = demo.json(&format!("glassbox events query --device {steady} --type device.message --json"));
    assert!(events.as_array().unwrap().iter().any(|e| e["data"]["fan"].is_boolean()), "{events}");

    // The fleet holds week-long certificates and renews them over MQTT by itself.
    demo.eventually("glassbox events query --type device.certificate_renewed --json", |events| {
        events.as_array().is_some_and(|e| !e.is_empty())
    });

    // Incident 1: a recursion loop, stopped at the hop limit.
    demo.announced("a recursion loop");
    demo.eventually("glassbox events query --type function.dead_letter --json", |events| {
        events.as_array().unwrap().iter().any(|e| {
            e["data"]["function"] == "ticker" && e["data"]["reason"].as_str().unwrap().starts_with("recursion_limit")
        })
    });

    // Incident 2: a slower version, live, and its invocations take longer.
    demo.announced("a slower version");
    let versions = demo.json("glassbox functions versions telemetry --json");
    assert_eq!(versions.as_array().map(Vec::len), Some(2), "{versions}");
    demo.eventually("glassbox functions invocations telemetry --json", |invocations| {
        invocations.as_array().unwrap().iter().any(|i| i["version"] == 2 && i["wall_us"].as_u64() > Some(1000))
    });
    demo.announced("rolled telemetry back to v1");
    let listed = demo.json("glassbox functions list --json");
    let telemetry = listed.as_array().unwrap().iter().find(|f| f["name"] == "telemetry").unwrap().clone();
    assert_eq!(telemetry["version"], 1, "the live version is the first again: {telemetry}");
    let rollbacks = demo.json("glassbox events query --type function.rolled_back --json");
    assert!(rollbacks.as_array().unwrap().iter().any(|e| e["data"]["function"] == "telemetry"), "{rollbacks}");
    // The audit log names the rollback with who did it, and still verifies.
    let audited = demo.shell("glassbox audit log --action function.rollback --json");
    let entry: Value = serde_json::from_str(audited.lines().last().unwrap_or_default()).unwrap_or_default();
    assert_eq!(
        (entry["target"].as_str(), entry["actor_kind"].as_str()),
        (Some("function:telemetry"), Some("admin")),
        "{audited}"
    );
    assert!(demo.shell("glassbox audit verify").starts_with("ok: "));

    // Incident 3: a device goes silent while connected; liveness notices.
    let line = demo.announced("a silent device: ");
    let silenced = line.split("a silent device: ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    demo.eventually("glassbox devices list --silent --json", |devices| {
        devices.as_array().unwrap().iter().any(|d| d["id"] == silenced.as_str())
    });

    // Diagnose finds the three, each an incident of its own, under the
    // numbers the demo announced: the loop and the slower version each with
    // its deploy as the likely cause, the silent device with no change to
    // blame.
    let announced = [
        demo.announced_incident("the recursion loop"),
        demo.announced_incident("the slower version"),
        demo.announced_incident("the silent device"),
    ];
    let liveness = format!("device_liveness{{device=\"{silenced}\"}}");
    let found = demo.eventually("glassbox diagnose --json", |d| incident_of(d, &liveness).is_some());
    let loop_ = incident_of(&found, "function_invocations{function=\"ticker\"}").expect("the loop is an incident");
    let slow = incident_of(&found, "function_duration_ms{function=\"telemetry\"}").expect("the slow version is one");
    let silent = incident_of(&found, &liveness).unwrap();
    let ids = [&loop_["id"], &slow["id"], &silent["id"]];
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2], "three incidents, not one: {found:#}");
    assert_eq!(ids.map(|id| id.as_u64().unwrap()), announced, "announced as diagnose numbers them: {found:#}");
    assert_likely_cause(loop_, "deploy of ticker v2");
    assert_likely_cause(slow, "deploy of telemetry v2");
    let said = silent["summary"].as_str().unwrap();
    assert!(said.contains(&silenced) && said.contains("silent"), "{said}");
    assert!(
        silent["causes"].as_array().unwrap().iter().all(|c| c["verdict"] != "likely"),
        "nothing anyone changed made the device fall silent: {silent:#}"
    );
    // And the text a newcomer reads says the same.
    let text = demo.shell("glassbox diagnose");
    assert!(text.contains("deploy of ticker v2") && text.contains("deploy of telemetry v2"), "{text}");
    for id in announced {
        assert!(text.contains(&format!("incident {id} ")), "incident {id} as announced: {text}");
    }

    // The on-call acknowledges the loop, as its announcement suggests; diagnose says who, and why.
    let acked = demo.shell(&format!("glassbox diagnose ack {} --note 'rolling ticker back'", announced[0]));
    assert!(acked.contains("acknowledged by admin") && acked.contains("rolling ticker back"), "{acked}");

    // The loop goes on until the rollback the announcement asks for, and stops then.
    demo.shell("glassbox functions rollback ticker");
    std::thread::sleep(Duration::from_secs(5));
    let since_then = demo.json("glassbox events query --type function.dead_letter --since 3s --json");
    assert_eq!(since_then.as_array().map(Vec::len), Some(0), "no more dead letters: {since_then}");

    // No server log line reached the terminal; they are in the log file the tour names.
    while let Ok(line) = demo.lines.try_recv() {
        demo.seen.borrow_mut().push(line);
    }
    let seen = demo.seen.borrow();
    let logged = seen.iter().find(|l| l.contains(" WARN ") || l.contains(" INFO ") || l.contains("glassbox_server::"));
    assert!(logged.is_none(), "a server log line in the tour: {logged:?}");
    let log = seen.iter().find_map(|l| l.strip_prefix("The server's log: ")).expect("the tour names the log file");
    let log = log.split(" (").next().unwrap();
    let written = std::fs::read_to_string(log).unwrap_or_else(|e| panic!("{log}: {e}"));
    assert!(written.contains("glassbox_watch"), "the server's lines are in {log}: {written}");
}

/// The incident of `diagnosis` with an episode of the series `key`.
fn incident_of<'a>(diagnosis: &'a Value, key: &str) -> Option<&'a Value> {
    diagnosis["incidents"]
        .as_array()?
        .iter()
        .find(|i| i["episodes"].as_array().is_some_and(|episodes| episodes.iter().any(|e| e["series"]["key"] == key)))
}

/// The incident's first cause is `change` (its summary begins so), judged likely.
fn assert_likely_cause(incident: &Value, change: &str) {
    let first = &incident["causes"][0];
    assert!(
        first["change"]["summary"].as_str().is_some_and(|s| s.starts_with(change)) && first["verdict"] == "likely",
        "the likely cause is the {change}: {incident:#}"
    );
}
