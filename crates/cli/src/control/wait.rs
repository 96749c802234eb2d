//! `control send --wait` and `control command --wait`: a command's steps
//! as they happen. The recorder's tail of the device's `device.command.*`
//! events is opened *before* the command is sent (or read), so no step is
//! missed; the command's state is printed at once, then a line per step
//! (a JSON line with `--json`) until it finishes or the wait runs out.

use std::time::Duration;

use anyhow::{Context, bail};
use glassbox_api_types::{CommandView, LiveDevice};
use glassbox_core::{CommandMessage, CommandState, CommandStep, payload_in};
use glassbox_store::Device;
use serde_json::{Value, json};

use crate::Exit;
use crate::client::{Client, EventStream, segment};
use crate::render::{self, text};

/// The exit code when the wait ran out before the command finished, as
/// `timeout(1)` has it.
pub const WAIT_TIMED_OUT: u8 = 124;

/// How a wait goes: for how long at most, and how it prints.
#[derive(clap::Args)]
pub struct WaitArgs {
    /// Print the command's state now and each step as it happens, until it
    /// finishes (exit 0 when it succeeded, 1 when it failed, expired or was
    /// cancelled) or --wait-timeout passes (exit 124; the command goes on).
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits at most (e.g. 10s, 5m).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, requires = "wait")]
    pub wait_timeout: Duration,
}

/// A command's recorded step (`delivered`, `succeeded`, …, `response_rejected`)
/// as the control plane wrote it; none for `queued` and `in_transit`.
fn typed_step(event: &Value) -> Option<CommandStep> {
    payload_in(event).ok()
}

/// The command a recorded `in_transit` step sent; none for the other steps.
fn sent(event: &Value) -> Option<CommandMessage> {
    payload_in(event).ok()
}

/// The device's command events, subscribed to before the command is sent or read.
pub struct Steps(EventStream);

impl Steps {
    pub async fn open(client: &Client, device: &str) -> anyhow::Result<Self> {
        let filters = [("device", device.to_string()), ("type", "device.command.*".to_string())];
        Ok(Self(client.stream("/api/v1/events/tail", &filters).await?))
    }
}

/// Where a command stands and how to say so.
struct Waiting<'a> {
    client: &'a Client,
    command: CommandView,
    json: bool,
}

/// Prints `command`'s state now (and why, when it is still queued),
/// then each step from `steps`, until it finishes or `timeout` passes.
pub async fn follow(
    client: &Client,
    steps: Steps,
    command: CommandView,
    timeout: Duration,
    json: bool,
) -> anyhow::Result<()> {
    let mut waiting = Waiting { client, command, json };
    waiting.first().await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let Steps(mut stream) = steps;
    while !is_final(waiting.state()) {
        let message = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => return waiting.ran_out(timeout).await,
            Ok(message) => message?,
        };
        let Some(message) = message else {
            let (id, state) = (waiting.id(), waiting.state());
            bail!(
                "the server closed the event stream (it is stopping or restarting) while command {id} was {state}; \
                 follow it with: glassbox control command {id} --wait"
            );
        };
        match message.kind.as_str() {
            "event" => waiting.step(&serde_json::from_str(&message.data).unwrap_or(Value::Null)).await?,
            // Some events were skipped: read the command back rather than guess.
            "lagged" => waiting.read_back().await?,
            _ => {}
        }
    }
    waiting.end()
}

/// The order of states: a step is shown only when it moves the command on
/// (a command sent again is still in transit).
fn rank(state: &str) -> u8 {
    match state {
        "queued" => 0,
        "in_transit" => 1,
        "delivered" => 2,
        _ => 3,
    }
}

fn is_final(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "expired" | "cancelled")
}

impl Waiting<'_> {
    fn id(&self) -> &str {
        &self.command.id
    }

    fn state(&self) -> &str {
        self.command.state.as_str()
    }

    /// When the command expires, for people.
    fn expires(&self) -> String {
        render::clock(self.command.expires_at)
    }

    /// `command 01K… fan → d1: queued (d1 is offline: …)`.
    async fn first(&self) -> anyhow::Result<()> {
        let detail = match self.state() {
            "queued" => self.why_queued().await?,
            _ => self.detail(None),
        };
        if self.json {
            println!("{}", self.line(&detail));
            return Ok(());
        }
        let c = &self.command;
        let detail = if detail.is_empty() { String::new() } else { format!(" ({detail})") };
        println!("command {} {} → {}: {}{detail}", self.id(), c.name, c.device, self.state());
        Ok(())
    }

    /// Why a command is still queued: its device is offline, or not listening.
    async fn why_queued(&self) -> anyhow::Result<String> {
        let device = &self.command.device;
        let found: LiveDevice<Device> = self.client.fetch(&format!("/api/v1/devices/{}", segment(device)), &[]).await?;
        let expires = self.expires();
        Ok(match found.connected {
            true => format!(
                "{device} is connected but not subscribed to $glassbox/devices/{device}/commands/{}: \
                 it is sent when it subscribes, until it expires at {expires}",
                self.command.name
            ),
            false => format!("{device} is offline: it is sent when {device} connects, until it expires at {expires}"),
        })
    }

    /// A recorded event of the device's commands: a line if it moves this one on.
    async fn step(&mut self, event: &Value) -> anyhow::Result<()> {
        let ty = text(event, "type").strip_prefix("device.command.").unwrap_or_default();
        // `queued` is the command's own id; `in_transit` carries the envelope sent; the others are steps naming it.
        let step = typed_step(event);
        let named = step.as_ref().and_then(|s| s.command.as_deref());
        let sent = sent(event).map(|message| message.id);
        let about = [event["id"].as_str(), sent.as_deref(), named].contains(&Some(self.id()));
        if !about {
            return Ok(());
        }
        if ty == "response_rejected" {
            let reason = step.as_ref().and_then(|s| s.reason.as_deref()).unwrap_or_default();
            let note = format!("an answer was refused: {reason}");
            self.print(&event["time"], "note", &note);
            return Ok(());
        }
        let known = rank(ty) < 3 || is_final(ty);
        if !known || rank(ty) <= rank(self.state()) {
            return Ok(());
        }
        if is_final(ty) {
            // The whole command: its response and reason as stored.
            return self.read_back().await;
        }
        let Some(state) = CommandState::parse(ty) else { return Ok(()) };
        self.command.state = state;
        self.command.updated_at = render::time(&event["time"]).unwrap_or(self.command.updated_at);
        let detail = self.detail(Some(event));
        self.print(&event["time"], ty, &detail);
        Ok(())
    }

    /// Reads the command again, and prints its state if it moved on.
    async fn read_back(&mut self) -> anyhow::Result<()> {
        let now = self.client.get(&format!("/api/v1/commands/{}", segment(self.id())), &[]).await?;
        let now: CommandView = serde_json::from_value(now).context("the server answered a command of another shape")?;
        if rank(now.state.as_str()) > rank(self.state()) {
            self.command = now;
            let detail = self.detail(None);
            self.print(&json!(self.command.updated_at), self.state(), &detail);
        }
        Ok(())
    }

    /// What a state means for this command, in a few words.
    fn detail(&self, event: Option<&Value>) -> String {
        let c = &self.command;
        let device = &c.device;
        let answered = event.and_then(typed_step).is_some_and(|s| s.detail.is_some());
        let response = c.response.as_ref().map(|r| format!("response: {r}")).unwrap_or_default();
        let reason = c.reason.as_ref().map(|r| format!("reason: {r}")).unwrap_or_default();
        match self.state() {
            "in_transit" => match event.and_then(|e| e["subject"].as_str()) {
                Some(topic) => format!("sent on {topic}"),
                None => "sent, not yet acknowledged".into(),
            },
            "delivered" if answered => format!("{device} answered before its acknowledgement was seen"),
            "delivered" => format!("{device} acknowledged it"),
            _ => [reason, response].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join("; "),
        }
    }

    /// `  +1.204 s   delivered   d1 acknowledged it`, or its JSON line.
    fn print(&self, at: &Value, state: &str, detail: &str) {
        if self.json {
            let mut line = self.line(detail);
            line["state"] = json!(state);
            line["at"] = at.clone();
            return println!("{line}");
        }
        let since = match render::time(at) {
            Some(to) => format!("+{}", render::duration_ms(render::millis_between(self.command.created_at, to))),
            None => String::new(),
        };
        println!("  {since:<9}  {state:<10}  {detail}");
    }

    /// The JSON line for the command as it stands.
    fn line(&self, detail: &str) -> Value {
        let c = &self.command;
        let mut line = json!({
            "id": c.id, "name": c.name, "device": c.device, "state": c.state,
            "at": c.updated_at, "finished": is_final(self.state()), "detail": detail,
        });
        if is_final(self.state()) {
            line["reason"] = json!(c.reason);
            line["response"] = json!(c.response);
        }
        line
    }

    /// The wait is over and the command is not: say where it is and how to follow it.
    async fn ran_out(mut self, timeout: Duration) -> anyhow::Result<()> {
        self.read_back().await?;
        if is_final(self.state()) {
            return self.end();
        }
        let id = self.id().to_string();
        let follow = format!("glassbox control command {id} --wait");
        let waited = humantime::format_duration(timeout);
        let expires = self.expires();
        let goes_on = format!("the command goes on until it expires at {expires}");
        if self.json {
            let mut line = self.line(&goes_on);
            line["wait_timed_out"] = json!(true);
            line["follow"] = json!(follow);
            println!("{line}");
        } else {
            println!("still {} after {waited} ({goes_on})\n  follow it: {follow}", self.state());
        }
        Err(Exit(WAIT_TIMED_OUT).into())
    }

    /// The command finished: exit 0 if it succeeded, else an error saying how it ended.
    fn end(&self) -> anyhow::Result<()> {
        match self.state() {
            "succeeded" => Ok(()),
            state => match self.command.reason.as_deref() {
                Some(reason) => bail!("command {} ended {state}: {reason}", self.id()),
                None => bail!("command {} ended {state}", self.id()),
            },
        }
    }
}
