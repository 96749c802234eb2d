//! The runtime against hand-written WAT components: outcomes, limits, timings.

use std::sync::Arc;
use std::time::Duration;

use glassbox_runtime::{
    Event, KV_KEY_BYTES_MAX, LOG_BYTES_MAX, LOG_LINE_BYTES_MAX, Limits, NoServices, Outcome, Reach, Report, Reuse,
    Runtime,
};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}.wat", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn event() -> Event {
    Event {
        id: "01TEST".into(),
        source: "test".into(),
        type_: "device.message".into(),
        subject: Some("devices/d1/t".into()),
        time: "2026-11-24T00:00:00Z".into(),
        datacontenttype: Some("application/json".into()),
        data: b"{\"t\":21}".to_vec(),
        correlationid: "01TEST".into(),
        causationid: None,
        hop: 0,
        device: Some("d1".into()),
    }
}

#[test]
fn a_trivial_component_succeeds() {
    let runtime = Runtime::new(16, 64 << 20).unwrap();
    let compiled = runtime.compile(&fixture("ok")).unwrap();
    assert!(compiled.digest.starts_with("sha256:"));
    let report = runtime.invoke(&compiled, "ok", &event(), Limits::default(), Arc::new(NoServices));
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:?}");
    assert!(report.outputs.is_empty());
    assert!(report.wall >= report.instantiate);
}

/// The trivial fixture with another body for `handle` (param: the event
/// pointer; result: a pointer to the result at 16) and extra data.
fn with_body(body: &str, data: &str) -> Vec<u8> {
    let ok = String::from_utf8(fixture("ok")).unwrap();
    let old = r#"(func (export "handle") (param i32) (result i32) (i32.const 16))"#;
    assert!(ok.contains(old));
    ok.replace(old, &format!(r#"{data} (func (export "handle") (param i32) (result i32) {body})"#)).into_bytes()
}

fn run(wat: &[u8], limits: Limits) -> glassbox_runtime::Report {
    let runtime = Runtime::new(16, 64 << 20).unwrap();
    let compiled = runtime.compile(wat).unwrap();
    runtime.invoke(&compiled, "fixture", &event(), limits, Arc::new(NoServices))
}

#[test]
fn logs_and_outputs_come_back_in_the_report() {
    let report = run(&fixture("echo"), Limits::default());
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:?}");
    assert_eq!(report.logs.len(), 1);
    assert_eq!((report.logs[0].level, report.logs[0].message.as_str()), ("info", "hello"));
    assert_eq!(report.outputs.len(), 1);
    assert_eq!(report.outputs[0].type_, "test.echo");
    assert_eq!(report.outputs[0].data, b"{\"t\":21}", "the event's data, echoed");
}

#[test]
fn an_error_returned_fails_the_invocation_with_its_message() {
    let body = "(i32.store8 (i32.const 16) (i32.const 1)) (i32.store (i32.const 20) (i32.const 700)) \
                (i32.store (i32.const 24) (i32.const 9)) (i32.const 16)";
    let report = run(&with_body(body, r#"(data (i32.const 700) "bad input")"#), Limits::default());
    assert_eq!(report.outcome, Outcome::Failed("bad input".into()));
}

#[test]
fn an_infinite_loop_is_stopped_at_its_deadline() {
    let limits = Limits { timeout: Duration::from_millis(100), ..Limits::default() };
    let report = run(&with_body("(loop (br 0)) (i32.const 16)", ""), limits);
    assert_eq!(report.outcome, Outcome::TimedOut);
    assert!(report.wall >= Duration::from_millis(90) && report.wall < Duration::from_secs(2), "{:?}", report.wall);
}

#[test]
fn growing_memory_past_the_limit_ends_the_invocation() {
    let body = "(block (loop (br_if 1 (i32.eq (memory.grow (i32.const 16)) (i32.const -1))) (br 0))) unreachable";
    let limits = Limits { memory_bytes: 4 << 20, ..Limits::default() };
    let report = run(&with_body(body, ""), limits);
    assert_eq!(report.outcome, Outcome::MemoryExceeded, "{report:?}");
}

#[test]
fn a_trap_is_reported_and_the_runtime_carries_on() {
    let runtime = Runtime::new(16, 64 << 20).unwrap();
    let trapping = runtime.compile(&with_body("unreachable", "")).unwrap();
    let report = runtime.invoke(&trapping, "t", &event(), Limits::default(), Arc::new(NoServices));
    assert!(matches!(&report.outcome, Outcome::Trapped(m) if m.contains("unreachable")), "{:?}", report.outcome);
    let fine = runtime.compile(&fixture("ok")).unwrap();
    let again = runtime.invoke(&fine, "ok", &event(), Limits::default(), Arc::new(NoServices));
    assert_eq!(again.outcome, Outcome::Succeeded);
}

#[test]
fn modules_and_mismatched_components_are_refused_at_compile_with_a_reason() {
    let runtime = Runtime::new(4, 16 << 20).unwrap();
    let module = runtime.compile(b"(module)").err().unwrap().to_string();
    assert!(module.contains("not a WebAssembly component"), "{module}");
    let empty = runtime.compile(b"(component)").err().unwrap().to_string();
    assert!(empty.contains("event-handler world"), "{empty}");
    let junk = runtime.compile(b"\0asm\x01\0\0\0garbage").err().unwrap().to_string();
    assert!(junk.contains("not a WebAssembly component"), "{junk}");
    // wasi:http is linked; an import of it with the wrong shape is refused, naming it.
    let http = br#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance (export "handle" (func)))))"#;
    let http = runtime.compile(http).err().unwrap().to_string();
    assert!(http.contains("wasi:http/outgoing-handler"), "{http}");
    // Exporting wasi:http/incoming-handler makes it a proxy, judged by that world.
    let proxy = br#"(component (instance $i) (export "wasi:http/incoming-handler@0.2.0" (instance $i)))"#;
    let proxy = runtime.compile(proxy).err().unwrap().to_string();
    assert!(proxy.contains("wasi:http/proxy world"), "{proxy}");
}

#[test]
fn a_wasi_sleep_ends_at_the_deadline() {
    // An hour's wait on the WASI monotonic clock blocks the host thread, out
    // of the epoch's reach: it is cut short at the deadline instead.
    let limits = Limits { timeout: Duration::from_millis(200), ..Limits::default() };
    let report = run(&fixture("sleep"), limits);
    assert_eq!(report.outcome, Outcome::TimedOut, "{report:?}");
    assert!(report.wall >= Duration::from_millis(190) && report.wall < Duration::from_secs(2), "{:?}", report.wall);
}

#[test]
fn a_component_compiled_before_comes_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let first = Runtime::with_cache(4, 16 << 20, Some(dir.path())).unwrap();
    first.compile(&fixture("echo")).unwrap();
    assert_eq!(first.cache_counts(), (0, 1), "a miss, then compiled and stored");
    drop(first);
    // A new runtime (a restart) over the same directory: a hit, and it runs.
    let second = Runtime::with_cache(4, 16 << 20, Some(dir.path())).unwrap();
    let compiled = second.compile(&fixture("echo")).unwrap();
    assert_eq!(second.cache_counts(), (1, 0));
    let report = second.invoke(&compiled, "echo", &event(), Limits::default(), Arc::new(NoServices));
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:?}");
    assert_eq!(report.logs[0].message, "hello");
}

/// Counts its invocations in a global and answers with the count as its
/// error message (an error returned keeps the instance).
const COUNTING: &str = "(global.set $n (i32.add (global.get $n) (i32.const 1))) \
    (i32.store8 (i32.const 700) (i32.add (i32.const 48) (global.get $n))) \
    (i32.store8 (i32.const 16) (i32.const 1)) (i32.store (i32.const 20) (i32.const 700)) \
    (i32.store (i32.const 24) (i32.const 1)) (i32.const 16)";
const COUNTER: &str = "(global $n (mut i32) (i32.const 0))";

fn invoke_reusing(runtime: &Runtime, wat: &[u8], policy: Reuse, times: usize) -> Vec<Report> {
    let compiled = runtime.compile(wat).unwrap();
    let instances = runtime.instances(&compiled, policy);
    (0..times)
        .map(|_| {
            runtime.invoke_reusing(
                &compiled,
                &instances,
                "f",
                &event(),
                Limits::default(),
                Reach::services(Arc::new(NoServices)),
            )
        })
        .collect()
}

#[test]
fn a_warm_instance_is_reused_keeping_its_globals_until_it_is_retired() {
    let runtime = Runtime::new(16, 64 << 20).unwrap();
    let policy = Reuse { invocations: 3, ..Reuse::default() };
    let reports = invoke_reusing(&runtime, &with_body(COUNTING, COUNTER), policy, 4);
    let seen: Vec<(&str, bool)> = reports.iter().map(|r| (r.outcome.detail().unwrap(), r.cold)).collect();
    assert_eq!(seen, [("1", true), ("2", false), ("3", false), ("1", true)], "retired after 3 invocations");
    assert!(reports[0].instantiate > Duration::ZERO);
    assert_eq!(reports[1].instantiate, Duration::ZERO, "a warm start instantiates nothing");
}

#[test]
fn one_invocation_per_instance_turns_reuse_off() {
    let runtime = Runtime::new(16, 64 << 20).unwrap();
    let policy = Reuse { invocations: 1, ..Reuse::default() };
    let reports = invoke_reusing(&runtime, &with_body(COUNTING, COUNTER), policy, 3);
    assert!(reports.iter().all(|r| r.cold && r.outcome.detail() == Some("1")), "{reports:?}");
}

#[test]
fn an_instance_that_trapped_or_timed_out_is_not_reused() {
    let runtime = Runtime::new(16, 64 << 20).unwrap();
    // Traps on its first invocation only: a reused instance would succeed.
    let body = "(if (i32.eqz (global.get $n)) (then (global.set $n (i32.const 1)) unreachable)) \
                (i32.const 16)";
    let reports = invoke_reusing(&runtime, &with_body(body, COUNTER), Reuse::default(), 2);
    assert!(reports.iter().all(|r| r.cold && matches!(r.outcome, Outcome::Trapped(_))), "{reports:?}");

    let compiled = runtime.compile(&with_body("(loop (br 0)) (i32.const 16)", "")).unwrap();
    let instances = runtime.instances(&compiled, Reuse::default());
    let limits = Limits { timeout: Duration::from_millis(50), ..Limits::default() };
    let report =
        runtime.invoke_reusing(&compiled, &instances, "f", &event(), limits, Reach::services(Arc::new(NoServices)));
    assert_eq!((report.outcome, instances.idle()), (Outcome::TimedOut, 0));
}

#[test]
fn idle_instances_are_bounded_and_retired_when_idle_too_long() {
    let runtime = Runtime::new(16, 64 << 20).unwrap();
    let compiled = runtime.compile(&fixture("ok")).unwrap();
    let policy = Reuse { idle_max: 1, idle_for: Duration::from_millis(20), ..Reuse::default() };
    let instances = runtime.instances(&compiled, policy);
    let invoke = || {
        runtime.invoke_reusing(
            &compiled,
            &instances,
            "ok",
            &event(),
            Limits::default(),
            Reach::services(Arc::new(NoServices)),
        )
    };
    assert!(invoke().cold);
    assert_eq!(instances.idle(), 1);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!((instances.retire_idle(), instances.idle()), (1, 0));
    assert!(invoke().cold, "retired, so a fresh instance");
    assert!(!invoke().cold);
}

#[test]
fn memory_and_cpu_time_are_metered() {
    let report = run(&fixture("ok"), Limits::default());
    assert_eq!(report.memory_bytes, 64 << 10, "the fixture's one page");
    let body = "(drop (memory.grow (i32.const 3))) (i32.const 16)";
    assert_eq!(run(&with_body(body, ""), Limits::default()).memory_bytes, 4 * (64 << 10));
    let limits = Limits { timeout: Duration::from_millis(100), ..Limits::default() };
    let spinning = run(&with_body("(loop (br 0)) (i32.const 16)", ""), limits);
    assert!(spinning.cpu >= Duration::from_millis(50) && spinning.cpu <= spinning.wall, "{spinning:?}");
}

/// The flood fixture with its knobs set: rounds, bytes logged per round,
/// and whether it stops at the first refused emit.
fn flood(rounds: u32, log_bytes: u32, stop_on_error: bool) -> Vec<u8> {
    let wat = String::from_utf8(fixture("flood")).unwrap();
    let knobs = [
        ("(global $rounds i32 (i32.const 2000))", format!("(global $rounds i32 (i32.const {rounds}))")),
        ("(global $log_bytes i32 (i32.const 65536))", format!("(global $log_bytes i32 (i32.const {log_bytes}))")),
        (
            "(global $stop_on_error i32 (i32.const 1))",
            format!("(global $stop_on_error i32 (i32.const {}))", u8::from(stop_on_error)),
        ),
    ];
    knobs
        .iter()
        .fold(wat, |wat, (old, new)| {
            assert!(wat.contains(old), "{old}");
            wat.replace(old, new)
        })
        .into_bytes()
}

/// Bytes of one of the flood fixture's events: its type and 256 KiB.
const FLOOD_EVENT_BYTES: usize = "test.flood".len() + (256 << 10);

// Issue 16, finding 5: `emit` kept every event until the invocation ended
// (2,000 × 256 KiB: 500 MiB held by the host); now the emit past the
// budget is refused, to the guest, naming the limit.
#[test]
fn finding_5_an_emit_past_the_output_budget_is_refused_to_the_guest_naming_the_limit() {
    let report = run(&flood(2000, 0, true), Limits::default());
    let Outcome::Failed(message) = &report.outcome else { panic!("{:?}", report.outcome) };
    let (fits, max) = (3, Limits::default().output_bytes_max);
    let expected = format!(
        "output_bytes_max: this {FLOOD_EVENT_BYTES}-byte event would bring the invocation's output to {} bytes, \
         over its limit of {max}",
        (fits + 1) * FLOOD_EVENT_BYTES
    );
    assert!(message.starts_with(&expected), "{message}");
    assert!(report.outputs.is_empty());

    let limits = Limits { outputs_max: 5, output_bytes_max: 64 << 20, ..Limits::default() };
    let report = run(&flood(2000, 0, true), limits);
    let Outcome::Failed(message) = &report.outcome else { panic!("{:?}", report.outcome) };
    assert!(message.starts_with("outputs_max: an invocation produces at most 5 events, and this would be event 6"));
}

// Issue 16, finding 5: a guest that ignores the refusals gets nothing more
// kept (three events, then 1,997 refused), and the invocation produces nothing.
#[test]
fn finding_5_a_guest_ignoring_refused_emits_has_nothing_more_kept_and_ends_output_too_large() {
    // Each refused emit still copies its 256 KiB in and drops it: time enough
    // for 2,000 of them on a slow machine.
    let limits = Limits { timeout: Duration::from_secs(120), ..Limits::default() };
    let report = run(&flood(2000, 0, false), limits);
    let Outcome::OutputTooLarge(detail) = &report.outcome else { panic!("{:?}", report.outcome) };
    assert!(detail.starts_with("output_bytes_max: "), "{detail}");
    assert!(detail.ends_with(" (1997 events refused)"), "three of 2000 kept: {detail}");
    assert!(report.outputs.is_empty());
}

// Issue 16, finding 5: `log` had no byte budget (1,000 lines of any size
// were kept); now lines are cut, the budget holds as they come, and one
// last line says what was dropped.
#[test]
fn finding_5_log_lines_past_the_byte_budget_are_dropped_and_summed_up() {
    let limits = Limits { timeout: Duration::from_secs(120), ..Limits::default() };
    let report = run(&flood(300, 64 << 10, false), limits);
    let (marker, kept) = report.logs.split_last().unwrap();
    let kept_bytes: usize = kept.iter().map(|l| l.message.len()).sum();
    assert!(kept.iter().all(|l| l.message.len() == LOG_LINE_BYTES_MAX), "each 64 KiB line cut");
    assert_eq!(kept_bytes, LOG_BYTES_MAX, "the budget, filled with cut lines");
    assert_eq!(report.logs_dropped, 300 - kept.len());
    assert!(marker.message.starts_with(&format!("{} log lines (", report.logs_dropped)), "{}", marker.message);
}

/// The kv fixture setting a key of `key_bytes` to a value of `value_bytes`.
fn kv_set(key_bytes: u32, value_bytes: u32) -> Vec<u8> {
    let wat = String::from_utf8(fixture("kv")).unwrap();
    let wat = wat
        .replace("(global $key_bytes i32 (i32.const 7))", &format!("(global $key_bytes i32 (i32.const {key_bytes}))"));
    wat.replace(
        "(global $value_bytes i32 (i32.const 100))",
        &format!("(global $value_bytes i32 (i32.const {value_bytes}))"),
    )
    .into_bytes()
}

// Issue 16, finding 5: `kv.set` took a value and key of any size; now the
// guest gets an error naming the limit, and nothing reaches the store.
#[test]
fn finding_5_kv_set_past_the_value_or_key_size_is_refused_naming_the_limit() {
    let limits = Limits { kv_value_bytes_max: 1000, ..Limits::default() };
    assert_eq!(run(&kv_set(7, 1000), limits).outcome, Outcome::Succeeded);
    let Outcome::Failed(message) = run(&kv_set(7, 1001), limits).outcome else { panic!() };
    assert!(
        message.starts_with("kv_value_bytes_max: a value holds at most 1000 bytes; this one has 1001"),
        "{message}"
    );
    let Outcome::Failed(message) = run(&kv_set(KV_KEY_BYTES_MAX as u32 + 1, 1), limits).outcome else { panic!() };
    assert!(message.starts_with("kv_key_bytes_max: "), "{message}");
}
