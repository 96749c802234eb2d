//! HTTP in the runtime with the JavaScript example (`examples/js-http`, real
//! componentize-js components): a `wasi:http/proxy` function answering a
//! request, and outbound requests from it and from an event handler —
//! allowed, denied, and `traceparent` only for the hosts that opted in —
//! against a tiny HTTP server on 127.0.0.1. The components are built by
//! `scripts/test` (or `examples/js-http/build.sh`); a missing one fails the
//! test and names the script.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use glassbox_runtime::{
    Compiled, EgressRecord, Event, HostRule, Limits, NoServices, Outbound, Outcome, Reach, Report, Runtime, World,
    read_body,
};

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn example(file: &str) -> Vec<u8> {
    let path = format!("{}/../../examples/js-http/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{path}: {e}. Build the example first: examples/js-http/build.sh \
             (scripts/test builds every example before running the tests)"
        )
    })
}

/// One runtime and the two components, compiled once for all the tests here.
static COMPILED: LazyLock<(Runtime, Compiled, Compiled)> = LazyLock::new(|| {
    let runtime = Runtime::new(8, 256 << 20).unwrap();
    let hello = runtime.compile(&example("hello.wasm")).unwrap_or_else(|e| panic!("hello.wasm: {e}"));
    let forward = runtime.compile(&example("forward.wasm")).unwrap_or_else(|e| panic!("forward.wasm: {e}"));
    (runtime, hello, forward)
});

/// Requests a test server saw: head (lowercased) and body.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A tiny HTTP server on 127.0.0.1: answers every request `200 hello there`
/// and keeps each request's head and body.
struct Upstream {
    port: u16,
    requests: Seen,
}

fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests: Seen = Arc::default();
    let seen = requests.clone();
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
            seen.lock().unwrap().push((head.to_ascii_lowercase(), body));
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\nconnection: close\r\n\r\nhello there");
        }
    });
    Upstream { port, requests }
}

/// Serves one request through hello.wasm; the response (status, body) and the report.
async fn serve(request: http::Request<Bytes>, outbound: Outbound) -> (u16, serde_json::Value, Report) {
    serve_within(request, outbound, Limits::default()).await
}

async fn serve_within(
    request: http::Request<Bytes>,
    outbound: Outbound,
    limits: Limits,
) -> (u16, serde_json::Value, Report) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::task::spawn_blocking(move || {
        let (runtime, hello, _) = &*COMPILED;
        let reach = Reach { services: Arc::new(NoServices), outbound };
        runtime.serve(hello, "hello", request, limits, reach, move |answer| {
            let _ = tx.send(answer);
        })
    });
    let (status, body) = match rx.await {
        Ok(Ok(response)) => {
            let status = response.status().as_u16();
            (status, read_body(response.into_body(), 1 << 20).await.unwrap_or_default())
        }
        _ => (0, Bytes::new()),
    };
    let report = task.await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null), report)
}

fn get(uri: &str) -> http::Request<Bytes> {
    http::Request::get(uri).header("host", "glassbox.test").body(Bytes::new()).unwrap()
}

fn allow(rules: &[&str]) -> Vec<HostRule> {
    rules.iter().map(|r| HostRule::parse(r).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_component_answers_a_request() {
    assert_eq!(COMPILED.1.world(), World::HttpProxy);
    assert_eq!(COMPILED.2.world(), World::EventHandler);
    let (status, body, report) = serve(get("/hello?name=Ada"), Outbound::default()).await;
    assert_eq!((status, body["message"].as_str()), (200, Some("hello, Ada")), "{report:?}");
    assert_eq!((report.outcome, report.status), (Outcome::Succeeded, Some(200)));
    assert!(report.logs.iter().any(|l| l.message == "GET /hello" && l.stream == Some("stdout")), "{:?}", report.logs);
    assert!(report.egress.is_empty());

    let post =
        http::Request::post("/hello").header("host", "glassbox.test").body(Bytes::from_static(b"12345")).unwrap();
    let (status, body, _) = serve(post, Outbound::default()).await;
    assert_eq!((status, body["received"].as_u64()), (200, Some(5)));
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_requests_go_only_to_allowed_hosts_and_are_recorded() {
    let upstream = upstream();
    let url = format!("http://127.0.0.1:{}/data", upstream.port);
    // Allowed: the response's status and bytes, recorded on the invocation.
    let rule = format!("http://127.0.0.1:{}", upstream.port);
    let allowed = Outbound { allow: allow(&[&rule]), ..Outbound::default() };
    let (status, body, report) = serve(get(&format!("/hello?fetch={url}")), allowed).await;
    assert_eq!(status, 200, "{body} {report:?}");
    assert_eq!(body["upstream"]["status"], 200);
    assert_eq!(body["upstream"]["bytes"], 11);
    let [record]: [EgressRecord; 1] = report.egress.clone().try_into().unwrap();
    assert_eq!((record.host.as_str(), record.port, record.method.as_str()), ("127.0.0.1", upstream.port, "GET"));
    assert_eq!((record.outcome, record.status, record.bytes_in), ("completed", Some(200), 11), "{record:?}");
    assert!(!record.traceparent);

    // Denied: nothing sent, an error to the guest (it answers 502), recorded as denied.
    let before = upstream.requests.lock().unwrap().len();
    let other = Outbound { allow: allow(&["api.example.com"]), ..Outbound::default() };
    let (status, body, report) = serve(get(&format!("/hello?fetch={url}")), other).await;
    assert_eq!(status, 502, "{body}");
    assert!(body["upstream"]["error"].is_string(), "{body}");
    assert_eq!(report.outcome, Outcome::Failed("the function responded 502".into()));
    let [record]: [EgressRecord; 1] = report.egress.clone().try_into().unwrap();
    assert_eq!((record.outcome, record.status), ("denied", None), "{record:?}");
    assert!(record.error.as_deref().unwrap().starts_with("egress_denied"), "{record:?}");
    assert_eq!(upstream.requests.lock().unwrap().len(), before, "nothing reached the host");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_hosts_that_opted_in_get_the_traceparent() {
    let upstream = upstream();
    let url = format!("http://127.0.0.1:{}/", upstream.port);
    let rule = format!("http://127.0.0.1:{}", upstream.port);
    for (outbound, sent) in [
        (Outbound { allow: allow(&[&rule]), traceparent: Some(TRACEPARENT.into()), ..Outbound::default() }, false),
        (Outbound { trace: allow(&[&rule]), traceparent: Some(TRACEPARENT.into()), ..Outbound::default() }, true),
    ] {
        let (status, _, report) = serve(get(&format!("/hello?fetch={url}")), outbound).await;
        assert_eq!(status, 200);
        assert_eq!(report.egress[0].traceparent, sent);
        let (head, _) = upstream.requests.lock().unwrap().last().cloned().unwrap();
        assert_eq!(head.contains(&format!("traceparent: {TRACEPARENT}")), sent, "{head}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_handler_posts_to_an_allowed_webhook() {
    let upstream = upstream();
    let url = format!("http://127.0.0.1:{}/hook", upstream.port);
    let data = serde_json::json!({"url": url, "payload": {"alarm": "door"}}).to_string();
    let event = Event {
        id: "01FORWARD".into(),
        source: "test".into(),
        type_: "alarm.raised".into(),
        subject: None,
        time: "2026-11-24T00:00:00Z".into(),
        datacontenttype: Some("application/json".into()),
        data: data.into_bytes(),
        correlationid: "01FORWARD".into(),
        causationid: None,
        hop: 0,
        device: None,
    };
    let run = |outbound: Outbound| {
        let event = event.clone();
        tokio::task::spawn_blocking(move || {
            let (runtime, _, forward) = &*COMPILED;
            let reach = Reach { services: Arc::new(NoServices), outbound };
            runtime.invoke_with(forward, "forward", &event, Limits::default(), reach)
        })
    };
    let allowed = Outbound { allow: allow(&[&format!("http://127.0.0.1:{}", upstream.port)]), ..Outbound::default() };
    let report = run(allowed).await.unwrap();
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:?}");
    let (head, body) = upstream.requests.lock().unwrap().last().cloned().unwrap();
    assert!(head.starts_with("post /hook"), "{head}");
    assert_eq!(body, br#"{"alarm":"door"}"#);
    let record = &report.egress[0];
    assert_eq!((record.method.as_str(), record.status, record.bytes_out, record.bytes_in), ("POST", Some(200), 16, 11));
    assert!(report.logs.iter().any(|l| l.message.ends_with("answered 200 (11 bytes)")), "{:?}", report.logs);

    // Denied: `handle` itself answers HTTP-request-denied, so fetch rejects,
    // the function's catch fails the invocation, and nothing was sent.
    let denied = run(Outbound::default()).await.unwrap();
    assert!(matches!(&denied.outcome, Outcome::Failed(m) if m.starts_with("could not reach")), "{denied:?}");
    assert_eq!(denied.egress[0].outcome, "denied");
    assert_eq!(upstream.requests.lock().unwrap().len(), 1, "the denied request never reached the host");

    // Allowed but refused (nothing listens there): an error after `handle`,
    // through the response future. componentize-js 0.23's engine sometimes
    // aborts on such a failure inside an async export (timing-dependent)
    // instead of rejecting fetch: failed or trapped, never succeeded, and
    // the record says why either way.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut refused_event = event.clone();
    refused_event.data =
        serde_json::json!({"url": format!("http://127.0.0.1:{closed}/"), "payload": 1}).to_string().into_bytes();
    let refused = tokio::task::spawn_blocking(move || {
        let (runtime, _, forward) = &*COMPILED;
        let outbound = Outbound { allow: allow(&[&format!("http://127.0.0.1:{closed}")]), ..Outbound::default() };
        let reach = Reach { services: Arc::new(NoServices), outbound };
        runtime.invoke_with(forward, "forward", &refused_event, Limits::default(), reach)
    })
    .await
    .unwrap();
    assert!(
        matches!(&refused.outcome, Outcome::Failed(m) if m.starts_with("could not reach"))
            || matches!(refused.outcome, Outcome::Trapped(_)),
        "{refused:?}"
    );
    assert_eq!(refused.egress[0].outcome, "failed", "{refused:?}");
    assert!(refused.egress[0].error.is_some(), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbound_request_that_never_answers_ends_at_the_deadline() {
    // A host that accepts and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::thread::spawn(move || listener.accept().map(|(stream, _)| stream));
    let outbound = Outbound { allow: allow(&[&format!("http://127.0.0.1:{port}")]), ..Outbound::default() };
    let limits = Limits { timeout: std::time::Duration::from_millis(500), ..Limits::default() };
    let (status, _, report) =
        serve_within(get(&format!("/hello?fetch=http://127.0.0.1:{port}/")), outbound, limits).await;
    assert!(report.wall < std::time::Duration::from_secs(3), "{:?}", report.wall);
    assert_ne!(report.outcome, Outcome::Succeeded, "{report:?} (status {status})");
    let record = &report.egress[0];
    assert_eq!((record.outcome, record.status), ("failed", None), "{record:?}");
    assert_eq!(record.error.as_deref(), Some("connection timeout"), "{record:?}");
    assert!(record.duration_us >= 490_000, "waited until the deadline: {record:?}");
    drop(held);
}

/// Serves `fetch` through hello.wasm under `rules`: its egress record, and
/// whether the upstream saw a request.
async fn fetch_under(upstream: &Upstream, url: &str, rules: &[&str]) -> (u16, EgressRecord, bool) {
    let before = upstream.requests.lock().unwrap().len();
    let outbound = Outbound { allow: allow(rules), ..Outbound::default() };
    let (status, _, report) = serve(get(&format!("/hello?fetch={url}")), outbound).await;
    let [record]: [EgressRecord; 1] = report.egress.clone().try_into().unwrap_or_else(|_| panic!("{report:?}"));
    (status, record, upstream.requests.lock().unwrap().len() > before)
}

// Issue 16, finding 8: an allowed name that resolves to a loopback address
// was reached; now the address is checked after one resolution and refused
// unless a rule names it — and then the request goes to that address.
#[tokio::test(flavor = "multi_thread")]
async fn finding_8_an_allowed_name_resolving_to_loopback_is_refused_unless_the_address_is_allowed() {
    let upstream = upstream();
    let url = format!("http://localhost:{}/x", upstream.port);
    let by_name = format!("http://localhost:{}", upstream.port);
    let (status, record, reached) = fetch_under(&upstream, &url, &[&by_name]).await;
    assert_eq!((status, record.outcome, reached), (502, "denied", false), "{record:?}");
    let why = record.error.unwrap();
    assert!(why.starts_with("egress_denied: localhost resolves to "), "{why}");
    assert!(why.contains("a loopback address; allow it explicitly with a rule naming the address"), "{why}");

    let (status, record, reached) = fetch_under(&upstream, &url, &[&by_name, "127.0.0.1"]).await;
    assert_eq!((status, record.outcome, record.status, reached), (200, "completed", Some(200), true), "{record:?}");
}

// Issue 16, finding 8: a bare host rule allowed plain http on any port;
// now only https on 443 unless the rule writes the scheme and port.
#[tokio::test(flavor = "multi_thread")]
async fn finding_8_a_bare_host_rule_refuses_plain_http_and_other_ports() {
    let upstream = upstream();
    let url = format!("http://127.0.0.1:{}/x", upstream.port);
    let https_on_port = format!("127.0.0.1:{}", upstream.port);
    for rules in [vec!["127.0.0.1"], vec![https_on_port.as_str()], vec!["http://127.0.0.1"]] {
        let (status, record, reached) = fetch_under(&upstream, &url, &rules).await;
        assert_eq!((status, record.outcome, reached), (502, "denied", false), "{rules:?}: {record:?}");
        assert!(record.error.as_deref().unwrap().starts_with("egress_denied: http on port "), "{record:?}");
    }
    let written = format!("http://127.0.0.1:{}", upstream.port);
    let (status, record, reached) = fetch_under(&upstream, &url, &[&written]).await;
    assert_eq!((status, record.outcome, reached), (200, "completed", true), "{record:?}");
}
