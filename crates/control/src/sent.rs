//! Command messages sent and not yet acknowledged, by the event that
//! carried them, so a device's PUBACK can mark its command delivered.
//!
//! A message a device never acknowledges (it went offline and its queue
//! dropped the message, or it ignores QoS) must not be kept for ever: an
//! entry lives at most until its command expires (the sweeper forgets it
//! then), and the table holds at most [`SENT_MAX`] entries. When full, the
//! entry whose command expires first is forgotten: an acknowledgement of
//! that message is then not matched, and the command stays `in_transit`
//! until the device's reply or its expiry says how it ended.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use glassbox_core::EventId;

/// Unacknowledged command messages kept at most.
pub const SENT_MAX: usize = 100_000;

#[derive(Debug, Default)]
pub struct Sent {
    /// Event → (command id, when the command expires).
    by_event: HashMap<EventId, (String, DateTime<Utc>)>,
    /// The same entries in expiry order, to forget the first to expire.
    by_expiry: BTreeSet<(DateTime<Utc>, EventId)>,
}

impl Sent {
    /// Notes that `event` carries command `id`, which expires at `expires`.
    pub fn insert(&mut self, event: EventId, id: String, expires: DateTime<Utc>) {
        if let Some((_, old)) = self.by_event.insert(event, (id, expires)) {
            self.by_expiry.remove(&(old, event));
        }
        self.by_expiry.insert((expires, event));
        while self.by_event.len() > SENT_MAX {
            let Some((_, first)) = self.by_expiry.pop_first() else { break };
            self.by_event.remove(&first);
        }
    }

    /// The command `event` carried, forgetting it.
    pub fn take(&mut self, event: &EventId) -> Option<String> {
        let (id, expires) = self.by_event.remove(event)?;
        self.by_expiry.remove(&(expires, *event));
        Some(id)
    }

    /// Forgets the messages whose command expired by `now`.
    pub fn forget_expired(&mut self, now: DateTime<Utc>) {
        while let Some(&(expires, event)) = self.by_expiry.first() {
            if expires > now {
                break;
            }
            self.by_expiry.pop_first();
            self.by_event.remove(&event);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_event.len()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use glassbox_core::IdMinter;

    use super::*;

    #[test]
    fn an_acknowledged_message_finds_its_command_once() {
        let (mut sent, ids, now) = (Sent::default(), IdMinter::new(), Utc::now());
        let event = ids.mint();
        sent.insert(event, "c1".into(), now + TimeDelta::minutes(5));
        assert_eq!(sent.take(&event).as_deref(), Some("c1"));
        assert_eq!(sent.take(&event), None);
        assert_eq!(sent.len(), 0);
    }

    #[test]
    fn messages_never_acknowledged_are_forgotten_when_their_command_expires() {
        let (mut sent, ids, now) = (Sent::default(), IdMinter::new(), Utc::now());
        let (soon, later) = (ids.mint(), ids.mint());
        sent.insert(soon, "c1".into(), now + TimeDelta::seconds(1));
        sent.insert(later, "c2".into(), now + TimeDelta::hours(1));
        sent.forget_expired(now + TimeDelta::seconds(2));
        assert_eq!((sent.take(&soon), sent.take(&later).as_deref()), (None, Some("c2")));
    }

    #[test]
    fn a_full_table_forgets_the_first_to_expire() {
        let (mut sent, ids, now) = (Sent::default(), IdMinter::new(), Utc::now());
        let first = ids.mint();
        sent.insert(first, "first".into(), now);
        for i in 0..SENT_MAX {
            sent.insert(ids.mint(), format!("c{i}"), now + TimeDelta::minutes(1));
        }
        assert_eq!(sent.len(), SENT_MAX);
        assert_eq!(sent.take(&first), None, "the earliest expiry made room");
    }
}
