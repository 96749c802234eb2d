//! Durable MQTT session state: persistent sessions, their offline queues and
//! retained messages, so that what a device was promised survives a restart.
//!
//! The gateway owns the meaning of the bytes (session state and messages are
//! opaque blobs here); the store keeps them in order and gives them back at
//! start. Writes are queued and committed in groups; [`SessionStore::flush`]
//! waits until everything queued so far is committed, and
//! [`SessionStore::commit`] queues changes and waits for their commit (what
//! an acknowledgement promises must be stored before it is sent).

use async_trait::async_trait;

use crate::StoreError;

/// One change to durable session state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOp {
    /// Creates or replaces a session's state (expiry, device, …; its
    /// subscriptions are stored one by one).
    PutSession { client_id: String, state: Vec<u8> },
    /// Removes a session with its subscriptions and queue.
    DeleteSession { client_id: String },
    /// Adds or replaces one subscription of a session.
    Subscribe { client_id: String, filter: String, options: Vec<u8> },
    /// Removes one subscription of a session.
    Unsubscribe { client_id: String, filter: String },
    /// Appends a message to a session's queue; `seq` orders the queue.
    Enqueue { client_id: String, seq: u64, message: Vec<u8> },
    /// Removes a delivered, expired or dropped message from a queue.
    Dequeue { client_id: String, seq: u64 },
    /// Sets (or with `None` clears) the retained message of a topic.
    Retain { topic: String, message: Option<Vec<u8>> },
}

/// Everything stored, as loaded at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionSnapshot {
    /// Each session's client id and state.
    pub sessions: Vec<(String, Vec<u8>)>,
    /// Subscriptions: client id, filter and options.
    pub subscriptions: Vec<(String, String, Vec<u8>)>,
    /// Queued messages: client id, seq and message, in seq order per client.
    pub queued: Vec<(String, u64, Vec<u8>)>,
    /// Retained messages by topic.
    pub retained: Vec<(String, Vec<u8>)>,
}

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Queues changes for the next commit; waits only while the queue is full.
    async fn apply(&self, ops: Vec<SessionOp>) -> Result<(), StoreError>;

    /// Resolves once every change queued before it is committed.
    async fn flush(&self) -> Result<(), StoreError>;

    /// Queues changes and resolves once they are committed (with what else
    /// the same group commit holds). Nothing to write: resolves at once.
    async fn commit(&self, ops: Vec<SessionOp>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        self.apply(ops).await?;
        self.flush().await
    }

    /// Everything stored.
    async fn load(&self) -> Result<SessionSnapshot, StoreError>;

    /// Commits what is queued and stops writing; later changes are
    /// refused. A stop closes it before the event store, whose closing
    /// frees the data directory.
    async fn close(&self);
}
