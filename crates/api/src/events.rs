//! `/api/v1/events`: ingest, query, get one, and the live tail.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use glassbox_api_types::{Accepted, Ingested, Lagged, Page};
use glassbox_bus::BusItem;
use glassbox_core::RecordedEvent;
use glassbox_core::{
    Draft, EventId, EventQuery, Limits, Problem, QUERY_LIMIT_MAX, TraceParent, TypePattern, ValidationError,
    check_causationid, check_text, parse_cloudevent,
};
use serde::Deserialize;

use super::body::{Body, BodyLimit, charset_refused, foreign_charset};
use super::params::{Parameters, Path, Query};
use super::{ApiError, AppState};
use glassbox_pipeline::metrics::Rejection;

/// How a request body is to be read, from its Content-Type.
enum Mode {
    Single,
    Batch,
}

fn mode(headers: &HeaderMap) -> Result<Mode, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let mode = match essence.as_str() {
        "application/cloudevents+json" | "application/json" => Mode::Single,
        "application/cloudevents-batch+json" => Mode::Batch,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "unsupported Content-Type {content_type:?}: send a structured-mode CloudEvent as \
                 application/cloudevents+json (or a JSON array as application/cloudevents-batch+json)"
                ),
            ));
        }
    };
    match foreign_charset(content_type) {
        Some(charset) => Err(charset_refused(&charset)),
        None => Ok(mode),
    }
}

/// `POST /api/v1/events`: records the event(s), then answers 202 with the
/// minted ids, only once they are durable.
pub async fn ingest(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Body, ApiError>,
) -> Result<(StatusCode, Json<Ingested>), ApiError> {
    let result = ingest_checked(&app, &headers, body).await;
    if let Err(err) = &result {
        app.pipeline.counters.reject(rejection_of(err));
    }
    result
}

/// Refuses at once, before reading it, a body declared larger than
/// `http.body_bytes_max`, counted as a `too_large` ingest.
pub async fn declared_within(
    State(app): State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match BodyLimit::configured(app.limits.data_bytes_max).check(&mut request) {
        Ok(()) => next.run(request).await,
        Err(refused) => {
            app.pipeline.counters.reject(Rejection::TooLarge);
            refused.into_response()
        }
    }
}

fn rejection_of(err: &ApiError) -> Rejection {
    match err.code {
        "malformed_json" | "body_timeout" | "unreadable_body" => Rejection::MalformedJson,
        "too_large" => Rejection::TooLarge,
        "unsupported_media_type" => Rejection::UnsupportedMediaType,
        "store_unavailable" => Rejection::StoreUnavailable,
        _ => Rejection::InvalidEvent,
    }
}

async fn ingest_checked(
    app: &AppState,
    headers: &HeaderMap,
    body: Result<Body, ApiError>,
) -> Result<(StatusCode, Json<Ingested>), ApiError> {
    let mode = mode(headers)?;
    let Body(body) = body?;
    let mut drafts = match mode {
        Mode::Single => vec![parse_cloudevent(&body, &app.limits)?],
        Mode::Batch => parse_batch(&body, &app.limits)?,
    };
    if drafts.is_empty() {
        let message = "the batch is empty: send a JSON array of at least one CloudEvent";
        return Err(ApiError::bad_request("empty_batch", message));
    }
    let context = HeaderContext::from_headers(headers, &app.limits)?;
    drafts.iter_mut().for_each(|d| context.apply(d));
    refuse_unknown_parents(app, &drafts, matches!(mode, Mode::Batch)).await?;

    let appended = tokio::time::timeout(app.append_timeout, app.pipeline.ingest(drafts, "http"))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!(
                    "the recorder did not confirm within {:?}; the event may or may not be recorded: \
                     retry with the same `id` and it will not be recorded twice",
                    app.append_timeout
                ),
            )
        })?
        .map_err(|e| {
            let mut err = ApiError::from(e);
            if err.code == "store_unavailable" {
                err.message = format!("nothing was recorded: {}", err.message);
            }
            err
        })?;
    let mut accepted = appended.into_iter().map(|a| Accepted {
        id: a.id.to_string(),
        correlationid: a.correlationid,
        duplicate: a.duplicate,
    });
    let body = match mode {
        Mode::Single => {
            Ingested::One(accepted.next().ok_or_else(|| super::error::internal("the store appended nothing"))?)
        }
        Mode::Batch => Ingested::Batch(accepted.collect()),
    };
    Ok((StatusCode::ACCEPTED, Json(body)))
}

/// A `causationid` must name an event Glassbox recorded: one that names
/// nothing would silently start a new chain (issue 18). Looked up only for
/// drafts that give one; every offender is named.
async fn refuse_unknown_parents(app: &AppState, drafts: &[Draft], batch: bool) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    // A batch's events often share their parent: each is looked up once.
    let mut recorded = std::collections::HashSet::new();
    for (index, draft) in drafts.iter().enumerate() {
        let Some(parent) = &draft.causationid else { continue };
        if recorded.contains(parent) {
            continue;
        }
        if app.pipeline.store().lineage(parent).await?.is_some() {
            recorded.insert(parent);
        } else {
            let field = if batch { format!("[{index}].causationid") } else { "causationid".into() };
            let message = format!(
                "{parent} names no recorded event (never recorded here, or deleted by retention): give the id of \
                 an event Glassbox recorded (`glassbox events get ID` shows one), or leave causationid out to \
                 start a new chain; to tie the event to another system's, give that as correlationid"
            );
            problems.push(Problem { field, message });
        }
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(ApiError::problems("unknown_causation", problems)),
    }
}

fn parse_batch(body: &[u8], limits: &Limits) -> Result<Vec<Draft>, ValidationError> {
    let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(body).map_err(|e| ValidationError {
        problems: vec![Problem { field: "body".into(), message: format!("expected a JSON array of CloudEvents: {e}") }],
    })?;
    let mut drafts = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match parse_cloudevent(item.get().as_bytes(), limits) {
            Ok(draft) => drafts.push(draft),
            Err(err) => problems.extend(
                err.problems
                    .into_iter()
                    .map(|p| Problem { field: format!("[{index}].{}", p.field), message: p.message }),
            ),
        }
    }
    match problems.is_empty() {
        true => Ok(drafts),
        false => Err(ValidationError { problems }),
    }
}

/// Chain context passed as HTTP headers; event attributes take precedence.
struct HeaderContext {
    correlationid: Option<String>,
    causationid: Option<String>,
    traceparent: Option<String>,
}

impl HeaderContext {
    /// The context headers, each checked as its attribute would be; every
    /// one that is wrong (not UTF-8, malformed) is named.
    fn from_headers(headers: &HeaderMap, limits: &Limits) -> Result<Self, ApiError> {
        let mut problems = Vec::new();
        let mut header = |names: &[&str], check: &dyn Fn(&str) -> Result<String, String>| {
            let (name, value) = names.iter().find_map(|n| headers.get(*n).map(|v| (*n, v)))?;
            let checked = match std::str::from_utf8(value.as_bytes()).map(str::trim) {
                Err(_) => Err("the header's value is not UTF-8 text: send it as UTF-8".to_string()),
                Ok("") => return None,
                Ok(text) => check_text(text, limits).and_then(|()| check(text)),
            };
            checked.map_err(|message| problems.push(Problem { field: name.into(), message })).ok()
        };
        let as_is = |text: &str| Ok(text.to_string());
        let context = Self {
            correlationid: header(&["correlationid", "ce-correlationid", "x-correlation-id"], &as_is),
            causationid: header(&["causationid", "ce-causationid"], &check_causationid),
            traceparent: header(&["traceparent"], &|text| {
                TraceParent::parse(text).map(|t| t.to_string()).map_err(|e| format!("not a W3C traceparent: {e}"))
            }),
        };
        match problems.is_empty() {
            true => Ok(context),
            false => Err(ApiError::problems("invalid_header", problems)),
        }
    }

    fn apply(&self, draft: &mut Draft) {
        fill(&mut draft.correlationid, &self.correlationid);
        fill(&mut draft.causationid, &self.causationid);
        fill(&mut draft.traceparent, &self.traceparent);
    }
}

fn fill(slot: &mut Option<String>, value: &Option<String>) {
    if slot.is_none() {
        slot.clone_from(value);
    }
}

/// Query-string filters shared by query and tail.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    correlation: Option<String>,
    device: Option<String>,
    #[serde(rename = "type")]
    ty: Option<String>,
    source: Option<String>,
    state: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

impl Filters {
    /// Validates every parameter, naming each one that is wrong.
    pub fn into_query(self) -> Result<EventQuery, ApiError> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, message: String| problems.push(Problem { field: field.into(), message });
        let state = self.state.as_deref().and_then(|s| s.parse().map_err(|e| problem("state", e)).ok());
        let now = Utc::now();
        let since = self.since.as_deref().and_then(|s| parse_time(s, now).map_err(|e| problem("since", e)).ok());
        let until = self.until.as_deref().and_then(|s| parse_time(s, now).map_err(|e| problem("until", e)).ok());
        if let (Some(since), Some(until)) = (since, until)
            && since > until
        {
            problem("since", "is later than until".into());
        }
        if let Some(limit) = self.limit.filter(|l| !(1..=QUERY_LIMIT_MAX).contains(l)) {
            problem("limit", format!("{limit} is out of range: use 1 to {QUERY_LIMIT_MAX} and follow next_cursor"));
        }
        if !problems.is_empty() {
            return Err(ApiError::invalid_parameters(problems));
        }
        Ok(EventQuery {
            correlation: self.correlation,
            device: self.device,
            ty: self.ty.as_deref().map(TypePattern::parse),
            source: self.source,
            state,
            since,
            until,
            limit: self.limit.unwrap_or(0),
            cursor: self.cursor,
        })
    }
}

/// An RFC 3339 time, or a duration before now (`15m`, `2h`, `7d`).
pub(super) fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    humantime::parse_duration(text)
        .ok()
        .and_then(|ago| chrono::Duration::from_std(ago).ok())
        .and_then(|ago| now.checked_sub_signed(ago))
        .ok_or_else(|| {
            format!("{text:?} is neither an RFC 3339 time (2026-01-31T12:00:00Z) nor a duration ago (15m, 2h, 7d)")
        })
}

impl Parameters for Filters {
    fn accepts(name: &str) -> Option<String> {
        match name {
            "limit" => Some(format!("an integer from 1 to {QUERY_LIMIT_MAX}, and follow next_cursor for more")),
            _ => None,
        }
    }
}

/// `GET /api/v1/events`: newest first, one page.
pub async fn query(
    State(app): State<AppState>,
    Query(filters): Query<Filters>,
) -> Result<Json<Page<RecordedEvent>>, ApiError> {
    let query = filters.into_query()?;
    let page = app.pipeline.store().query(&query).await?;
    Ok(Json(Page { events: page.events, next_cursor: page.next_cursor }))
}

pub fn parse_id(id: &str) -> Result<EventId, ApiError> {
    id.parse::<EventId>().map_err(|_| {
        ApiError::bad_request(
            "invalid_id",
            format!("{id:?} is not an event id (26 characters, like 01JD6Y8Q1W3N4ZV7K2M5P9R0ST)"),
        )
    })
}

/// `GET /api/v1/events/{id}`.
pub async fn get(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<RecordedEvent>, ApiError> {
    let event_id = parse_id(&id)?;
    match app.pipeline.store().get(event_id).await? {
        Some(event) => Ok(Json(event)),
        None => {
            Err(ApiError::not_found(format!("no event with id {id}; it may never have existed or passed retention")))
        }
    }
}

/// `GET /api/v1/events/tail`: Server-Sent Events of newly recorded events
/// matching the filters. A `lagged` event says how many were skipped
/// because this client read too slowly; they are still in the recorder.
pub async fn tail(
    State(app): State<AppState>,
    Query(filters): Query<Filters>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let query = filters.into_query()?;
    let mut stopping = app.stopping.clone();
    let stopped = async move {
        let _ = stopping.wait_for(|stopping| *stopping).await;
    };
    let ready = app.pipeline.bus().subscribe().take_until(stopped);
    let stream = ready.flat_map(futures::stream::iter).filter_map(move |item| {
        let out = match item {
            BusItem::Event(event) if query.matches(&event) => {
                SseEvent::default().event("event").json_data(&*event).ok()
            }
            BusItem::Event(_) => None,
            BusItem::Lagged(skipped) => SseEvent::default().event("lagged").json_data(Lagged { skipped }).ok(),
        };
        futures::future::ready(out.map(Ok))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_durations_ago() {
        let now = Utc::now();
        assert_eq!(parse_time("15m", now).unwrap(), now - chrono::Duration::minutes(15));
        assert!(parse_time("2026-01-31T12:00:00+01:00", now).is_ok());
        assert!(parse_time("yesterday", now).unwrap_err().contains("neither"));
    }

    #[test]
    fn every_bad_filter_is_named() {
        let filters =
            Filters { state: Some("lost".into()), since: Some("x".into()), limit: Some(0), ..Filters::default() };
        let err = filters.into_query().unwrap_err();
        let fields: Vec<_> = err.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["state", "since", "limit"]);
    }
}
