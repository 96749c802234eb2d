//! HTTP-triggered functions: a request to a function's `http:` route is
//! recorded as an `http.request` event (its id answers in the
//! `x-glassbox-event-id` header), handed to the `wasi:http/proxy` component
//! in a fresh instance, and its invocation recorded on that event's chain
//! before the response goes back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use bytes::Bytes;
use chrono::Utc;
use glassbox_core::{Draft, DropReason, Dropped, HTTP_REQUEST, HttpExchange, HttpRequest, RecordedEvent, TraceParent};
use glassbox_runtime::{BodyError, Outcome, Reach, Report, read_body};
use serde_json::{Value, json};

use super::budgets::{Verdict, Who, now_seconds};
use super::replayed::{RecordedReplay, ReplayError, Replayed, ReplayedResponse};
use super::{FunctionError, Functions, Live, QUEUE_MAX, Run, spec};

/// Largest request body a function is given.
pub const REQUEST_BYTES_MAX: usize = 8 << 20;
/// Largest response body a function may answer with.
const RESPONSE_BYTES_MAX: usize = 8 << 20;
/// Request bodies up to this size are kept in the `http.request` event.
const BODY_RECORDED_MAX: usize = 16 << 10;
/// Headers kept in the `http.request` event, and the longest value kept.
const HEADERS_RECORDED_MAX: usize = 50;
const HEADER_VALUE_RECORDED_MAX: usize = 256;
/// A header not kept is recorded by name (its value redacted) only when
/// the name is this short: a client cannot fill the record with names.
const HEADER_NAME_RECORDED_MAX: usize = 64;

/// A live function whose route takes a request, and that route.
pub struct HttpTarget(Arc<Live>, String);

/// A request's place in its function's queue, taken before its body is
/// read or recorded; given back when dropped.
pub struct Waiting(Arc<Live>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl HttpTarget {
    /// The function and route, e.g. `hello GET /hello` (what a per-route
    /// rate limit is kept under).
    pub fn key(&self) -> String {
        format!("{} {}", self.0.version.name, self.1)
    }

    /// A place in the function's queue, or why there is none: the queue
    /// is full, and nothing of the request is read or recorded.
    pub fn wait(&self) -> Result<Waiting, String> {
        let live = &self.0;
        if live.waiting.fetch_add(1, Ordering::Relaxed) >= QUEUE_MAX {
            live.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(format!(
                "{}: {QUEUE_MAX} requests already waiting for {}; retry later",
                DropReason::QueueFull,
                live.version.name
            ));
        }
        Ok(Waiting(live.clone()))
    }
}

/// What a credential's value is recorded as.
const REDACTED: &str = "[redacted]";

/// Request headers kept verbatim in `http.request` events (a route adds
/// its own with `record_headers`); the others are recorded as [`REDACTED`].
const HEADERS_KEPT: [&str; 8] = [
    "content-type",
    "content-length",
    "content-encoding",
    "user-agent",
    "accept",
    "accept-encoding",
    "traceparent",
    "tracestate",
];

/// Names that look like credentials (query parameters): their values are
/// recorded as [`REDACTED`].
fn secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["token", "key", "secret", "password", "passwd", "auth", "sig", "code", "session", "cookie", "credential", "jwt"]
        .iter()
        .any(|s| name.contains(s))
}

/// The query string with the values of secret-looking parameters redacted.
fn redacted_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if secret(name) => format!("{name}={REDACTED}"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Hop-by-hop headers: not passed on from a function's response.
fn hop_by_hop(name: &HeaderName) -> bool {
    [header::CONNECTION, header::TRANSFER_ENCODING, header::CONTENT_LENGTH, header::UPGRADE].contains(name)
        || name.as_str() == "keep-alive"
}

fn error(status: StatusCode, code: &str, message: String, event: Option<&str>) -> Response<Body> {
    let body = json!({ "error": { "code": code, "message": message, "event_id": event } });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(id) = event.and_then(|id| HeaderValue::from_str(id).ok()) {
        response.headers_mut().insert("x-glassbox-event-id", id);
    }
    response
}

/// What the `http.request` event keeps of a request: the allowed headers
/// (the others' values redacted), the query with secret-looking values
/// redacted, and the body only when the route opts in (`record_body`).
fn request_data(live: &Live, route: &str, request: &Request<Bytes>) -> HttpRequest {
    let mut headers = BTreeMap::new();
    for (key, value) in request.headers().iter().take(HEADERS_RECORDED_MAX) {
        let kept = HEADERS_KEPT.contains(&key.as_str()) || live.spec.record_headers.iter().any(|h| h == key.as_str());
        if !kept && key.as_str().len() > HEADER_NAME_RECORDED_MAX {
            continue;
        }
        let text = match kept {
            true => String::from_utf8_lossy(value.as_bytes()).chars().take(HEADER_VALUE_RECORDED_MAX).collect(),
            false => REDACTED.to_string(),
        };
        headers.insert(key.as_str().to_string(), text);
    }
    let body = request.body();
    let mut data = HttpRequest {
        function: live.version.name.clone(),
        route: route.to_string(),
        method: request.method().as_str().to_string(),
        path: request.uri().path().to_string(),
        query: request.uri().query().map(redacted_query),
        headers,
        body_bytes: body.len() as u64,
        body: None,
        body_text: None,
    };
    if live.spec.record_body && !body.is_empty() && body.len() <= BODY_RECORDED_MAX {
        if let Ok(value) = serde_json::from_slice::<Value>(body) {
            data.body = Some(value);
        } else if let Ok(text) = std::str::from_utf8(body) {
            data.body_text = Some(text.to_string());
        }
    }
    data
}

/// What a function answered a request with, or the status, code and
/// message saying why there is no answer.
type Answered = Result<(axum::http::response::Parts, Bytes), (StatusCode, &'static str, String)>;

/// The `http` part of an invocation record: the request, and the status
/// and size of what answered it.
fn exchanged_record(method: &str, path: &str, route: Option<&str>, answer: &Answered) -> HttpExchange {
    let status = match answer {
        Ok((head, _)) => head.status,
        Err((status, ..)) => *status,
    };
    HttpExchange {
        method: method.to_string(),
        path: path.to_string(),
        route: route.map(str::to_string),
        status: status.as_u16(),
        response_bytes: answer.as_ref().map_or(0, |(_, body)| body.len() as u64),
    }
}

/// What the function answered a replayed request, as the replay shows it.
fn replayed(answer: &Answered) -> ReplayedResponse {
    match answer {
        Ok((head, body)) => ReplayedResponse::Answered {
            status: head.status.as_u16(),
            headers: head
                .headers
                .iter()
                .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
                .collect(),
            body: String::from_utf8_lossy(body).into_owned(),
        },
        Err((status, code, message)) => ReplayedResponse::Failed {
            status: status.as_u16(),
            error: ReplayError { code: code.to_string(), message: message.clone() },
        },
    }
}

/// The request an `http.request` event recorded, rebuilt for a replay:
/// method, path and query, the headers kept (redacted ones and query
/// parameters left out), and the body when the route kept it.
fn request_of(recorded: &RecordedEvent) -> Result<Request<Bytes>, String> {
    let event = &recorded.event;
    if event.ty != HTTP_REQUEST {
        return Err(format!("an HTTP function replays {HTTP_REQUEST} events; {} is a {} event", event.id, event.ty));
    }
    let data: HttpRequest = recorded.payload().map_err(|e| e.to_string())?;
    let body = match (data.body, data.body_text, data.body_bytes) {
        (None, None, 0) => Bytes::new(),
        (None, Some(text), _) => Bytes::from(text),
        (None, None, n) => {
            return Err(format!(
                "{} had a {n}-byte body, which was not kept (only routes deployed with --record-body keep bodies, \
                 up to {} KiB of text), so it cannot be replayed",
                event.id,
                BODY_RECORDED_MAX >> 10
            ));
        }
        (Some(json), _, _) => Bytes::from(json.to_string()),
    };
    let query = data
        .query
        .map(|q| q.split('&').filter(|pair| !pair.ends_with(&format!("={REDACTED}"))).collect::<Vec<_>>().join("&"));
    let uri = match query {
        Some(query) => format!("{}?{query}", data.path),
        None => data.path,
    };
    let mut request = Request::builder().method(data.method.as_str()).uri(uri);
    for (name, value) in &data.headers {
        // The body's length is the rebuilt body's; a redacted value is gone.
        if value != REDACTED && name != "content-length" {
            request = request.header(name.as_str(), value.as_str());
        }
    }
    request.body(body).map_err(|e| format!("{} does not hold a request that can be rebuilt: {e}", event.id))
}

impl Functions {
    /// The live function whose `http:` route takes `method` `path`, the
    /// most specific one when several do (an exact path before a prefix,
    /// a longer prefix first, a named method before any).
    pub fn route(&self, method: &str, path: &str) -> Option<HttpTarget> {
        if spec::reserved(path) {
            return None;
        }
        let live = self.live.read().unwrap_or_else(|e| e.into_inner());
        live.values()
            .filter_map(|l| {
                let best = l
                    .triggers
                    .iter()
                    .filter_map(|t| match t {
                        spec::Trigger::Http(route) if route.matches(method, path) => Some(route),
                        _ => None,
                    })
                    .max_by_key(|route| route.rank())?;
                Some((best, l))
            })
            .max_by(|(a, x), (b, y)| a.rank().cmp(&b.rank()).then_with(|| y.version.name.cmp(&x.version.name)))
            .map(|(route, l)| HttpTarget(l.clone(), route.to_string()))
    }

    /// Serves one request with the target's function: records it, runs the
    /// function, records the invocation, and answers with the function's
    /// response (or 502/503/504 saying why there is none), always with the
    /// request's event id in `x-glassbox-event-id`.
    pub async fn serve_http(&self, target: HttpTarget, waiting: Waiting, request: Request<Bytes>) -> Response<Body> {
        let HttpTarget(live, route) = target;
        let name = live.version.name.clone();
        let (method, path) = (request.method().to_string(), request.uri().path().to_string());
        let traceparent = request
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| TraceParent::parse(v).ok())
            .map(|t| t.to_string());
        let draft = Draft {
            subject: Some(path.clone()),
            traceparent,
            feature: live.spec.feature.clone(),
            ..Draft::payload("glassbox/http", &request_data(&live, &route, &request))
        };
        let recorded = match self.pipeline.ingest(vec![draft], "http").await {
            Ok(appended) => match appended.first().map(|a| a.id) {
                Some(id) => self.pipeline.store().get(id).await.ok().flatten(),
                None => None,
            },
            Err(e) => {
                tracing::error!(function = %name, error = %e, "could not record an HTTP request");
                None
            }
        };
        let Some(recorded) = recorded else {
            let message = "the request could not be recorded, so it was not run; try again".to_string();
            return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message, None);
        };
        let event_id = recorded.event.id.to_string();
        if let Some(refused) = self.http_budget(&live, &recorded).await {
            return error(StatusCode::TOO_MANY_REQUESTS, "budget_exceeded", refused, Some(&event_id));
        }

        live.pace().await;
        let permit = live.slots.clone().acquire_owned().await;
        drop(waiting);
        let Ok(permit) = permit else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the function is gone".into(),
                Some(&event_id),
            );
        };

        let started = Utc::now();
        let services = self.services.for_invocation(&name, recorded.event.id);
        let reach = Reach { services, outbound: live.outbound(&recorded) };
        let exchanged = self.exchange(&live, &recorded, request, reach).await;
        drop(permit);
        let Some((report, answer)) = exchanged else {
            let message = "the invocation failed to run; see the server log".to_string();
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", message, Some(&event_id));
        };
        let http = exchanged_record(&method, &path, Some(&route), &answer);
        let run = Run { started, queued: None, replay_of: None, attempt: 1, http: Some(http) };
        let invocation = self.record_invocation(&live, &recorded, run, report).await;
        let invocation_id = invocation.map(|i| i.id);
        let mut response = match answer {
            Ok((head, body)) => {
                let mut response = Response::new(Body::from(body));
                *response.status_mut() = head.status;
                let headers: &mut HeaderMap = response.headers_mut();
                for (key, value) in head.headers.iter().filter(|(k, _)| !hop_by_hop(k)) {
                    headers.append(key.clone(), value.clone());
                }
                response
            }
            Err((status, code, message)) => error(status, code, message, Some(&event_id)),
        };
        if let Ok(id) = HeaderValue::from_str(&event_id) {
            response.headers_mut().insert("x-glassbox-event-id", id);
        }
        if let Some(id) = invocation_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
            response.headers_mut().insert("x-glassbox-invocation-id", id);
        }
        response
    }

    /// Checks the budgets applying to an HTTP request (a request is not
    /// held: `throttle` refuses it as `stop` does); a refused one is
    /// recorded as `function.dropped` on the request's chain, and why is
    /// returned for the 429.
    async fn http_budget(&self, live: &Live, recorded: &RecordedEvent) -> Option<String> {
        let ledger = self.budgets.ledger();
        if !ledger.any() {
            return None;
        }
        let who = Who { function: &live.version.name, feature: live.spec.feature.as_deref(), group: None };
        let refused = match ledger.admit(&who, now_seconds(), true) {
            Verdict::Run(reached) => {
                self.budgets.record_reached(reached).await;
                return None;
            }
            Verdict::Stop(reason) | Verdict::Hold(reason) => reason,
        };
        let data = Dropped {
            function: live.version.name.clone(),
            version: live.version.version,
            reason: DropReason::BudgetExceeded,
            detail: refused.clone(),
            event: recorded.event.id.to_string(),
        };
        self.record_about(live, recorded, &data).await;
        Some(refused)
    }

    /// Runs `request` through the function on a blocking thread, reaching
    /// what `reach` allows, with its event id in `x-glassbox-event-id`, and
    /// reads its response (bounded).
    async fn exchange(
        &self,
        live: &Arc<Live>,
        recorded: &RecordedEvent,
        request: Request<Bytes>,
        reach: Reach,
    ) -> Option<(Report, Answered)> {
        let event_id = recorded.event.id.to_string();
        let name = live.version.name.clone();
        let (mut parts, body) = request.into_parts();
        if let Ok(id) = HeaderValue::from_str(&event_id) {
            parts.headers.insert("x-glassbox-event-id", id);
        }
        let request = Request::from_parts(parts, body);
        let limits = live.spec.limits();
        let (runtime, compiled, task_name) = (self.runtime.clone(), live.compiled.clone(), name.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::task::spawn_blocking(move || {
            runtime.serve(&compiled, &task_name, request, limits, reach, move |answer| {
                let _ = tx.send(answer);
            })
        });
        // The body streams from the function while it runs: read it now.
        let answer = match rx.await {
            Ok(Ok(response)) => {
                let (head, body) = response.into_parts();
                Some((head, read_body(body, RESPONSE_BYTES_MAX).await))
            }
            Ok(Err(_)) | Err(_) => None,
        };
        let Ok(mut report) = task.await else {
            tracing::error!(function = %name, "an HTTP invocation task failed");
            return None;
        };
        let answer = match answer {
            Some((head, Ok(body))) => Ok((head, body)),
            Some((_, Err(BodyError::TooLarge(max)))) => {
                let message = format!("the response body is over {max} bytes");
                report.outcome = Outcome::OutputTooLarge(message.clone());
                Err((StatusCode::BAD_GATEWAY, "output_too_large", message))
            }
            Some((_, Err(e @ BodyError::Failed(_)))) if report.outcome == Outcome::Succeeded => {
                report.outcome = Outcome::Failed(e.to_string());
                Err((StatusCode::BAD_GATEWAY, "failed", e.to_string()))
            }
            _ => {
                let detail = report.outcome.detail().map(|d| format!(": {d}")).unwrap_or_default();
                let message = format!("{name} gave no response ({}{detail})", report.outcome.as_str());
                let status = match report.outcome {
                    Outcome::TimedOut => StatusCode::GATEWAY_TIMEOUT,
                    _ => StatusCode::BAD_GATEWAY,
                };
                Err((status, report.outcome.as_str(), message))
            }
        };
        Some((report, answer))
    }

    /// Re-runs a recorded `http.request` through an HTTP function: the
    /// request rebuilt from the event (redacted headers left out), the
    /// response shown. Unless `dry_run` (run in a sandbox: nothing sent,
    /// changed or recorded; what it would have done listed), the run is
    /// recorded as an invocation with `replay_of`.
    pub(super) async fn replay_http(
        &self,
        live: &Arc<Live>,
        recorded: &RecordedEvent,
        dry_run: bool,
    ) -> Result<Replayed, FunctionError> {
        let event_id = recorded.event.id.to_string();
        let request = request_of(recorded).map_err(FunctionError::Invalid)?;
        let (method, path) = (request.method().to_string(), request.uri().path().to_string());
        let sandbox = dry_run.then(|| self.services.sandbox(&live.version.name));
        let reach = self.reach(live, recorded, sandbox.as_ref());
        let started = Utc::now();
        let (report, answer) = self
            .exchange(live, recorded, request, reach)
            .await
            .ok_or_else(|| FunctionError::Invalid("the replay failed to run; see the server log".into()))?;
        let response = replayed(&answer);
        if let Some(sandbox) = sandbox {
            let shown = super::sandbox::DryRun::new(live, &event_id, report, &sandbox);
            return Ok(Replayed::DryRun(Box::new(super::sandbox::DryRun { response: Some(response), ..shown })));
        }
        let route = recorded.payload::<HttpRequest>().ok().map(|r| r.route);
        let http = exchanged_record(&method, &path, route.as_deref(), &answer);
        let run = Run { started, queued: None, replay_of: Some(&event_id), attempt: 1, http: Some(http) };
        let invocation = self.record_invocation(live, recorded, run, report).await;
        Ok(Replayed::Recorded(Box::new(RecordedReplay { invocation, response: Some(response) })))
    }
}
