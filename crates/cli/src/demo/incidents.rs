//! The demo's scripted incidents, each announced as it happens and again
//! with its incident number once `glassbox diagnose` shows it: things
//! diagnose should find and explain by itself.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use glassbox_api_types::{Diagnosis, Episode, Subject};
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

/// What a scripted step is, for its announcements: `diagnose` names an
/// incident by a number of its own (its first episode's), only known once
/// the detectors flag it, so a step is announced by what it does and
/// whom, then again with that number when `diagnose` shows it.
struct Step {
    /// What happened, in words ("a recursion loop").
    what: &'static str,
    /// The subject `diagnose` will name.
    subject: Subject,
    /// The subject in words, as `diagnose` prints it ("function ticker").
    named: String,
}

impl Step {
    fn function(what: &'static str, name: &str) -> Self {
        Self { what, subject: Subject::Function(name.into()), named: format!("function {name}") }
    }

    fn device(what: &'static str, id: &str) -> Self {
        Self { what, subject: Subject::Device(id.into()), named: format!("device {id}") }
    }
}

/// How long to look for a step's incident in `diagnose`, and how often.
const FOUND_WITHIN: Duration = Duration::from_secs(300);
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// Prints a line of the demo's timeline, minutes from its start.
fn announce(started: tokio::time::Instant, what: &str, hint: &str) {
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    println!("\n[demo +{minutes:.1} min] {what}\n    {hint}");
}

/// Watches `glassbox diagnose` for the incident of `step` (one with an
/// episode of its subject that began after `since`), and announces it with
/// the number `diagnose` gives it.
async fn announce_when_diagnosed(client: Arc<Client>, started: tokio::time::Instant, step: Step) {
    let since = chrono::Utc::now() - chrono::Duration::seconds(10);
    let deadline = tokio::time::Instant::now() + FOUND_WITHIN;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(LOOK_EVERY).await;
        let query = [("since", "1h".to_string())];
        let Ok(diagnosis) = client.fetch::<Diagnosis>("/api/v1/diagnose", &query).await else { continue };
        if let Some(id) = incident_of(&diagnosis, &step.subject, since) {
            let (scope, name) = match &step.subject {
                Subject::Device(name) => ("--device", name.as_str()),
                Subject::Function(name) | Subject::Group(name) => ("--function", name.as_str()),
                Subject::Platform => ("--function", ""),
            };
            announce(
                started,
                &format!("glassbox diagnose shows {} as incident {id} ({})", step.what, step.named),
                &format!("glassbox diagnose {scope} {name}; on it? glassbox diagnose ack {id} --note '…'"),
            );
            return;
        }
    }
    announce(
        started,
        &format!("glassbox diagnose has not flagged {} ({}) within 5 min", step.what, step.named),
        "the detectors may still be learning its series' normal: glassbox diagnose says how many are",
    );
}

/// The id of the incident of `diagnosis` with an episode about `subject`
/// that began at or after `since`.
fn incident_of(diagnosis: &Diagnosis, subject: &Subject, since: chrono::DateTime<chrono::Utc>) -> Option<u64> {
    let began_since = |episode: &Episode| episode.series.subject == *subject && episode.start >= since;
    let mut incidents = diagnosis.incidents.iter();
    incidents.find(|incident| incident.episodes.iter().any(began_since)).map(|incident| incident.id)
}

/// The scripted incidents, each announced as it happens and again when
/// `diagnose` shows it.
pub(super) async fn script(client: Client, faults: Arc<Mutex<Faults>>, roles: Roles, schedule: Schedule) {
    let started = tokio::time::Instant::now();
    let at = |since_start: Duration| started + since_start;
    let client = Arc::new(client);
    let watch = |step: Step| {
        tokio::spawn(announce_when_diagnosed(client.clone(), started, step));
    };

    tokio::time::sleep_until(at(schedule.recursion_loop)).await;
    match deploy(&client, "ticker", relay("demo.tick", 0, "tick"), &[TICK, "event:demo.tick"]).await {
        Ok(v) => {
            announce(
                started,
                &format!("a recursion loop: ticker v{} also triggers on its own output", v["version"]),
                "each tick stops at hop 16 with a dead letter: glassbox events query --type function.dead_letter; \
                 it goes on until you run glassbox functions rollback ticker",
            );
            watch(Step::function("the recursion loop", "ticker"));
        }
        Err(e) => eprintln!("demo: the recursion loop could not be scripted: {e:#}"),
    }

    tokio::time::sleep_until(at(schedule.slow_version)).await;
    let slow = relay("telemetry.accepted", SLOW_SPIN, "telemetry accepted");
    match deploy(&client, "telemetry", slow, &["mqtt:devices/+/telemetry"]).await {
        Ok(v) => {
            announce(
                started,
                &format!("a slower version: telemetry v{} is deployed, a much slower build", v["version"]),
                "glassbox functions invocations telemetry; glassbox diagnose --function telemetry",
            );
            watch(Step::function("the slower version", "telemetry"));
        }
        Err(e) => eprintln!("demo: the slower version could not be scripted: {e:#}"),
    }
    tokio::time::sleep_until(at(schedule.rollback)).await;
    match client.post("/api/v1/functions/telemetry/rollback", "application/json", String::new()).await {
        Ok(rolled) => announce(
            started,
            &format!("someone noticed and rolled telemetry back to v{}", rolled["live"]["version"]),
            "glassbox functions list (telemetry is live at v1 again); \
             glassbox events query --type function.rolled_back",
        ),
        Err(e) => eprintln!("demo: the rollback of the slower version could not be scripted: {e:#}"),
    }

    tokio::time::sleep_until(at(schedule.silent_device)).await;
    let silenced = faults.lock().map(|mut f| f.apply(&format!("silent {}", roles.silenced)));
    if silenced.is_ok() {
        announce(
            started,
            &format!("a silent device: {} stays connected but stops reporting", roles.silenced),
            &format!("glassbox devices inspect {}; glassbox devices list --silent", roles.silenced),
        );
        watch(Step::device("the silent device", &roles.silenced));
    }
}
