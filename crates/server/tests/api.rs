//! The HTTP API over real TCP, against a real SQLite store in a temp dir.

use std::time::Duration;

use futures::StreamExt;
use glassbox_server::{Config, Running};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const TOKEN: &str = "gbx_test_token_0123";

struct Server {
    running: Option<Running>,
    base: String,
    http: Client,
    _dir: tempfile::TempDir,
}

async fn start_with(config: impl FnOnce(&mut Config)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.mqtt.listen = "127.0.0.1:0".into();
    config(&mut cfg);
    let running = glassbox_server::start(cfg, Some(TOKEN)).await.unwrap();
    let base = format!("http://{}", running.http_addr);
    Server { running: Some(running), base, http: Client::new(), _dir: dir }
}

async fn start() -> Server {
    start_with(|_| {}).await
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post_raw(&self, content_type: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url("/api/v1/events"))
            .bearer_auth(TOKEN)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, event: Value) -> (StatusCode, Value) {
        self.post_raw("application/cloudevents+json", event.to_string()).await
    }

    /// POST a JSON `body` to `path`.
    async fn post_raw_to(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self.http.post(self.url(path)).bearer_auth(TOKEN).json(&body).send().await.unwrap();
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }

    /// POST without a body, expecting a JSON answer.
    async fn post_to(&self, path: &str) -> Value {
        self.http.post(self.url(path)).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap()
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.get(self.url(path)).bearer_auth(TOKEN).send().await.unwrap();
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }

    async fn metric(&self, line_prefix: &str) -> u64 {
        let text = self.http.get(self.url("/metrics")).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap();
        let line =
            text.lines().find(|l| l.starts_with(line_prefix)).unwrap_or_else(|| panic!("{line_prefix} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    async fn stop(mut self) {
        self.running.take().unwrap().stop().await.unwrap();
    }
}

fn event(ty: &str) -> Value {
    json!({ "specversion": "1.0", "source": "tests", "type": ty, "device": "d1", "data": { "temperature": 21.5 } })
}

#[tokio::test]
async fn ingest_answers_202_with_minted_id_and_correlation() {
    let server = start().await;
    let (status, body) = server.post(event("telemetry")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = body["id"].as_str().unwrap();
    assert_eq!(id.len(), 26);
    assert_eq!(body["correlationid"], id, "an origin event starts its own chain");
    assert_eq!(body["duplicate"], false);

    let (status, got) = server.get(&format!("/api/v1/events/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["type"], "telemetry");
    assert_eq!(got["data"]["temperature"], 21.5);
    assert_eq!(got["hop"], 0);
    assert!(got["traceparent"].as_str().unwrap().starts_with("00-"));
    assert_eq!(got["states"][0]["state"], "received");
    assert_eq!(got["states"][0]["detail"], "http");
    assert_eq!(server.metric("glassbox_events_received_total").await, 1);
    server.stop().await;
}

#[tokio::test]
async fn chain_headers_are_honoured_and_a_parent_is_inherited() {
    let server = start().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = server
        .http
        .post(server.url("/api/v1/events"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/cloudevents+json")
        .header("correlationid", "order-77")
        .header("traceparent", traceparent)
        .body(event("order.created").to_string())
        .send()
        .await
        .unwrap();
    let parent: Value = response.json().await.unwrap();
    assert_eq!(parent["correlationid"], "order-77");

    let parent_id = parent["id"].as_str().unwrap();
    let child = server
        .http
        .post(server.url("/api/v1/events"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/cloudevents+json")
        .header("causationid", parent_id)
        .body(event("invoice.issued").to_string())
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(child["correlationid"], "order-77", "inherited from the parent");
    let (_, child) = server.get(&format!("/api/v1/events/{}", child["id"].as_str().unwrap())).await;
    assert_eq!(child["causationid"], parent_id);
    assert_eq!(child["hop"], 1);
    assert_eq!(child["traceparent"], traceparent);
    server.stop().await;
}

#[tokio::test]
async fn a_retried_producer_id_is_recorded_once() {
    let server = start().await;
    let mut e = event("payment");
    e["id"] = json!("producer-msg-1");
    let (_, first) = server.post(e.clone()).await;
    let (status, again) = server.post(e).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["duplicate"], true);
    let (_, page) = server.get("/api/v1/events?type=payment").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(page["events"][0]["originid"], "producer-msg-1");
    server.stop().await;
}

#[tokio::test]
async fn bad_inputs_get_4xx_naming_the_problem_and_are_counted() {
    let server = start_with(|c| c.http.body_bytes_max = 4096).await;
    let (status, body) = server.post_raw("application/cloudevents+json", "{\"specversion\": ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "malformed_json");

    let (status, body) = server.post(json!({ "specversion": "1.0", "type": "t" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_event");
    assert_eq!(body["error"]["problems"][0]["field"], "source");
    assert!(body["error"]["message"].as_str().unwrap().contains("source: missing required attribute"));

    let mut big = event("t");
    big["data"] = json!("x".repeat(8192));
    let (status, body) = server.post(big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["error"]["message"].as_str().unwrap().contains("4096"), "{body}");

    let (status, body) = server.post_raw("text/plain", event("t").to_string()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(body["error"]["message"].as_str().unwrap().contains("application/cloudevents+json"));

    let unauthorized = server.http.get(server.url("/api/v1/events")).bearer_auth("gbx_wrong").send().await.unwrap();
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    let missing = server.http.get(server.url("/api/v1/events")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(missing.text().await.unwrap().contains("GLASSBOX_TOKEN"));

    assert_eq!(server.metric("glassbox_api_unauthorized_total").await, 2);
    for (reason, count) in
        [("malformed_json", 1), ("invalid_event", 1), ("too_large", 1), ("unsupported_media_type", 1)]
    {
        assert_eq!(
            server.metric(&format!("glassbox_ingest_rejected_total{{reason=\"{reason}\"}}")).await,
            count,
            "{reason}"
        );
    }
    let (_, page) = server.get("/api/v1/events").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 0, "nothing partially written");
    server.stop().await;
}

#[tokio::test]
async fn a_batch_is_all_or_nothing() {
    let server = start().await;
    let bad = json!([event("a"), { "specversion": "1.0", "source": "s" }]);
    let (status, body) = server.post_raw("application/cloudevents-batch+json", bad.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["problems"][0]["field"], "[1].type");
    let (_, page) = server.get("/api/v1/events").await;
    assert!(page["events"].as_array().unwrap().is_empty());

    let good = json!([event("a"), event("b")]);
    let (status, body) = server.post_raw("application/cloudevents-batch+json", good.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body.as_array().unwrap().len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn a_full_store_answers_503_and_readiness_says_why() {
    // Above an empty store's schema (its tables and indexes, a page each).
    let server = start_with(|c| c.recorder.store_bytes_max = 256 * 1024).await;
    let mut e = event("bulk");
    e["data"] = json!("y".repeat(30_000));
    let mut refused = None;
    for _ in 0..100 {
        let (status, body) = server.post(e.clone()).await;
        if status != StatusCode::ACCEPTED {
            refused = Some((status, body));
            break;
        }
    }
    let (status, body) = refused.expect("the store bound was reached");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"]["message"].as_str().unwrap().contains("full"), "{body}");
    let ready = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.text().await.unwrap().contains("full"));
    assert_eq!(server.metric("glassbox_ingest_rejected_total{reason=\"store_unavailable\"}").await, 1);
    server.stop().await;
}

#[tokio::test]
async fn query_filters_page_and_validate_parameters() {
    let server = start().await;
    for i in 0..7 {
        let mut e = event(if i % 2 == 0 { "device.message" } else { "device.connected" });
        e["device"] = json!(format!("d{}", i % 2));
        server.post(e).await;
    }
    let (_, page) = server.get("/api/v1/events?type=device.*&limit=3").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 3);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, next) = server.get(&format!("/api/v1/events?type=device.*&limit=3&cursor={cursor}")).await;
    assert!(next["events"][0]["id"].as_str().unwrap() < page["events"][2]["id"].as_str().unwrap());

    let (_, by_device) = server.get("/api/v1/events?device=d1").await;
    assert_eq!(by_device["events"].as_array().unwrap().len(), 3);
    let (_, recent) = server.get("/api/v1/events?since=1h&state=received").await;
    assert_eq!(recent["events"].as_array().unwrap().len(), 7);

    let (status, body) = server.get("/api/v1/events?state=lost&since=someday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fields: Vec<_> =
        body["error"]["problems"].as_array().unwrap().iter().map(|p| p["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["state", "since"]);
    let (status, _) = server.get("/api/v1/events?colour=red").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.stop().await;
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_clear() {
    let server = start().await;
    let (status, body) = server.get("/api/v1/events/not-an-id").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("not an event id"));
    let (status, _) = server.get("/api/v1/events/01JD6Y8Q1W3N4ZV7K2M5P9R0ST").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.get("/api/v1/trace/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn trace_returns_the_chain_from_any_member_or_the_correlation_id() {
    let server = start().await;
    let (_, origin) = server.post(event("order.created")).await;
    let origin_id = origin["id"].as_str().unwrap().to_string();
    let mut child = event("invoice.issued");
    child["causationid"] = json!(origin_id);
    let (_, child) = server.post(child).await;
    server.post(event("unrelated")).await;

    for id in [origin_id.as_str(), child["id"].as_str().unwrap()] {
        let (status, chain) = server.get(&format!("/api/v1/trace/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(chain["correlationid"], origin_id);
        let types: Vec<_> = chain["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["order.created", "invoice.issued"]);
        assert!(chain["events"][1]["states"].is_array());
    }
    server.stop().await;
}

#[tokio::test]
async fn tail_streams_new_matching_events() {
    let server = start().await;
    let response =
        server.http.get(server.url("/api/v1/events/tail?type=wanted")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.bytes_stream();
    server.post(event("unwanted")).await;
    let (_, sent) = server.post(event("wanted")).await;
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !text.contains("\n\n") {
        let chunk =
            tokio::time::timeout_at(deadline, body.next()).await.expect("an event within 10 s").unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.starts_with("event: event"), "{text}");
    assert!(text.contains(sent["id"].as_str().unwrap()));
    assert!(!text.contains("unwanted"));
    server.stop().await;
}

#[tokio::test]
async fn health_is_public_and_openapi_lists_every_route() {
    let server = start().await;
    let health = server.http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let doc: Value = server.http.get(server.url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/events",
        "/api/v1/events/tail",
        "/api/v1/events/{id}",
        "/api/v1/trace/{id}",
        "/api/v1/devices/{id}/inspect",
        "/api/v1/devices/{id}/shadow",
        "/api/v1/mqtt/sessions/{client_id}",
        "/api/v1/logs",
        "/api/v1/metrics",
        "/api/v1/metrics/{name}",
        "/api/v1/diagnose",
        "/api/v1/perimeter",
        "/api/v1/anomalies",
        "/api/v1/functions/{name}",
        "/api/v1/functions/{name}/versions",
        "/api/v1/functions/{name}/plan",
        "/api/v1/functions/{name}/promote",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    server.stop().await;
}

#[tokio::test]
async fn devices_are_registered_once_with_a_secret_shown_once_and_changes_are_events() {
    let server = start().await;
    let create =
        |id: &str| server.http.post(server.url("/api/v1/devices")).bearer_auth(TOKEN).json(&json!({ "id": id })).send();
    let created = create("thermo-1").await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["id"], "thermo-1");
    assert!(created["secret"].as_str().unwrap().starts_with("gbxd_"));

    assert_eq!(create("thermo-1").await.unwrap().status(), StatusCode::CONFLICT);
    let bad = create("a/b").await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("letters, digits"));

    let (status, got) = server.get("/api/v1/devices/thermo-1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(got.get("secret").is_none(), "the secret is never shown again");
    let disabled = server.post_to("/api/v1/devices/thermo-1/disable").await;
    assert_eq!(disabled["disabled"], true);
    let rotated = server.post_to("/api/v1/devices/thermo-1/secret").await;
    assert_ne!(rotated["secret"], created["secret"]);

    let (_, list) = server.get("/api/v1/devices").await;
    assert_eq!(list["devices"].as_array().unwrap().len(), 1);
    let deleted = server.http.delete(server.url("/api/v1/devices/thermo-1")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let (status, _) = server.get("/api/v1/devices/thermo-1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, history) = server.get("/api/v1/events?device=thermo-1").await;
    let types: Vec<_> = history["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["device.deleted", "device.secret_rotated", "device.disabled", "device.registered"]);
    server.stop().await;
}

#[tokio::test]
async fn a_producer_cannot_lower_the_hop_of_a_child() {
    let server = start().await;
    let (_, parent) = server.post(event("p")).await;
    let mut child = event("c");
    child["causationid"] = parent["id"].clone();
    child["hop"] = json!(0);
    let (_, child) = server.post(child).await;
    let (_, got) = server.get(&format!("/api/v1/events/{}", child["id"].as_str().unwrap())).await;
    assert_eq!(got["hop"], 1, "the recursion guard must not be evaded");
    server.stop().await;
}

#[tokio::test]
async fn wrong_methods_and_page_sizes_get_json_errors() {
    let server = start().await;
    let response = server.http.put(server.url("/api/v1/events")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    let (status, body) = server.get("/api/v1/events?limit=5000").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("1 to 1000"));
    server.stop().await;
}

/// Real answers of the routes with a type in `glassbox_api_types` conform
/// to `docs/openapi.json` and read back as their type (what the CLI does).
#[tokio::test]
async fn real_answers_conform_to_the_openapi_document_and_their_types() {
    use glassbox_api_types::openapi::Document;
    use glassbox_api_types::{Accepted, Anomalies, Diagnosis, ErrorBody, Health, Logs, MetricRange, Metrics, Page};

    let doc = Document::parse(glassbox_api::OPENAPI).unwrap();
    let conforms = |method: &str, route: &str, status: StatusCode, answer: &Value| {
        let schema = doc.answer(method, route, status.as_u16()).unwrap_or_else(|| panic!("{route} {status}"));
        let problems = doc.check(schema, answer);
        assert!(problems.is_empty(), "{method} {route} {status}: {}\n{answer:#}", problems.join("\n"));
    };
    let server = start().await;
    let (status, one) = server.post(event("order.created")).await;
    conforms("post", "/api/v1/events", status, &one);
    serde_json::from_value::<Accepted>(one.clone()).unwrap();
    let batch = json!([event("a"), event("b")]).to_string();
    let (status, many) = server.post_raw("application/cloudevents-batch+json", batch).await;
    conforms("post", "/api/v1/events", status, &many);
    serde_json::from_value::<Vec<Accepted>>(many).unwrap();

    let id = one["id"].as_str().unwrap();
    // The recorded events are derived into a series (points to check) soon after.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.get("/api/v1/metrics/events_recorded").await.1["series"].as_array().is_none_or(Vec::is_empty) {
        assert!(tokio::time::Instant::now() < deadline, "events_recorded has no series after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (route, path) in [
        ("/api/v1/events", "/api/v1/events?limit=2".to_string()),
        ("/api/v1/events/{id}", format!("/api/v1/events/{id}")),
        ("/api/v1/trace/{id}", format!("/api/v1/trace/{id}")),
        ("/api/v1/logs", "/api/v1/logs".to_string()),
        ("/api/v1/metrics", "/api/v1/metrics".to_string()),
        ("/api/v1/metrics/{name}", "/api/v1/metrics/events_recorded".to_string()),
        ("/api/v1/diagnose", "/api/v1/diagnose".to_string()),
        ("/api/v1/anomalies", "/api/v1/anomalies".to_string()),
        ("/healthz", "/healthz".to_string()),
        ("/readyz", "/readyz".to_string()),
    ] {
        let (status, answer) = server.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        conforms("get", route, status, &answer);
    }
    let read = async |path: &str| server.get(path).await.1;
    serde_json::from_value::<Page<Value>>(read("/api/v1/events").await).unwrap();
    serde_json::from_value::<Logs>(read("/api/v1/logs").await).unwrap();
    serde_json::from_value::<Metrics>(read("/api/v1/metrics").await).unwrap();
    serde_json::from_value::<MetricRange>(read("/api/v1/metrics/events_recorded").await).unwrap();
    serde_json::from_value::<Diagnosis>(read("/api/v1/diagnose").await).unwrap();
    serde_json::from_value::<Anomalies>(read("/api/v1/anomalies").await).unwrap();
    serde_json::from_value::<Health>(read("/healthz").await).unwrap();

    let (status, refusal) = server.get("/api/v1/events?limit=0&state=lost").await;
    conforms("get", "/api/v1/events", status, &refusal);
    assert_eq!(serde_json::from_value::<ErrorBody>(refusal).unwrap().error.problems.len(), 2);
    server.stop().await;
}

/// Calls `path` (an instance of the document's `route`) with a JSON
/// `body`, asserts the answer conforms to `docs/openapi.json`, and reads it
/// back as `T`, its `glassbox_api_types` type (what the CLI does).
async fn conforming<T: serde::de::DeserializeOwned>(
    server: &Server,
    method: reqwest::Method,
    (route, path): (&str, &str),
    body: Option<reqwest::Body>,
) -> T {
    let doc = glassbox_api_types::openapi::Document::parse(glassbox_api::OPENAPI).unwrap();
    let mut request = server.http.request(method.clone(), server.url(path)).bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    let method = method.as_str().to_lowercase();
    let schema = doc.answer(&method, route, status.as_u16()).unwrap_or_else(|| panic!("{route} {status}"));
    let problems = doc.check(schema, &answer);
    assert!(problems.is_empty(), "{method} {route} {status}: {}\n{answer:#}", problems.join("\n"));
    serde_json::from_value(answer.clone()).unwrap_or_else(|e| panic!("{method} {route}: {e}\n{answer:#}"))
}

fn json_body(value: Value) -> Option<reqwest::Body> {
    Some(value.to_string().into())
}

/// The device registry's real answers conform to `docs/openapi.json` and
/// read back as their `glassbox_api_types` type (what the CLI does).
#[tokio::test]
async fn device_answers_conform_to_the_openapi_document_and_their_types() {
    use glassbox_api_types::{DevicePage, DeviceSecret, DeviceToggled, LiveDevice, QueueCleared, Warned};
    use glassbox_store::Device;
    use reqwest::Method;

    let server = start().await;
    let s = &server;
    let created = json_body(json!({"id": "pump-1"}));
    let _: Warned<DeviceSecret<Device>> =
        conforming(s, Method::POST, ("/api/v1/devices", "/api/v1/devices"), created).await;
    let patch = json_body(json!({"tags": {"site": "north"}, "group": "pumps", "cadence": "60s"}));
    let one = ("/api/v1/devices/{id}", "/api/v1/devices/pump-1");
    let _: Warned<LiveDevice<Device>> = conforming(s, Method::PATCH, one, patch).await;
    let page: DevicePage<Device> =
        conforming(s, Method::GET, ("/api/v1/devices", "/api/v1/devices?limit=1"), None).await;
    assert_eq!(page.devices[0].device.meta.group.as_deref(), Some("pumps"));
    let _: Device = conforming(s, Method::GET, one, None).await;
    for verb in ["disable", "enable"] {
        let route = (&*format!("/api/v1/devices/{{id}}/{verb}"), &*format!("/api/v1/devices/pump-1/{verb}"));
        let _: Warned<DeviceToggled<Device>> = conforming(s, Method::POST, route, None).await;
    }
    let secret = ("/api/v1/devices/{id}/secret", "/api/v1/devices/pump-1/secret");
    let _: Warned<DeviceSecret<Device>> = conforming(s, Method::POST, secret, None).await;
    let queue = ("/api/v1/devices/{id}/queue", "/api/v1/devices/pump-1/queue");
    let cleared: Warned<QueueCleared> = conforming(s, Method::DELETE, queue, None).await;
    assert!(!cleared.answer.session);
    server.stop().await;
}

/// The functions' real answers conform to `docs/openapi.json` and read
/// back as their `glassbox_api_types` type, with the spec as the CLI reads it.
#[tokio::test]
async fn function_answers_conform_to_the_openapi_document_and_their_types() {
    use glassbox_api_types::{DeployedVersion, FunctionList, FunctionState, Invocations, LiveChanged, VersionList};
    use glassbox_functions::{InFlight, RecordedInvocation, Spec};
    use reqwest::Method;

    let server = start().await;
    let s = &server;
    let component = std::fs::read(format!("{}/../runtime/tests/fixtures/ok.wat", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let deploy = ("/api/v1/functions/{name}", "/api/v1/functions/fan?trigger=event:order.created");
    for version in [1, 2] {
        let body = Some(component.clone().into());
        let deployed: DeployedVersion<Spec> = conforming(s, Method::POST, deploy, body).await;
        assert_eq!(deployed.version, version);
    }
    let (status, _) = server.post(event("order.created")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let invocations = ("/api/v1/functions/{name}/invocations", "/api/v1/functions/fan/invocations");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed: Invocations<RecordedInvocation> = conforming(s, Method::GET, invocations, None).await;
        if !listed.invocations.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "fan was not invoked within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let filtered = ("/api/v1/functions/{name}/invocations", "/api/v1/functions/fan/invocations?outcome=failed");
    let none: Invocations<RecordedInvocation> = conforming(s, Method::GET, filtered, None).await;
    assert!(none.invocations.is_empty());
    let list: FunctionList<Spec> = conforming(s, Method::GET, ("/api/v1/functions", "/api/v1/functions"), None).await;
    assert_eq!(list.functions[0].spec.triggers, ["event:order.created"]);
    let one = ("/api/v1/functions/{name}", "/api/v1/functions/fan");
    let _: FunctionState<Spec, InFlight> = conforming(s, Method::GET, one, None).await;
    let versions = ("/api/v1/functions/{name}/versions", "/api/v1/functions/fan/versions");
    let _: VersionList<Spec> = conforming(s, Method::GET, versions, None).await;
    let rollback = ("/api/v1/functions/{name}/rollback", "/api/v1/functions/fan/rollback");
    let back: LiveChanged<Spec> = conforming(s, Method::POST, rollback, None).await;
    assert_eq!((back.from, back.live.version), (Some(2), 1));
    let promote = ("/api/v1/functions/{name}/promote", "/api/v1/functions/fan/promote");
    let _: LiveChanged<Spec> = conforming(s, Method::POST, promote, json_body(json!({"version": 2}))).await;
    server.stop().await;
}

/// The commands' and the inspection's real answers conform to
/// `docs/openapi.json` and read back as their `glassbox_api_types` type.
#[tokio::test]
async fn command_and_inspect_answers_conform_to_the_openapi_document_and_their_types() {
    use glassbox_api_types::{CommandIssued, CommandList, DeviceInspection};
    use glassbox_control::LivenessView;
    use glassbox_gateway::broker::SessionInfo;
    use glassbox_store::Device;
    use reqwest::Method;

    let server = start().await;
    let s = &server;
    let (status, _) = server.post_raw_to("/api/v1/devices", json!({"id": "pump-1"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let commands = ("/api/v1/devices/{id}/commands", "/api/v1/devices/pump-1/commands");
    let new = json!({"name": "reboot", "payload": {"delay": 5}, "idempotency_key": "k-1"});
    let first: CommandIssued<Value> = conforming(s, Method::POST, commands, json_body(new.clone())).await;
    let again: CommandIssued<Value> = conforming(s, Method::POST, commands, json_body(new)).await;
    assert_eq!((first.duplicate, again.duplicate, &again.command["id"]), (false, true, &first.command["id"]));
    let list: CommandList<Value> = conforming(s, Method::GET, commands, None).await;
    assert_eq!(list.commands.len(), 1);
    let id = first.command["id"].as_str().unwrap();
    let _: Value = conforming(s, Method::GET, ("/api/v1/commands/{id}", &format!("/api/v1/commands/{id}")), None).await;
    let cancel = ("/api/v1/commands/{id}/cancel", &*format!("/api/v1/commands/{id}/cancel"));
    let _: Value = conforming(s, Method::POST, cancel, None).await;
    let inspect = ("/api/v1/devices/{id}/inspect", "/api/v1/devices/pump-1/inspect");
    type Inspection = DeviceInspection<Device, SessionInfo, LivenessView, Value, Value>;
    let view: Inspection = conforming(s, Method::GET, inspect, None).await;
    assert_eq!((view.device.id.as_str(), view.open_commands), ("pump-1", 0));
    assert!(view.session.is_none(), "never connected");
    assert!(view.liveness.is_none_or(|l| !l.connected && !l.silent), "never heard from");
    server.stop().await;
}

// A start that fails after opening the data directory (here: the API's
// address is taken) closes what it opened, so the next start on the same
// directory, in the same process, opens it.
#[tokio::test]
async fn a_start_that_fails_leaves_the_data_directory_free() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = Config { data_dir: dir.path().join("data"), ..Default::default() };
    config.http.listen = taken.local_addr().unwrap().to_string();
    config.mqtt.listen = "127.0.0.1:0".into();
    let failed = glassbox_server::start(config.clone(), Some(TOKEN)).await.err().expect("the address is taken");
    assert!(format!("{failed:#}").contains("binding the HTTP API"), "{failed:#}");
    config.http.listen = "127.0.0.1:0".into();
    let running = glassbox_server::start(config, Some(TOKEN)).await.expect("the directory is free again");
    running.stop().await.unwrap();
}
