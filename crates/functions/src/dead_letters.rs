//! Dead letters as a list an operator works through: inspect them, redrive
//! them after a fix, or discard them — each removal on the record.
//!
//! The list is read from the record, not kept beside it: a function's open
//! dead letters are its `function.dead_letter` records whose event has no
//! later `function.dead_letter_cleared` record. A redrive that succeeds and
//! a discard each write one, as a child of the dead letter (on the event's
//! chain), naming who did it; so the list, the chain and `glassbox trace`
//! always agree.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use glassbox_core::{
    DeadLetter, DeadLetterCleared, DeadLetterClearedReason, Draft, EventQuery, FUNCTION_DEAD_LETTER,
    FUNCTION_DEAD_LETTER_CLEARED, FUNCTION_INVOKED, Invocation, Principal, QUERY_LIMIT_MAX, RecordedEvent, TypePattern,
};
use glassbox_runtime::World;
use serde::{Deserialize, Serialize};

use super::{FunctionError, Functions, Live};

/// Dead letters listed, redriven or discarded by one call at most.
pub const DEAD_LETTERS_MAX: usize = 1_000;
/// Records read to build one list at most, whatever the function's history.
const SCANNED_MAX: usize = 20 * QUERY_LIMIT_MAX;

/// A dead letter still on its function's list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenDeadLetter {
    /// The event the function gave up on.
    pub event_id: String,
    /// Its chain: `glassbox trace` shows the whole of it.
    pub correlation_id: String,
    /// The `function.dead_letter` record.
    pub dead_letter_id: String,
    /// The version that gave up.
    pub version: u32,
    /// Why it gave up.
    pub reason: String,
    pub dead_lettered_at: DateTime<Utc>,
    /// Runs of the function on the event: retries, and redrives that failed.
    pub attempts: u32,
    /// The last run's outcome and error; none when it never ran (a guard
    /// dead-lettered it first: recursion, a full queue).
    pub outcome: Option<String>,
    pub error: Option<String>,
    pub first_failure: Option<DateTime<Utc>>,
    pub last_failure: Option<DateTime<Utc>>,
}

/// What a redrive runs, and how.
#[derive(Debug, Clone, Default)]
pub struct Redrive {
    /// The version to run; none: the live one.
    pub version: Option<u32>,
    /// Only these events (by event id); none: every open dead letter.
    pub ids: Option<Vec<String>>,
    /// Runs started per second at most; none: one after the other.
    pub rate_per_second: Option<f64>,
    /// Run each in a sandbox: nothing recorded, nothing sent, nothing cleared.
    pub dry_run: bool,
}

/// One dead letter run again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Redriven {
    pub event_id: String,
    pub version: u32,
    pub outcome: String,
    pub error: Option<String>,
    /// The `function.invoked` record of the run; none for a dry run.
    pub invocation: Option<String>,
    /// Whether it left the list (the run succeeded, and this was no dry run).
    pub cleared: bool,
}

/// An open dead letter with its record, which a clearing is a child of.
struct Open {
    view: OpenDeadLetter,
    record: RecordedEvent,
    function: String,
}

impl Functions {
    /// `name`'s open dead letters, newest first, at most `limit`.
    pub async fn dead_letters(&self, name: &str, limit: usize) -> Result<Vec<OpenDeadLetter>, FunctionError> {
        let open = self.open_dead_letters(name, limit.min(DEAD_LETTERS_MAX)).await?;
        Ok(open.into_iter().map(|o| o.view).collect())
    }

    /// Runs `name`'s open dead letters (or those of `redrive.ids`) again,
    /// each on its own chain, as `by`; one that succeeds leaves the list.
    pub async fn redrive(
        self: &Arc<Self>,
        name: &str,
        redrive: Redrive,
        by: &Principal,
    ) -> Result<Vec<Redriven>, FunctionError> {
        let chosen = self.chosen(name, redrive.ids.as_deref()).await?;
        let live = self.version_to_run(name, redrive.version).await?;
        if live.compiled.world() == World::HttpProxy {
            return Err(FunctionError::Invalid(format!(
                "{name} serves HTTP requests, which are answered at once and never dead-lettered"
            )));
        }
        let pause = redrive.rate_per_second.map(|r| Duration::from_secs_f64(1.0 / r.max(0.001)));
        let mut results = Vec::with_capacity(chosen.len());
        for (i, open) in chosen.iter().enumerate() {
            if let (Some(pause), true) = (pause, i > 0) {
                tokio::time::sleep(pause).await;
            }
            results.push(self.redrive_one(&live, open, redrive.dry_run, by).await?);
        }
        Ok(results)
    }

    /// Takes `name`'s open dead letters (or those of `ids`) off the list
    /// without running them, as `by`. Returns the events discarded.
    pub async fn discard(
        &self,
        name: &str,
        ids: Option<&[String]>,
        by: &Principal,
    ) -> Result<Vec<String>, FunctionError> {
        let chosen = self.chosen(name, ids).await?;
        let mut discarded = Vec::with_capacity(chosen.len());
        for open in chosen {
            self.clear_dead_letter(&open, DeadLetterClearedReason::Discarded, None, by).await?;
            discarded.push(open.view.event_id);
        }
        Ok(discarded)
    }

    async fn redrive_one(
        &self,
        live: &Arc<Live>,
        open: &Open,
        dry_run: bool,
        by: &Principal,
    ) -> Result<Redriven, FunctionError> {
        let event_id = &open.view.event_id;
        let id = event_id.parse().map_err(|_| FunctionError::Invalid(format!("{event_id:?} is not an event id")))?;
        let recorded = self.pipeline.store().get(id).await?.ok_or_else(|| {
            FunctionError::Invalid(format!("event {event_id} is gone (retention removed it): discard it instead"))
        })?;
        let version = live.version.version;
        if dry_run {
            let (report, _) = self.dry_run(live, &recorded).await?;
            let error = report.outcome.detail().map(str::to_string);
            let outcome = report.outcome.as_str().to_string();
            return Ok(Redriven {
                event_id: event_id.clone(),
                version,
                outcome,
                error,
                invocation: None,
                cleared: false,
            });
        }
        let Some(run) = self.rerun(live, &recorded).await? else {
            return Err(FunctionError::Invalid(format!("the run of {event_id} could not be recorded; try again")));
        };
        let key = &run.invocation.key;
        let cleared = key.done();
        if cleared {
            let succeeded = (version, run.id.clone());
            self.clear_dead_letter(open, DeadLetterClearedReason::Redriven, Some(succeeded), by).await?;
        }
        Ok(Redriven {
            event_id: event_id.clone(),
            version,
            outcome: key.outcome.clone(),
            error: run.invocation.error.clone(),
            invocation: Some(run.id),
            cleared,
        })
    }

    /// Records that `open` left the list: a child of its dead letter.
    async fn clear_dead_letter(
        &self,
        open: &Open,
        reason: DeadLetterClearedReason,
        succeeded: Option<(u32, String)>,
        by: &Principal,
    ) -> Result<(), FunctionError> {
        let function = &open.function;
        let (version, invocation) = succeeded.unzip();
        let data = DeadLetterCleared {
            function: function.clone(),
            event: open.view.event_id.clone(),
            reason,
            version,
            invocation,
            principal: by.clone(),
        };
        let parent = &open.record.event;
        let draft = Draft {
            subject: Some(function.clone()),
            causationid: Some(parent.id.to_string()),
            correlationid: Some(parent.correlationid.clone()),
            hop: Some(parent.hop.saturating_add(1)),
            traceparent: parent.traceparent.clone(),
            device: parent.device.clone(),
            ..Draft::payload(format!("glassbox/functions/{function}"), &data)
        };
        self.pipeline.ingest_platform(vec![draft], "api").await?;
        Ok(())
    }

    /// The open dead letters a redrive or discard acts on: those of `ids`
    /// (each must be open), or all of them up to [`DEAD_LETTERS_MAX`].
    async fn chosen(&self, name: &str, ids: Option<&[String]>) -> Result<Vec<Open>, FunctionError> {
        let open = self.open_dead_letters(name, DEAD_LETTERS_MAX).await?;
        let Some(ids) = ids else { return Ok(open) };
        let missing: Vec<&str> =
            ids.iter().filter(|id| !open.iter().any(|o| &o.view.event_id == *id)).map(String::as_str).collect();
        if !missing.is_empty() {
            return Err(FunctionError::Invalid(format!(
                "not open dead letters of {name}: {}; `glassbox functions dead-letters {name}` lists them",
                missing.join(", ")
            )));
        }
        Ok(open.into_iter().filter(|o| ids.contains(&o.view.event_id)).collect())
    }

    async fn open_dead_letters(&self, name: &str, limit: usize) -> Result<Vec<Open>, FunctionError> {
        self.versions(name).await?;
        let source = format!("glassbox/functions/{name}");
        // Event → the newest clearing of it.
        let mut cleared: HashMap<String, glassbox_core::EventId> = HashMap::new();
        for record in self.scan(&source, FUNCTION_DEAD_LETTER_CLEARED, SCANNED_MAX).await? {
            if let Ok(c) = record.payload::<DeadLetterCleared>() {
                let newest = cleared.entry(c.event).or_insert(record.event.id);
                *newest = (*newest).max(record.event.id);
            }
        }
        let mut open: Vec<Open> = Vec::new();
        for record in self.scan(&source, FUNCTION_DEAD_LETTER, SCANNED_MAX).await? {
            let Ok(letter) = record.payload::<DeadLetter>() else { continue };
            let cleared_after = cleared.get(&letter.event).is_some_and(|at| *at > record.event.id);
            // Newest first: an event dead-lettered again is listed once, as its newest.
            if cleared_after || open.iter().any(|o| o.view.event_id == letter.event) {
                continue;
            }
            let function = letter.function.clone();
            let view = self.described(&source, &record, letter).await?;
            open.push(Open { view, record, function });
            if open.len() >= limit {
                break;
            }
        }
        Ok(open)
    }

    /// A dead letter with its runs: attempts, first and last failure, the
    /// last outcome and error, from the `function.invoked` records on its chain.
    async fn described(
        &self,
        source: &str,
        record: &RecordedEvent,
        letter: DeadLetter,
    ) -> Result<OpenDeadLetter, FunctionError> {
        let query = EventQuery {
            correlation: Some(record.event.correlationid.clone()),
            source: Some(source.to_string()),
            ty: Some(TypePattern::parse(FUNCTION_INVOKED)),
            limit: QUERY_LIMIT_MAX,
            ..EventQuery::default()
        };
        let runs: Vec<Invocation> = self
            .pipeline
            .store()
            .query(&query)
            .await?
            .events
            .iter()
            .filter_map(|e| e.payload::<Invocation>().ok())
            .filter(|i| i.key.event_id == letter.event || i.key.replay_of.as_deref() == Some(letter.event.as_str()))
            .collect();
        let failures: Vec<&Invocation> = runs.iter().filter(|i| !i.key.done()).collect();
        let last = runs.iter().max_by_key(|i| i.start);
        Ok(OpenDeadLetter {
            event_id: letter.event,
            correlation_id: record.event.correlationid.clone(),
            dead_letter_id: record.event.id.to_string(),
            version: letter.version,
            reason: letter.reason,
            dead_lettered_at: record.event.time,
            attempts: runs.len() as u32,
            outcome: last.map(|i| i.key.outcome.clone()),
            error: last.and_then(|i| i.error.clone()),
            first_failure: failures.iter().map(|i| i.start).min(),
            last_failure: failures.iter().map(|i| i.start).max(),
        })
    }

    /// Records of `ty` from `source`, newest first, at most `max`.
    async fn scan(&self, source: &str, ty: &str, max: usize) -> Result<Vec<RecordedEvent>, FunctionError> {
        let mut query = EventQuery {
            source: Some(source.to_string()),
            ty: Some(TypePattern::parse(ty)),
            limit: QUERY_LIMIT_MAX,
            ..EventQuery::default()
        };
        let mut found = Vec::new();
        loop {
            let page = self.pipeline.store().query(&query).await?;
            found.extend(page.events);
            match page.next_cursor {
                Some(cursor) if found.len() < max => query.cursor = Some(cursor),
                _ => return Ok(found),
            }
        }
    }
}
