//! Functions: deploy (immutable versions, a `live` alias; promote,
//! rollback and delete in `lifecycle.rs`), and
//! the dispatcher that runs live functions on the events their triggers
//! match — each invocation recorded as a `function.invoked` event on the
//! triggering event's chain, with its outcome, timings, logs and cost, and
//! its outputs recorded as events caused by the trigger.
//!
//! Each live event handler has a bounded queue and a worker: the worker
//! takes what is queued in batches sized to about a millisecond of the
//! function's work, runs each batch on one blocking thread (on warm
//! instances), and records the batch's outputs and invocations in two
//! recorder writes; as many batches run at once as the function's
//! concurrency allows (`queue.rs`; recording in `record.rs`).
//!
//! The recursion guard: an event whose `hop` reaches a function's limit is
//! not delivered to it; it is dead-lettered (`function.dead_letter`, reason
//! `recursion_limit`).
//!
//! HTTP-triggered functions (`wasi:http/proxy` components on `http:` routes)
//! are served in `http.rs`; outbound requests go through each function's
//! egress allow list, and a denied one is recorded as `function.egress_denied`.
//!
//! Any recorded event can be replayed through any version; a dry-run replay
//! runs against a sandbox of the host services (`sandbox.rs`) that changes
//! nothing outside the invocation and lists what a real run would have done.
//!
//! Owns: function versions and their lifecycle, trigger specs and
//! schedules (`spec.rs`; the scheduler loop in `scheduler.rs` depends on
//! the spec, not the other way), the dispatcher and its queues, HTTP
//! routes' serving, replay sandboxes, the host services functions call
//! (`services.rs`, through `glassbox-control`), the `[cost]` section
//! ([`Prices`]) and the functions' `/metrics` collector. Must not touch:
//! the HTTP API's routing and request shapes (`glassbox-api` calls in
//! here), the MQTT broker's sessions, or configuration files; it never
//! depends on `glassbox-server`.

mod budgets;
mod chains;
mod dead_letters;
mod http;
mod lifecycle;
mod plan;
mod position;
mod queue;
mod record;
mod replayed;
mod resume;
mod retire;
mod sandbox;
mod scheduler;
mod services;
mod spec;
mod windows;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use glassbox_core::{Data, Draft, Principal, RecordedEvent, TraceParent};
use glassbox_runtime::{Compiled, Event, Instances, Outbound, Reach, Report, Runtime, World};
use glassbox_store::{FunctionStore, FunctionVersion, StoreError};
use serde_json::Value;
use tokio::sync::Semaphore;

pub use budgets::{BUDGETS_MAX, BudgetCheck, BudgetError, Budgets, THROTTLED_MAX, Usage};
pub use chains::{CHAIN_INVOCATIONS_MAX, CHAINS_TRACKED_MAX};
pub use chains::{ChainCount, STORM_CHAINS_MAX, STORM_RECORDS_READ_MAX};
pub use dead_letters::{DEAD_LETTERS_MAX, OpenDeadLetter, Redrive, Redriven};
pub use http::{HttpTarget, REQUEST_BYTES_MAX, Waiting};
pub use lifecycle::{InFlight, LiveChange};
pub use plan::{Change, Difference, Plan};
pub use record::RecordedInvocation;
pub use replayed::{RecordedReplay, ReplayError, Replayed, ReplayedResponse};
pub use retire::{Holds, IdleView, RETIRED_KEY};
pub use sandbox::{DryRun, KvWrite, Would, WouldCommand, WouldDesire, WouldEmit, WouldRequest};
pub use spec::{Route, Spec, Trigger, is_name, parse_bytes, parse_rate};

use glassbox_control::Control;
use glassbox_pipeline::Pipeline;
use queue::{Job, dispatch, feed, release_throttled, retire_idle, work};

/// Invocations waiting for a slot in memory, per function; more wait in
/// the backlog.
const QUEUE_MAX: usize = 1000;
/// Events waiting in the recorder for room in a function's queue (their
/// ids kept, ~24 bytes each); more are dead-lettered (`queue_full`).
const BACKLOG_MAX: usize = 1_000_000;
/// Most invocations one batch runs, one after the other.
const BATCH_MAX: usize = 64;
/// About how long one batch should take, so a batch of a slow function is
/// one invocation and one of a fast function is many.
const BATCH_TARGET: Duration = Duration::from_millis(1);
/// The price model that turns an invocation into cost: per request, and
/// per GiB-second of configured memory, like the public FaaS price lists.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prices {
    /// Per invocation. Default 0.0000002 (0.20 per million).
    pub per_request: f64,
    /// Per GiB of configured memory for each second of wall time. Default 0.0000166667.
    pub per_gib_second: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Self { per_request: 0.000_000_2, per_gib_second: 0.000_016_666_7 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error("{0}")]
    Invalid(String),
    #[error("no function {0:?}; `glassbox functions list` shows the deployed ones")]
    Unknown(String),
    /// The request is sound but the function's state refuses it now.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How an invocation came about, for its record.
struct Run<'a> {
    started: chrono::DateTime<Utc>,
    /// How long the event waited in the function's queue (not for replays
    /// and HTTP requests, which do not queue).
    queued: Option<Duration>,
    /// The event a replay re-runs.
    replay_of: Option<&'a str>,
    /// 1 for the first run, then each retry.
    attempt: u32,
    /// For an HTTP request: method, path, status, response bytes.
    http: Option<glassbox_core::HttpExchange>,
}

/// A live version, ready to run.
struct Live {
    version: FunctionVersion,
    spec: Spec,
    triggers: Vec<spec::Trigger>,
    compiled: Compiled,
    /// Its warm instances (event handlers only; HTTP requests get fresh ones).
    instances: Instances,
    /// Where its outbound requests may go (parsed once, at load).
    egress: glassbox_runtime::Outbound,
    /// Derives the parent span of its outbound requests' `traceparent`.
    span_key: glassbox_core::SpanKey,
    slots: Arc<Semaphore>,
    /// Events waiting for it (bounded by [`QUEUE_MAX`]; full: the backlog).
    queue: tokio::sync::mpsc::Sender<Job>,
    /// Events past the queue's room, in order, by id and attempt: they wait
    /// in the recorder and are read back as room frees (`queue::feed`).
    /// Bounded by [`BACKLOG_MAX`]; beyond, dead-lettered.
    backlog: std::sync::Mutex<std::collections::VecDeque<(glassbox_core::EventId, u32)>>,
    /// Wakes the backlog's feeder.
    backlog_added: tokio::sync::Notify,
    /// The queue's other end, until its worker takes it, and again once a
    /// stop ends the worker (so what it holds is kept, and counted).
    jobs: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<Job>>>,
    /// Set when another version replaces it: its worker runs what is
    /// queued, then stops.
    retired: tokio::sync::watch::Sender<bool>,
    /// Set (to the dead letters' reason) when the function is deleted: its
    /// worker runs nothing more, and what was queued gets a dead letter.
    deleted: std::sync::OnceLock<String>,
    /// Mean wall time of its recent invocations (µs), to size batches.
    mean_wall_us: AtomicU64,
    /// HTTP requests waiting for a slot.
    waiting: AtomicUsize,
    /// When the next invocation may start, under a rate limit.
    next_start: tokio::sync::Mutex<tokio::time::Instant>,
    /// Events in batches running now (until their records are committed).
    running: AtomicUsize,
    /// Events waiting out a retry's backoff.
    retrying: AtomicUsize,
}

impl Live {
    /// Adds events to the end of the backlog; returns those past its bound,
    /// or all of them once the function is deleted (see [`Live::refusal`]).
    fn defer(&self, events: impl IntoIterator<Item = (glassbox_core::EventId, u32)>) -> Vec<glassbox_core::EventId> {
        let mut backlog = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock a delete takes the backlog under: nothing is left behind.
        let open = self.deleted.get().is_none();
        let mut refused = Vec::new();
        for event in events {
            match open && backlog.len() < BACKLOG_MAX {
                true => backlog.push_back(event),
                false => refused.push(event.0),
            }
        }
        drop(backlog);
        self.backlog_added.notify_one();
        refused
    }

    /// Why [`Live::defer`] refused events: deleted, or the backlog full.
    fn refusal(&self) -> String {
        match self.deleted.get() {
            Some(reason) => reason.clone(),
            None => format!(
                "{}: {QUEUE_MAX} invocations queued and {BACKLOG_MAX} more waiting for {}",
                glassbox_core::DropReason::QueueFull,
                self.version.name
            ),
        }
    }

    fn backlog_len(&self) -> usize {
        self.backlog.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// What an invocation on `recorded` may reach, with the chain's
    /// `traceparent` for the hosts that opted in.
    fn outbound(&self, recorded: &RecordedEvent) -> glassbox_runtime::Outbound {
        glassbox_runtime::Outbound {
            traceparent: Some(outbound_traceparent(recorded, &self.span_key)),
            ..self.egress.clone()
        }
    }

    /// How many queued events the next batch takes: about [`BATCH_TARGET`]
    /// of work, one at a time under a rate limit.
    fn batch_size(&self) -> usize {
        if self.spec.rate_per_second.is_some() {
            return 1;
        }
        let mean = self.mean_wall_us.load(Ordering::Relaxed).max(1);
        (BATCH_TARGET.as_micros() as u64 / mean).clamp(1, BATCH_MAX as u64) as usize
    }

    /// Folds an invocation's wall time into the running mean.
    fn observe(&self, wall: Duration) {
        let wall = wall.as_micros() as u64;
        let mean = self.mean_wall_us.load(Ordering::Relaxed);
        self.mean_wall_us.store(if mean == 0 { wall } else { (mean * 7 + wall) / 8 }, Ordering::Relaxed);
    }

    /// Waits for this function's rate limit, if it has one: starts are
    /// spaced 1/rate apart, in order of arrival.
    async fn pace(&self) {
        let Some(rate) = self.spec.rate_per_second else { return };
        let gap = Duration::from_secs_f64(1.0 / rate);
        let mut next = self.next_start.lock().await;
        let now = tokio::time::Instant::now();
        let at = (*next).max(now);
        *next = at + gap;
        drop(next);
        tokio::time::sleep_until(at).await;
    }
}

pub struct Functions {
    runtime: Arc<Runtime>,
    store: Arc<dyn FunctionStore>,
    pipeline: Arc<Pipeline>,
    dir: PathBuf,
    live: RwLock<HashMap<String, Arc<Live>>>,
    services: Arc<services::HostServices>,
    /// The devices' registry, through the control plane (`group:` budgets).
    control: Arc<Control>,
    prices: Prices,
    /// Budgets, checked at dispatch (`budgets.rs`).
    budgets: Arc<Budgets>,
    /// Invocations per correlation chain this minute (`chains.rs`).
    chains: chains::Chains,
    /// Where the retired functions' names are kept (`retire.rs`).
    settings: Arc<dyn glassbox_store::SettingStore>,
    /// The retired functions: live in the store, not loaded.
    retired: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Deploys, rollbacks, promotes and deletes one at a time, so route clashes are judged
    /// against what is live.
    changing: tokio::sync::Mutex<()>,
    /// From an event entering a function's queue to its invocation record
    /// committed: the platform's whole part of an invocation.
    dispatch_to_recorded: glassbox_core::Histogram,
    /// Events taken and not yet done with: where the next start resumes
    /// (the durable consumer `functions`; see `position.rs`).
    position: Arc<glassbox_bus::Durable>,
    /// Set when the server stops: no new events or batches are taken.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Work a stop waits for: batches running, records being written.
    busy: Busy,
}

/// A count of background work, so a stop can wait for it to finish.
#[derive(Default)]
struct Busy(Arc<tokio::sync::watch::Sender<usize>>);

impl Busy {
    /// Runs `work` in the background, counted until it ends.
    fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let count = self.0.clone();
        count.send_modify(|n| *n += 1);
        tokio::spawn(async move {
            work.await;
            count.send_modify(|n| *n -= 1);
        });
    }

    /// Waits until nothing runs, at most `grace`; whether it got there.
    async fn idle(&self, grace: Duration) -> bool {
        let mut count = self.0.subscribe();
        tokio::time::timeout(grace, count.wait_for(|n| *n == 0)).await.is_ok()
    }
}

/// Bounds (seconds) of the dispatch-to-recorded histogram: fine below a
/// millisecond, where a warm invocation and a group commit land.
const DISPATCH_BUCKETS: &[f64] = &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0, 10.0];

/// The rule for a function's name, also checked by `glassbox new`.
pub fn validate_name(name: &str) -> Result<(), FunctionError> {
    match spec::is_name(name) {
        true => Ok(()),
        false => Err(FunctionError::Invalid(format!("function name {name:?} must be 1-64 letters, digits, - _ or ."))),
    }
}

impl Functions {
    /// Loads the live versions and starts dispatching events to them.
    pub async fn start(
        store: Arc<dyn FunctionStore>,
        budgets: Arc<dyn glassbox_store::BudgetStore>,
        settings: Arc<dyn glassbox_store::SettingStore>,
        pipeline: Arc<Pipeline>,
        control: Arc<Control>,
        dir: PathBuf,
        prices: Prices,
    ) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(&dir)?;
        // Compiled code is cached beside the components: a restart, a replay
        // or a redeploy of the same component reads it instead of compiling.
        let runtime = Runtime::with_cache(256, 512 << 20, Some(&dir.join("compiled")))
            .map_err(|e| anyhow::anyhow!("starting the function runtime: {e}"))?;
        let runtime = Arc::new(runtime);
        let services =
            Arc::new(services::HostServices::new(store.clone(), control.clone(), tokio::runtime::Handle::current()));
        let budgets = Arc::new(Budgets::load(budgets, pipeline.clone()).await?);
        let retired = std::sync::Mutex::new(Self::load_retired(settings.as_ref()).await?);
        let live = RwLock::new(HashMap::new());
        let changing = tokio::sync::Mutex::new(());
        let dispatch_to_recorded = glassbox_core::Histogram::new(DISPATCH_BUCKETS);
        let pipeline_cursors = pipeline.cursors();
        let functions = Arc::new(Self {
            runtime,
            store,
            pipeline,
            dir,
            live,
            services,
            control,
            prices,
            budgets,
            chains: chains::Chains::default(),
            settings,
            retired,
            changing,
            dispatch_to_recorded,
            position: Arc::new(glassbox_bus::Durable::new(position::CONSUMER, pipeline_cursors)),
            stopping: tokio::sync::watch::Sender::new(false),
            busy: Busy::default(),
        });
        for version in functions.store.live_versions().await? {
            if functions.is_retired(&version.name) {
                continue;
            }
            if let Err(e) = functions.load(version.clone(), None).await {
                tracing::error!(function = %version.name, version = version.version, error = %e, "could not load a function");
            }
        }
        // Before dispatch and before the gateway asks: the windows count what the last run did.
        functions.rebuild_budget_windows().await;
        tokio::spawn(dispatch(Arc::downgrade(&functions), functions.pipeline.consumer(position::CONSUMER)));
        tokio::spawn(scheduler::run(Arc::downgrade(&functions)));
        tokio::spawn(retire_idle(Arc::downgrade(&functions)));
        tokio::spawn(release_throttled(Arc::downgrade(&functions)));
        Ok(functions)
    }

    /// The budgets, set, listed and deleted through it; checked at dispatch.
    pub fn budgets(&self) -> &Arc<Budgets> {
        &self.budgets
    }

    /// The message budgets as the gateway asks them, once per PUBLISH.
    pub fn message_budgets(self: &Arc<Self>) -> Arc<dyn glassbox_link::MessageBudgets> {
        Arc::new(budgets::MessageGate(Arc::downgrade(self)))
    }

    /// The functions' own figures for `/metrics`.
    pub fn render_metrics(&self, out: &mut String) {
        let help = "From an event entering a function's queue to its invocation record committed.";
        glassbox_pipeline::metrics::render_histogram(
            out,
            "glassbox_function_dispatch_to_recorded_seconds",
            help,
            &self.dispatch_to_recorded,
        );
        let help = "Recorded events a trigger matched whose outcome is not recorded yet (queued, running or retrying).";
        glassbox_pipeline::metrics::gauge(
            out,
            "glassbox_function_events_unfinished",
            help,
            self.position.acks().pending() as u64,
        );
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{}.wasm", digest.trim_start_matches("sha256:")))
    }

    async fn compile(&self, bytes: Vec<u8>) -> Result<Compiled, FunctionError> {
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || runtime.compile(&bytes))
            .await
            .map_err(|e| FunctionError::Invalid(format!("compiling failed: {e}")))?
            .map_err(|e| FunctionError::Invalid(e.to_string()))
    }

    /// A stored version compiled and ready to run (`compiled` if it just was).
    async fn prepare(&self, version: FunctionVersion, compiled: Option<Compiled>) -> Result<Live, FunctionError> {
        let spec: Spec = serde_json::from_str(&version.spec).map_err(|e| FunctionError::Invalid(e.to_string()))?;
        let triggers = spec.validate().map_err(FunctionError::Invalid)?;
        let compiled = match compiled {
            Some(compiled) => compiled,
            None => {
                let bytes = std::fs::read(self.path(&version.digest)).map_err(|e| {
                    let (name, number) = (&version.name, version.version);
                    FunctionError::Invalid(format!("the component of {name} v{number} is missing: {e}"))
                })?;
                self.compile(bytes).await?
            }
        };
        fits_world(compiled.world(), &triggers).map_err(FunctionError::Invalid)?;
        let (queue, jobs) = tokio::sync::mpsc::channel(QUEUE_MAX);
        Ok(Live {
            slots: Arc::new(Semaphore::new(spec.concurrency as usize)),
            instances: self.runtime.instances(&compiled, spec.reuse()),
            egress: spec.outbound(None),
            span_key: self.pipeline.span_key(),
            compiled,
            version,
            spec,
            triggers,
            queue,
            jobs: std::sync::Mutex::new(Some(jobs)),
            retired: tokio::sync::watch::Sender::new(false),
            deleted: std::sync::OnceLock::new(),
            // The first batch is a single invocation, until one is measured.
            mean_wall_us: AtomicU64::new(BATCH_TARGET.as_micros() as u64),
            waiting: AtomicUsize::new(0),
            next_start: tokio::sync::Mutex::new(tokio::time::Instant::now()),
            running: AtomicUsize::new(0),
            retrying: AtomicUsize::new(0),
            backlog: std::sync::Mutex::default(),
            backlog_added: tokio::sync::Notify::new(),
        })
    }

    /// Makes a stored version the one that runs, and starts its worker;
    /// the version it replaces finishes what it has queued.
    async fn load(self: &Arc<Self>, version: FunctionVersion, compiled: Option<Compiled>) -> Result<(), FunctionError> {
        let live = self.prepare(version, compiled).await?;
        self.install(live);
        Ok(())
    }

    /// Makes a prepared version the one that runs (see [`Functions::load`]).
    fn install(self: &Arc<Self>, live: Live) {
        let name = live.version.name.clone();
        let live = Arc::new(live);
        let jobs = live.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
        // HTTP functions are run by their requests (`http.rs`), not a queue.
        if let Some(jobs) = jobs.filter(|_| live.compiled.world() == World::EventHandler) {
            tokio::spawn(work(Arc::downgrade(self), live.clone(), jobs));
            tokio::spawn(feed(Arc::downgrade(self), live.clone()));
        }
        let replaced = self.live.write().unwrap_or_else(|e| e.into_inner()).insert(name, live.clone());
        if let Some(replaced) = replaced {
            replaced.retired.send_replace(true);
            // Its backlog is the new version's to run.
            let moved = std::mem::take(&mut *replaced.backlog.lock().unwrap_or_else(|e| e.into_inner()));
            live.defer(moved);
        }
    }

    /// Deploys a new version and makes it live; records who and when.
    pub async fn deploy(
        self: &Arc<Self>,
        name: &str,
        bytes: Vec<u8>,
        spec: Spec,
        by: &Principal,
    ) -> Result<FunctionVersion, FunctionError> {
        validate_name(name)?;
        let triggers = spec.validate().map_err(FunctionError::Invalid)?;
        let digest = glassbox_runtime::digest(&bytes);
        let compiled = self.compile(bytes.clone()).await?;
        fits_world(compiled.world(), &triggers).map_err(FunctionError::Invalid)?;
        let _changing = self.changing.lock().await;
        self.check_routes(name, &triggers)?;
        std::fs::write(self.path(&digest), &bytes)
            .map_err(|e| FunctionError::Store(StoreError::Unavailable(format!("writing the component: {e}"))))?;
        let text = serde_json::to_string(&spec).map_err(|e| FunctionError::Invalid(e.to_string()))?;
        let version = self.store.add_version(name, &digest, &text, &by.label()).await?;
        self.end_retirement(name).await?;
        self.load(version.clone(), Some(compiled)).await?;
        let deployed = glassbox_core::Deployed {
            function: name.to_string(),
            version: version.version,
            digest,
            by: by.label(),
            principal: Some(by.clone()),
            spec: serde_json::to_value(&spec).unwrap_or_default(),
        };
        self.record_change(name, glassbox_core::FUNCTION_DEPLOYED, serde_json::to_value(deployed).unwrap_or_default())
            .await;
        Ok(version)
    }

    /// What deploying `digest` with `spec` as `name` would change, checked
    /// as a deploy checks it (name, spec, routes) but changing nothing.
    pub async fn plan(&self, name: &str, digest: &str, spec: &Spec) -> Result<Plan, FunctionError> {
        validate_name(name)?;
        let triggers = spec.validate().map_err(FunctionError::Invalid)?;
        self.check_routes(name, &triggers)?;
        let versions = self.store.versions(name).await?;
        Ok(Plan::compare(name, versions.iter().find(|v| v.live), digest, spec))
    }

    /// Refuses `http:` routes that would take requests another live
    /// function's routes take.
    fn check_routes(&self, name: &str, triggers: &[spec::Trigger]) -> Result<(), FunctionError> {
        let routes = |triggers: &'_ [spec::Trigger]| -> Vec<spec::Route> {
            triggers
                .iter()
                .filter_map(|t| match t {
                    spec::Trigger::Http(route) => Some(route.clone()),
                    _ => None,
                })
                .collect()
        };
        let live = self.live.read().unwrap_or_else(|e| e.into_inner());
        for route in routes(triggers) {
            for other in live.values().filter(|l| l.version.name != name) {
                if let Some(theirs) = routes(&other.triggers).into_iter().find(|r| route.clashes(r)) {
                    return Err(FunctionError::Invalid(format!(
                        "route http:{route} clashes with http:{theirs} of function {}: a request could go to \
                         either; choose another path or method, or remove that function's route first",
                        other.version.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Re-runs a recorded event against a version of a function (the live
    /// one by default). Unless `dry_run`, the replay is recorded like any
    /// invocation — a new `function.invoked` with `replay_of`, outputs as new
    /// events — all caused by the original event. Returns the invocation.
    pub async fn replay(
        self: &Arc<Self>,
        name: &str,
        event_id: &str,
        version: Option<u32>,
        dry_run: bool,
    ) -> Result<Replayed, FunctionError> {
        let live = self.version_to_run(name, version).await?;
        let id = event_id.parse().map_err(|_| FunctionError::Invalid(format!("{event_id:?} is not an event id")))?;
        let recorded = self.pipeline.store().get(id).await?.ok_or_else(|| {
            FunctionError::Invalid(format!("no event {event_id}: it never existed, or retention removed it"))
        })?;
        if live.compiled.world() == World::HttpProxy {
            return self.replay_http(&live, &recorded, dry_run).await;
        }
        if dry_run {
            let (report, sandbox) = self.dry_run(&live, &recorded).await?;
            return Ok(Replayed::DryRun(Box::new(sandbox::DryRun::new(&live, event_id, report, &sandbox))));
        }
        let invocation = self.rerun(&live, &recorded).await?;
        Ok(Replayed::Recorded(Box::new(RecordedReplay { invocation, response: None })))
    }

    /// A version of `name` ready to run: the live one, or version `n`.
    async fn version_to_run(&self, name: &str, version: Option<u32>) -> Result<Arc<Live>, FunctionError> {
        let versions = self.versions(name).await?;
        let chosen = match version {
            None => versions.iter().find(|v| v.live),
            Some(n) => versions.iter().find(|v| v.version == n),
        }
        .cloned()
        .ok_or_else(|| match version {
            Some(n) => FunctionError::Invalid(format!("{name} has no version {n}")),
            None => FunctionError::Invalid(format!(
                "{name} is deleted: nothing is live; name a version (`glassbox functions versions {name}`)"
            )),
        })?;
        Ok(Arc::new(self.prepare(chosen, None).await?))
    }

    /// Runs `recorded` again in a sandbox: nothing outside changes, and the
    /// sandbox lists what the run would have done.
    async fn dry_run(
        &self,
        live: &Arc<Live>,
        recorded: &RecordedEvent,
    ) -> Result<(Report, Arc<sandbox::Sandbox>), FunctionError> {
        let sandbox = self.services.sandbox(&live.version.name);
        let reach = self.reach(live, recorded, Some(&sandbox));
        let report = self.run_once(live, recorded, reach).await.ok_or_else(run_failed)?;
        Ok((report, sandbox))
    }

    /// Runs `recorded` again for real, recorded like any invocation — a new
    /// `function.invoked` with `replay_of`, outputs as new events — all
    /// caused by the event, on its chain.
    async fn rerun(
        &self,
        live: &Arc<Live>,
        recorded: &RecordedEvent,
    ) -> Result<Option<record::RecordedInvocation>, FunctionError> {
        let (started, event_id) = (Utc::now(), recorded.event.id.to_string());
        let reach = self.reach(live, recorded, None);
        let report = self.run_once(live, recorded, reach).await.ok_or_else(run_failed)?;
        let run = Run { started, queued: None, replay_of: Some(&event_id), attempt: 1, http: None };
        Ok(self.record_invocation(live, recorded, run, report).await)
    }

    pub async fn versions(&self, name: &str) -> Result<Vec<FunctionVersion>, FunctionError> {
        let versions = self.store.versions(name).await?;
        if versions.is_empty() {
            return Err(FunctionError::Unknown(name.into()));
        }
        Ok(versions)
    }

    pub async fn list(&self) -> Result<Vec<FunctionVersion>, FunctionError> {
        Ok(self.store.live_versions().await?)
    }

    async fn record_change(&self, name: &str, ty: &str, data: Value) {
        let draft =
            Draft { subject: Some(name.into()), ..Draft::json(format!("glassbox/functions/{name}"), ty, &data) };
        if let Err(e) = self.pipeline.ingest_platform(vec![draft], "platform").await {
            tracing::error!(function = name, error = %e, "could not record a change of a function");
        }
    }

    /// What a replay of `recorded` may reach: the host services and the
    /// egress list — or, for a dry run, its sandbox, and no request sent.
    fn reach(&self, live: &Live, recorded: &RecordedEvent, sandbox: Option<&Arc<sandbox::Sandbox>>) -> Reach {
        let outbound = live.outbound(recorded);
        match sandbox {
            Some(sandbox) => Reach { services: sandbox.clone(), outbound: Outbound { dry_run: true, ..outbound } },
            None => Reach { services: self.services.for_invocation(&live.version.name, recorded.event.id), outbound },
        }
    }

    /// One run of the function on the event, on a blocking thread, in a
    /// fresh instance, reaching what `reach` allows.
    async fn run_once(&self, live: &Arc<Live>, recorded: &RecordedEvent, reach: Reach) -> Option<Report> {
        let input = to_input(recorded);
        let limits = live.spec.limits();
        let (runtime, live) = (self.runtime.clone(), live.clone());
        let name = live.version.name.clone();
        let report = tokio::task::spawn_blocking(move || {
            runtime.invoke_with(&live.compiled, &live.version.name, &input, limits, reach)
        })
        .await;
        match report {
            Ok(report) => Some(report),
            Err(e) => {
                tracing::error!(function = %name, error = %e, "an invocation task failed");
                None
            }
        }
    }
}

fn run_failed() -> FunctionError {
    FunctionError::Invalid("the replay failed to run; see the server log".into())
}

/// Whether the triggers suit the component's world: a `wasi:http/proxy`
/// component handles requests (only `http:` triggers), an event handler
/// handles events (no `http:` triggers).
fn fits_world(world: World, triggers: &[spec::Trigger]) -> Result<(), String> {
    let http = triggers.iter().filter(|t| matches!(t, spec::Trigger::Http(_))).count();
    match world {
        World::HttpProxy if http < triggers.len() => Err(format!(
            "this component is an HTTP handler (it exports wasi:http/incoming-handler, world {}): \
             give it http:<METHOD> <path> triggers only",
            world.name()
        )),
        World::EventHandler if http > 0 => Err(format!(
            "http: triggers need a component of the wasi:http/proxy world (exporting \
             wasi:http/incoming-handler); this one is of the {} world",
            world.name()
        )),
        _ => Ok(()),
    }
}

/// The `traceparent` an outbound request carries (to the hosts that opted
/// in): the chain's trace, with the triggering event's span as the parent.
fn outbound_traceparent(recorded: &RecordedEvent, key: &glassbox_core::SpanKey) -> String {
    let event = &recorded.event;
    let chain = event.traceparent.as_deref().and_then(|t| TraceParent::parse(t).ok());
    let parent_id = key.span_id(event.id);
    let trace = match chain {
        Some(tp) => TraceParent { parent_id, ..tp },
        None => TraceParent { parent_id, ..TraceParent::for_origin(event.id) },
    };
    trace.to_string()
}

/// The event as the function sees it.
fn to_input(recorded: &RecordedEvent) -> Event {
    let e = &recorded.event;
    let data = match &e.data {
        Data::None => Vec::new(),
        Data::Json(raw) => raw.get().as_bytes().to_vec(),
        Data::Binary(bytes) => bytes.clone(),
    };
    Event {
        id: e.id.to_string(),
        source: e.source.clone(),
        type_: e.ty.clone(),
        subject: e.subject.clone(),
        time: e.time.to_rfc3339(),
        datacontenttype: e.datacontenttype.clone(),
        data,
        correlationid: e.correlationid.clone(),
        causationid: e.causationid.clone(),
        hop: e.hop,
        device: e.device.clone(),
    }
}

#[async_trait::async_trait]
impl glassbox_pipeline::metrics::Collector for Functions {
    async fn collect(&self, out: &mut String) {
        self.render_metrics(out);
    }
}
