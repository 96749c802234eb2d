//! The runtime against hand-written WAT components: outcomes, limits, timings.

use std::sync::Arc;
use std::time::Duration;

use glassbox_runtime::{Event, Limits, NoServices, Outbound, Outcome, Report, Reuse, Runtime};

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
                Arc::new(NoServices),
                Outbound::default(),
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
        runtime.invoke_reusing(&compiled, &instances, "f", &event(), limits, Arc::new(NoServices), Outbound::default());
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
            Arc::new(NoServices),
            Outbound::default(),
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
