//! A function's life after its deploy: which version is live (`rollback`,
//! `promote`) and its end (`delete`), each recorded as a platform event
//! with who did it, so diagnosis can tie what followed to it.
//!
//! Rollback steps back by number: it makes live the newest version older
//! than the live one, so each rollback goes one further back. Promote
//! makes any version live, forward or back (and a deleted function live
//! again). Delete stops everything of the function at once — triggers,
//! routes, schedules, warm instances — and gives each event it had queued
//! its one outcome, a dead letter (`cleared`); its versions stay unless
//! purged, so `versions`, `invocations` and `promote` still answer.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use glassbox_core::{
    Deleted, DropReason, EventId, FUNCTION_DELETED, FUNCTION_PROMOTED, FUNCTION_ROLLED_BACK, LiveChanged, Principal,
};
use glassbox_store::FunctionVersion;
use serde::{Deserialize, Serialize};

use super::{FunctionError, Functions, Live, Spec};

/// The answer to a rollback or a promote.
#[derive(Debug, Clone, Serialize)]
pub struct LiveChange {
    pub function: String,
    /// False when the version asked for was live already: nothing happened.
    pub changed: bool,
    /// The version live before; none when the function was deleted.
    pub from: Option<u32>,
    /// The version live now.
    pub live: FunctionVersion,
}

/// Work a function has in hand: what a delete without `--force` waits for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// Events in its queue or its backlog, not started.
    pub queued: u64,
    /// Events waiting out a retry's backoff.
    pub retrying: u64,
    /// Events in invocations running now.
    pub running: u64,
    /// HTTP requests waiting for a slot.
    pub waiting: u64,
}

impl InFlight {
    pub(super) fn of(live: &Live) -> Self {
        Self {
            queued: (live.queue.max_capacity() - live.queue.capacity() + live.backlog_len()) as u64,
            retrying: live.retrying.load(Ordering::Relaxed) as u64,
            running: live.running.load(Ordering::Relaxed) as u64,
            waiting: live.waiting.load(Ordering::Relaxed) as u64,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `3 queued, 1 running`: the parts that are not zero (empty when none).
    pub fn words(&self) -> String {
        let parts = [
            (self.queued, "queued"),
            (self.retrying, "waiting for a retry"),
            (self.running, "running"),
            (self.waiting, "HTTP request(s) waiting"),
        ];
        let parts: Vec<String> = parts.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{n} {what}")).collect();
        parts.join(", ")
    }
}

impl Functions {
    /// Makes live the newest version older than the live one.
    pub async fn rollback(self: &Arc<Self>, name: &str, by: &Principal) -> Result<LiveChange, FunctionError> {
        // Held from the read to the record: two changes never decide on the same state.
        let _changing = self.changing.lock().await;
        let versions = self.versions(name).await?;
        let live = versions.iter().find(|v| v.live).ok_or_else(|| deleted(name))?;
        let previous = versions.iter().find(|v| v.version < live.version).ok_or_else(|| {
            FunctionError::Conflict(format!(
                "{name} v{} is its oldest version: there is nothing to roll back to; \
                 `glassbox functions promote {name} VERSION` makes any version live",
                live.version
            ))
        })?;
        self.make_live(previous, Some(live.version), FUNCTION_ROLLED_BACK, by).await
    }

    /// Makes `version` live, whichever is live now (or none: the function
    /// was deleted). The version already live: answered, nothing changes.
    pub async fn promote(
        self: &Arc<Self>,
        name: &str,
        version: u32,
        by: &Principal,
    ) -> Result<LiveChange, FunctionError> {
        let _changing = self.changing.lock().await;
        let versions = self.versions(name).await?;
        let chosen = versions.iter().find(|v| v.version == version).ok_or_else(|| {
            let numbers: Vec<String> = versions.iter().rev().map(|v| v.version.to_string()).collect();
            FunctionError::Invalid(format!(
                "{name} has no version {version}; it has {} (`glassbox functions versions {name}`)",
                numbers.join(", ")
            ))
        })?;
        let from = versions.iter().find(|v| v.live).map(|v| v.version);
        if chosen.live {
            return Ok(LiveChange { function: name.into(), changed: false, from, live: chosen.clone() });
        }
        self.make_live(chosen, from, FUNCTION_PROMOTED, by).await
    }

    /// Points `live` at `chosen`, runs it, and records the change as `ty`.
    /// The caller holds `changing` since it read the versions.
    async fn make_live(
        self: &Arc<Self>,
        chosen: &FunctionVersion,
        from: Option<u32>,
        ty: &str,
        by: &Principal,
    ) -> Result<LiveChange, FunctionError> {
        let name = chosen.name.as_str();
        let spec: Spec = serde_json::from_str(&chosen.spec).map_err(|e| FunctionError::Invalid(e.to_string()))?;
        self.check_routes(name, &spec.validate().map_err(FunctionError::Invalid)?)?;
        // Compiled before the alias moves: a version that cannot run never becomes live.
        let prepared = self.prepare(chosen.clone(), None).await?;
        let live =
            self.store.set_live(name, chosen.version).await?.ok_or_else(|| FunctionError::Unknown(name.into()))?;
        self.end_retirement(name).await?;
        self.install(prepared);
        let change = LiveChanged {
            function: name.into(),
            from,
            to: live.version,
            digest: live.digest.clone(),
            by: by.label(),
            principal: Some(by.clone()),
        };
        self.record_change(name, ty, serde_json::to_value(change).unwrap_or_default()).await;
        Ok(LiveChange { function: name.into(), changed: true, from, live })
    }

    /// Deletes a function: refused while it has work in hand unless
    /// `force` (see the module doc); with `purge`, its versions, key-value
    /// store and unused components go too.
    pub async fn delete(
        self: &Arc<Self>,
        name: &str,
        force: bool,
        purge: bool,
        by: &Principal,
    ) -> Result<Deleted, FunctionError> {
        let _changing = self.changing.lock().await;
        let versions = self.versions(name).await?;
        let live = self.live.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned();
        // The store says whether it is live: a version that failed to load
        // at start is live there, with nothing in hand.
        let (version, in_flight) = match (&live, versions.iter().find(|v| v.live)) {
            (Some(live), _) => (Some(live.version.version), InFlight::of(live)),
            (None, Some(stored)) => (Some(stored.version), InFlight::default()),
            (None, None) if purge => (None, InFlight::default()),
            (None, None) => {
                return Err(FunctionError::Conflict(format!(
                    "{name} is deleted already; its {} version(s) are kept: add --purge to remove them, or \
                     `glassbox functions promote {name} VERSION` to make one live again",
                    versions.len()
                )));
            }
        };
        if !force && !in_flight.is_empty() {
            return Err(FunctionError::Conflict(format!(
                "{name} has work in hand ({}): wait for it to finish (`glassbox functions get {name}` shows what is \
                 left), or delete with --force: queued and retrying events get a dead letter (cleared), running \
                 invocations finish and are recorded",
                in_flight.words()
            )));
        }
        // The store first: if it cannot record the delete, the function keeps running.
        let unused = self.store.delete(name, purge).await?;
        self.end_retirement(name).await?;
        if let Some(live) = live {
            self.stop_running(&live, &by.label());
        }
        for digest in unused {
            if let Err(e) = std::fs::remove_file(self.path(&digest)) {
                tracing::warn!(function = name, %digest, error = %e, "could not remove a purged component");
            }
        }
        let deleted = Deleted {
            function: name.into(),
            version,
            by: by.label(),
            principal: Some(by.clone()),
            forced: force,
            purged: purge,
            dropped: in_flight.queued + in_flight.retrying,
            running: in_flight.running,
        };
        self.record_change(name, FUNCTION_DELETED, serde_json::to_value(&deleted).unwrap_or_default()).await;
        Ok(deleted)
    }

    /// Takes a function out of service: no trigger, route or schedule
    /// reaches it any more, its worker dead-letters what it had queued, its
    /// backlog is dead-lettered here, and its warm instances are dropped.
    /// `by` (a principal's label) is named in each dead letter's reason.
    fn stop_running(self: &Arc<Self>, live: &Arc<Live>, by: &str) {
        let name = &live.version.name;
        self.live.write().unwrap_or_else(|e| e.into_inner()).remove(name);
        let reason = format!("{}: function {name} was deleted by {by}", DropReason::Cleared);
        let _ = live.deleted.set(reason.clone());
        live.retired.send_replace(true);
        live.instances.retire_all();
        let backlog: Vec<EventId> = std::mem::take(&mut *live.backlog.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .map(|e| e.0)
            .collect();
        if !backlog.is_empty() {
            let (functions, live) = (self.clone(), live.clone());
            self.busy.spawn(async move { functions.dead_letter_ids(live, backlog, reason).await });
        }
    }

    /// Dead-letters events by id (read back from the recorder); one gone
    /// from it meanwhile needs no outcome.
    pub(super) async fn dead_letter_ids(self: Arc<Self>, live: Arc<Live>, ids: Vec<EventId>, reason: String) {
        for id in ids {
            match self.pipeline.store().get(id).await {
                Ok(Some(recorded)) => self.dead_letter(&live, &recorded, &reason).await,
                _ => self.position.acks().ack(id),
            }
        }
    }

    /// When the live alias last moved to the version live now (a deploy,
    /// promote or rollback); `None` if not live, or moved before the log.
    pub async fn live_since(&self, name: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, FunctionError> {
        let last = self.store.live_log(name).await?.pop();
        Ok(last.filter(|m| m.version.is_some()).map(|m| m.at))
    }

    /// What a live function has in hand; `None` if it is not live.
    pub fn in_flight(&self, name: &str) -> Option<InFlight> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).get(name).map(|live| InFlight::of(live))
    }
}

fn deleted(name: &str) -> FunctionError {
    FunctionError::Conflict(format!(
        "{name} is deleted: nothing is live to roll back from; `glassbox functions promote {name} VERSION` makes \
         one of its versions live again"
    ))
}

#[cfg(test)]
mod tests {
    use super::InFlight;

    #[test]
    fn work_in_hand_is_named_part_by_part() {
        let in_flight = InFlight { queued: 12, running: 2, ..InFlight::default() };
        assert_eq!(in_flight.words(), "12 queued, 2 running");
        assert!(!in_flight.is_empty());
        assert!(InFlight::default().is_empty());
    }
}
