//! `glassbox new js|python|rust NAME` with the real binary: the scaffold's
//! files and manifest entry, its refusals, and its build script making a
//! component that deploys and runs. The Rust one always builds (offline:
//! the crates of `examples/rust-telemetry`, whose target dir it shares);
//! the JavaScript and Python ones build where `scripts/test` installed
//! their tools for the examples.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

mod common;

use common::{Served, TOKEN, cli, cli_json, glassbox, serve};

fn new(cwd: &Path, args: &[&str]) -> Output {
    glassbox().arg("new").args(args).current_dir(cwd).output().unwrap()
}

fn created(cwd: &Path, args: &[&str]) -> String {
    let out = new(cwd, args);
    assert!(out.status.success(), "glassbox new {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn refused(cwd: &Path, args: &[&str]) -> String {
    let out = new(cwd, args);
    assert!(!out.status.success(), "glassbox new {args:?} should be refused");
    String::from_utf8(out.stderr).unwrap()
}

fn manifest(cwd: &Path) -> toml::Table {
    std::fs::read_to_string(cwd.join("glassbox.app.toml")).unwrap().parse().unwrap()
}

fn example(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(path)
}

fn build(script: &Path, envs: &[(&str, &Path)]) {
    let out = Command::new(script).envs(envs.iter().map(|(k, v)| (*k, *v))).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{}: {said}", script.display());
}

fn is_component(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes.starts_with(b"\0asm\x0d\0\x01\0"))
}

/// The first event of `ty`, once there is one (10 s at most).
fn first_event(served: &Served, ty: &str) -> Value {
    for _ in 0..200 {
        let found = cli_json(served, &["events", "query", "--type", ty, "--json"]);
        if let Some(event) = found.as_array().and_then(|a| a.first()) {
            return event.clone();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no {ty} event")
}

#[test]
fn new_rust_scaffolds_a_function_that_builds_deploys_and_runs_on_device_messages() {
    let work = tempfile::tempdir().unwrap();
    let printed = created(work.path(), &["rust", "probe"]);
    assert!(printed.contains("probe/build.sh") && printed.contains("glassbox apply"), "{printed}");
    for file in ["Cargo.toml", "Cargo.lock", "src/lib.rs", "build.sh", "wit/function.wit", "README.md", ".gitignore"] {
        assert!(work.path().join("probe").join(file).is_file(), "{file}");
    }
    let table = manifest(work.path());
    let app = work.path().file_name().unwrap().to_str().unwrap();
    assert_eq!(table["app"].as_str(), Some(app), "a new manifest is named after its directory");
    let entry = &table["functions"]["probe"];
    assert_eq!(entry["component"].as_str(), Some("probe/probe.wasm"));
    assert_eq!(entry["build"].as_str(), Some("probe/build.sh"));
    assert_eq!(entry["triggers"].as_array().unwrap()[0].as_str(), Some("mqtt:devices/+/probe"));

    // What a newcomer runs next: `glassbox apply --build` in that directory runs
    // the build script (sharing the example's compiled crates), then deploys.
    let data = tempfile::tempdir().unwrap();
    let served = serve(data.path());
    let applied = glassbox()
        .args(["apply", "--build"])
        .current_dir(work.path())
        .env("GLASSBOX_SERVER", &served.url)
        .env("GLASSBOX_TOKEN", TOKEN)
        .env("CARGO_TARGET_DIR", example("rust-telemetry/target"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&applied.stdout);
    assert!(applied.status.success(), "{said}{}", String::from_utf8_lossy(&applied.stderr));
    assert!(said.contains("+ probe  create") && said.contains("created probe: version 1 is live"), "{said}");
    assert!(is_component(&work.path().join("probe/probe.wasm")), "wasm32-wasip2 links a component");
    let secret = cli_json(&served, &["devices", "create", "d1", "--json"])["secret"].as_str().unwrap().to_string();
    let port = served.mqtt.rsplit(':').next().unwrap();
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", port, "-i", "d1", "-u", "d1", "-P", &secret])
        .args(["-t", "devices/d1/probe", "-q", "1", "-m", r#"{"n":1}"#])
        .status()
        .expect("mosquitto_pub must be installed (scripts/test installs it)");
    assert!(status.success());
    let seen = first_event(&served, "probe.seen");
    assert_eq!((seen["data"]["device"].as_str(), seen["data"]["bytes"].as_u64()), (Some("d1"), Some(7)), "{seen}");
    let invocations = cli_json(&served, &["functions", "invocations", "probe", "--json"]);
    let logs = invocations[0]["logs"].to_string();
    assert!(logs.contains(r#"d1 sent {\"n\":1}"#), "{logs}");
}

#[test]
fn new_refuses_a_taken_name_an_occupied_directory_and_a_bad_name() {
    let work = tempfile::tempdir().unwrap();
    created(work.path(), &["python", "one"]);
    let taken = refused(work.path(), &["js", "one", "--dir", "elsewhere"]);
    assert!(taken.contains("has a function \"one\" already"), "{taken}");
    std::fs::create_dir(work.path().join("busy")).unwrap();
    std::fs::write(work.path().join("busy/keep.txt"), "mine").unwrap();
    let occupied = refused(work.path(), &["rust", "two", "--dir", "busy"]);
    assert!(occupied.contains("busy exists and is not empty"), "{occupied}");
    assert_eq!(std::fs::read_to_string(work.path().join("busy/keep.txt")).unwrap(), "mine", "nothing overwritten");
    let bad = refused(work.path(), &["rust", "no/slash"]);
    assert!(bad.contains("must be 1-64 letters, digits"), "{bad}");
    let functions = manifest(work.path())["functions"].as_table().unwrap().clone();
    assert_eq!(functions.keys().collect::<Vec<_>>(), ["one"], "the refusals added nothing");
}

#[test]
fn new_js_and_python_scaffold_their_build_and_build_where_the_tools_are() {
    let work = tempfile::tempdir().unwrap();
    created(work.path(), &["js", "jsfn", "--dir", "fns/jsfn"]);
    created(work.path(), &["python", "pyfn"]);
    for file in ["fns/jsfn/handler.js", "fns/jsfn/package.json", "fns/jsfn/build.sh", "fns/jsfn/wit/function.wit"] {
        assert!(work.path().join(file).is_file(), "{file}");
    }
    for file in ["pyfn/app.py", "pyfn/requirements.txt", "pyfn/build.sh", "pyfn/wit/function.wit"] {
        assert!(work.path().join(file).is_file(), "{file}");
    }
    let table = manifest(work.path());
    assert_eq!(table["functions"]["jsfn"]["component"].as_str(), Some("fns/jsfn/jsfn.wasm"));
    assert_eq!(table["functions"]["pyfn"]["build"].as_str(), Some("pyfn/build.sh"));
    let text = std::fs::read_to_string(work.path().join("glassbox.app.toml")).unwrap();
    assert_eq!(text.matches("app = ").count(), 1, "{text}");

    // Built with the tools scripts/test installed for the examples, if it did.
    let tools = [
        ("jsfn", "fns/jsfn", "node_modules", example("js-telemetry/node_modules")),
        ("pyfn", "pyfn", ".tools", example("python-telemetry/.tools")),
    ];
    let built: Vec<(&str, PathBuf)> = tools
        .iter()
        .filter(|(.., installed)| installed.is_dir())
        .map(|(name, dir, link, installed)| {
            let dir = work.path().join(dir);
            std::os::unix::fs::symlink(installed, dir.join(link)).unwrap();
            build(&dir.join("build.sh"), &[]);
            let component = dir.join(format!("{name}.wasm"));
            assert!(is_component(&component), "{name}");
            (*name, component)
        })
        .collect();
    if built.is_empty() {
        return eprintln!("no componentize-js or componentize-py installed for the examples: scaffolds not built");
    }
    let data = tempfile::tempdir().unwrap();
    let served = serve(data.path());
    for (name, component) in &built {
        let trigger = format!("event:check.{name}");
        cli(&served, &["functions", "deploy", component.to_str().unwrap(), "--name", name, "--trigger", &trigger]);
        let ty = format!("check.{name}");
        cli(&served, &["events", "send", "--source", "test", "--type", &ty, "--device", "d9", "--data", "{}"]);
        let seen = first_event(&served, &format!("{name}.seen"));
        assert_eq!((seen["data"]["device"].as_str(), seen["data"]["bytes"].as_u64()), (Some("d9"), Some(2)), "{seen}");
    }
}
