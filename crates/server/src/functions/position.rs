//! The dispatcher's position in the recorder, kept on disk, so that the
//! work an acknowledgement promises survives a crash or a stop: every
//! recorded event a trigger matches gets one outcome (an invocation that
//! succeeded, or a dead letter), whatever happens to the process.
//!
//! The position is the oldest event taken whose outcome is not recorded
//! yet (or, with none pending, the newest event taken). It is saved a few
//! times a second, after the outcomes it passes are committed. At start the
//! dispatcher reads the recorder forward from a margin before it
//! (`resume.rs`): events whose outcome is recorded are skipped, the rest
//! are run — so an event is run again only when the process died between
//! running it and recording how it went.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use glassbox_core::EventId;

/// The setting the position is saved under.
pub(super) const POSITION_KEY: &str = "functions.position";
/// How often a moved position is saved. A crash loses at most this much
/// progress of the position, which costs a longer read at the next start,
/// never an event.
pub(super) const SAVE_EVERY: Duration = Duration::from_millis(250);
/// How far before the saved position the next start reads: events reach
/// the dispatcher close to, not exactly in, id order (ids are minted before
/// the recorder's queue, and concurrent ingests commit in any order), so
/// one with an older id may not have been taken when the position passed
/// it. Covers a commit that took this long after its id was minted.
pub(super) const RESUME_MARGIN: Duration = Duration::from_secs(30);

/// Events taken and not yet done with.
#[derive(Default)]
pub(super) struct Position {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Each event taken whose outcomes are not all recorded, with how many
    /// it still awaits (one per function it went to).
    pending: BTreeMap<EventId, u32>,
    /// The newest event taken.
    newest: Option<EventId>,
}

impl Position {
    /// Notes an event taken that awaits `outcomes` outcomes (0: matched nothing).
    pub fn took(&self, id: EventId, outcomes: u32) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.newest = inner.newest.max(Some(id));
        if outcomes > 0 {
            *inner.pending.entry(id).or_default() += outcomes;
        }
    }

    /// Notes one outcome of `id` recorded; an event not pending is ignored
    /// (a replay, an HTTP request).
    pub fn resolved(&self, id: EventId) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(left) = inner.pending.get_mut(&id) {
            *left -= 1;
            if *left == 0 {
                inner.pending.remove(&id);
            }
        }
    }

    /// Where the next start should read from; `None` until something is taken.
    pub fn current(&self) -> Option<EventId> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.pending.keys().next().copied().or(inner.newest)
    }

    /// Events still awaiting an outcome.
    pub fn pending(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).pending.len()
    }
}

#[cfg(test)]
mod tests {
    use glassbox_core::IdMinter;

    use super::*;

    #[test]
    fn the_position_waits_for_the_oldest_event_not_done() {
        let minter = IdMinter::new();
        let (a, b, c) = (minter.mint(), minter.mint(), minter.mint());
        let position = Position::default();
        assert_eq!(position.current(), None, "nothing taken: nothing to save");
        position.took(a, 2);
        position.took(b, 0);
        position.took(c, 1);
        assert_eq!(position.current(), Some(a));
        position.resolved(c);
        position.resolved(a);
        assert_eq!(position.current(), Some(a), "a awaits one more outcome");
        position.resolved(a);
        assert_eq!(position.current(), Some(c), "none pending: the newest taken");
        position.resolved(b);
        assert_eq!(position.pending(), 0, "an outcome for an event not pending changes nothing");
    }
}
