//! A real Prometheus server (Debian's `prometheus`) scrapes `glassbox
//! serve`'s `/metrics`: the exposition parses, the target is up, and the
//! counters Glassbox promises are there, with the values of what happened.
//! `/metrics` needs a token, which Prometheus sends from a `credentials_file`.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{cli, serve};

/// A Prometheus child process, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_prometheus(dir: &std::path::Path, target: &str) -> Prometheus {
    let found = Command::new("prometheus").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "this test needs a Prometheus server: install Debian's `prometheus` package (scripts/test does)"
    );
    let config = dir.join("prometheus.yml");
    // `/metrics` needs a token (issue 16, finding 3): Prometheus reads it from a file.
    let credentials = dir.join("glassbox.token");
    std::fs::write(&credentials, common::TOKEN).unwrap();
    let scrape = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: glassbox\n    \
         authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: ['{target}']\n",
        credentials.display()
    );
    std::fs::write(&config, scrape).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address={listen}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    Prometheus { child, url: format!("http://{listen}") }
}

/// Asks Prometheus an instant query until `accept` takes the answer's
/// first sample value, or 60 s pass.
fn query_until(prometheus: &Prometheus, query: &str, accept: impl Fn(f64) -> bool) -> f64 {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = reqwest::Client::new();
    let ask = || async {
        let answer = client.get(format!("{}/api/v1/query", prometheus.url)).query(&[("query", query)]).send().await;
        match answer {
            Ok(answer) => answer.json::<Value>().await.ok(),
            Err(_) => None,
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        if let Some(answer) = runtime.block_on(ask()) {
            let value = answer["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok());
            if let Some(value) = value.filter(|v| accept(*v)) {
                return value;
            }
            last = answer.to_string();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("Prometheus never answered {query} as expected; last answer: {last}");
}

#[test]
fn prometheus_scrapes_the_metrics_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("data"));
    let echo = concat!(env!("CARGO_MANIFEST_DIR"), "/../runtime/tests/fixtures/echo.wat");
    cli(&served, &["functions", "deploy", echo, "--name", "echo", "--trigger", "event:reading"]);
    for n in 0..3 {
        cli(
            &served,
            &["events", "send", "--source", "meter", "--type", "reading", "--data", &format!("{{\"n\":{n}}}")],
        );
    }
    let target = served.url.trim_start_matches("http://").to_string();
    let prometheus = start_prometheus(dir.path(), &target);

    assert_eq!(query_until(&prometheus, r#"up{job="glassbox"}"#, |v| v == 1.0), 1.0, "the scrape succeeds");
    let received = query_until(&prometheus, "glassbox_events_received_total", |v| v >= 3.0);
    assert!(received >= 3.0);
    let invocations = r#"glassbox_function_invocations_total{function="echo",outcome="succeeded"}"#;
    assert_eq!(query_until(&prometheus, invocations, |v| v >= 3.0), 3.0);
    let durations = r#"glassbox_function_duration_ms_count{function="echo"}"#;
    assert_eq!(query_until(&prometheus, durations, |v| v >= 3.0), 3.0, "the histogram is scraped");
    let commits = query_until(&prometheus, "glassbox_recorder_commit_seconds_count", |v| v >= 1.0);
    assert!(commits >= 1.0, "recorder commit latency is scraped");
    // Prometheus found nothing to complain about in the exposition.
    let samples = query_until(&prometheus, r#"scrape_samples_scraped{job="glassbox"}"#, |v| v > 0.0);
    assert!(samples > 10.0, "{samples} samples in one scrape");
}
