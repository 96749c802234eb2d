//! `glassbox bench store`: the recorder measured in-process, without HTTP,
//! through the same `EventStore` the server uses (durable group commit).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use glassbox_core::{Data, Draft, EventQuery, IdMinter};
use glassbox_store::{EventStore, Ingress, SettingStore};
use glassbox_store_sqlite::{RecorderSettings, SqliteStore};
use rand::Rng;
use serde_json::value::RawValue;

#[derive(clap::Args)]
#[command(after_help = "Example: a 10-million-event store, kept for reruns:\n  \
    glassbox bench store --size 10000000 --data-dir /tmp/gb-bench")]
pub struct StoreBenchArgs {
    /// Events in the store before measuring (prefilled as needed).
    #[arg(long, default_value_t = 1_000_000)]
    size: u64,
    /// Events appended in the measured phase.
    #[arg(long, default_value_t = 500_000)]
    events: u64,
    /// Concurrent appenders.
    #[arg(long, default_value_t = 64)]
    producers: u64,
    /// Events per append call (1 = one ingest request per event).
    #[arg(long, default_value_t = 1)]
    batch: u64,
    /// Events per correlation chain.
    #[arg(long, default_value_t = 5)]
    chain_length: u64,
    /// Chain lookups to time.
    #[arg(long, default_value_t = 2000)]
    lookups: usize,
    /// Bytes of JSON data per event.
    #[arg(long, default_value_t = 200)]
    data_bytes: usize,
    /// Store directory; reused across runs (default: a temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// A chain's correlation ids sampled during prefill, for lookups.
const SAMPLE_FILE: &str = "bench-chains.txt";
const SAMPLE_MAX: usize = 20_000;

pub async fn run(args: StoreBenchArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = args.data_dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let sqlite = Arc::new(SqliteStore::open(
        &dir,
        RecorderSettings { retention: Duration::ZERO, ..RecorderSettings::default() },
    )?);
    // How many events a reused directory holds already.
    let counted: Arc<dyn SettingStore> = sqlite.clone();
    let store: Arc<dyn EventStore> = sqlite;
    let workload = Arc::new(Workload::new(&args)?);

    let mut sample = read_sample(&dir);
    let present: u64 = counted.setting("bench.events").await?.and_then(|s| s.parse().ok()).unwrap_or(0);
    if present < args.size {
        let started = Instant::now();
        let filled = prefill(&store, &workload, args.size - present, &mut sample).await?;
        counted.put_setting("bench.events", &(present + filled).to_string()).await?;
        std::fs::write(dir.join(SAMPLE_FILE), sample.join("\n")).context("saving the chain sample")?;
        println!("prefill: {filled} events in {:.1} s", started.elapsed().as_secs_f64());
    }
    println!("store: {} events before measuring, in {}", present.max(args.size), dir.display());

    let commits_before = store.status().await.commits;
    let started = Instant::now();
    append_concurrently(&store, &workload, args.events, args.producers, args.batch).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let commits = store.status().await.commits - commits_before;
    while store.status().await.query_lag > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let indexed = started.elapsed().as_secs_f64();
    println!(
        "append: {} events acknowledged in {elapsed:.2} s = {:.0} events/s, indexed in {indexed:.2} s = {:.0} events/s \
         ({} producers, batch {}, {commits} commits, {:.0} events/commit, each synced before its answer)",
        args.events,
        args.events as f64 / elapsed,
        args.events as f64 / indexed,
        args.producers,
        args.batch,
        args.events as f64 / commits.max(1) as f64
    );
    counted.put_setting("bench.events", &(present.max(args.size) + args.events).to_string()).await?;

    let chain = time_lookups(args.lookups, &sample, |corr| {
        let store = store.clone();
        async move { store.chain(&corr, 1000).await.map(|c| c.events.len()) }
    })
    .await?;
    println!("chain lookup ({} events per chain): {chain}", args.chain_length);
    let devices: Vec<String> = (0..1000).map(|i| format!("dev-{i}")).collect();
    let by_device = time_lookups(args.lookups, &devices, |device| {
        let store = store.clone();
        async move {
            let query = EventQuery { device: Some(device), limit: 100, ..EventQuery::default() };
            store.query(&query).await.map(|p| p.events.len())
        }
    })
    .await?;
    println!("device query (newest 100): {by_device}");
    store.close().await;
    Ok(())
}

/// Makes events of about `data_bytes` of JSON, in chains of `chain_length`.
struct Workload {
    minter: IdMinter,
    data: Box<RawValue>,
    chain_length: u64,
}

impl Workload {
    fn new(args: &StoreBenchArgs) -> anyhow::Result<Self> {
        let pad = "x".repeat(args.data_bytes.saturating_sub(48));
        let data = RawValue::from_string(format!(r#"{{"temperature":21.5,"humidity":40.25,"pad":"{pad}"}}"#))?;
        Ok(Self { minter: IdMinter::new(), data, chain_length: args.chain_length.max(1) })
    }

    /// One event of chain `n` at depth `hop`, caused by `parent`.
    fn event(&self, n: u64, hop: u64, parent: Option<&glassbox_core::Event>) -> Ingress {
        let now = Utc::now();
        let draft = Draft {
            source: "bench".into(),
            ty: if hop == 0 { "telemetry".into() } else { format!("derived.{hop}") },
            device: Some(format!("dev-{}", n % 1000)),
            correlationid: parent.map(|p| p.correlationid.clone()),
            causationid: parent.map(|p| p.id.to_string()),
            hop: Some(hop as u32),
            data: Data::Json(self.data.clone()),
            ..Draft::default()
        };
        Ingress::new(draft.into_event(self.minter.mint(), now, None), now, "bench", "bench")
    }

    /// One chain: an origin and its descendants, each caused by the previous.
    fn chain(&self, n: u64) -> Vec<Ingress> {
        let mut chain: Vec<Ingress> = Vec::with_capacity(self.chain_length as usize);
        for hop in 0..self.chain_length {
            let next = self.event(n, hop, chain.last().map(Ingress::event));
            chain.push(next);
        }
        chain
    }
}

async fn prefill(
    store: &Arc<dyn EventStore>,
    workload: &Arc<Workload>,
    count: u64,
    sample: &mut Vec<String>,
) -> anyhow::Result<u64> {
    let chains = count.div_ceil(workload.chain_length);
    let per_batch = (4096 / workload.chain_length).max(1);
    let mut written = 0;
    let mut chain = 0;
    let mut rng = rand::rng();
    let mut inflight = tokio::task::JoinSet::new();
    while chain < chains {
        let end = (chain + per_batch).min(chains);
        let batch: Vec<Ingress> = (chain..end).flat_map(|n| workload.chain(n)).collect();
        for origin in batch.iter().step_by(workload.chain_length as usize) {
            let correlation = origin.event().correlationid.clone();
            if sample.len() < SAMPLE_MAX {
                sample.push(correlation);
            } else if rng.random_ratio(1, 50) {
                let slot = rng.random_range(0..SAMPLE_MAX);
                sample[slot] = correlation;
            }
        }
        written += batch.len() as u64;
        chain = end;
        let store = store.clone();
        inflight.spawn(async move { store.append(batch).await });
        if inflight.len() >= 4 {
            inflight.join_next().await.context("prefill task")??.map_err(anyhow::Error::from)?;
        }
    }
    while let Some(result) = inflight.join_next().await {
        result??;
    }
    Ok(written)
}

async fn append_concurrently(
    store: &Arc<dyn EventStore>,
    workload: &Arc<Workload>,
    events: u64,
    producers: u64,
    batch: u64,
) -> anyhow::Result<()> {
    let per_producer = events / producers.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..producers.max(1) {
        let (store, workload) = (store.clone(), workload.clone());
        tasks.spawn(async move {
            let mut sent = 0;
            let mut n = p * 1_000_000_000;
            while sent < per_producer {
                let mut chunk = Vec::with_capacity(batch as usize);
                while (chunk.len() as u64) < batch.min(per_producer - sent) {
                    chunk.push(workload.event(n, 0, None));
                    n += 1;
                }
                sent += chunk.len() as u64;
                store.append(chunk).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(())
}

/// Latency percentiles of `count` sequential calls over random keys.
async fn time_lookups<F, Fut>(count: usize, keys: &[String], call: F) -> anyhow::Result<String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<usize, glassbox_store::StoreError>>,
{
    anyhow::ensure!(!keys.is_empty(), "no keys to look up: the store is empty");
    let mut rng = rand::rng();
    let mut micros = Vec::with_capacity(count);
    let mut found = 0;
    for _ in 0..count {
        let key = keys[rng.random_range(0..keys.len())].clone();
        let started = Instant::now();
        found += call(key).await?;
        micros.push(started.elapsed().as_micros() as u64);
    }
    micros.sort_unstable();
    let pct = |p: f64| micros[((micros.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    Ok(format!(
        "p50={:.3} ms p90={:.3} ms p99={:.3} ms max={:.3} ms over {count} lookups ({:.1} events each)",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
        found as f64 / count as f64
    ))
}

fn read_sample(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(SAMPLE_FILE)).map(|s| s.lines().map(str::to_string).collect()).unwrap_or_default()
}
