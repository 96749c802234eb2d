//! The demo's scripted incidents, each announced as it happens: things
//! `glassbox diagnose` should find and explain by itself.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Roles, TICK, deploy, relay};
use crate::client::Client;
use crate::simulate::Faults;

/// When each happens, in incident gaps after the first (`--incident-gap`):
/// apart enough that each episode has calmed before the next begins.
pub(super) const RECURSION_LOOP: u32 = 0;
pub(super) const SLOW_VERSION: u32 = 1;
pub(super) const ROLLBACK: u32 = 2;
pub(super) const SILENT_DEVICE: u32 = 7;

/// How long after the demo's start the incident `units` gaps after the
/// first happens.
pub(super) fn when(after: Duration, gap: Duration, units: u32) -> Duration {
    after + gap * units
}

/// Count-down steps of the slow version: around 10 ms of work.
const SLOW_SPIN: u32 = 10_000_000;

/// The scripted incidents, each announced as it happens.
pub(super) async fn script(client: Client, faults: Arc<Mutex<Faults>>, roles: Roles, after: Duration, gap: Duration) {
    let started = tokio::time::Instant::now();
    let at = |units: u32| started + when(after, gap, units);
    let announce = |what: &str, hint: &str| {
        let minutes = started.elapsed().as_secs_f64() / 60.0;
        println!("\n[demo +{minutes:.1} min] {what}\n    {hint}");
    };

    tokio::time::sleep_until(at(RECURSION_LOOP)).await;
    match deploy(&client, "ticker", relay("demo.tick", 0, "tick"), &[TICK, "event:demo.tick"]).await {
        Ok(v) => announce(
            &format!("incident 1: ticker v{} also triggers on its own output: a recursion loop", v["version"]),
            "it stops at hop 16 with a dead letter each time: glassbox events query --type function.dead_letter",
        ),
        Err(e) => eprintln!("demo: incident 1 could not be scripted: {e:#}"),
    }

    tokio::time::sleep_until(at(SLOW_VERSION)).await;
    let slow = relay("telemetry.accepted", SLOW_SPIN, "telemetry accepted");
    match deploy(&client, "telemetry", slow, &["mqtt:devices/+/telemetry"]).await {
        Ok(v) => announce(
            &format!("incident 2: telemetry v{} is deployed, a much slower build", v["version"]),
            "glassbox functions invocations telemetry; glassbox diagnose --function telemetry",
        ),
        Err(e) => eprintln!("demo: incident 2 could not be scripted: {e:#}"),
    }
    tokio::time::sleep_until(at(ROLLBACK)).await;
    match client.post("/api/v1/functions/telemetry/rollback", "application/json", String::new()).await {
        Ok(_) => announce(
            "incident 2, later: someone noticed and rolled telemetry back",
            "glassbox functions versions telemetry; glassbox diagnose shows the deploy and the rollback",
        ),
        Err(e) => eprintln!("demo: the rollback of incident 2 could not be scripted: {e:#}"),
    }

    tokio::time::sleep_until(at(SILENT_DEVICE)).await;
    let silenced = faults.lock().map(|mut f| f.apply(&format!("silent {}", roles.silenced)));
    if silenced.is_ok() {
        announce(
            &format!("incident 3: {} stays connected but stops reporting", roles.silenced),
            &format!("glassbox devices inspect {}; glassbox diagnose --device {}", roles.silenced, roles.silenced),
        );
    }
}
