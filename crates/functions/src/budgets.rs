//! Budgets, enforced at dispatch: what a function, a feature or a device
//! group may use per window, checked in memory for every event a trigger
//! matches, before it is queued.
//!
//! Each budget holds one window of counters (fixed windows aligned to the
//! epoch; a new window starts empty). Invocations are counted when an
//! event is admitted, so a burst stops at the limit; CPU milliseconds and
//! cost are counted when each invocation's record is written (the metering
//! of `record.rs`), so a burst may pass a CPU or cost limit by what was in
//! flight. A check takes a read lock, up to three map look-ups and a mutex
//! per applying budget: no store read (`glassbox bench functions
//! --budget` measures it).
//!
//! On use-up, `stop` refuses (the dispatcher records `function.dropped`,
//! reason `budget_exceeded`), `throttle` holds the event in a bounded
//! queue ([`THROTTLED_MAX`]) until a window has room (full: dropped the
//! same way) and `alert` refuses nothing. Every budget records
//! `budget.threshold_reached` once per window at each of its percentages.
//!
//! Budgets are kept in the [`BudgetStore`] (read at start, written on a
//! change); window counters are not: at start each window is rebuilt from
//! the record (`windows.rs`). Message budgets (`device:ID`, `group:NAME
//! --messages`) are asked by the gateway at each PUBLISH through
//! [`MessageGate`] (the `glassbox_link::MessageBudgets` port).
//! Setting and deleting are written, then recorded (`budget.set`,
//! `budget.deleted`) with the principal (decision 0015).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use glassbox_control::Changed;
use glassbox_core::budget::{Action, Measure};
use glassbox_core::{
    Budget, BudgetDeleted, BudgetSet, BudgetTarget, Draft, DropReason, EventId, Principal, ThresholdReached,
};
use glassbox_pipeline::Pipeline;
use glassbox_store::{BudgetRecord, BudgetStore, StoreError};

/// Why a budget change or look-up was refused.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("{0}")]
    Invalid(String),
    #[error("no budget on {0}; `glassbox budgets list` shows the budgets set")]
    Unknown(BudgetTarget),
    #[error("{BUDGETS_MAX} budgets are set, the most kept; delete one first (`glassbox budgets delete`)")]
    Full,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Budgets kept at most; beyond, setting a new one is refused (409).
pub const BUDGETS_MAX: usize = 10_000;
/// Events held by `throttle` budgets, all together; beyond, each is dropped
/// (`budget_exceeded`).
pub const THROTTLED_MAX: usize = 10_000;
/// Devices whose group is remembered for `group:` budgets; when full, the
/// memory is cleared and refilled.
const GROUPS_CACHED_MAX: usize = 100_000;

/// One window's counters of a budget.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Window {
    /// Its start, Unix seconds.
    pub start: u64,
    pub admitted: u64,
    pub ran: u64,
    pub cpu_us: u64,
    pub cost: f64,
    /// Events refused (stop) or held (throttle) in it.
    pub refused: u64,
    /// Which of the budget's thresholds were recorded, by index.
    reached: u16,
}

impl Window {
    /// Use in the budget's measure.
    fn used(&self, measure: Measure) -> f64 {
        match measure {
            Measure::CpuMs => self.cpu_us as f64 / 1000.0,
            Measure::Cost => self.cost,
            Measure::Invocations | Measure::Messages => self.admitted as f64,
        }
    }
}

/// A budget and its current window.
pub(crate) struct Held {
    pub record: BudgetRecord,
    window: Mutex<Window>,
}

impl Held {
    fn new(record: BudgetRecord) -> Self {
        Self { record, window: Mutex::new(Window::default()) }
    }

    pub(crate) fn budget(&self) -> &Budget {
        &self.record.budget
    }

    /// From when (Unix seconds) what is recorded counts in the window
    /// holding `now`: its start, or when the budget was set if later (a
    /// budget set starts a fresh window).
    pub(crate) fn counts_from(&self, now: u64) -> u64 {
        let set_at = u64::try_from(self.record.set_at.timestamp()).unwrap_or_default();
        self.budget().per.start_of(now).max(set_at)
    }

    /// Marks the thresholds the window's use has passed as reached,
    /// recording nothing: they were recorded when passed (a rebuilt window).
    pub(crate) fn mark_reached(&self, now: u64) {
        let mut window = self.lock(now);
        self.reached(&mut window);
    }

    /// The window at `now`, rolled over (emptied) if `now` is past it.
    pub(crate) fn lock(&self, now: u64) -> std::sync::MutexGuard<'_, Window> {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let start = self.budget().per.start_of(now);
        if window.start != start {
            *window = Window { start, ..Window::default() };
        }
        window
    }

    /// Whether one more invocation would pass the limit (invocations), or
    /// the limit is already used (CPU, cost).
    fn exhausted(&self, window: &Window) -> bool {
        let limit = &self.budget().limit;
        match counted_at_admission(limit.measure) {
            true => window.admitted as f64 + 1.0 > limit.amount,
            false => window.used(limit.measure) >= limit.amount,
        }
    }

    /// The thresholds newly reached in `window`, marked so each is recorded once.
    fn reached(&self, window: &mut Window) -> Vec<ThresholdReached> {
        let budget = self.budget();
        let used = window.used(budget.limit.measure);
        let mut out = Vec::new();
        for (i, percent) in budget.at.iter().enumerate() {
            let bit = 1u16 << i;
            if window.reached & bit == 0 && used * 100.0 >= f64::from(*percent) * budget.limit.amount {
                window.reached |= bit;
                out.push(ThresholdReached {
                    target: budget.target.clone(),
                    percent: *percent,
                    measure: budget.limit.measure,
                    used,
                    limit: budget.limit.amount,
                    per: budget.per,
                    action: budget.action,
                    window: at(window.start),
                });
            }
        }
        out
    }

    /// Why an event was refused: the budget, its use and when it rolls over.
    fn refusal(&self, window: &Window) -> String {
        let b = self.budget();
        let end = at(window.start + b.per.duration().as_secs());
        format!(
            "{}: budget {} of {} {} per {} used ({}), until {}",
            DropReason::BudgetExceeded,
            b.target,
            b.limit.amount,
            b.limit.measure.as_str(),
            b.per,
            window.used(b.limit.measure),
            end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

/// Whether a measure is counted when an event (a message) is admitted,
/// rather than when an invocation ends.
fn counted_at_admission(measure: Measure) -> bool {
    matches!(measure, Measure::Invocations | Measure::Messages)
}

fn at(unix_seconds: u64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(unix_seconds as i64, 0).unwrap_or_default()
}

/// Seconds since the epoch, now.
pub(crate) fn now_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// The budgets held, by the kind of target.
#[derive(Default)]
struct Targets {
    functions: HashMap<String, Arc<Held>>,
    features: HashMap<String, Arc<Held>>,
    groups: HashMap<String, Arc<Held>>,
    devices: HashMap<String, Arc<Held>>,
    /// Budgets on messages (device ones and group ones), and the group
    /// ones among them: the gateway's check skips what none apply to.
    on_messages: usize,
    groups_on_messages: usize,
}

impl Targets {
    fn map<'t>(&mut self, target: &'t BudgetTarget) -> (&mut HashMap<String, Arc<Held>>, &'t str) {
        match target {
            BudgetTarget::Function(n) => (&mut self.functions, n),
            BudgetTarget::Feature(n) => (&mut self.features, n),
            BudgetTarget::Group(n) => (&mut self.groups, n),
            BudgetTarget::Device(n) => (&mut self.devices, n),
        }
    }

    /// Holds a budget, replacing the one on its target.
    fn insert(&mut self, held: Arc<Held>) {
        let target = held.budget().target.clone();
        self.remove(&target);
        self.count(&held, 1);
        let (map, name) = self.map(&target);
        map.insert(name.to_string(), held);
    }

    /// Lets go of the budget on `target`, if one is held.
    fn remove(&mut self, target: &BudgetTarget) -> Option<Arc<Held>> {
        let (map, name) = self.map(target);
        let removed = map.remove(name)?;
        self.count(&removed, -1);
        Some(removed)
    }

    fn count(&mut self, held: &Held, by: isize) {
        let budget = held.budget();
        if budget.on_messages() {
            self.on_messages = self.on_messages.saturating_add_signed(by);
            if matches!(budget.target, BudgetTarget::Group(_)) {
                self.groups_on_messages = self.groups_on_messages.saturating_add_signed(by);
            }
        }
    }

    fn get(&self, target: &BudgetTarget) -> Option<&Arc<Held>> {
        match target {
            BudgetTarget::Function(n) => self.functions.get(n),
            BudgetTarget::Feature(n) => self.features.get(n),
            BudgetTarget::Group(n) => self.groups.get(n),
            BudgetTarget::Device(n) => self.devices.get(n),
        }
    }

    fn len(&self) -> usize {
        self.functions.len() + self.features.len() + self.groups.len() + self.devices.len()
    }

    fn all(&self) -> impl Iterator<Item = &Arc<Held>> {
        self.functions.values().chain(self.features.values()).chain(self.groups.values()).chain(self.devices.values())
    }

    /// The budgets that apply to an invocation: its function's, its
    /// feature's, its device group's (at most one each; a group budget on
    /// messages counts no invocation).
    fn applying<'a>(&'a self, who: &Who<'_>) -> [Option<&'a Arc<Held>>; 3] {
        [
            self.functions.get(who.function),
            who.feature.and_then(|f| self.features.get(f)),
            who.group.and_then(|g| self.groups.get(g)).filter(|h| !h.budget().on_messages()),
        ]
    }

    /// The budgets that apply to a message `device` publishes: its own
    /// and its group's, when on messages.
    fn applying_messages<'a>(&'a self, device: &str, group: Option<&str>) -> [Option<&'a Arc<Held>>; 2] {
        [self.devices.get(device), group.and_then(|g| self.groups.get(g)).filter(|h| h.budget().on_messages())]
    }
}

/// What an invocation is counted against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Who<'a> {
    pub function: &'a str,
    pub feature: Option<&'a str>,
    pub group: Option<&'a str>,
}

/// The verdict on an event at dispatch.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Run it; record these thresholds reached.
    Run(Vec<ThresholdReached>),
    /// A `stop` budget is used up: drop it, for this reason.
    Stop(String),
    /// A `throttle` budget is used up: hold it, for this reason.
    Hold(String),
}

/// An event a `throttle` budget holds, with what it is counted against.
pub(crate) struct Throttled {
    pub event: EventId,
    pub function: String,
    pub feature: Option<String>,
    pub group: Option<String>,
}

/// A budget with its current window's use, as answered.
#[derive(Debug, Clone)]
pub struct Usage {
    pub record: BudgetRecord,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// Admitted to run in the window.
    pub admitted: u64,
    /// Ran to an outcome in the window.
    pub ran: u64,
    pub cpu_ms: f64,
    pub cost: f64,
    /// Use in the budget's measure, and as a percentage of its limit.
    pub used: f64,
    pub percent: f64,
    /// Events dropped (stop) or held (throttle) in the window.
    pub refused: u64,
    /// When the limit is reached at the window's rate so far; none when
    /// it is not reached within the window (or already was).
    pub exhausted_at: Option<DateTime<Utc>>,
}

/// The budgets held and their windows: the check itself, without I/O.
#[derive(Default)]
pub(crate) struct Ledger {
    targets: RwLock<Targets>,
}

pub struct Budgets {
    store: Arc<dyn BudgetStore>,
    pipeline: Arc<Pipeline>,
    ledger: Ledger,
    /// Sets and deletes one at a time, so the store and memory agree.
    changing: tokio::sync::Mutex<()>,
    /// Events `throttle` budgets hold, oldest first (bounded by [`THROTTLED_MAX`]).
    pub(crate) throttled: Mutex<VecDeque<Throttled>>,
    /// Devices' groups, for `group:` budgets (bounded by [`GROUPS_CACHED_MAX`]).
    groups: Mutex<HashMap<String, Option<String>>>,
}

impl Budgets {
    /// The budgets kept in `store`, held for dispatch.
    pub async fn load(store: Arc<dyn BudgetStore>, pipeline: Arc<Pipeline>) -> Result<Self, StoreError> {
        let mut targets = Targets::default();
        for record in store.budgets().await? {
            targets.insert(Arc::new(Held::new(record)));
        }
        Ok(Self {
            store,
            pipeline,
            ledger: Ledger { targets: RwLock::new(targets) },
            changing: tokio::sync::Mutex::new(()),
            throttled: Mutex::default(),
            groups: Mutex::default(),
        })
    }

    /// Sets (or replaces) the budget on its target: written, then recorded
    /// as `budget.set` with `by`. A replaced budget's window starts afresh.
    pub async fn set(&self, budget: Budget, by: &Principal) -> Result<Changed<Usage>, BudgetError> {
        budget.validate().map_err(|e| BudgetError::Invalid(e.to_string()))?;
        let _changing = self.changing.lock().await;
        let target = budget.target.clone();
        let known = self.ledger.targets.read().unwrap_or_else(|e| e.into_inner()).get(&target).is_some();
        if !known && self.ledger.targets.read().unwrap_or_else(|e| e.into_inner()).len() >= BUDGETS_MAX {
            return Err(BudgetError::Full);
        }
        let record = BudgetRecord { budget: budget.clone(), set_at: Utc::now(), set_by: by.label() };
        let previous = self.store.put_budget(&record).await?;
        let held = Arc::new(Held::new(record));
        self.ledger.targets.write().unwrap_or_else(|e| e.into_inner()).insert(held.clone());
        let data = BudgetSet { actor: by.label(), principal: by.clone(), budget, previous: previous.map(|p| p.budget) };
        let unrecorded = self.record(&target, Draft::payload("glassbox/budgets", &data)).await;
        Ok(Changed { value: usage(&held, now_seconds()), unrecorded })
    }

    /// Deletes the budget on `target`: written, then recorded as
    /// `budget.deleted` with `by`. Events it held are let go to run.
    pub async fn delete(&self, target: &BudgetTarget, by: &Principal) -> Result<Changed<Usage>, BudgetError> {
        let _changing = self.changing.lock().await;
        let Some(held) = self.ledger.targets.read().unwrap_or_else(|e| e.into_inner()).get(target).cloned() else {
            return Err(unknown(target));
        };
        self.store.delete_budget(target).await?;
        self.ledger.targets.write().unwrap_or_else(|e| e.into_inner()).remove(target);
        let data = BudgetDeleted { actor: by.label(), principal: by.clone(), budget: held.budget().clone() };
        let unrecorded = self.record(target, Draft::payload("glassbox/budgets", &data)).await;
        Ok(Changed { value: usage(&held, now_seconds()), unrecorded })
    }

    async fn record(&self, target: &BudgetTarget, draft: Draft) -> Option<String> {
        let draft = Draft { subject: Some(target.to_string()), ..draft };
        glassbox_control::record_change(&self.pipeline, draft, "api").await
    }

    /// Every budget with its window's use, by target.
    pub fn list(&self) -> Vec<Usage> {
        self.ledger.list()
    }

    /// One budget with its window's use.
    pub fn get(&self, target: &BudgetTarget) -> Result<Usage, BudgetError> {
        self.ledger.get(target)
    }

    /// The check at dispatch (see [`Ledger::admit`]).
    pub(crate) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Holds an event for a `throttle` budget; gives it back when the
    /// queue is full (the caller drops it).
    pub(crate) fn hold(&self, held: Throttled) -> Result<(), Throttled> {
        let mut queue = self.throttled.lock().unwrap_or_else(|e| e.into_inner());
        match queue.len() < THROTTLED_MAX {
            true => {
                queue.push_back(held);
                Ok(())
            }
            false => Err(held),
        }
    }

    /// The group of `device` if known; unknown devices are looked up in
    /// the background (`lookup`), and counted without a group meanwhile.
    pub(crate) fn group_of(&self, device: &str) -> Option<Option<String>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner()).get(device).cloned()
    }

    /// Remembers a device's group (none: it has none).
    pub(crate) fn remember_group(&self, device: &str, group: Option<String>) {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if groups.len() >= GROUPS_CACHED_MAX {
            groups.clear();
        }
        groups.insert(device.to_string(), group);
    }

    /// Forgets a device's group (it changed, or the device is gone).
    pub(crate) fn forget_group(&self, device: &str) {
        self.groups.lock().unwrap_or_else(|e| e.into_inner()).remove(device);
    }

    /// Records the thresholds reached (in the background of the caller).
    pub(crate) async fn record_reached(&self, reached: Vec<ThresholdReached>) {
        if reached.is_empty() {
            return;
        }
        let drafts = reached
            .iter()
            .map(|r| Draft { subject: Some(r.target.to_string()), ..Draft::payload("glassbox/budgets", r) })
            .collect();
        if let Err(e) = self.pipeline.ingest(drafts, "platform").await {
            tracing::error!(error = %e, "could not record a budget threshold reached");
        }
    }
}

impl Ledger {
    /// Every budget with its window's use, by target.
    pub(crate) fn list(&self) -> Vec<Usage> {
        let now = now_seconds();
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<Usage> = targets.all().map(|h| usage(h, now)).collect();
        all.sort_by(|a, b| a.record.budget.target.cmp(&b.record.budget.target));
        all
    }

    /// One budget with its window's use.
    pub(crate) fn get(&self, target: &BudgetTarget) -> Result<Usage, BudgetError> {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        targets.get(target).map(|h| usage(h, now_seconds())).ok_or_else(|| unknown(target))
    }

    /// Whether any budget is set (dispatch skips the check when none is).
    pub(crate) fn any(&self) -> bool {
        self.targets.read().unwrap_or_else(|e| e.into_inner()).len() > 0
    }

    /// Whether any `group:` budget is set.
    pub(crate) fn any_group(&self) -> bool {
        !self.targets.read().unwrap_or_else(|e| e.into_inner()).groups.is_empty()
    }

    /// The verdict on one more invocation for `who` at `now` (Unix
    /// seconds): counted as admitted in every applying budget when run.
    /// `count_refusal`: false when asking again about an event already
    /// held, so it is not counted twice.
    pub(crate) fn admit(&self, who: &Who<'_>, now: u64, count_refusal: bool) -> Verdict {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        decide(targets.applying(who), now, count_refusal)
    }

    /// Whether any budget counts messages (the gateway's check skips
    /// everything else when none does), and any group one among them.
    pub(crate) fn on_messages(&self) -> (bool, bool) {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        (targets.on_messages > 0, targets.groups_on_messages > 0)
    }

    /// The verdict on one more message from `device` (of `group`) at
    /// `now`: counted in its device's and its group's message budgets
    /// when admitted.
    pub(crate) fn admit_message(&self, device: &str, group: Option<&str>, now: u64) -> Verdict {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        decide(targets.applying_messages(device, group), now, true)
    }

    /// The budgets held now, for rebuilding their windows.
    pub(crate) fn held(&self) -> Vec<Arc<Held>> {
        self.targets.read().unwrap_or_else(|e| e.into_inner()).all().cloned().collect()
    }

    /// The budgets applying to an invocation of `who`, for rebuilding.
    pub(crate) fn applying(&self, who: &Who<'_>) -> Vec<Arc<Held>> {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        targets.applying(who).into_iter().flatten().cloned().collect()
    }

    /// The message budgets applying to `device` (of `group`), for rebuilding.
    pub(crate) fn applying_messages(&self, device: &str, group: Option<&str>) -> Vec<Arc<Held>> {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        targets.applying_messages(device, group).into_iter().flatten().cloned().collect()
    }

    /// The budget on `target`, for rebuilding.
    pub(crate) fn find(&self, target: &BudgetTarget) -> Option<Arc<Held>> {
        self.targets.read().unwrap_or_else(|e| e.into_inner()).get(target).cloned()
    }
}

/// The verdict of the `applying` budgets on one more event at `now`: all of
/// them count it when it is admitted, none when one refuses it.
fn decide<const N: usize>(applying: [Option<&Arc<Held>>; N], now: u64, count_refusal: bool) -> Verdict {
    // Locked in one order (function, feature, group; device, group): no two checks deadlock.
    let mut windows: [Option<(&Arc<Held>, std::sync::MutexGuard<'_, Window>)>; N] = std::array::from_fn(|_| None);
    for (slot, held) in windows.iter_mut().zip(applying) {
        *slot = held.map(|h| (h, h.lock(now)));
    }
    for (held, window) in windows.iter_mut().flatten() {
        let action = held.budget().action;
        if action != Action::Alert && held.exhausted(window) {
            window.refused += u64::from(count_refusal);
            return match action {
                Action::Throttle => Verdict::Hold(held.refusal(window)),
                _ => Verdict::Stop(held.refusal(window)),
            };
        }
    }
    let mut reached = Vec::new();
    for (held, window) in windows.iter_mut().flatten() {
        window.admitted += 1;
        if counted_at_admission(held.budget().limit.measure) {
            reached.extend(held.reached(window));
        }
    }
    Verdict::Run(reached)
}

impl Ledger {
    /// Counts an invocation that ran (its CPU time and cost) against the
    /// budgets applying to `who`; returns the thresholds it reached.
    pub(crate) fn ran(&self, who: &Who<'_>, cpu_us: u64, cost: f64, now: u64) -> Vec<ThresholdReached> {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        let mut reached = Vec::new();
        for held in targets.applying(who).into_iter().flatten() {
            let mut window = held.lock(now);
            window.ran += 1;
            window.cpu_us = window.cpu_us.saturating_add(cpu_us);
            window.cost += cost;
            if !counted_at_admission(held.budget().limit.measure) {
                reached.extend(held.reached(&mut window));
            }
        }
        reached
    }
}

/// The message budgets as the gateway asks them (`glassbox_link`): a read
/// lock and up to two map look-ups per PUBLISH, none when no budget counts
/// messages. A message a budget refuses is never recorded as a
/// `device.message`, so it triggers and costs nothing.
pub(crate) struct MessageGate(pub std::sync::Weak<super::Functions>);

impl glassbox_link::MessageBudgets for MessageGate {
    fn admit_message(&self, device: &str) -> glassbox_link::MessageVerdict {
        use glassbox_link::MessageVerdict;
        let Some(functions) = self.0.upgrade() else { return MessageVerdict::Admit };
        let ledger = functions.budgets.ledger();
        let (any, in_groups) = ledger.on_messages();
        if !any {
            return MessageVerdict::Admit;
        }
        let group = in_groups.then(|| functions.device_group(device)).flatten();
        match ledger.admit_message(device, group.as_deref(), now_seconds()) {
            Verdict::Run(reached) => {
                if !reached.is_empty() {
                    let budgets = functions.budgets.clone();
                    functions.busy.spawn(async move { budgets.record_reached(reached).await });
                }
                MessageVerdict::Admit
            }
            Verdict::Stop(reason) | Verdict::Hold(reason) => MessageVerdict::Refuse(reason),
        }
    }
}

/// The dispatcher's budget check alone, over budgets held in memory: what
/// `glassbox bench functions --budgets` measures.
pub struct BudgetCheck(Ledger);

impl BudgetCheck {
    pub fn new(budgets: Vec<Budget>) -> Self {
        let mut targets = Targets::default();
        for budget in budgets {
            let record = BudgetRecord { budget, set_at: Utc::now(), set_by: "bench".into() };
            targets.insert(Arc::new(Held::new(record)));
        }
        Self(Ledger { targets: RwLock::new(targets) })
    }

    /// One check as dispatch makes it (the clock read included): whether
    /// an invocation of `function` (of `feature`) may run now.
    pub fn check(&self, function: &str, feature: Option<&str>) -> bool {
        if !self.0.any() {
            return true;
        }
        let who = Who { function, feature, group: None };
        matches!(self.0.admit(&who, now_seconds(), true), Verdict::Run(_))
    }

    /// One message check as the gateway's makes it (the clock read
    /// included, no group budget): whether `device` may publish one more.
    pub fn check_message(&self, device: &str) -> bool {
        if !self.0.on_messages().0 {
            return true;
        }
        matches!(self.0.admit_message(device, None, now_seconds()), Verdict::Run(_))
    }
}

fn unknown(target: &BudgetTarget) -> BudgetError {
    BudgetError::Unknown(target.clone())
}

/// A budget's use in the window holding `now`.
fn usage(held: &Held, now: u64) -> Usage {
    let window = *held.lock(now);
    let budget = held.budget();
    let length = budget.per.duration().as_secs();
    let used = window.used(budget.limit.measure);
    let elapsed = now.saturating_sub(window.start).max(1) as f64;
    let left = budget.limit.amount - used;
    // At the window's rate so far: when the rest of the limit is used.
    let exhausted_at = (used > 0.0 && left > 0.0)
        .then(|| now as f64 + left / (used / elapsed))
        .filter(|t| *t < (window.start + length) as f64)
        .map(|t| at(t as u64));
    Usage {
        record: held.record.clone(),
        window_start: at(window.start),
        window_end: at(window.start + length),
        admitted: window.admitted,
        ran: window.ran,
        cpu_ms: window.cpu_us as f64 / 1000.0,
        cost: window.cost,
        used,
        percent: 100.0 * used / budget.limit.amount,
        refused: window.refused,
        exhausted_at,
    }
}

#[cfg(test)]
mod tests {
    use glassbox_core::budget::{Limit, Per};

    use super::*;

    fn held(target: &str, measure: Measure, amount: f64, action: Action) -> Arc<Held> {
        let budget = Budget {
            target: target.parse().unwrap(),
            limit: Limit { measure, amount },
            per: Per::Minute,
            action,
            at: vec![50, 100],
        };
        Arc::new(Held::new(BudgetRecord { budget, set_at: Utc::now(), set_by: "admin".into() }))
    }

    fn ledger(all: &[Arc<Held>]) -> Ledger {
        let mut targets = Targets::default();
        for h in all {
            targets.insert(h.clone());
        }
        Ledger { targets: RwLock::new(targets) }
    }

    const FAN: Who<'static> = Who { function: "fan", feature: None, group: None };
    /// 10:00:00 on some day: a window's start for 1m budgets.
    const T: u64 = 1_764_928_800;

    #[test]
    fn a_stop_budget_admits_up_to_its_limit_then_refuses_until_the_window_rolls_over() {
        let fan = held("fan", Measure::Invocations, 3.0, Action::Stop);
        let set = ledger(std::slice::from_ref(&fan));
        let verdicts: Vec<bool> = (0..5).map(|i| matches!(set.admit(&FAN, T + i, true), Verdict::Run(_))).collect();
        assert_eq!(verdicts, [true, true, true, false, false]);
        let window = *fan.lock(T + 59);
        assert_eq!((window.admitted, window.refused), (3, 2));
        match set.admit(&FAN, T + 60, true) {
            Verdict::Run(_) => {}
            other => panic!("a new window admits again: {other:?}"),
        }
        assert_eq!(fan.lock(T + 60).admitted, 1, "the new window counts from zero");
    }

    #[test]
    fn thresholds_are_reached_once_per_window_each() {
        let fan = held("fan", Measure::Invocations, 4.0, Action::Alert);
        let set = ledger(std::slice::from_ref(&fan));
        let reached: Vec<Vec<u16>> = (0..6)
            .map(|i| match set.admit(&FAN, T + i, true) {
                Verdict::Run(r) => r.iter().map(|r| r.percent).collect(),
                other => panic!("alert refuses nothing: {other:?}"),
            })
            .collect();
        assert_eq!(reached, [vec![], vec![50], vec![], vec![100], vec![], vec![]]);
        let next = match set.admit(&FAN, T + 61, true) {
            Verdict::Run(r) => r.len(),
            other => panic!("{other:?}"),
        };
        assert_eq!(next, 0, "1 of 4 in a new window reaches nothing yet");
    }

    #[test]
    fn a_refusal_by_one_budget_counts_in_none_and_names_it() {
        let fan = held("fan", Measure::Invocations, 100.0, Action::Stop);
        let billing = held("feature:billing", Measure::Invocations, 1.0, Action::Stop);
        let set = ledger(&[fan.clone(), billing.clone()]);
        let who = Who { function: "fan", feature: Some("billing"), group: None };
        assert!(matches!(set.admit(&who, T, true), Verdict::Run(_)));
        match set.admit(&who, T + 1, true) {
            Verdict::Stop(reason) => {
                assert!(
                    reason.starts_with("budget_exceeded: budget feature:billing of 1 invocations per 1m"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fan.lock(T + 1).admitted, 1, "the refused one is not counted against fan");
        assert!(matches!(set.admit(&FAN, T + 2, true), Verdict::Run(_)), "fan alone is within its budget");
    }

    #[test]
    fn cpu_and_cost_budgets_count_what_ran_and_throttle_holds() {
        let fan = held("fan", Measure::CpuMs, 10.0, Action::Throttle);
        let set = ledger(std::slice::from_ref(&fan));
        assert!(matches!(set.admit(&FAN, T, true), Verdict::Run(_)));
        let reached = set.ran(&FAN, 6_000, 0.001, T + 1);
        assert_eq!(reached.iter().map(|r| r.percent).collect::<Vec<_>>(), [50]);
        assert!(matches!(set.admit(&FAN, T + 2, true), Verdict::Run(_)), "6 of 10 ms used");
        set.ran(&FAN, 5_000, 0.001, T + 3);
        assert!(matches!(set.admit(&FAN, T + 4, true), Verdict::Hold(_)), "11 of 10 ms used: held");
        let window = *fan.lock(T + 5);
        assert_eq!((window.admitted, window.ran, window.refused), (2, 2, 1));
        assert!((window.cost - 0.002).abs() < 1e-12);
    }

    #[test]
    fn a_group_budget_counts_only_its_devices_events() {
        let greenhouse = held("group:greenhouse", Measure::Invocations, 1.0, Action::Stop);
        let set = ledger(std::slice::from_ref(&greenhouse));
        let inside = Who { function: "fan", feature: None, group: Some("greenhouse") };
        let elsewhere = Who { group: Some("barn"), ..inside };
        assert!(matches!(set.admit(&inside, T, true), Verdict::Run(_)));
        assert!(matches!(set.admit(&inside, T + 1, true), Verdict::Stop(_)), "the group's 1 is used");
        assert!(matches!(set.admit(&elsewhere, T + 2, true), Verdict::Run(_)), "another group's device runs");
        assert!(matches!(set.admit(&FAN, T + 3, true), Verdict::Run(_)), "an event without a group runs");
        let window = *greenhouse.lock(T + 4);
        assert_eq!((window.admitted, window.refused), (1, 1));
    }

    #[test]
    fn asking_again_about_a_held_event_does_not_count_it_twice() {
        let fan = held("fan", Measure::Invocations, 1.0, Action::Throttle);
        let set = ledger(std::slice::from_ref(&fan));
        assert!(matches!(set.admit(&FAN, T, true), Verdict::Run(_)));
        assert!(matches!(set.admit(&FAN, T + 1, true), Verdict::Hold(_)));
        assert!(matches!(set.admit(&FAN, T + 2, false), Verdict::Hold(_)));
        assert_eq!(fan.lock(T + 3).refused, 1);
        assert!(matches!(set.admit(&FAN, T + 60, false), Verdict::Run(_)), "the next window has room");
    }

    #[test]
    fn message_budgets_count_a_devices_messages_and_its_groups_not_invocations() {
        let d1 = held("device:d1", Measure::Messages, 2.0, Action::Stop);
        let barn = held("group:barn", Measure::Messages, 3.0, Action::Stop);
        let set = ledger(&[d1.clone(), barn.clone()]);
        assert_eq!(set.targets.read().unwrap().on_messages, 2);
        let verdicts: Vec<bool> =
            (0..3).map(|i| matches!(set.admit_message("d1", Some("barn"), T + i), Verdict::Run(_))).collect();
        assert_eq!(verdicts, [true, true, false], "d1's own 2 are used");
        assert!(matches!(set.admit_message("d2", Some("barn"), T + 3), Verdict::Run(_)), "the group's third");
        match set.admit_message("d2", Some("barn"), T + 4) {
            Verdict::Stop(reason) => {
                assert!(reason.starts_with("budget_exceeded: budget group:barn of 3 messages per 1m"), "{reason}")
            }
            other => panic!("the group's 3 are used: {other:?}"),
        }
        assert!(matches!(set.admit_message("d3", Some("shed"), T + 5), Verdict::Run(_)), "another group's device");
        let (d1, barn) = (*d1.lock(T + 5), *barn.lock(T + 5));
        assert_eq!((d1.admitted, d1.refused), (2, 1));
        assert_eq!((barn.admitted, barn.refused), (3, 1), "d1's refusal counted in none");
        let fan_in_barn = Who { function: "fan", feature: None, group: Some("barn") };
        assert!(matches!(set.admit(&fan_in_barn, T + 6, true), Verdict::Run(_)), "invocations are not messages");
        set.targets.write().unwrap().remove(&"group:barn".parse().unwrap());
        assert_eq!(set.targets.read().unwrap().on_messages, 1);
    }

    #[test]
    fn a_rebuilt_window_marks_the_thresholds_its_use_passed() {
        let fan = held("fan", Measure::Invocations, 4.0, Action::Alert);
        fan.lock(T).admitted = 3;
        fan.mark_reached(T);
        let set = ledger(std::slice::from_ref(&fan));
        let reached = match set.admit(&FAN, T + 1, true) {
            Verdict::Run(r) => r.iter().map(|r| r.percent).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(reached, [100], "50% was passed before the restart: not recorded again");
    }

    #[test]
    fn time_to_exhaustion_follows_the_window_rate() {
        let fan = held("fan", Measure::Invocations, 100.0, Action::Stop);
        {
            let mut window = fan.lock(T);
            window.admitted = 20;
        }
        let usage = usage(&fan, T + 10);
        // 20 in 10 s: 2/s; 80 left: 40 s more.
        assert_eq!(usage.exhausted_at, Some(at(T + 50)));
        assert_eq!(usage.percent, 20.0);
        let slow = held("fan", Measure::Invocations, 100.0, Action::Stop);
        slow.lock(T).admitted = 1;
        assert_eq!(super::usage(&slow, T + 30).exhausted_at, None, "not within this window");
    }
}
