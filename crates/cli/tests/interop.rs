//! Interop of the MQTT gateway with third-party clients: runs
//! `scripts/interop.sh` (mosquitto_pub / mosquitto_sub and Python paho-mqtt,
//! see its header) against this build's binary and fails if any of its checks
//! fails. Its output is printed line by line (`cargo test -p glassbox --test
//! interop -- --nocapture` to watch it live).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The script's own waits are bounded; this is a last resort against a hang.
const TIMEOUT: Duration = Duration::from_secs(300);

fn workspace_root() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../..")
}

/// Fails the test, rather than skipping it, when a client it needs is missing.
fn require(program: &str, args: &[&str], install: &str) {
    let ok = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(ok, "`{program} {}` failed: the interop test needs it; {install}", args.join(" "));
}

#[test]
fn third_party_mqtt_clients_interoperate() {
    require(
        "python3",
        &["-c", "import paho.mqtt"],
        "run `pip install paho-mqtt` (paho-mqtt 2.x; scripts/test installs it)",
    );
    require(
        "sh",
        &["-c", "command -v mosquitto_pub && command -v mosquitto_sub"],
        "install Debian's mosquitto-clients (.ci/run does)",
    );

    // 2>&1 inside the shell, so that the script's stderr is interleaved in order.
    let mut child = Command::new("bash")
        .args(["-c", r#"exec bash scripts/interop.sh "$1" 2>&1"#, "interop", env!("CARGO_BIN_EXE_glassbox")])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("bash runs scripts/interop.sh");

    let (tx, rx) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let reader = std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + TIMEOUT;
    let mut failures = Vec::new();
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                println!("{line}");
                if line.starts_with("not ok") {
                    failures.push(line);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                // SIGTERM first: the script's trap stops the server it started.
                let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
                std::thread::sleep(Duration::from_secs(2));
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child.wait().expect("wait for scripts/interop.sh");
    if !timed_out {
        // After a kill, the script's own children may still hold the pipe open.
        let _ = reader.join();
    }

    assert!(!timed_out, "scripts/interop.sh still running after {TIMEOUT:?}");
    assert!(
        status.success() && failures.is_empty(),
        "scripts/interop.sh: {status}; failed checks:\n{}",
        if failures.is_empty() { "(none reported: see the output above)".to_string() } else { failures.join("\n") }
    );
}
