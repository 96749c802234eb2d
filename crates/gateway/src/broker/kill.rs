//! One always-delivered kill signal per connection. Closing through the
//! writer's control queue can be lost (the queue is full) or never reached
//! (the writer is stuck on a client that stopped reading); this cannot:
//! the reader and the writer both select on it in every wait, so disabling a
//! device, rotating its secret, deleting it or taking over its session ends
//! the connection at once, whatever the client is doing.

use std::sync::Arc;

use glassbox_core::DisconnectReason;
use tokio::sync::watch;

/// Ends a connection with a reason; the first reason given wins.
#[derive(Clone)]
pub(crate) struct Kill(Arc<watch::Sender<Option<DisconnectReason>>>);

impl Kill {
    pub fn new() -> Self {
        Self(Arc::new(watch::channel(None).0))
    }

    /// Ends the connection with `reason`, unless it is already ending.
    /// Never blocks and never fails.
    pub fn kill(&self, reason: DisconnectReason) {
        self.0.send_if_modified(|current| match current {
            Some(_) => false,
            None => {
                *current = Some(reason);
                true
            }
        });
    }

    /// A handle that does not keep the signal alive: it lapses when the
    /// connection's last holder (reader, writer, session link) is gone.
    pub fn downgrade(&self) -> WeakKill {
        WeakKill(Arc::downgrade(&self.0))
    }

    /// A receiver to wait on.
    pub fn watch(&self) -> Killed {
        Killed(self.0.subscribe())
    }
}

/// A [`Kill`] that lapses with its connection.
pub(crate) struct WeakKill(std::sync::Weak<watch::Sender<Option<DisconnectReason>>>);

impl WeakKill {
    /// The kill signal, while its connection lives.
    pub fn upgrade(&self) -> Option<Kill> {
        self.0.upgrade().map(Kill)
    }
}

/// The waiting side of a [`Kill`].
pub(crate) struct Killed(watch::Receiver<Option<DisconnectReason>>);

impl Killed {
    /// Resolves once the connection is killed, with why. Cancel-safe.
    pub async fn wait(&mut self) -> DisconnectReason {
        match self.0.wait_for(Option::is_some).await {
            Ok(reason) => reason.unwrap_or(DisconnectReason::ConnectionLost),
            // Every sender gone: nobody can kill it any more, but nobody serves it either.
            Err(_) => DisconnectReason::ConnectionLost,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_wins_and_every_waiter_sees_it() {
        let kill = Kill::new();
        let (mut a, mut b) = (kill.watch(), kill.watch());
        kill.kill(DisconnectReason::DeviceDisabled);
        kill.kill(DisconnectReason::ConnectionLost);
        assert_eq!(a.wait().await, DisconnectReason::DeviceDisabled);
        assert_eq!(b.wait().await, DisconnectReason::DeviceDisabled);
        // Waiting again resolves at once: a kill is never missed.
        assert_eq!(a.wait().await, DisconnectReason::DeviceDisabled);
    }
}
