//! One always-delivered kill signal per connection. Closing through the
//! writer's control queue can be lost (the queue is full) or never reached
//! (the writer is stuck on a client that stopped reading); this cannot:
//! the reader and the writer both select on it in every wait, so disabling a
//! device, rotating its secret, deleting it or taking over its session ends
//! the connection at once, whatever the client is doing.

use std::sync::Arc;

use chrono::{DateTime, Utc};
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

    /// Ends the connection with `reason` at `at` (now, if it is past),
    /// unless it ends first. The timer holds no strong handle: it ends with
    /// the connection, however far off `at` is.
    pub fn at(&self, at: DateTime<Utc>, reason: DisconnectReason) {
        let (kill, mut killed) = (self.downgrade(), self.watch());
        let left = (at - Utc::now()).to_std().unwrap_or_default();
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(left) => {
                    if let Some(kill) = kill.upgrade() {
                        kill.kill(reason);
                    }
                }
                _ = killed.wait() => {}
            }
        });
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

    #[tokio::test]
    async fn a_kill_at_a_time_comes_then_and_a_past_time_at_once() {
        let (soon, past) = (Kill::new(), Kill::new());
        let (mut soon_killed, mut past_killed) = (soon.watch(), past.watch());
        soon.at(Utc::now() + chrono::Duration::seconds(3), DisconnectReason::TokenExpired);
        past.at(Utc::now() - chrono::Duration::seconds(1), DisconnectReason::TokenExpired);
        assert_eq!(past_killed.wait().await, DisconnectReason::TokenExpired);
        assert!(soon_killed.0.borrow().is_none(), "not before its time");
        assert_eq!(soon_killed.wait().await, DisconnectReason::TokenExpired);
    }

    #[tokio::test]
    async fn a_timer_far_off_ends_with_its_connection() {
        let tasks = tokio::runtime::Handle::current().metrics();
        let kill = Kill::new();
        kill.at(Utc::now() + chrono::Duration::days(3650), DisconnectReason::TokenExpired);
        assert_eq!(tasks.num_alive_tasks(), 1);
        drop(kill);
        for _ in 0..100 {
            if tasks.num_alive_tasks() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(tasks.num_alive_tasks(), 0, "no timer outlives its connection");
    }
}
