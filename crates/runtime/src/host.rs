//! The host side of the imports: logging, emitting, key-value, devices.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::egress::{Hooks, Outbound};
use crate::glassbox::function::{devices, events, kv, log};
use crate::wasi::{self, LogBook, SharedLog, Stream, Wasi};
use crate::{KV_KEY_BYTES_MAX, KvQuota, Limits, Outcome, Output};

/// What one invocation may reach beyond its sandbox: the host services it
/// calls and the outbound HTTP requests its rules let through.
#[derive(Clone)]
pub struct Reach {
    pub services: Arc<dyn Services>,
    pub outbound: Outbound,
}

impl Reach {
    /// `services`, and no outbound HTTP.
    pub fn services(services: Arc<dyn Services>) -> Self {
        Self { services, outbound: Outbound::default() }
    }
}

/// What the server provides to functions. Called on the invocation's thread.
pub trait Services: Send + Sync + 'static {
    fn kv_get(&self, function: &str, key: &str) -> Option<Vec<u8>>;
    /// Stores `value` unless the function's store would then pass `quota`;
    /// the error names the limit.
    fn kv_set(&self, function: &str, key: &str, value: Vec<u8>, quota: KvQuota) -> Result<(), String>;
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

    fn kv_set(&self, _: &str, _: &str, _: Vec<u8>, _: KvQuota) -> Result<(), String> {
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
    emitted: Emitted,
    /// For `kv.set`: the largest value, and the store's quota.
    kv: (usize, KvQuota),
}

/// What the guest emitted, kept within the output budget as it goes: an
/// emit past it is refused, and so is every one after it.
#[derive(Default)]
struct Emitted {
    outputs: Vec<Output>,
    bytes: usize,
    /// Why the first refused emit was refused; the invocation ends
    /// `output_too_large` with it.
    over: Option<OverBudget>,
    refused: usize,
    outputs_max: usize,
    output_bytes_max: usize,
}

/// Why an emitted (or returned) event was not kept: a budget of
/// [`Limits`], named as `outputs_max` or `output_bytes_max`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverBudget {
    #[error(
        "outputs_max: an invocation produces at most {max} events, and this would be event {count}; \
         nothing past the limit is kept (emit fewer events, e.g. one holding a list)"
    )]
    Outputs { count: usize, max: usize },
    #[error(
        "output_bytes_max: this {event_bytes}-byte event would bring the invocation's output to {total} bytes, \
         over its limit of {max}; nothing past the limit is kept (emit smaller events)"
    )]
    Bytes { event_bytes: usize, total: usize, max: usize },
}

/// An output's size against the budget: all its fields.
fn output_bytes(output: &Output) -> usize {
    let optional = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    output.type_.len() + optional(&output.subject) + optional(&output.datacontenttype) + output.data.len()
}

impl Emitted {
    fn new(limits: Limits) -> Self {
        Self { outputs_max: limits.outputs_max, output_bytes_max: limits.output_bytes_max, ..Self::default() }
    }

    /// Keeps `output` if it fits the budget; otherwise says why not, and
    /// keeps nothing more from then on.
    fn keep(&mut self, output: Output) -> Result<(), OverBudget> {
        if let Some(over) = &self.over {
            self.refused += 1;
            return Err(over.clone());
        }
        let event_bytes = output_bytes(&output);
        let (count, total) = (self.outputs.len() + 1, self.bytes.saturating_add(event_bytes));
        let over = if count > self.outputs_max {
            Some(OverBudget::Outputs { count, max: self.outputs_max })
        } else if total > self.output_bytes_max {
            Some(OverBudget::Bytes { event_bytes, total, max: self.output_bytes_max })
        } else {
            None
        };
        if let Some(over) = over {
            self.refused += 1;
            self.over = Some(over.clone());
            return Err(over);
        }
        self.bytes = total;
        self.outputs.push(output);
        Ok(())
    }
}

impl State {
    pub fn new(function: &str, started: Instant, limits: Limits, reach: Reach) -> Self {
        let Reach { services, outbound } = reach;
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
            emitted: Emitted::new(limits),
            kv: (limits.kv_value_bytes_max, limits.kv),
        }
    }

    /// Readies a warm instance's state for its next invocation: a new log,
    /// deadline, services and outbound rules; the instance's memory, WASI
    /// context and monotonic clock carry on.
    pub fn begin(&mut self, started: Instant, limits: Limits, reach: Reach) {
        let Reach { services, outbound } = reach;
        *wasi::lock(&self.log) = LogBook::new(started);
        self.limits = crate::store_limits(limits);
        self.memory_denied = false;
        self.services = services;
        self.wasi.deadline = started + limits.timeout;
        self.hooks = Hooks::new(outbound, started, started + limits.timeout);
        self.emitted = Emitted::new(limits);
        self.kv = (limits.kv_value_bytes_max, limits.kv);
    }

    /// Emitted then returned outputs, within the budget; an invocation
    /// that went past it (an emit refused, or too much returned) produces
    /// nothing and ends `output_too_large`.
    pub fn finish(&mut self, returned: Vec<Output>) -> Result<Vec<Output>, Outcome> {
        let emitted = &mut self.emitted;
        for output in returned {
            let _ = emitted.keep(output);
        }
        if let Some(over) = &emitted.over {
            let refused = match emitted.refused {
                1 => String::new(),
                n => format!(" ({n} events refused)"),
            };
            return Err(Outcome::OutputTooLarge(format!("{over}{refused}")));
        }
        Ok(std::mem::take(&mut emitted.outputs))
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
        self.emitted.keep(event).map_err(|over| over.to_string())
    }
}

impl kv::Host for State {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.services.kv_get(&self.function, &key)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        let (value_bytes_max, quota) = self.kv;
        if key.len() > KV_KEY_BYTES_MAX {
            return Err(format!(
                "kv_key_bytes_max: a key holds at most {KV_KEY_BYTES_MAX} bytes; this one has {} (use a shorter key)",
                key.len()
            ));
        }
        if value.len() > value_bytes_max {
            return Err(format!(
                "kv_value_bytes_max: a value holds at most {value_bytes_max} bytes; this one has {} \
                 (store less, or split it across keys)",
                value.len()
            ));
        }
        self.services.kv_set(&self.function, &key, value, quota)
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
