//! `glassbox bench connections`: opens many idle MQTT connections to any
//! broker and reports how fast they were accepted and, given the broker's
//! pid, its resident memory per connection.
//!
//! Each connection is a bare socket holding a CONNECT/CONNACK exchange, so
//! the generator itself stays small; source addresses rotate over several
//! loopback addresses to stay clear of one address's ephemeral-port range.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use glassbox_gateway::codec::{Connect, Packet, Properties, Protocol, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

#[derive(clap::Args)]
#[command(after_help = "The last line holds the figures scripts read, e.g.\n  \
    connections=19900 failed=0 connect_p50_ms=0.9 connect_p99_ms=12.0 rss_per_connection_kib=6.1\n\n\
    Each process may hold only `ulimit -n` sockets (broker and generator alike).")]
pub struct ConnectionsBenchArgs {
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Source addresses to rotate over, comma-separated.
    #[arg(long, default_value = "127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4", value_delimiter = ',')]
    sources: Vec<IpAddr>,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// The broker's process id, to read its resident memory (Linux /proc).
    #[arg(long)]
    pid: Option<u32>,
    /// Seconds to hold the connections open before measuring.
    #[arg(long, default_value_t = 3)]
    hold: u64,
    /// Keep-alive asked for, in seconds (long, so idle means idle).
    #[arg(long, default_value_t = 600)]
    keep_alive: u16,
    #[arg(long)]
    username: Option<String>,
    #[arg(long)]
    password: Option<String>,
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}

async fn open(args: &ConnectionsBenchArgs, n: usize, target: SocketAddr) -> anyhow::Result<(TcpStream, Duration)> {
    let started = Instant::now();
    let source = args.sources[n % args.sources.len()];
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0)).with_context(|| format!("binding to {source}"))?;
    let mut stream = socket.connect(target).await?;
    let connect = Connect {
        protocol: Protocol::V311,
        clean_start: true,
        keep_alive: args.keep_alive,
        client_id: format!("idle-{n}"),
        will: None,
        username: args.username.clone(),
        password: args.password.clone().map(Bytes::from),
        properties: Properties::default(),
    };
    let mut out = Vec::new();
    encode(&Packet::Connect(Box::new(connect)), Protocol::V311, &mut out);
    stream.write_all(&out).await?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).await?;
    if connack[0] != 0x20 || connack[3] != 0 {
        bail!("refused with return code {}", connack[3]);
    }
    Ok((stream, started.elapsed()))
}

pub async fn run(args: ConnectionsBenchArgs) -> anyhow::Result<()> {
    if args.sources.is_empty() {
        bail!("--sources needs at least one address");
    }
    let target: SocketAddr = tokio::net::lookup_host((args.host.as_str(), args.port))
        .await?
        .next()
        .with_context(|| format!("no address for {}", args.host))?;
    let before = args.pid.map(rss_kib).transpose()?;
    let started = Instant::now();
    let results: Vec<_> =
        stream::iter(0..args.count).map(|n| open(&args, n, target)).buffer_unordered(args.concurrency).collect().await;
    let elapsed = started.elapsed();
    let mut held = Vec::with_capacity(results.len());
    let mut latencies = Vec::with_capacity(results.len());
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok((stream, latency)) => {
                held.push(stream);
                latencies.push(latency.as_secs_f64() * 1000.0);
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    if let Some(first) = failures.first() {
        eprintln!("{} connections failed; the first: {first}", failures.len());
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    println!(
        "opened {} connections in {:.2} s ({:.0}/s); holding them {} s",
        held.len(),
        elapsed.as_secs_f64(),
        held.len() as f64 / elapsed.as_secs_f64(),
        args.hold
    );
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    // Still open? A broker that dropped idle connections would show here.
    let mut alive = 0;
    for stream in &held {
        let mut probe = [0u8; 1];
        match stream.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => alive += 1,
            _ => {}
        }
    }
    let memory = match (args.pid, before) {
        (Some(pid), Some(before)) => {
            let after = rss_kib(pid)?;
            let per = (after.saturating_sub(before)) as f64 / held.len().max(1) as f64;
            println!("broker resident memory: {before} KiB before, {after} KiB with the connections open");
            format!(" rss_before_kib={before} rss_after_kib={after} rss_per_connection_kib={per:.1}")
        }
        _ => String::new(),
    };
    println!(
        "connections={alive} failed={} connect_p50_ms={:.2} connect_p99_ms={:.2}{memory}",
        failures.len() + held.len() - alive,
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}
