//! Reads: rows → [`RecordedEvent`]s, and the query verb's SQL.

use std::collections::HashMap;

use glassbox_core::{
    Data, EventId, EventQuery, Lineage, Page, RecordedEvent, State, StateRecord, TypePattern, first_id_at,
};
use glassbox_store::{Chain, StoreError};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};

use super::codec::{self, Stored};
use super::indexer::{SPAN_MILLIS_MAX, SPAN_TABLES};
use super::{from_micros, id_bytes, undecodable};

const EVENT_COLUMNS: &str = "e.id, e.received_at, e.event, n.name";

const EVENT_FROM: &str = "events e LEFT JOIN nodes n ON n.id = e.node";

/// Stored JSON data, or, for a record no reader could parse back (stored
/// before ingest checked it), a note of what it is: never an error that
/// would fail the whole read.
pub(super) fn json_data(bytes: Vec<u8>) -> Data {
    let size = bytes.len();
    let error = match String::from_utf8(bytes) {
        Ok(text) => match Data::json_text(&text) {
            Ok(data) => return data,
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    };
    let note = serde_json::json!({ "undecodable": { "bytes": size, "error": error } });
    serde_json::value::to_raw_value(&note).map_or(Data::None, Data::Json)
}

/// A row of [`EVENT_COLUMNS`]: the event, with its `received` state.
fn event_row(row: &Row<'_>) -> rusqlite::Result<RecordedEvent> {
    let id = EventId::from_bytes(row.get::<_, [u8; 16]>(0)?);
    let received_at: i64 = row.get(1)?;
    let Stored { event, via } = codec::decode(id, received_at, row.get_ref(2)?.as_blob()?).map_err(undecodable)?;
    let received = StateRecord {
        state: State::Received,
        at: from_micros(received_at),
        target: None,
        detail: via,
        node: row.get(3)?,
    };
    Ok(RecordedEvent { event, states: vec![received] })
}

/// Attaches each row's recorded transitions, in the order they were recorded.
fn with_states(conn: &Connection, mut events: Vec<RecordedEvent>) -> rusqlite::Result<Vec<RecordedEvent>> {
    if events.is_empty() {
        return Ok(events);
    }
    let placeholders = vec!["?"; events.len()].join(",");
    let sql = format!(
        "SELECT t.event, t.state, t.at, t.target, t.detail, n.name, t.in_transit_since FROM transitions t
         LEFT JOIN nodes n ON n.id = t.node WHERE t.event IN ({placeholders}) ORDER BY t.event, t.seq"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut states: HashMap<[u8; 16], Vec<StateRecord>> = HashMap::new();
    let mut result = stmt.query(params_from_iter(events.iter().map(|e| id_bytes(e.event.id))))?;
    while let Some(row) = result.next()? {
        let code: u8 = row.get(1)?;
        let Some(state) = State::from_code(code) else {
            continue;
        };
        let record = StateRecord {
            state,
            at: from_micros(row.get(2)?),
            target: row.get(3)?,
            detail: row.get(4)?,
            node: row.get(5)?,
        };
        let states = states.entry(row.get(0)?).or_default();
        if let Some(since) = row.get::<_, Option<i64>>(6)? {
            let in_transit =
                StateRecord { state: State::InTransit, at: from_micros(since), detail: None, ..record.clone() };
            states.push(in_transit);
        }
        states.push(record);
    }
    for event in &mut events {
        event.states.extend(states.remove(&id_bytes(event.event.id)).unwrap_or_default());
    }
    Ok(events)
}

pub(super) fn get(conn: &Connection, id: EventId) -> rusqlite::Result<Option<RecordedEvent>> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM {EVENT_FROM} WHERE e.id = ?1");
    let row = conn.prepare_cached(&sql)?.query_row([&id_bytes(id)[..]], event_row).optional()?;
    Ok(with_states(conn, row.into_iter().collect())?.pop())
}

/// The events of `ids` that exist, in id order, without states.
pub(super) fn many(conn: &Connection, ids: &[EventId]) -> rusqlite::Result<Vec<RecordedEvent>> {
    let placeholders = vec!["?"; ids.len()].join(",");
    let sql = format!("SELECT {EVENT_COLUMNS} FROM {EVENT_FROM} WHERE e.id IN ({placeholders}) ORDER BY e.id");
    // Not cached: a statement per length would push the cache's others out.
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(ids.iter().map(|id| id_bytes(*id))), event_row)?;
    rows.collect()
}

/// Events after `after` in id order, without states (the primary key's order).
pub(super) fn after(conn: &Connection, after: EventId, limit: usize) -> rusqlite::Result<Vec<RecordedEvent>> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM {EVENT_FROM} WHERE e.id > ?1 ORDER BY e.id LIMIT ?2");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params![&id_bytes(after)[..], limit as i64], event_row)?;
    rows.collect()
}

/// The ids after `after` in id order: the primary key alone, no row decoded.
pub(super) fn ids_after(conn: &Connection, after: EventId, limit: usize) -> rusqlite::Result<Vec<EventId>> {
    let mut stmt = conn.prepare_cached("SELECT id FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")?;
    let ids = stmt.query_map(rusqlite::params![&id_bytes(after)[..], limit as i64], |row| {
        Ok(EventId::from_bytes(row.get::<_, [u8; 16]>(0)?))
    })?;
    ids.collect()
}

pub(super) fn lineage(conn: &Connection, id: &str) -> rusqlite::Result<Option<Lineage>> {
    let Ok(id) = id.parse::<EventId>() else {
        return Ok(None);
    };
    let sql = format!("SELECT {EVENT_COLUMNS} FROM {EVENT_FROM} WHERE e.id = ?1");
    let row = conn.prepare_cached(&sql)?.query_row([&id_bytes(id)[..]], event_row).optional()?;
    Ok(row.map(|RecordedEvent { event, .. }| Lineage {
        correlationid: event.correlationid,
        hop: event.hop,
        traceparent: event.traceparent,
    }))
}

/// The id of a chain's first event, if `correlationid` can be one. The
/// indexer keeps no `by_correlation` row for an event whose correlation id
/// is its own (`indexer::starts_chain`), so readers take the index rows
/// *after* this id (older index files still hold its row) and add the
/// event itself, found by id. It is the chain's oldest: every other event
/// of the chain was caused by it, so minted after it.
fn chain_root(correlationid: &str) -> Option<EventId> {
    correlationid.parse::<EventId>().ok().filter(|_| correlationid.len() == 26)
}

/// Ids above this bound skip a chain's first event: its id, or the empty
/// blob (below every id) when the chain cannot have one.
fn after_root(root: Option<EventId>) -> Value {
    Value::Blob(root.map_or_else(Vec::new, |id| id_bytes(id).to_vec()))
}

pub(super) fn chain(conn: &Connection, correlationid: &str, limit: usize) -> rusqlite::Result<Chain> {
    let root = chain_root(correlationid);
    let first = match root {
        Some(id) => conn
            .prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM {EVENT_FROM} WHERE e.id = ?1"))?
            .query_row([&id_bytes(id)[..]], event_row)
            .optional()?
            .filter(|first| first.event.correlationid == correlationid),
        None => None,
    };
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM idx.by_correlation k JOIN events e ON e.id = k.id
         LEFT JOIN nodes n ON n.id = e.node WHERE k.correlationid = ?1 AND k.id > ?2 ORDER BY k.id LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let values =
        params_from_iter([Value::Text(correlationid.into()), after_root(root), Value::Integer(limit as i64 + 1)]);
    let mut rows: Vec<RecordedEvent> = first.into_iter().collect();
    for row in stmt.query_map(values, event_row)? {
        rows.push(row?);
    }
    let truncated = rows.len() > limit;
    rows.truncate(limit);
    Ok(Chain { events: with_states(conn, rows)?, truncated })
}

pub(super) fn setting(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0)).optional()
}

/// A cursor is the id of the last event of the previous page.
pub(super) fn parse_cursor(cursor: Option<&str>) -> Result<Option<EventId>, StoreError> {
    cursor
        .map(|c| {
            c.parse::<EventId>()
                .map_err(|_| StoreError::InvalidQuery(format!("cursor {c:?} is not one this store issued")))
        })
        .transpose()
}

/// The newest-first page. Ids are time-ordered, so time bounds and the
/// cursor are id bounds. One key filter (correlation, device, source or
/// type, in that order of selectivity) drives the scan through its index
/// table; the others are checked on each event's keys.
pub(super) fn query(conn: &Connection, q: &EventQuery, cursor: Option<EventId>) -> rusqlite::Result<Page> {
    let limit = q.page_size();
    let mut filters = Filters {
        attributes: Attributes {
            correlation: q.correlation.clone(),
            device: q.device.clone(),
            source: q.source.clone(),
            ty: q.ty.clone(),
        },
        ..Default::default()
    };
    let lower = q.since.map(first_id_at);
    let upper = [q.until.map(first_id_at), cursor].into_iter().flatten().min();
    match q.state {
        None | Some(State::Received) => {}
        Some(State::InTransit) => filters.push(
            "EXISTS (SELECT 1 FROM transitions t WHERE t.event = e.id AND (t.state = ? OR t.in_transit_since IS NOT NULL))",
            Value::Integer(State::InTransit.code() as i64),
        ),
        Some(state) => filters.push(
            "EXISTS (SELECT 1 FROM transitions t WHERE t.event = e.id AND t.state = ?)",
            Value::Integer(state.code() as i64),
        ),
    }
    let rows = match drive(q) {
        // Each span's scan is bounded by the page's bounds itself.
        Drive::Spans { table, key } => span_rows(conn, table, key, &filters, (lower, upper), limit + 1)?,
        Drive::Correlation(c) => chain_rows(conn, c, with_bounds(filters, lower, upper), limit)?,
        Drive::Scan => page_rows(conn, "events e", "e.id", with_bounds(filters, lower, upper), limit + 1)?,
    };
    page(conn, rows, limit)
}

/// `filters` with the page's id bounds.
fn with_bounds(mut filters: Filters, lower: Option<EventId>, upper: Option<EventId>) -> Filters {
    let id_value = |id: EventId| Value::Blob(id_bytes(id).to_vec());
    if let Some(lower) = lower {
        filters.push("e.id >= ?", id_value(lower));
    }
    if let Some(upper) = upper {
        filters.push("e.id < ?", id_value(upper));
    }
    filters
}

/// Up to `limit + 1` rows of one chain, newest first: its index rows, then
/// its first event, read by id (the chain's oldest: it ends the last page).
fn chain_rows(
    conn: &Connection,
    correlationid: &str,
    mut filters: Filters,
    limit: usize,
) -> rusqlite::Result<Vec<RecordedEvent>> {
    let root = chain_root(correlationid);
    let mut walk = filters.clone();
    walk.push("k.correlationid = ?", Value::Text(correlationid.to_string()));
    walk.push("k.id > ?", after_root(root));
    let mut rows = page_rows(conn, "idx.by_correlation k JOIN events e ON e.id = k.id", "k.id", walk, limit + 1)?;
    if let Some(root) = root
        && rows.len() <= limit
    {
        filters.push("e.id = ?", Value::Blob(id_bytes(root).to_vec()));
        rows.extend(page_rows(conn, "events e", "e.id", filters, 1)?);
    }
    Ok(rows)
}

/// A page of `limit` rows of up to `limit + 1`: the extra one says there is a next page.
fn page(conn: &Connection, mut rows: Vec<RecordedEvent>, limit: usize) -> rusqlite::Result<Page> {
    let next_cursor = (rows.len() > limit).then(|| rows[limit - 1].event.id.to_string());
    rows.truncate(limit);
    Ok(Page { events: with_states(conn, rows)?, next_cursor })
}

/// Up to `limit` rows from `from` matching `filters`, newest first.
/// Ordering by the driving table's id lets SQLite walk its index backwards;
/// the walk stops at the `limit`th event whose attributes match, and
/// decodes only those whole.
fn page_rows(
    conn: &Connection,
    from: &str,
    order: &str,
    filters: Filters,
    limit: usize,
) -> rusqlite::Result<Vec<RecordedEvent>> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM {from} LEFT JOIN nodes n ON n.id = e.node
         WHERE {} ORDER BY {order} DESC",
        filters.clause().replace("e.id", order)
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = Vec::new();
    let mut walk = stmt.query(params_from_iter(&filters.values))?;
    while rows.len() < limit
        && let Some(row) = walk.next()?
    {
        if filters.attributes.match_row(row)? {
            rows.push(event_row(row)?);
        }
    }
    drop(walk);
    #[cfg(test)]
    tests::VM_STEPS.with(|n| n.set(n.get() + stmt.reset_status(rusqlite::StatementStatus::VmStep) as u64));
    Ok(rows)
}

/// Above every id: blobs compare byte by byte, then the longer is greater.
const ABOVE_ALL_IDS: [u8; 17] = [0xFF; 17];

/// Up to `limit` rows of one key, newest first, through its spans (the
/// indexer's rows: a key's lowest and highest id in a block of events),
/// within `[lower, upper)`. Each span's ids are scanned in `events` with
/// every filter, newest span first. A span reaching above the lowest
/// first id of the spans before it (a restart indexes recent events again,
/// in other blocks) is scanned only below it, so no event is read twice.
/// The scan's own bounds come first in its SQL: SQLite seeks on the first
/// lower and upper bound of a column it is given.
fn span_rows(
    conn: &Connection,
    table: &str,
    key: &str,
    filters: &Filters,
    (lower, upper): (Option<EventId>, Option<EventId>),
    limit: usize,
) -> rusqlite::Result<Vec<RecordedEvent>> {
    let lower = lower.map_or_else(Vec::new, |id| id_bytes(id).to_vec());
    // A span is at most SPAN_MILLIS_MAX wide: one ending later starts above `upper`.
    let reach = upper.map_or_else(
        || ABOVE_ALL_IDS.to_vec(),
        |id| {
            let ms = id.timestamp_ms().saturating_add(SPAN_MILLIS_MAX + 1).min((1 << 48) - 1);
            id_bytes(EventId::from_parts(ms, 0)).to_vec()
        },
    );
    let sql =
        format!("SELECT first, last FROM idx.{table} WHERE key = ?1 AND last >= ?2 AND last < ?3 ORDER BY last DESC");
    let mut walk = conn.prepare_cached(&sql)?;
    let mut spans = walk.query(rusqlite::params![key, lower, reach])?;
    // Everything at or above `below` is read (or out of the page): exclusive.
    let mut below = upper.map_or_else(|| ABOVE_ALL_IDS.to_vec(), |id| id_bytes(id).to_vec());
    let mut rows = Vec::new();
    while rows.len() < limit && below > lower {
        let Some(span) = spans.next()? else { break };
        let (first, last): (Vec<u8>, Vec<u8>) = (span.get(0)?, span.get(1)?);
        let from = first.clone().max(lower.clone());
        if from >= below {
            continue;
        }
        let mut scan = Filters::default();
        scan.push("e.id >= ?", Value::Blob(from));
        match last < below {
            true => scan.push("e.id <= ?", Value::Blob(last)),
            false => scan.push("e.id < ?", Value::Blob(below)),
        }
        scan.extend(filters);
        rows.extend(page_rows(conn, "events e", "e.id", scan, limit - rows.len())?);
        below = first;
    }
    Ok(rows)
}

/// What a query walks.
enum Drive<'q> {
    /// A chain's index rows (its first event is read by id).
    Correlation(&'q str),
    /// One key's spans.
    Spans { table: &'static str, key: &'q str },
    /// The record itself, newest first.
    Scan,
}

fn drive(q: &EventQuery) -> Drive<'_> {
    let [device, ty, source] = SPAN_TABLES;
    if let Some(c) = &q.correlation {
        return Drive::Correlation(c);
    }
    if let Some(d) = &q.device {
        return Drive::Spans { table: device, key: d };
    }
    if let Some(s) = &q.source {
        return Drive::Spans { table: source, key: s };
    }
    if let Some(TypePattern::Exact(t)) = &q.ty {
        return Drive::Spans { table: ty, key: t };
    }
    Drive::Scan
}

/// What a page scan asks of its rows: SQL clauses on the id and the
/// states, and attributes checked on each row's keys.
#[derive(Default, Clone)]
struct Filters {
    clauses: Vec<&'static str>,
    values: Vec<Value>,
    attributes: Attributes,
}

/// The query's attribute filters, checked on the keys of each encoded
/// event (decision 0034), not by SQL.
#[derive(Default, Clone)]
struct Attributes {
    correlation: Option<String>,
    device: Option<String>,
    source: Option<String>,
    ty: Option<TypePattern>,
}

impl Attributes {
    /// Whether a row of [`EVENT_COLUMNS`] matches, read from its keys
    /// alone: a row that does not is never decoded whole.
    fn match_row(&self, row: &Row<'_>) -> rusqlite::Result<bool> {
        if self.correlation.is_none() && self.device.is_none() && self.source.is_none() && self.ty.is_none() {
            return Ok(true);
        }
        let id = EventId::from_bytes(row.get::<_, [u8; 16]>(0)?);
        let keys = codec::keys(id, row.get(1)?, row.get_ref(2)?.as_blob()?).map_err(undecodable)?;
        let equal = |wanted: &Option<String>, value: Option<&str>| wanted.as_deref().is_none_or(|w| Some(w) == value);
        Ok(self.correlation.as_deref().is_none_or(|wanted| keys.correlates(id, wanted))
            && equal(&self.device, keys.device)
            && equal(&self.source, Some(keys.source))
            && self.ty.as_ref().is_none_or(|ty| ty.matches(keys.ty)))
    }
}

impl Filters {
    fn push(&mut self, clause: &'static str, value: Value) {
        self.clauses.push(clause);
        self.values.push(value);
    }

    fn extend(&mut self, other: &Filters) {
        self.clauses.extend(&other.clauses);
        self.values.extend(other.values.iter().cloned());
        self.attributes = other.attributes.clone();
    }

    fn clause(&self) -> String {
        match self.clauses.is_empty() {
            true => "1".into(),
            false => self.clauses.join(" AND "),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use chrono::Utc;
    use glassbox_core::{EventQuery, IdMinter};
    use glassbox_store::EventStore;
    use glassbox_testkit::events::{event, ingress};

    use crate::{FILE_NAME, INDEX_FILE_NAME, Readers, RecorderSettings, SqliteStore};

    thread_local! {
        /// SQLite VM steps of the page scans this thread ran: rows visited, give or take.
        pub(super) static VM_STEPS: Cell<u64> = const { Cell::new(0) };
    }

    /// A sparse key's spans each hold one event; a page bounded below by
    /// `since` must scan each span's own ids, not everything down to `since`.
    #[tokio::test]
    async fn a_span_scan_seeks_on_its_own_bounds_not_the_pages() {
        let dir = tempfile::tempdir().unwrap();
        let minter = IdMinter::new();
        let since = Utc::now() - chrono::Duration::hours(1);
        let store = SqliteStore::open(dir.path(), RecorderSettings::default()).unwrap();
        for _ in 0..20 {
            let batch = (0..1000).map(|i| {
                let device = if i % 100 == 0 { "sparse".to_string() } else { format!("busy-{}", i % 7) };
                ingress(event(&minter, "s", "t", Some(&device)))
            });
            store.append(batch.collect()).await.unwrap();
        }
        store.close().await;
        drop(store);
        let readers = Readers::new(dir.path().join(FILE_NAME), dir.path().join(INDEX_FILE_NAME));
        let query = EventQuery { device: Some("sparse".into()), since: Some(since), limit: 50, ..Default::default() };
        let page = readers.with(|conn| super::query(conn, &query, None)).unwrap();
        assert_eq!(page.events.len(), 50);
        let cursor = page.next_cursor.as_deref().and_then(|c| c.parse().ok());
        VM_STEPS.with(|n| n.set(0));
        let next = readers.with(|conn| super::query(conn, &query, cursor)).unwrap();
        assert_eq!(next.events.len(), 50);
        let steps = VM_STEPS.with(Cell::get);
        // One row per span read: a few hundred steps each. Scanning down to
        // `since` (or from the cursor) would visit thousands of rows per span.
        assert!(steps < 50 * 1_000, "{steps} VM steps for 50 rows");
    }
}
