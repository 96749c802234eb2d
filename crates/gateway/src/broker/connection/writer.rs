//! The writer task: control packets first, then the session's deliveries
//! within the client's receive window, until told to close.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use glassbox_core::{DisconnectReason, EventId, State};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, mpsc};

use super::lock;
use super::stream::{WriteSide, write_all};
use crate::broker::kill::{Kill, Killed};
use crate::broker::session::Session;
use crate::broker::{Outbound, Shared};
use crate::codec::{Disconnect, Packet, Properties, Protocol, QoS, encode};

/// Deliveries the writer takes from the session per round.
const WRITE_BATCH_MAX: usize = 256;

/// Output buffer kept between rounds; a larger one (after a burst) is freed.
const OUT_KEPT_BYTES: usize = 64 * 1024;

/// One connection's writer.
pub(super) struct Writer {
    pub shared: Arc<Shared>,
    pub session: Arc<Mutex<Session>>,
    /// The connection this writer serves; after a takeover the session's
    /// link names another, and this writer sends it nothing more.
    pub conn: u64,
    pub protocol: Protocol,
    pub client_id: Arc<str>,
    pub wake: Arc<Notify>,
    pub write: WriteSide,
    pub control: mpsc::Receiver<Outbound>,
    /// Tells the reader why the connection ended, when the writer ends it.
    pub kill: Kill,
    /// Ends the writer at once, even in the middle of a write.
    pub killed: Killed,
    /// Longest a write may make no progress.
    pub write_timeout: Duration,
}

/// How long the last words (a 5.0 DISCONNECT) may take to a client that is
/// killed: a client that is not reading must not hold the close up.
const LAST_WORDS_TIMEOUT: Duration = Duration::from_millis(250);

/// What one round put into the output buffer.
struct Round {
    close: Option<DisconnectReason>,
    /// QoS 0 deliveries: delivered once written.
    written_qos0: Vec<EventId>,
    /// The session had more to send than one round takes.
    more: bool,
}

impl Writer {
    /// Runs until told to close, the client goes, or the connection is dropped.
    pub async fn run(mut self) {
        let mut out = Vec::new();
        let mut next: Option<Outbound> = None;
        loop {
            out.clear();
            let round = self.fill(&mut out, next.take()).await;
            if !out.is_empty()
                && let Err(reason) = self.write_out(&out).await
            {
                self.kill.kill(reason);
                return;
            }
            for event in round.written_qos0 {
                self.shared.deliveries.note(event, State::Delivered, &self.client_id, None);
            }
            if let Some(reason) = round.close {
                return self.close(reason, &mut out).await;
            }
            if round.more {
                continue;
            }
            if out.capacity() > OUT_KEPT_BYTES {
                out = Vec::new();
            }
            tokio::select! {
                item = self.control.recv() => match item {
                    Some(item) => next = Some(item),
                    None => return,
                },
                () = self.wake.notified() => {}
                reason = self.killed.wait() => return self.close(reason, &mut out).await,
            }
        }
    }

    /// Writes a round, unless the connection is killed meanwhile.
    async fn write_out(&mut self, out: &[u8]) -> Result<(), DisconnectReason> {
        tokio::select! {
            biased;
            reason = self.killed.wait() => Err(reason),
            written = write_all(&mut self.write, out, self.write_timeout) => written,
        }
    }

    /// Encodes waiting control packets, then what the session may send now.
    async fn fill(&mut self, out: &mut Vec<u8>, first: Option<Outbound>) -> Round {
        let mut round = Round { close: None, written_qos0: Vec::new(), more: false };
        let mut next = first;
        while let Some(item) = next.take().or_else(|| self.control.try_recv().ok()) {
            match item {
                Outbound::Packet(packet) => encode(&packet, self.protocol, out),
                Outbound::Close(reason) => {
                    round.close = Some(reason);
                    return round;
                }
            }
        }
        let mut ops = Vec::new();
        let sendable = {
            let mut s = lock(&self.session);
            match s.link.as_ref().is_some_and(|l| l.conn == self.conn) {
                true => s.take_sendable(WRITE_BATCH_MAX, SystemTime::now(), &self.shared.deliveries, &mut ops),
                false => Vec::new(),
            }
        };
        round.more = sendable.len() == WRITE_BATCH_MAX;
        for (publish, delivery) in sendable {
            encode(&Packet::Publish(publish), self.protocol, out);
            if delivery.qos == QoS::AtMostOnce {
                round.written_qos0.push(delivery.message.event);
            }
        }
        if !ops.is_empty() {
            self.shared.persist(ops).await;
        }
        round
    }

    /// Tells a 5.0 client why, then closes the stream; all within
    /// [`LAST_WORDS_TIMEOUT`] for a client that is not reading.
    async fn close(mut self, reason: DisconnectReason, out: &mut Vec<u8>) {
        self.kill.kill(reason);
        out.clear();
        if self.protocol == Protocol::V5
            && let Some(code) = reason.mqtt5_code()
        {
            let disconnect = Packet::Disconnect(Disconnect { reason: code, properties: Properties::default() });
            encode(&disconnect, self.protocol, out);
        }
        let last_words = async {
            write_all(&mut self.write, out, LAST_WORDS_TIMEOUT).await.ok()?;
            self.write.flush().await.ok()?;
            self.write.shutdown().await.ok()
        };
        let _ = tokio::time::timeout(LAST_WORDS_TIMEOUT, last_words).await;
    }
}
