//! The tour the demo prints: each verb, with commands that work on this
//! running demo and ids from what it has recorded.

use std::time::Duration;

use super::incidents::Schedule;
use super::{DemoArgs, Roles};
use crate::Remote;

/// The tour: each verb, with commands that work on this running demo.
pub(super) struct Tour<'a> {
    pub(super) remote: &'a Remote,
    pub(super) data_dir: &'a std::path::Path,
    /// Where the server's log lines go.
    pub(super) log: &'a std::path::Path,
    pub(super) kept: bool,
    pub(super) roles: &'a Roles,
    pub(super) schedule: Schedule,
    /// A recorded device message that a function handled.
    pub(super) sample: String,
}

impl Tour<'_> {
    pub(super) fn text(&self, args: &DemoArgs) -> String {
        let Roles { steady, sleepy, silenced } = self.roles;
        let id = &self.sample;
        let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "glassbox".into());
        let kept = if self.kept { "kept" } else { "removed when the demo stops" };
        let at = |since_start| format!("+{}", humantime::format_duration(since_start));
        let Schedule { recursion_loop, slow_version, rollback, silent_device } = self.schedule;
        let (first, second, rollback, third) = (at(recursion_loop), at(slow_version), at(rollback), at(silent_device));
        let learn = humantime::format_duration(Duration::from_secs(u64::from(args.warmup_points) * 10));
        let incidents = match args.no_incidents {
            true => "No incidents are scripted (--no-incidents).".to_string(),
            false => format!(
                "Scripted incidents (the detectors learn for the first {learn}):\n  \
                 {first}  ticker v2 triggers on its own output: a recursion loop\n  \
                 {second}  telemetry v2, a much slower build, is deployed (rolled back at {rollback})\n  \
                 {third}  {silenced} goes silent\n\
                 Each is announced here when it happens, and again with its incident number once glassbox \
                 diagnose shows it."
            ),
        };
        let token = self.remote.token.as_deref().unwrap_or_default();
        format!(
            "\
Glassbox demo: {devices} simulated devices (sim-0 … sim-{last}) talking MQTT, three functions
(telemetry → enrich, and a ticker on a schedule), a backend leaving notes in the devices' inboxes. Data: {dir} ({kept}).
The server's log: {log} (glassbox logs shows it too).

In another terminal:
  export GLASSBOX_SERVER={server} GLASSBOX_TOKEN={token}
  alias glassbox={exe}

deploy    what runs, and every version of it
  glassbox functions list
  glassbox functions versions telemetry
monitor   the live view (Ctrl-C to leave)
  glassbox monitor
query     recorded events and the metrics derived from them
  glassbox events query --device {steady} --since 5m
  glassbox metrics function_duration_ms --by function --since 15m
inspect   one thing, whole (a telemetry message of {steady}, as recorded)
  glassbox events get {id}
  glassbox devices inspect {steady}
debug     follow a message through the functions, and run it again
  glassbox trace {id}
  glassbox logs --function telemetry --since 5m
  glassbox debug replay {id} --function telemetry --version 1 --dry-run
control   steer a device: a command it acknowledges and answers, then desired state it applies and reports
  glassbox control send {steady} fan --payload '{{\"on\": true}}' --wait
  glassbox control desired {steady} fan=false
  glassbox devices shadow {steady}
clear     drop what waits for a sleeping device (it sleeps 2–4 min; the backend leaves a note every 10 s)
  glassbox devices inspect {sleepy}
  glassbox devices clear-queue {sleepy}
diagnose  what is abnormal, since when, and the likely cause
  glassbox diagnose
  glassbox cost --by function --since 1h
audit     who changed what, from where and when, and proof that no entry was edited since
  glassbox audit log --since 1h
  glassbox audit verify

{incidents} Type a fault and Enter at any time:
silent ID, flap ID, surge GROUP, malformed ID, status. Ctrl-C stops the demo.",
            devices = args.devices.max(3),
            last = args.devices.max(3) - 1,
            dir = self.data_dir.display(),
            log = self.log.display(),
            server = self.remote.server,
        )
    }
}
