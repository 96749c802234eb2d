//! `glassbox bench mqtt`: N publishers → M subscribers over real TCP, on any
//! MQTT broker — Glassbox's gateway or a peer such as Mosquitto, with the
//! same generator, so the two can be compared in one run.
//!
//! Each payload carries its publisher, sequence number and send time, so
//! subscribers measure end-to-end latency and count what was lost or
//! duplicated.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use glassbox_gateway::client::{self, Options, Reader, Writer};
use glassbox_gateway::codec::{Ack, Packet, Properties, Protocol, Publish, QoS, Subscribe, SubscriptionOptions};

#[derive(clap::Args)]
#[command(after_help = "The last line holds the figures scripts read, e.g.\n  \
    delivered_per_sec=81234 lost=0 duplicates=0 p50_ms=0.41 p99_ms=2.10 max_ms=5.32\n\n\
    Against Mosquitto: mosquitto -p 1884 &  glassbox bench mqtt --port 1884 --qos 1")]
pub struct MqttBenchArgs {
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Publishing connections.
    #[arg(long, default_value_t = 4)]
    publishers: u32,
    /// Subscribing connections; each receives every message.
    #[arg(long, default_value_t = 1)]
    subscribers: u32,
    /// Messages each publisher sends.
    #[arg(long, default_value_t = 10_000)]
    messages: u32,
    /// QoS of publishes and subscriptions (0, 1 or 2).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Payload bytes (at least 16: publisher, sequence and send time).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages per second per publisher; 0 sends flat out.
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// Unacknowledged publishes per publisher at QoS 1 and 2 (also capped by
    /// an MQTT 5 broker's receive maximum). Mosquitto closes 3.1.1 clients
    /// that exceed its max_inflight_messages (20 by default).
    #[arg(long, default_value_t = 20)]
    inflight: u16,
    /// MQTT protocol level: 4 (3.1.1) or 5.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(4..=5))]
    protocol: u8,
    #[arg(long)]
    username: Option<String>,
    #[arg(long)]
    password: Option<String>,
    /// Payloads as JSON telemetry, `{"temperature": 21.5, "bench": "<hex>"}`
    /// padded with spaces to --size (at least 74), for functions that parse
    /// it (examples/js-telemetry); with --subscribers 0 the functions are
    /// the only consumers.
    #[arg(long)]
    json: bool,
    /// Seconds to wait for stragglers after the last publish.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

/// Payload header: publisher (4 bytes), sequence (4), send time in µs since the run began (8).
const HEADER_BYTES: usize = 16;
/// A JSON payload's text before its header's hex digits.
const JSON_PREFIX: &str = r#"{"temperature": 21.5, "bench": ""#;
/// The shortest JSON payload: prefix, header in hex, `"}`.
const JSON_BYTES: usize = JSON_PREFIX.len() + 2 * HEADER_BYTES + 2;

struct Run {
    args: MqttBenchArgs,
    addr: String,
    topic: String,
    qos: QoS,
    protocol: Protocol,
    started: Instant,
}

impl Run {
    fn options(&self, client_id: String) -> Options {
        Options {
            username: self.args.username.clone(),
            password: self.args.password.clone(),
            protocol: self.protocol,
            ..Options::new(client_id)
        }
    }

    fn micros(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }
}

pub async fn run(args: MqttBenchArgs) -> anyhow::Result<()> {
    if args.size < HEADER_BYTES {
        bail!("--size must be at least {HEADER_BYTES} bytes (publisher, sequence and send time)");
    }
    if args.json && args.size < JSON_BYTES {
        bail!("--size must be at least {JSON_BYTES} bytes with --json");
    }
    let qos = match args.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    let protocol = if args.protocol == 5 { Protocol::V5 } else { Protocol::V311 };
    let tag = format!("{:08x}", rand::random::<u32>());
    let run = Arc::new(Run {
        addr: format!("{}:{}", args.host, args.port),
        topic: format!("bench/{tag}"),
        qos,
        protocol,
        started: Instant::now(),
        args,
    });
    let a = &run.args;
    println!(
        "mqtt bench: {} publishers x {} messages -> {} subscribers, qos {}, {} bytes, {}, protocol {}, broker {}",
        a.publishers,
        a.messages,
        a.subscribers,
        a.qos,
        a.size,
        if a.rate == 0 { "flat out".to_string() } else { format!("{} msg/s per publisher", a.rate) },
        a.protocol,
        run.addr
    );

    let received = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut subscribers = Vec::new();
    for i in 0..a.subscribers {
        let (reader, writer) = subscribe(&run, format!("gbx-bench-sub-{tag}-{i}")).await?;
        subscribers.push(tokio::spawn(receive(run.clone(), reader, writer, received.clone(), stopped.clone())));
    }
    let publish_started = Instant::now();
    let mut publishers = tokio::task::JoinSet::new();
    for i in 0..a.publishers {
        publishers.spawn(publish(run.clone(), i, format!("gbx-bench-pub-{tag}-{i}")));
    }
    while let Some(result) = publishers.join_next().await {
        result.context("publisher task")??;
    }
    let publish_elapsed = publish_started.elapsed();
    let expected = u64::from(a.publishers) * u64::from(a.messages) * u64::from(a.subscribers);
    wait_for(&received, expected, Duration::from_secs(a.timeout)).await;
    let _ = stop.send(true);
    let stats = finish(subscribers).await?;
    report(&run, &stats, expected, publish_started, publish_elapsed);
    Ok(())
}

async fn subscribe(run: &Run, client_id: String) -> anyhow::Result<(Reader, Writer)> {
    let (mut reader, mut writer, _) = client::connect(&run.addr, &run.options(client_id)).await?;
    let filter = format!("{}/#", run.topic);
    let subscribe = Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![(filter, SubscriptionOptions::qos(run.qos))],
    };
    writer.send(&Packet::Subscribe(subscribe)).await?;
    writer.flush().await?;
    match reader.next().await? {
        Packet::SubAck(ack) if ack.reasons.first().is_some_and(|r| *r < 0x80) => Ok((reader, writer)),
        Packet::SubAck(ack) => {
            bail!("the broker refused the subscription: reason {:#04x}", ack.reasons.first().copied().unwrap_or(0))
        }
        other => bail!("expected SUBACK, got {other:?}"),
    }
}

/// What one subscriber saw.
#[derive(Default)]
struct Stats {
    latencies_us: Vec<u64>,
    seen: Vec<Vec<bool>>,
    duplicates: u64,
    unique: u64,
    last_receive_us: u64,
}

async fn receive(
    run: Arc<Run>,
    mut reader: Reader,
    mut writer: Writer,
    received: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Stats> {
    let a = &run.args;
    let mut stats = Stats { seen: vec![vec![false; a.messages as usize]; a.publishers as usize], ..Stats::default() };
    let expected = u64::from(a.publishers) * u64::from(a.messages);
    while stats.unique < expected {
        let packet = tokio::select! {
            packet = reader.next() => packet,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let mut next = match packet {
            Ok(packet) => Some(packet),
            Err(client::ClientError::Closed) => break,
            Err(e) => return Err(e.into()),
        };
        // Handle everything already buffered, then send the acks in one write.
        while let Some(packet) = next {
            handle(&run, packet, &mut writer, &mut stats, &received).await?;
            next = reader.try_next()?;
        }
        writer.flush().await?;
    }
    let _ = writer.send(&Packet::Disconnect(Default::default())).await;
    let _ = writer.flush().await;
    Ok(stats)
}

async fn handle(
    run: &Run,
    packet: Packet,
    writer: &mut Writer,
    stats: &mut Stats,
    received: &AtomicU64,
) -> anyhow::Result<()> {
    match packet {
        Packet::Publish(p) => {
            if let Some(id) = p.packet_id {
                let ack = Ack::new(id);
                let reply = if p.qos == QoS::AtLeastOnce { Packet::PubAck(ack) } else { Packet::PubRec(ack) };
                writer.send(&reply).await?;
            }
            stats.record(&p.payload, run.micros());
            received.fetch_add(1, Ordering::Relaxed);
        }
        Packet::PubRel(rel) => writer.send(&Packet::PubComp(Ack::new(rel.packet_id))).await?,
        _ => {}
    }
    Ok(())
}

impl Stats {
    fn record(&mut self, payload: &[u8], now_us: u64) {
        let Some(header) = header(payload) else { return };
        let publisher = u32::from_be_bytes(header[0..4].try_into().unwrap_or_default()) as usize;
        let seq = u32::from_be_bytes(header[4..8].try_into().unwrap_or_default()) as usize;
        let sent_us = u64::from_be_bytes(header[8..16].try_into().unwrap_or_default());
        let Some(slot) = self.seen.get_mut(publisher).and_then(|s| s.get_mut(seq)) else { return };
        if std::mem::replace(slot, true) {
            self.duplicates += 1;
            return;
        }
        self.unique += 1;
        self.latencies_us.push(now_us.saturating_sub(sent_us));
        self.last_receive_us = now_us;
    }
}

async fn publish(run: Arc<Run>, index: u32, client_id: String) -> anyhow::Result<()> {
    let (mut reader, mut writer, connack) = client::connect(&run.addr, &run.options(client_id)).await?;
    let a = &run.args;
    let topic = format!("{}/{index}", run.topic);
    let broker_window = connack.properties.receive_maximum.unwrap_or(u16::MAX);
    let mut pacer = (a.rate > 0).then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(a.rate))));
    let mut inflight = 0u32;
    let window = u32::from(a.inflight.min(broker_window).max(1));
    let mut next_id: u16 = 0;
    for seq in 0..a.messages {
        if let Some(pacer) = pacer.as_mut() {
            pacer.tick().await;
        }
        while run.qos != QoS::AtMostOnce && inflight >= window {
            writer.flush().await?;
            inflight -= settle(&mut reader, &mut writer).await?;
        }
        let packet_id = (run.qos != QoS::AtMostOnce).then(|| {
            next_id = next_id.checked_add(1).unwrap_or(1);
            next_id
        });
        let publish = Publish {
            dup: false,
            qos: run.qos,
            retain: false,
            topic: topic.clone(),
            packet_id,
            properties: Properties::default(),
            payload: payload(index, seq, run.micros(), a.size, a.json),
        };
        writer.send(&Packet::Publish(publish)).await?;
        inflight += u32::from(packet_id.is_some());
        if pacer.is_some() {
            writer.flush().await?;
        }
    }
    writer.flush().await?;
    while inflight > 0 {
        inflight -= settle(&mut reader, &mut writer).await?;
    }
    writer.send(&Packet::Disconnect(Default::default())).await?;
    writer.flush().await?;
    Ok(())
}

/// Reads one packet of a QoS flow; returns 1 when a publish completed.
async fn settle(reader: &mut Reader, writer: &mut Writer) -> anyhow::Result<u32> {
    match reader.next().await? {
        Packet::PubAck(_) | Packet::PubComp(_) => Ok(1),
        Packet::PubRec(rec) => {
            writer.send(&Packet::PubRel(Ack::new(rec.packet_id))).await?;
            writer.flush().await?;
            Ok(0)
        }
        _ => Ok(0),
    }
}

fn payload(publisher: u32, seq: u32, sent_us: u64, size: usize, json: bool) -> Bytes {
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&publisher.to_be_bytes());
    bytes.extend_from_slice(&seq.to_be_bytes());
    bytes.extend_from_slice(&sent_us.to_be_bytes());
    if json {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        bytes = format!("{JSON_PREFIX}{hex}\"}}").into_bytes();
        bytes.resize(size, b' ');
        return Bytes::from(bytes);
    }
    bytes.resize(size, b'x');
    Bytes::from(bytes)
}

/// A payload's header, binary or (in a JSON payload) in hex.
fn header(payload: &[u8]) -> Option<[u8; HEADER_BYTES]> {
    let Some(hex) = payload.strip_prefix(JSON_PREFIX.as_bytes()) else {
        return payload.get(..HEADER_BYTES)?.try_into().ok();
    };
    let mut header = [0u8; HEADER_BYTES];
    for (byte, pair) in header.iter_mut().zip(hex.get(..2 * HEADER_BYTES)?.chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(header)
}

/// Waits until `expected` messages arrived, or none arrived for `quiet`.
async fn wait_for(received: &AtomicU64, expected: u64, quiet: Duration) {
    let mut last = received.load(Ordering::Relaxed);
    let mut since_progress = Instant::now();
    while last < expected && since_progress.elapsed() < quiet {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = received.load(Ordering::Relaxed);
        if now != last {
            last = now;
            since_progress = Instant::now();
        }
    }
}

async fn finish(subscribers: Vec<tokio::task::JoinHandle<anyhow::Result<Stats>>>) -> anyhow::Result<Vec<Stats>> {
    let mut all = Vec::new();
    for task in subscribers {
        all.push(task.await.context("subscriber task")??);
    }
    Ok(all)
}

fn report(run: &Run, stats: &[Stats], expected: u64, publish_started: Instant, publish_elapsed: Duration) {
    let unique: u64 = stats.iter().map(|s| s.unique).sum();
    let duplicates: u64 = stats.iter().map(|s| s.duplicates).sum();
    let lost = expected.saturating_sub(unique);
    let mut latencies: Vec<u64> = stats.iter().flat_map(|s| s.latencies_us.iter().copied()).collect();
    latencies.sort_unstable();
    let start_us = (publish_started - run.started).as_micros() as u64;
    let end_us = stats.iter().map(|s| s.last_receive_us).max().unwrap_or(start_us);
    let seconds = (end_us.saturating_sub(start_us) as f64 / 1e6).max(1e-6);
    let pct = |p: f64| {
        latencies.get(((latencies.len().max(1) - 1) as f64 * p) as usize).map_or(0.0, |us| *us as f64 / 1000.0)
    };
    let sent = u64::from(run.args.publishers) * u64::from(run.args.messages);
    println!(
        "sent={sent} in {:.2} s ({:.0}/s); expected deliveries={expected}, delivered={unique} in {seconds:.2} s",
        publish_elapsed.as_secs_f64(),
        sent as f64 / publish_elapsed.as_secs_f64().max(1e-6)
    );
    println!(
        "delivered_per_sec={:.0} lost={lost} duplicates={duplicates} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        unique as f64 / seconds,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_carries_its_header_in_binary_or_in_json() {
        for json in [false, true] {
            let bytes = payload(3, 70_000, 123_456_789, 80, json);
            assert_eq!(bytes.len(), 80);
            let header = header(&bytes).unwrap();
            assert_eq!(u32::from_be_bytes(header[4..8].try_into().unwrap()), 70_000);
            assert_eq!(u64::from_be_bytes(header[8..16].try_into().unwrap()), 123_456_789);
            if json {
                let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(value["temperature"], 21.5);
            }
        }
    }
}
