//! One client connection: CONNECT and authentication, then a reader loop
//! (this task) and a writer task joined by a bounded queue.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use glassbox_core::{Data, DisconnectReason, Draft, DropReason, EventId, State};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};

use super::auth::Credentials;
use super::{Outbound, Peer, Shared, Subscription};
use crate::acl::Principal;
use crate::codec::{
    Ack, CodecError, ConnAck, Connect, Disconnect, Packet, Properties, Protocol, Publish, QoS, SubAck, Subscribe,
    UnsubAck, Unsubscribe, decode, encode,
};
use crate::topic::{parse_filter, validate_name};

/// Packet ids of QoS 1 deliveries awaiting PUBACK, and their events.
type Inflight = Arc<Mutex<HashMap<u16, EventId>>>;

/// Reads whole packets from the socket.
struct PacketReader {
    read: OwnedReadHalf,
    buf: Vec<u8>,
    protocol: Protocol,
    max: usize,
}

impl PacketReader {
    async fn next(&mut self) -> Result<Option<Packet>, CodecError> {
        loop {
            if let Some((packet, used)) = decode(&self.buf, self.protocol, self.max)? {
                self.buf.drain(..used);
                return Ok(Some(packet));
            }
            let mut chunk = [0u8; 8192];
            match self.read.read(&mut chunk).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

pub(super) async fn run(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let max = shared.settings.packet_bytes_max;
    let mut reader = PacketReader { read, buf: Vec::new(), protocol: Protocol::V311, max };
    let connect = match tokio::time::timeout(shared.settings.connect_timeout, reader.next()).await {
        Ok(Ok(Some(Packet::Connect(connect)))) => connect,
        Ok(Err(CodecError::UnsupportedProtocol { .. })) => {
            let _ = send_now(&mut write, Protocol::V311, &connack(1)).await;
            return;
        }
        Ok(_) => return tracing::debug!(%peer, "closed before a valid CONNECT"),
        Err(_) => return tracing::debug!(%peer, "no CONNECT in time"),
    };
    reader.protocol = connect.protocol;
    let Some(session) = admit(&shared, &connect, peer, &mut write).await else { return };
    session.serve(reader, write, connect.keep_alive).await;
}

/// Authenticates and registers the client; answers a refusal itself.
async fn admit(
    shared: &Arc<Shared>,
    connect: &Connect,
    peer: SocketAddr,
    write: &mut OwnedWriteHalf,
) -> Option<Session> {
    let protocol = connect.protocol;
    let credentials = Credentials {
        client_id: &connect.client_id,
        username: connect.username.as_deref(),
        password: connect.password.as_deref(),
    };
    let full = shared.peers.lock().unwrap_or_else(|e| e.into_inner()).len() >= shared.settings.connections_max;
    let verdict = match full {
        true => Err((DisconnectReason::ServerBusy, "the server is at its connection limit".to_string())),
        false => shared.auth.authenticate(&credentials).await,
    };
    let principal = match verdict {
        Ok(principal) => principal,
        Err((reason, detail)) => {
            let code = refusal_code(reason, protocol);
            let _ = send_now(write, protocol, &connack(code)).await;
            // A device is whoever presents itself as one: user name = client id.
            let device =
                connect.username.as_deref().filter(|u| *u == connect.client_id && *u != super::auth::OPERATOR_USERNAME);
            let data = json!({ "reason": reason, "detail": detail, "peer": peer.to_string() });
            record_lifecycle(shared, "connection_refused", device, &connect.client_id, data).await;
            return None;
        }
    };
    let client_id = match connect.client_id.is_empty() {
        true => format!("auto-{}", ulid::Ulid::new()),
        false => connect.client_id.clone(),
    };
    Some(Session::register(shared.clone(), principal, client_id, protocol, peer))
}

fn refusal_code(reason: DisconnectReason, protocol: Protocol) -> u8 {
    match (protocol, reason) {
        (Protocol::V5, reason) => reason.mqtt5_code().unwrap_or(0x80),
        (Protocol::V311, DisconnectReason::ServerBusy) => 3,
        (Protocol::V311, DisconnectReason::DeviceDisabled) => 5,
        (Protocol::V311, _) => 4,
    }
}

fn connack(reason: u8) -> Packet {
    Packet::ConnAck(ConnAck { session_present: false, reason, properties: Properties::default() })
}

async fn send_now(write: &mut OwnedWriteHalf, protocol: Protocol, packet: &Packet) -> std::io::Result<()> {
    let mut out = Vec::new();
    encode(packet, protocol, &mut out);
    write.write_all(&out).await
}

/// Records a connection lifecycle event: `device.<what>` about a device,
/// `client.<what>` (subject: the client id) about operators and anonymous clients.
async fn record_lifecycle(shared: &Shared, what: &str, device: Option<&str>, client_id: &str, data: serde_json::Value) {
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

/// An admitted connection.
struct Session {
    shared: Arc<Shared>,
    id: u64,
    principal: Principal,
    client_id: String,
    protocol: Protocol,
    peer: SocketAddr,
    outbound: mpsc::Sender<Outbound>,
    outbound_rx: Option<mpsc::Receiver<Outbound>>,
    filters: HashSet<String>,
    inflight: Inflight,
    /// QoS 2 packet ids received and recorded, awaiting PUBREL.
    awaiting_release: HashSet<u16>,
}

impl Session {
    fn register(
        shared: Arc<Shared>,
        principal: Principal,
        client_id: String,
        protocol: Protocol,
        peer: SocketAddr,
    ) -> Self {
        let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
        let (outbound, outbound_rx) = mpsc::channel(shared.settings.outbound_queue_max.max(16));
        let previous = shared.by_client_id.lock().unwrap_or_else(|e| e.into_inner()).insert(client_id.clone(), id);
        {
            let mut peers = shared.peers.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(old) = previous.and_then(|old| peers.get(&old)) {
                let _ = old.outbound.try_send(Outbound::Close(DisconnectReason::SessionTakeover));
            }
            peers.insert(id, Peer { client_id: client_id.clone(), outbound: outbound.clone() });
        }
        Self {
            shared,
            id,
            principal,
            client_id,
            protocol,
            peer,
            outbound,
            outbound_rx: Some(outbound_rx),
            filters: HashSet::new(),
            inflight: Arc::default(),
            awaiting_release: HashSet::new(),
        }
    }

    async fn serve(mut self, mut reader: PacketReader, write: OwnedWriteHalf, keep_alive: u16) {
        let (closed_tx, mut closed) = watch::channel(None);
        let rx = self.outbound_rx.take().expect("taken once, here");
        let writer = tokio::spawn(write_loop(
            write,
            rx,
            self.protocol,
            self.inflight.clone(),
            self.shared.clone(),
            self.client_id.clone(),
            closed_tx,
        ));
        let _ = self.outbound.send(Outbound::Packet(Box::new(self.connack()))).await;
        record_lifecycle(
            &self.shared,
            "connected",
            self.device(),
            &self.client_id,
            json!({
                "peer": self.peer.to_string(), "protocol": self.protocol.level(), "keep_alive": keep_alive,
            }),
        )
        .await;
        // MQTT: a server closes a client silent for 1.5 x its keep-alive.
        let idle = match keep_alive {
            0 => Duration::MAX,
            seconds => Duration::from_millis(u64::from(seconds) * 1500),
        };
        let reason = loop {
            let packet = tokio::select! {
                packet = tokio::time::timeout(idle, reader.next()) => packet,
                _ = closed.changed() => break (*closed.borrow()).unwrap_or(DisconnectReason::ConnectionLost),
            };
            match packet {
                Ok(Ok(Some(packet))) => {
                    if let Err(reason) = self.handle(packet).await {
                        break reason;
                    }
                }
                Ok(Ok(None)) => break DisconnectReason::ConnectionLost,
                Ok(Err(CodecError::TooLarge { .. })) => break DisconnectReason::PacketTooLarge,
                Ok(Err(_)) => break DisconnectReason::ProtocolError,
                Err(_elapsed) => break DisconnectReason::KeepAliveTimeout,
            }
        };
        self.close(reason, writer).await;
    }

    fn device(&self) -> Option<&str> {
        match &self.principal {
            Principal::Device(id) => Some(id),
            _ => None,
        }
    }

    fn connack(&self) -> Packet {
        let properties = match self.protocol {
            Protocol::V311 => Properties::default(),
            Protocol::V5 => Properties {
                maximum_packet_size: Some(self.shared.settings.packet_bytes_max as u32),
                retain_available: Some(0),
                shared_subscription_available: Some(0),
                subscription_identifier_available: Some(0),
                topic_alias_maximum: Some(0),
                maximum_qos: Some(1),
                ..Properties::default()
            },
        };
        Packet::ConnAck(ConnAck { session_present: false, reason: 0, properties })
    }

    /// Handles one packet; an error ends the connection with that reason.
    async fn handle(&mut self, packet: Packet) -> Result<(), DisconnectReason> {
        match packet {
            Packet::Publish(publish) => self.publish(publish).await,
            Packet::PubAck(ack) => {
                let event = self.inflight.lock().unwrap_or_else(|e| e.into_inner()).remove(&ack.packet_id);
                if let Some(event) = event {
                    self.shared.deliveries.note(event, State::Delivered, &self.client_id, None);
                }
                Ok(())
            }
            Packet::PubRel(rel) => {
                self.awaiting_release.remove(&rel.packet_id);
                self.reply(Packet::PubComp(Ack::new(rel.packet_id))).await
            }
            Packet::Subscribe(subscribe) => self.subscribe(subscribe).await,
            Packet::Unsubscribe(unsubscribe) => self.unsubscribe(unsubscribe).await,
            Packet::PingReq => self.reply(Packet::PingResp).await,
            Packet::Disconnect(_) => Err(DisconnectReason::ClientDisconnect),
            // A second CONNECT, or packets only a server sends.
            _ => Err(DisconnectReason::ProtocolError),
        }
    }

    async fn reply(&self, packet: Packet) -> Result<(), DisconnectReason> {
        self.outbound.send(Outbound::Packet(Box::new(packet))).await.map_err(|_| DisconnectReason::ConnectionLost)
    }

    async fn publish(&mut self, publish: Publish) -> Result<(), DisconnectReason> {
        if validate_name(&publish.topic).is_err() || publish.properties.topic_alias.is_some() {
            return Err(DisconnectReason::ProtocolError);
        }
        if publish.qos == QoS::ExactlyOnce && publish.packet_id.is_some_and(|id| self.awaiting_release.contains(&id)) {
            // A resent QoS 2 PUBLISH already recorded: acknowledge again, record nothing.
            return self.reply(Packet::PubRec(Ack::new(publish.packet_id.unwrap_or_default()))).await;
        }
        let denied = self.shared.acl.check_publish(&self.principal, &publish.topic).err();
        let draft = self.draft(&publish);
        let recorded = self.shared.recorder.ingest(vec![draft], "mqtt").await.map_err(|e| {
            tracing::error!(error = %e, client = %self.client_id, "could not record a PUBLISH; closing so the client resends it");
            DisconnectReason::ServerBusy
        })?;
        let event: Option<EventId> = recorded.first().and_then(|a| a.id.parse().ok());
        if let Some(id) = publish.packet_id {
            let reason = if denied.is_some() && self.protocol == Protocol::V5 { 0x87 } else { 0 };
            let ack = Ack { packet_id: id, reason, properties: Properties::default() };
            match publish.qos {
                QoS::ExactlyOnce => {
                    self.awaiting_release.insert(id);
                    self.reply(Packet::PubRec(ack)).await?;
                }
                _ => self.reply(Packet::PubAck(ack)).await?,
            }
        }
        let Some(event) = event else { return Ok(()) };
        match denied {
            Some(denied) => self.shared.deliveries.note(
                event,
                State::Dropped,
                "acl",
                Some(format!("{}: {denied}", DropReason::AclDenied)),
            ),
            None => self.route(event, &publish),
        }
        Ok(())
    }

    /// The event a PUBLISH becomes.
    fn draft(&self, publish: &Publish) -> Draft {
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
        let device = self.device().map(str::to_string);
        Draft {
            source: format!("mqtt/{}", self.client_id),
            ty: "device.message".into(),
            subject: Some(publish.topic.clone()),
            datacontenttype: p.content_type.clone().or(content_type),
            correlationid: user("correlationid"),
            traceparent: user("traceparent").filter(|tp| glassbox_core::TraceParent::parse(tp).is_ok()),
            device,
            data,
            ..Draft::default()
        }
    }

    /// Hands a recorded message to every matching subscriber.
    fn route(&self, event: EventId, publish: &Publish) {
        let mut targets = Vec::new();
        self.shared
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .for_each_match(&publish.topic, |conn, sub| targets.push((*conn, sub.qos)));
        let deliveries = &self.shared.deliveries;
        deliveries.note(event, State::Routed, "mqtt", Some(format!("{} subscribers", targets.len())));
        let peers = self.shared.peers.lock().unwrap_or_else(|e| e.into_inner());
        for (conn, qos) in targets {
            let Some(peer) = peers.get(&conn) else { continue };
            let deliver = Outbound::Deliver {
                topic: publish.topic.clone(),
                payload: publish.payload.clone(),
                qos: qos.min(publish.qos),
                event,
            };
            match peer.outbound.try_send(deliver) {
                Ok(()) => deliveries.note(event, State::InTransit, &peer.client_id, None),
                Err(_) => {
                    deliveries.note(event, State::Dropped, &peer.client_id, Some(DropReason::QueueFull.to_string()))
                }
            }
        }
    }

    async fn subscribe(&mut self, subscribe: Subscribe) -> Result<(), DisconnectReason> {
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        for (filter, options) in &subscribe.filters {
            let code = match parse_filter(filter) {
                Err(_) => 0x8F,
                Ok(parsed) if parsed.share.is_some() => 0x9E,
                Ok(_) => match self.shared.acl.check_subscribe(&self.principal, filter) {
                    Err(_) => 0x87,
                    Ok(()) => {
                        let qos = options.qos.min(QoS::AtLeastOnce);
                        self.shared.subscriptions.lock().unwrap_or_else(|e| e.into_inner()).insert(
                            filter,
                            self.id,
                            Subscription { qos },
                        );
                        self.filters.insert(filter.clone());
                        qos as u8
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
        .await
    }

    async fn unsubscribe(&mut self, unsubscribe: Unsubscribe) -> Result<(), DisconnectReason> {
        let reasons: Vec<u8> = {
            let mut tree = self.shared.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
            let filters = &mut self.filters;
            let id = self.id;
            unsubscribe
                .filters
                .iter()
                .map(|f| {
                    filters.remove(f);
                    if tree.remove(f, &id).is_some() { 0x00 } else { 0x11 }
                })
                .collect()
        };
        let reasons = if self.protocol == Protocol::V5 { reasons } else { Vec::new() };
        self.reply(Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            properties: Properties::default(),
            reasons,
        }))
        .await
    }

    async fn close(self, reason: DisconnectReason, writer: tokio::task::JoinHandle<()>) {
        {
            let mut tree = self.shared.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
            for filter in &self.filters {
                tree.remove(filter, &self.id);
            }
        }
        self.shared.peers.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
        {
            let mut by_client = self.shared.by_client_id.lock().unwrap_or_else(|e| e.into_inner());
            if by_client.get(&self.client_id) == Some(&self.id) {
                by_client.remove(&self.client_id);
            }
        }
        // The writer tells a 5.0 client why, then closes (a no-op if it already closed).
        let _ = self.outbound.try_send(Outbound::Close(reason));
        let Session { shared, principal, client_id, peer, outbound, .. } = self;
        drop(outbound);
        let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
        let device = match &principal {
            Principal::Device(id) => Some(id.as_str()),
            _ => None,
        };
        let data = json!({ "reason": reason, "peer": peer.to_string() });
        record_lifecycle(&shared, "disconnected", device, &client_id, data).await;
    }
}

async fn write_loop(
    write: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outbound>,
    protocol: Protocol,
    inflight: Inflight,
    shared: Arc<Shared>,
    client_id: String,
    closed: watch::Sender<Option<DisconnectReason>>,
) {
    let mut write = BufWriter::new(write);
    let mut out = Vec::with_capacity(4096);
    let mut next_id: u16 = 0;
    while let Some(first) = rx.recv().await {
        let mut item = Some(first);
        while let Some(outbound) = item.take() {
            out.clear();
            match outbound {
                Outbound::Packet(packet) => encode(&packet, protocol, &mut out),
                Outbound::Deliver { topic, payload, qos, event } => {
                    let packet_id = (qos != QoS::AtMostOnce).then(|| {
                        next_id = next_id.checked_add(1).unwrap_or(1);
                        inflight.lock().unwrap_or_else(|e| e.into_inner()).insert(next_id, event);
                        next_id
                    });
                    let publish = Publish {
                        dup: false,
                        qos,
                        retain: false,
                        topic,
                        packet_id,
                        properties: Properties::default(),
                        payload: Bytes::clone(&payload),
                    };
                    encode(&Packet::Publish(publish), protocol, &mut out);
                    if packet_id.is_none() {
                        shared.deliveries.note(event, State::Delivered, &client_id, None);
                    }
                }
                Outbound::Close(reason) => {
                    if protocol == Protocol::V5
                        && let Some(code) = reason.mqtt5_code()
                    {
                        let disconnect =
                            Packet::Disconnect(Disconnect { reason: code, properties: Properties::default() });
                        out.clear();
                        encode(&disconnect, protocol, &mut out);
                        let _ = write.write_all(&out).await;
                    }
                    let _ = closed.send(Some(reason));
                    let _ = write.flush().await;
                    return;
                }
            }
            if write.write_all(&out).await.is_err() {
                let _ = closed.send(Some(DisconnectReason::ConnectionLost));
                return;
            }
            item = rx.try_recv().ok();
        }
        if write.flush().await.is_err() {
            let _ = closed.send(Some(DisconnectReason::ConnectionLost));
            return;
        }
    }
    let _ = write.flush().await;
    let _ = write.shutdown().await;
}
