//! Budget windows rebuilt at start from the record, so a restart (or a
//! crash) mid-window does not hand a budget its whole limit again.
//!
//! The counters are not kept anywhere but memory while running; what they
//! count is in the recorder already: the `function.invoked` records (ran,
//! CPU time, cost; first runs that were not replays are the admitted
//! ones), the `function.dropped` records a budget refused (its target is
//! in the detail), the `device.message` events (messages admitted) and the
//! `mqtt.publish_refused` ones a message budget refused (each with the
//! refusals counted with it). Each budget counts what was recorded from
//! the start of its current window (or from when it was set, if later).
//! Thresholds the rebuilt use has passed are marked reached, not recorded
//! again.
//!
//! The work is bounded: at most [`REBUILD_READ_MAX`] records of each kind
//! are read, newest first (a page of 1,000 at a time). A window holding
//! more (a `30d` budget over millions of invocations) starts from the
//! newest ones read: its use is undercounted by what is older, and a
//! warning says so. Events admitted but not yet run when the process died
//! are run after the start (resumed) and not counted in the new window at
//! all (their admission was counted in memory only, their run not yet
//! recorded): a known gap, documented in docs/cost.md.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use glassbox_core::{
    BudgetTarget, DEVICE_MESSAGE, DropReason, Dropped, EventQuery, FUNCTION_DROPPED, FUNCTION_INVOKED, PUBLISH_REFUSED,
    PublishRefused, QUERY_LIMIT_MAX, RecordedEvent, TypePattern,
};
use glassbox_store::StoreError;
use serde::Deserialize;

use super::Functions;
use super::budgets::{Held, Who, now_seconds};

/// Records of each kind read at start, at most.
pub const REBUILD_READ_MAX: usize = 100_000;
/// Device budgets whose messages are read device by device at start;
/// beyond, every device's messages are read at once (within the cap).
const DEVICES_READ_APART_MAX: usize = 16;

/// What rebuilding a window needs of a `function.invoked` record.
#[derive(Deserialize)]
struct Ran {
    function: String,
    attempt: u32,
    #[serde(default)]
    replay_of: Option<String>,
    #[serde(default)]
    cpu_us: u64,
    #[serde(default)]
    cost: f64,
}

/// What one kind of record was read: how many, and whether the cap cut it short.
struct Read {
    records: usize,
    capped: bool,
}

impl Functions {
    /// Rebuilds every budget's current window from the record (see the
    /// module's docs). A failure to read leaves the windows as read so
    /// far, logged: the server starts all the same.
    pub(super) async fn rebuild_budget_windows(self: &Arc<Self>) {
        let now = now_seconds();
        let held = self.budgets.ledger().held();
        let from = |messages: bool| {
            held.iter().filter(|h| h.budget().on_messages() == messages).map(|h| h.counts_from(now)).min()
        };
        let mut groups = Groups::default();
        if let Some(since) = from(false) {
            self.rebuild_kind(FUNCTION_INVOKED, since, None, |f, e, g| f.count_invoked(e, now, g), &mut groups).await;
            self.rebuild_kind(FUNCTION_DROPPED, since, None, |f, e, _| f.count_dropped(e, now), &mut groups).await;
        }
        if let Some(since) = from(true) {
            // Without group budgets on messages, only the budgeted devices' messages are read
            // (device by device while they are few; all at once beyond).
            let devices: Vec<Option<String>> =
                held.iter().filter_map(|h| h.budget().target.device().map(|d| Some(d.to_string()))).collect();
            let devices = match self.budgets.ledger().on_messages().1 || devices.len() > DEVICES_READ_APART_MAX {
                true => vec![None],
                false => devices,
            };
            for device in devices {
                let count = |f: &Functions, e: &RecordedEvent, g: &mut Groups| f.count_message(e, now, g);
                self.rebuild_kind(DEVICE_MESSAGE, since, device.clone(), count, &mut groups).await;
                let refused = |f: &Functions, e: &RecordedEvent, _: &mut Groups| f.count_refused_message(e, now);
                self.rebuild_kind(PUBLISH_REFUSED, since, device, refused, &mut groups).await;
            }
        }
        held.iter().for_each(|h| h.mark_reached(now));
    }

    /// Reads the records of type `ty` since `since` (of `device`), newest
    /// first, up to [`REBUILD_READ_MAX`], counting each with `count`.
    async fn rebuild_kind(
        self: &Arc<Self>,
        ty: &str,
        since: u64,
        device: Option<String>,
        count: impl Fn(&Functions, &RecordedEvent, &mut Groups),
        groups: &mut Groups,
    ) {
        let since_at = DateTime::<Utc>::from_timestamp(since as i64, 0).unwrap_or_default();
        let query = EventQuery {
            ty: Some(TypePattern::parse(ty)),
            device,
            since: Some(since_at),
            limit: QUERY_LIMIT_MAX,
            ..EventQuery::default()
        };
        match self.read_back(query, groups, count).await {
            Ok(Read { capped: true, records }) => tracing::warn!(
                ty,
                records,
                "budget windows rebuilt from the newest {REBUILD_READ_MAX} records only; older ones in the window are not counted"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(ty, error = %e, "could not read budget windows back; they count from what was read")
            }
        }
    }

    async fn read_back(
        self: &Arc<Self>,
        mut query: EventQuery,
        groups: &mut Groups,
        count: impl Fn(&Functions, &RecordedEvent, &mut Groups),
    ) -> Result<Read, StoreError> {
        let mut records = 0;
        loop {
            let page = self.pipeline.store().query(&query).await?;
            groups.look_up(self, &page.events).await;
            for event in &page.events {
                count(self, event, groups);
            }
            records += page.events.len();
            match page.next_cursor {
                Some(cursor) if records < REBUILD_READ_MAX => query.cursor = Some(cursor),
                Some(_) => return Ok(Read { records, capped: true }),
                None => return Ok(Read { records, capped: false }),
            }
        }
    }

    /// A `function.invoked` record: ran, its CPU time and cost; admitted if a first run.
    fn count_invoked(&self, recorded: &RecordedEvent, now: u64, groups: &mut Groups) {
        let Ok(ran) = recorded.payload::<Ran>() else { return };
        let event = &recorded.event;
        let group = groups.of(event.device.as_deref());
        let who = Who { function: &ran.function, feature: event.feature.as_deref(), group };
        for held in self.budgets.ledger().applying(&who) {
            counted(&held, recorded, now, |w| {
                w.ran += 1;
                w.cpu_us = w.cpu_us.saturating_add(ran.cpu_us);
                w.cost += ran.cost;
                w.admitted += u64::from(ran.attempt <= 1 && ran.replay_of.is_none());
            });
        }
    }

    /// A `function.dropped` record a budget refused: counted by that budget.
    fn count_dropped(&self, recorded: &RecordedEvent, now: u64) {
        let Ok(dropped) = recorded.payload::<Dropped>() else { return };
        if dropped.reason != DropReason::BudgetExceeded {
            return;
        }
        if let Some(held) = refused_by(&self.budgets, &dropped.detail) {
            counted(&held, recorded, now, |w| w.refused += 1);
        }
    }

    /// A `device.message`: admitted by its device's and its group's message budgets.
    fn count_message(&self, recorded: &RecordedEvent, now: u64, groups: &mut Groups) {
        let Some(device) = recorded.event.device.as_deref() else { return };
        let group = groups.of(Some(device));
        for held in self.budgets.ledger().applying_messages(device, group) {
            counted(&held, recorded, now, |w| w.admitted += 1);
        }
    }

    /// An `mqtt.publish_refused` a message budget refused, with those counted with it.
    fn count_refused_message(&self, recorded: &RecordedEvent, now: u64) {
        let Ok(refused) = recorded.payload::<PublishRefused>() else { return };
        if refused.reason != DropReason::BudgetExceeded {
            return;
        }
        if let Some(held) = refused_by(&self.budgets, &refused.detail) {
            counted(&held, recorded, now, |w| w.refused += 1 + refused.unrecorded);
        }
    }
}

/// Counts `recorded` into `held`'s window when it falls in it.
fn counted(held: &Held, recorded: &RecordedEvent, now: u64, count: impl FnOnce(&mut super::budgets::Window)) {
    let at = DateTime::<Utc>::from(recorded.event.id.datetime()).timestamp();
    if u64::try_from(at).is_ok_and(|at| at >= held.counts_from(now)) {
        count(&mut held.lock(now));
    }
}

/// The budget a refusal's detail names (`[budget_exceeded: ]budget TARGET of …`).
fn refused_by(budgets: &super::Budgets, detail: &str) -> Option<Arc<Held>> {
    // A dropped invocation's detail starts with the reason; a refused message's does not.
    let prefix = format!("{}: ", DropReason::BudgetExceeded);
    let rest = detail.strip_prefix(&prefix).unwrap_or(detail).strip_prefix("budget ")?;
    let target: BudgetTarget = rest.split_once(" of ")?.0.parse().ok()?;
    budgets.ledger().find(&target)
}

/// Devices' groups, looked up once each while rebuilding (only when a
/// group budget is set).
#[derive(Default)]
struct Groups(HashMap<String, Option<String>>);

impl Groups {
    /// Looks up the groups of the devices of `events` not known yet.
    async fn look_up(&mut self, functions: &Arc<Functions>, events: &[RecordedEvent]) {
        if !functions.budgets.ledger().any_group() {
            return;
        }
        for device in events.iter().filter_map(|e| e.event.device.as_deref()) {
            if self.0.contains_key(device) {
                continue;
            }
            let group = functions.control.device_group(device).await.unwrap_or_else(|e| {
                tracing::warn!(device, error = %e, "could not read a device's group while rebuilding budgets");
                None
            });
            functions.budgets.remember_group(device, group.clone());
            self.0.insert(device.to_string(), group);
        }
    }

    fn of(&self, device: Option<&str>) -> Option<&str> {
        self.0.get(device?)?.as_deref()
    }
}
