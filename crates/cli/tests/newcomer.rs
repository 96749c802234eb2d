//! What a newcomer sees in their first hour (issue 18, item 8): counts,
//! units, the address to export, what a quiet `logs --follow` is doing, a
//! simulator that loses its server, a file that is not a component.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{TOKEN, cli, cli_json, glassbox, serve};

/// Lines of `from`, read on a thread, for waiting with a timeout.
fn lines(from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line containing `wanted` within `within`, or a panic listing what came.
fn wait_for(lines: &mpsc::Receiver<String>, wanted: &str, within: Duration) -> String {
    let deadline = std::time::Instant::now() + within;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(wanted) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no line with {wanted:?} within {within:?}; saw: {seen:#?}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `glassbox serve` on fixed ports (to be restarted on them), stdout as lines.
fn serve_on(data: &Path, http: u16, mqtt: u16) -> (Child, mpsc::Receiver<String>) {
    let mut child = glassbox()
        .args(["serve", "--http", &format!("127.0.0.1:{http}"), "--mqtt", &format!("127.0.0.1:{mqtt}"), "--data-dir"])
        .arg(data)
        .env("GLASSBOX_ADMIN_TOKEN", TOKEN)
        .env("GLASSBOX_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = lines(child.stdout.take().unwrap());
    (child, stdout)
}

#[test]
fn serve_prints_the_server_export_when_not_on_the_default_address() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let (mut child, stdout) = serve_on(&dir.path().join("data"), http, free_port());
    let export = wait_for(&stdout, "GLASSBOX_SERVER", Duration::from_secs(30));
    assert_eq!(export, format!("  export GLASSBOX_SERVER=http://127.0.0.1:{http}"));
    wait_for(&stdout, "glassbox ready", Duration::from_secs(5));
    let _ = child.kill();
}

#[test]
fn one_event_is_counted_as_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("data"));
    cli(&served, &["events", "send", "--source", "shop", "--type", "order.created"]);
    let output = glassbox()
        .args(["events", "query"])
        .env("GLASSBOX_SERVER", &served.url)
        .env("GLASSBOX_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stderr), "1 event\n", "was \"1 events\"");
}

#[test]
fn cost_shows_its_unit() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("data"));
    let echo = concat!(env!("CARGO_MANIFEST_DIR"), "/../runtime/tests/fixtures/echo.wat");
    cli(&served, &["functions", "deploy", echo, "--name", "echo", "--trigger", "event:reading.*"]);
    cli(&served, &["events", "send", "--source", "meter", "--type", "reading.taken"]);
    // Cost is a metric derived from the invocation records, a moment after them.
    for _ in 0..100 {
        let cost = cli_json(&served, &["cost", "--since", "5m", "--json"]);
        if cost.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let table = cli(&served, &["cost", "--since", "5m"]);
    let mut rows = table.lines();
    assert!(rows.next().unwrap().contains("COST $"), "{table}");
    assert!(rows.next().unwrap().contains(" $0.000"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("total $0.000")), "{table}");
}

#[test]
fn logs_follow_says_what_it_follows_on_stderr_and_keeps_json_clean() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("data"));
    let mut follow = glassbox()
        .args(["logs", "--follow", "--device", "kitchen-1", "--level", "warn", "--json"])
        .env("GLASSBOX_SERVER", &served.url)
        .env("GLASSBOX_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = lines(follow.stderr.take().unwrap());
    let stdout = lines(follow.stdout.take().unwrap());
    let note = wait_for(&stderr, "following", Duration::from_secs(30));
    assert_eq!(
        note,
        "following log lines of device kitchen-1 at warn and above: none yet; waiting for new lines (Ctrl-C to stop)"
    );
    assert!(stdout.recv_timeout(Duration::from_millis(300)).is_err(), "stdout holds only log lines");
    let _ = follow.kill();
    let _ = follow.wait();
}

#[test]
fn deploying_a_file_that_is_not_webassembly_says_so_hint_first() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in
        [("handler.js", "export function handle(e) { return e; }\n"), ("iife.js", "(function () {})()\n")]
    {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let output = glassbox()
            .args(["functions", "deploy"])
            .arg(&file)
            .args(["--name", "f", "--trigger", "event:x"])
            .env("GLASSBOX_SERVER", "http://127.0.0.1:9")
            .output()
            .unwrap();
        assert!(!output.status.success());
        let err = String::from_utf8_lossy(&output.stderr);
        let expected = format!("error: {} is not a WebAssembly component (it is text starting ", file.display());
        assert!(err.starts_with(&expected), "{err}");
        assert!(err.contains("componentize-js") && !err.contains("expected valid"), "{err}");
    }
}

#[test]
fn simulate_says_when_the_server_goes_away_and_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (http, mqtt) = (free_port(), free_port());
    let (mut server, stdout) = serve_on(&data, http, mqtt);
    wait_for(&stdout, "glassbox ready", Duration::from_secs(30));
    let mut simulate = glassbox()
        .args(["simulate", "--devices", "2", "--interval", "1s", "--sleepy", "0", "--flaky", "0"])
        .args(["--mqtt", &format!("127.0.0.1:{mqtt}"), "--server", &format!("http://127.0.0.1:{http}")])
        .env("GLASSBOX_TOKEN", TOKEN)
        .env("GLASSBOX_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let said = lines(simulate.stderr.take().unwrap());
    let simulate_stdout = lines(simulate.stdout.take().unwrap());
    let started = simulate_stdout.recv_timeout(Duration::from_secs(30));
    assert!(
        started.as_ref().is_ok_and(|l| l.starts_with("simulating 2 devices in 3 groups")),
        "{started:?}: {:?}",
        said.try_iter().collect::<Vec<_>>()
    );
    std::thread::sleep(Duration::from_secs(1));

    server.kill().unwrap();
    server.wait().unwrap();
    let lost = wait_for(&said, "cannot reach the MQTT server", Duration::from_secs(15));
    assert!(lost.contains(&format!("127.0.0.1:{mqtt}")) && lost.contains("keep reconnecting"), "{lost}");

    let (mut server, stdout) = serve_on(&data, http, mqtt);
    wait_for(&stdout, "glassbox ready", Duration::from_secs(30));
    let back = wait_for(&said, "answers again", Duration::from_secs(40));
    assert!(back.contains(&format!("127.0.0.1:{mqtt}")), "{back}");
    let _ = simulate.kill();
    let _ = simulate.wait();
    let _ = server.kill();
}
