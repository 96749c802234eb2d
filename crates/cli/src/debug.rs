//! `glassbox debug …`: re-run what happened.

use serde_json::json;

use crate::Remote;
use crate::render;

#[derive(clap::Subcommand)]
pub enum DebugCommand {
    /// Re-run a recorded event (dead-lettered or not) against a version of
    /// a function and show its outcome, logs and outputs. For an HTTP
    /// function, the event is an `http.request` (its id came back in
    /// `x-glassbox-event-id`): the request is rebuilt from it, without the
    /// headers that were redacted, and the response is shown. The replay is
    /// recorded as a new invocation linked to the original event, unless
    /// --dry-run (which also denies every outbound request).
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
    /// Run it, but record nothing.
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
            let result = a.remote.client()?.post(&path, "application/json", body.to_string()).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&result)?);
                return Ok(());
            }
            let dry = if result["dry_run"] == true { " (dry run: nothing recorded)" } else { "" };
            println!("{} v{} on {}: {}{dry}", a.function, result["version"], a.event, render::text(&result, "outcome"));
            if let Some(error) = result["error"].as_str() {
                println!("  error: {error}");
            }
            for line in result["logs"].as_array().into_iter().flatten() {
                println!("  log {:5} {}", render::text(line, "level"), render::text(line, "message"));
            }
            for output in result["outputs"].as_array().into_iter().flatten() {
                println!("  output {}", output.as_str().map_or_else(|| output.to_string(), str::to_string));
            }
            // An HTTP function's replay: what it answered.
            let response = &result["response"];
            if let Some(status) = response["status"].as_u64() {
                let said = response["body"].as_str().or(response["error"]["message"].as_str()).unwrap_or_default();
                println!("  response {status}: {}", said.chars().take(400).collect::<String>());
            }
            if let Some(id) = result["id"].as_str() {
                println!("  recorded as {id}: glassbox trace {}", a.event);
            }
            Ok(())
        }
    }
}
