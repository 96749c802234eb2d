//! `glassbox bench audit`: how long `glassbox audit verify --data-dir`
//! takes over a log of N entries. The log is written through the store's
//! own path (each entry sealed in the commit of its change's event, in
//! batches), signed by a checkpoint every 10,000 entries, then verified
//! offline exactly as the command does: every hash, the chain, dense `seq`,
//! the tree's root and the signature at each checkpoint.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use glassbox_audit::merkle::CompactTree;
use glassbox_audit::{Auth, Checkpoint, Signer, Verifier};
use glassbox_core::{AuthMethod, Data, Draft, IdMinter, PrincipalKind};
use glassbox_store::{AuditStore, EventStore, Ingress, StoredCheckpoint};
use glassbox_store_sqlite::{AuditFile, RecorderSettings, SqliteStore};

#[derive(clap::Args)]
#[command(after_help = "glassbox bench audit --entries 1000000")]
pub struct AuditBenchArgs {
    /// Entries in the log.
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// Entries (and their events) per append.
    #[arg(long, default_value_t = 1000)]
    batch: u64,
    /// A checkpoint is signed every this many entries.
    #[arg(long, default_value_t = 10_000)]
    checkpoint_every: u64,
}

const ORIGIN: &str = "glassbox/bench/audit";

pub async fn run(args: AuditBenchArgs) -> anyhow::Result<()> {
    hot_path_check();
    let dir = tempfile::tempdir()?;
    let sqlite = Arc::new(SqliteStore::open(dir.path(), RecorderSettings::default())?);
    let (store, audit): (Arc<dyn EventStore>, Arc<dyn AuditStore>) = (sqlite.clone(), sqlite);
    let signer = Signer::from_pem(ORIGIN, &Signer::generate_pem()?)?;
    let started = Instant::now();
    write(&store, &audit, &signer, &args).await?;
    let written = started.elapsed();
    store.close().await;
    println!(
        "wrote {} entries (each with its change's event) in {:.1} s: {:.0} entries/s",
        args.entries,
        written.as_secs_f64(),
        args.entries as f64 / written.as_secs_f64()
    );

    let (cpu_before, started) = (cpu_seconds(), Instant::now());
    let file = AuditFile::open(dir.path()).map_err(anyhow::Error::msg)?;
    let mut verifier = Verifier::new(signer.verifier());
    for checkpoint in file.checkpoints().map_err(anyhow::Error::msg)? {
        verifier.checkpoint(&checkpoint.note)?;
    }
    file.for_each_entry(|entry| verifier.entry(&entry).map_err(|p| p.to_string())).map_err(anyhow::Error::msg)?;
    let verified = verifier.finish()?;
    let (wall, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu_before);
    println!(
        "verified {} entries and {} checkpoints offline in {wall:.2} s wall, {cpu:.2} s CPU: {:.2} µs CPU per entry",
        verified.entries,
        verified.checkpoints,
        cpu * 1e6 / verified.entries.max(1) as f64
    );
    Ok(())
}

/// What the audit log adds to every ingested event that is not a change
/// (a device message): the pipeline's check of its type.
fn hot_path_check() {
    const CALLS: u32 = 10_000_000;
    let types = ["device.message", "telemetry", "function.invoked", "device.connected"];
    let started = Instant::now();
    let changes =
        (0..CALLS).filter(|i| glassbox_audit::is_change(std::hint::black_box(types[*i as usize % 4]))).count();
    let per_call = started.elapsed().as_nanos() as f64 / f64::from(CALLS);
    println!("hot path: the change check costs {per_call:.1} ns per event that is not a change ({changes} changes)");
}

/// Appends `entries` changes in batches, signing a checkpoint every `checkpoint_every`.
async fn write(
    store: &Arc<dyn EventStore>,
    audit: &Arc<dyn AuditStore>,
    signer: &Signer,
    args: &AuditBenchArgs,
) -> anyhow::Result<()> {
    let minter = IdMinter::new();
    let mut tree = CompactTree::default();
    let mut seq = 0u64;
    while seq < args.entries {
        let n = args.batch.min(args.entries - seq);
        let batch: Vec<Ingress> = (seq..seq + n).map(|i| change(&minter, i)).collect();
        store.append(batch).await?;
        let leaves = audit.audit_leaves(tree.size(), n as usize).await?;
        leaves.into_iter().for_each(|leaf| tree.push(leaf));
        seq += n;
        if seq.is_multiple_of(args.checkpoint_every.max(1)) || seq == args.entries {
            let checkpoint = Checkpoint { origin: ORIGIN.into(), size: tree.size(), root: tree.root() };
            let note = signer.sign(&checkpoint);
            audit
                .add_checkpoint(&StoredCheckpoint { size: tree.size(), root: tree.root(), at: Utc::now(), note })
                .await?;
        }
    }
    Ok(())
}

/// The `i`th change: a device update by a named token, as the API records it.
fn change(minter: &IdMinter, i: u64) -> Ingress {
    let now = Utc::now();
    let device = format!("dev-{}", i % 1000);
    let data = serde_json::json!({"actor": "token:ci", "principal": {"kind": "token", "name": "ci",
        "auth": "bearer_token", "source": "10.0.0.7:51234"}});
    let draft = Draft {
        source: "glassbox/registry".into(),
        ty: glassbox_core::DEVICE_UPDATED.into(),
        device: Some(device.clone()),
        data: Data::json_text(&data.to_string()).unwrap_or(Data::None),
        ..Draft::default()
    };
    let event = draft.into_event(minter.mint(), now, None);
    let entry = glassbox_audit::Draft {
        time: now,
        actor: "ci".into(),
        actor_kind: PrincipalKind::Token,
        auth: Auth { method: AuthMethod::BearerToken, key_id: Some("ci".into()) },
        source: Some("10.0.0.7:51234".into()),
        node: "bench".into(),
        action: "device.update".into(),
        target: format!("device:{device}"),
        before: None,
        after: None,
        event: event.id.to_string(),
        detail: data,
        salt: hex_salt(i),
    };
    Ingress::new(event, now, "api", "bench").with_audit(entry)
}

fn hex_salt(i: u64) -> String {
    format!("{i:032x}")
}

/// This process's CPU time so far (user + system), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15; after the ")" they are 12th and 13th (0-based 11, 12).
    (ticks(11) + ticks(12)) / 100.0
}
