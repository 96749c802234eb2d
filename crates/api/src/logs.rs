//! `GET /api/v1/logs`: the log lines of functions (recorded on their
//! invocations, with the platform's own lines about each invocation: why it
//! failed, what was dropped) and of the platform (kept in a bounded ring),
//! filtered by the ids they are tagged with, oldest first.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use glassbox_api_types::{LogEntry, LogOrigin, Logs};
use glassbox_core::{
    EventId, EventQuery, FUNCTION_INVOKED, Invocation, LogLine, Problem, QUERY_LIMIT_MAX, RecordedEvent, TypePattern,
};
use serde::Deserialize;

use super::events::parse_time;
use super::params::{Parameters, Query};
use super::{ApiError, AppState};
use glassbox_telemetry::logs::PlatformLine;

/// Lines per answer when none is asked for, and at most.
pub const LOG_LINES_DEFAULT: usize = 1000;
pub const LOG_LINES_MAX: usize = 10_000;
/// Invocations read for one answer at most: bounded however broad the filter.
const INVOCATIONS_SCANNED_MAX: usize = 10 * QUERY_LIMIT_MAX;

const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    correlation: Option<String>,
    /// An event id: the lines of invocations of that event (or that are that
    /// invocation's record).
    event: Option<String>,
    function: Option<String>,
    device: Option<String>,
    /// The lowest level shown (`info` shows info, warn and error).
    level: Option<String>,
    /// `function` or `platform`; both when absent.
    source: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
}

impl Parameters for LogParams {
    fn accepts(name: &str) -> Option<String> {
        (name == "limit").then(|| format!("an integer from 1 to {LOG_LINES_MAX}, or narrow the filters"))
    }
}

/// The filters, checked.
struct Filters {
    correlation: Option<String>,
    event: Option<String>,
    function: Option<String>,
    device: Option<String>,
    level: usize,
    functions: bool,
    platform: bool,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: usize,
}

impl LogParams {
    fn check(self) -> Result<Filters, ApiError> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, message: String| problems.push(Problem { field: field.into(), message });
        let level = match self.level.as_deref() {
            None => 0,
            Some(l) => LEVELS.iter().position(|n| n.eq_ignore_ascii_case(l)).unwrap_or_else(|| {
                problem("level", format!("{l:?} is not a level: use one of {}", LEVELS.join(", ")));
                0
            }),
        };
        let (functions, platform) = match self.source.as_deref() {
            None => (true, true),
            Some("function") => (true, false),
            Some("platform") => (false, true),
            Some(other) => {
                problem("source", format!("{other:?} is not a source: use function or platform"));
                (true, true)
            }
        };
        if let Some(event) = &self.event
            && event.parse::<EventId>().is_err()
        {
            problem("event", format!("{event:?} is not an event id (26 characters, e.g. 01J…)"));
        }
        let now = Utc::now();
        let since = self.since.as_deref().and_then(|s| parse_time(s, now).map_err(|e| problem("since", e)).ok());
        let until = self.until.as_deref().and_then(|s| parse_time(s, now).map_err(|e| problem("until", e)).ok());
        if let Some(limit) = self.limit.filter(|l| !(1..=LOG_LINES_MAX).contains(l)) {
            problem("limit", format!("{limit} is out of range: use 1 to {LOG_LINES_MAX}, or narrow the filters"));
        }
        if !problems.is_empty() {
            return Err(ApiError::invalid_parameters(problems));
        }
        Ok(Filters {
            correlation: self.correlation,
            event: self.event,
            function: self.function,
            device: self.device,
            level,
            functions,
            platform,
            since,
            until,
            limit: self.limit.unwrap_or(LOG_LINES_DEFAULT),
        })
    }
}

pub async fn logs(State(app): State<AppState>, Query(params): Query<LogParams>) -> Result<Json<Logs>, ApiError> {
    let mut filters = params.check()?;
    if let Some(name) = &filters.function {
        app.functions.versions(name).await.map_err(super::functions::error)?;
    }
    if let Some(event) = &filters.event {
        let lineage = app.pipeline.store().lineage(event).await?;
        let lineage = lineage.ok_or_else(|| ApiError::not_found(format!("no event with id {event}")))?;
        filters.correlation.get_or_insert(lineage.correlationid);
    }
    let mut lines = Vec::new();
    let mut truncated = false;
    // Invocation records hold the function's lines and the platform's about
    // the invocation (why it failed, what was dropped).
    truncated |= function_lines(&app, &filters, &mut lines).await?;
    if filters.platform {
        lines.extend(
            app.platform_log.lines(|l| platform_matches(l, &filters), filters.limit).iter().map(platform_entry),
        );
    }
    lines.sort_by_key(|line| line.at);
    if lines.len() > filters.limit {
        truncated = true;
        lines.drain(..lines.len() - filters.limit);
    }
    Ok(Json(Logs { lines, truncated, platform_lines_dropped: app.platform_log.dropped() }))
}

/// The lines of the invocations the filters select, newest invocations
/// first until `limit` lines; true when there were more.
async fn function_lines(app: &AppState, f: &Filters, lines: &mut Vec<LogEntry>) -> Result<bool, ApiError> {
    let mut query = EventQuery {
        correlation: f.correlation.clone(),
        device: f.device.clone(),
        ty: Some(TypePattern::parse(FUNCTION_INVOKED)),
        source: f.function.as_ref().map(|name| format!("glassbox/functions/{name}")),
        since: f.since,
        until: f.until,
        limit: QUERY_LIMIT_MAX,
        ..EventQuery::default()
    };
    let mut scanned = 0;
    let mut found = Vec::new();
    loop {
        let page = app.pipeline.store().query(&query).await?;
        scanned += page.events.len();
        for recorded in &page.events {
            found.extend(invocation_lines(recorded, f));
        }
        match page.next_cursor {
            Some(cursor) if found.len() < f.limit && scanned < INVOCATIONS_SCANNED_MAX => query.cursor = Some(cursor),
            more => {
                lines.extend(found);
                return Ok(more.is_some());
            }
        }
    }
}

/// One invocation's lines that pass the filters, as the API shows them.
fn invocation_lines(recorded: &RecordedEvent, f: &Filters) -> Vec<LogEntry> {
    let Ok(data) = recorded.payload::<Invocation>() else { return Vec::new() };
    let invocation = recorded.event.id.to_string();
    if let Some(event) = &f.event
        && data.key.event_id != *event
        && invocation != *event
    {
        return Vec::new();
    }
    let start = data.start;
    let after = |us: u64| start.checked_add_signed(chrono::Duration::microseconds(i64::try_from(us).unwrap_or(0)));
    // Every line carries the ids it is about.
    let line =
        |id: String, at: DateTime<Utc>, level: &str, message: &str, source: &str, stream: Option<&str>| LogEntry {
            id,
            at,
            level: level.into(),
            message: message.into(),
            source: source.into(),
            function: Some(data.key.function.clone()),
            event_id: Some(data.key.event_id.clone()),
            correlationid: Some(recorded.event.correlationid.clone()),
            device: recorded.event.device.clone(),
            origin: LogOrigin::Invocation {
                stream: stream.map(str::to_string),
                version: data.key.version,
                invocation: invocation.clone(),
            },
        };
    let wanted = |level: &str, at: Option<DateTime<Utc>>| {
        let at = at.filter(|at| f.since.is_none_or(|s| *at >= s) && f.until.is_none_or(|u| *at < u));
        at.filter(|_| level_of(Some(level)) >= f.level)
    };
    let mut lines = Vec::new();
    for (i, l) in data.logs.iter().enumerate() {
        // The guest's, or the platform's about the invocation (`"source": "platform"`).
        let source = l.source();
        if let Some(at) = wanted(&l.level, after(l.at_us)).filter(|_| f.shows(source)) {
            let id = format!("{invocation}/{i}");
            lines.push(line(id, at, &l.level, &l.message, source, l.stream.as_deref()));
        }
    }
    if data.logs_dropped > 0
        && let Some(at) = wanted("warn", after(data.wall_us)).filter(|_| f.platform)
    {
        let message = format!("{} more log line(s) dropped: over the per-invocation limit", data.logs_dropped);
        lines.push(line(format!("{invocation}/dropped"), at, "warn", &message, LogLine::PLATFORM, None));
    }
    lines
}

impl Filters {
    /// Whether lines from `source` (`function` or `platform`) are asked for.
    fn shows(&self, source: &str) -> bool {
        if source == LogLine::PLATFORM { self.platform } else { self.functions }
    }
}

fn level_of(name: Option<&str>) -> usize {
    name.and_then(|n| LEVELS.iter().position(|l| *l == n)).unwrap_or(2)
}

fn platform_matches(line: &PlatformLine, f: &Filters) -> bool {
    let tagged = |want: &Option<String>, names: &[&str]| {
        want.as_deref().is_none_or(|w| names.iter().any(|n| line.field(n) == Some(w)))
    };
    level_of(Some(line.level)) >= f.level
        && f.since.is_none_or(|s| line.at >= s)
        && f.until.is_none_or(|u| line.at < u)
        && tagged(&f.correlation, &["correlation", "correlationid"])
        && tagged(&f.event, &["event_id", "event"])
        && tagged(&f.function, &["function"])
        && tagged(&f.device, &["device", "client"])
}

fn platform_entry(line: &PlatformLine) -> LogEntry {
    let tag = |names: &[&str]| names.iter().find_map(|n| line.field(n)).map(str::to_string);
    LogEntry {
        id: format!("platform/{}", line.seq),
        at: line.at,
        level: line.level.into(),
        message: line.message.clone(),
        source: LogLine::PLATFORM.into(),
        function: tag(&["function"]),
        event_id: tag(&["event_id"]),
        correlationid: tag(&["correlation", "correlationid"]),
        device: tag(&["device", "client"]),
        origin: LogOrigin::Platform { target: line.target.to_string(), fields: line.fields.clone() },
    }
}
