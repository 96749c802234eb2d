//! The host side of the imports: logging, emitting, key-value, devices.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::egress::{Hooks, Outbound};
use crate::glassbox::function::{devices, events, kv, log};
use crate::wasi::{self, LogBook, SharedLog, Stream, Wasi};
use crate::{Limits, Outcome, Output};

/// What the server provides to functions. Called on the invocation's thread.
pub trait Services: Send + Sync + 'static {
    fn kv_get(&self, function: &str, key: &str) -> Option<Vec<u8>>;
    fn kv_set(&self, function: &str, key: &str, value: Vec<u8>) -> Result<(), String>;
    fn kv_delete(&self, function: &str, key: &str);
    fn shadow(&self, device: &str) -> Result<String, String>;
    fn update_desired(&self, device: &str, desired_json: &str) -> Result<u64, String>;
    fn send_command(&self, device: &str, name: &str, payload_json: &str, ttl: Duration) -> Result<String, String>;
}

/// Services that hold nothing and refuse every device call: for running a
/// function where no server is around (benchmarks, tests).
pub struct NoServices;

impl Services for NoServices {
    fn kv_get(&self, _: &str, _: &str) -> Option<Vec<u8>> {
        None
    }

    fn kv_set(&self, _: &str, _: &str, _: Vec<u8>) -> Result<(), String> {
        Ok(())
    }

    fn kv_delete(&self, _: &str, _: &str) {}

    fn shadow(&self, _: &str) -> Result<String, String> {
        Err("no devices here".into())
    }

    fn update_desired(&self, _: &str, _: &str) -> Result<u64, String> {
        Err("no devices here".into())
    }

    fn send_command(&self, _: &str, _: &str, _: &str, _: Duration) -> Result<String, String> {
        Err("no devices here".into())
    }
}

/// One log line of an invocation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
    /// Since the invocation started.
    pub at_us: u64,
    /// `stdout` or `stderr` for what the guest printed; absent for lines
    /// from the `log` interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<&'static str>,
}

pub(crate) struct State {
    function: String,
    pub limits: StoreLimits,
    /// Whether a memory growth was refused (to name it as the cause of a trap).
    pub memory_denied: bool,
    /// Linear memory of all the instance's memories.
    pub memory_bytes: usize,
    services: Arc<dyn Services>,
    pub log: SharedLog,
    pub wasi: Wasi,
    http: WasiHttpCtx,
    pub hooks: Hooks,
    emitted: Vec<Output>,
}

impl State {
    pub fn new(
        function: &str,
        started: Instant,
        limits: Limits,
        services: Arc<dyn Services>,
        outbound: Outbound,
    ) -> Self {
        let log = Arc::new(Mutex::new(LogBook::new(started)));
        Self {
            function: function.to_string(),
            limits: crate::store_limits(limits),
            memory_denied: false,
            memory_bytes: 0,
            services,
            wasi: Wasi::new(&log, started, limits.timeout),
            http: WasiHttpCtx::new(),
            hooks: Hooks::new(outbound, started, started + limits.timeout),
            log,
            emitted: Vec::new(),
        }
    }

    /// Readies a warm instance's state for its next invocation: a new log,
    /// deadline, services and outbound rules; the instance's memory, WASI
    /// context and monotonic clock carry on.
    pub fn begin(&mut self, started: Instant, limits: Limits, services: Arc<dyn Services>, outbound: Outbound) {
        *wasi::lock(&self.log) = LogBook::new(started);
        self.limits = crate::store_limits(limits);
        self.memory_denied = false;
        self.services = services;
        self.wasi.deadline = started + limits.timeout;
        self.hooks = Hooks::new(outbound, started, started + limits.timeout);
        self.emitted.clear();
    }

    /// Emitted then returned outputs, within the limits.
    pub fn finish(&self, returned: Vec<Output>, limits: Limits) -> Result<Vec<Output>, Outcome> {
        let outputs: Vec<Output> = self.emitted.iter().cloned().chain(returned).collect();
        let bytes: usize = outputs.iter().map(|o| o.data.len() + o.type_.len()).sum();
        if outputs.len() > limits.outputs_max {
            return Err(Outcome::OutputTooLarge(format!(
                "{} outputs, over the limit of {}",
                outputs.len(),
                limits.outputs_max
            )));
        }
        if bytes > limits.output_bytes_max {
            return Err(Outcome::OutputTooLarge(format!(
                "{bytes} bytes of output, over the limit of {}",
                limits.output_bytes_max
            )));
        }
        Ok(outputs)
    }
}

/// Watches memory growth so a denied growth can be named as the cause.
impl ResourceLimiter for State {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        match allowed {
            true => self.memory_bytes += desired.saturating_sub(current),
            false => self.memory_denied = true,
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }
}

impl log::Host for State {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => "trace",
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        wasi::lock(&self.log).push(level, message, Stream::Log);
    }
}

impl events::Host for State {
    fn emit(&mut self, event: Output) -> Result<(), String> {
        self.emitted.push(event);
        Ok(())
    }
}

impl kv::Host for State {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.services.kv_get(&self.function, &key)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        self.services.kv_set(&self.function, &key, value)
    }

    fn delete(&mut self, key: String) {
        self.services.kv_delete(&self.function, &key)
    }
}

impl devices::Host for State {
    fn shadow(&mut self, device: String) -> Result<String, String> {
        self.services.shadow(&device)
    }

    fn update_desired(&mut self, device: String, desired_json: String) -> Result<u64, String> {
        self.services.update_desired(&device, &desired_json)
    }

    fn send_command(
        &mut self,
        device: String,
        name: String,
        payload_json: String,
        ttl_seconds: u32,
    ) -> Result<String, String> {
        self.services.send_command(&device, &name, &payload_json, Duration::from_secs(u64::from(ttl_seconds)))
    }
}

impl crate::glassbox::function::types::Host for State {}

/// `wasi:http` (types and the outgoing handler) over the invocation's
/// resource table, with its hooks deciding what goes out.
impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.wasi.table, hooks: &mut self.hooks }
    }
}

/// Everything either world may import: the host interfaces, WASI, and
/// `wasi:http` for outbound requests (and a proxy's incoming request types).
pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    crate::EventHandler::add_to_linker::<State, HasSelf<State>>(linker, |state| state)?;
    wasi::add_to_linker(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(linker)?;
    crate::egress::add_to_linker(linker)
}
