//! `glassbox audit …`: the tamper-evident log of who changed what, where
//! and when: read it, verify it (through the server or offline from the
//! data directory's files), prove an entry's inclusion, export checkpoints.

use std::path::PathBuf;

use anyhow::{Context, bail};
use glassbox_api_types::{AuditPage, CheckpointList, CheckpointView, ConsistencyProof, InclusionProof};
use glassbox_audit::merkle::{verify_consistency, verify_inclusion};
use glassbox_audit::{Checkpoint, Entry, Problem, Verified, Verifier, VerifierKey};

use crate::{Exit, Remote, render};

/// Entries asked for per page while verifying through the server.
const VERIFY_PAGE: usize = 10_000;

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Who changed what, where and when: the newest entries, oldest first.
    #[command(after_help = "Examples:
  glassbox audit log
  glassbox audit log --actor ci --since 24h
  glassbox audit log --action 'device.*' --target device:th-1
  glassbox audit log --json | jq 'select(.action == \"token.create\")'

Actions are <noun>.<verb>: device.create, device.disable, function.deploy, function.rollback,
token.create, certificate.revoke, mqtt.clear_retained, config.change, … (docs/audit.md lists them).")]
    Log(LogArgs),
    /// Recompute every hash, the chain and the tree at each signed checkpoint;
    /// exits 1 naming the first bad entry.
    #[command(after_help = "Examples:
  glassbox audit verify                              # what the server answers
  glassbox audit verify --data-dir ./glassbox-data   # offline, from the files alone
  glassbox audit verify --data-dir ./glassbox-data --checkpoint kept.txt --key \"$(cat kept.pub)\"

A checkpoint kept off the machine (`glassbox audit checkpoint > kept.txt`, or the [audit] webhook)
catches a log rewritten by someone who also holds the signing key; pin the key you kept with --key.")]
    Verify(VerifyArgs),
    /// Prove that entry SEQ is in the log under the latest signed checkpoint.
    #[command(after_help = "glassbox audit prove 42\nglassbox audit prove 42 --json > proof.json")]
    Prove(ProveArgs),
    /// The latest signed checkpoint, as its C2SP note: keep a copy off the machine.
    #[command(after_help = "glassbox audit checkpoint > checkpoint-$(date +%F).txt
glassbox audit checkpoint --json
glassbox audit checkpoint --all        # every checkpoint kept, smallest first")]
    Checkpoint(CheckpointArgs),
    /// Prove that a checkpoint you kept is a prefix of the log now (nothing it covered changed).
    #[command(after_help = "glassbox audit consistency --checkpoint kept.txt")]
    Consistency(ConsistencyArgs),
}

#[derive(clap::Args)]
pub struct LogArgs {
    /// Only this actor (the principal's name: admin, a token's, a device's).
    #[arg(long)]
    actor: Option<String>,
    /// Only this action (device.create), or a noun's every action (device.*).
    #[arg(long)]
    action: Option<String>,
    /// Only this target (device:th-1, function:fan, token:ci).
    #[arg(long)]
    target: Option<String>,
    /// Only since: a duration back (1h, 7d) or an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// At most this many, the newest. Default 50.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    remote: Remote,
    /// One JSON entry per line, with every field the hash covers.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Verify the files of this data directory, without a server (it may be running).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A checkpoint kept elsewhere (a signed note file) to check the log against; repeatable.
    #[arg(long)]
    checkpoint: Vec<PathBuf>,
    /// The verifier key (NAME+HASH+KEY, or a file holding it). Default: the
    /// data directory's audit/checkpoint.pub, or the server's.
    #[arg(long)]
    key: Option<String>,
    #[command(flatten)]
    remote: Remote,
    /// Print what was verified as JSON (also on failure, with `problem`).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ProveArgs {
    /// The entry's seq.
    seq: u64,
    #[command(flatten)]
    remote: Remote,
    /// Print the proof as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct CheckpointArgs {
    /// Every checkpoint kept, not just the latest.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    remote: Remote,
    /// Print JSON: origin, size, root, at, note (and the key).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ConsistencyArgs {
    /// The checkpoint you kept (a signed note file).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The verifier key you kept (NAME+HASH+KEY, or a file). Default: the server's.
    #[arg(long)]
    key: Option<String>,
    #[command(flatten)]
    remote: Remote,
    #[arg(long)]
    json: bool,
}

pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Log(a) => log(a).await,
        AuditCommand::Verify(a) => verify(a).await,
        AuditCommand::Prove(a) => prove(a).await,
        AuditCommand::Checkpoint(a) => checkpoint(a).await,
        AuditCommand::Consistency(a) => consistency(a).await,
    }
}

async fn log(a: LogArgs) -> anyhow::Result<()> {
    let mut query = vec![("limit", a.limit.to_string()), ("order", "newest".to_string())];
    let filters = [("actor", a.actor), ("action", a.action), ("target", a.target), ("since", a.since)];
    query.extend(filters.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    let page: AuditPage = a.remote.client()?.fetch("/api/v1/audit", &query).await?;
    let entries: Vec<Entry> = page.entries.into_iter().rev().collect();
    if a.json {
        for entry in &entries {
            println!("{}", serde_json::to_string(entry)?);
        }
        return Ok(());
    }
    if entries.is_empty() {
        println!("no entries (every change — deploys, device and token changes, clears — is entered as it is made)");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = entries.iter().map(row).collect();
    render::table(&["SEQ", "TIME", "ACTOR", "AUTH", "FROM", "ACTION", "TARGET"], &rows);
    Ok(())
}

fn row(e: &Entry) -> Vec<String> {
    let auth = serde_json::to_value(e.auth.method).ok().and_then(|v| v.as_str().map(str::to_string));
    vec![
        e.seq.to_string(),
        render::clock(e.time),
        actor(e),
        auth.unwrap_or_default(),
        e.source.clone().unwrap_or_else(|| if e.erased { "(erased)".into() } else { "-".into() }),
        e.action.clone(),
        e.target.clone(),
    ]
}

/// `admin`, `token:ci`, `device:th-1`, `system:startup`.
fn actor(e: &Entry) -> String {
    match e.actor_kind {
        glassbox_core::PrincipalKind::Admin => e.actor.clone(),
        kind => format!("{}:{}", kind.as_str(), e.actor),
    }
}

/// A key given as itself or as a file holding it.
fn read_key(text: &str) -> anyhow::Result<VerifierKey> {
    let text = match std::fs::read_to_string(text) {
        Ok(contents) => contents,
        Err(_) => text.to_string(),
    };
    text.trim().parse().context("--key: not a verifier key (NAME+HASH+KEY, as in audit/checkpoint.pub)")
}

async fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let kept: Vec<String> = a
        .checkpoint
        .iter()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading the checkpoint {}", p.display())))
        .collect::<anyhow::Result<_>>()?;
    let outcome = match &a.data_dir {
        Some(dir) => verify_files(dir, a.key.as_deref(), &kept)?,
        None => verify_remote(&a.remote, a.key.as_deref(), &kept).await?,
    };
    report(outcome, a.json)
}

/// How a verification ended: what was covered, or the problem.
struct Outcome {
    key: VerifierKey,
    result: Result<Verified, Problem>,
}

fn report(outcome: Outcome, json: bool) -> anyhow::Result<()> {
    match (&outcome.result, json) {
        (Ok(v), true) => println!("{}", serde_json::json!({"ok": true, "key": outcome.key.to_string(), "verified": v})),
        (Err(p), true) => println!(
            "{}",
            serde_json::json!({"ok": false, "key": outcome.key.to_string(), "problem": p.to_string(), "seq": p.seq()})
        ),
        (Ok(v), false) => {
            let checkpoints = match v.last_checkpoint {
                Some(last) => format!(
                    "{} (the last over {last} entries)",
                    render::count(v.checkpoints as usize, "signed checkpoint")
                ),
                None => "no signed checkpoint yet".to_string(),
            };
            println!("ok: {} entries, hashes and chain intact, {checkpoints}", v.entries);
            println!("root {} · key {}", v.root, outcome.key);
            if v.erased > 0 {
                println!("{} entries had personal fields erased (verified through their digests)", v.erased);
            }
        }
        (Err(p), false) => eprintln!("audit log FAILED verification: {p}"),
    }
    match outcome.result {
        Ok(_) => Ok(()),
        Err(_) => Err(Exit(1).into()),
    }
}

fn verify_files(dir: &std::path::Path, key: Option<&str>, kept: &[String]) -> anyhow::Result<Outcome> {
    let key = match key {
        Some(key) => read_key(key)?,
        None => {
            let default = glassbox_server::AuditConfig::default();
            let path = glassbox_server::audit_key_dir(dir, &default).join(glassbox_server::AUDIT_PUBLIC_KEY_FILE);
            if !path.exists() {
                bail!(
                    "no verifier key at {}: pass --key with the checkpoint.pub you kept (or the one beside the \
                     signing key, when audit.key_dir keeps it outside the data directory)",
                    path.display()
                );
            }
            eprintln!(
                "note: the verifier key was read from the data directory itself; anyone holding these files and \
                 the signing key can re-sign the log: pin the key you kept with --key, and check a checkpoint \
                 you kept with --checkpoint"
            );
            read_key(&path.to_string_lossy())?
        }
    };
    let file = glassbox_store_sqlite::AuditFile::open(dir).map_err(anyhow::Error::msg)?;
    let mut verifier = Verifier::new(key.clone());
    let stored = file.checkpoints().map_err(anyhow::Error::msg)?;
    let notes = stored.iter().map(|c| c.note.as_str()).chain(kept.iter().map(String::as_str));
    if let Some(problem) = notes.map(|n| verifier.checkpoint(n)).find_map(Result::err) {
        return Ok(Outcome { key, result: Err(problem) });
    }
    let walked = file.for_each_entry(|entry| verifier.entry(&entry).map_err(Walk::Problem));
    let result = match walked {
        Ok(()) => verifier.finish(),
        Err(Walk::Problem(p)) => Err(p),
        Err(Walk::Read(e)) => bail!("{e}"),
    };
    Ok(Outcome { key, result })
}

/// Why a walk over the file stopped.
enum Walk {
    Problem(Problem),
    Read(String),
}

impl From<String> for Walk {
    fn from(e: String) -> Self {
        Walk::Read(e)
    }
}

async fn verify_remote(remote: &Remote, key: Option<&str>, kept: &[String]) -> anyhow::Result<Outcome> {
    let client = remote.client()?;
    // Signs a checkpoint over the entries made since the last, so every entry is checked under one.
    let first: AuditPage = client.fetch("/api/v1/audit", &[("limit", "1".to_string())]).await?;
    if !first.entries.is_empty() {
        client.fetch::<CheckpointView>("/api/v1/audit/checkpoint", &[]).await?;
    }
    let (checkpoints, server_key) = all_checkpoints(&client).await?;
    let notes: Vec<String> = checkpoints.into_iter().map(|c| c.note).collect();
    let key = match key {
        Some(key) => read_key(key)?,
        None => server_key.parse().context("the server's verifier key does not read")?,
    };
    let mut verifier = Verifier::new(key.clone());
    let notes = notes.iter().chain(kept);
    if let Some(problem) = notes.map(|n| verifier.checkpoint(n)).find_map(Result::err) {
        return Ok(Outcome { key, result: Err(problem) });
    }
    let mut after = 0u64;
    loop {
        let query = [("after", after.to_string()), ("limit", VERIFY_PAGE.to_string())];
        let page: AuditPage = client.fetch("/api/v1/audit", &query).await?;
        for entry in &page.entries {
            if let Err(problem) = verifier.entry(entry) {
                return Ok(Outcome { key, result: Err(problem) });
            }
        }
        match page.next {
            Some(next) => after = next,
            None => break,
        }
    }
    Ok(Outcome { key, result: verifier.finish() })
}

/// Every checkpoint the server keeps, page by page, and its verifier key.
async fn all_checkpoints(client: &crate::client::Client) -> anyhow::Result<(Vec<CheckpointView>, String)> {
    let mut checkpoints = Vec::new();
    let mut after = 0;
    loop {
        let list: CheckpointList = client.fetch("/api/v1/audit/checkpoints", &[("after", after.to_string())]).await?;
        checkpoints.extend(list.checkpoints);
        match list.next {
            Some(next) => after = next,
            None => return Ok((checkpoints, list.key)),
        }
    }
}

async fn prove(a: ProveArgs) -> anyhow::Result<()> {
    let path = format!("/api/v1/audit/{}/proof", a.seq);
    let proof: InclusionProof = a.remote.client()?.fetch(&path, &[]).await?;
    let key: VerifierKey = proof.key.parse().context("the server's verifier key does not read")?;
    let signed = Checkpoint::open(&proof.checkpoint.note, &key).context("the checkpoint's signature")?;
    // The server's index is not taken on trust: entry `seq` is leaf `seq - 1`.
    let holds = proof.index + 1 == proof.entry.seq
        && proof.entry.expected_hash() == proof.entry.hash
        && proof.entry.personal_holds()
        && verify_inclusion(proof.index, signed.size, &proof.entry.hash, &proof.proof, &signed.root);
    if a.json {
        println!("{}", serde_json::to_string(&proof)?);
    } else {
        let e = &proof.entry;
        println!("entry {}: {} by {} → {} at {}", e.seq, e.action, actor(e), e.target, render::clock(e.time));
        println!("leaf    {}", e.hash);
        println!("tree    size {} root {} (signed {})", signed.size, signed.root, render::clock(proof.checkpoint.at));
        println!("path    {} hashes (RFC 9162 §2.1.3)", proof.proof.len());
        for (i, hash) in proof.proof.iter().enumerate() {
            println!("  {i:>2}  {hash}");
        }
    }
    match holds {
        true => {
            eprintln!("ok: entry {} is included in the signed tree of {} entries", proof.entry.seq, signed.size);
            Ok(())
        }
        false => {
            eprintln!("the proof does NOT hold: entry {} is not in the signed tree as answered", proof.entry.seq);
            Err(Exit(1).into())
        }
    }
}

async fn checkpoint(a: CheckpointArgs) -> anyhow::Result<()> {
    let client = a.remote.client()?;
    if a.all {
        let (checkpoints, key) = all_checkpoints(&client).await?;
        match a.json {
            true => println!("{}", serde_json::json!({"checkpoints": checkpoints, "key": key})),
            false => {
                let rows: Vec<Vec<String>> = checkpoints
                    .iter()
                    .map(|c| vec![c.size.to_string(), render::clock(c.at), c.root.to_string()])
                    .collect();
                render::table(&["SIZE", "SIGNED", "ROOT"], &rows);
                println!("key {key}");
            }
        }
        return Ok(());
    }
    let latest: CheckpointView = client.fetch("/api/v1/audit/checkpoint", &[]).await?;
    match a.json {
        true => println!("{}", serde_json::to_string(&latest)?),
        false => print!("{}", latest.note),
    }
    Ok(())
}

async fn consistency(a: ConsistencyArgs) -> anyhow::Result<()> {
    let note = std::fs::read_to_string(&a.checkpoint)
        .with_context(|| format!("reading the checkpoint {}", a.checkpoint.display()))?;
    let client = a.remote.client()?;
    let latest: CheckpointView = client.fetch("/api/v1/audit/checkpoint", &[]).await?;
    let key = match &a.key {
        Some(key) => read_key(key)?,
        None => {
            let list: CheckpointList = client.fetch("/api/v1/audit/checkpoints", &[("limit", "1".into())]).await?;
            list.key.parse().context("the server's verifier key does not read")?
        }
    };
    let kept = Checkpoint::open(&note, &key).context("the kept checkpoint")?;
    let proof: ConsistencyProof = client
        .fetch("/api/v1/audit/consistency", &[("from", kept.size.to_string()), ("to", latest.size.to_string())])
        .await?;
    let now = Checkpoint::open(&proof.to.note, &key).context("the server's latest checkpoint")?;
    // Checked against the root kept, not the one the server says it has.
    let holds = verify_consistency(kept.size, now.size, &kept.root, &now.root, &proof.proof);
    if a.json {
        println!("{}", serde_json::json!({"ok": holds, "from": kept.size, "to": now.size, "proof": proof.proof}));
    } else if holds {
        println!("ok: the log of {} entries extends the kept checkpoint of {} unchanged", now.size, kept.size);
    }
    match holds {
        true => Ok(()),
        false => {
            eprintln!(
                "NOT consistent: the log now does not extend the kept checkpoint of {} entries: entries it covered were changed, removed or reordered",
                kept.size
            );
            Err(Exit(1).into())
        }
    }
}
