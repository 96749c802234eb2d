//! `glassbox bench functions`: the runtime's overhead per invocation — an
//! instance of a compiled component (warm, or fresh with `--reuse 1`), the
//! call, the outcome — measured in-process on the trivial component, or on
//! any component given.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use glassbox_runtime::{
    Event, KvQuota, Limits, NoServices, Outcome, Reach, Reuse, Runtime, Services, TRIVIAL_COMPONENT,
};

#[derive(clap::Args)]
#[command(after_help = "The last line holds the figures scripts read, e.g.\n  \
    invocations_per_sec=41000 p50_us=22 p99_us=61 first_us=850")]
pub struct FunctionsBenchArgs {
    /// Invocations per thread.
    #[arg(long, default_value_t = 20_000)]
    invocations: u32,
    /// Threads invoking at once.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// A component to measure instead of the built-in trivial one.
    #[arg(long)]
    component: Option<std::path::PathBuf>,
    /// Payload bytes in each event's data.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// The event's data instead of `--size` bytes, e.g. '{"temperature": 31.5}'
    /// for examples/js-telemetry (device s1; its commands are accepted and dropped).
    #[arg(long)]
    data: Option<String>,
    /// Keep compiled code in this directory, as the server does (its
    /// `<data dir>/functions/compiled`): run twice to see a compile become a
    /// cache read.
    #[arg(long)]
    cache: Option<std::path::PathBuf>,
    /// Invocations an instance serves before a fresh one is made, as a
    /// function's `--reuse` (1: a fresh instance every time).
    #[arg(long, default_value_t = Reuse::default().invocations, value_parser = clap::value_parser!(u32).range(1..))]
    reuse: u32,
    /// Also measure the dispatcher's budget check per invocation, with this
    /// many budgets set (one on the function, one on its feature, the rest
    /// on other functions) and with none, and the gateway's message budget
    /// check per device PUBLISH with this many device budgets; 0: skip.
    #[arg(long, default_value_t = 0)]
    budgets: usize,
}

/// Nanoseconds per budget check (as dispatch makes it), over `n` checks,
/// with `set` budgets held and with none.
fn budget_check_ns(set: usize, n: u32) -> (f64, f64) {
    use glassbox_core::budget::{Action, Limit, Measure, Per};
    let budget = |target: String| glassbox_core::Budget {
        target: target.parse().unwrap_or(glassbox_core::BudgetTarget::Function("bench".into())),
        // Never reached within a run: every check is the full path to "run".
        limit: Limit { measure: Measure::Invocations, amount: 1e15 },
        per: Per::Day,
        action: Action::Stop,
        at: vec![50, 80, 100],
    };
    let mut budgets = vec![budget("bench".into()), budget("feature:bench".into())];
    budgets.extend((2..set).map(|i| budget(format!("other-{i}"))));
    let time = |check: &glassbox_functions::BudgetCheck| {
        let started = Instant::now();
        let admitted = (0..n).filter(|_| check.check(std::hint::black_box("bench"), Some("bench"))).count();
        std::hint::black_box(admitted);
        started.elapsed().as_secs_f64() * 1e9 / f64::from(n.max(1))
    };
    let with = time(&glassbox_functions::BudgetCheck::new(budgets));
    let without = time(&glassbox_functions::BudgetCheck::new(Vec::new()));
    (with, without)
}

/// Nanoseconds per message budget check (as the gateway makes it at each
/// device PUBLISH), over `n` checks, with `set` device budgets held (one on
/// the publishing device) and with none.
fn message_check_ns(set: usize, n: u32) -> (f64, f64) {
    use glassbox_core::budget::{Action, Limit, Measure, Per};
    let budget = |device: String| glassbox_core::Budget {
        target: glassbox_core::BudgetTarget::Device(device),
        // Never reached within a run: every check is the full path to "admit".
        limit: Limit { measure: Measure::Messages, amount: 1e15 },
        per: Per::Day,
        action: Action::Stop,
        at: vec![50, 80, 100],
    };
    let budgets: Vec<_> =
        std::iter::once("bench".to_string()).chain((1..set).map(|i| format!("d-{i}"))).map(budget).collect();
    let time = |check: &glassbox_functions::BudgetCheck| {
        let started = Instant::now();
        let admitted = (0..n).filter(|_| check.check_message(std::hint::black_box("bench"))).count();
        std::hint::black_box(admitted);
        started.elapsed().as_secs_f64() * 1e9 / f64::from(n.max(1))
    };
    let with = time(&glassbox_functions::BudgetCheck::new(budgets));
    let without = time(&glassbox_functions::BudgetCheck::new(Vec::new()));
    (with, without)
}

/// Services for a benchmark: key-value in nowhere, commands accepted and
/// dropped (so a function that sends one succeeds), no shadows.
struct BenchServices;

impl Services for BenchServices {
    fn kv_get(&self, _: &str, _: &str) -> Option<Vec<u8>> {
        None
    }

    fn kv_set(&self, _: &str, _: &str, _: Vec<u8>, _: KvQuota) -> Result<(), String> {
        Ok(())
    }

    fn kv_delete(&self, _: &str, _: &str) {}

    fn shadow(&self, device: &str) -> Result<String, String> {
        NoServices.shadow(device)
    }

    fn update_desired(&self, device: &str, desired: &str) -> Result<u64, String> {
        NoServices.update_desired(device, desired)
    }

    fn send_command(&self, _: &str, _: &str, _: &str, _: std::time::Duration) -> Result<String, String> {
        Ok("01BENCHCOMMAND".into())
    }
}

fn event(size: usize, data: Option<&str>) -> Event {
    Event {
        id: "01BENCH".into(),
        source: "bench".into(),
        type_: "bench.tick".into(),
        subject: None,
        time: "2026-01-01T00:00:00Z".into(),
        datacontenttype: Some("application/json".into()),
        data: data.map_or_else(|| vec![b'7'; size], |d| d.as_bytes().to_vec()),
        correlationid: "01BENCH".into(),
        causationid: None,
        hop: 0,
        device: data.map(|_| "s1".into()),
    }
}

pub async fn run(args: FunctionsBenchArgs) -> anyhow::Result<()> {
    let bytes = match &args.component {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => TRIVIAL_COMPONENT.as_bytes().to_vec(),
    };
    let runtime = Runtime::with_cache(args.threads.max(1) * 2, 256 << 20, args.cache.as_deref())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = Arc::new(runtime);
    let compile_started = Instant::now();
    let compiled = runtime.compile(&bytes)?;
    let from_cache = match runtime.cache_counts() {
        (0, 0) => "",
        (0, _) => " (not in the cache: compiled and stored)",
        _ => " (read from the cache)",
    };
    println!("compiled {} in {:.1} ms{from_cache}", compiled.digest, compile_started.elapsed().as_secs_f64() * 1000.0);
    let services: Arc<dyn Services> = Arc::new(BenchServices);
    // Off the async runtime's threads: WASI blocks on tokio within a call.
    let first = {
        let (runtime, compiled, services) = (runtime.clone(), compiled.clone(), services.clone());
        let input = event(args.size, args.data.as_deref());
        tokio::task::spawn_blocking(move || runtime.invoke(&compiled, "bench", &input, Limits::default(), services))
            .await?
    };
    if first.outcome != Outcome::Succeeded {
        anyhow::bail!("the component did not succeed: {:?} (logs: {:?})", first.outcome, first.logs);
    }
    let policy = Reuse { invocations: args.reuse, idle_max: args.threads.max(1) as usize, ..Reuse::default() };
    let instances = Arc::new(runtime.instances(&compiled, policy));
    let started = Instant::now();
    let mut threads = Vec::new();
    for _ in 0..args.threads.max(1) {
        let (runtime, compiled, services, instances) =
            (runtime.clone(), compiled.clone(), services.clone(), instances.clone());
        let (n, size, data) = (args.invocations, args.size, args.data.clone());
        threads.push(std::thread::spawn(move || {
            let input = event(size, data.as_deref());
            let mut times = Vec::with_capacity(n as usize);
            let (mut failed, mut cold) = (Vec::new(), 0);
            for _ in 0..n {
                let reach = Reach::services(services.clone());
                let report = runtime.invoke_reusing(&compiled, &instances, "bench", &input, Limits::default(), reach);
                times.push(report.wall.as_secs_f64() * 1e6);
                cold += usize::from(report.cold);
                if report.outcome != Outcome::Succeeded {
                    failed.push(report.outcome);
                }
            }
            (times, failed, cold)
        }));
    }
    let (mut times, mut failed, mut cold) = (Vec::new(), Vec::new(), 0);
    for thread in threads {
        let (t, f, c) = thread.join().unwrap_or_default();
        times.extend(t);
        failed.extend(f);
        cold += c;
    }
    let elapsed = started.elapsed();
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times.get(((times.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    let rate = times.len() as f64 / elapsed.as_secs_f64();
    // Figures from invocations that did not succeed would mislead.
    if let Some(outcome) = failed.first() {
        anyhow::bail!("{} of {} invocations did not succeed, e.g. {outcome:?}", failed.len(), times.len());
    }
    println!(
        "{} invocations ({cold} cold) on {} threads in {:.2} s; first invocation {:.0} µs (instantiate {:.0} µs)",
        times.len(),
        args.threads,
        elapsed.as_secs_f64(),
        first.wall.as_secs_f64() * 1e6,
        first.instantiate.as_secs_f64() * 1e6
    );
    let budgets = match args.budgets {
        0 => String::new(),
        set => {
            let (with, without) = budget_check_ns(set, args.invocations.max(1) * args.threads.max(1));
            println!("budget check per invocation: {with:.0} ns with {set} budgets set, {without:.0} ns with none");
            let (message, no_message) = message_check_ns(set, args.invocations.max(1) * args.threads.max(1));
            println!(
                "message budget check per device PUBLISH: {message:.0} ns with {set} device budgets set, {no_message:.0} ns with none"
            );
            format!(" budget_check_ns={with:.0} budget_check_none_ns={without:.0} message_check_ns={message:.0}")
        }
    };
    println!(
        "invocations_per_sec={rate:.0} p50_us={:.1} p90_us={:.1} p99_us={:.1} first_us={:.0}{budgets}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        first.wall.as_secs_f64() * 1e6
    );
    Ok(())
}
