//! One client connection: CONNECT, authentication and attaching to a
//! session; then a reader loop (this task) and a writer task.
//!
//! Inbound PUBLISHes are recorded in batches (every complete packet one
//! read brings) and pipelined: the reader keeps reading while earlier
//! batches are being made durable, up to the receive maximum, and answers
//! each batch in order once it is on disk.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chrono::Utc;
use futures::stream::{FuturesOrdered, StreamExt};
use glassbox_core::{Data, DisconnectReason, Draft, DropReason, State};
use glassbox_store::{Appended, SessionOp, StoreError};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{Notify, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::auth::{Credentials, OPERATOR_USERNAME};
use super::message::Message;
use super::router::{end_session, route};
use super::session::{Link, NEVER, Session, SubOptions};
use super::{Outbound, Shared, lock};
use crate::acl::Principal;
use crate::codec::{
    Ack, CodecError, ConnAck, Connect, Disconnect, Packet, Properties, Protocol, Publish, QoS, RetainHandling, SubAck,
    Subscribe, UnsubAck, Unsubscribe, Will, decode, encode,
};
use crate::flapping::Flap;
use crate::topic::{parse_filter, validate_name};

/// Control packets waiting for the writer (acknowledgements, SUBACK, …).
const CONTROL_QUEUE_MAX: usize = 1024;
/// Deliveries the writer takes from the session per round.
const WRITE_BATCH_MAX: usize = 256;
/// Output buffer kept between rounds; a larger one (after a burst) is freed.
const OUT_KEPT_BYTES: usize = 64 * 1024;

/// The receiving side of a client's stream.
enum ReadSide {
    Tcp(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

/// The sending side.
type WriteSide = Box<dyn AsyncWrite + Send + Unpin>;

impl ReadSide {
    /// Appends what arrives to `buf`; 0 at end of stream. Cancel-safe. Plain
    /// TCP waits for data before reserving room, so an idle connection holds
    /// no buffer (TLS keeps rustls's own).
    async fn read_into(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        match self {
            ReadSide::Tcp(read) => loop {
                read.readable().await?;
                buf.reserve(READ_CHUNK);
                match read.try_read_buf(buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    other => return other,
                }
            },
            ReadSide::Tls(read) => {
                buf.reserve(READ_CHUNK);
                read.read_buf(buf).await
            }
        }
    }
}

/// Reads whole packets from the stream. Holds no buffer while idle, so
/// tens of thousands of quiet connections cost little memory.
struct PacketReader {
    read: ReadSide,
    buf: Vec<u8>,
    /// Bytes of `buf` already decoded.
    pos: usize,
    protocol: Protocol,
    max: usize,
}

/// Bytes read per system call.
const READ_CHUNK: usize = 16 * 1024;

impl PacketReader {
    fn new(read: ReadSide, max: usize) -> Self {
        Self { read, buf: Vec::new(), pos: 0, protocol: Protocol::V311, max }
    }

    /// The next packet, reading as needed; `None` at end of stream.
    /// Cancel-safe: bytes read are kept in the buffer.
    async fn next(&mut self) -> Result<Option<Packet>, CodecError> {
        loop {
            if let Some(packet) = self.buffered()? {
                return Ok(Some(packet));
            }
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            match self.read.read_into(&mut self.buf).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }

    /// A packet already complete in the buffer, without reading.
    fn buffered(&mut self) -> Result<Option<Packet>, CodecError> {
        let Some((packet, used)) = decode(&self.buf[self.pos..], self.protocol, self.max)? else {
            if self.pos == self.buf.len() {
                // Everything consumed: give the memory back while idle.
                self.buf = Vec::new();
                self.pos = 0;
            }
            return Ok(None);
        };
        self.pos += used;
        Ok(Some(packet))
    }
}

/// Counts a connection for the connection limit while it lives.
struct Counted(Arc<Shared>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) async fn run(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, tls: Option<TlsAcceptor>) {
    shared.connections.fetch_add(1, Ordering::Relaxed);
    let _counted = Counted(shared.clone());
    let _ = stream.set_nodelay(true);
    let (read, mut write): (ReadSide, WriteSide) = match tls {
        None => {
            let (read, write) = stream.into_split();
            (ReadSide::Tcp(read), Box::new(write))
        }
        Some(acceptor) => match tokio::time::timeout(shared.settings.connect_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => {
                let (read, write) = tokio::io::split(stream);
                (ReadSide::Tls(read), Box::new(write))
            }
            Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => return tracing::debug!(%peer, "no TLS handshake in time"),
        },
    };
    let max = shared.settings.packet_bytes_max;
    let mut reader = PacketReader::new(read, max);
    let connect = match tokio::time::timeout(shared.settings.connect_timeout, reader.next()).await {
        Ok(Ok(Some(Packet::Connect(connect)))) => connect,
        Ok(Err(CodecError::UnsupportedProtocol { level, .. })) => {
            let (protocol, code) = if level == 5 { (Protocol::V5, 0x84) } else { (Protocol::V311, 1) };
            let _ = send_now(&mut write, protocol, &connack(code, Properties::default())).await;
            return;
        }
        Ok(_) => return tracing::debug!(%peer, "closed before a valid CONNECT"),
        Err(_) => return tracing::debug!(%peer, "no CONNECT in time"),
    };
    reader.protocol = connect.protocol;
    let Some((principal, client_id, assigned)) = admit(&shared, &connect, peer, &mut write).await else { return };
    let Some(connection) = Connection::attach(shared, principal, client_id, assigned, *connect, peer, write).await
    else {
        return;
    };
    connection.serve(reader).await;
}

/// Checks limits and credentials; answers a refusal itself.
async fn admit(
    shared: &Arc<Shared>,
    connect: &Connect,
    peer: SocketAddr,
    write: &mut WriteSide,
) -> Option<(Principal, Arc<str>, bool)> {
    let protocol = connect.protocol;
    // A device is whoever presents itself as one: user name = client id.
    let claimed_device = connect.username.as_deref().filter(|u| *u == connect.client_id && *u != OPERATOR_USERNAME);
    let mut refuse = async |reason: DisconnectReason, detail: String, code: u8| {
        let _ = send_now(write, protocol, &connack(code, Properties::default())).await;
        let data = json!({ "reason": reason, "detail": detail, "peer": peer.to_string() });
        record_lifecycle(shared, "connection_refused", claimed_device, &connect.client_id, data).await;
    };
    if shared.connections.load(Ordering::Relaxed) as usize > shared.settings.connections_max {
        let detail = format!("the server is at its connection limit ({})", shared.settings.connections_max);
        refuse(DisconnectReason::ServerBusy, detail, refusal_code(DisconnectReason::ServerBusy, protocol)).await;
        return None;
    }
    if connect.client_id.is_empty() && protocol == Protocol::V311 && !connect.clean_start {
        let detail = "an empty client id needs a clean session".to_string();
        refuse(DisconnectReason::ProtocolError, detail, 2).await;
        return None;
    }
    let credentials = Credentials {
        client_id: &connect.client_id,
        username: connect.username.as_deref(),
        password: connect.password.as_deref(),
    };
    let principal = match shared.auth.authenticate(&credentials).await {
        Ok(principal) => principal,
        Err((reason, detail)) => {
            refuse(reason, detail, refusal_code(reason, protocol)).await;
            return None;
        }
    };
    if let Principal::Device(device) = &principal {
        let flap = lock(&shared.flapping).connected(device, Instant::now());
        if let Flap::Started { connects } = flap {
            let window = shared.settings.flapping.window.as_secs();
            let data = json!({ "connects": connects, "window_seconds": window, "throttled": shared.settings.flapping_throttle });
            record_lifecycle(shared, "flapping", Some(device), device, data).await;
        }
        if shared.settings.flapping_throttle && flap != Flap::Steady {
            let detail = "flapping: too many connects in the window; back off and retry later".to_string();
            let code = if protocol == Protocol::V5 { 0x9F } else { 3 };
            refuse(DisconnectReason::RateLimited, detail, code).await;
            return None;
        }
    }
    match connect.client_id.is_empty() {
        true => Some((principal, Arc::from(format!("auto-{}", ulid::Ulid::new())), true)),
        false => Some((principal, Arc::from(connect.client_id.as_str()), false)),
    }
}

fn refusal_code(reason: DisconnectReason, protocol: Protocol) -> u8 {
    match (protocol, reason) {
        (Protocol::V5, reason) => reason.mqtt5_code().unwrap_or(0x80),
        (Protocol::V311, DisconnectReason::ServerBusy) => 3,
        (Protocol::V311, DisconnectReason::DeviceDisabled) => 5,
        (Protocol::V311, _) => 4,
    }
}

fn connack(reason: u8, properties: Properties) -> Packet {
    Packet::ConnAck(ConnAck { session_present: false, reason, properties })
}

async fn send_now(write: &mut WriteSide, protocol: Protocol, packet: &Packet) -> std::io::Result<()> {
    let mut out = Vec::new();
    encode(packet, protocol, &mut out);
    write.write_all(&out).await
}

/// Records a connection lifecycle event: `device.<what>` about a device,
/// `client.<what>` (subject: the client id) about operators and anonymous clients.
pub(super) async fn record_lifecycle(
    shared: &Shared,
    what: &str,
    device: Option<&str>,
    client_id: &str,
    data: serde_json::Value,
) {
    let Ok(raw) = serde_json::value::to_raw_value(&data) else { return };
    let ty = format!("{}.{what}", if device.is_some() { "device" } else { "client" });
    let draft = Draft {
        source: "glassbox/gateway".into(),
        ty: ty.clone(),
        subject: Some(client_id.to_string()),
        device: device.map(str::to_string),
        datacontenttype: Some("application/json".into()),
        data: Data::Json(raw),
        ..Draft::default()
    };
    if let Err(e) = shared.recorder.ingest(vec![draft], "mqtt").await {
        tracing::warn!(error = %e, event = %ty, client = client_id, "could not record a connection event");
    }
}

/// The event a PUBLISH (or a will) becomes.
fn draft(client_id: &str, device: Option<&str>, publish: &Publish) -> Draft {
    let p = &publish.properties;
    let user = |name: &str| p.user_properties.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let json = std::str::from_utf8(&publish.payload)
        .ok()
        .and_then(|text| serde_json::value::RawValue::from_string(text.to_string()).ok());
    let (data, content_type) = match json {
        Some(raw) => (Data::Json(raw), Some("application/json".to_string())),
        None if publish.payload.is_empty() => (Data::None, None),
        None => (Data::Binary(publish.payload.to_vec()), Some("application/octet-stream".to_string())),
    };
    Draft {
        source: format!("mqtt/{client_id}"),
        ty: "device.message".into(),
        subject: Some(publish.topic.clone()),
        datacontenttype: p.content_type.clone().or(content_type),
        correlationid: user("correlationid"),
        traceparent: user("traceparent").filter(|tp| glassbox_core::TraceParent::parse(tp).is_ok()),
        device: device.map(str::to_string),
        data,
        ..Draft::default()
    }
}

/// A PUBLISH being recorded, and what to answer once it is.
struct Inbound {
    publish: Publish,
    /// Accepted on the wire but not delivered: drop reason, detail, 5.0 code.
    refused: Option<(DropReason, String, u8)>,
}

type Recording = Pin<Box<dyn Future<Output = (Vec<Inbound>, Result<Vec<Appended>, StoreError>)> + Send>>;

/// Publishes per second, with a burst of one second's worth.
struct RateLimit {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn allow(&mut self) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        false
    }
}

/// An admitted connection, attached to its session.
struct Connection {
    shared: Arc<Shared>,
    session: Arc<Mutex<Session>>,
    conn: u64,
    principal: Principal,
    client_id: Arc<str>,
    protocol: Protocol,
    peer: SocketAddr,
    keep_alive: u16,
    control: mpsc::Sender<Outbound>,
    wake: Arc<Notify>,
    writer: Option<tokio::task::JoinHandle<()>>,
    closed: watch::Receiver<Option<DisconnectReason>>,
    will: Option<Will>,
    /// Set by a 5.0 DISCONNECT with reason 0x04: publish the will anyway.
    will_on_close: bool,
    aliases: HashMap<u16, String>,
    batch: Vec<Inbound>,
    recording: FuturesOrdered<Recording>,
    /// PUBLISHes read and not yet answered.
    unanswered: usize,
    /// Their packet ids: reusing one while in flight is a protocol error.
    unanswered_ids: HashSet<u16>,
    rate: RateLimit,
}

impl Connection {
    #[allow(clippy::too_many_arguments)]
    async fn attach(
        shared: Arc<Shared>,
        principal: Principal,
        client_id: Arc<str>,
        assigned: bool,
        connect: Connect,
        peer: SocketAddr,
        mut write: WriteSide,
    ) -> Option<Self> {
        let settings = &shared.settings;
        let protocol = connect.protocol;
        let asked_expiry = match protocol {
            Protocol::V311 if connect.clean_start => 0,
            Protocol::V311 => NEVER,
            Protocol::V5 => connect.properties.session_expiry_interval.unwrap_or(0),
        };
        let expiry = asked_expiry.min(settings.session_expiry_max);
        let keep_alive = match settings.keep_alive_max {
            0 => connect.keep_alive,
            max if connect.keep_alive == 0 || connect.keep_alive > max => max,
            _ => connect.keep_alive,
        };
        let device = match &principal {
            Principal::Device(id) => Some(id.clone()),
            _ => None,
        };
        let conn = shared.next_connection.fetch_add(1, Ordering::Relaxed);
        let (control, control_rx) = mpsc::channel(CONTROL_QUEUE_MAX);
        let wake = Arc::new(Notify::new());
        let p = &connect.properties;
        let link = Link {
            conn,
            protocol,
            control: control.clone(),
            wake: wake.clone(),
            window: usize::from(p.receive_maximum.unwrap_or(u16::MAX).min(settings.inflight_max).max(1)),
            packet_bytes_max: p.maximum_packet_size.map_or(usize::MAX, |m| m as usize),
            since: Utc::now(),
        };

        // Take over or replace the session of this client id.
        let mut ops = Vec::new();
        let existing = shared.session(&client_id);
        if let Some(old) = existing.as_ref().and_then(|s| lock(s).link.take()) {
            let _ = old.control.try_send(Outbound::Close(DisconnectReason::SessionTakeover));
        }
        let (session, present) = match existing {
            Some(session) if !connect.clean_start => (session, true),
            existing => {
                if let Some(old) = existing {
                    ops.extend(end_session(&shared, &old, "a new connection asked for a clean start"));
                }
                let bounds = settings.queue_bounds(&client_id);
                let session = Arc::new(Mutex::new(Session::new(client_id.clone(), device.clone(), expiry, bounds)));
                lock(&shared.sessions).insert(client_id.clone(), session.clone());
                (session, false)
            }
        };
        let mut resend = Vec::new();
        {
            let mut s = lock(&session);
            if s.persistent() && expiry == 0 {
                ops.push(SessionOp::DeleteSession { client_id: client_id.to_string() });
            }
            s.expiry = expiry;
            s.device = device;
            s.epoch += 1;
            s.disconnected_at = None;
            s.link = Some(link);
            if s.persistent() {
                ops.push(s.stored());
            }
            let now = SystemTime::now();
            for (id, flight) in &s.inflight {
                resend.push(match flight.released {
                    true => Packet::PubRel(Ack::new(*id)),
                    false => Packet::Publish(flight.delivery.publish(Some(*id), true, protocol, now)),
                });
            }
        }
        shared.persist(ops).await;

        let properties = match protocol {
            Protocol::V311 => Properties::default(),
            Protocol::V5 => Properties {
                receive_maximum: Some(settings.inflight_max),
                maximum_packet_size: Some(settings.packet_bytes_max as u32),
                topic_alias_maximum: Some(settings.topic_alias_max),
                assigned_client_identifier: assigned.then(|| client_id.to_string()),
                session_expiry_interval: (expiry != asked_expiry).then_some(expiry),
                server_keep_alive: (keep_alive != connect.keep_alive).then_some(keep_alive),
                ..Properties::default()
            },
        };
        let mut out = Vec::new();
        encode(&Packet::ConnAck(ConnAck { session_present: present, reason: 0, properties }), protocol, &mut out);
        for packet in &resend {
            encode(packet, protocol, &mut out);
        }
        if write.write_all(&out).await.is_err() {
            // Gone before CONNACK: detach as any close would.
            let persistent = {
                let mut s = lock(&session);
                s.link = None;
                s.disconnected_at = Some(Utc::now());
                s.last_disconnect = Some(DisconnectReason::ConnectionLost);
                s.persistent()
            };
            if !persistent {
                let ops = end_session(&shared, &session, "the connection closed before CONNACK");
                shared.persist(ops).await;
            }
            return None;
        }

        let (closed_tx, closed) = watch::channel(None);
        let writer = tokio::spawn(write_loop(shared.clone(), session.clone(), conn, write, control_rx, closed_tx));
        wake.notify_one();
        let data = json!({
            "peer": peer.to_string(), "protocol": protocol.level(), "keep_alive": keep_alive,
            "clean_start": connect.clean_start, "session_present": present,
            "session_expiry_seconds": (expiry != NEVER).then_some(expiry),
        });
        let device = lock(&session).device.clone();
        record_lifecycle(&shared, "connected", device.as_deref(), &client_id, data).await;
        if let (Some(reserved), Some(device)) = (shared.reserved.get(), device.as_deref()) {
            reserved.connected(device).await;
        }
        let rate = f64::from(match principal {
            Principal::Device(_) => settings.publish_rate_max,
            _ => 0,
        });
        Some(Self {
            shared,
            session,
            conn,
            principal,
            client_id,
            protocol,
            peer,
            keep_alive,
            control,
            wake,
            writer: Some(writer),
            closed,
            will: connect.will,
            will_on_close: false,
            aliases: HashMap::new(),
            batch: Vec::new(),
            recording: FuturesOrdered::new(),
            unanswered: 0,
            unanswered_ids: HashSet::new(),
            rate: RateLimit { rate, tokens: rate, last: Instant::now() },
        })
    }

    fn device(&self) -> Option<&str> {
        match &self.principal {
            Principal::Device(id) => Some(id),
            _ => None,
        }
    }

    async fn serve(mut self, mut reader: PacketReader) {
        // MQTT: a server closes a client silent for 1.5 x its keep-alive.
        let idle = (self.keep_alive > 0).then(|| Duration::from_millis(u64::from(self.keep_alive) * 1500));
        let mut deadline = idle.map(|idle| tokio::time::Instant::now() + idle);
        let window = usize::from(self.shared.settings.inflight_max);
        let reason = loop {
            let expiry = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                Some((inbound, result)) = self.recording.next(), if !self.recording.is_empty() => {
                    // Not reading while the recorder catches up is not the client's silence.
                    deadline = idle.map(|idle| tokio::time::Instant::now() + idle);
                    if let Err(reason) = self.answer(inbound, result).await {
                        break reason;
                    }
                }
                _ = self.closed.changed() => break (*self.closed.borrow()).unwrap_or(DisconnectReason::ConnectionLost),
                packet = reader.next(), if self.unanswered < window => {
                    deadline = idle.map(|idle| tokio::time::Instant::now() + idle);
                    if let Err(reason) = self.received(packet, &mut reader).await {
                        break reason;
                    }
                }
                () = expiry => break DisconnectReason::KeepAliveTimeout,
            }
        };
        self.close(reason).await;
    }

    /// Handles a packet and every other one already buffered, then starts
    /// recording the PUBLISHes among them as one batch.
    async fn received(
        &mut self,
        packet: Result<Option<Packet>, CodecError>,
        reader: &mut PacketReader,
    ) -> Result<(), DisconnectReason> {
        let mut packet = packet;
        loop {
            match packet {
                Ok(Some(packet)) => self.handle(packet).await?,
                Ok(None) => return Err(DisconnectReason::ConnectionLost),
                Err(CodecError::TooLarge { .. }) => return Err(DisconnectReason::PacketTooLarge),
                Err(e) => {
                    tracing::debug!(client = %self.client_id, error = %e, "closing on a bad packet");
                    return Err(DisconnectReason::ProtocolError);
                }
            }
            packet = match reader.buffered() {
                Ok(None) => break,
                other => other,
            };
        }
        self.start_recording();
        Ok(())
    }

    fn start_recording(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let device = self.device().map(str::to_string);
        let drafts: Vec<Draft> = batch.iter().map(|i| draft(&self.client_id, device.as_deref(), &i.publish)).collect();
        let recorder = self.shared.recorder.clone();
        self.recording.push_back(Box::pin(async move {
            let result = recorder.ingest(drafts, "mqtt").await;
            (batch, result)
        }));
    }

    /// Handles one packet; an error ends the connection with that reason.
    async fn handle(&mut self, packet: Packet) -> Result<(), DisconnectReason> {
        match packet {
            Packet::Publish(publish) => self.publish(publish).await,
            Packet::PubAck(ack) => self.acknowledged(ack.packet_id, QoS::AtLeastOnce).await,
            Packet::PubRec(ack) => self.received_by_subscriber(ack).await,
            Packet::PubComp(ack) => self.acknowledged(ack.packet_id, QoS::ExactlyOnce).await,
            Packet::PubRel(rel) => {
                let known = lock(&self.session).awaiting_release.remove(&rel.packet_id);
                let reason = if known || self.protocol == Protocol::V311 { 0 } else { 0x92 };
                self.reply(Packet::PubComp(Ack { packet_id: rel.packet_id, reason, properties: Properties::default() }))
                    .await
            }
            Packet::Subscribe(subscribe) => self.subscribe(subscribe).await,
            Packet::Unsubscribe(unsubscribe) => self.unsubscribe(unsubscribe).await,
            Packet::PingReq => self.reply(Packet::PingResp).await,
            Packet::Disconnect(disconnect) => {
                self.will_on_close = disconnect.reason == 0x04;
                if let Some(expiry) = disconnect.properties.session_expiry_interval {
                    let mut s = lock(&self.session);
                    if s.expiry == 0 && expiry > 0 {
                        return Err(DisconnectReason::ProtocolError);
                    }
                    s.expiry = expiry.min(self.shared.settings.session_expiry_max);
                }
                Err(DisconnectReason::ClientDisconnect)
            }
            // A second CONNECT, or packets only a server sends.
            _ => Err(DisconnectReason::ProtocolError),
        }
    }

    async fn reply(&mut self, packet: Packet) -> Result<(), DisconnectReason> {
        self.control.send(Outbound::Packet(Box::new(packet))).await.map_err(|_| DisconnectReason::ConnectionLost)
    }

    /// Checks a PUBLISH and adds it to the batch being read.
    async fn publish(&mut self, mut publish: Publish) -> Result<(), DisconnectReason> {
        if let Some(alias) = publish.properties.topic_alias.take() {
            if alias == 0 || alias > self.shared.settings.topic_alias_max {
                return Err(DisconnectReason::ProtocolError);
            }
            match publish.topic.is_empty() {
                true => publish.topic = self.aliases.get(&alias).cloned().ok_or(DisconnectReason::ProtocolError)?,
                false => drop(self.aliases.insert(alias, publish.topic.clone())),
            }
        }
        if validate_name(&publish.topic).is_err() {
            return Err(DisconnectReason::ProtocolError);
        }
        if let Some(id) = publish.packet_id {
            if publish.qos == QoS::ExactlyOnce && lock(&self.session).awaiting_release.contains(&id) {
                // A resent QoS 2 PUBLISH already recorded: acknowledge again, record nothing.
                return self.reply(Packet::PubRec(Ack::new(id))).await;
            }
            if !self.unanswered_ids.insert(id) {
                // A resend of one being recorded is answered when it is; a new
                // message may not reuse an id in flight.
                return if publish.dup { Ok(()) } else { Err(DisconnectReason::ProtocolError) };
            }
            let window = usize::from(self.shared.settings.inflight_max);
            if publish.qos == QoS::ExactlyOnce && lock(&self.session).awaiting_release.len() >= window {
                return Err(DisconnectReason::ProtocolError);
            }
        }
        let refused = match self.shared.acl.check_publish(&self.principal, &publish.topic) {
            Err(denied) => Some((DropReason::AclDenied, denied.to_string(), 0x87)),
            Ok(()) if !self.rate.allow() => {
                let limit = self.shared.settings.publish_rate_max;
                Some((DropReason::RateLimited, format!("over the device publish rate of {limit}/s"), 0x96))
            }
            Ok(()) => None,
        };
        self.unanswered += 1;
        self.batch.push(Inbound { publish, refused });
        Ok(())
    }

    /// Answers a recorded batch in order, then routes it.
    async fn answer(
        &mut self,
        batch: Vec<Inbound>,
        result: Result<Vec<Appended>, StoreError>,
    ) -> Result<(), DisconnectReason> {
        self.unanswered -= batch.len();
        let appended = result.map_err(|e| {
            tracing::error!(error = %e, client = %self.client_id, "could not record PUBLISHes; closing so the client resends them");
            DisconnectReason::ServerBusy
        })?;
        let now = SystemTime::now();
        let mut ops = Vec::new();
        // Recorded is recorded: route every message even if the client has gone.
        let mut answered = Ok(());
        for (inbound, appended) in batch.into_iter().zip(appended) {
            let Inbound { publish, refused } = inbound;
            if let Some(id) = publish.packet_id {
                self.unanswered_ids.remove(&id);
                let reason = match (&refused, self.protocol) {
                    (Some((_, _, code)), Protocol::V5) => *code,
                    _ => 0,
                };
                let ack = Ack { packet_id: id, reason, properties: Properties::default() };
                let packet = match publish.qos {
                    QoS::ExactlyOnce => {
                        lock(&self.session).awaiting_release.insert(id);
                        Packet::PubRec(ack)
                    }
                    _ => Packet::PubAck(ack),
                };
                if answered.is_ok() {
                    answered = self.reply(packet).await;
                }
            }
            let Ok(event) = appended.id.parse() else { continue };
            if let Some((reason, detail, _)) = refused {
                let target = if reason == DropReason::AclDenied { "acl" } else { "gateway" };
                self.shared.deliveries.note(event, State::Dropped, target, Some(format!("{reason}: {detail}")));
                continue;
            }
            let message = Arc::new(Message::new(event, &publish, self.client_id.clone(), now));
            if publish.retain {
                ops.push(self.shared.router.retain(&message));
            }
            ops.extend(route(&self.shared, &message, publish.retain));
            if let (Some(reserved), Some(rest)) = (self.shared.reserved.get(), self.reserved_rest(&publish.topic)) {
                let device = self.device().unwrap_or_default().to_string();
                let correlation = publish.properties.correlation_data.as_deref();
                reserved.published(&device, &rest, &publish.payload, correlation, event).await;
            }
        }
        self.shared.persist(ops).await;
        answered
    }

    /// For a device's own reserved topic, what follows `$glassbox/devices/<id>/`.
    fn reserved_rest(&self, topic: &str) -> Option<String> {
        let device = self.device()?;
        let rest = topic.strip_prefix(crate::acl::RESERVED_PREFIX)?.strip_prefix(device)?.strip_prefix('/')?;
        Some(rest.to_string())
    }

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) from the subscriber.
    async fn acknowledged(&mut self, packet_id: u16, qos: QoS) -> Result<(), DisconnectReason> {
        let mut ops = Vec::new();
        let mut from_platform = None;
        {
            let mut s = lock(&self.session);
            let done = s
                .inflight
                .get(&packet_id)
                .is_some_and(|f| f.delivery.qos == qos && (qos == QoS::AtLeastOnce || f.released));
            if !done {
                return Ok(());
            }
            let flight = s.inflight.remove(&packet_id).expect("checked above");
            let message = &flight.delivery.message;
            if qos == QoS::AtLeastOnce {
                self.shared.deliveries.note(message.event, State::Delivered, &self.client_id, None);
                from_platform = (&*message.publisher == super::PLATFORM).then_some(message.event);
            }
            s.forget(&flight.delivery, &mut ops);
        }
        self.platform_acknowledged(from_platform).await;
        self.wake.notify_one();
        self.shared.persist(ops).await;
        Ok(())
    }

    /// Tells the platform its message reached the device.
    async fn platform_acknowledged(&mut self, event: Option<glassbox_core::EventId>) {
        if let (Some(event), Some(reserved), Some(device)) = (event, self.shared.reserved.get(), self.device()) {
            reserved.acknowledged(device, event).await;
        }
    }

    /// PUBREC: the subscriber has a QoS 2 message; release it.
    async fn received_by_subscriber(&mut self, ack: Ack) -> Result<(), DisconnectReason> {
        let mut ops = Vec::new();
        let mut from_platform = None;
        let reply = {
            let mut s = lock(&self.session);
            let event = match s.inflight.get_mut(&ack.packet_id) {
                Some(flight) if flight.delivery.qos == QoS::ExactlyOnce => {
                    flight.released = true;
                    Some(flight.delivery.message.event)
                }
                _ => None,
            };
            match (event, ack.reason) {
                (None, _) => Some(0x92),
                (Some(event), code) if code >= 0x80 => {
                    let flight = s.inflight.remove(&ack.packet_id).expect("found above");
                    let detail = format!("the subscriber refused it (reason code {code:#04x})");
                    self.shared.deliveries.note(event, State::Delivered, &self.client_id, Some(detail));
                    s.forget(&flight.delivery, &mut ops);
                    None
                }
                (Some(event), _) => {
                    self.shared.deliveries.note(event, State::Delivered, &self.client_id, None);
                    let publisher = s.inflight.get(&ack.packet_id).map(|f| f.delivery.message.publisher.clone());
                    from_platform = publisher.filter(|p| &**p == super::PLATFORM).map(|_| event);
                    Some(0)
                }
            }
        };
        self.platform_acknowledged(from_platform).await;
        self.shared.persist(ops).await;
        match reply {
            Some(code) => {
                let reason = if self.protocol == Protocol::V5 { code } else { 0 };
                let rel = Ack { packet_id: ack.packet_id, reason, properties: Properties::default() };
                self.reply(Packet::PubRel(rel)).await
            }
            None => {
                self.wake.notify_one();
                Ok(())
            }
        }
    }

    async fn subscribe(&mut self, subscribe: Subscribe) -> Result<(), DisconnectReason> {
        let id = subscribe.properties.subscription_identifiers.first().copied();
        let now = SystemTime::now();
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        for (filter, options) in &subscribe.filters {
            let code = match parse_filter(filter) {
                Err(_) => 0x8F,
                Ok(parsed) if parsed.share.is_some() && options.no_local => 0x8F,
                Ok(parsed) => match self.shared.acl.check_subscribe(&self.principal, parsed.filter) {
                    Err(denied) => {
                        let data =
                            json!({ "filter": filter, "reason": DropReason::AclDenied, "detail": denied.to_string() });
                        record_lifecycle(&self.shared, "subscribe_denied", self.device(), &self.client_id, data).await;
                        0x87
                    }
                    Ok(()) => {
                        let sub = SubOptions {
                            qos: options.qos as u8,
                            no_local: options.no_local,
                            retain_as_published: options.retain_as_published,
                            id,
                        };
                        let new = lock(&self.session).subscriptions.insert(filter.clone(), sub.clone()).is_none();
                        self.shared.router.subscribe(&self.client_id, filter, sub);
                        let send_retained = match options.retain_handling {
                            RetainHandling::SendAtSubscribe => true,
                            RetainHandling::SendIfNew => new,
                            RetainHandling::DoNotSend => false,
                        };
                        if send_retained && parsed.share.is_none() {
                            for message in self.shared.router.retained_matching(parsed.filter, now) {
                                retained.push((message, options.qos));
                            }
                        }
                        options.qos as u8
                    }
                },
            };
            // 3.1.1 has a single failure code.
            reasons.push(if self.protocol == Protocol::V311 && code >= 0x80 { 0x80 } else { code });
        }
        self.reply(Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            properties: Properties::default(),
            reasons,
        }))
        .await?;
        if let (Some(reserved), Some(device)) = (self.shared.reserved.get().cloned(), self.device().map(str::to_string))
        {
            let own = format!("{}{device}/", crate::acl::RESERVED_PREFIX);
            for (filter, _) in subscribe.filters.iter().filter(|(f, _)| f.starts_with(&own)) {
                reserved.subscribed(&device, filter).await;
            }
        }
        let mut ops = Vec::new();
        {
            let mut s = lock(&self.session);
            for (message, qos) in retained {
                let delivery = super::message::Delivery {
                    seq: 0,
                    qos: qos.min(message.qos),
                    message,
                    retain: true,
                    subscription_ids: id.into_iter().collect(),
                    persisted: false,
                };
                s.offer(delivery, &self.shared.deliveries, &mut ops);
            }
            if s.persistent() {
                ops.push(s.stored());
            }
        }
        self.shared.persist(ops).await;
        Ok(())
    }

    async fn unsubscribe(&mut self, unsubscribe: Unsubscribe) -> Result<(), DisconnectReason> {
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        let stored = {
            let mut s = lock(&self.session);
            for filter in &unsubscribe.filters {
                let had = s.subscriptions.remove(filter).is_some();
                self.shared.router.unsubscribe(&self.client_id, filter);
                reasons.push(if had { 0x00 } else { 0x11 });
            }
            s.persistent().then(|| s.stored())
        };
        self.shared.persist(stored.into_iter().collect()).await;
        let reasons = if self.protocol == Protocol::V5 { reasons } else { Vec::new() };
        self.reply(Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            properties: Properties::default(),
            reasons,
        }))
        .await
    }

    async fn close(mut self, reason: DisconnectReason) {
        // What was read is recorded and delivered, even if it can no longer be acknowledged.
        self.start_recording();
        while let Some((batch, result)) = self.recording.next().await {
            let _ = self.answer(batch, result).await;
        }
        // The writer tells a 5.0 client why, then closes (a no-op if it already closed).
        let _ = self.control.try_send(Outbound::Close(reason));
        if let Some(writer) = self.writer.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
        }
        let mut ops = Vec::new();
        let detached = {
            let mut s = lock(&self.session);
            match s.link.as_ref().is_some_and(|l| l.conn == self.conn) {
                true => {
                    s.link = None;
                    s.disconnected_at = Some(Utc::now());
                    s.last_disconnect = Some(reason);
                    s.persist_pending(&mut ops);
                    if s.persistent() {
                        ops.push(s.stored());
                    }
                    Some((s.persistent(), s.epoch, s.expiry))
                }
                // Taken over: the session lives on with the new connection.
                false => None,
            }
        };
        if let Some((false, _, _)) = detached {
            ops.extend(end_session(
                &self.shared,
                &self.session,
                "the connection closed and the session was not persistent (clean session or expiry 0)",
            ));
        }
        self.shared.persist(ops).await;
        let will_delay = self.will.as_ref().and_then(|w| w.properties.will_delay_interval).unwrap_or(0);
        // Taken over: the client is back already, so a delayed will is moot.
        let publish_will = (reason != DisconnectReason::ClientDisconnect || self.will_on_close)
            && (detached.is_some() || will_delay == 0);
        if let (true, Some(will)) = (publish_will, self.will.take()) {
            let (epoch, expiry) = detached.map_or((0, 0), |(_, epoch, expiry)| (epoch, expiry));
            let delay = will_delay.min(expiry);
            let will = PendingWill {
                shared: self.shared.clone(),
                session: self.session.clone(),
                epoch,
                principal: self.principal.clone(),
                client_id: self.client_id.clone(),
                will,
            };
            tokio::spawn(will.publish_after(Duration::from_secs(u64::from(delay))));
        }
        let data = json!({ "reason": reason, "peer": self.peer.to_string() });
        record_lifecycle(&self.shared, "disconnected", self.device(), &self.client_id, data).await;
    }
}

/// A will waiting for its delay; a reconnect of the session cancels it.
struct PendingWill {
    shared: Arc<Shared>,
    session: Arc<Mutex<Session>>,
    epoch: u64,
    principal: Principal,
    client_id: Arc<str>,
    will: Will,
}

impl PendingWill {
    async fn publish_after(self, delay: Duration) {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
            let s = lock(&self.session);
            if s.epoch != self.epoch || s.link.is_some() {
                return;
            }
        }
        let Will { topic, payload, qos, retain, mut properties } = self.will;
        properties.will_delay_interval = None;
        let publish = Publish { dup: false, qos, retain, topic, packet_id: None, properties, payload };
        let device = match &self.principal {
            Principal::Device(id) => Some(id.as_str()),
            _ => None,
        };
        let denied = self.shared.acl.check_publish(&self.principal, &publish.topic).err();
        let recorded = self.shared.recorder.ingest(vec![draft(&self.client_id, device, &publish)], "mqtt-will").await;
        let event = match recorded.map(|mut a| a.pop().map(|a| a.id.parse())) {
            Ok(Some(Ok(event))) => event,
            other => return tracing::warn!(client = %self.client_id, ?other, "could not record a will"),
        };
        if let Some(denied) = denied {
            let detail = format!("{}: {denied}", DropReason::AclDenied);
            return self.shared.deliveries.note(event, State::Dropped, "acl", Some(detail));
        }
        let message = Arc::new(Message::new(event, &publish, self.client_id.clone(), SystemTime::now()));
        let mut ops = Vec::new();
        if retain {
            ops.push(self.shared.router.retain(&message));
        }
        ops.extend(route(&self.shared, &message, retain));
        self.shared.persist(ops).await;
    }
}

/// Writes control packets and the session's deliveries, within the
/// client's receive window, until told to close.
async fn write_loop(
    shared: Arc<Shared>,
    session: Arc<Mutex<Session>>,
    conn: u64,
    write: WriteSide,
    mut control: mpsc::Receiver<Outbound>,
    closed: watch::Sender<Option<DisconnectReason>>,
) {
    let (protocol, wake, client_id) = {
        let s = lock(&session);
        let link = s.link.as_ref().expect("attached before the writer starts");
        (link.protocol, link.wake.clone(), s.client_id.clone())
    };
    let deliveries = &shared.deliveries;
    let mut write = write;
    let mut out = Vec::new();
    let mut next: Option<Outbound> = None;
    loop {
        out.clear();
        let mut close = None;
        while let Some(item) = next.take().or_else(|| control.try_recv().ok()) {
            match item {
                Outbound::Packet(packet) => encode(&packet, protocol, &mut out),
                Outbound::Close(reason) => {
                    close = Some(reason);
                    break;
                }
            }
        }
        let mut ops = Vec::new();
        let mut written_qos0 = Vec::new();
        let mut more = false;
        if close.is_none() {
            let sendable = {
                let mut s = lock(&session);
                match s.link.as_ref().is_some_and(|l| l.conn == conn) {
                    true => s.take_sendable(WRITE_BATCH_MAX, SystemTime::now(), deliveries, &mut ops),
                    false => Vec::new(),
                }
            };
            more = sendable.len() == WRITE_BATCH_MAX;
            for (publish, delivery) in sendable {
                encode(&Packet::Publish(publish), protocol, &mut out);
                if delivery.qos == QoS::AtMostOnce {
                    written_qos0.push(delivery.message.event);
                }
            }
        }
        if !ops.is_empty() {
            shared.persist(ops).await;
        }
        if !out.is_empty() && write.write_all(&out).await.is_err() {
            let _ = closed.send(Some(DisconnectReason::ConnectionLost));
            return;
        }
        for event in written_qos0 {
            deliveries.note(event, State::Delivered, &client_id, None);
        }
        if let Some(reason) = close {
            if protocol == Protocol::V5
                && let Some(code) = reason.mqtt5_code()
            {
                out.clear();
                encode(
                    &Packet::Disconnect(Disconnect { reason: code, properties: Properties::default() }),
                    protocol,
                    &mut out,
                );
                let _ = write.write_all(&out).await;
            }
            let _ = write.flush().await;
            let _ = closed.send(Some(reason));
            let _ = write.shutdown().await;
            return;
        }
        if more {
            continue;
        }
        if out.capacity() > OUT_KEPT_BYTES {
            out = Vec::new();
        }
        tokio::select! {
            item = control.recv() => match item {
                Some(item) => next = Some(item),
                None => return,
            },
            () = wake.notified() => {}
        }
    }
}
