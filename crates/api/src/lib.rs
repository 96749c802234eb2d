//! The HTTP transport: the API under `/api/v1`, plus `/healthz`, `/readyz`
//! and `/metrics`. Its handlers are thin: they translate an HTTP request
//! into a call on a service (pipeline, control, functions, series, watch)
//! and the answer back into JSON; they own no domain logic and no storage.
//! [`AppState`] holds the services the handlers call and [`router`] routes
//! to them; `glassbox-server` builds the state from the services it starts
//! and serves it with [`serve::serve`]. This crate depends on no adapter.
//!
//! Every `/api/v1` route but the OpenAPI document needs a bearer token, and
//! its role must allow what the route declares in `access::ROUTES` (an
//! undeclared route needs admin).
//! Every refusal is an [`ApiError`] (JSON: a code, and a message naming
//! what to fix): handlers read their input with the extractors of `body`
//! and `params`, never axum's, whose rejections are plain text.

mod access;
mod audit;
mod auth;
mod body;
mod budgets;
mod certificates;
mod commands;
mod devices;
mod diagnose;
mod error;
mod events;
mod functions;
mod logs;
mod mqtt;
mod params;
pub mod perimeter;
mod series;
pub mod serve;
pub mod throttle;
mod tokens;
mod trace;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router, middleware};
use glassbox_api_types::{Health, Ready};
use glassbox_core::Limits;
use glassbox_gateway::broker::Broker;
use glassbox_store::{DeviceRegistry, StoreStatus};

pub use auth::{AdminToken, Caller, Tokens, admin_token};
pub use error::ApiError;

use body::BodyLimit;

use glassbox_pipeline::Pipeline;

/// The OpenAPI 3.1 document, kept by hand beside the guides.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

#[derive(Clone)]
pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    pub devices: Arc<dyn DeviceRegistry>,
    pub series: Arc<glassbox_series::Series>,
    /// The anomaly detectors, when metrics are derived.
    pub watch: Option<Arc<glassbox_watch::Watch>>,
    /// What `/metrics` serves: every service's collector.
    pub metrics: Arc<glassbox_pipeline::metrics::Registry>,
    /// The platform's own log lines, for `glassbox logs`.
    pub platform_log: Arc<glassbox_telemetry::logs::PlatformLog>,
    pub broker: Broker,
    pub control: Arc<glassbox_control::Control>,
    /// The device registry's changes (the `devices` handlers call it).
    pub registry: Arc<glassbox_control::Registry>,
    /// Device certificates and the CA (the `certificates` handlers call it).
    pub certificates: Arc<glassbox_control::Certificates>,
    /// Retained messages, listed and cleared.
    pub retained: Arc<glassbox_control::RetainedMessages>,
    /// The audit log, its checkpoints and proofs.
    pub audit: Arc<glassbox_control::AuditLog>,
    pub functions: Arc<glassbox_functions::Functions>,
    pub tokens: Arc<Tokens>,
    /// Named tokens with roles: resolved per request, managed under `/api/v1/tokens`.
    pub named_tokens: Arc<glassbox_control::NamedTokens>,
    pub limits: Arc<Limits>,
    pub append_timeout: Duration,
    /// Request rates and login back-off.
    pub perimeter: Arc<Perimeter>,
    /// What the server was started with, for `GET /api/v1/perimeter`.
    pub surface: Arc<perimeter::Surface>,
    /// `/metrics` without a token (`metrics.public`).
    pub metrics_public: bool,
    /// Turns true when the server stops, so long-lived streams end.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// What limits clients: per-client and per-route request rates, and the
/// back-off after failed logins.
pub struct Perimeter {
    pub clients: throttle::Rates,
    pub routes: throttle::Rates,
    pub logins: throttle::Backoff,
}

impl Perimeter {
    pub fn new(client_requests_per_second: u32, route_requests_per_second: u32) -> Self {
        Self {
            clients: throttle::Rates::new(client_requests_per_second),
            routes: throttle::Rates::new(route_requests_per_second),
            logins: throttle::Backoff::default(),
        }
    }
}

/// The API with the public function routes (`http:` triggers) as its
/// fallback: one listener serves both.
pub fn router(state: AppState) -> Router {
    api(state, FunctionRoutes::Served)
}

/// The API without the function routes, for when a separate listener
/// serves them ([`public_router`]): anything unrouted is 404.
pub fn admin_router(state: AppState) -> Router {
    api(state, FunctionRoutes::Elsewhere)
}

/// Only the public function routes (`http:` triggers), under the same
/// per-client and per-route limits: what may face the internet.
pub fn public_router(state: AppState) -> Router {
    Router::new()
        .fallback(http_function)
        .layer(middleware::from_fn_with_state(state.clone(), limit_client))
        .with_state(state)
}

/// Whether a listener serving the API also serves the function routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FunctionRoutes {
    Served,
    Elsewhere,
}

fn api(state: AppState, functions: FunctionRoutes) -> Router {
    let body_limit = BodyLimit::configured(state.limits.data_bytes_max);
    let deploy_limit = BodyLimit::fixed(functions::COMPONENT_BYTES_MAX);
    let protected = Router::new()
        .route("/api/v1/events/tail", get(events::tail))
        .route("/api/v1/events/{id}", get(events::get))
        .route("/api/v1/trace/{id}", get(trace::trace))
        .route("/api/v1/logs", get(logs::logs))
        .route("/api/v1/diagnose", get(diagnose::diagnose))
        .route("/api/v1/perimeter", get(perimeter::perimeter))
        .route("/api/v1/anomalies", get(diagnose::anomalies))
        .route("/api/v1/diagnose/incidents/{id}/ack", post(diagnose::acknowledge))
        .route("/api/v1/diagnose/incidents/{id}/resolve", post(diagnose::resolve))
        .route("/api/v1/diagnose/silences", get(diagnose::silences).post(diagnose::silence))
        .route("/api/v1/metrics", get(series::list))
        .route("/api/v1/metrics/{name}", get(series::range))
        .route("/api/v1/devices", get(devices::list).post(devices::create))
        .route("/api/v1/devices/{id}", get(devices::get).patch(devices::update).delete(devices::delete))
        .route("/api/v1/devices/{id}/disable", post(devices::disable))
        .route("/api/v1/devices/{id}/enable", post(devices::enable))
        .route("/api/v1/devices/{id}/secret", post(devices::rotate_secret))
        .route("/api/v1/devices/{id}/inspect", get(mqtt::inspect))
        .route("/api/v1/devices/{id}/queue", delete(devices::clear_queue))
        .route(
            "/api/v1/devices/{id}/certificates",
            get(certificates::list).post(certificates::issue).delete(certificates::revoke_all),
        )
        .route("/api/v1/devices/{id}/certificates/{serial}", delete(certificates::revoke_one))
        .route("/api/v1/ca", get(certificates::show))
        .route("/api/v1/devices/{id}/shadow", get(mqtt::shadow).post(mqtt::update_shadow))
        .route("/api/v1/mqtt/sessions/{client_id}", get(mqtt::session))
        .route("/api/v1/mqtt/retained", get(mqtt::retained).delete(mqtt::clear_retained))
        .route("/api/v1/devices/{id}/commands", get(commands::list).post(commands::issue))
        .route("/api/v1/commands/{id}", get(commands::get))
        .route("/api/v1/commands/{id}/cancel", post(commands::cancel))
        .route("/api/v1/functions", get(functions::list))
        .route("/api/v1/functions/{name}/plan", get(functions::plan))
        .route("/api/v1/functions/{name}/versions", get(functions::versions))
        .route("/api/v1/functions/{name}/rollback", post(functions::rollback))
        .route("/api/v1/functions/{name}/promote", post(functions::promote))
        .route("/api/v1/functions/{name}/replay", post(functions::replay))
        .route("/api/v1/functions/{name}/retire", post(functions::retire))
        .route("/api/v1/functions/{name}/restore", post(functions::restore))
        .route("/api/v1/idle-functions", get(functions::idle))
        .route("/api/v1/functions/{name}/invocations", get(functions::invocations))
        .route("/api/v1/functions/{name}/dead-letters", get(functions::dead_letters))
        .route("/api/v1/functions/{name}/dead-letters/redrive", post(functions::redrive))
        .route("/api/v1/functions/{name}/dead-letters/discard", post(functions::discard))
        .route("/api/v1/audit", get(audit::log))
        .route("/api/v1/audit/checkpoint", get(audit::checkpoint))
        .route("/api/v1/audit/checkpoints", get(audit::checkpoints))
        .route("/api/v1/audit/consistency", get(audit::consistency))
        .route("/api/v1/audit/{seq}/proof", get(audit::proof))
        .route("/api/v1/budgets", get(budgets::list))
        .route("/api/v1/budgets/{target}", get(budgets::get).put(budgets::put).delete(budgets::delete))
        .route("/api/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/api/v1/tokens/{name}", delete(tokens::revoke))
        .route_layer(middleware::from_fn(move |r, n| within(body_limit, r, n)))
        // Added after the layer above: a refused ingest is counted as one.
        .route(
            "/api/v1/events",
            get(events::query)
                .post(events::ingest)
                .layer(middleware::from_fn_with_state(state.clone(), events::declared_within)),
        )
        // Added after the layer above: a component has its own, larger, limit.
        .route(
            "/api/v1/functions/{name}",
            get(functions::get)
                .post(functions::deploy)
                .delete(functions::delete)
                .layer(middleware::from_fn(move |r, n| within(deploy_limit, r, n))),
        );
    let protected = match state.metrics_public {
        true => protected,
        false => protected.route("/metrics", get(metrics)),
    }
    // Inside `require_token`: the caller is known when its role is checked.
    .route_layer(middleware::from_fn(access::authorize))
    .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_token));
    let public = match state.metrics_public {
        true => Router::new().route("/metrics", get(metrics)),
        false => Router::new(),
    };
    let routed = public
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .route("/api/v1/openapi.json", get(openapi))
        .merge(protected);
    // Anything else: an HTTP-triggered function's route (unless another listener serves them), or 404.
    let routed = match functions {
        FunctionRoutes::Served => routed.fallback(http_function),
        FunctionRoutes::Elsewhere => routed.fallback(not_found),
    };
    routed
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), limit_client))
        .with_state(state)
}

/// Refuses at once, before reading it, a body declared (`content-length`)
/// over `limit`; a body without a declared length is cut off at the limit
/// as it is read (the body extractors read the limit noted here).
async fn within(limit: BodyLimit, mut request: axum::extract::Request, next: middleware::Next) -> Response {
    match limit.check(&mut request) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

/// Answers 429 once the client (its peer address) is over
/// `http.client_requests_per_second`.
async fn limit_client(
    State(app): State<AppState>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let peer = request.extensions().get::<serve::Peer>().map(|p| throttle::client_key(p.0));
    if let Some(Err(wait)) = peer.map(|key| app.perimeter.clients.take(&key)) {
        let message = "too many requests from this address (http.client_requests_per_second); retry after the \
                       seconds in retry-after";
        return error::too_many("rate_limited", message, wait);
    }
    next.run(request).await
}

/// Liveness: the process answers.
async fn health() -> Json<Health> {
    Json(Health::ok())
}

/// Readiness: the recorder accepts writes.
async fn ready(State(app): State<AppState>) -> (StatusCode, Json<Ready<StoreStatus>>) {
    let status = app.pipeline.store().status().await;
    let code = if status.writable { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(Ready::new(status.writable, status)))
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let text = app.metrics.render().await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; GET /api/v1/openapi.json lists what each route takes",
    )
}

/// A request for an `http:` route: served by its function (no token: a
/// function's routes are public, like webhooks; the function decides who
/// may call it). No route: 404.
async fn http_function(State(app): State<AppState>, mut request: axum::extract::Request) -> Response {
    let Some(target) = app.functions.route(request.method().as_str(), request.uri().path()) else {
        return not_found().await.into_response();
    };
    let limit = BodyLimit::fixed(glassbox_functions::REQUEST_BYTES_MAX);
    if let Err(refused) = limit.check(&mut request) {
        return refused.into_response();
    }
    if let Err(wait) = app.perimeter.routes.take(&target.key()) {
        let message = format!(
            "too many requests to {} (http.route_requests_per_second); retry after the seconds in retry-after",
            target.key()
        );
        return error::too_many("rate_limited", &message, wait);
    }
    // A place in the function's queue before the body is read or recorded.
    let waiting = match target.wait() {
        Ok(waiting) => waiting,
        Err(message) => return error::too_many("queue_full", &message, Duration::from_secs(1)),
    };
    let (parts, incoming) = request.into_parts();
    let body = match body::read(incoming, limit).await {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    app.functions.serve_http(target, waiting, axum::http::Request::from_parts(parts, body)).await
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; GET /api/v1/openapi.json lists them")
}
