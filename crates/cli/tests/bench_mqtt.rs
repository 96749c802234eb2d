//! `glassbox bench mqtt` against a real Mosquitto broker: the load generator
//! and the MQTT codec under it speak the protocol a third-party broker
//! accepts, in 3.1.1 and 5.0, at every QoS. `.ci/run` installs Mosquitto.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Mosquitto {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mosquitto() -> Mosquitto {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n")).unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto must be installed for this test (apt-get install mosquitto; .ci/run does it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Mosquitto { child, port, _dir: dir }
}

/// Runs the bench and returns its last line's `key=value` figures.
fn bench(port: u16, extra: &[&str]) -> Vec<(String, f64)> {
    let output = Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args([
            "bench",
            "mqtt",
            "--port",
            &port.to_string(),
            "--messages",
            "500",
            "--publishers",
            "2",
            "--subscribers",
            "2",
        ])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "bench failed: {}{}", stdout, String::from_utf8_lossy(&output.stderr));
    let last = stdout.lines().last().unwrap_or_default();
    last.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(f64::NAN)))
        .collect()
}

fn figure(figures: &[(String, f64)], key: &str) -> f64 {
    figures.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("{key} in {figures:?}")).1
}

#[test]
fn bench_delivers_everything_through_mosquitto_at_every_qos_and_version() {
    let broker = mosquitto();
    for (qos, protocol) in [("0", "4"), ("1", "4"), ("2", "4"), ("1", "5"), ("2", "5")] {
        let figures = bench(broker.port, &["--qos", qos, "--protocol", protocol, "--rate", "2000"]);
        assert_eq!(figure(&figures, "lost"), 0.0, "qos {qos} protocol {protocol}: {figures:?}");
        assert_eq!(figure(&figures, "duplicates"), 0.0, "qos {qos} protocol {protocol}");
        assert!(figure(&figures, "delivered_per_sec") > 0.0);
        assert!(figure(&figures, "p99_ms") >= figure(&figures, "p50_ms"));
    }
}

#[test]
fn bench_reports_a_broker_it_cannot_reach() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let output = Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(["bench", "mqtt", "--port", &port.to_string()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains(&format!("connecting to 127.0.0.1:{port}")));
}
