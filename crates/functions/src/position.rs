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

use std::time::Duration;

/// The durable consumer the dispatcher reads the stream as; its cursor is
/// saved under this name (the setting `functions.position`, as before).
pub(super) const CONSUMER: &str = "functions";
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
