//! The broker core: accepts MQTT connections, authenticates them, records
//! every inbound PUBLISH through the pipeline before acknowledging it, and
//! delivers it to matching subscribers, recording each delivery's states.
//!
//! Sessions outlive connections (`session`): persistent sessions keep their
//! subscriptions and a bounded queue while the device is away, and are
//! written to a [`SessionStore`] so that a restart finds them. Retained
//! messages and shared subscriptions live in `router`.

mod aliases;
mod auth;
mod backoff;
mod connection;
mod deliveries;
mod kill;
mod message;
mod refusals;
mod retained;
mod router;
mod session;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use glassbox_core::{DisconnectReason, Draft};
use glassbox_store::{Appended, Committed, SessionOp, SessionStore, StoreError, Transition};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use crate::acl::RESERVED_PREFIX;
pub use auth::{Authenticator, Credentials, Login, OPERATOR_USERNAME, RegistryAuth, TokenLogin, TokenLogins};
pub use glassbox_link::Reserved;
pub use session::{CLEARED_LISTED_MAX, Cleared, ClearedMessage};

use glassbox_link::{DeviceLink, DeviceMessage, Presence, RetainedMessage};

use self::message::Delivery;
use self::session::{Session, StoredSession, SubOptions};
use crate::acl::Acl;
use crate::codec::QoS;
use crate::flapping::{FlapDetector, FlapSettings};

/// Where the broker records: implemented by the server's ingest pipeline.
#[async_trait]
pub trait Recorder: Send + Sync + 'static {
    /// Records events durably; resolves once they are on disk.
    async fn ingest(&self, drafts: Vec<Draft>, via: &str) -> Result<Vec<Appended>, StoreError>;
    /// Records events someone is answered for; resolves once they are
    /// committed (routed then), with the wait for the disk (answered then).
    async fn ingest_committed(&self, drafts: Vec<Draft>, via: &str) -> Result<Committed, StoreError>;
    /// Records events nobody is answered for (QoS 0 PUBLISHes); resolves
    /// once they are committed, and they are on disk soon after.
    async fn ingest_unanswered(&self, drafts: Vec<Draft>, via: &str) -> Result<Vec<Appended>, StoreError>;
    /// Records delivery states.
    async fn record(&self, transitions: Vec<Transition>) -> Result<(), StoreError>;
}

/// How long a stop waits for connections closed at once after the shutdown
/// grace to record their end.
const DRAIN_KILLED_WAIT: Duration = Duration::from_secs(1);

/// The publisher name of messages the platform sends ([`Broker::deliver`]).
pub(crate) const PLATFORM: &str = "$glassbox";

/// What happens when a session's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueuePolicy {
    /// Drop the oldest queued message to make room (fresh telemetry wins).
    DropOldest,
    /// Drop the new message (the oldest are delivered first).
    RefuseNewest,
}

impl QueuePolicy {
    /// The name it is configured and shown by (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            QueuePolicy::DropOldest => "drop_oldest",
            QueuePolicy::RefuseNewest => "refuse_newest",
        }
    }
}

/// Bounds of one session's queue: what waits while the device is offline
/// or slower than its publishers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueBounds {
    pub messages: usize,
    pub bytes: usize,
    pub policy: QueuePolicy,
}

impl QueueBounds {
    fn describe(&self) -> String {
        format!("queue bound {} messages / {} bytes", self.messages, self.bytes)
    }
}

impl Default for QueueBounds {
    fn default() -> Self {
        Self { messages: 1000, bytes: 8 * 1024 * 1024, policy: QueuePolicy::DropOldest }
    }
}

/// Bounds of the broker.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Largest packet accepted, in bytes. Default 256 KiB.
    pub packet_bytes_max: usize,
    /// Connections open at once; more are refused with `server_busy`. Default 20,000.
    pub connections_max: usize,
    /// Default bounds of each session's queue.
    pub queue: QueueBounds,
    /// Bounds for client ids starting with a prefix; the longest match wins.
    pub queue_overrides: Vec<(String, QueueBounds)>,
    /// Unacknowledged QoS 1/2 messages per direction and connection (the
    /// receive maximum announced to 5.0 clients). Default 256.
    pub inflight_max: u16,
    /// Topic aliases a 5.0 client may use towards the broker. Default 64.
    pub topic_alias_max: u16,
    /// Longest keep-alive granted; a client asking for more (or for none)
    /// gets this (told as server keep-alive in 5.0). 0: no limit. Default 0.
    pub keep_alive_max: u16,
    /// Publishes per second a device may send (burst: one second's worth).
    /// Operators are not limited. 0: no limit. Default 1000.
    pub publish_rate_max: u32,
    /// Longest session expiry granted, in seconds. Default 7 days.
    pub session_expiry_max: u32,
    /// When a device is flapping.
    pub flapping: FlapSettings,
    /// Refuse a flapping device's connects until it calms down. Default false.
    pub flapping_throttle: bool,
    /// Time allowed between the TCP connection and CONNECT. Default 10 s.
    pub connect_timeout: Duration,
    /// Longest a write to a client may make no progress (it stopped
    /// reading); then the connection ends with `write_timeout`. Default 30 s.
    pub write_timeout: Duration,
    /// Accept clients without credentials (open mode). Default false.
    pub allow_anonymous: bool,
    /// Connections accepted that have not finished CONNECT yet; more are
    /// closed at accept, before reading anything. Default 1,000.
    pub pending_connects_max: usize,
    /// Refused CONNECTs make at most one `connection_refused` event per
    /// peer address per this interval, with counts. Default 10 s.
    pub refusals_interval: Duration,
    /// Longest back-off after repeated failed logins from one peer address
    /// or for one claimed id. Zero: no back-off. Default 60 s.
    pub login_backoff_max: Duration,
    /// Subscriptions one session may hold; more are refused (0x97 quota
    /// exceeded in 5.0, 0x80 in 3.1.1). Default 1,000.
    pub subscriptions_max: usize,
    /// Retained messages one client may have set; beyond it a PUBLISH's
    /// retain flag is not stored (it is still delivered). Default 1,000.
    pub retained_per_client_max: usize,
    /// Retained messages the broker holds in all. Default 100,000.
    pub retained_max: usize,
    /// How long a stop may take to drain: connections stop reading, get
    /// the acknowledgements of what they sent that is recorded, then a
    /// DISCONNECT `server_shutdown`. Connections still open after it are
    /// closed at once. Default 10 s.
    pub shutdown_grace: Duration,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            packet_bytes_max: 256 * 1024,
            connections_max: 20_000,
            queue: QueueBounds::default(),
            queue_overrides: Vec::new(),
            inflight_max: 256,
            topic_alias_max: 64,
            keep_alive_max: 0,
            publish_rate_max: 1000,
            session_expiry_max: 7 * 24 * 3600,
            flapping: FlapSettings::default(),
            flapping_throttle: false,
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            allow_anonymous: false,
            pending_connects_max: 1000,
            refusals_interval: Duration::from_secs(10),
            login_backoff_max: Duration::from_secs(60),
            subscriptions_max: 1000,
            retained_per_client_max: 1000,
            retained_max: 100_000,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl BrokerSettings {
    fn queue_bounds(&self, client_id: &str) -> QueueBounds {
        self.queue_overrides
            .iter()
            .filter(|(prefix, _)| client_id.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(self.queue, |(_, bounds)| *bounds)
    }
}

/// A message on its way to one connection's writer, other than deliveries
/// (which wait in the session's queue).
#[derive(Debug)]
pub(crate) enum Outbound {
    Packet(Box<crate::codec::Packet>),
    Close(DisconnectReason),
}

/// State shared by all connections.
pub(crate) struct Shared {
    pub settings: BrokerSettings,
    pub recorder: Arc<dyn Recorder>,
    pub store: Arc<dyn SessionStore>,
    pub auth: Arc<dyn Authenticator>,
    pub acl: Acl,
    pub router: router::Router,
    pub sessions: Mutex<HashMap<Arc<str>, Arc<Mutex<Session>>>>,
    pub connections: AtomicU64,
    /// Connections accepted that have not finished CONNECT.
    pub pending: AtomicUsize,
    pub refusals: refusals::Refusals,
    pub backoff: backoff::LoginBackoff,
    pub next_connection: AtomicU64,
    pub deliveries: deliveries::Deliveries,
    pub flapping: Mutex<FlapDetector>,
    pub reserved: std::sync::OnceLock<Arc<dyn Reserved>>,
    /// Per-device message budgets, asked at each device PUBLISH (set once, at start).
    pub budgets: std::sync::OnceLock<Arc<dyn glassbox_link::MessageBudgets>>,
    /// The live connections of clients logged in with a named token, by
    /// token name, so a revocation closes them at once. Pruned of closed
    /// connections whenever one is added, so it holds the live ones.
    pub token_kills: Mutex<Vec<(String, kill::WeakKill)>>,
    /// Set when the broker stops: connections stop reading, answer what
    /// they read, then close (see [`Broker::serve`]).
    pub stopping: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    /// Writes session changes; a failure is logged, since the messages
    /// themselves are in the recorder and the session lives on in memory.
    pub async fn persist(&self, ops: Vec<SessionOp>) {
        if let Err(e) = self.store.apply(ops).await {
            tracing::error!(error = %e, "could not store session changes");
        }
    }

    /// Writes session changes and waits until they are committed: for the
    /// changes an acknowledgement promises (a message queued for a stored
    /// session must be stored before the PUBACK says it was taken).
    pub async fn commit(&self, ops: Vec<SessionOp>) -> Result<(), StoreError> {
        self.store.commit(ops).await.inspect_err(|e| tracing::error!(error = %e, "could not store session changes"))
    }

    pub fn session(&self, client_id: &str) -> Option<Arc<Mutex<Session>>> {
        lock(&self.sessions).get(client_id).cloned()
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Broker totals, for `/metrics`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BrokerStats {
    pub connections: u64,
    pub sessions: u64,
    pub queued_messages: u64,
    pub queued_bytes: u64,
    pub inflight_messages: u64,
    /// Messages dropped for sessions held now (each drop is also an event).
    pub dropped_messages: u64,
    pub retained_messages: u64,
    /// Delivery states that could not be queued for recording (recorder far behind).
    pub unrecorded_states: u64,
}

/// One session as an operator sees it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SessionInfo {
    pub client_id: String,
    pub device: Option<String>,
    pub connected: bool,
    /// When the current connection was made, or when the last one ended.
    pub since: Option<DateTime<Utc>>,
    pub last_disconnect: Option<DisconnectReason>,
    /// Whether the current connection uses TLS (`null` when not connected).
    pub tls: Option<bool>,
    /// The TLS version and cipher suite of the current connection.
    #[serde(flatten)]
    pub tls_session: Option<glassbox_core::TlsSession>,
    /// Seconds the session outlives a connection (`null`: never expires).
    pub expiry_seconds: Option<u32>,
    pub subscriptions: Vec<SessionSubscription>,
    pub queued: usize,
    pub queued_bytes: usize,
    pub queue_messages_max: usize,
    pub queue_bytes_max: usize,
    pub queue_policy: QueuePolicy,
    pub inflight: usize,
    /// Messages dropped for this session since the server started.
    pub dropped: u64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SessionSubscription {
    pub filter: String,
    pub qos: u8,
}

/// A [`Broker`] handle that does not keep it alive.
#[derive(Clone)]
pub struct WeakBroker(std::sync::Weak<Shared>);

impl WeakBroker {
    pub fn upgrade(&self) -> Option<Broker> {
        self.0.upgrade().map(|shared| Broker { shared })
    }
}

/// The broker as the services' link to devices.
#[async_trait]
impl DeviceLink for Broker {
    async fn deliver(&self, message: DeviceMessage) {
        let properties = crate::codec::Properties {
            response_topic: message.response_topic,
            correlation_data: message.correlation,
            ..Default::default()
        };
        Broker::deliver(self, message.event, &message.topic, message.payload, QoS::AtLeastOnce, properties).await;
    }

    fn presence(&self, device: &str) -> Option<Presence> {
        let session = self.session(device)?;
        Some(Presence {
            connected: session.connected,
            filters: session.subscriptions.into_iter().map(|s| s.filter).collect(),
        })
    }

    fn disconnect(&self, device: &str, reason: DisconnectReason) -> bool {
        Broker::disconnect(self, device, reason)
    }

    async fn end_session(&self, device: &str, why: &str) {
        Broker::end_session(self, device, why).await;
    }

    async fn clear_queue(&self, device: &str, by: &glassbox_core::Principal) -> Option<Cleared> {
        Broker::clear_queue(self, device, by).await
    }

    fn retained(&self, filter: &str, limit: usize) -> Vec<RetainedMessage> {
        let found = self.shared.router.retained_matching(filter, SystemTime::now());
        found.iter().take(limit).map(|m| retained_view(m)).collect()
    }

    async fn clear_retained(&self, filter: &str) -> Vec<RetainedMessage> {
        let found = self.shared.router.retained_matching(filter, SystemTime::now());
        let ops = found.iter().map(|m| self.shared.router.unretain(&m.topic)).collect();
        self.shared.persist(ops).await;
        found.iter().map(|m| retained_view(m)).collect()
    }
}

fn retained_view(message: &message::Message) -> RetainedMessage {
    RetainedMessage {
        topic: message.topic.clone(),
        bytes: message.payload.len(),
        event: message.event,
        publisher: (!message.publisher.is_empty()).then(|| message.publisher.to_string()),
    }
}

/// A link that does not keep the broker alive, for a service the broker
/// holds as its [`Reserved`] handler; once the broker is gone it reaches
/// no one.
#[async_trait]
impl DeviceLink for WeakBroker {
    async fn deliver(&self, message: DeviceMessage) {
        if let Some(broker) = self.upgrade() {
            DeviceLink::deliver(&broker, message).await;
        }
    }

    fn presence(&self, device: &str) -> Option<Presence> {
        self.upgrade()?.presence(device)
    }

    fn disconnect(&self, device: &str, reason: DisconnectReason) -> bool {
        self.upgrade().is_some_and(|b| b.disconnect(device, reason))
    }

    async fn end_session(&self, device: &str, why: &str) {
        if let Some(broker) = self.upgrade() {
            broker.end_session(device, why).await;
        }
    }

    async fn clear_queue(&self, device: &str, by: &glassbox_core::Principal) -> Option<Cleared> {
        self.upgrade()?.clear_queue(device, by).await
    }

    fn retained(&self, filter: &str, limit: usize) -> Vec<RetainedMessage> {
        self.upgrade().map(|b| DeviceLink::retained(&b, filter, limit)).unwrap_or_default()
    }

    async fn clear_retained(&self, filter: &str) -> Vec<RetainedMessage> {
        match self.upgrade() {
            Some(broker) => broker.clear_retained(filter).await,
            None => Vec::new(),
        }
    }
}

/// The MQTT broker. Cheap to clone; all clones serve the same state.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

impl Broker {
    /// A broker with the sessions and retained messages `store` holds.
    pub async fn open(
        settings: BrokerSettings,
        recorder: Arc<dyn Recorder>,
        store: Arc<dyn SessionStore>,
        auth: Arc<dyn Authenticator>,
        acl: Acl,
    ) -> Result<Self, StoreError> {
        let snapshot = store.load().await?;
        let deliveries = deliveries::Deliveries::start(recorder.clone());
        let flapping = Mutex::new(FlapDetector::new(settings.flapping.clone()));
        let refusals = refusals::Refusals::new(settings.refusals_interval);
        let backoff = backoff::LoginBackoff::new(settings.login_backoff_max);
        let router = router::Router::new(settings.retained_per_client_max, settings.retained_max);
        let shared = Shared {
            settings,
            recorder,
            store,
            auth,
            acl,
            router,
            sessions: Mutex::new(HashMap::new()),
            token_kills: Mutex::new(Vec::new()),
            connections: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            refusals,
            backoff,
            next_connection: AtomicU64::new(1),
            deliveries,
            flapping,
            reserved: std::sync::OnceLock::new(),
            budgets: std::sync::OnceLock::new(),
            stopping: tokio::sync::watch::channel(false).0,
        };
        let broker = Self { shared: Arc::new(shared) };
        broker.restore(snapshot);
        Ok(broker)
    }

    fn restore(&self, snapshot: glassbox_store::SessionSnapshot) {
        let shared = &self.shared;
        let now = SystemTime::now();
        for (topic, bytes) in snapshot.retained {
            match Delivery::decode(0, &bytes) {
                Some(d) if !d.message.expired(now) => shared.router.restore_retained(topic, d.message),
                _ => continue,
            }
        }
        let mut stored_subscriptions: HashMap<String, Vec<(String, SubOptions)>> = HashMap::new();
        for (client_id, filter, options) in snapshot.subscriptions {
            match serde_json::from_slice::<SubOptions>(&options) {
                Ok(options) => stored_subscriptions.entry(client_id).or_default().push((filter, options)),
                Err(_) => tracing::warn!(client = client_id, filter, "ignoring a damaged stored subscription"),
            }
        }
        let mut sessions = lock(&shared.sessions);
        for (client_id, state) in snapshot.sessions {
            let Ok(state) = serde_json::from_slice::<StoredSession>(&state) else {
                tracing::warn!(client = client_id, "ignoring a damaged stored session");
                continue;
            };
            let client_id: Arc<str> = Arc::from(client_id);
            let bounds = shared.settings.queue_bounds(&client_id);
            let mut session = Session::new(client_id.clone(), state.device, state.expiry, bounds);
            session.disconnected_at = Some(state.disconnected_at.unwrap_or_else(Utc::now));
            session.last_disconnect = Some(DisconnectReason::ServerShutdown);
            let rows = stored_subscriptions.remove(client_id.as_ref()).unwrap_or_default();
            for (filter, options) in state.subscriptions.into_iter().chain(rows) {
                shared.router.subscribe(&client_id, &filter, options.clone());
                session.subscriptions.insert(filter, options);
            }
            sessions.insert(client_id, Arc::new(Mutex::new(session)));
        }
        let mut restored = 0;
        for (client_id, seq, bytes) in snapshot.queued {
            let (Some(session), Some(delivery)) = (sessions.get(client_id.as_str()), Delivery::decode(seq, &bytes))
            else {
                continue;
            };
            lock(session).restore(delivery);
            restored += 1;
        }
        if !sessions.is_empty() {
            tracing::info!(sessions = sessions.len(), queued = restored, "restored persistent MQTT sessions");
        }
    }

    /// Accepts connections — on `listener`, and over TLS on `tls` when given
    /// — until `stop` resolves; then drains them (see [`Broker::drain`]) and
    /// returns once they are closed.
    pub async fn serve(
        &self,
        listener: TcpListener,
        tls: Option<(TcpListener, TlsAcceptor)>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let expiry = tokio::spawn(router::expire_sessions(Arc::downgrade(&self.shared)));
        let refusals = tokio::spawn(refusals::record_due(Arc::downgrade(&self.shared)));
        let tls_listener = tls.as_ref().map(|(l, _)| l);
        let acceptor = tls.as_ref().map(|(_, a)| a.clone());
        loop {
            let tls_accept = async {
                match tls_listener {
                    Some(l) => l.accept().await,
                    None => std::future::pending().await,
                }
            };
            let (accepted, secure) = tokio::select! {
                accepted = listener.accept() => (accepted, None),
                accepted = tls_accept => (accepted, acceptor.clone()),
                () = &mut stop => break,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let Some(pending) = connection::Pending::admit(&self.shared, peer) else { continue };
                    drop(tokio::spawn(connection::run(self.shared.clone(), stream, peer, secure, pending)))
                }
                Err(e) => {
                    // Out of file descriptors, typically: let closes catch up.
                    tracing::warn!(error = %e, "mqtt accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        // No new connections: connecting clients are refused, not left waiting.
        drop((listener, tls));
        expiry.abort();
        refusals.abort();
        self.drain().await;
    }

    /// Closes every connection gracefully within `shutdown_grace`: each
    /// stops reading, waits for the recorder to commit what it read, sends
    /// those PUBACKs (PUBRECs), then DISCONNECT `server_shutdown` (5.0)
    /// after what was queued for it. Connections not closed by the deadline
    /// are closed at once (each still records its end, so this waits up to
    /// [`DRAIN_KILLED_WAIT`] more).
    async fn drain(&self) {
        self.shared.stopping.send_replace(true);
        let deadline = tokio::time::Instant::now() + self.shared.settings.shutdown_grace;
        if self.closed_by(deadline).await {
            return;
        }
        let links: Vec<_> = lock(&self.shared.sessions)
            .values()
            .filter_map(|s| lock(s).link.as_ref().map(|l| l.kill.clone()))
            .collect();
        tracing::warn!(
            connections = self.connections(),
            grace = ?self.shared.settings.shutdown_grace,
            "MQTT connections still open after the shutdown grace: closing them at once"
        );
        for kill in links {
            kill.kill(DisconnectReason::ServerShutdown);
        }
        self.closed_by(tokio::time::Instant::now() + DRAIN_KILLED_WAIT).await;
    }

    /// Waits until no connection is open, or `deadline`; true if none is.
    async fn closed_by(&self, deadline: tokio::time::Instant) -> bool {
        while self.connections() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Writes what persistent sessions hold in memory and waits until it is
    /// stored: call after the connections closed.
    pub async fn flush(&self) {
        let mut ops = Vec::new();
        let sessions: Vec<_> = lock(&self.shared.sessions).values().cloned().collect();
        for session in sessions {
            lock(&session).persist_pending(&mut ops);
        }
        self.shared.persist(ops).await;
        if let Err(e) = self.shared.store.flush().await {
            tracing::error!(error = %e, "session state may be incomplete after this stop");
        }
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed) as usize
    }

    /// The session of a client id, if the broker holds one.
    pub fn session(&self, client_id: &str) -> Option<SessionInfo> {
        let session = self.shared.session(client_id)?;
        let s = lock(&session);
        let mut subscriptions: Vec<_> = s
            .subscriptions
            .iter()
            .map(|(filter, o)| SessionSubscription { filter: filter.clone(), qos: o.qos })
            .collect();
        subscriptions.sort_by(|a, b| a.filter.cmp(&b.filter));
        Some(SessionInfo {
            client_id: s.client_id.to_string(),
            device: s.device.clone(),
            connected: s.link.is_some(),
            since: s.link.as_ref().map(|l| l.since).or(s.disconnected_at),
            last_disconnect: s.last_disconnect,
            tls: s.link.as_ref().map(|l| l.tls.is_some()),
            tls_session: s.link.as_ref().and_then(|l| l.tls.clone()),
            expiry_seconds: (s.expiry != session::NEVER).then_some(s.expiry),
            subscriptions,
            queued: s.queue.len(),
            queued_bytes: s.queue_bytes,
            queue_messages_max: s.bounds.messages,
            queue_bytes_max: s.bounds.bytes,
            queue_policy: s.bounds.policy,
            inflight: s.inflight.len(),
            dropped: s.dropped,
        })
    }

    /// Closes the client's connection at once, if it has one, with `reason`
    /// (an operator's action: disabling a device, rotating its secret). True
    /// if it was connected. Always takes effect, whatever the client is doing.
    pub fn disconnect(&self, client_id: &str, reason: DisconnectReason) -> bool {
        let Some(session) = self.shared.session(client_id) else { return false };
        let kill = lock(&session).link.as_ref().map(|l| l.kill.clone());
        kill.map(|kill| kill.kill(reason)).is_some()
    }

    /// Closes at once every connection logged in with named token `name`
    /// (it was revoked); how many.
    pub fn close_token(&self, name: &str) -> usize {
        let mut kills = lock(&self.shared.token_kills);
        let live = kills.iter().filter(|(token, _)| token == name).filter_map(|(_, kill)| kill.upgrade());
        let count = live.map(|kill| kill.kill(DisconnectReason::TokenRevoked)).count();
        kills.retain(|(token, _)| token != name);
        count
    }

    /// Ends a client's session (its queue is dropped with `session_ended`),
    /// closing its connection first. For a deleted device.
    pub async fn end_session(&self, client_id: &str, why: &str) {
        self.disconnect(client_id, DisconnectReason::Administrative);
        let Some(session) = self.shared.session(client_id) else { return };
        let ops = router::end_session(&self.shared, &session, why);
        self.shared.persist(ops).await;
    }

    /// Clears a client's queue of messages not yet sent (see
    /// [`Session::clear`]), each drop naming `by`; `None` if the broker
    /// holds no session for it.
    pub async fn clear_queue(&self, client_id: &str, by: &glassbox_core::Principal) -> Option<Cleared> {
        let session = self.shared.session(client_id)?;
        let mut ops = Vec::new();
        let cleared = lock(&session).clear(&self.shared.deliveries, &by.label(), &mut ops);
        self.shared.persist(ops).await;
        Some(cleared)
    }

    /// A handle that does not keep the broker alive: for the [`Reserved`]
    /// handler, which the broker itself holds.
    pub fn downgrade(&self) -> WeakBroker {
        WeakBroker(Arc::downgrade(&self.shared))
    }

    /// Hands the per-device message budgets to the broker (once, at start):
    /// each device PUBLISH is checked against them before it is recorded.
    pub fn set_message_budgets(&self, budgets: Arc<dyn glassbox_link::MessageBudgets>) {
        let _ = self.shared.budgets.set(budgets);
    }

    /// Hands the reserved topics to the platform (once, at start).
    pub fn set_reserved(&self, reserved: Arc<dyn Reserved>) {
        let _ = self.shared.reserved.set(reserved);
    }

    /// Delivers a message from the platform, already recorded as `event`,
    /// to the topic's subscribers like any PUBLISH. `properties` (5.0:
    /// response topic, correlation data, …) go to subscribers. Resolves once
    /// what it queued for stored sessions is stored.
    pub async fn deliver(
        &self,
        event: glassbox_core::EventId,
        topic: &str,
        payload: bytes::Bytes,
        qos: QoS,
        properties: crate::codec::Properties,
    ) {
        let publish = crate::codec::Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.to_string(),
            packet_id: None,
            properties,
            payload,
        };
        let message = Arc::new(message::Message::new(event, &publish, Arc::from(PLATFORM), SystemTime::now()));
        let ops = router::route(&self.shared, &message, false);
        // Queued for a stored session is stored before the caller moves on (a failure is logged).
        let _ = self.shared.commit(ops).await;
    }

    /// Totals for monitoring, cheap enough for every scrape.
    pub fn stats(&self) -> BrokerStats {
        let sessions: Vec<_> = lock(&self.shared.sessions).values().cloned().collect();
        let mut stats = BrokerStats {
            connections: self.connections() as u64,
            sessions: sessions.len() as u64,
            ..Default::default()
        };
        for session in sessions {
            let s = lock(&session);
            stats.queued_messages += s.queue.len() as u64;
            stats.queued_bytes += s.queue_bytes as u64;
            stats.inflight_messages += s.inflight.len() as u64;
            stats.dropped_messages += s.dropped;
        }
        stats.retained_messages = self.retained() as u64;
        stats.unrecorded_states = self.shared.deliveries.unrecorded.load(std::sync::atomic::Ordering::Relaxed);
        stats
    }

    /// Retained messages held now.
    pub fn retained(&self) -> usize {
        self.shared.router.retained_count()
    }
}
