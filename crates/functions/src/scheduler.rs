//! The scheduler ([`run`]): records a `schedule.fired` event for a live
//! function when one of its `schedule:` triggers comes due; the event
//! triggers it like any other, so a scheduled run has an id, a chain and a
//! trace.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use chrono::{DateTime, Utc};
use glassbox_core::{Draft, ScheduleFired};

use super::Functions;
use super::spec::{Schedule, Trigger};

/// One schedule trigger of a live version: `trigger` is its text.
struct Scheduled {
    function: String,
    version: u32,
    trigger: String,
    schedule: Schedule,
}

/// The schedule triggers of the live versions.
fn scheduled(functions: &Functions) -> Vec<Scheduled> {
    let live = functions.live.read().unwrap_or_else(|e| e.into_inner());
    let mut found = Vec::new();
    for l in live.values() {
        for (trigger, text) in l.triggers.iter().zip(&l.spec.triggers) {
            if let Trigger::Schedule(schedule) = trigger {
                let (function, version) = (l.version.name.clone(), l.version.version);
                found.push(Scheduled { function, version, trigger: text.clone(), schedule: schedule.clone() });
            }
        }
    }
    found
}

/// When `schedule` is next due after `now`; a schedule that never comes
/// due (a date that does not occur within four years) waits ten years.
fn next_due(schedule: &Schedule, now: DateTime<Utc>) -> DateTime<Utc> {
    schedule.next_after(now).unwrap_or(now + chrono::Duration::days(3650))
}

/// Records a `schedule.fired` event for each live function whose schedule
/// comes due (checked every second; runs missed while the server was down
/// are not made up). The event triggers the function through `dispatch`.
pub(super) async fn run(functions: Weak<Functions>) {
    let mut due: HashMap<(String, u32, String), DateTime<Utc>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(functions) = functions.upgrade() else { return };
        let now = Utc::now();
        let scheduled = scheduled(&functions);
        due.retain(|(f, v, t), _| scheduled.iter().any(|s| (&s.function, s.version, &s.trigger) == (f, *v, t)));
        for s in scheduled {
            let key = (s.function.clone(), s.version, s.trigger.clone());
            let at = due.entry(key).or_insert_with(|| next_due(&s.schedule, now));
            if *at > now {
                continue;
            }
            let data = ScheduleFired {
                function: s.function.clone(),
                version: s.version,
                trigger: s.trigger.clone(),
                due: *at,
            };
            *at = next_due(&s.schedule, now);
            let draft = Draft { subject: Some(s.function.clone()), ..Draft::payload("glassbox/schedule", &data) };
            if let Err(e) = functions.pipeline.ingest(vec![draft], "platform").await {
                tracing::error!(function = %s.function, error = %e, "could not record a scheduled run; it does not happen");
            }
        }
    }
}
