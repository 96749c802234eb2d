//! One client connection: CONNECT, authentication and attaching to a
//! session; then a reader loop (this task) and a writer task.
//!
//! Inbound PUBLISHes are recorded in batches (every complete packet one
//! read brings) and pipelined: the reader keeps reading while earlier
//! batches are being made durable, up to the receive maximum, and answers
//! each batch in order once it is on disk: in the recorder, and in the
//! session store for what it queued for persistent sessions.

mod acks;
mod admit;
mod budget;
mod publish;
mod stream;
mod subscriptions;
mod will;
mod writer;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::Utc;
use futures::stream::{FuturesOrdered, StreamExt};
use glassbox_core::{Connected, ConnectionPayload, DisconnectReason, Disconnected, Draft, Principal, TlsSession};
use glassbox_store::SessionOp;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use self::admit::{Admitted, admit, connack, send_now};
use self::publish::{Committing, Inbound, RateLimit, Recording, draft, source_of};
use self::stream::{PacketReader, ReadSide, WriteSide, write_all};
use self::will::PendingWill;
use self::writer::Writer;
use super::aliases::OutboundAliases;
use super::kill::{Kill, Killed};
use super::refusals::{Refusal, record as record_refusal};
use super::router::end_session;
use super::session::{Link, NEVER, Session};
use super::{BrokerSettings, Outbound, Shared, lock};
use crate::acl::Role;
use crate::broker::auth::Credentials;
use crate::codec::{
    Ack, CodecError, ConnAck, Connect, PACKET_BYTES_MAX, Packet, Properties, Protocol, QoS, Will, encode,
};

/// Control packets waiting for the writer (acknowledgements, SUBACK, …).
const CONTROL_QUEUE_MAX: usize = 1024;

/// Counts a connection for the connection limit while it lives.
struct Counted(Arc<Shared>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a connection that has not finished CONNECT against
/// `pending_connects_max` while it lives.
pub(super) struct Pending(Arc<Shared>);

impl Pending {
    /// Counts an accepted connection; `None` (the caller closes it, its
    /// refusal counted for its peer) when too many are pending already.
    pub(super) fn admit(shared: &Arc<Shared>, peer: SocketAddr) -> Option<Self> {
        let max = shared.settings.pending_connects_max;
        if shared.pending.fetch_add(1, Ordering::Relaxed) < max {
            return Some(Self(shared.clone()));
        }
        shared.pending.fetch_sub(1, Ordering::Relaxed);
        let shared = shared.clone();
        tokio::spawn(async move {
            let detail = format!("{max} connections have not finished CONNECT yet (mqtt.pending_connects_max)");
            let refusal = Refusal {
                reason: DisconnectReason::ServerBusy,
                detail: &detail,
                device: None,
                claimed: "",
                backoff: false,
            };
            record_refusal(&shared, peer.ip(), &refusal).await;
        });
        None
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How long a connection the server closes at a stop waits for the client
/// to close its end (see [`PacketReader::discard_until_closed`]).
const LINGER: Duration = Duration::from_secs(1);

pub(super) async fn run(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    pending: Pending,
) {
    shared.connections.fetch_add(1, Ordering::Relaxed);
    let _counted = Counted(shared.clone());
    let _ = stream.set_nodelay(true);
    let (read, mut write, tls, certificate): (ReadSide, WriteSide, _, _) = match tls {
        None => {
            let (read, write) = stream.into_split();
            (ReadSide::Tcp(read), Box::new(write), None, None)
        }
        Some(acceptor) => match before_connect(&shared, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => {
                let negotiated = negotiated(stream.get_ref().1);
                let certificate = crate::tls::peer_certificate(stream.get_ref().1);
                let (read, write) = tokio::io::split(stream);
                (ReadSide::Tls(read), Box::new(write), Some(negotiated), certificate)
            }
            Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => return tracing::debug!(%peer, "no TLS handshake in time, or the broker is stopping"),
        },
    };
    let max = shared.settings.packet_bytes_max;
    let mut reader = PacketReader::new(read, max);
    let connect = match before_connect(&shared, reader.next()).await {
        Ok(Ok(Some(Packet::Connect(connect)))) => connect,
        Ok(Err(CodecError::UnsupportedProtocol { level, .. })) => {
            let (protocol, code) = if level == 5 { (Protocol::V5, 0x84) } else { (Protocol::V311, 1) };
            let _ =
                send_now(&mut write, protocol, &connack(code, Properties::default()), shared.settings.write_timeout)
                    .await;
            return;
        }
        Ok(_) => return tracing::debug!(%peer, "closed before a valid CONNECT"),
        Err(_) => return tracing::debug!(%peer, "no CONNECT in time, or the broker is stopping"),
    };
    reader.protocol = connect.protocol;
    let Some(admitted) = admit(&shared, &connect, peer, certificate.as_ref(), &mut write).await else { return };
    let (username, password) = (connect.username.clone(), connect.password.clone());
    let credentials_id = connect.client_id.clone();
    drop(pending);
    let Some(connection) = Connection::attach(shared, admitted, *connect, peer, tls, write).await else {
        return;
    };
    // A device disabled, deleted or given a new secret while this CONNECT was
    // handled found no connection to end: check again now that it has one.
    let credentials = Credentials {
        client_id: &credentials_id,
        username: username.as_deref(),
        password: password.as_deref(),
        certificate: certificate.as_ref(),
    };
    if let Err((reason, detail)) = connection.shared.auth.authenticate(&credentials).await {
        tracing::info!(client = %connection.client_id, %reason, %detail, "credentials revoked while connecting");
        connection.kill.kill(reason);
    }
    connection.serve(reader).await;
}

/// The TLS version and cipher suite a handshake settled on.
fn negotiated(connection: &tokio_rustls::rustls::ServerConnection) -> TlsSession {
    use tokio_rustls::rustls::ProtocolVersion;
    let tls_version = match connection.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
        Some(ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
        other => format!("{other:?}"),
    };
    let tls_cipher = connection.negotiated_cipher_suite().map_or("unknown".into(), |s| format!("{:?}", s.suite()));
    TlsSession { tls_version, tls_cipher }
}

/// `step` of a connection before CONNECT is handled; `Err` if the connect
/// timeout passes or the broker stops first.
async fn before_connect<F: Future>(shared: &Shared, step: F) -> Result<F::Output, ()> {
    let mut stopping = shared.stopping.subscribe();
    tokio::select! {
        out = tokio::time::timeout(shared.settings.connect_timeout, step) => out.map_err(drop),
        () = stopped(&mut stopping) => Err(()),
    }
}

/// Resolves once the broker is stopping (at once if it is).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stopping| *stopping).await;
}

/// Records a connection lifecycle event: `device.<what>` about a device,
/// `client.<what>` (subject: the client id) about operators and anonymous
/// clients, as the payload's type says.
pub(super) async fn record_lifecycle<P: ConnectionPayload>(
    shared: &Shared,
    device: Option<&str>,
    client_id: &str,
    data: &P,
) {
    record_connection_event(shared, P::type_for(device), device, client_id, data).await;
}

/// Records a connection event of type `ty` about `client_id`.
pub(super) async fn record_connection_event(
    shared: &Shared,
    ty: &str,
    device: Option<&str>,
    client_id: &str,
    data: &impl Serialize,
) {
    let draft = Draft {
        subject: Some(client_id.to_string()),
        device: device.map(str::to_string),
        ..Draft::json("glassbox/gateway", ty, data)
    };
    if let Err(e) = shared.recorder.ingest(vec![draft], "mqtt").await {
        tracing::warn!(error = %e, event = %ty, client = client_id, "could not record a connection event");
    }
}

/// An admitted connection, attached to its session.
struct Connection {
    shared: Arc<Shared>,
    session: Arc<Mutex<Session>>,
    conn: u64,
    role: Role,
    /// Who the client acts as in what it changes (none: anonymous).
    principal: Option<Principal>,
    client_id: Arc<str>,
    /// `mqtt/<client id>`: the source of every event the client publishes.
    source: String,
    protocol: Protocol,
    peer: SocketAddr,
    keep_alive: u16,
    control: mpsc::Sender<Outbound>,
    kill: Kill,
    killed: Killed,
    wake: Arc<Notify>,
    writer: Option<tokio::task::JoinHandle<()>>,
    will: Option<Will>,
    /// Set by a 5.0 DISCONNECT with reason 0x04: publish the will anyway.
    will_on_close: bool,
    aliases: HashMap<u16, String>,
    batch: Vec<Inbound>,
    recording: FuturesOrdered<Recording>,
    /// Batches routed, waiting for the session store before they are answered.
    committing: FuturesOrdered<Committing>,
    /// PUBLISHes read and not yet answered.
    unanswered: usize,
    /// Their packet ids: reusing one while in flight is a protocol error.
    unanswered_ids: HashSet<u16>,
    rate: RateLimit,
    /// Refusals by a message budget, recorded at most one per interval.
    budget: budget::BudgetRefusals,
}

/// What the server grants a CONNECT: its session expiry and keep-alive,
/// within the configured maximums.
struct Terms {
    asked_expiry: u32,
    expiry: u32,
    keep_alive: u16,
}

impl Terms {
    fn grant(settings: &BrokerSettings, connect: &Connect) -> Self {
        let asked_expiry = match connect.protocol {
            Protocol::V311 if connect.clean_start => 0,
            Protocol::V311 => NEVER,
            Protocol::V5 => connect.properties.session_expiry_interval.unwrap_or(0),
        };
        let keep_alive = match settings.keep_alive_max {
            0 => connect.keep_alive,
            max if connect.keep_alive == 0 || connect.keep_alive > max => max,
            _ => connect.keep_alive,
        };
        Self { asked_expiry, expiry: asked_expiry.min(settings.session_expiry_max), keep_alive }
    }

    /// The CONNACK: 5.0 properties say the limits, and what was changed
    /// from what the client asked.
    fn connack(&self, settings: &BrokerSettings, connect: &Connect, assigned: Option<&str>, present: bool) -> Packet {
        let properties = match connect.protocol {
            Protocol::V311 => Properties::default(),
            Protocol::V5 => Properties {
                receive_maximum: Some(settings.inflight_max),
                maximum_packet_size: Some(u32::try_from(settings.packet_bytes_max).unwrap_or(u32::MAX)),
                topic_alias_maximum: Some(settings.topic_alias_max),
                assigned_client_identifier: assigned.map(str::to_string),
                session_expiry_interval: (self.expiry != self.asked_expiry).then_some(self.expiry),
                server_keep_alive: (self.keep_alive != connect.keep_alive).then_some(self.keep_alive),
                ..Properties::default()
            },
        };
        Packet::ConnAck(ConnAck { session_present: present, reason: 0, properties })
    }
}

impl Link {
    /// Connection `conn`'s link: its window and largest packet as the
    /// client's CONNECT asks, within the broker's limits.
    fn new(
        conn: u64,
        connect: &Connect,
        settings: &BrokerSettings,
        kill: Kill,
        wake: Arc<Notify>,
        tls: Option<TlsSession>,
    ) -> Self {
        let p = &connect.properties;
        Self {
            conn,
            protocol: connect.protocol,
            kill,
            wake,
            window: usize::from(p.receive_maximum.unwrap_or(u16::MAX).min(settings.inflight_max).max(1)),
            packet_bytes_max: packet_bytes_max(p.maximum_packet_size, settings),
            aliases: OutboundAliases::new(p.topic_alias_maximum.unwrap_or(0).min(settings.topic_alias_max)),
            since: Utc::now(),
            tls,
        }
    }
}

/// The largest packet to send a client: its Maximum Packet Size, else
/// none to check (`usize::MAX`), unless what the broker accepts comes
/// within a MiB of the largest packet MQTT can carry: then a PUBLISH
/// grown past it by what the broker adds (subscription ids, expiry, an
/// alias) is dropped for the client rather than sent with a wrong length.
fn packet_bytes_max(asked: Option<u32>, settings: &BrokerSettings) -> usize {
    match asked {
        Some(max) => (max as usize).min(PACKET_BYTES_MAX),
        None if settings.packet_bytes_max > PACKET_BYTES_MAX - (1 << 20) => PACKET_BYTES_MAX,
        None => usize::MAX,
    }
}

/// Takes over the session of `client_id`, or replaces it on a clean start
/// (or makes one); true when an existing session carries on.
fn claim_session(
    shared: &Arc<Shared>,
    client_id: &Arc<str>,
    device: Option<String>,
    terms: &Terms,
    clean_start: bool,
    ops: &mut Vec<SessionOp>,
) -> (Arc<Mutex<Session>>, bool) {
    let existing = shared.session(client_id);
    if let Some(old) = existing.as_ref().and_then(|s| lock(s).link.take()) {
        old.kill.kill(DisconnectReason::SessionTakeover);
    }
    match existing {
        Some(session) if !clean_start => (session, true),
        existing => {
            if let Some(old) = existing {
                ops.extend(end_session(shared, &old, "a new connection asked for a clean start"));
            }
            let bounds = shared.settings.queue_bounds(client_id);
            let session = Arc::new(Mutex::new(Session::new(client_id.clone(), device, terms.expiry, bounds)));
            lock(&shared.sessions).insert(client_id.clone(), session.clone());
            (session, false)
        }
    }
}

/// Links the session to this connection under the granted terms; returns
/// what was in flight, to send again after the CONNACK.
fn bind(
    session: &Mutex<Session>,
    link: Link,
    device: Option<String>,
    expiry: u32,
    ops: &mut Vec<SessionOp>,
) -> Vec<Packet> {
    let protocol = link.protocol;
    let mut s = lock(session);
    let was_persistent = s.persistent();
    if was_persistent && expiry == 0 {
        ops.push(SessionOp::DeleteSession { client_id: s.client_id.to_string() });
    }
    s.expiry = expiry;
    s.device = device;
    s.epoch += 1;
    s.disconnected_at = None;
    s.link = Some(link);
    if s.persistent() {
        ops.push(s.stored());
        if !was_persistent {
            s.store_subscriptions(ops);
        }
    }
    let now = SystemTime::now();
    let resend = s.inflight.iter().map(|(id, flight)| match flight.released {
        true => Packet::PubRel(Ack::new(*id)),
        false => Packet::Publish(flight.delivery.publish(Some(*id), true, protocol, now)),
    });
    resend.collect()
}

/// Gone before its CONNACK: the session detaches as at any close, and ends
/// unless it is persistent.
async fn detach_unanswered(shared: &Arc<Shared>, session: &Arc<Mutex<Session>>) {
    let persistent = {
        let mut s = lock(session);
        s.link = None;
        s.disconnected_at = Some(Utc::now());
        s.last_disconnect = Some(DisconnectReason::ConnectionLost);
        s.persistent()
    };
    if !persistent {
        let ops = end_session(shared, session, "the connection closed before CONNACK");
        shared.persist(ops).await;
    }
}

impl Connection {
    /// Attaches an admitted client to its session, answers its CONNACK (with
    /// what was in flight), starts its writer and records the connection.
    async fn attach(
        shared: Arc<Shared>,
        admitted: Admitted,
        connect: Connect,
        peer: SocketAddr,
        tls: Option<TlsSession>,
        mut write: WriteSide,
    ) -> Option<Self> {
        let Admitted { role, until, client_id, assigned, by_certificate } = admitted;
        let settings = &shared.settings;
        let (protocol, terms) = (connect.protocol, Terms::grant(settings, &connect));
        let device = match &role {
            Role::Device(id) => Some(id.clone()),
            _ => None,
        };
        let conn = shared.next_connection.fetch_add(1, Ordering::Relaxed);
        let (control, control_rx) = mpsc::channel(CONTROL_QUEUE_MAX);
        let (kill, wake) = (Kill::new(), Arc::new(Notify::new()));
        let link = Link::new(conn, &connect, settings, kill.clone(), wake.clone(), tls.clone());
        if let Role::Token { name, .. } = &role {
            let mut kills = lock(&shared.token_kills);
            kills.retain(|(_, kill)| kill.upgrade().is_some());
            kills.push((name.clone(), kill.downgrade()));
        }
        if let Some(until) = until {
            kill.at(until, DisconnectReason::TokenExpired);
        }

        let mut ops = Vec::new();
        let (session, present) =
            claim_session(&shared, &client_id, device.clone(), &terms, connect.clean_start, &mut ops);
        // The session's own id from here on (a resumed session keeps the one
        // it was made with): delivery states are paired by its address.
        let client_id = lock(&session).client_id.clone();
        let resend = bind(&session, link, device, terms.expiry, &mut ops);
        shared.persist(ops).await;

        let mut out = Vec::new();
        let connack = terms.connack(settings, &connect, assigned.then_some(&*client_id), present);
        for packet in std::iter::once(&connack).chain(&resend) {
            encode(packet, protocol, &mut out);
        }
        if write_all(&mut write, &out, settings.write_timeout).await.is_err() {
            detach_unanswered(&shared, &session).await;
            return None;
        }

        let writer = Writer {
            shared: shared.clone(),
            session: session.clone(),
            conn,
            protocol,
            client_id: client_id.clone(),
            wake: wake.clone(),
            write,
            control: control_rx,
            kill: kill.clone(),
            killed: kill.watch(),
            write_timeout: settings.write_timeout,
        };
        let writer = tokio::spawn(writer.run());
        wake.notify_one();
        let data = Connected {
            peer: peer.to_string(),
            protocol: protocol.level(),
            keep_alive: terms.keep_alive,
            clean_start: connect.clean_start,
            session_present: present,
            session_expiry_seconds: (terms.expiry != NEVER).then_some(terms.expiry),
            tls: tls.is_some(),
            tls_session: tls,
        };
        let device = lock(&session).device.clone();
        record_lifecycle(&shared, device.as_deref(), &client_id, &data).await;
        if let (Some(reserved), Some(device)) = (shared.reserved.get(), device.as_deref()) {
            reserved.connected(device).await;
        }
        let rate = f64::from(match role {
            Role::Device(_) => settings.publish_rate_max,
            _ => 0,
        });
        Some(Self {
            shared,
            session,
            conn,
            principal: super::auth::principal(&role, peer, by_certificate),
            role,
            source: source_of(&client_id),
            client_id,
            protocol,
            peer,
            keep_alive: terms.keep_alive,
            control,
            killed: kill.watch(),
            kill,
            wake,
            writer: Some(writer),
            will: connect.will,
            will_on_close: false,
            aliases: HashMap::new(),
            batch: Vec::new(),
            recording: FuturesOrdered::new(),
            committing: FuturesOrdered::new(),
            unanswered: 0,
            unanswered_ids: HashSet::new(),
            rate: RateLimit::new(rate),
            budget: budget::BudgetRefusals::default(),
        })
    }

    fn device(&self) -> Option<&str> {
        match &self.role {
            Role::Device(id) => Some(id),
            _ => None,
        }
    }

    async fn serve(mut self, mut reader: PacketReader) {
        // MQTT: a server closes a client silent for 1.5 x its keep-alive.
        let idle = (self.keep_alive > 0).then(|| Duration::from_millis(u64::from(self.keep_alive) * 1500));
        let mut deadline = idle.map(|idle| tokio::time::Instant::now() + idle);
        let window = usize::from(self.shared.settings.inflight_max);
        let mut stopping = self.shared.stopping.subscribe();
        let reason = loop {
            let expiry = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                Some((routed, committed)) = self.committing.next(), if !self.committing.is_empty() => {
                    deadline = idle.map(|idle| tokio::time::Instant::now() + idle);
                    if let Err(reason) = self.acknowledge(routed, committed).await {
                        break reason;
                    }
                }
                Some((inbound, result)) = self.recording.next(), if !self.recording.is_empty() => {
                    // Not reading while the recorder catches up is not the client's silence.
                    deadline = idle.map(|idle| tokio::time::Instant::now() + idle);
                    if let Err(reason) = self.answer(inbound, result).await {
                        break reason;
                    }
                }
                reason = self.killed.wait() => break reason,
                // The broker is stopping: read nothing more, answer what was read, close.
                () = stopped(&mut stopping) => break DisconnectReason::ServerShutdown,
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
        if reason == DisconnectReason::ServerShutdown {
            // The DISCONNECT and FIN are sent: let the client close first.
            reader.discard_until_closed(LINGER).await;
        }
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

    /// Queues a packet for the writer; waits for room unless the connection is killed.
    async fn reply(&mut self, packet: Packet) -> Result<(), DisconnectReason> {
        tokio::select! {
            biased;
            reason = self.killed.wait() => Err(reason),
            sent = self.control.send(Outbound::Packet(Box::new(packet))) => sent.map_err(|_| DisconnectReason::ConnectionLost),
        }
    }

    async fn close(mut self, reason: DisconnectReason) {
        // What was read is recorded and delivered, even if it can no longer be acknowledged.
        self.start_recording();
        while let Some((batch, result)) = self.recording.next().await {
            let _ = self.answer(batch, result).await;
        }
        while let Some((routed, committed)) = self.committing.next().await {
            let _ = self.acknowledge(routed, committed).await;
        }
        self.record_unrecorded_refusals().await;
        // The writer sends what is queued, tells a 5.0 client why, then closes;
        // if the queue is full, or that takes over a second, it is killed.
        if self.control.try_send(Outbound::Close(reason)).is_err() {
            self.kill.kill(reason);
        }
        if let Some(mut writer) = self.writer.take()
            && tokio::time::timeout(Duration::from_secs(1), &mut writer).await.is_err()
        {
            self.kill.kill(reason);
            writer.abort();
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
                role: self.role.clone(),
                client_id: self.client_id.clone(),
                will,
            };
            tokio::spawn(will.publish_after(Duration::from_secs(u64::from(delay))));
        }
        let data = Disconnected { reason, peer: self.peer.to_string() };
        record_lifecycle(&self.shared, self.device(), &self.client_id, &data).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_sent_never_outgrows_what_mqtt_can_carry() {
        let near = BrokerSettings { packet_bytes_max: PACKET_BYTES_MAX, ..BrokerSettings::default() };
        let usual = BrokerSettings::default();
        assert_eq!(packet_bytes_max(None, &usual), usize::MAX, "nothing to check: what it accepts is far below");
        assert_eq!(packet_bytes_max(None, &near), PACKET_BYTES_MAX, "a PUBLISH grown by what the broker adds");
        assert_eq!(packet_bytes_max(Some(64), &near), 64, "the client's own maximum");
        assert_eq!(packet_bytes_max(Some(u32::MAX), &usual), PACKET_BYTES_MAX);
    }
}
