//! `glassbox bench trace`: how long a running server takes to answer
//! `GET /api/v1/trace/{id}` for long chains, over HTTP, JSON parsed: what
//! `glassbox trace` waits for. Run it against a server on a big store.

use std::time::Instant;

use glassbox_api_types::{Accepted, Trace};
use serde_json::{Value, json};

use crate::Remote;

#[derive(clap::Args)]
#[command(after_help = "Example, on a 10-million-event store made by `glassbox bench store`:\n  \
    glassbox serve --data-dir /tmp/gb-bench &\n  \
    glassbox bench trace --chains 20 --length 100 --lookups 200")]
pub struct TraceBenchArgs {
    /// Chains to create (each event caused by the previous one).
    #[arg(long, default_value_t = 20)]
    chains: usize,
    /// Events per chain.
    #[arg(long, default_value_t = 100)]
    length: usize,
    /// Trace requests to time, from random events of the chains.
    #[arg(long, default_value_t = 200)]
    lookups: usize,
    #[command(flatten)]
    remote: Remote,
}

pub async fn run(args: TraceBenchArgs) -> anyhow::Result<()> {
    let client = args.remote.client()?;
    let started = Instant::now();
    let mut ids: Vec<String> = Vec::with_capacity(args.chains * args.length);
    for chain in 0..args.chains {
        let mut parent: Option<String> = None;
        for hop in 0..args.length {
            let mut event = json!({
                "specversion": "1.0", "source": "bench/trace", "type": "bench.step",
                "data": { "chain": chain, "hop": hop, "pad": "x".repeat(150) },
            });
            if let Some(parent) = &parent {
                event["causationid"] = json!(parent);
            }
            let accepted: Accepted =
                client.post_as("/api/v1/events", "application/cloudevents+json", event.to_string()).await?;
            let id = accepted.id;
            ids.push(id.clone());
            parent = Some(id);
        }
    }
    println!("created {} chains of {} events in {:.1} s", args.chains, args.length, started.elapsed().as_secs_f64());
    let mut micros = Vec::with_capacity(args.lookups);
    let mut events = 0;
    for n in 0..args.lookups {
        let id = &ids[(n * 7919) % ids.len()];
        let started = Instant::now();
        let chain: Trace<Value> = client.fetch(&format!("/api/v1/trace/{id}"), &[]).await?;
        micros.push(started.elapsed().as_micros() as u64);
        events += chain.events.len();
    }
    micros.sort_unstable();
    let pct = |p: f64| micros[((micros.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    println!(
        "trace over HTTP: p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms over {} lookups ({:.0} events each)",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
        args.lookups,
        events as f64 / args.lookups as f64
    );
    Ok(())
}
