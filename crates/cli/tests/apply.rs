//! `glassbox apply`: a manifest's plan, then its changes, through the real
//! binary against a real server.

mod common;

use std::path::Path;

use common::{TOKEN, cli, cli_json, glassbox, serve};
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../runtime/tests/fixtures");

fn write_manifest(dir: &Path, text: &str) -> String {
    let path = dir.join("glassbox.app.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn manifest(echo_timeout: &str) -> String {
    format!(
        r#"app = "shop"

[functions.echo]
component = "echo.wat"
triggers = ["event:order.*"]
timeout = "{echo_timeout}"
feature = "orders"

[functions.flaky]
component = "fail.wat"
triggers = ["mqtt:shop/+/till"]
retries = 0
"#
    )
}

fn changes(applied: &Value) -> Vec<(String, String)> {
    let plan = applied["plan"].as_array().unwrap();
    plan.iter().map(|p| (p["function"].as_str().unwrap().into(), p["change"].as_str().unwrap().into())).collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn a_manifest_is_planned_applied_updated_and_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("data"));
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    for f in ["echo.wat", "fail.wat"] {
        std::fs::copy(Path::new(FIXTURES).join(f), app.join(f)).unwrap();
    }
    // A function deployed by hand: not the app's, never pruned by it.
    let echo = format!("{FIXTURES}/echo.wat");
    cli(&served, &["functions", "deploy", &echo, "--name", "by-hand", "--trigger", "event:x.*"]);

    // A dry run plans both as created and changes nothing.
    let file = write_manifest(&app, &manifest("2s"));
    let planned = cli_json(&served, &["apply", &file, "--dry-run", "--json"]);
    assert_eq!(changes(&planned), pairs(&[("echo", "create"), ("flaky", "create")]));
    let text = cli(&served, &["apply", &file, "--dry-run"]);
    assert!(text.contains("2 to create, 0 to update, 0 unchanged, 0 to delete"), "{text}");
    let listed = cli_json(&served, &["functions", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "the dry run deployed nothing: {listed}");

    // Applied: both live, with the manifest's options and the app named.
    let applied = cli_json(&served, &["apply", &file, "--json"]);
    assert_eq!(applied["deployed"], json!([{"name": "echo", "version": 1}, {"name": "flaky", "version": 1}]));
    let versions = cli_json(&served, &["functions", "versions", "echo", "--json"]);
    let spec = &versions[0]["spec"];
    assert_eq!(
        (spec["timeout_ms"].clone(), spec["feature"].clone(), spec["app"].clone()),
        (json!(2000), json!("orders"), json!("shop"))
    );

    // Again: nothing to do.
    let again = cli(&served, &["apply", &file]);
    assert!(again.contains("= echo") && again.contains("nothing to apply"), "{again}");

    // A changed option is an update that names what differs.
    let file = write_manifest(&app, &manifest("3s"));
    let text = cli(&served, &["apply", &file]);
    assert!(text.contains("~ echo   update (live: version 1): timeout_ms 2000 → 3000"), "{text}");
    assert!(text.contains("updated echo: version 2 is live") && text.contains("= flaky"), "{text}");

    // A function dropped from the manifest is deleted; the one by hand stays.
    let only_echo = manifest("3s").split("[functions.flaky]").next().unwrap().to_string();
    let file = write_manifest(&app, &only_echo);
    let applied = cli_json(&served, &["apply", &file, "--json"]);
    assert_eq!(changes(&applied), pairs(&[("echo", "unchanged"), ("flaky", "delete")]));
    assert_eq!(applied["deleted"], json!(["flaky"]));
    let listed = cli_json(&served, &["functions", "list", "--json"]);
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["by-hand", "echo"]);
}

#[test]
fn apply_refuses_what_it_cannot_apply_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("data"));
    let run = |args: &[&str]| {
        let output =
            glassbox().args(args).env("GLASSBOX_SERVER", &served.url).env("GLASSBOX_TOKEN", TOKEN).output().unwrap();
        assert!(!output.status.success(), "glassbox {args:?} should fail");
        String::from_utf8(output.stderr).unwrap()
    };
    let missing = write_manifest(dir.path(), &manifest("2s"));
    let error = run(&["apply", &missing]);
    assert!(error.contains("reading the component of echo") && error.contains("build it first"), "{error}");

    std::fs::copy(Path::new(FIXTURES).join("echo.wat"), dir.path().join("echo.wat")).unwrap();
    std::fs::copy(Path::new(FIXTURES).join("fail.wat"), dir.path().join("fail.wat")).unwrap();
    let bad = write_manifest(dir.path(), &manifest("forever"));
    let error = run(&["apply", &bad, "--dry-run"]);
    assert!(error.contains("[functions.echo]") && error.contains("timeout \"forever\""), "{error}");
    let listed = cli_json(&served, &["functions", "list", "--json"]);
    assert_eq!(listed, json!([]), "a failed plan applied nothing");

    let misspelt =
        write_manifest(dir.path(), "app = \"shop\"\n[functions.echo]\ncomponent = \"echo.wat\"\ntrigger = \"x\"\n");
    let error = run(&["apply", &misspelt]);
    assert!(error.contains("unknown field `trigger`, expected one of"), "{error}");
}

#[test]
fn a_deploy_whose_component_does_not_match_its_digest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("data"));
    let body = std::fs::read(Path::new(FIXTURES).join("echo.wat")).unwrap();
    let url = format!("{}/api/v1/functions/echo?trigger=event:a.*&digest=sha256:{}", served.url, "0".repeat(64));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (status, error) = runtime.block_on(async {
        let response = reqwest::Client::new().post(url).bearer_auth(TOKEN).body(body).send().await.unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    });
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], "digest_mismatch", "{error}");
}

/// The examples' manifest plans cleanly: every component built (by
/// scripts/test, as examples/*/build.sh), every trigger and route valid.
/// (Deploying the five compiles ~55 MiB of components: the examples test
/// of the server crate does that once; here the plan is what is checked.)
#[test]
fn the_examples_manifest_plans_every_example_function() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("data"));
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/glassbox.app.toml");
    let planned = cli_json(&served, &["apply", file, "--dry-run", "--json"]);
    let want = [
        ("forward", "create"),
        ("hello", "create"),
        ("js-telemetry", "create"),
        ("python-telemetry", "create"),
        ("rust-telemetry", "create"),
    ];
    assert_eq!(changes(&planned), pairs(&want), "build the examples first: scripts/test does");
}
