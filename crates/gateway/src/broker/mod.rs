//! The broker core: accepts MQTT connections, authenticates them, records
//! every inbound PUBLISH through the pipeline before acknowledging it, and
//! delivers it to matching subscribers, recording each delivery's states.
//!
//! This first version keeps sessions in memory (clean sessions), supports
//! QoS 0 and 1 end to end and QoS 2 inbound, and records connection
//! lifecycle events. Persistent sessions, offline queues, retained messages,
//! wills and shared subscriptions are the next steps (see docs/devices.md).

mod auth;
mod connection;
mod deliveries;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use glassbox_core::Draft;
use glassbox_store::{Appended, StoreError, Transition};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use auth::{Authenticator, Credentials, RegistryAuth};

use crate::acl::Acl;
use crate::codec::QoS;
use crate::topic::SubscriptionTree;

/// Where the broker records: implemented by the server's ingest pipeline.
#[async_trait]
pub trait Recorder: Send + Sync + 'static {
    /// Records events durably; resolves once they are on disk.
    async fn ingest(&self, drafts: Vec<Draft>, via: &str) -> Result<Vec<Appended>, StoreError>;
    /// Records delivery states.
    async fn record(&self, transitions: Vec<Transition>) -> Result<(), StoreError>;
}

/// Bounds of the broker.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Largest packet accepted, in bytes. Default 256 KiB.
    pub packet_bytes_max: usize,
    /// Connections open at once; more are refused with `server_busy`. Default 20,000.
    pub connections_max: usize,
    /// Messages waiting to be written to one subscriber; more are dropped
    /// with `queue_full`. Default 1,000.
    pub outbound_queue_max: usize,
    /// Time allowed between the TCP connection and CONNECT. Default 10 s.
    pub connect_timeout: Duration,
    /// Accept clients without credentials (open mode). Default false.
    pub allow_anonymous: bool,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            packet_bytes_max: 256 * 1024,
            connections_max: 20_000,
            outbound_queue_max: 1000,
            connect_timeout: Duration::from_secs(10),
            allow_anonymous: false,
        }
    }
}

/// One subscription of a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subscription {
    pub qos: QoS,
}

/// A message on its way to one connection's writer.
#[derive(Debug)]
pub(crate) enum Outbound {
    Packet(Box<crate::codec::Packet>),
    Deliver { topic: String, payload: bytes::Bytes, qos: QoS, event: glassbox_core::EventId },
    Close(glassbox_core::DisconnectReason),
}

pub(crate) struct Peer {
    pub client_id: String,
    pub outbound: mpsc::Sender<Outbound>,
}

/// State shared by all connections.
pub(crate) struct Shared {
    pub settings: BrokerSettings,
    pub recorder: Arc<dyn Recorder>,
    pub auth: Arc<dyn Authenticator>,
    pub acl: Acl,
    pub subscriptions: Mutex<SubscriptionTree<u64, Subscription>>,
    pub peers: Mutex<HashMap<u64, Peer>>,
    pub by_client_id: Mutex<HashMap<String, u64>>,
    pub next_connection: AtomicU64,
    pub deliveries: deliveries::Deliveries,
}

/// The MQTT broker. Cheap to clone; all clones serve the same state.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

impl Broker {
    pub fn new(settings: BrokerSettings, recorder: Arc<dyn Recorder>, auth: Arc<dyn Authenticator>, acl: Acl) -> Self {
        let deliveries = deliveries::Deliveries::start(recorder.clone());
        let shared = Shared {
            settings,
            recorder,
            auth,
            acl,
            subscriptions: Mutex::new(SubscriptionTree::new()),
            peers: Mutex::new(HashMap::new()),
            by_client_id: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(1),
            deliveries,
        };
        Self { shared: Arc::new(shared) }
    }

    /// Accepts connections until `stop` resolves; then closes them with
    /// `server_shutdown`.
    pub async fn serve(&self, listener: TcpListener, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let shared = self.shared.clone();
                        tokio::spawn(connection::run(shared, stream, peer));
                    }
                    Err(e) => tracing::warn!(error = %e, "mqtt accept failed"),
                },
                () = &mut stop => break,
            }
        }
        let peers: Vec<_> =
            self.shared.peers.lock().unwrap_or_else(|e| e.into_inner()).values().map(|p| p.outbound.clone()).collect();
        for outbound in peers {
            let _ = outbound.try_send(Outbound::Close(glassbox_core::DisconnectReason::ServerShutdown));
        }
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.shared.peers.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
