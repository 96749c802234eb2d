//! The JavaScript, Python and Rust examples (real components, with WASI) in the
//! runtime: telemetry in, logs (including captured stdout), an event and a
//! device command out. The components are built by `scripts/test` (or each
//! example's `build.sh`); a missing one fails the test and names the script.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use glassbox_runtime::{Event, KvQuota, Limits, Outcome, Reach, Reuse, Runtime, Services};

fn example(name: &str) -> Vec<u8> {
    let path = format!("{}/../../examples/{name}/telemetry.wasm", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{path}: {e}. Build the example first: examples/{name}/build.sh \
             (scripts/test builds every example before running the tests)"
        )
    })
}

fn telemetry(data: &str) -> Event {
    Event {
        id: "01TELEMETRY".into(),
        source: "mqtt".into(),
        type_: "device.message".into(),
        subject: Some("devices/s1/telemetry".into()),
        time: "2026-11-24T00:00:00Z".into(),
        datacontenttype: Some("application/json".into()),
        data: data.as_bytes().to_vec(),
        correlationid: "01TELEMETRY".into(),
        causationid: None,
        hop: 0,
        device: Some("s1".into()),
    }
}

/// Services that accept commands and remember them.
#[derive(Default)]
struct Recording {
    commands: Mutex<Vec<(String, String, String, Duration)>>,
}

impl Services for Recording {
    fn kv_get(&self, _: &str, _: &str) -> Option<Vec<u8>> {
        None
    }

    fn kv_set(&self, _: &str, _: &str, _: Vec<u8>, _: KvQuota) -> Result<(), String> {
        Ok(())
    }

    fn kv_delete(&self, _: &str, _: &str) {}

    fn shadow(&self, _: &str) -> Result<String, String> {
        Err("no shadows here".into())
    }

    fn update_desired(&self, _: &str, _: &str) -> Result<u64, String> {
        Err("no shadows here".into())
    }

    fn send_command(&self, device: &str, name: &str, payload: &str, ttl: Duration) -> Result<String, String> {
        let mut commands = self.commands.lock().unwrap();
        commands.push((device.into(), name.into(), payload.into(), ttl));
        Ok(format!("cmd-{}", commands.len()))
    }
}

fn exercise(name: &str, printed: &str) {
    // One instance slot: each example must fit in what one invocation gets.
    let runtime = Runtime::new(1, 256 << 20).unwrap();
    let compiled = runtime.compile(&example(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let services = Arc::new(Recording::default());

    // Hot: a log line, the captured stdout, an event and a command.
    let report =
        runtime.invoke(&compiled, name, &telemetry(r#"{"temperature": 31.5}"#), Limits::default(), services.clone());
    assert_eq!(report.outcome, Outcome::Succeeded, "{name}: {report:?}");
    let lines: Vec<(&str, &str, Option<&str>)> =
        report.logs.iter().map(|l| (l.level, l.message.as_str(), l.stream)).collect();
    assert_eq!(lines[0], ("info", "s1: 31.5 °C (threshold 30 °C)", None), "{name}: {lines:?}");
    assert_eq!(lines[1], ("info", printed, Some("stdout")), "{name}: {lines:?}");
    assert_eq!(lines[2], ("warn", "s1 is hot: fan on (command cmd-1)", None), "{name}: {lines:?}");
    assert_eq!(report.outputs.len(), 1, "{name}");
    assert_eq!(report.outputs[0].type_, "telemetry.hot");
    let hot: serde_json::Value = serde_json::from_slice(&report.outputs[0].data).unwrap();
    assert_eq!(hot["temperature"], 31.5, "{name}: {hot}");
    assert_eq!(hot["device"], "s1");
    let commands = services.commands.lock().unwrap().clone();
    assert_eq!(commands.len(), 1, "{name}");
    let (device, command, payload, ttl) = &commands[0];
    assert_eq!((device.as_str(), command.as_str(), ttl.as_secs()), ("s1", "fan", 300));
    assert_eq!(serde_json::from_str::<serde_json::Value>(payload).unwrap(), serde_json::json!({"on": true}));

    // Cool: nothing out; a fresh instance each time, so the same again.
    let cool =
        runtime.invoke(&compiled, name, &telemetry(r#"{"temperature": 20}"#), Limits::default(), services.clone());
    assert_eq!(cool.outcome, Outcome::Succeeded, "{name}: {cool:?}");
    assert!(cool.outputs.is_empty());
    assert_eq!(services.commands.lock().unwrap().len(), 1, "no command when cool");

    // Not JSON: the function's error fails the invocation with its message.
    let bad = runtime.invoke(&compiled, name, &telemetry("not json"), Limits::default(), services.clone());
    assert!(
        matches!(&bad.outcome, Outcome::Failed(m) if m.starts_with("telemetry is not JSON")),
        "{name}: {:?}",
        bad.outcome
    );

    // Warm: one instance serves event after event, an error in between
    // included, with the same results as fresh ones.
    let runtime = Runtime::new(2, 256 << 20).unwrap();
    let compiled = runtime.compile(&example(name)).unwrap();
    let instances = runtime.instances(&compiled, Reuse::default());
    let services = Arc::new(Recording::default());
    let invoke = |data: &str| {
        let event = telemetry(data);
        let reach = Reach::services(services.clone());
        runtime.invoke_reusing(&compiled, &instances, name, &event, Limits::default(), reach)
    };
    let runs = [invoke(r#"{"temperature": 31.5}"#), invoke("not json"), invoke(r#"{"temperature": 32}"#)];
    let starts: Vec<bool> = runs.iter().map(|r| r.cold).collect();
    assert_eq!(starts, [true, false, false], "{name}: {runs:?}");
    assert!(matches!(&runs[1].outcome, Outcome::Failed(m) if m.starts_with("telemetry is not JSON")), "{name}");
    let last = &runs[2];
    assert_eq!((&last.outcome, last.outputs.len(), last.logs.len()), (&Outcome::Succeeded, 1, 3), "{name}: {last:?}");
    assert_eq!(last.logs[1].message, printed, "stdout is captured on a warm instance too");
    assert_eq!(last.logs[2].message, "s1 is hot: fan on (command cmd-2)", "{name}");
    assert!(last.memory_bytes > 0 && last.cpu > Duration::ZERO, "{name}: {last:?}");
}

#[test]
fn the_javascript_example_reads_telemetry_logs_emits_and_commands() {
    exercise("js-telemetry", "js-telemetry saw event 01TELEMETRY");
}

#[test]
fn the_python_example_reads_telemetry_logs_emits_and_commands() {
    exercise("python-telemetry", "python-telemetry saw event 01TELEMETRY");
}

#[test]
fn the_rust_example_reads_telemetry_logs_emits_and_commands() {
    exercise("rust-telemetry", "rust-telemetry saw event 01TELEMETRY");
}
