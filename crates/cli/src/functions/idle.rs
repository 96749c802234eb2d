//! `glassbox functions idle`, `retire`, `restore`: little-used functions
//! found, taken out of service with everything kept, and brought back.

use glassbox_api_types::{IdleFunctions, RetireAnswer};
use glassbox_core::Retired;
use glassbox_functions::IdleView;

use crate::Remote;
use crate::render;

#[derive(clap::Args)]
pub struct IdleArgs {
    /// The window: a duration back from now (30d, 12h).
    #[arg(long, default_value = "30d")]
    since: String,
    /// List every function, not only the idle ones.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    remote: Remote,
    /// Print a JSON array of functions (all of them, idle or not, with `idle`).
    #[arg(long)]
    json: bool,
}

pub async fn idle(a: IdleArgs) -> anyhow::Result<()> {
    let answer: IdleFunctions<IdleView> =
        a.remote.client()?.fetch("/api/v1/idle-functions", &[("since", a.since.clone())]).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&answer.functions)?);
        return Ok(());
    }
    let shown: Vec<&IdleView> = answer.functions.iter().filter(|f| a.all || f.idle).collect();
    if shown.is_empty() {
        println!("no function has been idle since {}", render::clock(answer.since));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = shown.iter().map(|f| row(f)).collect();
    render::table(&["NAME", "STATE", "LAST INVOKED", "INVOCATIONS", "TRIGGERS", "HOLDS", "WHY"], &rows);
    let idle = shown.iter().filter(|f| f.idle && f.state == "live").count();
    if idle > 0 {
        println!("{}; `glassbox functions retire NAME` stops one, keeping its versions, code and data", {
            render::count(idle, "idle live function")
        });
    }
    Ok(())
}

fn row(f: &IdleView) -> Vec<String> {
    let holds = &f.holds;
    let mut held = vec![format!("component {} KiB", holds.component_bytes.div_ceil(1024))];
    held.push(format!("{} warm", holds.warm_instances));
    if !holds.routes.is_empty() {
        held.push(format!("routes {}", holds.routes.join(" ")));
    }
    held.push(format!("kv {}", holds.kv));
    let invocations = match f.counted_all {
        true => f.invocations.to_string(),
        false => format!("{}+", f.invocations),
    };
    vec![
        f.name.clone(),
        f.state.clone(),
        f.last_invocation.map_or_else(|| "never".into(), render::clock),
        invocations,
        f.triggers.join(", "),
        held.join(", "),
        f.why.clone(),
    ]
}

/// `retire` or `restore`: posts it and says what changed.
pub async fn change(remote: &Remote, name: &str, what: &str, json: bool) -> anyhow::Result<()> {
    let path = format!("/api/v1/functions/{}/{what}", crate::client::segment(name));
    let answer: RetireAnswer<Retired> = remote.client()?.post_as(&path, "application/json", "{}".into()).await?;
    let r = &answer.change;
    match (json, what) {
        (true, _) => println!("{}", serde_json::to_string(&answer)?),
        (false, "retire") => println!(
            "retired {} v{}: its triggers ({}) stopped, {} warm instance(s) freed; versions, code and data kept \
             (`glassbox functions restore {}` brings it back)",
            r.function,
            r.version,
            r.triggers.join(", "),
            r.instances_freed.unwrap_or(0),
            r.function
        ),
        (false, _) => {
            println!("restored {} v{}: its triggers ({}) run it again", r.function, r.version, r.triggers.join(", "))
        }
    }
    if let Some(warning) = &answer.warning {
        eprintln!("warning: {warning}");
    }
    Ok(())
}
