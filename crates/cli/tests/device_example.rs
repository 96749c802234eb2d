//! The device-side example (`examples/device-python/device.py`, paho-mqtt)
//! against a real server: it applies desired state, answers commands and
//! sends telemetry, as the docs promise a device written that way does.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{cli, cli_json, serve};
use serde_json::{Value, json};

const DEVICE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/device-python/device.py");

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asks until `done` holds for the answer, for at most ten seconds.
fn eventually(what: &str, mut ask: impl FnMut() -> Value, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = ask();
        if done(&answer) {
            return answer;
        }
        assert!(Instant::now() < deadline, "{what}: still {answer}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_example_device_applies_desired_state_answers_commands_and_reports() {
    let paho = Command::new("python3").args(["-c", "import paho.mqtt"]).status().is_ok_and(|s| s.success());
    assert!(paho, "the test needs paho-mqtt 2.x: pip install 'paho-mqtt>=2,<3' (scripts/test installs it)");
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("data"));
    let created = cli_json(&served, &["devices", "create", "thermo-1", "--json"]);
    // Desired before the device is ever online: the delta waits for it.
    cli(&served, &["control", "desired", "thermo-1", "setpoint=19", "mode=eco"]);

    let (host, port) = served.mqtt.rsplit_once(':').unwrap();
    let device = Command::new("python3")
        .args([DEVICE, "--host", host, "--port", port, "--id", "thermo-1", "--interval", "0.2", "--secret"])
        .arg(created["secret"].as_str().unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the example device");
    let mut device = Running(device);

    let shadow = || cli_json(&served, &["devices", "shadow", "thermo-1", "--json"]);
    let synced = eventually("the delta empties", shadow, |s| s["delta"].is_null() || s["delta"] == json!({}));
    assert_eq!((synced["reported"]["setpoint"].clone(), synced["reported"]["mode"].clone()), (json!(19), json!("eco")));

    let sent = cli(&served, &["control", "send", "thermo-1", "fan", "--payload", r#"{"on": true}"#, "--wait"]);
    assert!(sent.contains("succeeded"), "{sent}");
    let reported = eventually("the fan is reported on", shadow, |s| s["reported"]["fan"] == true);
    assert_eq!(reported["reported"]["setpoint"], 19);

    let unknown = common::glassbox()
        .args(["control", "send", "thermo-1", "dance", "--wait"])
        .env("GLASSBOX_SERVER", &served.url)
        .env("GLASSBOX_TOKEN", common::TOKEN)
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1), "a command the device does not know fails");
    let said = String::from_utf8_lossy(&unknown.stdout);
    assert!(said.contains("unknown command 'dance': this device knows fan, setpoint and ping"), "{said}");

    let messages =
        || cli_json(&served, &["events", "query", "--device", "thermo-1", "--type", "device.message", "--json"]);
    let is_telemetry = |m: &Value| m["subject"] == "devices/thermo-1/telemetry";
    let telemetry =
        eventually("telemetry arrives", messages, |m| m.as_array().is_some_and(|a| a.iter().any(is_telemetry)));
    let newest = telemetry.as_array().unwrap().iter().find(|m| is_telemetry(m)).unwrap();
    assert_eq!(newest["data"]["fan"], true, "{newest}");

    // SIGTERM: a clean disconnect, said as such.
    let pid = device.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let output = std::mem::replace(&mut device.0, Command::new("true").spawn().unwrap()).wait_with_output().unwrap();
    let lines = String::from_utf8_lossy(&output.stdout);
    assert!(
        lines.contains("thermo-1: connected to") && lines.trim_end().ends_with("thermo-1: disconnected"),
        "{lines}"
    );
}
