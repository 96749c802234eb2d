//! Diagnosis end to end: a slower function version, deployed through the
//! API and really invoked, is named by `/api/v1/diagnose` as the likely
//! cause of the latency anomaly it causes.
//!
//! The detectors must first learn the function's normal; rather than wait
//! for minutes of real traffic, the test feeds them that history as closed
//! metric buckets of the minutes before (simulated time), then everything
//! after the deploy is real: invocations, their recorded latency, the
//! derived buckets, the detection and the diagnosis.

mod common;

use std::time::Duration;

use glassbox_series::{Closed, ClosedBuckets, catalog};
use glassbox_store::MetricPoint;
use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{Server, fixture, start_with, webhook};

const TOKEN: &str = "gbx_diagnose_test_token";

/// Closed latency buckets of `function` at `times` (unix seconds), each
/// the mean of one invocation of `ms`.
fn latency_history(function: &str, times: impl Iterator<Item = i64>, ms: impl Fn(i64) -> f64) -> Vec<Closed> {
    times
        .map(|at| {
            let v = ms(at);
            Closed {
                metric: &catalog::FUNCTION_DURATION,
                labels: vec![function.into()],
                point: MetricPoint {
                    series: format!("function_duration_ms{{function=\"{function}\"}}"),
                    at,
                    count: 1,
                    sum: v,
                    min: v,
                    max: v,
                },
            }
        })
        .collect()
}

#[tokio::test]
async fn a_slower_deploy_is_named_as_the_likely_cause_of_the_latency_anomaly() {
    let (hook, mut posted) = webhook().await;
    let server = start_with(TOKEN, |config| {
        config.diagnose.warmup_points = 20;
        config.diagnose.webhook = hook;
    })
    .await;
    let path = "/api/v1/functions/work?trigger=event:work.item";
    let deploy = |fixture_name: &'static str| server.call(reqwest::Method::POST, path, Some(fixture(fixture_name)));
    assert_eq!(deploy("ok").await.0, StatusCode::CREATED);

    // Forty 10-second buckets of the fast version, before now.
    let now = chrono::Utc::now().timestamp();
    let start = now - now.rem_euclid(10) - 420;
    let history = latency_history("work", (0..40).map(|i| start + i * 10), |at| 0.3 + 0.05 * ((at / 10) % 5) as f64);
    let watch = server.running.as_ref().unwrap().watch.clone().expect("metrics are derived");
    watch.closed(&history, start + 390).await;

    let (status, v2) = deploy("slow").await;
    assert_eq!((status, v2["version"].clone()), (StatusCode::CREATED, json!(2)), "{v2}");
    let item = json!({"specversion": "1.0", "source": "test", "type": "work.item"}).to_string().into_bytes();
    let mut diagnosis = Value::Null;
    for _ in 0..60 {
        server.call(reqwest::Method::POST, "/api/v1/events", Some(item.clone())).await;
        diagnosis = server.call(reqwest::Method::GET, "/api/v1/diagnose?since=1h", None).await.1;
        if diagnosis["incidents"].as_array().is_some_and(|i| !i.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let incident = &diagnosis["incidents"][0];
    assert!(incident.is_object(), "no incident within 30 s: {diagnosis:#}");
    let latency = incident["episodes"].as_array().unwrap().iter().find(|e| e["series"]["what"] == "latency");
    assert!(latency.is_some(), "the latency is abnormal: {incident:#}");
    let cause = &incident["causes"][0];
    assert_eq!(cause["change"]["kind"], "deploy", "{incident:#}");
    assert!(cause["change"]["summary"].as_str().unwrap().starts_with("deploy of work v2"), "{incident:#}");
    assert_eq!(cause["verdict"], "likely", "{incident:#}");
    let words = incident["summary"].as_str().unwrap();
    assert!(words.contains("latency") && words.contains("deploy of work v2"), "{words}");
    assert!(incident["start"].as_str().is_some_and(|s| s.ends_with('Z')), "times in RFC 3339");

    // The alert is an event too, and the scoped diagnosis finds the same.
    let (_, events) = server.call(reqwest::Method::GET, "/api/v1/events?type=anomaly.detected", None).await;
    assert!(!events["events"].as_array().unwrap().is_empty(), "{events}");
    let (_, scoped) = server.call(reqwest::Method::GET, "/api/v1/diagnose?since=1h&function=work", None).await;
    assert_eq!(scoped["incidents"][0]["id"], incident["id"]);
    let (status, _) = server.call(reqwest::Method::GET, "/api/v1/diagnose?function=nosuch", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.call(reqwest::Method::GET, "/api/v1/diagnose?since=yesterday", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // And it was posted to the webhook.
    let alert = tokio::time::timeout(Duration::from_secs(10), posted.recv()).await.unwrap().unwrap();
    let alert: Value = serde_json::from_str(&alert).unwrap();
    assert_eq!(alert["type"], "anomaly.detected", "{alert}");
    assert!(alert["words"].as_str().unwrap().contains("function work"), "{alert}");
}

#[tokio::test]
async fn a_configuration_change_between_starts_is_recorded_as_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = glassbox_server::Config { data_dir: dir.path().join("data"), ..Default::default() };
    config.http.listen = "127.0.0.1:0".into();
    config.mqtt.listen = "127.0.0.1:0".into();
    glassbox_server::start(config.clone(), Some(TOKEN)).await.unwrap().stop().await.unwrap();
    config.control.offline_max = Duration::from_secs(120);
    let running = glassbox_server::start(config, Some(TOKEN)).await.unwrap();
    let url = format!("http://{}/api/v1/events?type=config.changed", running.http_addr);
    let page: Value = reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    let data = &page["events"][0]["data"];
    assert_eq!(data["changed"], json!(["control.offline_max"]), "{page}");
    assert_eq!(data["to"]["control.offline_max"], "2m");
    running.stop().await.unwrap();
}

/// Closed buckets of a counted series of `function`, one per time, from `value`.
fn counted(
    metric: &'static catalog::Metric,
    labels: &[&str],
    times: impl Iterator<Item = i64>,
    value: impl Fn(i64) -> u64,
) -> Vec<Closed> {
    let key = glassbox_series::key(metric, &labels.iter().map(|l| l.to_string()).collect::<Vec<_>>());
    times
        .filter_map(|at| {
            let count = value(at);
            (count > 0).then(|| Closed {
                metric,
                labels: labels.iter().map(|l| l.to_string()).collect(),
                point: MetricPoint { series: key.clone(), at, count, sum: count as f64, min: 1.0, max: 1.0 },
            })
        })
        .collect()
}

async fn incidents(server: &Server, query: &str, at_least: usize) -> Value {
    let mut diagnosis = Value::Null;
    for _ in 0..120 {
        diagnosis = server.call(reqwest::Method::GET, &format!("/api/v1/diagnose?{query}"), None).await.1;
        if diagnosis["incidents"].as_array().is_some_and(|i| i.len() >= at_least) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    diagnosis
}

#[tokio::test]
async fn a_recursion_storm_is_one_incident_caused_by_its_deploy() {
    let server = start_with(TOKEN, |config| config.diagnose.warmup_points = 20).await;
    // Forty buckets of a quietly used function (0 to 2 calls per 10 s).
    let now = chrono::Utc::now().timestamp();
    let start = now - now.rem_euclid(10) - 420;
    let history =
        counted(&catalog::FUNCTION_INVOCATIONS, &["loopy", "succeeded"], (0..40).map(|i| start + i * 10), |at| {
            (at / 10 % 3) as u64
        });
    let watch = server.running.as_ref().unwrap().watch.clone().unwrap();
    watch.closed(&history, start + 390).await;

    // A version that triggers itself: each seed runs 16 hops deep.
    let path = "/api/v1/functions/loopy?trigger=event:test.echo";
    assert_eq!(server.call(reqwest::Method::POST, path, Some(fixture("echo"))).await.0, StatusCode::CREATED);
    for n in 0..10 {
        let seed = json!({"specversion": "1.0", "source": "test", "type": "test.echo", "data": {"n": n}});
        server.call(reqwest::Method::POST, "/api/v1/events", Some(seed.to_string().into_bytes())).await;
    }
    let diagnosis = incidents(&server, "since=1h&function=loopy", 1).await;
    let found = diagnosis["incidents"].as_array().unwrap();
    assert_eq!(found.len(), 1, "one incident: {diagnosis:#}");
    let incident = &found[0];
    assert!(incident["summary"].as_str().unwrap().contains("invocations jumped"), "{incident:#}");
    assert_eq!(incident["causes"][0]["change"]["kind"], "deploy", "{incident:#}");
    assert_eq!(incident["causes"][0]["verdict"], "likely", "{incident:#}");
    // It names the chains driving it, most invocations first: the seeds' chains.
    let chains = incident["chains"].as_array().unwrap();
    assert!(!chains.is_empty() && chains.len() <= 3, "{incident:#}");
    let (_, seeds) = server.call(reqwest::Method::GET, "/api/v1/events?type=test.echo&source=test", None).await;
    let seeds: Vec<&str> = seeds["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    let counts: Vec<u64> = chains.iter().map(|c| c["invocations"].as_u64().unwrap()).collect();
    for chain in chains {
        assert_eq!(chain["function"], "loopy", "{chain:#}");
        assert!(seeds.contains(&chain["correlation"].as_str().unwrap()), "a seed's chain: {chain:#}");
    }
    // Each chain runs loopy at most 16 times (hops 0 to 15); the incident's time may start after a chain's first.
    assert!(counts.windows(2).all(|w| w[0] >= w[1]) && counts[0] > 1 && counts[0] <= 16, "{counts:?}");
    // One alert for the storm's invocation series, however many buckets it spans.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, alerts) = server.call(reqwest::Method::GET, "/api/v1/events?type=anomaly.detected", None).await;
    let storm_alerts =
        alerts["events"].as_array().unwrap().iter().filter(|e| {
            e["subject"].as_str().is_some_and(|s| s.starts_with("function_invocations{function=\"loopy\""))
        });
    assert_eq!(storm_alerts.count(), 1, "{alerts:#}");
}

#[tokio::test]
async fn a_device_going_silent_is_reported_once() {
    use glassbox_gateway::client::{self, Options};
    use glassbox_gateway::codec::{Packet, Properties, Protocol, Publish, QoS};

    let server = start_with(TOKEN, |_| {}).await;
    let created = server
        .call(reqwest::Method::POST, "/api/v1/devices", Some(json!({"id": "meter-9"}).to_string().into_bytes()))
        .await;
    let secret = created.1["secret"].as_str().unwrap().to_string();
    let patch = reqwest::Client::new()
        .patch(format!("{}/api/v1/devices/meter-9", server.http))
        .bearer_auth(TOKEN)
        .json(&json!({"cadence": "1s"}))
        .send()
        .await
        .unwrap();
    assert!(patch.status().is_success());
    let options = Options {
        username: Some("meter-9".into()),
        password: Some(secret),
        protocol: Protocol::V5,
        ..Options::new("meter-9")
    };
    let (_reader, mut writer, _) = client::connect(&server.mqtt, &options).await.unwrap();
    let reading = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "devices/meter-9/reading".into(),
        packet_id: None,
        properties: Properties::default(),
        payload: bytes::Bytes::from_static(b"{\"kwh\":1}"),
    };
    writer.send(&Packet::Publish(reading)).await.unwrap();
    writer.flush().await.unwrap();

    // Quiet for longer than three times its cadence: one incident, and it stays one.
    let diagnosis = incidents(&server, "since=1h&device=meter-9", 1).await;
    assert_eq!(diagnosis["incidents"].as_array().unwrap().len(), 1, "{diagnosis:#}");
    let incident = &diagnosis["incidents"][0];
    assert!(
        incident["summary"]
            .as_str()
            .unwrap()
            .contains("device meter-9: liveness went silent (connected but silent for"),
        "{incident:#}"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let again = incidents(&server, "since=1h&device=meter-9", 1).await;
    assert_eq!(again["incidents"].as_array().unwrap().len(), 1, "still one: {again:#}");
    assert_eq!(again["incidents"][0]["id"], incident["id"]);
}

#[tokio::test]
async fn a_budget_threshold_reached_is_posted_to_the_webhook() {
    let (hook, mut posted) = webhook().await;
    let server = start_with(TOKEN, |config| config.diagnose.webhook = hook).await;
    let deploy = "/api/v1/functions/work?trigger=event:work.item";
    assert_eq!(server.call(reqwest::Method::POST, deploy, Some(fixture("ok"))).await.0, StatusCode::CREATED);
    let budget = json!({"limit": {"measure": "invocations", "amount": 1}, "per": "1d", "action": "alert", "at": [100]});
    let (status, set) =
        server.call(reqwest::Method::PUT, "/api/v1/budgets/work", Some(budget.to_string().into_bytes())).await;
    assert_eq!(status, StatusCode::OK, "{set}");
    let item = json!({"specversion": "1.0", "source": "test", "type": "work.item"}).to_string().into_bytes();
    assert_eq!(server.call(reqwest::Method::POST, "/api/v1/events", Some(item)).await.0, StatusCode::ACCEPTED);
    let body = tokio::time::timeout(Duration::from_secs(30), posted.recv()).await.expect("posted in time").unwrap();
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["type"], "budget.threshold_reached", "{body}");
    assert_eq!((&body["target"], &body["percent"], &body["action"]), (&json!("work"), &json!(100), &json!("alert")));
}
