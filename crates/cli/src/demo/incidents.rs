//! The demo's scripted incidents, each announced as it happens: things
//! `glassbox diagnose` should find and explain by itself.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use glassbox_diagnose::GROUP_WINDOW_SECONDS;

use super::{Roles, TICK, deploy, relay};
use crate::client::Client;
use crate::simulate::Faults;

/// From the rollback of the slow version to the silent device. The device
/// feeds `telemetry`, and diagnose joins an episode to an incident of a
/// related subject whose latest episode ended less than
/// [`GROUP_WINDOW_SECONDS`] before: the slow version's latency takes a
/// minute or two to calm after the rollback, then the window must pass,
/// or the silence would be part of incident 2.
const SETTLE: Duration = Duration::from_secs(GROUP_WINDOW_SECONDS as u64 + 180);

/// When each scripted step happens, from the demo's start.
#[derive(Clone, Copy)]
pub(super) struct Schedule {
    pub(super) recursion_loop: Duration,
    pub(super) slow_version: Duration,
    pub(super) rollback: Duration,
    pub(super) silent_device: Duration,
}

impl Schedule {
    /// The first incident `after` the start, the slow version one `gap`
    /// later and its rollback one more, the silent device once that has
    /// settled.
    pub(super) fn new(after: Duration, gap: Duration) -> Self {
        let rollback = after + gap * 2;
        Self { recursion_loop: after, slow_version: after + gap, rollback, silent_device: rollback + SETTLE }
    }
}

/// Count-down steps of the slow version: around 10 ms of work.
const SLOW_SPIN: u32 = 10_000_000;

/// The scripted incidents, each announced as it happens.
pub(super) async fn script(client: Client, faults: Arc<Mutex<Faults>>, roles: Roles, schedule: Schedule) {
    let started = tokio::time::Instant::now();
    let at = |since_start: Duration| started + since_start;
    let announce = |what: &str, hint: &str| {
        let minutes = started.elapsed().as_secs_f64() / 60.0;
        println!("\n[demo +{minutes:.1} min] {what}\n    {hint}");
    };

    tokio::time::sleep_until(at(schedule.recursion_loop)).await;
    match deploy(&client, "ticker", relay("demo.tick", 0, "tick"), &[TICK, "event:demo.tick"]).await {
        Ok(v) => announce(
            &format!("incident 1: ticker v{} also triggers on its own output: a recursion loop", v["version"]),
            "each tick stops at hop 16 with a dead letter: glassbox events query --type function.dead_letter; \
             it goes on until you run glassbox functions rollback ticker",
        ),
        Err(e) => eprintln!("demo: incident 1 could not be scripted: {e:#}"),
    }

    tokio::time::sleep_until(at(schedule.slow_version)).await;
    let slow = relay("telemetry.accepted", SLOW_SPIN, "telemetry accepted");
    match deploy(&client, "telemetry", slow, &["mqtt:devices/+/telemetry"]).await {
        Ok(v) => announce(
            &format!("incident 2: telemetry v{} is deployed, a much slower build", v["version"]),
            "glassbox functions invocations telemetry; glassbox diagnose --function telemetry",
        ),
        Err(e) => eprintln!("demo: incident 2 could not be scripted: {e:#}"),
    }
    tokio::time::sleep_until(at(schedule.rollback)).await;
    match client.post("/api/v1/functions/telemetry/rollback", "application/json", String::new()).await {
        Ok(_) => announce(
            "incident 2, later: someone noticed and rolled telemetry back",
            "glassbox functions versions telemetry; glassbox diagnose shows the deploy and the rollback",
        ),
        Err(e) => eprintln!("demo: the rollback of incident 2 could not be scripted: {e:#}"),
    }

    tokio::time::sleep_until(at(schedule.silent_device)).await;
    let silenced = faults.lock().map(|mut f| f.apply(&format!("silent {}", roles.silenced)));
    if silenced.is_ok() {
        announce(
            &format!("incident 3: {} stays connected but stops reporting", roles.silenced),
            &format!("glassbox devices inspect {}; glassbox diagnose --device {}", roles.silenced, roles.silenced),
        );
    }
}
