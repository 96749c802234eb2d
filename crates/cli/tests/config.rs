//! `glassbox config example` and `glassbox config show`, run as a user
//! would: the real binary, a clean environment, a directory of its own.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{cli, glassbox, serve_with};
use serde_json::{Value, json};

/// `glassbox config …` in `dir` with only `env` set (no stray GLASSBOX_*).
fn config(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = glassbox();
    command.arg("config").args(args).current_dir(dir).env_clear().envs(env.iter().copied());
    command
}

fn run(mut command: Command) -> String {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn shown(dir: &Path, flags: &[&str], env: &[(&str, &str)]) -> Value {
    let args: Vec<&str> = ["show"].into_iter().chain(flags.iter().copied()).chain(["--json"]).collect();
    serde_json::from_str(&run(config(dir, &args, env))).unwrap()
}

/// The entry of `key` in a `config show --json` answer.
fn entry<'a>(shown: &'a Value, key: &str) -> &'a Value {
    let values = shown["values"].as_array().expect("values");
    values.iter().find(|e| e["key"] == key).unwrap_or_else(|| panic!("no {key} in {shown}"))
}

#[test]
fn the_printed_example_is_the_defaults_and_serve_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let example = run(config(dir.path(), &["example"], &[]));
    let file = dir.path().join("example.toml");
    std::fs::write(&file, &example).unwrap();

    let defaults = shown(dir.path(), &[], &[]);
    let from_file = shown(dir.path(), &["--config", file.to_str().unwrap()], &[]);
    let values = |shown: &Value| -> Vec<(Value, Value)> {
        shown["values"].as_array().unwrap().iter().map(|e| (e["key"].clone(), e["value"].clone())).collect()
    };
    assert_eq!(values(&from_file), values(&defaults), "the example holds exactly the defaults");
    for value in from_file["values"].as_array().unwrap() {
        let expected = if value["key"] == "node" { "default" } else { "file" };
        assert_eq!(value["source"]["kind"], expected, "{value}");
    }

    // `serve --config` takes it unchanged (the harness adds ports and a data dir).
    let data = dir.path().join("data");
    let served = serve_with(&data, &["--config", file.to_str().unwrap()]);
    let events: Value = serde_json::from_str(&cli(&served, &["events", "query", "--json"])).unwrap();
    assert!(events.is_array() || events.is_object(), "{events}");
}

#[test]
fn each_value_shows_its_source_env_over_file_and_flag_over_env() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("glassbox.toml");
    std::fs::write(
        &file,
        "[recorder]\nretention = \"1d\"\n[http]\nlisten = \"127.0.0.1:7001\"\n[mqtt]\nlisten = \"127.0.0.1:1801\"\n",
    )
    .unwrap();
    let env = [("GLASSBOX_HTTP_LISTEN", "127.0.0.1:7002"), ("GLASSBOX_MQTT_LISTEN", "127.0.0.1:1802")];
    // ./glassbox.toml is read without --config, as `serve` does.
    let shown = shown(dir.path(), &["--http", "127.0.0.1:7003"], &env);
    assert_eq!(shown["file"], "glassbox.toml");
    let file_source = json!({ "kind": "file", "path": "glassbox.toml" });
    assert_eq!(entry(&shown, "recorder.retention")["source"], file_source);
    assert_eq!(entry(&shown, "recorder.retention")["value"], "1day");
    assert_eq!(entry(&shown, "mqtt.listen")["value"], "127.0.0.1:1802", "env wins over the file");
    assert_eq!(entry(&shown, "mqtt.listen")["source"], json!({ "kind": "env", "var": "GLASSBOX_MQTT_LISTEN" }));
    assert_eq!(entry(&shown, "http.listen")["value"], "127.0.0.1:7003", "a flag wins over env");
    assert_eq!(entry(&shown, "http.listen")["source"], json!({ "kind": "flag", "flag": "--http" }));
    assert_eq!(entry(&shown, "recorder.dedup_window")["source"], json!({ "kind": "default" }));

    let text = run(config(dir.path(), &["show", "--http", "127.0.0.1:7003"], &env));
    let line =
        |key: &str| text.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("{key}: {text}")).to_string();
    assert!(line("http.listen ").ends_with("flag --http"), "{text}");
    assert!(line("mqtt.listen ").ends_with("env GLASSBOX_MQTT_LISTEN"), "{text}");
    assert!(line("recorder.retention ").ends_with("file glassbox.toml"), "{text}");
    assert!(line("recorder.dedup_window ").ends_with("default"), "{text}");
}

#[test]
fn secrets_are_shown_as_set_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("GLASSBOX_ADMIN_TOKEN", "gbx_very_secret_admin_token"),
        ("GLASSBOX_DIAGNOSE_WEBHOOK", "https://hooks.example/very_secret_path"),
    ];
    let json = run(config(dir.path(), &["show", "--json"], &env));
    let text = run(config(dir.path(), &["show"], &env));
    for printed in [&json, &text] {
        assert!(!printed.contains("very_secret"), "{printed}");
    }
    let shown: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        shown["admin_token"],
        json!({ "set": true, "source": { "kind": "env", "var": "GLASSBOX_ADMIN_TOKEN" } })
    );
    assert_eq!(entry(&shown, "diagnose.webhook")["value"], "[redacted]");
    let token = text.lines().find(|l| l.starts_with("admin token")).unwrap();
    assert!(token.contains("set") && token.ends_with("env GLASSBOX_ADMIN_TOKEN"), "{token}");

    let unset: Value = serde_json::from_str(&run(config(dir.path(), &["show", "--json"], &[]))).unwrap();
    assert_eq!(unset["admin_token"]["set"], false);
}

#[test]
fn a_bad_value_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = config(dir.path(), &["show"], &[("GLASSBOX_HTTP_LISTEN", "nowhere")]).output().unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("http.listen = \"nowhere\" is not an address"), "{err}");
}

/// systemd SIGKILLs a stop that outlasts `TimeoutStopSec`: the unit must
/// leave the server its whole `shutdown_grace` (plus the recorder's flush).
#[test]
fn the_service_unit_waits_longer_than_the_shutdown_grace() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib/glassbox.service")).unwrap();
    let setting = |name: &str| {
        let line = unit.lines().find_map(|l| l.strip_prefix(&format!("{name}=")));
        line.unwrap_or_else(|| panic!("the unit sets {name}")).trim().to_string()
    };
    let timeout = humantime::parse_duration(&setting("TimeoutStopSec")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let defaults = shown(dir.path(), &[], &[]);
    let grace = humantime::parse_duration(entry(&defaults, "shutdown_grace")["value"].as_str().unwrap()).unwrap();
    assert!(timeout >= grace + Duration::from_secs(10), "TimeoutStopSec {timeout:?} vs shutdown_grace {grace:?}");
    assert!(setting("ExecStart").contains("serve --config /etc/glassbox/glassbox.toml"), "{unit}");
    assert_eq!(setting("StateDirectory"), "glassbox");
}
