//! The function runtime: runs WebAssembly components of the
//! `glassbox:function/event-handler` world (see `wit/function.wit`) on
//! events, each invocation in a fresh instance with a deadline (epoch
//! interruption, so CPU-bound code is stopped) and a memory limit, and
//! reports what happened: outcome, logs, emitted events, and timings.
//!
//! The host services a function may call (key-value store, device shadows
//! and commands) are a trait the server implements; this crate does no I/O
//! of its own beyond compiling and running code.

mod host;
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

pub use host::{LogLine, NoServices, Services};
pub use wasi::STDIO_BYTES_MAX;

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
/// Most log lines kept per invocation; more are counted as dropped.
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
    /// Most output bytes in all.
    pub output_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(5), memory_bytes: 64 << 20, outputs_max: 100, output_bytes_max: 1 << 20 }
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
    /// Time to create the instance.
    pub instantiate: Duration,
    /// Time from the start of instantiation to the outcome.
    pub wall: Duration,
}

/// Why a component cannot be deployed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("not a WebAssembly component: {0} (build it with componentize-py, componentize-js, or cargo component)")]
    NotAComponent(String),
    #[error("the component does not fit the glassbox:function/event-handler world: {0}")]
    WrongWorld(String),
}

/// A compiled function, ready to instantiate quickly.
#[derive(Clone)]
pub struct Compiled {
    pre: EventHandlerPre<host::State>,
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
}

/// The runtime: one engine for all functions, its deadline clock, and the
/// linker with the host interfaces.
pub struct Runtime {
    engine: Engine,
    linker: Linker<host::State>,
    stop: Arc<AtomicBool>,
    cache: Option<Cache>,
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
        Ok(Self { engine, linker, stop, cache })
    }

    /// Compilations found in the cache, and not, since start (none without one).
    pub fn cache_counts(&self) -> (usize, usize) {
        self.cache.as_ref().map_or((0, 0), |c| (c.cache_hits(), c.cache_misses()))
    }

    /// Compiles a component and checks it fits the world.
    pub fn compile(&self, bytes: &[u8]) -> Result<Compiled, DeployError> {
        if !wasmparser_is_component(bytes) {
            return Err(DeployError::NotAComponent(
                "it is a core WebAssembly module, or not WebAssembly at all".into(),
            ));
        }
        let component =
            Component::new(&self.engine, bytes).map_err(|e| DeployError::NotAComponent(format!("{e:#}")))?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| {
            let mut reason = format!("{e:#}");
            if reason.contains("wasi:http/") {
                reason.push_str(
                    " (functions get no wasi:http yet; build without it, e.g. componentize-js --disable http fetch-event)",
                );
            }
            DeployError::WrongWorld(reason)
        })?;
        let pre = EventHandlerPre::new(instance_pre).map_err(|e| DeployError::WrongWorld(format!("{e:#}")))?;
        self.warm_up(&pre);
        Ok(Compiled { pre, digest: digest(bytes) })
    }

    /// Instantiates once and throws the instance away, calling nothing:
    /// wasmtime builds a module's copy-on-write memory image on its first
    /// instantiation (milliseconds for a JS or Python runtime's snapshot),
    /// which belongs to deploy, not to the first invocation. A failure here
    /// is left for the invocation to report.
    fn warm_up(&self, pre: &EventHandlerPre<host::State>) {
        let limits = Limits::default();
        let state = host::State::new("warm-up", Instant::now(), limits, Arc::new(NoServices), Arc::default());
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state);
        store.set_epoch_deadline((limits.timeout.as_millis() as u64 / TICK.as_millis() as u64).max(1));
        store.epoch_deadline_trap();
        if let Err(e) = pre.instantiate(&mut store) {
            tracing::debug!(error = %e, "warming up a component failed");
        }
    }

    /// Runs `event` through `function` on this thread (it blocks: call from
    /// a blocking pool or a plain thread, never from an async runtime's
    /// worker, where WASI's blocking on tokio would panic). Never panics on
    /// the guest's account.
    pub fn invoke(
        &self,
        function: &Compiled,
        name: &str,
        event: &Event,
        limits: Limits,
        services: Arc<dyn Services>,
    ) -> Report {
        let started = Instant::now();
        let memory_denied = Arc::new(AtomicBool::new(false));
        let state = host::State::new(name, started, limits, services, memory_denied.clone());
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state);
        let ticks = (limits.timeout.as_millis() as u64 / TICK.as_millis() as u64).max(1);
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        let instance = function.pre.instantiate(&mut store);
        let instantiate = started.elapsed();
        let result = instance.and_then(|bindings| bindings.glassbox_function_handler().call_handle(&mut store, event));
        let wall = started.elapsed();
        let state = store.into_data();
        let outcome = match result {
            Ok(Ok(returned)) => state.finish(returned, limits),
            Ok(Err(message)) => Err(Outcome::Failed(message)),
            Err(error) => Err(classify(&error, memory_denied.load(Ordering::Relaxed))),
        };
        let (logs, logs_dropped) = {
            let mut book = wasi::lock(&state.log);
            book.finish();
            (std::mem::take(&mut book.lines), book.dropped)
        };
        match outcome {
            Ok(outputs) => Report { outcome: Outcome::Succeeded, outputs, logs, logs_dropped, instantiate, wall },
            Err(outcome) => Report { outcome, outputs: Vec::new(), logs, logs_dropped, instantiate, wall },
        }
    }
}

fn classify(error: &wasmtime::Error, memory_denied: bool) -> Outcome {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Outcome::TimedOut,
        _ if memory_denied => Outcome::MemoryExceeded,
        _ => Outcome::Trapped(format!("{error:#}")),
    }
}

/// Binary components start with `\0asm` and a layer of 1 (core modules
/// have 0); text (WAT, for fixtures) is left to the parser to judge.
fn wasmparser_is_component(bytes: &[u8]) -> bool {
    match bytes.get(..4) {
        Some(b"\0asm") => bytes.get(6..8) == Some(&[1, 0]),
        _ => std::str::from_utf8(bytes).is_ok(),
    }
}

/// Store limits for one invocation.
fn store_limits(limits: Limits) -> StoreLimits {
    StoreLimitsBuilder::new().memory_size(limits.memory_bytes).trap_on_grow_failure(false).build()
}
