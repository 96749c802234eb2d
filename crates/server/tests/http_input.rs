//! Issue 17, item 6: the HTTP API's input gaps and the shape of its errors.
//! Every refusal is JSON, `{"error": {"code", "message"}}`, whose message
//! names the field, parameter or limit and what to do; attributes and
//! headers are checked for what they name; a body over its limit is
//! refused at once. Over real TCP, against a whole server.

mod common;

use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{Server, start_with};

const TOKEN: &str = "gbx_http_input_test_token";
/// How long a test waits for an answer or a close before calling the
/// connection held open (a bound on a hang, not a duration asserted).
const HANG: Duration = Duration::from_secs(30);
/// What "at once" means for a refusal that needs no body.
const PROMPT: Duration = Duration::from_secs(5);

/// Sends `request`; its status and JSON error, asserting the answer is
/// JSON with a code and a message.
async fn refusal(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    assert_eq!(content_type.as_deref(), Some("application/json"), "{status}: not JSON: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: {e}: {text}"));
    assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string(), "{status}: {body}");
    (status, body["error"].clone())
}

fn message(error: &Value) -> &str {
    error["message"].as_str().unwrap()
}

/// Asserts the error's status, code, and that its message says each of `says`.
fn assert_refused(got: (StatusCode, Value), status: StatusCode, code: &str, says: &[&str], context: &str) {
    let (got_status, error) = got;
    assert_eq!((got_status, error["code"].as_str().unwrap()), (status, code), "{context}: {error}");
    for said in says {
        assert!(message(&error).contains(said), "{context}: the message does not say {said:?}: {error}");
    }
}

fn event(extra: Value) -> Value {
    let mut event = json!({ "specversion": "1.0", "source": "tests", "type": "reading" });
    event.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    event
}

fn post_event(server: &Server, body: &Value) -> reqwest::RequestBuilder {
    server.request(Method::POST, "/api/v1/events").header("content-type", "application/cloudevents+json").json(body)
}

async fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(server.http.trim_start_matches("http://")).await.unwrap()
}

/// Everything the server sends until it closes the connection; None if
/// it still holds it open after [`HANG`].
async fn until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(HANG, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| String::from_utf8_lossy(&received).into_owned())
}

/// The JSON error in a raw HTTP answer.
fn raw_error(answer: &str) -> Value {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_else(|| panic!("no body: {answer}"));
    assert!(answer.to_ascii_lowercase().contains("content-type: application/json"), "not JSON: {answer}");
    serde_json::from_str::<Value>(body).unwrap_or_else(|e| panic!("{e}: {answer}"))["error"].clone()
}

// Issue 17, item 6: an empty batch `[]` was answered 202 with nothing recorded.
#[tokio::test]
async fn an_empty_batch_is_refused() {
    let server = start_with(TOKEN, |_| {}).await;
    let request = server
        .request(Method::POST, "/api/v1/events")
        .header("content-type", "application/cloudevents-batch+json")
        .body("[]");
    assert_refused(refusal(request).await, StatusCode::BAD_REQUEST, "empty_batch", &["at least one"], "[]");
    server.running.unwrap().stop().await.unwrap();
}

// Issue 17, item 6: `causationid:"zzz"`, `dataschema:"::::"`, `device:"a/b#"`
// and control characters in `type` (and `source`, `subject`) were recorded.
#[tokio::test]
async fn attributes_are_checked_for_what_they_name() {
    let server = start_with(TOKEN, |_| {}).await;
    let cases = [
        (json!({ "causationid": "zzz" }), "causationid", "not an event id"),
        (json!({ "dataschema": "::::" }), "dataschema", "not a URI"),
        (json!({ "device": "a/b#" }), "device", "use letters, digits"),
        (json!({ "type": "reading\u{7}" }), "type", "control character U+0007"),
        (json!({ "source": "tests\u{1b}[31m" }), "source", "control character U+001B"),
        (json!({ "subject": "line\nbreak" }), "subject", "control character U+000A"),
    ];
    for (extra, field, says) in cases {
        let (status, error) = refusal(post_event(&server, &event(extra))).await;
        assert_refused((status, error.clone()), StatusCode::BAD_REQUEST, "invalid_event", &[field, says], field);
        assert_eq!(error["problems"][0]["field"], field, "{error}");
    }
    // What they should be is accepted: a parent's id (in any case), a URI, a device id.
    let (status, parent) = server.call(Method::POST, "/api/v1/events", Some(event(json!({})).to_string().into())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{parent}");
    let parent_id = parent["id"].as_str().unwrap().to_ascii_lowercase();
    let fine = event(json!({ "causationid": parent_id, "dataschema": "urn:example:reading", "device": "site.a:7" }));
    let response = post_event(&server, &fine).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED, "{}", response.text().await.unwrap());
    server.running.unwrap().stop().await.unwrap();
}

// Issue 18, item 8: `events send --causation 01K…` naming no recorded event
// silently started a new chain. It is refused, attribute or header, naming
// each offender in a batch; nothing is recorded.
#[tokio::test]
async fn a_causationid_that_names_no_recorded_event_is_refused() {
    let server = start_with(TOKEN, |_| {}).await;
    let nowhere = "01KBZZZZZZZZZZZZZZZZZZZZZZ";
    let by_attribute = post_event(&server, &event(json!({ "causationid": nowhere })));
    let by_header = post_event(&server, &event(json!({}))).header("causationid", nowhere);
    for request in [by_attribute, by_header] {
        let (status, error) = refusal(request).await;
        let says = [nowhere, "names no recorded event", "leave causationid out"];
        assert_refused((status, error.clone()), StatusCode::BAD_REQUEST, "unknown_causation", &says, nowhere);
        assert_eq!(error["problems"][0]["field"], "causationid", "{error}");
    }
    let (_, parent) = server.call(Method::POST, "/api/v1/events", Some(event(json!({})).to_string().into())).await;
    let batch = json!([event(json!({ "causationid": parent["id"] })), event(json!({ "causationid": nowhere }))]);
    let request = server
        .request(Method::POST, "/api/v1/events")
        .header("content-type", "application/cloudevents-batch+json")
        .body(batch.to_string());
    let (status, error) = refusal(request).await;
    assert_refused(
        (status, error.clone()),
        StatusCode::BAD_REQUEST,
        "unknown_causation",
        &["[1].causationid"],
        "batch",
    );
    assert_eq!(error["problems"].as_array().unwrap().len(), 1, "only the unknown one: {error}");
    let (_, page) = server.call(Method::GET, "/api/v1/events?type=reading", None).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1, "only the parent was recorded: {page}");
    server.running.unwrap().stop().await.unwrap();
}

// Issue 17, item 6: `Content-Type: …; charset=utf-16` was read as UTF-8.
#[tokio::test]
async fn a_charset_other_than_utf8_is_refused_naming_what_is_accepted() {
    let server = start_with(TOKEN, |_| {}).await;
    let ingest = server
        .request(Method::POST, "/api/v1/events")
        .header("content-type", "application/cloudevents+json; charset=utf-16")
        .body(event(json!({})).to_string());
    let create = server
        .request(Method::POST, "/api/v1/devices")
        .header("content-type", "application/json; charset=iso-8859-1")
        .body(r#"{"id":"d1"}"#);
    for (request, charset) in [(ingest, "utf-16"), (create, "iso-8859-1")] {
        let got = refusal(request).await;
        assert_refused(got, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", &[charset, "UTF-8"], charset);
    }
    server.running.unwrap().stop().await.unwrap();
}

// Issue 17, item 6: non-UTF-8 `traceparent`/`correlationid` headers were
// silently ignored while `traceparent: garbage` was a 400.
#[tokio::test]
async fn context_headers_that_are_not_utf8_or_malformed_are_refused() {
    let server = start_with(TOKEN, |_| {}).await;
    let cases = [
        ("traceparent", HeaderValue::from_bytes(b"\xff\xfe").unwrap(), "not UTF-8"),
        ("correlationid", HeaderValue::from_bytes(b"order-\xc3\x28").unwrap(), "not UTF-8"),
        ("causationid", HeaderValue::from_static("zzz"), "not an event id"),
        ("traceparent", HeaderValue::from_static("garbage"), "not a W3C traceparent"),
    ];
    for (name, value, says) in cases {
        let request = post_event(&server, &event(json!({}))).header(name, value);
        let (status, error) = refusal(request).await;
        assert_refused((status, error.clone()), StatusCode::BAD_REQUEST, "invalid_header", &[name, says], name);
        assert_eq!(error["problems"][0]["field"], name, "{error}");
    }
    let (_, page) = server.call(Method::GET, "/api/v1/events?type=reading", None).await;
    assert_eq!(page["events"], json!([]), "nothing was recorded");
    server.running.unwrap().stop().await.unwrap();
}

// Issue 17, item 6: `limit=-1` answered serde's "invalid digit found in
// string", and on some routes as plain text.
#[tokio::test]
async fn malformed_query_parameters_name_the_parameter_and_what_it_takes_on_every_route() {
    let server = start_with(TOKEN, |_| {}).await;
    let cases = [
        (Method::GET, "/api/v1/events?limit=-1", "limit", "an integer from 1 to 1000"),
        (Method::GET, "/api/v1/events/tail?limit=abc", "limit", "an integer from 1 to 1000"),
        (Method::GET, "/api/v1/logs?limit=-1", "limit", "an integer from 1 to 10000"),
        (Method::GET, "/api/v1/devices?limit=-1", "limit", "an integer from 1 to 1000"),
        (Method::GET, "/api/v1/devices?connected=maybe", "connected", "true or false"),
        (Method::GET, "/api/v1/devices/d1/commands?limit=-1", "limit", "an integer from 1 to 1000"),
        (Method::GET, "/api/v1/functions/f/invocations?limit=x", "limit", "an integer from 1 to 1000"),
        (Method::GET, "/api/v1/anomalies?active=maybe", "active", "true or false"),
        (Method::POST, "/api/v1/functions/f?trigger=event:x&concurrency=-1", "concurrency", "a whole number"),
        (Method::POST, "/api/v1/functions/f", "trigger", "missing"),
        (Method::DELETE, "/api/v1/functions/f?force=maybe", "force", "true or false"),
        (Method::GET, "/api/v1/events?limti=5", "limti", "not a parameter of this route; it takes"),
        (Method::GET, "/api/v1/events?limit=5&limit=6", "limit", "more than once"),
    ];
    for (method, path, parameter, takes) in cases {
        let (status, error) = refusal(server.request(method, path).body("(component)")).await;
        let says = [parameter, takes];
        assert_refused((status, error.clone()), StatusCode::BAD_REQUEST, "invalid_parameter", &says, path);
        assert_eq!(error["problems"][0]["field"], parameter, "{path}: {error}");
        assert!(!message(&error).contains("invalid digit"), "{path}: serde's words: {error}");
    }
    server.running.unwrap().stop().await.unwrap();
}

// Issue 17, item 6: a body over the limit (sent without a declared length)
// was answered 413 in plain text that named no limit.
#[tokio::test]
async fn a_body_over_the_limit_is_a_json_413_naming_the_limit() {
    let server = start_with(TOKEN, |c| c.http.body_bytes_max = 1024).await;
    let big = format!(r#"{{"id":"{}"}}"#, "x".repeat(4096));
    for path in ["/api/v1/devices", "/api/v1/devices/d1/shadow", "/api/v1/devices/d1/commands", "/api/v1/events"] {
        let chunks: Vec<Result<String, std::io::Error>> = vec![Ok(big.clone())];
        let request = server
            .request(Method::POST, path)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)));
        let says = ["1024", "http.body_bytes_max"];
        assert_refused(refusal(request).await, StatusCode::PAYLOAD_TOO_LARGE, "too_large", &says, path);
    }
    server.running.unwrap().stop().await.unwrap();
}

// Issue 17, item 6: `Content-Length: 10737418240` with a 2-byte body held
// the connection open for minutes. Refused at once on every route that
// takes a body, with a JSON 413 naming the limit, and the connection
// closed (the body timeout is an hour: only the declared length answers).
#[tokio::test]
async fn a_declared_10_gib_body_is_refused_at_once_on_every_route_and_the_connection_closed() {
    let server = start_with(TOKEN, |c| c.http.body_read_timeout = Duration::from_secs(3600)).await;
    let routes = [
        ("POST", "/api/v1/devices", "262144 bytes (http.body_bytes_max)"),
        ("PATCH", "/api/v1/devices/d1", "262144 bytes (http.body_bytes_max)"),
        ("POST", "/api/v1/devices/d1/shadow", "262144 bytes (http.body_bytes_max)"),
        ("POST", "/api/v1/devices/d1/commands", "262144 bytes (http.body_bytes_max)"),
        ("POST", "/api/v1/functions/f/replay", "262144 bytes (http.body_bytes_max)"),
        ("POST", "/api/v1/events", "262144 bytes (http.body_bytes_max)"),
        ("POST", "/api/v1/functions/f?trigger=event:x", "134217728 bytes"),
    ];
    for (method, path, limit) in routes {
        let mut stream = connect(&server).await;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: glassbox\r\nauthorization: Bearer {TOKEN}\r\n\
             content-type: application/json\r\ncontent-length: 10737418240\r\n\r\n{{}}"
        );
        let started = Instant::now();
        stream.write_all(head.as_bytes()).await.unwrap();
        let answer = until_closed(&mut stream).await.unwrap_or_else(|| panic!("{path}: the connection was held open"));
        assert!(started.elapsed() < PROMPT, "{path}: answered after {:?}", started.elapsed());
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        let error = raw_error(&answer);
        assert_eq!(error["code"], "too_large", "{path}: {error}");
        for said in ["10737418240", limit] {
            assert!(message(&error).contains(said), "{path}: does not say {said:?}: {error}");
        }
    }
    server.running.unwrap().stop().await.unwrap();
}

// Issue 17, item 6: a declared length longer than the body sent is cut off
// by `http.body_read_timeout` on every route (it was on ingest only), with
// a JSON 408 naming the setting, and the connection closed.
#[tokio::test]
async fn a_body_shorter_than_declared_is_cut_off_by_the_body_read_timeout() {
    let server = start_with(TOKEN, |c| c.http.body_read_timeout = Duration::from_millis(300)).await;
    for path in ["/api/v1/devices", "/api/v1/devices/d1/shadow", "/api/v1/events"] {
        let mut stream = connect(&server).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: glassbox\r\nauthorization: Bearer {TOKEN}\r\n\
             content-type: application/json\r\ncontent-length: 100\r\n\r\n{{}}"
        );
        let started = Instant::now();
        stream.write_all(head.as_bytes()).await.unwrap();
        let answer = until_closed(&mut stream).await.unwrap_or_else(|| panic!("{path}: the connection was held open"));
        assert!(started.elapsed() < PROMPT, "{path}: answered after {:?}", started.elapsed());
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        let error = raw_error(&answer);
        assert_eq!(error["code"], "body_timeout", "{path}: {error}");
        assert!(message(&error).contains("http.body_read_timeout"), "{path}: {error}");
    }
    server.running.unwrap().stop().await.unwrap();
}

// Issue 17, item 6: "expected struct UpdateState" and the like leaked the
// types that read a body instead of saying what the body should be.
#[tokio::test]
async fn json_bodies_are_explained_in_the_senders_terms() {
    let server = start_with(TOKEN, |_| {}).await;
    let json = |method: Method, path: &str, body: &str| {
        server.request(method, path).header("content-type", "application/json").body(body.to_string())
    };
    let cases = [
        (
            json(Method::POST, "/api/v1/devices/d1/shadow", r#"{"state":"x"}"#),
            "invalid_shadow_update",
            "state is a string",
        ),
        (json(Method::POST, "/api/v1/devices", r#""x""#), "invalid_body", r#"like {"id": "thermo-1"}"#),
        (json(Method::POST, "/api/v1/devices", r#"{"id":"d1","colour":1}"#), "invalid_body", "`colour` is not a field"),
        (
            json(Method::POST, "/api/v1/devices/d1/commands", r#"{"name":5}"#),
            "invalid_body",
            "`name` is the number `5`",
        ),
        (json(Method::POST, "/api/v1/functions/f/replay", "{}"), "invalid_body", "lacks the field `event_id`"),
        (
            json(Method::POST, "/api/v1/functions/f/promote", r#"{"version":"2"}"#),
            "invalid_body",
            r#"like {"version": 2}"#,
        ),
        (json(Method::PATCH, "/api/v1/devices/d1", "[1]"), "invalid_body", "must be a JSON object"),
        (json(Method::POST, "/api/v1/devices", r#"{"id":"#), "invalid_body", "not JSON (line 1, column 6)"),
        (json(Method::POST, "/api/v1/devices", ""), "invalid_body", "the body is empty"),
    ];
    for (request, code, says) in cases {
        let (status, error) = refusal(request).await;
        assert_refused((status, error.clone()), StatusCode::BAD_REQUEST, code, &[says], says);
        for internal in ["struct", "UpdateState", "CreateDevice", "Failed to", "u32", "usize"] {
            assert!(!message(&error).contains(internal), "{says}: the message leaks {internal:?}: {error}");
        }
    }
    server.running.unwrap().stop().await.unwrap();
}

// Issue 17, item 6: "expected at least one module field --> <anon>:1:1"
// answered an upload that was not WebAssembly at all.
#[tokio::test]
async fn an_upload_that_is_not_a_component_says_what_it_is() {
    let server = start_with(TOKEN, |_| {}).await;
    let cases: [(&[u8], &str); 5] = [
        (b"", "the body is empty"),
        (b"hello", "it is text starting \"hello\", not WebAssembly"),
        (b"\x89PNG\r\n\x1a\n\xff", "not WebAssembly: a .wasm file starts with"),
        (b"(module)", "core WebAssembly module"),
        (b"(component\n  (oops))", "its WebAssembly text does not parse"),
    ];
    for (upload, says) in cases {
        let request = server.request(Method::POST, "/api/v1/functions/f?trigger=event:x").body(upload.to_vec());
        let (status, error) = refusal(request).await;
        assert_refused((status, error.clone()), StatusCode::BAD_REQUEST, "invalid_function", &[says], says);
        for internal in ["<anon>", "module field"] {
            assert!(!message(&error).contains(internal), "{says}: the message leaks {internal:?}: {error}");
        }
    }
    server.running.unwrap().stop().await.unwrap();
}

// Issue 17, item 6: a path segment that is not UTF-8 once percent-decoded
// was refused in axum's plain text.
#[tokio::test]
async fn a_path_that_is_not_utf8_is_a_json_400() {
    let server = start_with(TOKEN, |_| {}).await;
    let got = refusal(server.request(Method::GET, "/api/v1/devices/%FF%FE")).await;
    assert_refused(got, StatusCode::BAD_REQUEST, "invalid_path", &["not UTF-8"], "%FF%FE");
    server.running.unwrap().stop().await.unwrap();
}
