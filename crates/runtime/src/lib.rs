//! The function runtime: runs WebAssembly components of the
//! `glassbox:function/event-handler` world (see `wit/function.wit`) on
//! events, and components of the standard `wasi:http/proxy` world on HTTP
//! requests, each invocation with a deadline (epoch interruption, so
//! CPU-bound code is stopped) and a memory limit, and reports what happened:
//! outcome, logs, emitted events, outbound requests, timings and resources.
//!
//! An event handler's instance may be kept warm and reused (`instances.rs`,
//! a recycle policy deciding when not); an HTTP request always gets a fresh
//! one.
//!
//! The host services a function may call (key-value store, device shadows
//! and commands) are a trait the server implements; this crate does no I/O
//! of its own beyond compiling and running code, and the outbound HTTP
//! requests a function's egress allow list lets through (`egress/`).

mod egress;
mod host;
mod http;
mod instances;
mod send;
mod upload;
mod wasi;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder, Trap,
};

pub use egress::{EGRESS_RECORDS_MAX, EgressRecord, Exposure, HostRule, Outbound, reserved};
pub use host::{LogLine, NoServices, OverBudget, Reach, Services};
pub use http::{BodyError, HttpResponse, ResponseBody, read_body};
pub use instances::{Instances, Reuse};
pub use upload::{NotWebAssembly, not_webassembly};
pub use wasi::{LOG_BYTES_MAX, LOG_LINE_BYTES_MAX};

wasmtime::component::bindgen!({
    path: "../../wit/function.wit",
    world: "event-handler",
});

pub use exports::glassbox::function::handler::{Event, Output};
pub use glassbox::function::log::Level;

/// The smallest function there is (WAT): succeeds with no outputs. For
/// benchmarks of the runtime's own overhead, and tests.
pub const TRIVIAL_COMPONENT: &str = include_str!("../tests/fixtures/ok.wat");

/// How often the deadline clock ticks.
const TICK: Duration = Duration::from_millis(2);
/// Most log lines kept per invocation (from `log`, stdout and stderr);
/// more are counted as dropped.
pub const LOG_LINES_MAX: usize = 1000;

/// Bounds of one invocation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock budget; CPU-bound code is interrupted at it.
    pub timeout: Duration,
    /// Largest linear memory the function may grow to.
    pub memory_bytes: usize,
    /// Most output events (returned plus emitted).
    pub outputs_max: usize,
    /// Most output bytes in all (every field of every event).
    pub output_bytes_max: usize,
    /// Largest value `kv.set` stores.
    pub kv_value_bytes_max: usize,
    /// What the function's key-value store may hold in all.
    pub kv: KvQuota,
}

/// What one function's key-value store may hold, kept by the server's
/// store as values are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvQuota {
    /// Most keys.
    pub keys_max: u64,
    /// Most bytes of keys and values together.
    pub bytes_max: u64,
}

/// The longest key `kv.set` takes.
pub const KV_KEY_BYTES_MAX: usize = 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            memory_bytes: 64 << 20,
            outputs_max: 100,
            output_bytes_max: 1 << 20,
            kv_value_bytes_max: 1 << 20,
            kv: KvQuota { keys_max: 10_000, bytes_max: 64 << 20 },
        }
    }
}

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// The function returned an error.
    Failed(String),
    /// It trapped (a bug: unreachable, out-of-bounds, …).
    Trapped(String),
    /// It ran past its deadline and was stopped.
    TimedOut,
    /// It tried to grow its memory past the limit.
    MemoryExceeded,
    /// It produced more outputs than allowed.
    OutputTooLarge(String),
}

impl Outcome {
    /// Every outcome's name: a closed list, for bounded metric labels.
    pub const NAMES: [&str; 6] = ["succeeded", "failed", "trapped", "timed_out", "memory_exceeded", "output_too_large"];

    /// The outcome's name, as recorded.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed(_) => "failed",
            Outcome::Trapped(_) => "trapped",
            Outcome::TimedOut => "timed_out",
            Outcome::MemoryExceeded => "memory_exceeded",
            Outcome::OutputTooLarge(_) => "output_too_large",
        }
    }

    pub fn detail(&self) -> Option<&str> {
        match self {
            Outcome::Failed(m) | Outcome::Trapped(m) | Outcome::OutputTooLarge(m) => Some(m),
            _ => None,
        }
    }
}

/// What one invocation did.
#[derive(Debug, Clone)]
pub struct Report {
    pub outcome: Outcome,
    /// Returned and emitted events, in order (empty unless it succeeded).
    pub outputs: Vec<Output>,
    pub logs: Vec<LogLine>,
    pub logs_dropped: usize,
    /// Whether a new instance was created for it (cold) rather than a warm
    /// one reused.
    pub cold: bool,
    /// Time to create the instance (zero when warm).
    pub instantiate: Duration,
    /// Time from the start of instantiation to the outcome.
    pub wall: Duration,
    /// CPU time the invocation's thread spent (instantiation included); the
    /// work of host calls made on other threads (outbound HTTP) is not in it.
    pub cpu: Duration,
    /// The instance's linear memory at the end: its peak, as memory never
    /// shrinks (for a warm instance, including what earlier invocations grew).
    pub memory_bytes: usize,
    /// The outbound HTTP requests it made (sent, failed or denied), in order.
    pub egress: Vec<EgressRecord>,
    /// Outbound requests past [`EGRESS_RECORDS_MAX`], not written down.
    pub egress_dropped: usize,
    /// For an HTTP request: the status the function responded with.
    pub status: Option<u16>,
}

/// Why a component cannot be deployed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("not a WebAssembly component: {0} (build it with componentize-py, componentize-js, or cargo component)")]
    NotAComponent(String),
    #[error("the component does not fit the {} world: {reason}", world.name())]
    WrongWorld { world: World, reason: String },
}

/// The world a component targets, told by what it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// `glassbox:function/event-handler`: handles events (`handler.handle`).
    EventHandler,
    /// `wasi:http/proxy`: handles HTTP requests (`wasi:http/incoming-handler`).
    HttpProxy,
}

impl World {
    pub fn name(self) -> &'static str {
        match self {
            World::EventHandler => "glassbox:function/event-handler",
            World::HttpProxy => "wasi:http/proxy",
        }
    }
}

#[derive(Clone)]
enum Pre {
    Events(EventHandlerPre<host::State>),
    Http(wasmtime_wasi_http::p2::bindings::sync::ProxyPre<host::State>),
}

/// A compiled function, ready to instantiate quickly.
#[derive(Clone)]
pub struct Compiled {
    pre: Pre,
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
}

impl Compiled {
    /// The world the component targets.
    pub fn world(&self) -> World {
        match self.pre {
            Pre::Events(_) => World::EventHandler,
            Pre::Http(_) => World::HttpProxy,
        }
    }
}

/// The runtime: one engine for all functions, its deadline clock, and the
/// linker with the host interfaces.
pub struct Runtime {
    engine: Engine,
    linker: Linker<host::State>,
    stop: Arc<AtomicBool>,
    cache: Option<Cache>,
    /// Warm instances kept idle across all functions, bounded to half the
    /// pooling allocator's slots so fresh invocations always find one.
    idle: instances::IdleCount,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The content digest of a component, as versions are named.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Runtime {
    /// `instances_max` bounds concurrent invocations (pooling allocator slots).
    pub fn new(instances_max: u32, memory_bytes_max: usize) -> wasmtime::Result<Self> {
        Self::with_cache(instances_max, memory_bytes_max, None)
    }

    /// As [`Runtime::new`], keeping compiled code in `cache_dir` (wasmtime's
    /// own cache, keyed by the component's bytes, the compiler and its
    /// settings), so compiling a component compiled before — after a
    /// restart, for a replay, on a redeploy — is a read, not a compile.
    /// Whoever can write that directory can make functions run any native
    /// code: keep it as private as the data directory it lives in.
    pub fn with_cache(instances_max: u32, memory_bytes_max: usize, cache_dir: Option<&Path>) -> wasmtime::Result<Self> {
        let mut pooling = PoolingAllocationConfig::default();
        pooling.total_component_instances(instances_max);
        // A componentize-py component instantiates more than 8 core modules.
        pooling.total_core_instances(instances_max * 16);
        pooling.total_memories(instances_max * 2);
        pooling.total_tables(instances_max * 4);
        pooling.max_memory_size(memory_bytes_max);
        pooling.max_component_instance_size(1 << 20);
        pooling.max_core_instances_per_component(50);
        pooling.max_memories_per_component(10);
        pooling.max_tables_per_component(20);
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        let cache = match cache_dir {
            Some(dir) => {
                let mut cache_config = CacheConfig::new();
                cache_config.with_directory(std::path::absolute(dir)?);
                Some(Cache::new(cache_config)?)
            }
            None => None,
        };
        config.cache(cache.clone());
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (clock, stopped) = (engine.clone(), stop.clone());
        std::thread::Builder::new().name("function-deadlines".into()).spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                clock.increment_epoch();
            }
        })?;
        let idle = instances::IdleCount::new(instances_max as usize / 2);
        Ok(Self { engine, linker, stop, cache, idle })
    }

    /// Compilations found in the cache, and not, since start (none without one).
    pub fn cache_counts(&self) -> (usize, usize) {
        self.cache.as_ref().map_or((0, 0), |c| (c.cache_hits(), c.cache_misses()))
    }

    /// Compiles a component and checks it fits its world: a component
    /// exporting `wasi:http/incoming-handler` is an HTTP proxy, any other an
    /// event handler.
    pub fn compile(&self, bytes: &[u8]) -> Result<Compiled, DeployError> {
        let binary = upload::component_binary(bytes)?;
        let component =
            Component::new(&self.engine, &binary).map_err(|e| DeployError::NotAComponent(format!("{e:#}")))?;
        let world = match component
            .component_type()
            .exports(&self.engine)
            .any(|(name, _)| name.starts_with("wasi:http/incoming-handler@"))
        {
            true => World::HttpProxy,
            false => World::EventHandler,
        };
        let wrong = |e: wasmtime::Error| DeployError::WrongWorld { world, reason: format!("{e:#}") };
        let instance_pre = self.linker.instantiate_pre(&component).map_err(wrong)?;
        let pre = match world {
            World::EventHandler => Pre::Events(EventHandlerPre::new(instance_pre).map_err(wrong)?),
            World::HttpProxy => {
                Pre::Http(wasmtime_wasi_http::p2::bindings::sync::ProxyPre::new(instance_pre).map_err(wrong)?)
            }
        };
        self.warm_up(&pre);
        Ok(Compiled { pre, digest: digest(bytes) })
    }

    /// A fresh store for one invocation, its deadline set.
    fn store(&self, name: &str, started: Instant, limits: Limits, reach: Reach) -> Store<host::State> {
        let state = host::State::new(name, started, limits, reach);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state);
        store.epoch_deadline_trap();
        set_deadline(&mut store, limits.timeout);
        store
    }

    /// Instantiates once and throws the instance away, calling nothing:
    /// wasmtime builds a module's copy-on-write memory image on its first
    /// instantiation (milliseconds for a JS or Python runtime's snapshot),
    /// which belongs to deploy, not to the first invocation. A failure here
    /// is left for the invocation to report.
    fn warm_up(&self, pre: &Pre) {
        let (limits, services) = (Limits::default(), Arc::new(NoServices));
        let mut store = self.store("warm-up", Instant::now(), limits, Reach::services(services));
        let instantiated = match pre {
            Pre::Events(pre) => pre.instantiate(&mut store).map(drop),
            Pre::Http(pre) => pre.instantiate(&mut store).map(drop),
        };
        if let Err(e) = instantiated {
            tracing::debug!(error = %e, "warming up a component failed");
        }
    }

    /// Runs `event` through `function` with no outbound HTTP allowed; see
    /// [`Runtime::invoke_with`].
    pub fn invoke(
        &self,
        function: &Compiled,
        name: &str,
        event: &Event,
        limits: Limits,
        services: Arc<dyn Services>,
    ) -> Report {
        self.invoke_with(function, name, event, limits, Reach::services(services))
    }

    /// Runs `event` through `function` in a fresh instance on this thread
    /// (it blocks: call from a blocking pool or a plain thread, never from
    /// an async runtime's worker, where WASI's blocking on tokio would
    /// panic), reaching out over HTTP only as `reach.outbound` allows. Never
    /// panics on the guest's account. An HTTP proxy component cannot handle
    /// an event: that is a failed invocation.
    pub fn invoke_with(&self, function: &Compiled, name: &str, event: &Event, limits: Limits, reach: Reach) -> Report {
        self.run_event(function, None, name, event, limits, reach)
    }

    /// As [`Runtime::invoke_with`], on a warm instance from `instances` if
    /// one is idle; the instance goes back to them afterwards unless their
    /// recycle policy says otherwise.
    pub fn invoke_reusing(
        &self,
        function: &Compiled,
        instances: &Instances,
        name: &str,
        event: &Event,
        limits: Limits,
        reach: Reach,
    ) -> Report {
        self.run_event(function, Some(instances), name, event, limits, reach)
    }

    fn run_event(
        &self,
        function: &Compiled,
        instances: Option<&Instances>,
        name: &str,
        event: &Event,
        limits: Limits,
        reach: Reach,
    ) -> Report {
        let started = Instant::now();
        let cpu_started = thread_cpu();
        let Pre::Events(pre) = &function.pre else {
            let mut store = self.store(name, started, limits, reach);
            let failed = Outcome::Failed("an HTTP (wasi:http/proxy) function handles HTTP requests, not events".into());
            return finish(store.data_mut(), failed, None, Timings::since(started, cpu_started, true, Duration::ZERO));
        };
        let (mut store, handler, served) = match instances.and_then(|i| i.take(function)) {
            Some(warm) => {
                let mut store = warm.store;
                store.data_mut().begin(started, limits, reach);
                set_deadline(&mut store, limits.timeout);
                (store, Ok(warm.handler), warm.served)
            }
            None => {
                let mut store = self.store(name, started, limits, reach);
                let handler = pre.instantiate(&mut store);
                (store, handler, 0)
            }
        };
        let cold = served == 0;
        let instantiate = if cold { started.elapsed() } else { Duration::ZERO };
        let result = handler.and_then(|handler| {
            let returned = handler.glassbox_function_handler().call_handle(&mut store, event)?;
            Ok((handler, returned))
        });
        let timings = Timings::since(started, cpu_started, cold, instantiate);
        let state = store.data_mut();
        let (outcome, outputs, handler) = match result {
            Ok((handler, Ok(returned))) => match state.finish(returned) {
                Ok(outputs) => (Outcome::Succeeded, outputs, Some(handler)),
                Err(outcome) => (outcome, Vec::new(), Some(handler)),
            },
            Ok((handler, Err(message))) => (Outcome::Failed(message), Vec::new(), Some(handler)),
            Err(error) => (classify(&error, state.memory_denied), Vec::new(), None),
        };
        let mut report = finish(state, outcome, None, timings);
        report.outputs = outputs;
        if let (Some(instances), Some(handler)) = (instances, handler) {
            instances.put(function, instances::Warm { store, handler, served: served + 1 }, &report, limits);
        }
        report
    }
}

/// When an invocation started and what it took, for its report.
struct Timings {
    cold: bool,
    instantiate: Duration,
    wall: Duration,
    cpu: Duration,
}

impl Timings {
    fn since(started: Instant, cpu_started: Duration, cold: bool, instantiate: Duration) -> Self {
        let (wall, cpu) = (started.elapsed(), thread_cpu().saturating_sub(cpu_started));
        Self { cold, instantiate, wall, cpu }
    }
}

/// This thread's CPU time so far.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// Arms the epoch deadline `timeout` from now.
fn set_deadline(store: &mut Store<host::State>, timeout: Duration) {
    store.set_epoch_deadline((timeout.as_millis() as u64 / TICK.as_millis() as u64).max(1));
}

/// The report of an invocation that is over: its logs and outbound
/// requests, taken from its state (no outputs; the caller adds them).
fn finish(state: &mut host::State, outcome: Outcome, status: Option<u16>, timings: Timings) -> Report {
    let (logs, logs_dropped) = {
        let mut book = wasi::lock(&state.log);
        book.finish();
        (std::mem::take(&mut book.lines), book.dropped)
    };
    let (egress, egress_dropped) = {
        let mut book = state.hooks.book.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut book.records), book.dropped)
    };
    let Timings { cold, instantiate, wall, cpu } = timings;
    Report {
        outcome,
        outputs: Vec::new(),
        logs,
        logs_dropped,
        cold,
        instantiate,
        wall,
        cpu,
        memory_bytes: state.memory_bytes,
        egress,
        egress_dropped,
        status,
    }
}

fn classify(error: &wasmtime::Error, memory_denied: bool) -> Outcome {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Outcome::TimedOut,
        _ if memory_denied => Outcome::MemoryExceeded,
        _ => Outcome::Trapped(format!("{error:#}")),
    }
}

/// Store limits for one invocation.
fn store_limits(limits: Limits) -> StoreLimits {
    StoreLimitsBuilder::new().memory_size(limits.memory_bytes).trap_on_grow_failure(false).build()
}
