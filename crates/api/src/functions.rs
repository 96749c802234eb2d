//! `/api/v1/functions`: deploy, plan, list, get, versions, promote,
//! rollback, delete, replay, invocations.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use glassbox_api_types::{
    DeadLetters, DeployedVersion, DiscardRequest, Discarded, FunctionList, FunctionState, IdleFunctions, Invocations,
    LiveChanged, RedriveAnswer, RedriveRequest, RetireAnswer, VersionList,
};
use glassbox_core::Deleted;
use glassbox_core::Retired;
use glassbox_core::{EventQuery, FUNCTION_INVOKED, Problem, QUERY_LIMIT_MAX, RecordedEvent, TypePattern};
use glassbox_runtime::Outcome;
use glassbox_store::FunctionVersion;
use serde::Deserialize;
use serde_json::Value;

use super::auth::Caller;
use super::body::{Body, JsonBody, Shape};
use super::params::{Parameters, Path, Query};
use super::{ApiError, AppState};
use glassbox_functions::{
    DEAD_LETTERS_MAX, FunctionError, IdleView, InFlight, LiveChange, OpenDeadLetter, Plan, RecordedInvocation, Redrive,
    Redriven, Replayed, Spec, parse_bytes, parse_rate,
};

/// Largest component accepted (JS and Python components are tens of MiB).
pub const COMPONENT_BYTES_MAX: usize = 128 << 20;

pub(super) fn error(e: FunctionError) -> ApiError {
    match e {
        FunctionError::Invalid(m) => ApiError::bad_request("invalid_function", m),
        FunctionError::Unknown(_) => ApiError::not_found(e.to_string()),
        FunctionError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "function_conflict", m),
        FunctionError::Store(e) => e.into(),
    }
}

/// The deploy's options, as query parameters (the body is the component).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployParams {
    /// Comma-separated trigger specs.
    trigger: String,
    timeout: Option<String>,
    memory: Option<String>,
    concurrency: Option<u32>,
    hop_limit: Option<u32>,
    feature: Option<String>,
    retries: Option<u32>,
    max_age: Option<String>,
    /// Invocations per second at most, e.g. `100/s`, `30/m`.
    rate: Option<String>,
    /// Comma-separated egress rules (`api.example.com,http://10.0.0.5:8080`).
    egress: Option<String>,
    /// Comma-separated hosts that also get the chain's `traceparent`.
    egress_trace: Option<String>,
    /// Invocations a warm instance serves; 1: a fresh instance every time.
    reuse: Option<u32>,
    /// HTTP routes: keep request bodies in `http.request` events.
    record_body: Option<bool>,
    /// Comma-separated request headers kept in `http.request` events.
    record_headers: Option<String>,
    /// The app (manifest) deploying it, as `glassbox apply` sends it.
    app: Option<String>,
    /// `sha256:<hex>` of the component: a deploy refuses a body that does
    /// not match it (cut or changed on the way); a plan compares it.
    digest: Option<String>,
}

impl Parameters for DeployParams {
    fn accepts(name: &str) -> Option<String> {
        match name {
            "trigger" => Some(
                "comma-separated triggers: mqtt:<filter>, event:<type>, schedule:<cron>, http:<METHOD /path>".into(),
            ),
            "concurrency" | "hop_limit" | "retries" | "reuse" => Some("a whole number, 0 or more".into()),
            "record_body" => Some("true or false".into()),
            _ => None,
        }
    }
}

fn hosts(list: Option<String>) -> Vec<String> {
    list.iter().flat_map(|l| l.split(',')).map(str::trim).filter(|h| !h.is_empty()).map(str::to_string).collect()
}

/// Triggers as one comma-separated parameter. A comma splits only before
/// the next trigger's kind, so cron lists (`schedule:0 9 * * 1,3,5`) stay whole.
fn split_triggers(text: &str) -> Vec<String> {
    const KINDS: [&str; 4] = ["mqtt:", "event:", "schedule:", "http:"];
    let mut triggers = Vec::new();
    let mut start = 0;
    for (i, _) in text.match_indices(',') {
        if KINDS.iter().any(|k| text[i + 1..].trim_start().starts_with(k)) {
            triggers.push(text[start..i].trim().to_string());
            start = i + 1;
        }
    }
    triggers.push(text[start..].trim().to_string());
    triggers.retain(|t| !t.is_empty());
    triggers
}

fn spec(p: DeployParams) -> Result<Spec, ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_function", m);
    let mut spec = Spec { triggers: split_triggers(&p.trigger), ..Spec::default() };
    if let Some(rate) = p.rate {
        spec.rate_per_second = Some(glassbox_functions::parse_rate(&rate).map_err(bad)?);
    }
    if let Some(t) = p.timeout {
        spec.timeout_ms =
            humantime::parse_duration(&t).map_err(|e| bad(format!("timeout {t:?}: {e}")))?.as_millis() as u64;
    }
    if let Some(m) = p.memory {
        spec.memory_bytes = parse_bytes(&m).map_err(bad)?;
    }
    spec.concurrency = p.concurrency.unwrap_or(spec.concurrency);
    spec.hop_limit = p.hop_limit.unwrap_or(spec.hop_limit);
    spec.reuse = p.reuse.unwrap_or(spec.reuse);
    spec.feature = p.feature;
    spec.egress = hosts(p.egress);
    spec.egress_trace = hosts(p.egress_trace);
    spec.record_body = p.record_body.unwrap_or(false);
    spec.record_headers = hosts(p.record_headers).into_iter().map(|h| h.to_ascii_lowercase()).collect();
    spec.retries = p.retries.unwrap_or(spec.retries);
    spec.app = p.app;
    if let Some(age) = p.max_age {
        spec.max_age_ms =
            humantime::parse_duration(&age).map_err(|e| bad(format!("max_age {age:?}: {e}")))?.as_millis() as u64;
    }
    Ok(spec)
}

/// `POST /api/v1/functions/{name}?trigger=…&timeout=…` with the component as the body.
pub async fn deploy(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    Query(params): Query<DeployParams>,
    Body(body): Body,
) -> Result<(StatusCode, Json<DeployedVersion<Value>>), ApiError> {
    if body.is_empty() {
        let message = "the body is empty: send the component's .wasm file as the body (glassbox functions deploy does)";
        return Err(ApiError::bad_request("invalid_function", message));
    }
    if let Some(given) = &params.digest {
        let received = glassbox_runtime::digest(&body);
        if *given != received {
            let message = format!(
                "the component received has digest {received}, not the {given} given: it was cut or changed on the \
                 way; send it again"
            );
            return Err(ApiError::bad_request("digest_mismatch", message));
        }
    }
    let spec = spec(params)?;
    let version = app.functions.deploy(&name, body.to_vec(), spec, &by).await.map_err(error)?;
    Ok((StatusCode::CREATED, Json(version_view(&version))))
}

/// A version as answered: the stored one, its spec as the JSON it was
/// stored as (triggers and limits, as [`Spec`] serializes them).
fn version_view(v: &FunctionVersion) -> DeployedVersion<Value> {
    DeployedVersion {
        name: v.name.clone(),
        version: v.version,
        digest: v.digest.clone(),
        spec: serde_json::from_str(&v.spec).unwrap_or(Value::Null),
        deployed_at: v.deployed_at,
        deployed_by: v.deployed_by.clone(),
        live: v.live,
        retired: false,
    }
}

/// A rollback's or a promote's answer.
fn live_changed(c: LiveChange) -> LiveChanged<Value> {
    LiveChanged { function: c.function, changed: c.changed, from: c.from, live: version_view(&c.live) }
}

/// `GET /api/v1/functions/{name}/plan?digest=…&trigger=…`: what a deploy
/// with these parameters (the component named by its digest) would change.
pub async fn plan(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<DeployParams>,
) -> Result<Json<Plan>, ApiError> {
    let Some(digest) = params.digest.clone() else {
        let message = "give the component's digest (digest=sha256:<hex>): the plan compares it with the live version's";
        return Err(ApiError::invalid_parameters(vec![Problem { field: "digest".into(), message: message.into() }]));
    };
    let spec = spec(params)?;
    Ok(Json(app.functions.plan(&name, &digest, &spec).await.map_err(error)?))
}

/// `GET /api/v1/functions`: the live version of each (deleted ones are not listed).
pub async fn list(State(app): State<AppState>) -> Result<Json<FunctionList<Value>>, ApiError> {
    let live = app.functions.list().await.map_err(error)?;
    let view = |v: &FunctionVersion| DeployedVersion { retired: app.functions.is_retired(&v.name), ..version_view(v) };
    Ok(Json(FunctionList { functions: live.iter().map(view).collect() }))
}

/// `POST /api/v1/functions/{name}/retire`: out of service, everything kept.
pub async fn retire(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
) -> Result<Json<RetireAnswer<Retired>>, ApiError> {
    let retired = app.functions.retire(&name, &by).await.map_err(error)?;
    Ok(Json(RetireAnswer { change: retired, warning: None }))
}

/// `POST /api/v1/functions/{name}/restore`: back as it was.
pub async fn restore(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
) -> Result<Json<RetireAnswer<Retired>>, ApiError> {
    let restored = app.functions.restore(&name, &by).await.map_err(error)?;
    Ok(Json(RetireAnswer { change: restored, warning: None }))
}

/// `GET /api/v1/idle-functions?since=30d`: each function's invocations in
/// the window and what it holds, idle ones first.
pub async fn idle(
    State(app): State<AppState>,
    Query(params): Query<IdleParams>,
) -> Result<Json<IdleFunctions<IdleView>>, ApiError> {
    let text = params.since.as_deref().unwrap_or("30d");
    let span = humantime::parse_duration(text)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .and_then(|d| chrono::Utc::now().checked_sub_signed(d))
        .ok_or_else(|| {
            ApiError::bad_request("invalid_since", format!("since {text:?} is not a duration like 30d, 12h or 90m"))
        })?;
    let functions = app.functions.idle(span).await.map_err(error)?;
    Ok(Json(IdleFunctions { since: span, functions }))
}

/// `GET /api/v1/idle-functions`'s parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdleParams {
    /// The window: a duration back from now (default 30d).
    since: Option<String>,
}

impl Parameters for IdleParams {}

/// `GET /api/v1/functions/{name}`: the live version, how many there are,
/// and the work in hand.
pub async fn get(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<FunctionState<Value, InFlight>>, ApiError> {
    let versions = app.functions.versions(&name).await.map_err(error)?;
    let live = versions.iter().find(|v| v.live).map(version_view);
    let live_since = app.functions.live_since(&name).await.map_err(error)?;
    Ok(Json(FunctionState {
        live_since: live.as_ref().and(live_since).or(live.as_ref().map(|v| v.deployed_at)),
        state: match (&live, app.functions.is_retired(&name)) {
            (None, _) => "deleted",
            (Some(_), true) => "retired",
            (Some(_), false) => "live",
        }
        .into(),
        live,
        versions: versions.len(),
        latest: versions.first().map_or(0, |v| v.version),
        in_flight: app.functions.in_flight(&name),
        name,
    }))
}

/// `GET /api/v1/functions/{name}/versions`: every version, newest first.
pub async fn versions(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<VersionList<Value>>, ApiError> {
    let versions = app.functions.versions(&name).await.map_err(error)?;
    Ok(Json(VersionList { versions: versions.iter().map(version_view).collect() }))
}

/// `POST /api/v1/functions/{name}/rollback`: the newest version older than the live one.
pub async fn rollback(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
) -> Result<Json<LiveChanged<Value>>, ApiError> {
    let change = app.functions.rollback(&name, &by).await.map_err(error)?;
    Ok(Json(live_changed(change)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    version: u32,
}

impl Shape for PromoteBody {
    const EXAMPLE: &'static str = r#"{"version": 2}"#;
}

/// `POST /api/v1/functions/{name}/promote` `{"version"}`: any version live.
pub async fn promote(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    JsonBody(p): JsonBody<PromoteBody>,
) -> Result<Json<LiveChanged<Value>>, ApiError> {
    let change = app.functions.promote(&name, p.version, &by).await.map_err(error)?;
    Ok(Json(live_changed(change)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    /// Delete even with work in hand (queued events get a dead letter).
    #[serde(default)]
    force: bool,
    /// Remove its versions and key-value store too.
    #[serde(default)]
    purge: bool,
}

impl Parameters for DeleteParams {
    fn accepts(name: &str) -> Option<String> {
        matches!(name, "force" | "purge").then(|| "true or false".into())
    }
}

/// `DELETE /api/v1/functions/{name}?force=&purge=`.
pub async fn delete(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    Query(p): Query<DeleteParams>,
) -> Result<Json<Deleted>, ApiError> {
    let deleted = app.functions.delete(&name, p.force, p.purge, &by).await.map_err(error)?;
    Ok(Json(deleted))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    event_id: String,
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    dry_run: bool,
}

impl Shape for ReplayBody {
    const EXAMPLE: &'static str = r#"{"event_id": "01JD6Y8Q1W3N4ZV7K2M5P9R0ST", "version": 2, "dry_run": true}"#;
}

/// `POST /api/v1/functions/{name}/replay` `{"event_id", "version"?, "dry_run"?}`.
pub async fn replay(
    State(app): State<AppState>,
    Path(name): Path<String>,
    JsonBody(r): JsonBody<ReplayBody>,
) -> Result<Json<Replayed>, ApiError> {
    let replayed = app.functions.replay(&name, &r.event_id, r.version, r.dry_run).await.map_err(error)?;
    Ok(Json(replayed))
}

/// `?limit=` of the dead-letter list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterParams {
    limit: Option<usize>,
}

impl Parameters for DeadLetterParams {
    fn accepts(name: &str) -> Option<String> {
        (name == "limit").then(|| format!("an integer from 1 to {DEAD_LETTERS_MAX}"))
    }
}

impl Shape for RedriveRequest {
    const EXAMPLE: &'static str =
        r#"{"version": 3, "ids": ["01JD6Y8Q1W3N4ZV7K2M5P9R0ST"], "rate": "10/s", "dry_run": false}"#;
}

impl Shape for DiscardRequest {
    const EXAMPLE: &'static str = r#"{"ids": ["01JD6Y8Q1W3N4ZV7K2M5P9R0ST"]}"#;
}

/// `GET /api/v1/functions/{name}/dead-letters?limit=`: the open dead letters, newest first.
pub async fn dead_letters(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(p): Query<DeadLetterParams>,
) -> Result<Json<DeadLetters<OpenDeadLetter>>, ApiError> {
    let limit = p.limit.unwrap_or(100).clamp(1, DEAD_LETTERS_MAX);
    let dead_letters = app.functions.dead_letters(&name, limit).await.map_err(error)?;
    Ok(Json(DeadLetters { function: name, dead_letters }))
}

/// `POST /api/v1/functions/{name}/dead-letters/redrive`: runs them again,
/// each on its chain; those that succeed leave the list.
pub async fn redrive(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    JsonBody(r): JsonBody<RedriveRequest>,
) -> Result<Json<RedriveAnswer<Redriven>>, ApiError> {
    let rate_per_second = r
        .rate
        .as_deref()
        .map(parse_rate)
        .transpose()
        .map_err(|m| ApiError::invalid_parameters(vec![Problem { field: "rate".into(), message: m }]))?;
    let redrive = Redrive { version: r.version, ids: r.ids, rate_per_second, dry_run: r.dry_run };
    let redriven = app.functions.redrive(&name, redrive, &by).await.map_err(error)?;
    let cleared = redriven.iter().filter(|r| r.cleared).count();
    Ok(Json(RedriveAnswer { function: name, dry_run: r.dry_run, redriven, cleared }))
}

/// `POST /api/v1/functions/{name}/dead-letters/discard`: takes them off
/// the list unrun, each recorded with the caller.
pub async fn discard(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    JsonBody(r): JsonBody<DiscardRequest>,
) -> Result<Json<Discarded>, ApiError> {
    let discarded = app.functions.discard(&name, r.ids.as_deref(), &by).await.map_err(error)?;
    Ok(Json(Discarded { function: name, discarded }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvocationParams {
    limit: Option<usize>,
    /// Only these outcomes, comma-separated (`failed,trapped`).
    outcome: Option<String>,
}

/// Invocations per answer at most.
const INVOCATIONS_MAX: usize = 1000;
/// Invocation records read for one filtered answer at most: bounded
/// however rare the outcome asked for.
const INVOCATIONS_SCANNED_MAX: usize = 10 * QUERY_LIMIT_MAX;

impl Parameters for InvocationParams {
    fn accepts(name: &str) -> Option<String> {
        (name == "limit").then(|| format!("an integer from 1 to {INVOCATIONS_MAX}"))
    }
}

/// The outcomes asked for, each one the runtime has; every unknown one named.
fn outcomes(text: &str) -> Result<Vec<String>, ApiError> {
    let asked: Vec<&str> = text.split(',').map(str::trim).filter(|o| !o.is_empty()).collect();
    let unknown: Vec<String> = asked.iter().filter(|o| !Outcome::NAMES.contains(o)).map(|o| format!("{o:?}")).collect();
    if asked.is_empty() || !unknown.is_empty() {
        let what = match unknown.len() {
            0 => "no outcome given".to_string(),
            1 => format!("{} is not an outcome", unknown[0]),
            _ => format!("{} are not outcomes", unknown.join(", ")),
        };
        let message = format!("{what}: give one or more of {}, comma-separated", Outcome::NAMES.join(", "));
        return Err(ApiError::invalid_parameters(vec![Problem { field: "outcome".into(), message }]));
    }
    Ok(asked.into_iter().map(str::to_string).collect())
}

/// `GET /api/v1/functions/{name}/invocations?outcome=&limit=`: newest
/// first, from the recorder. With `outcome`, older records are read until
/// `limit` match or [`INVOCATIONS_SCANNED_MAX`] were read (`truncated`
/// then says older ones were not searched).
pub async fn invocations(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(p): Query<InvocationParams>,
) -> Result<Json<Invocations<RecordedInvocation>>, ApiError> {
    let outcomes = p.outcome.as_deref().map(outcomes).transpose()?;
    app.functions.versions(&name).await.map_err(error)?;
    let limit = p.limit.unwrap_or(50).clamp(1, INVOCATIONS_MAX);
    let mut query = EventQuery {
        source: Some(format!("glassbox/functions/{name}")),
        ty: Some(TypePattern::parse(FUNCTION_INVOKED)),
        limit: if outcomes.is_some() { QUERY_LIMIT_MAX } else { limit },
        ..EventQuery::default()
    };
    let wanted = |i: &RecordedInvocation| outcomes.as_ref().is_none_or(|o| o.contains(&i.invocation.key.outcome));
    let (mut invocations, mut scanned) = (Vec::new(), 0);
    let truncated = loop {
        let page = app.pipeline.store().query(&query).await?;
        scanned += page.events.len();
        invocations.extend(page.events.iter().filter_map(invocation_json).filter(wanted));
        match page.next_cursor {
            Some(cursor) if outcomes.is_some() && invocations.len() < limit && scanned < INVOCATIONS_SCANNED_MAX => {
                query.cursor = Some(cursor)
            }
            more => break more.is_some() && outcomes.is_some() && invocations.len() < limit,
        }
    };
    invocations.truncate(limit);
    Ok(Json(Invocations { invocations, truncated }))
}

/// An invocation record as listed: its data, with the record's id.
fn invocation_json(recorded: &RecordedEvent) -> Option<RecordedInvocation> {
    let invocation = recorded.payload().ok()?;
    Some(RecordedInvocation { id: recorded.event.id.to_string(), invocation })
}

#[cfg(test)]
mod tests {
    #[test]
    fn commas_split_triggers_but_not_cron_lists() {
        let triggers = super::split_triggers("mqtt:a/#, schedule:0 9 * * 1,3,5,event:order.*");
        assert_eq!(triggers, ["mqtt:a/#", "schedule:0 9 * * 1,3,5", "event:order.*"]);
    }

    #[test]
    fn outcomes_are_checked_against_the_runtimes() {
        assert_eq!(super::outcomes("failed, trapped").unwrap(), ["failed", "trapped"]);
        let refused = super::outcomes("failed,crashed,oops").unwrap_err();
        assert_eq!(refused.problems[0].field, "outcome");
        let message = &refused.problems[0].message;
        assert!(message.starts_with(r#""crashed", "oops" are not outcomes: give one or more of succeeded, failed"#));
        assert!(super::outcomes(" ,").is_err());
    }
}
