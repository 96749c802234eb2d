//! Little-used functions: which look idle ([`Functions::idle`]: no
//! invocation in a window), taking one out of service while keeping
//! everything it has ([`Functions::retire`]) and bringing it back as it
//! was ([`Functions::restore`]).
//!
//! A retired function stays live in the store (its versions, live alias,
//! component and key-value data are kept) but is not loaded: no trigger,
//! route or schedule reaches it, and its warm instances are freed. The
//! names of retired functions are a setting ([`RETIRED_KEY`]), read at
//! start, so a retirement survives a restart. A deploy, promote, rollback
//! or delete of a retired function ends its retirement (the new change is
//! the record). Retire and restore are written, then recorded
//! (`function.retired`, `function.restored`) with the principal.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use glassbox_core::{
    EventQuery, FUNCTION_INVOKED, FUNCTION_RESTORED, FUNCTION_RETIRED, Principal, Retired, TypePattern,
};
use glassbox_store::{FunctionVersion, StoreError};
use serde::{Deserialize, Serialize};

use super::lifecycle::InFlight;
use super::{FunctionError, Functions, spec};

/// The setting holding the retired functions' names (a JSON array).
pub const RETIRED_KEY: &str = "functions.retired";
/// Invocations counted per function in a window at most; more read as this many and `counted_all: false`.
const INVOCATIONS_COUNTED_MAX: usize = 10_000;

/// A function as `functions idle` sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleView {
    pub name: String,
    pub version: u32,
    /// `live` or `retired`.
    pub state: String,
    /// Its last invocation, whenever it was; none: never (or removed by retention).
    pub last_invocation: Option<DateTime<Utc>>,
    /// Invocations in the window.
    pub invocations: u64,
    /// False when there were more than could be counted (`invocations` is then a floor).
    pub counted_all: bool,
    pub triggers: Vec<String>,
    pub holds: Holds,
    /// No invocation in the window.
    pub idle: bool,
    /// Why it looks idle (or not), in words.
    pub why: String,
}

/// What a function holds while deployed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holds {
    /// Its live version's component, on disk (the compiled code is cached beside it).
    pub component_bytes: u64,
    /// Warm instances kept in memory now.
    pub warm_instances: usize,
    /// Its `http:` routes.
    pub routes: Vec<String>,
    /// Its key-value data is kept whatever its state (not counted here).
    pub kv: String,
}

impl Functions {
    /// The retired functions' names, as saved.
    pub(super) async fn load_retired(
        settings: &dyn glassbox_store::SettingStore,
    ) -> Result<BTreeSet<String>, StoreError> {
        let saved = settings.setting(RETIRED_KEY).await?;
        Ok(saved.and_then(|text| serde_json::from_str(&text).ok()).unwrap_or_default())
    }

    async fn save_retired(&self, names: &BTreeSet<String>) -> Result<(), StoreError> {
        let text = serde_json::to_string(names).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.settings.put_setting(RETIRED_KEY, &text).await
    }

    /// Whether `name` is retired.
    pub fn is_retired(&self, name: &str) -> bool {
        self.retired.lock().unwrap_or_else(|e| e.into_inner()).contains(name)
    }

    /// Ends a retirement without a record of its own: a deploy, promote,
    /// rollback or delete of the function is the record.
    pub(super) async fn end_retirement(&self, name: &str) -> Result<(), StoreError> {
        if !self.is_retired(name) {
            return Ok(());
        }
        let mut names = self.retired.lock().unwrap_or_else(|e| e.into_inner()).clone();
        names.remove(name);
        self.save_retired(&names).await?;
        *self.retired.lock().unwrap_or_else(|e| e.into_inner()) = names;
        Ok(())
    }

    /// Takes a live function out of service, keeping its versions, code and
    /// data: its triggers, routes and schedules stop reaching it and its warm
    /// instances are freed. Refused while it has work in hand.
    pub async fn retire(self: &Arc<Self>, name: &str, by: &Principal) -> Result<Retired, FunctionError> {
        let _changing = self.changing.lock().await;
        self.versions(name).await?;
        let Some(live) = self.live.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned() else {
            return Err(FunctionError::Conflict(match self.is_retired(name) {
                true => format!("{name} is retired already; `glassbox functions restore {name}` brings it back"),
                false => format!("{name} is deleted: nothing is live to retire"),
            }));
        };
        let in_flight = InFlight::of(&live);
        if !in_flight.is_empty() {
            return Err(FunctionError::Conflict(format!(
                "{name} has work in hand ({}): retire it once it is idle",
                in_flight.words()
            )));
        }
        let mut names = self.retired.lock().unwrap_or_else(|e| e.into_inner()).clone();
        names.insert(name.to_string());
        // Saved first: if it cannot be kept, the function keeps running.
        self.save_retired(&names).await?;
        *self.retired.lock().unwrap_or_else(|e| e.into_inner()) = names;
        self.live.write().unwrap_or_else(|e| e.into_inner()).remove(name);
        // As when replaced: its worker runs anything queued meanwhile, then stops.
        live.retired.send_replace(true);
        let freed = live.instances.retire_all();
        let retired = self.retirement(&live.version, &live.spec, Some(freed), by);
        self.record_change(name, FUNCTION_RETIRED, serde_json::to_value(&retired).unwrap_or_default()).await;
        Ok(retired)
    }

    /// Brings a retired function back as it was: its live version loaded,
    /// its triggers, routes and schedules reaching it again.
    pub async fn restore(self: &Arc<Self>, name: &str, by: &Principal) -> Result<Retired, FunctionError> {
        let _changing = self.changing.lock().await;
        let versions = self.versions(name).await?;
        if !self.is_retired(name) {
            return Err(FunctionError::Conflict(format!("{name} is not retired; nothing to restore")));
        }
        let version = versions.iter().find(|v| v.live).cloned().ok_or_else(|| {
            FunctionError::Conflict(format!("{name} is deleted: `glassbox functions promote {name} VERSION` instead"))
        })?;
        let spec: spec::Spec =
            serde_json::from_str(&version.spec).map_err(|e| FunctionError::Invalid(e.to_string()))?;
        // A route another function took meanwhile is refused, naming it.
        self.check_routes(name, &spec.validate().map_err(FunctionError::Invalid)?)?;
        let prepared = self.prepare(version.clone(), None).await?;
        self.end_retirement(name).await?;
        self.install(prepared);
        let restored = self.retirement(&version, &spec, None, by);
        self.record_change(name, FUNCTION_RESTORED, serde_json::to_value(&restored).unwrap_or_default()).await;
        Ok(restored)
    }

    fn retirement(
        &self,
        version: &FunctionVersion,
        spec: &spec::Spec,
        freed: Option<usize>,
        by: &Principal,
    ) -> Retired {
        Retired {
            function: version.name.clone(),
            version: version.version,
            triggers: spec.triggers.clone(),
            instances_freed: freed.map(|n| n as u64),
            by: by.label(),
            principal: by.clone(),
        }
    }

    /// Every deployed function (live or retired) with its invocations
    /// since `since` and what it holds; idle ones (none in the window) first.
    pub async fn idle(&self, since: DateTime<Utc>) -> Result<Vec<IdleView>, FunctionError> {
        let mut views = Vec::new();
        for version in self.store.live_versions().await? {
            views.push(self.idle_view(version, since).await?);
        }
        views.sort_by(|a, b| b.idle.cmp(&a.idle).then(a.last_invocation.cmp(&b.last_invocation)));
        Ok(views)
    }

    async fn idle_view(&self, version: FunctionVersion, since: DateTime<Utc>) -> Result<IdleView, FunctionError> {
        let name = version.name.clone();
        let invoked = |since: Option<DateTime<Utc>>, limit: usize| EventQuery {
            ty: Some(TypePattern::parse(FUNCTION_INVOKED)),
            source: Some(format!("glassbox/functions/{name}")),
            since,
            limit,
            ..EventQuery::default()
        };
        let store = self.pipeline.store();
        let last = store.query(&invoked(None, 1)).await?.events.first().map(|e| e.event.time);
        let (invocations, counted_all) = self.count(invoked(Some(since), glassbox_core::QUERY_LIMIT_MAX)).await?;
        let spec: spec::Spec =
            serde_json::from_str(&version.spec).map_err(|e| FunctionError::Invalid(e.to_string()))?;
        let warm = self.live.read().unwrap_or_else(|e| e.into_inner()).get(&name).map_or(0, |l| l.instances.idle());
        let component_bytes = std::fs::metadata(self.path(&version.digest)).map_or(0, |m| m.len());
        let routes = spec.triggers.iter().filter(|t| t.starts_with("http:")).cloned().collect();
        let idle = invocations == 0;
        let why = why(idle, last, since, version.deployed_at);
        Ok(IdleView {
            state: if self.is_retired(&name) { "retired" } else { "live" }.into(),
            name,
            version: version.version,
            last_invocation: last,
            invocations,
            counted_all,
            triggers: spec.triggers,
            holds: Holds { component_bytes, warm_instances: warm, routes, kv: "kept".into() },
            idle,
            why,
        })
    }

    /// Counts what `query` matches, a page at a time, up to [`INVOCATIONS_COUNTED_MAX`].
    async fn count(&self, mut query: EventQuery) -> Result<(u64, bool), StoreError> {
        let mut counted = 0usize;
        loop {
            let page = self.pipeline.store().query(&query).await?;
            counted += page.events.len();
            match page.next_cursor {
                Some(cursor) if counted < INVOCATIONS_COUNTED_MAX => query.cursor = Some(cursor),
                Some(_) => return Ok((counted as u64, false)),
                None => return Ok((counted as u64, true)),
            }
        }
    }
}

/// Why a function looks idle (or does not), in words.
fn why(idle: bool, last: Option<DateTime<Utc>>, since: DateTime<Utc>, deployed: DateTime<Utc>) -> String {
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match (idle, last) {
        (false, _) => "invoked in the window".into(),
        (true, None) => format!("never invoked since its deploy at {}", at(deployed)),
        (true, Some(last)) => format!("no invocation since {}; the last was at {}", at(since), at(last)),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn why_says_never_or_when_last() {
        let t = |h| Utc.with_ymd_and_hms(2026, 12, 5, h, 0, 0).unwrap();
        assert_eq!(why(true, None, t(2), t(1)), "never invoked since its deploy at 2026-12-05T01:00:00Z");
        assert!(why(true, Some(t(0)), t(2), t(0)).ends_with("the last was at 2026-12-05T00:00:00Z"));
        assert_eq!(why(false, Some(t(3)), t(2), t(0)), "invoked in the window");
    }
}
