//! The runtime against hand-written WAT components: outcomes, limits, timings.

use std::sync::Arc;
use std::time::Duration;

use glassbox_runtime::{Event, Limits, NoServices, Outcome, Runtime};

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
