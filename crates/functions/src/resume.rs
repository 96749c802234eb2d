//! Taking up, at start, the work the last run left unfinished; keeping the
//! position on disk while running; handing work back at a stop.
//!
//! At start the dispatcher reads the recorder forward from
//! [`RESUME_MARGIN`] before the saved position, in id order. Each event a
//! trigger matched (by the version live when it was recorded) opens a piece
//! of work; the outcome records read further on close it (a success, a dead
//! letter) or count a failed attempt. What is left open is queued again,
//! continuing its retries — so each event gets one outcome however often
//! the process died, and runs again only when it died between the run and
//! its record.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use glassbox_bus::Consumer;
use glassbox_core::{
    Event, EventId, FUNCTION_DEAD_LETTER, FUNCTION_DROPPED, FUNCTION_HANDED_BACK, FUNCTION_INVOKED, FUNCTION_RESUMED,
    HandedBack, InvocationKey, Resumed, first_id_at,
};
use glassbox_store::{FunctionVersion, LiveMove, StoreError};

use super::position::RESUME_MARGIN;
use super::{Functions, spec};

/// Events read from the recorder at a time.
const PAGE: usize = 1000;

/// Which version of a function was live when, with its triggers: the one
/// live when an event was recorded decides whether the event was the
/// function's to run.
struct History {
    name: String,
    /// The version live at start, kept so that work found for a function
    /// deleted while the read went on still gets its outcome.
    live: Arc<super::Live>,
    periods: Vec<Period>,
}

/// From when (newest first), the triggers of the version live then; none
/// while the function was deleted.
type Period = (DateTime<Utc>, Option<Vec<spec::Trigger>>);

impl History {
    fn matched(&self, event: &Event) -> bool {
        live_match(&self.name, &self.periods, event)
    }
}

/// Whether the version of `name` live when `event` was recorded matched it.
fn live_match(name: &str, periods: &[Period], event: &Event) -> bool {
    let at = DateTime::<Utc>::from(event.id.datetime());
    let live = periods.iter().find(|(since, _)| *since <= at).and_then(|(_, triggers)| triggers.as_ref());
    live.is_some_and(|triggers| triggers.iter().any(|t| t.fires(name, &event.ty, event.subject.as_deref())))
}

/// The periods of a function's life, newest first: from the moves of its
/// live alias (deploys, promotes, rollbacks, deletes), and before the first
/// move logged, from its versions' deploy times.
fn periods(versions: &[FunctionVersion], log: &[LiveMove]) -> Vec<Period> {
    let triggers = |v: &FunctionVersion| {
        let spec: Result<spec::Spec, _> = serde_json::from_str(&v.spec);
        spec.ok().and_then(|s| s.validate().ok())
    };
    let number = |n: u32| versions.iter().find(|v| v.version == n).and_then(triggers);
    let logged_from = log.first().map(|m| m.at);
    let mut periods: Vec<Period> = versions
        .iter()
        .filter(|v| logged_from.is_none_or(|from| v.deployed_at < from))
        .filter_map(|v| triggers(v).map(|t| (v.deployed_at, Some(t))))
        .collect();
    periods.extend(log.iter().map(|m| (m.at, m.version.and_then(number))));
    periods.sort_by_key(|(since, _)| std::cmp::Reverse(*since));
    periods
}

/// An event a function has not finished with: how many runs failed so far.
type Open = BTreeMap<(EventId, String), u32>;

impl Functions {
    /// Takes up what the last run left unfinished (see the module doc);
    /// the events it reads are noted in `consumer`, so the bus does not
    /// hand them over again.
    pub(super) async fn resume(self: &Arc<Self>, consumer: &mut Consumer) -> Result<(), StoreError> {
        let store = self.pipeline.store().clone();
        let unsaved = |e: glassbox_bus::BacklogError| StoreError::Internal(e.to_string());
        let saved = self.position.load().await.map_err(unsaved)?;
        let until = first_id_at(Utc::now());
        let Some(saved) = saved else {
            // A first start: nothing was promised before it.
            self.position.save_at(until).await.map_err(unsaved)?;
            self.position.arm();
            return Ok(());
        };
        let (histories, began) = (self.histories().await?, std::time::Instant::now());
        let margin = chrono::Duration::from_std(RESUME_MARGIN).unwrap_or_default();
        let mut after = first_id_at(DateTime::<Utc>::from(saved.datetime()) - margin);
        let (mut open, mut scanned) = (Open::new(), 0usize);
        'read: loop {
            let page = store.read_after(after, PAGE).await?;
            let full = page.len() == PAGE;
            for recorded in page {
                let event = &recorded.event;
                if event.id > until {
                    break 'read;
                }
                (after, scanned) = (event.id, scanned + 1);
                consumer.note(event.id);
                close(&mut open, event);
                if !event.source.starts_with("glassbox/functions") {
                    for history in histories.iter().filter(|h| h.matched(event)) {
                        open.insert((event.id, history.name.clone()), 0);
                    }
                }
            }
            if !full {
                break;
            }
        }
        let ms = began.elapsed().as_millis() as u64;
        tracing::info!(scanned, unfinished = open.len(), from = %saved, ms, "read back the last run's function work");
        // Not behind the saved position: an idle restart must not move it back by the margin.
        self.position.acks().took(after.max(saved), 0);
        for (id, _) in open.keys() {
            self.position.acks().took(*id, 1);
        }
        self.position.arm();
        let mut by_function: HashMap<String, Vec<(EventId, u32)>> = HashMap::new();
        for ((id, name), failed) in open {
            by_function.entry(name).or_default().push((id, failed));
        }
        for (name, backlog) in by_function {
            self.record_resumed(&name, &backlog).await;
            let Some(live) = self.live.read().unwrap_or_else(|e| e.into_inner()).get(&name).cloned() else {
                // Deleted meanwhile: each event still gets its outcome, a dead letter.
                let held = histories.iter().find(|h| h.name == name).map(|h| h.live.clone());
                let deleted = held.and_then(|h| h.deleted.get().cloned().map(|reason| (h, reason)));
                let ids: Vec<EventId> = backlog.iter().map(|(id, _)| *id).collect();
                match deleted {
                    Some((held, reason)) => drop(tokio::spawn(self.clone().dead_letter_ids(held, ids, reason))),
                    None => ids.iter().for_each(|id| self.position.acks().ack(*id)),
                }
                continue;
            };
            let refused = live.defer(backlog.into_iter().map(|(id, failed)| (id, failed + 1)));
            if !refused.is_empty() {
                let reason = live.refusal();
                tokio::spawn(self.clone().dead_letter_ids(live, refused, reason));
            }
        }
        Ok(())
    }

    /// Each live function's versions with their triggers.
    async fn histories(&self) -> Result<Vec<History>, StoreError> {
        let live: Vec<Arc<super::Live>> =
            self.live.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let mut histories = Vec::with_capacity(live.len());
        for live in live {
            let name = live.version.name.clone();
            let (versions, log) = (self.store.versions(&name).await?, self.store.live_log(&name).await?);
            let periods = periods(&versions, &log);
            histories.push(History { name, live, periods });
        }
        Ok(histories)
    }

    async fn record_resumed(&self, name: &str, backlog: &[(EventId, u32)]) {
        let resumed = Resumed {
            function: name.to_string(),
            events: backlog.len() as u64,
            retrying: backlog.iter().filter(|(_, failed)| *failed > 0).count() as u64,
            oldest: backlog.first().map(|(id, _)| id.to_string()).unwrap_or_default(),
        };
        tracing::info!(function = name, events = resumed.events, "taking up events the last run left unfinished");
        self.record_change(name, FUNCTION_RESUMED, serde_json::to_value(resumed).unwrap_or_default()).await;
    }

    /// Stops taking events, lets the invocations running finish within
    /// `grace`, and hands the rest back: each function's unfinished work is
    /// recorded as such, and the position saved, so the next start takes
    /// it up.
    pub async fn stop(&self, grace: Duration) {
        self.stopping.send_replace(true);
        let finished = self.busy.idle(grace).await;
        let reason = match finished {
            true => "the server stopped".to_string(),
            false => {
                format!("the server stopped; invocations still running after {grace:?} (shutdown_grace) run again")
            }
        };
        let live: Vec<_> = self.live.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for live in live {
            let handed = HandedBack {
                function: live.version.name.clone(),
                queued: (live.queue.max_capacity() - live.queue.capacity() + live.backlog_len()) as u64,
                retrying: live.retrying.load(std::sync::atomic::Ordering::Relaxed) as u64,
                running: live.running.load(std::sync::atomic::Ordering::Relaxed) as u64,
                reason: reason.clone(),
            };
            if handed.queued + handed.retrying + handed.running > 0 {
                tracing::info!(
                    function = %handed.function, queued = handed.queued, retrying = handed.retrying,
                    running = handed.running, "handing unfinished events back to the next start"
                );
                let data = serde_json::to_value(handed).unwrap_or_default();
                self.record_change(&live.version.name, FUNCTION_HANDED_BACK, data).await;
            }
        }
        self.position.save().await;
    }
}

/// Closes or counts the open work an outcome record is about.
fn close(open: &mut Open, event: &Event) {
    let Some(function) = event.source.strip_prefix("glassbox/functions/") else { return };
    let Some(cause) = event.causationid.as_deref().and_then(|c| c.parse::<EventId>().ok()) else { return };
    let Some(failed) = open.get_mut(&(cause, function.to_string())) else { return };
    let key = event.payload::<InvocationKey>().ok();
    let done = match event.ty.as_str() {
        FUNCTION_DEAD_LETTER | FUNCTION_DROPPED => true,
        FUNCTION_INVOKED => match key {
            // A replay is not the event's own run.
            Some(key) if key.replay_of.is_some() => return,
            Some(key) => key.done(),
            None => return,
        },
        _ => return,
    };
    match done {
        true => {
            open.remove(&(cause, function.to_string()));
        }
        false => *failed += 1,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};
    use glassbox_core::{Draft, first_id_at};
    use glassbox_store::{FunctionVersion, LiveMove};

    use super::{Period, live_match, periods};

    fn version(number: u32, at: DateTime<Utc>, trigger: &str) -> FunctionVersion {
        let spec = serde_json::json!({"triggers": [trigger], "timeout_ms": 1000, "memory_bytes": 1 << 24,
            "concurrency": 1, "hop_limit": 16});
        FunctionVersion {
            name: "f".into(),
            version: number,
            digest: "sha256:x".into(),
            spec: spec.to_string(),
            deployed_at: at,
            deployed_by: glassbox_core::Principal::admin(glassbox_core::AuthMethod::BearerToken, None).label(),
            live: false,
        }
    }

    /// Which of the types `a.x` and `b.x`, recorded at `at`, were `f`'s to run.
    fn matched(periods: &[Period], at: DateTime<Utc>) -> Vec<&'static str> {
        let fires = |ty: &str| {
            let event = Draft::json("test", ty, &serde_json::json!({})).into_event(first_id_at(at), at, None);
            live_match("f", periods, &event)
        };
        ["a.x", "b.x"].into_iter().filter(|ty| fires(ty)).collect()
    }

    /// Deploy v1 (a.*), delete, deploy v2 (b.*), promote v1: an event
    /// recorded while the function was deleted was no one's to run.
    #[test]
    fn an_event_is_judged_by_the_version_live_when_it_was_recorded() {
        let t = |s: i64| DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_000) + Duration::seconds(s);
        let versions = [version(2, t(20), "event:b.*"), version(1, t(0), "event:a.*")];
        let log = [
            LiveMove { at: t(0), version: Some(1) },
            LiveMove { at: t(10), version: None },
            LiveMove { at: t(20), version: Some(2) },
            LiveMove { at: t(30), version: Some(1) },
        ];
        let periods = periods(&versions, &log);
        assert_eq!(matched(&periods, t(5)), ["a.x"]);
        assert!(matched(&periods, t(15)).is_empty(), "deleted then");
        assert_eq!(matched(&periods, t(25)), ["b.x"]);
        assert_eq!(matched(&periods, t(35)), ["a.x"], "promoted back");
        assert!(matched(&periods, t(-5)).is_empty(), "before its first deploy");
    }

    /// Moves made before the log existed are known only by deploy times.
    #[test]
    fn before_the_log_the_newest_version_deployed_is_taken_as_live() {
        let t = |s: i64| DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_000) + Duration::seconds(s);
        let versions = [version(2, t(10), "event:b.*"), version(1, t(0), "event:a.*")];
        let periods_without_log = periods(&versions, &[]);
        assert_eq!(matched(&periods_without_log, t(5)), ["a.x"]);
        assert_eq!(matched(&periods_without_log, t(15)), ["b.x"]);
        let log = [LiveMove { at: t(20), version: None }];
        let deleted_later = periods(&versions, &log);
        assert_eq!(matched(&deleted_later, t(15)), ["b.x"]);
        assert!(matched(&deleted_later, t(25)).is_empty());
    }
}
