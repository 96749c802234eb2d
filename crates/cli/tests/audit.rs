//! `glassbox audit …` as a newcomer meets it (docs/audit.md): changes made
//! with named tokens, each seen in `audit log` with who, where and when;
//! then the data directory's audit table edited by hand with `sqlite3`
//! (a row changed, a row deleted, two rows swapped, the newest row cut
//! off) and `glassbox audit verify --data-dir` naming what was done.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Served, TOKEN, cli, glassbox, serve};
use serde_json::Value;

/// Runs the CLI with another token.
fn as_token(served: &Served, token: &str, args: &[&str]) -> Output {
    glassbox().args(args).env("GLASSBOX_SERVER", &served.url).env("GLASSBOX_TOKEN", token).output().unwrap()
}

fn token(served: &Served, name: &str, role: &str) -> String {
    let created: Value =
        serde_json::from_str(&cli(served, &["tokens", "create", name, "--role", role, "--json"])).unwrap();
    created["token"].as_str().unwrap().to_string()
}

fn succeeded(output: Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn verify_offline(dir: &Path, extra: &[&str]) -> Output {
    glassbox().args(["audit", "verify", "--data-dir"]).arg(dir).args(extra).output().unwrap()
}

/// A copy of the stopped server's data directory with `sql` run on its recorder.
fn tampered(data: &Path, sql: &str) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let copied = Command::new("cp").arg("-a").arg(format!("{}/.", data.display())).arg(copy.path()).status().unwrap();
    assert!(copied.success());
    let edited = Command::new("sqlite3").arg(copy.path().join("recorder.db")).arg(sql).output().unwrap();
    assert!(edited.status.success(), "sqlite3: {}", String::from_utf8_lossy(&edited.stderr));
    copy
}

#[track_caller]
fn refused(output: Output, names: &str) {
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "verify fails: {said}");
    assert!(said.contains(names), "names {names:?}: {said}");
}

#[test]
fn changes_are_entered_with_who_where_and_when_and_hand_edits_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path());
    let provisioner = token(&served, "prov", "device-provisioner");
    let operator = token(&served, "ops", "operator");
    succeeded(as_token(&served, &provisioner, &["devices", "create", "th-1"]));
    succeeded(as_token(&served, &provisioner, &["devices", "create", "th-2"]));
    succeeded(as_token(&served, &operator, &["devices", "disable", "th-1"]));
    succeeded(as_token(&served, &operator, &["devices", "enable", "th-1"]));

    let log = succeeded(as_token(&served, &operator, &["audit", "log", "--json"]));
    let entries: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let seen: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap(), e["target"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("admin", "token.create", "token:prov"),
            ("admin", "token.create", "token:ops"),
            ("prov", "device.create", "device:th-1"),
            ("prov", "device.create", "device:th-2"),
            ("ops", "device.disable", "device:th-1"),
            ("ops", "device.enable", "device:th-1"),
        ]
    );
    let disabled = &entries[4];
    assert_eq!(disabled["seq"], 5);
    assert_eq!(disabled["actor_kind"], "token");
    assert_eq!(disabled["auth"]["method"], "bearer_token");
    assert_eq!(disabled["auth"]["key_id"], "ops");
    assert!(disabled["source"].as_str().unwrap().starts_with("127.0.0.1:"), "{disabled}");
    assert!(disabled["time"].is_string() && disabled["node"].is_string(), "{disabled}");
    let table = succeeded(as_token(&served, &operator, &["audit", "log", "--actor", "ops"]));
    assert!(table.contains("device.disable") && !table.contains("device.create"), "{table}");

    let viewer = token(&served, "watch", "viewer");
    let denied = as_token(&served, &viewer, &["audit", "log"]);
    assert!(!denied.status.success(), "a viewer may not read the audit log");

    let kept = cli(&served, &["audit", "checkpoint"]);
    assert!(kept.lines().nth(1) == Some("7"), "signed over the 7 entries: {kept}");
    let kept_file = dir.path().join("..").join(format!("kept-{}.txt", std::process::id()));
    std::fs::write(&kept_file, &kept).unwrap();
    assert!(cli(&served, &["audit", "verify"]).starts_with("ok: 7 entries"));
    let proved = as_token(&served, TOKEN, &["audit", "prove", "5"]);
    assert!(String::from_utf8_lossy(&proved.stderr).contains("ok: entry 5 is included"));
    drop(served);

    let untouched = succeeded(verify_offline(dir.path(), &["--checkpoint", kept_file.to_str().unwrap()]));
    assert!(untouched.starts_with("ok: 7 entries"), "{untouched}");

    let edited = tampered(dir.path(), "UPDATE audit_log SET actor = 'mallory' WHERE seq = 5");
    refused(verify_offline(edited.path(), &[]), "entry 5 does not match its hash");
    let deleted = tampered(dir.path(), "DELETE FROM audit_log WHERE seq = 3");
    refused(verify_offline(deleted.path(), &[]), "entry 3 is missing");
    let swapped = tampered(
        dir.path(),
        "UPDATE audit_log SET seq = -1 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = 4;
         UPDATE audit_log SET seq = 4 WHERE seq = -1;",
    );
    refused(verify_offline(swapped.path(), &[]), "entry 3 does not match its hash");
    let cut = tampered(dir.path(), "DELETE FROM audit_log WHERE seq = 7; DELETE FROM audit_checkpoints;");
    refused(
        verify_offline(cut.path(), &["--checkpoint", kept_file.to_str().unwrap()]),
        "checkpoint 7 was signed over 7 entries, but the log has 6",
    );
    let _ = std::fs::remove_file(kept_file);
}

#[test]
fn verify_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let output = verify_offline(dir.path(), &[]);
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("checkpoint.pub") || said.contains("recorder.db"), "{said}");
}

#[test]
fn audit_help_teaches_with_examples() {
    let output = glassbox().args(["audit", "verify", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for taught in ["--data-dir ./glassbox-data", "glassbox audit checkpoint > kept.txt", "--key"] {
        assert!(help.contains(taught), "{taught} in:\n{help}");
    }
}
