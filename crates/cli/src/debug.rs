//! `glassbox debug …`: re-run what happened.

use anyhow::Context as _;
use glassbox_functions::{KvWrite, Replayed, Would};
use serde_json::json;

use crate::Remote;

#[derive(clap::Subcommand)]
pub enum DebugCommand {
    /// Re-run a recorded event (dead-lettered or not) against a version of
    /// a function and show its outcome, logs and outputs. For an HTTP
    /// function, the event is an `http.request` (its id came back in
    /// `x-glassbox-event-id`): the request is rebuilt from it, without the
    /// headers that were redacted, and the response is shown. The replay is
    /// recorded as a new invocation linked to the original event, unless
    /// --dry-run: then it runs in a sandbox that changes nothing and lists
    /// what a real run would have done (commands, desired state, key-value
    /// writes, events, outbound requests).
    #[command(after_help = "glassbox debug replay 01K… --function thermostat --version 3\n\
        glassbox debug replay 01K… --function thermostat --dry-run")]
    Replay(ReplayArgs),
}

#[derive(clap::Args)]
#[command(disable_version_flag = true)]
pub struct ReplayArgs {
    /// The event to re-run.
    event: String,
    /// The function to run it through.
    #[arg(long)]
    function: String,
    /// A version of it (default: the live one).
    #[arg(long)]
    version: Option<u32>,
    /// Run it in a sandbox: record nothing, change nothing (no command
    /// sent, no desired state or key-value row written, no event recorded,
    /// no outbound request sent), and show what it would have done.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    remote: Remote,
    #[arg(long)]
    json: bool,
}

pub async fn run(command: DebugCommand) -> anyhow::Result<()> {
    match command {
        DebugCommand::Replay(a) => {
            let body = json!({ "event_id": a.event, "version": a.version, "dry_run": a.dry_run });
            let path = format!("/api/v1/functions/{}/replay", crate::client::segment(&a.function));
            let answer = a.remote.client()?.post(&path, "application/json", body.to_string()).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(());
            }
            let replayed: Replayed =
                serde_json::from_value(answer).context("reading the server's answer to the replay")?;
            for line in replay_lines(&a.function, &a.event, &replayed) {
                println!("{line}");
            }
            Ok(())
        }
    }
}

/// A replay's answer in words: the outcome, the error, the logs, then what
/// a dry run would have done or what a recorded one recorded, and what an
/// HTTP function answered.
fn replay_lines(function: &str, event: &str, replayed: &Replayed) -> Vec<String> {
    let mut lines = Vec::new();
    let response = match replayed {
        Replayed::DryRun(dry) => {
            lines.push(format!(
                "{function} v{} on {event}: {} (dry run: nothing recorded, nothing changed)",
                dry.version, dry.outcome
            ));
            lines.extend(dry.error.iter().map(|error| format!("  error: {error}")));
            lines.extend(dry.logs.iter().map(|l| format!("  log {:5} {}", l.level, l.message)));
            lines.extend(would_lines(&dry.would).into_iter().map(|line| format!("  {line}")));
            dry.response.as_ref()
        }
        Replayed::Recorded(recorded) => {
            match &recorded.invocation {
                Some(run) => {
                    let invocation = &run.invocation;
                    lines
                        .push(format!("{function} v{} on {event}: {}", invocation.key.version, invocation.key.outcome));
                    lines.extend(invocation.error.iter().map(|error| format!("  error: {error}")));
                    lines.extend(invocation.logs.iter().map(|l| format!("  log {:5} {}", l.level, l.message)));
                    lines.extend(invocation.outputs.iter().map(|id| format!("  output {id}")));
                }
                None => lines.push(format!(
                    "{function} on {event}: it ran, but its invocation could not be recorded (see the server's log)"
                )),
            }
            recorded.response.as_ref()
        }
    };
    if let Some(response) = response {
        let said = response.said().chars().take(400).collect::<String>();
        lines.push(format!("  response {}: {said}", response.status()));
    }
    if let Replayed::Recorded(recorded) = replayed
        && let Some(run) = &recorded.invocation
    {
        lines.push(format!("  recorded as {}: glassbox trace {event}", run.id));
    }
    lines
}

/// The longest data or value shown on one line.
const SHOWN_CHARS_MAX: usize = 200;

fn clipped(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS_MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// What a dry run would have done, a line each, in the order kinds are
/// listed: commands, desired state, key-value writes, events, requests.
fn would_lines(would: &Would) -> Vec<String> {
    let mut lines = Vec::new();
    for c in &would.commands {
        let payload = c.payload.as_ref().map(|p| format!(" {}", clipped(&p.to_string()))).unwrap_or_default();
        lines.push(format!("would send command {} to {}{payload} (ttl {})", c.name, c.device, c.ttl));
    }
    for d in &would.desired {
        let after = match d.changed {
            true => format!("shadow version {}", d.version),
            false => "no change: it is so already".to_string(),
        };
        lines.push(format!("would set desired state of {} to {} ({after})", d.device, clipped(&d.state.to_string())));
    }
    for w in &would.kv {
        lines.push(match w {
            KvWrite { deleted: true, key, .. } => format!("would delete kv key {key}"),
            KvWrite { value: Some(text), key, .. } => {
                format!("would write kv key {key} = {}", clipped(&json!(text).to_string()))
            }
            KvWrite { value_base64, key, .. } => {
                format!("would write kv key {key} = base64:{}", clipped(value_base64.as_deref().unwrap_or_default()))
            }
        });
    }
    for e in &would.events {
        let subject = e.subject.as_ref().map(|s| format!(" about {s}")).unwrap_or_default();
        let data = match (&e.data, &e.data_base64) {
            (Some(data), _) => format!(" {}", clipped(&data.to_string())),
            (None, Some(bytes)) => format!(" base64:{}", clipped(bytes)),
            (None, None) => String::new(),
        };
        lines.push(format!("would emit event {}{subject}{data}", e.type_));
    }
    for r in &would.requests {
        let verdict = match r.allowed {
            true => "not sent; its egress list allows it",
            false => "not sent; its egress list denies it too",
        };
        lines.push(format!("would request {} {}://{}:{} ({verdict})", r.method, r.scheme, r.host, r.port));
    }
    if lines.is_empty() {
        lines.push("would change nothing outside the invocation".into());
    }
    lines
}

#[cfg(test)]
mod tests {
    use glassbox_functions::{WouldCommand, WouldDesire, WouldEmit, WouldRequest};

    use super::*;

    #[test]
    fn a_dry_run_shows_what_it_would_have_done_a_line_each() {
        let would = Would {
            commands: vec![WouldCommand {
                device: "d1".into(),
                name: "fan".into(),
                payload: Some(json!({"on": true})),
                ttl: "1m".into(),
            }],
            desired: vec![WouldDesire { device: "d1".into(), state: json!({"fan": true}), version: 4, changed: true }],
            kv: vec![
                KvWrite { key: "x".into(), value: Some("21.5".into()), value_base64: None, deleted: false },
                KvWrite { key: "y".into(), value: None, value_base64: None, deleted: true },
            ],
            events: vec![WouldEmit {
                type_: "t".into(),
                subject: Some("s".into()),
                datacontenttype: None,
                data: Some(json!({"n": 1})),
                data_base64: None,
            }],
            requests: vec![WouldRequest {
                method: "POST".into(),
                scheme: "https".into(),
                host: "hooks.example.com".into(),
                port: 443,
                allowed: true,
            }],
        };
        assert_eq!(
            would_lines(&would),
            [
                r#"would send command fan to d1 {"on":true} (ttl 1m)"#,
                r#"would set desired state of d1 to {"fan":true} (shadow version 4)"#,
                r#"would write kv key x = "21.5""#,
                "would delete kv key y",
                r#"would emit event t about s {"n":1}"#,
                "would request POST https://hooks.example.com:443 (not sent; its egress list allows it)",
            ]
        );
        assert_eq!(would_lines(&Would::default()), ["would change nothing outside the invocation"]);
    }
}
