//! What the binary's end-to-end tests share: `glassbox serve` as a child
//! process on free ports, and the CLI run against it.

#![allow(dead_code)] // Each test crate uses its own part of this.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub const TOKEN: &str = "gbx_cli_test_token";

pub fn glassbox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_glassbox"))
}

/// A `glassbox serve` child process, killed when dropped.
pub struct Served {
    pub child: Child,
    pub url: String,
    /// The MQTT listener, `host:port`.
    pub mqtt: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(data_dir: &Path) -> Served {
    serve_with(data_dir, &[])
}

/// `glassbox serve` with more flags.
pub fn serve_with(data_dir: &Path, extra: &[&str]) -> Served {
    let mut child = glassbox()
        .args(["serve", "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("GLASSBOX_ADMIN_TOKEN", TOKEN)
        .env("GLASSBOX_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("glassbox serve starts");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        let line = line.expect("serve prints lines");
        if line.contains("ready") {
            let field = |name: &str| {
                let found = line.split_whitespace().find_map(|w| w.strip_prefix(name));
                found.unwrap_or_else(|| panic!("ready line names {name}: {line}")).to_string()
            };
            return Served { url: field("http="), mqtt: field("mqtt="), child };
        }
    }
    let _ = child.kill();
    let status = child.wait();
    panic!("glassbox serve exited before it was ready: {status:?}");
}

/// Runs a CLI command against `served`, expecting success; returns stdout.
pub fn cli(served: &Served, args: &[&str]) -> String {
    let output =
        glassbox().args(args).env("GLASSBOX_SERVER", &served.url).env("GLASSBOX_TOKEN", TOKEN).output().unwrap();
    assert!(output.status.success(), "glassbox {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

pub fn cli_json(served: &Served, args: &[&str]) -> Value {
    let out = cli(served, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("glassbox {args:?} printed no JSON ({e}): {out}"))
}
