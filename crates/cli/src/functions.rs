//! `glassbox functions …`: deploy WebAssembly components, see and change
//! which version is live, delete them, and look at their invocations.

mod dead_letters;
mod idle;
mod lifecycle;

use std::path::PathBuf;

use anyhow::Context;
use glassbox_api_types::{DeployedVersion, FunctionList, Invocations};
use glassbox_core::Invocation;
use glassbox_functions::{RecordedInvocation, Spec};
use glassbox_runtime::Outcome;

use crate::Remote;
use crate::render;

#[derive(clap::Subcommand)]
pub enum FunctionsCommand {
    /// Deploy a component as the next version of a function and make it live.
    #[command(after_help = "Triggers: mqtt:<topic filter> (device messages), event:<type pattern> (recorded events), \
        schedule:<cron> or schedule:@every 30s, http:<METHOD> <path> (requests to <path> on the server's HTTP \
        listener, for a wasi:http/proxy component; METHOD * for any, a path ending /* for everything under it).\n\
        Outbound HTTP is denied unless a rule given with --egress allows it (or --egress-trace, which also \
        sends the chain's traceparent): api.example.com is https on 443 only; write http:// or :port for \
        others (http://10.0.0.5:8080). A name resolving to a loopback, private, link-local or metadata \
        address is refused unless a rule names that address or range (10.0.0.5, 10.0.0.0/8).\n  \
        glassbox functions deploy thermostat.wasm --name thermostat --trigger 'mqtt:devices/+/telemetry' --timeout 2s\n  \
        glassbox functions deploy audit.wasm --name audit --trigger 'event:device.command.*' --feature billing\n  \
        glassbox functions deploy hook.wasm --name github --trigger 'http:POST /hooks/github' --egress api.github.com\n  \
        glassbox functions deploy notify.wasm --name notify --trigger 'event:alarm.*' --egress-trace hooks.example.com")]
    Deploy(Box<DeployArgs>),
    /// Functions and their live versions (deleted ones are not listed).
    List(ListArgs),
    /// One function: its live version whole (triggers, limits, feature,
    /// egress, who deployed it and when), how many versions it has, and the
    /// work it has in hand.
    #[command(after_help = "  glassbox functions get thermostat\n  glassbox functions get thermostat --json")]
    Get(NameArgs),
    /// Every version of a function, newest first, with its triggers, limits,
    /// feature, and who deployed it when.
    #[command(after_help = "  glassbox functions versions thermostat\n  \
        glassbox functions versions thermostat --json     every version whole, spec included")]
    Versions(NameArgs),
    /// Make any version live: roll forward or back. Recorded as a
    /// function.promoted event (diagnose counts it as a change); promoting the
    /// live version changes nothing. Also makes a deleted function live again.
    #[command(after_help = "  glassbox functions versions thermostat       which versions there are\n  \
        glassbox functions promote thermostat 3      v3 live, whichever was before")]
    Promote(PromoteArgs),
    /// Make live the newest version older than the live one; each rollback
    /// goes one version further back (v3 → v2 → v1). `promote` goes anywhere.
    #[command(after_help = "  glassbox functions rollback thermostat\n  \
        glassbox functions promote thermostat 3      forward again")]
    Rollback(NameArgs),
    /// Delete a function: its triggers, HTTP routes and schedules stop at
    /// once and its warm instances are dropped. Refused while it has events
    /// queued, retrying or running unless --force (then queued and retrying
    /// events get a dead letter, reason cleared; running ones finish and are
    /// recorded). Its versions are kept (`versions`, `invocations` and
    /// `promote` still work; deploying the name again continues its numbers)
    /// unless --purge.
    #[command(after_help = "  glassbox functions delete thermostat\n  \
        glassbox functions delete thermostat --force           even with events queued\n  \
        glassbox functions delete thermostat --force --purge   versions and key-value store too")]
    Delete(DeleteArgs),
    /// Recent invocations: outcome, error, timings, cost.
    #[command(after_help = "Outcomes: succeeded, failed (the function returned an error), trapped, timed_out, \
        memory_exceeded, output_too_large.\n  \
        glassbox functions invocations thermostat --errors            every one that did not succeed\n  \
        glassbox functions invocations thermostat --outcome timed_out\n  \
        glassbox logs --function thermostat --level error             the same failures as log lines")]
    Invocations(InvocationsArgs),
    /// The events a function gave up on (retries used up, or a guard), with
    /// their attempts, first and last failure and error; redrive or discard them.
    #[command(
        name = "dead-letters",
        after_help = "  glassbox functions dead-letters thermostat
  \
        glassbox functions dead-letters thermostat --json
\n\
        A dead letter leaves the list when a redrive of it succeeds, or when it is discarded; both are recorded \
        (function.dead_letter_cleared) with who did it."
    )]
    DeadLetters(dead_letters::DeadLettersArgs),
    /// Run a function's dead letters again — after a fix, against the live
    /// or a chosen version — each on its original chain; those that succeed
    /// leave the list.
    #[command(
        after_help = "  glassbox functions redrive thermostat --dry-run        would the live version succeed now?\n  \
        glassbox functions redrive thermostat --rate 10/s\n  \
        glassbox functions redrive thermostat --version 3 --ids 01JD6Y8Q1W3N4ZV7K2M5P9R0ST"
    )]
    Redrive(dead_letters::RedriveArgs),
    /// Drop a function's dead letters without running them, on the record.
    #[command(after_help = "  glassbox functions discard thermostat --ids 01JD6Y8Q1W3N4ZV7K2M5P9R0ST\n  \
        glassbox functions discard thermostat          all of them")]
    Discard(dead_letters::DiscardArgs),
    /// Functions that look idle: no invocation in the window; their last
    /// invocation, triggers, what they hold and why they look idle.
    #[command(after_help = "  glassbox functions idle\n  glassbox functions idle --since 7d --all\n  \
        glassbox functions idle --json | jq '.[] | select(.idle)'")]
    Idle(idle::IdleArgs),
    /// Take a function out of service, keeping its versions, code and data:
    /// its triggers, routes and schedules stop and its warm instances are freed.
    #[command(after_help = "  glassbox functions retire thermostat\n  glassbox functions restore thermostat\n\n\
        Recorded as function.retired (and function.restored) with who did it; `functions list` marks it retired.")]
    Retire(NameArgs),
    /// Bring a retired function back as it was.
    Restore(NameArgs),
}

#[derive(clap::Args)]
pub struct DeployArgs {
    /// The component (.wasm).
    file: PathBuf,
    #[arg(long)]
    name: String,
    /// What runs it; repeatable.
    #[arg(long = "trigger", required = true, value_name = "SPEC")]
    triggers: Vec<String>,
    /// A feature tag its cost is counted under.
    #[arg(long)]
    feature: Option<String>,
    /// Deadline per invocation (default 5s).
    #[arg(long)]
    timeout: Option<String>,
    /// Memory limit (default 64MiB).
    #[arg(long)]
    memory: Option<String>,
    /// Invocations at once (default 8).
    #[arg(long)]
    concurrency: Option<u32>,
    /// Events at this hop or deeper are dead-lettered (default 16).
    #[arg(long)]
    hop_limit: Option<u32>,
    /// Invocations a warm instance serves before a fresh one replaces it
    /// (default 1000). Globals carry over between the events one instance
    /// handles; 1 gives every event a fresh instance.
    #[arg(long)]
    reuse: Option<u32>,
    /// Runs after a failed one, with backoff, before dead-lettering (default 2).
    #[arg(long)]
    retries: Option<u32>,
    /// No retry once the event is this old (default 1h).
    #[arg(long)]
    max_age: Option<String>,
    /// Invocations per second at most (e.g. 100/s, 30/m); more wait in the queue.
    #[arg(long)]
    rate: Option<String>,
    /// Where its outbound HTTP may go (api.example.com: https on 443;
    /// *.example.com, api.example.com:8443, http://10.0.0.5:8080,
    /// 10.0.0.0/8); repeatable. Without any, every outbound request is denied.
    #[arg(long = "egress", value_name = "RULE")]
    egress: Vec<String>,
    /// A host that may be reached and also gets the chain's W3C traceparent
    /// header; repeatable. Other hosts never get it.
    #[arg(long = "egress-trace", value_name = "RULE")]
    egress_trace: Vec<String>,
    /// HTTP routes: keep request bodies (up to 16 KiB) in their `http.request`
    /// events, so requests with a body can be replayed. Off: only their size.
    #[arg(long)]
    record_body: bool,
    /// HTTP routes: a request header kept verbatim in `http.request` events
    /// besides content-type, content-length, user-agent, accept and
    /// traceparent; repeatable. Others are recorded as [redacted].
    #[arg(long = "record-header", value_name = "NAME")]
    record_headers: Vec<String>,
    #[command(flatten)]
    remote: Remote,
    /// Print JSON (`name`, `version`, `digest`, …).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct NameArgs {
    name: String,
    #[command(flatten)]
    remote: Remote,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct PromoteArgs {
    name: String,
    /// The version to make live (`glassbox functions versions NAME` lists them).
    #[arg(value_name = "VERSION", id = "number")]
    number: u32,
    #[command(flatten)]
    remote: Remote,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    name: String,
    /// Delete even with events queued, retrying or running.
    #[arg(long)]
    force: bool,
    /// Remove its versions, its components and its key-value store too
    /// (its invocation records stay in the recorder). Numbering restarts at 1.
    #[arg(long)]
    purge: bool,
    #[command(flatten)]
    remote: Remote,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    remote: Remote,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct InvocationsArgs {
    name: String,
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Only these outcomes, comma-separated (e.g. failed,trapped).
    #[arg(long, value_name = "OUTCOMES", conflicts_with = "errors")]
    outcome: Option<String>,
    /// Only the invocations that did not succeed (every outcome but succeeded).
    #[arg(long)]
    errors: bool,
    #[command(flatten)]
    remote: Remote,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
}

pub async fn run(command: FunctionsCommand) -> anyhow::Result<()> {
    match command {
        FunctionsCommand::Deploy(a) => deploy(*a).await,
        FunctionsCommand::List(a) => {
            let list: FunctionList<Spec> = a.remote.client()?.fetch("/api/v1/functions", &[]).await?;
            print_versions(&list.functions, a.json)
        }
        FunctionsCommand::Get(a) => lifecycle::get(&a.remote.client()?, &a.name, a.json).await,
        FunctionsCommand::Versions(a) => lifecycle::versions(&a.remote.client()?, &a.name, a.json).await,
        FunctionsCommand::Promote(a) => lifecycle::promote(&a.remote.client()?, &a.name, a.number, a.json).await,
        FunctionsCommand::Rollback(a) => lifecycle::rollback(&a.remote.client()?, &a.name, a.json).await,
        FunctionsCommand::Delete(a) => lifecycle::delete(&a.remote.client()?, &a.name, a.force, a.purge, a.json).await,
        FunctionsCommand::Invocations(a) => invocations(a).await,
        FunctionsCommand::DeadLetters(a) => dead_letters::list(a).await,
        FunctionsCommand::Redrive(a) => dead_letters::redrive(a).await,
        FunctionsCommand::Discard(a) => dead_letters::discard(a).await,
        FunctionsCommand::Idle(a) => idle::idle(a).await,
        FunctionsCommand::Retire(a) => idle::change(&a.remote, &a.name, "retire", a.json).await,
        FunctionsCommand::Restore(a) => idle::change(&a.remote, &a.name, "restore", a.json).await,
    }
}

/// The ERROR column's width at most: longer errors are cut.
const ERROR_COLUMN_MAX: usize = 60;

async fn invocations(a: InvocationsArgs) -> anyhow::Result<()> {
    let path = format!("/api/v1/functions/{}/invocations", crate::client::segment(&a.name));
    let mut query = vec![("limit", a.limit.to_string())];
    match (&a.outcome, a.errors) {
        (Some(outcome), _) => query.push(("outcome", outcome.clone())),
        (None, true) => {
            let errors: Vec<&str> = Outcome::NAMES.into_iter().filter(|o| *o != "succeeded").collect();
            query.push(("outcome", errors.join(",")));
        }
        (None, false) => {}
    }
    let body: Invocations<RecordedInvocation> = a.remote.client()?.fetch(&path, &query).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&body.invocations)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = body.invocations.iter().map(|i| invocation_row(&i.invocation)).collect();
    let headers = [
        "START",
        "VERSION",
        "OUTCOME",
        "START TYPE",
        "INSTANTIATE",
        "WALL",
        "CPU",
        "MEMORY",
        "COST $",
        "EGRESS",
        "EVENT",
        "ERROR",
    ];
    render::table(&headers, &rows);
    if body.truncated {
        println!(
            "(only the newest invocations were searched: raise --limit or look at older ones with `glassbox events query`)"
        );
    }
    Ok(())
}

/// A file that is no WebAssembly at all (a script, a README): what to do
/// first, then what the file is.
fn not_a_component(file: &std::path::Path, what: &glassbox_runtime::NotWebAssembly) -> String {
    format!(
        "{} is not a WebAssembly component ({}): build one first — componentize-js for JavaScript, \
         componentize-py for Python, cargo component for Rust (see examples/) — and deploy the .wasm file it makes",
        file.display(),
        what.brief()
    )
}

async fn deploy(a: DeployArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    if let Some(what) = glassbox_runtime::not_webassembly(&bytes) {
        anyhow::bail!(not_a_component(&a.file, &what));
    }
    let options = crate::apply::manifest::Entry {
        triggers: a.triggers.clone(),
        feature: a.feature.clone(),
        timeout: a.timeout.clone(),
        memory: a.memory.clone(),
        concurrency: a.concurrency,
        rate: a.rate.clone(),
        retries: a.retries,
        max_age: a.max_age.clone(),
        hop_limit: a.hop_limit,
        reuse: a.reuse,
        egress: a.egress.clone(),
        egress_trace: a.egress_trace.clone(),
        record_body: a.record_body,
        record_headers: a.record_headers.clone(),
        ..Default::default()
    };
    // Deployed by hand: no app's (an app's `apply` then shows it as taken over).
    let query = options.deploy_params(None);
    let path = format!("/api/v1/functions/{}", crate::client::segment(&a.name));
    let version: DeployedVersion<Spec> =
        a.remote.client()?.post_bytes_as(&path, &query, "application/wasm", bytes).await?;
    match a.json {
        true => println!("{}", serde_json::to_string_pretty(&version)?),
        false => println!("deployed {} version {} ({}); it is live", version.name, version.version, version.digest),
    }
    Ok(())
}

fn print_versions(versions: &[DeployedVersion<Spec>], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&versions)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                v.version.to_string(),
                match (v.live, v.retired) {
                    (true, true) => "retired".into(),
                    (true, false) => "live".into(),
                    _ => String::new(),
                },
                v.spec.triggers.join(", "),
                egress(&v.spec),
                render::clock(v.deployed_at),
                render::short_digest(&v.digest),
            ]
        })
        .collect();
    render::table(&["NAME", "VERSION", "", "TRIGGERS", "EGRESS", "DEPLOYED", "DIGEST"], &rows);
    Ok(())
}

/// The hosts a version may reach; `+trace` marks those that get the traceparent.
fn egress(spec: &Spec) -> String {
    let plain = spec.egress.iter().cloned();
    let traced = spec.egress_trace.iter().map(|h| format!("{h}+trace"));
    let hosts: Vec<String> = plain.chain(traced).collect();
    match hosts.is_empty() {
        true => "-".into(),
        false => hosts.join(", "),
    }
}

/// One listed invocation as a row.
fn invocation_row(i: &Invocation) -> Vec<String> {
    let micros = |us: u64| render::duration_ms(us as f64 / 1000.0);
    vec![
        i.start.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        i.key.version.to_string(),
        i.key.outcome.clone(),
        if i.cold { "cold".into() } else { "warm".into() },
        micros(i.instantiate_us),
        micros(i.wall_us),
        micros(i.cpu_us),
        mebibytes(i.memory_bytes),
        format!("{:.9}", i.cost),
        egress_summary(i),
        i.key.event_id.clone(),
        error_cell(i),
    ]
}

/// Why it did not succeed, in one line cut to [`ERROR_COLUMN_MAX`]; `-` when it did.
fn error_cell(i: &Invocation) -> String {
    let error = match (i.key.outcome.as_str(), i.error.as_deref()) {
        ("succeeded", _) => return "-".into(),
        (_, Some(error)) => error.to_string(),
        ("timed_out", None) => "stopped at its deadline".into(),
        ("memory_exceeded", None) => "over its memory limit".into(),
        (outcome, None) => outcome.to_string(),
    };
    let line = error.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.chars().count() > ERROR_COLUMN_MAX {
        true => format!("{}…", line.chars().take(ERROR_COLUMN_MAX - 1).collect::<String>()),
        false => line,
    }
}

/// How many outbound requests an invocation made, and how many were denied.
fn egress_summary(i: &Invocation) -> String {
    let denied = i.egress.iter().filter(|r| r.outcome == "denied").count();
    match (i.egress.len(), denied) {
        (0, _) => "-".into(),
        (n, 0) => n.to_string(),
        (n, d) => format!("{n} ({d} denied)"),
    }
}

/// `1.5 MiB`: a function's memory.
fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}
