//! `glassbox apply`: makes the server's functions what an app manifest
//! says. It plans first — each function created, updated, unchanged or
//! deleted, with what differs — then deploys what changed and deletes what
//! the app dropped. Each change is an ordinary deploy or delete, recorded
//! with who made it.

pub mod manifest;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use glassbox_api_types::{DeployedVersion, FunctionList};
use glassbox_functions::{Change, Difference, Plan, Spec};
use serde::{Deserialize, Serialize};

use crate::client::{Client, segment};
use crate::{Remote, render};
use manifest::{DEFAULT_FILE, Entry, Manifest};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  glassbox apply --dry-run                  # the plan for ./glassbox.app.toml; nothing changes
  glassbox apply                            # deploy what changed, delete what the app dropped
  glassbox apply deploy/prod.app.toml --build --json

The plan marks each function + create, ~ update (with what differs), = unchanged
or - delete (deployed by this app, no longer in its manifest). Functions deployed
by hand or by another app are never deleted. See docs/apply.md.")]
pub struct ApplyArgs {
    /// The app manifest.
    #[arg(default_value = DEFAULT_FILE)]
    file: PathBuf,
    /// Show the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Run each function's `build` command first (from the manifest's directory).
    #[arg(long)]
    build: bool,
    /// The plan and what was applied, as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct Applied {
    app: String,
    plan: Vec<Plan>,
    dry_run: bool,
    /// The version each created or updated function now runs.
    deployed: Vec<Deployed>,
    deleted: Vec<String>,
    /// Why it stopped, when a change failed: what is listed above it was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Deployed {
    name: String,
    version: u32,
}

pub async fn run(a: ApplyArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load(&a.file)?;
    let dir = a.file.parent().map(Path::to_path_buf).unwrap_or_default();
    if a.build {
        build(&manifest, &dir)?;
    }
    let client = a.remote.client()?;
    let plan = plan(&client, &manifest, &dir).await?;
    let mut applied =
        Applied { app: manifest.app.clone(), plan, dry_run: a.dry_run, deployed: vec![], deleted: vec![], error: None };
    if !a.json {
        print_plan(&applied.app, &a.file, &applied.plan);
    }
    let result = match a.dry_run {
        true => Ok(()),
        false => apply(&client, &manifest, &dir, &mut applied, a.json).await,
    };
    if a.json {
        // Printed even when a change failed: a script sees what was applied before it.
        applied.error = result.as_ref().err().map(|e| format!("{e:#}"));
        println!("{}", serde_json::to_string_pretty(&applied)?);
    }
    result
}

/// Runs each `build` command in turn; stops at the first that fails.
fn build(manifest: &Manifest, dir: &Path) -> anyhow::Result<()> {
    for (name, entry) in &manifest.functions {
        let Some(command) = &entry.build else { continue };
        eprintln!("== building {name}: {command}");
        let cwd = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(cwd)
            // Stdout is the plan's (and --json's): what a build prints goes to stderr.
            .stdout(std::process::Stdio::from(std::io::stderr()))
            .stderr(std::process::Stdio::inherit())
            .status()
            .with_context(|| format!("running the build of {name}"))?;
        if !status.success() {
            bail!("the build of {name} ({command}) failed ({status}); nothing was applied");
        }
    }
    Ok(())
}

/// The component's bytes and their digest, or what to do when it is missing.
fn component(name: &str, entry: &Entry, dir: &Path) -> anyhow::Result<(Vec<u8>, String)> {
    let path = entry.component_path(dir);
    let bytes = std::fs::read(&path).with_context(|| {
        let hint = match &entry.build {
            Some(build) => format!("build it ({build}), or run glassbox apply --build"),
            None => "build it first, or fix its component path (relative to the manifest)".into(),
        };
        format!("reading the component of {name}, {}: {hint}", path.display())
    })?;
    let digest = glassbox_runtime::digest(&bytes);
    Ok((bytes, digest))
}

/// Asks the server what deploying each entry would change, then adds the
/// app's live functions the manifest no longer lists.
async fn plan(client: &Client, manifest: &Manifest, dir: &Path) -> anyhow::Result<Vec<Plan>> {
    let mut plan = Vec::new();
    for (name, entry) in &manifest.functions {
        let (_, digest) = component(name, entry, dir)?;
        let mut query = entry.deploy_params(Some(&manifest.app));
        query.push(("digest", digest));
        let path = format!("/api/v1/functions/{}/plan", segment(name));
        let answer = client.get(&path, &query).await.with_context(|| format!("[functions.{name}]"))?;
        plan.push(serde_json::from_value(answer).context("reading the server's plan")?);
    }
    let listed: FunctionList<Spec> = client.fetch("/api/v1/functions", &[]).await.context("reading the functions")?;
    plan.extend(
        listed
            .functions
            .into_iter()
            .filter(|f| f.spec.app.as_deref() == Some(manifest.app.as_str()))
            .filter(|f| !manifest.functions.contains_key(&f.name))
            .map(|f| Plan {
                function: f.name,
                change: Change::Delete,
                live_version: Some(f.version),
                differences: vec![],
            }),
    );
    Ok(plan)
}

/// Deploys what the plan creates or updates, then deletes what it drops.
/// The deploy sends the digest planned: a component rebuilt since is
/// refused rather than deployed unseen.
async fn apply(
    client: &Client,
    manifest: &Manifest,
    dir: &Path,
    applied: &mut Applied,
    quiet: bool,
) -> anyhow::Result<()> {
    for step in &applied.plan {
        let name = &step.function;
        match step.change {
            Change::Unchanged => {}
            Change::Create | Change::Update => {
                let entry = &manifest.functions[name];
                let (bytes, digest) = component(name, entry, dir)?;
                let mut query = entry.deploy_params(Some(&manifest.app));
                query.push(("digest", digest));
                let path = format!("/api/v1/functions/{}", segment(name));
                let answer: DeployedVersion<Spec> = client
                    .post_bytes_as(&path, &query, "application/wasm", bytes)
                    .await
                    .with_context(|| format!("deploying {name}; the changes before it were applied"))?;
                let deployed = Deployed { name: answer.name, version: answer.version };
                if !quiet {
                    let verb = if step.change == Change::Create { "created" } else { "updated" };
                    println!("{verb} {name}: version {} is live", deployed.version);
                }
                applied.deployed.push(deployed);
            }
            Change::Delete => {
                let path = format!("/api/v1/functions/{}", segment(name));
                client
                    .delete(&path)
                    .await
                    .with_context(|| format!("deleting {name}; the changes before it were applied"))?;
                if !quiet {
                    println!("deleted {name}");
                }
                applied.deleted.push(name.clone());
            }
        }
    }
    if !quiet && applied.deployed.is_empty() && applied.deleted.is_empty() {
        println!("nothing to apply: every function is as the manifest says");
    }
    Ok(())
}

fn print_plan(app: &str, file: &Path, plan: &[Plan]) {
    let count = |c: Change| plan.iter().filter(|p| p.change == c).count();
    println!(
        "app {app} ({}): {} to create, {} to update, {} unchanged, {} to delete",
        file.display(),
        count(Change::Create),
        count(Change::Update),
        count(Change::Unchanged),
        count(Change::Delete)
    );
    let width = plan.iter().map(|p| p.function.len()).max().unwrap_or(0);
    for p in plan {
        let version = p.live_version.map_or(String::new(), |v| format!(" (live: version {v})"));
        let (mark, what) = match p.change {
            Change::Create => ("+", "create".to_string()),
            Change::Update => ("~", format!("update{version}: {}", differences(&p.differences))),
            Change::Unchanged => ("=", format!("unchanged{version}")),
            Change::Delete => ("-", format!("delete{version}: no longer in the manifest")),
        };
        println!("  {mark} {:width$}  {what}", p.function);
    }
}

/// `timeout_ms 5000 → 2000; component sha256:1f2e… → sha256:9a8b…`.
fn differences(differences: &[Difference]) -> String {
    let value = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "none".to_string(),
        serde_json::Value::String(s) if s.starts_with("sha256:") => format!("{}…", render::short_digest(s)),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let each = differences.iter().map(|d| format!("{} {} → {}", d.field, value(&d.live), value(&d.wanted)));
    each.collect::<Vec<_>>().join("; ")
}
