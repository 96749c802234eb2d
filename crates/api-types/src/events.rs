//! `/api/v1/events`: what ingest answers, a page of a query, and the
//! `lagged` item of the live tail (its `event` items are events).

use serde::{Deserialize, Serialize};

/// What ingest did with one event (`POST /api/v1/events`, 202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The recorded id: the new event's, or for a duplicate the first one's.
    pub id: String,
    pub correlationid: String,
    /// True for a retry of an event already recorded (same `source` and
    /// `originid` within the de-duplication window).
    pub duplicate: bool,
}

/// The answer to ingest: one [`Accepted`] for a single event, an array in
/// the batch's order for a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ingested {
    One(Accepted),
    Batch(Vec<Accepted>),
}

/// `GET /api/v1/events`: one page, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<E> {
    pub events: Vec<E>,
    /// Pass back as `cursor` for the next (older) page; none on the last.
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/events/tail`, an `event: lagged` item: this many events
/// were skipped because the client read too slowly (they are recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lagged {
    pub skipped: u64,
}
