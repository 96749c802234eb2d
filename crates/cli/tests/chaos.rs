//! The fault campaign's short form: `scripts/chaos` with 5 SIGKILLs and a
//! SIGTERM under MQTT QoS 1 load, against this build's binary — a function
//! on the trigger and an offline persistent subscriber; it fails if any
//! acknowledged message is not stored once, given one outcome, and
//! delivered once (see the script's header). `--nocapture` shows its rounds
//! and accounting.

use std::process::Command;

#[test]
fn acknowledged_work_survives_kills_and_stops() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let output = Command::new("python3")
        .arg(format!("{root}/scripts/chaos"))
        .args(["--bin", env!("CARGO_BIN_EXE_glassbox"), "--kills", "6", "--sigterm-every", "6"])
        .args(["--seconds-min", "0.3", "--seconds-max", "1.0"])
        .output()
        .expect("python3 runs scripts/chaos");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && stdout.contains("chaos: ok"), "the campaign failed: see its accounting above");
    assert!(stdout.contains("(5 SIGKILL, 1 SIGTERM)"), "{stdout}");
}
