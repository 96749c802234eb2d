//! HTTP-triggered functions and outbound HTTP end to end, with the
//! JavaScript example (`examples/js-http`: a `wasi:http/proxy` component and
//! an event handler that fetches): requests served on routes and traceable
//! by the `x-glassbox-event-id` they answer with; outbound requests allowed,
//! denied (an event of its own) and recorded on the invocation; the chain's
//! `traceparent` only to the host that opted in; bad deploys refused. The
//! components are built by `scripts/test` (or `examples/js-http/build.sh`).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{Server, fixture, start_with};

const TOKEN: &str = "gbx_http_functions_test_token";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn component(file: &str) -> Vec<u8> {
    let path = format!("{}/../../examples/js-http/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{path}: {e}. Build the example first: examples/js-http/build.sh \
             (scripts/test builds every example before running the tests)"
        )
    })
}

/// Requests a test server saw: head (lowercased) and body.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A tiny HTTP server on 127.0.0.1 answering `200 hello there`; returns
/// its port and the requests it saw.
fn upstream() -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let requests = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            requests.lock().unwrap().push((head.to_ascii_lowercase(), body));
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\nconnection: close\r\n\r\nhello there");
        }
    });
    (port, seen)
}

/// A request to a function's route: no token, as a webhook sender would.
async fn request(server: &Server, method: Method, path: &str, traceparent: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", server.http));
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    request.send().await.unwrap()
}

/// The invocation recorded on the chain of `event` (an http.request's id).
async fn invocation_of(server: &Server, event: &str) -> Value {
    server
        .eventually(&format!("/api/v1/trace/{event}"), |chain| {
            chain["invocations"].as_array().and_then(|i| i.first().cloned())
        })
        .await
}

#[tokio::test]
async fn an_http_function_answers_on_its_route_and_its_requests_are_traceable() {
    let server = start_with(TOKEN, |_| {}).await;
    let (traced, traced_seen) = upstream();
    let (plain, plain_seen) = upstream();
    let (denied, denied_seen) = upstream();
    // One slot: every request must find it free once the one before is answered.
    let query = format!(
        "trigger=http:GET%20/hello,http:POST%20/hello&egress=http://127.0.0.1:{plain}&egress_trace=http://127.0.0.1:{traced}\
         &concurrency=1&record_body=true"
    );
    let (status, deployed) =
        server.call(Method::POST, &format!("/api/v1/functions/hello?{query}"), Some(component("hello.wasm"))).await;
    assert_eq!(status, StatusCode::CREATED, "{deployed}");
    assert_eq!(deployed["spec"]["egress"], json!([format!("http://127.0.0.1:{plain}")]));

    // A request, answered by the function, with the id of its event.
    let response = request(&server, Method::GET, "/hello?name=Ada", Some(TRACEPARENT)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let event = response.headers()["x-glassbox-event-id"].to_str().unwrap().to_string();
    assert!(response.headers().contains_key("x-glassbox-invocation-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "hello, Ada");
    let (_, chain) = server.call(Method::GET, &format!("/api/v1/trace/{event}"), None).await;
    let types: Vec<&str> = chain["events"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(types.contains(&"http.request") && types.contains(&"function.invoked"), "{types:?}");
    let recorded = chain["events"].as_array().unwrap().iter().find(|e| e["type"] == "http.request").unwrap();
    assert_eq!((recorded["data"]["method"].clone(), recorded["data"]["path"].clone()), (json!("GET"), json!("/hello")));
    assert_eq!(recorded["data"]["query"], "name=Ada");
    assert_eq!(recorded["traceparent"], TRACEPARENT, "the caller's trace continues");
    let invocation = invocation_of(&server, &event).await;
    assert_eq!(invocation["outcome"], "succeeded", "{invocation}");
    assert_eq!(invocation["http"]["status"], 200);
    assert!(invocation["logs"].as_array().unwrap().iter().any(|l| l["message"] == "GET /hello"), "{invocation}");

    // POST: the body reaches the function and, small, the event.
    let response = reqwest::Client::new()
        .post(format!("{}/hello", server.http))
        .header("authorization", "Bearer caller-secret")
        .json(&json!({"n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let event = response.headers()["x-glassbox-event-id"].to_str().unwrap().to_string();
    assert_eq!(response.json::<Value>().await.unwrap()["received"], 7);
    let (_, recorded) = server.call(Method::GET, &format!("/api/v1/events/{event}"), None).await;
    assert_eq!(recorded["data"]["body"], json!({"n": 1}), "{recorded}");
    assert_eq!(recorded["data"]["headers"]["authorization"], "[redacted]");
    let posted = event;

    // Outbound to the host that opted in: recorded, with the chain's traceparent.
    let response =
        request(&server, Method::GET, &format!("/hello?fetch=http://127.0.0.1:{traced}/x"), Some(TRACEPARENT)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let event = response.headers()["x-glassbox-event-id"].to_str().unwrap().to_string();
    let invocation = invocation_of(&server, &event).await;
    let egress = &invocation["egress"][0];
    assert_eq!(
        (egress["host"].clone(), egress["method"].clone(), egress["status"].clone(), egress["bytes_in"].clone()),
        (json!("127.0.0.1"), json!("GET"), json!(200), json!(11)),
        "{invocation}"
    );
    assert_eq!((egress["outcome"].clone(), egress["traceparent"].clone()), (json!("completed"), json!(true)));
    let (head, _) = traced_seen.lock().unwrap().last().cloned().unwrap();
    assert!(head.contains("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-"), "same trace: {head}");

    // Outbound to an allowed host that did not opt in: no traceparent.
    let response =
        request(&server, Method::GET, &format!("/hello?fetch=http://127.0.0.1:{plain}/x"), Some(TRACEPARENT)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (head, _) = plain_seen.lock().unwrap().last().cloned().unwrap();
    assert!(!head.contains("traceparent"), "{head}");

    // Outbound to a host not on the list: denied, an error to the function
    // (it answers 502), an event on the chain, and on the invocation.
    let response = request(&server, Method::GET, &format!("/hello?fetch=http://127.0.0.1:{denied}/x"), None).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let event = response.headers()["x-glassbox-event-id"].to_str().unwrap().to_string();
    let invocation = invocation_of(&server, &event).await;
    assert_eq!((invocation["outcome"].clone(), invocation["http"]["status"].clone()), (json!("failed"), json!(502)));
    assert_eq!(invocation["egress"][0]["outcome"], "denied", "{invocation}");
    let (_, chain) = server.call(Method::GET, &format!("/api/v1/trace/{event}"), None).await;
    let denial = chain["events"].as_array().unwrap().iter().find(|e| e["type"] == "function.egress_denied").cloned();
    let denial = denial.unwrap_or_else(|| panic!("no function.egress_denied in {chain}"));
    assert_eq!(
        (denial["data"]["host"].clone(), denial["data"]["reason"].clone()),
        (json!("127.0.0.1"), json!("egress_denied"))
    );
    assert!(denied_seen.lock().unwrap().is_empty(), "nothing reached the denied host");
    // Metrics, derived from those records a moment after them.
    let wanted = [
        r#"glassbox_function_egress_requests_total{function="hello",outcome="completed"} 2"#,
        r#"glassbox_function_egress_requests_total{function="hello",outcome="denied"} 1"#,
        r#"reason="egress_denied""#,
    ];
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = server.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
        if wanted.iter().all(|w| metrics.contains(w)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(wanted.iter().all(|w| metrics.contains(w)), "{wanted:?} in {metrics}");

    // A recorded request replays: rebuilt from its event (the redacted
    // header left out), answered again; a dry run records nothing.
    let replay =
        |body: Value| server.call(Method::POST, "/api/v1/functions/hello/replay", Some(body.to_string().into_bytes()));
    let (status, dry) = replay(json!({"event_id": posted, "dry_run": true})).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!((dry["dry_run"].clone(), dry["response"]["status"].clone()), (json!(true), json!(200)), "{dry}");
    assert!(dry["response"]["body"].as_str().unwrap().contains("\"received\":7"), "{dry}");
    let (_, replayed) = replay(json!({"event_id": posted})).await;
    assert_eq!((replayed["replay_of"].clone(), replayed["http"]["status"].clone()), (json!(posted), json!(200)));
    assert_eq!(replayed["response"]["status"], 200, "{replayed}");
    for answer in [&dry, &replayed] {
        let doc = glassbox_api_types::openapi::Document::parse(glassbox_api::OPENAPI).unwrap();
        let problems = doc.check(doc.answer("post", "/api/v1/functions/{name}/replay", 200).unwrap(), answer);
        assert!(problems.is_empty(), "{}\n{answer:#}", problems.join("\n"));
        let read: glassbox_functions::Replayed = serde_json::from_value(answer.clone()).unwrap();
        let response = match read {
            glassbox_functions::Replayed::DryRun(dry) => dry.response,
            glassbox_functions::Replayed::Recorded(recorded) => {
                let invocation = recorded.invocation.unwrap_or_else(|| panic!("recorded: {answer:#}"));
                assert_eq!(invocation.invocation.key.replay_of.as_deref(), Some(posted.as_str()));
                recorded.response
            }
        };
        assert_eq!(response.map(|r| r.status()), Some(200), "{answer:#}");
    }
    let (_, chain) = server.call(Method::GET, &format!("/api/v1/trace/{posted}"), None).await;
    assert_eq!(chain["invocations"].as_array().unwrap().len(), 2, "the request and its one recorded replay: {chain}");
    // A dry run reaches nothing outside: the fetch that went out is denied.
    let (_, dry) = replay(json!({"event_id": event, "dry_run": true})).await;
    assert_eq!((dry["response"]["status"].clone(), dry["egress"][0]["outcome"].clone()), (json!(502), json!("denied")));
    // Only requests replay through an HTTP function.
    let (status, refused) = replay(json!({"event_id": invocation["id"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused["error"]["message"].as_str().unwrap().contains("replays http.request events"), "{refused}");

    // No route here: 404, as before; the API is unaffected.
    assert_eq!(request(&server, Method::GET, "/nothing-here", None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(request(&server, Method::DELETE, "/hello", None).await.status(), StatusCode::NOT_FOUND);
    let (status, list) = server.call(Method::GET, "/api/v1/functions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["functions"][0]["spec"]["triggers"], json!(["http:GET /hello", "http:POST /hello"]));
    server.running.unwrap().stop().await.unwrap();
}

// Issue 16, finding 9: an `http.request` event keeps headers by allow-list,
// redacts secret-looking query parameters, and keeps the body only when the
// route opts in; replay still rebuilds the request from what was kept.
#[tokio::test]
async fn finding_9_http_request_events_keep_only_what_is_allowed() {
    let server = start_with(TOKEN, |_| {}).await;
    let deploy = async |extra: &str| {
        let query = format!("trigger=http:GET%20/nine,http:POST%20/nine{extra}");
        let (status, body) =
            server.call(Method::POST, &format!("/api/v1/functions/nine?{query}"), Some(component("hello.wasm"))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    };
    deploy("").await;
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{}/nine?name=Ada&token=T0KEN1&api_key=K3Y1&sig=S1G1&code=C0DE1", server.http))
        .header("x-custom", "CUST0M1")
        .header("cookie", "session=C00KIE1")
        .header("x-hub-signature-256", "sha256=H00K1")
        .header("user-agent", "perimeter-test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let got = response.headers()["x-glassbox-event-id"].to_str().unwrap().to_string();
    let (_, recorded) = server.call(Method::GET, &format!("/api/v1/events/{got}"), None).await;
    let text = recorded.to_string();
    for secret in ["T0KEN1", "K3Y1", "S1G1", "C0DE1", "CUST0M1", "C00KIE1", "H00K1"] {
        assert!(!text.contains(secret), "{secret} was recorded: {recorded}");
    }
    let data = &recorded["data"];
    assert_eq!(data["query"], "name=Ada&token=[redacted]&api_key=[redacted]&sig=[redacted]&code=[redacted]");
    assert_eq!(data["headers"]["user-agent"], "perimeter-test", "an allowed header is kept");
    assert_eq!(data["headers"]["x-custom"], "[redacted]", "{data}");

    let response = client.post(format!("{}/nine", server.http)).json(&json!({"password": "B0DY1"})).send().await;
    let posted = response.unwrap().headers()["x-glassbox-event-id"].to_str().unwrap().to_string();
    let (_, recorded) = server.call(Method::GET, &format!("/api/v1/events/{posted}"), None).await;
    assert!(!recorded.to_string().contains("B0DY1"), "a body is kept only when the route opts in: {recorded}");
    assert_eq!(recorded["data"]["body_bytes"], 20);

    // Replay rebuilds the request from what was kept: the query without
    // its redacted parameters; a body that was not kept says so.
    let replay = async |event: &str| {
        let body = json!({"event_id": event, "dry_run": true}).to_string().into_bytes();
        server.call(Method::POST, "/api/v1/functions/nine/replay", Some(body)).await
    };
    let (status, dry) = replay(&got).await;
    assert_eq!((status, dry["response"]["status"].clone()), (StatusCode::OK, json!(200)), "{dry}");
    assert!(dry["response"]["body"].as_str().unwrap().contains("hello, Ada"), "{dry}");
    let (status, refused) = replay(&posted).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused["error"]["message"].as_str().unwrap().contains("--record-body"), "{refused}");

    // Opted in: the body and the named header are kept.
    deploy("&record_body=true&record_headers=X-Custom").await;
    let response = client
        .post(format!("{}/nine", server.http))
        .header("x-custom", "CUST0M2")
        .json(&json!({"n": 2}))
        .send()
        .await
        .unwrap();
    let event = response.headers()["x-glassbox-event-id"].to_str().unwrap().to_string();
    let (_, recorded) = server.call(Method::GET, &format!("/api/v1/events/{event}"), None).await;
    assert_eq!(recorded["data"]["body"], json!({"n": 2}), "{recorded}");
    assert_eq!(recorded["data"]["headers"]["x-custom"], "CUST0M2", "{recorded}");
    let (status, dry) = replay(&event).await;
    assert_eq!((status, dry["response"]["status"].clone()), (StatusCode::OK, json!(200)), "{dry}");
    server.running.unwrap().stop().await.unwrap();
}

// Issue 16, finding 6: a public function route over
// `http.route_requests_per_second` answers 429 with `retry-after` and records
// nothing; a body declared over the route's limit is refused 413 at once.
#[tokio::test]
async fn finding_6_a_public_route_over_its_rate_records_nothing() {
    let server = start_with(TOKEN, |c| c.http.route_requests_per_second = 1).await;
    let query = "trigger=http:GET%20/hello,http:POST%20/hello";
    let (status, body) =
        server.call(Method::POST, &format!("/api/v1/functions/hello?{query}"), Some(component("hello.wasm"))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let response = request(&server, Method::GET, "/hello", None).await;
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(response.headers().contains_key("retry-after"));
            assert!(!response.headers().contains_key("x-glassbox-event-id"), "nothing recorded");
        }
    }
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert!(refused > 0, "10 requests at once at 1 per second were all served: {statuses:?}");
    let (_, page) = server.call(Method::GET, "/api/v1/events?type=http.request&limit=100", None).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 10 - refused, "only the served requests are recorded");

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.http.trim_start_matches("http://")).await.unwrap();
    let head = "POST /hello HTTP/1.1\r\nhost: glassbox\r\ncontent-length: 10737418240\r\n\r\n{}";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await;
    let n = read.expect("no answer to a 10 GiB body").unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 413") && answer.contains("8388608"), "{answer}");
    server.running.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn an_event_function_reaches_only_its_egress_hosts() {
    let server = start_with(TOKEN, |_| {}).await;
    let (port, seen) = upstream();
    let query = format!("trigger=event:alarm.raised&retries=0&egress=http://127.0.0.1:{port}");
    let (status, deployed) =
        server.call(Method::POST, &format!("/api/v1/functions/forward?{query}"), Some(component("forward.wasm"))).await;
    assert_eq!(status, StatusCode::CREATED, "{deployed}");
    let alarm = |url: String| {
        json!({"specversion": "1.0", "source": "test", "type": "alarm.raised", "data": {"url": url, "payload": {"door": 3}}})
            .to_string()
            .into_bytes()
    };
    let (status, _) =
        server.call(Method::POST, "/api/v1/events", Some(alarm(format!("http://127.0.0.1:{port}/hook")))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let invocation =
        server.eventually("/api/v1/functions/forward/invocations", |b| b["invocations"].get(0).cloned()).await;
    assert_eq!(invocation["outcome"], "succeeded", "{invocation}");
    let egress = &invocation["egress"][0];
    assert_eq!((egress["method"].clone(), egress["status"].clone()), (json!("POST"), json!(200)), "{invocation}");
    assert_eq!((egress["bytes_out"].clone(), egress["bytes_in"].clone()), (json!(10), json!(11)));
    assert_eq!(seen.lock().unwrap()[0].1, br#"{"door":3}"#);

    // A dry-run replay reaches nothing outside: its request is denied, and listed.
    let replay = json!({"event_id": invocation["event_id"], "dry_run": true}).to_string().into_bytes();
    let (status, dry) = server.call(Method::POST, "/api/v1/functions/forward/replay", Some(replay)).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(dry["egress"][0]["outcome"], "denied", "{dry}");
    let why = dry["egress"][0]["error"].as_str().unwrap();
    assert!(why.starts_with("dry_run: not sent; a real run would send it"), "{why}");
    let request = json!({ "method": "POST", "scheme": "http", "host": "127.0.0.1", "port": port, "allowed": true });
    assert_eq!(dry["would"]["requests"], json!([request]), "listed as a request a real run would send");
    assert_eq!(seen.lock().unwrap().len(), 1, "the webhook was not called again");
    let (_, denials) = server.call(Method::GET, "/api/v1/events?type=function.egress_denied", None).await;
    assert_eq!(denials["events"], json!([]), "a dry run's refusal is not recorded either");

    // Anywhere else: denied, recorded, and an error to the function, which fails.
    let (status, _) =
        server.call(Method::POST, "/api/v1/events", Some(alarm("http://not-allowed.invalid/hook".into()))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let denial = server.eventually("/api/v1/events?type=function.egress_denied", |b| b["events"].get(0).cloned()).await;
    assert_eq!(
        (denial["data"]["host"].clone(), denial["data"]["function"].clone()),
        (json!("not-allowed.invalid"), json!("forward"))
    );
    let invocations = server
        .eventually("/api/v1/functions/forward/invocations", |b| {
            b["invocations"].get(1).map(|_| b["invocations"].clone())
        })
        .await;
    let denied = &invocations[0];
    assert_eq!(denied["outcome"], "failed", "{denied}");
    assert!(
        denied["error"].as_str().unwrap().starts_with("could not reach http://not-allowed.invalid/hook"),
        "{denied}"
    );
    assert_eq!(denied["egress"][0]["outcome"], "denied");
    server.running.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn bad_http_deploys_are_refused_with_what_is_wrong() {
    let server = start_with(TOKEN, |_| {}).await;
    let deploy = async |name: &str, body: Vec<u8>, query: &str| {
        server.call(Method::POST, &format!("/api/v1/functions/{name}?{query}"), Some(body)).await
    };
    let (status, _) = deploy("one", component("hello.wasm"), "trigger=http:*%20/shared/*").await;
    assert_eq!(status, StatusCode::CREATED);
    let refused = async |name: &str, body: Vec<u8>, query: &str| {
        let (status, body) = deploy(name, body, query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        body["error"]["message"].as_str().unwrap().to_string()
    };
    let clash = refused("two", component("hello.wasm"), "trigger=http:GET%20/shared/*").await;
    assert!(clash.contains("clashes with http:* /shared/* of function one"), "{clash}");
    let world = refused("three", fixture("ok"), "trigger=http:GET%20/x").await;
    assert!(world.contains("need a component of the wasi:http/proxy world"), "{world}");
    let events = refused("four", component("hello.wasm"), "trigger=event:x").await;
    assert!(events.contains("HTTP handler"), "{events}");
    let route = refused("five", component("hello.wasm"), "trigger=http:GET%20/api/v1/x").await;
    assert!(route.contains("server's own"), "{route}");
    let host = refused("six", component("hello.wasm"), "trigger=http:GET%20/six&egress=http://x.com/").await;
    assert!(host.contains("not a URL"), "{host}");
    // A more specific route of another function is fine, and wins for its path.
    let (status, _) = deploy("seven", component("hello.wasm"), "trigger=http:GET%20/shared/exact").await;
    assert_eq!(status, StatusCode::CREATED);
    let response = request(&server, Method::GET, "/shared/exact", None).await;
    let event = response.headers()["x-glassbox-event-id"].to_str().unwrap().to_string();
    let (_, recorded) = server.call(Method::GET, &format!("/api/v1/events/{event}"), None).await;
    assert_eq!(recorded["data"]["function"], "seven");
    let response = request(&server, Method::GET, "/shared/other", None).await;
    let event = response.headers()["x-glassbox-event-id"].to_str().unwrap().to_string();
    let (_, recorded) = server.call(Method::GET, &format!("/api/v1/events/{event}"), None).await;
    assert_eq!(recorded["data"]["function"], "one");
    server.running.unwrap().stop().await.unwrap();
}

/// A deleted HTTP function's route answers 404 at once, and is free for
/// another function to take.
#[tokio::test]
async fn a_deleted_http_function_frees_its_route() {
    let server = start_with(TOKEN, |_| {}).await;
    let deploy = async |name: &str| {
        let path = format!("/api/v1/functions/{name}?trigger=http:GET%20/hello");
        server.call(Method::POST, &path, Some(component("hello.wasm"))).await
    };
    assert_eq!(deploy("hello").await.0, StatusCode::CREATED);
    assert_eq!(request(&server, Method::GET, "/hello", None).await.status(), StatusCode::OK);
    assert_eq!(deploy("other").await.0, StatusCode::BAD_REQUEST, "the route is taken");

    let (status, deleted) = server.call(Method::DELETE, "/api/v1/functions/hello", None).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(request(&server, Method::GET, "/hello", None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(deploy("other").await.0, StatusCode::CREATED, "the route is free");
    assert_eq!(request(&server, Method::GET, "/hello", None).await.status(), StatusCode::OK);
    let (status, refused) =
        server.call(Method::POST, "/api/v1/functions/hello/promote", Some(b"{\"version\":1}".to_vec())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "promoting it back would clash with other's route: {refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("clashes"), "{refused}");
    server.running.unwrap().stop().await.unwrap();
}
