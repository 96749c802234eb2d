//! Reads: rows → [`RecordedEvent`]s, and the query verb's SQL.

use std::collections::HashMap;

use glassbox_core::{
    Data, Event, EventId, EventQuery, Lineage, Page, RecordedEvent, State, StateRecord, TypePattern, first_id_at,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};
use serde_json::value::RawValue;

use super::from_micros;
use crate::{Chain, StoreError};

const EVENT_COLUMNS: &str = "e.seq, e.id, e.received_at, e.time, e.source, e.type, e.subject, e.correlationid,
    e.causationid, e.hop, e.traceparent, e.device, e.feature, e.datasubject, e.tenant, e.originid,
    e.datacontenttype, e.dataschema, e.extensions, e.data_kind, e.data, e.via, n.name";

const EVENT_FROM: &str = "events e LEFT JOIN nodes n ON n.id = e.node";

/// An event row with its store sequence number, before its states are attached.
struct Row0 {
    seq: i64,
    event: RecordedEvent,
}

fn event_row(row: &Row<'_>) -> rusqlite::Result<Row0> {
    let id: String = row.get(1)?;
    let id = id.parse::<EventId>().map_err(|e| conversion(1, e))?;
    let data = match row.get::<_, i64>(19)? {
        1 => {
            let text = String::from_utf8(row.get(20)?).map_err(|e| conversion(20, e))?;
            Data::Json(RawValue::from_string(text).map_err(|e| conversion(20, e))?)
        }
        2 => Data::Binary(row.get(20)?),
        _ => Data::None,
    };
    let extensions = match row.get::<_, Option<String>>(18)? {
        Some(json) => serde_json::from_str(&json).map_err(|e| conversion(18, e))?,
        None => Default::default(),
    };
    let received = StateRecord {
        state: State::Received,
        at: from_micros(row.get(2)?),
        target: None,
        detail: row.get(21)?,
        node: row.get(22)?,
    };
    let event = Event {
        id,
        time: from_micros(row.get(3)?),
        source: row.get(4)?,
        ty: row.get(5)?,
        subject: row.get(6)?,
        correlationid: row.get(7)?,
        causationid: row.get(8)?,
        hop: row.get(9)?,
        traceparent: row.get(10)?,
        device: row.get(11)?,
        feature: row.get(12)?,
        datasubject: row.get(13)?,
        tenant: row.get(14)?,
        originid: row.get(15)?,
        datacontenttype: row.get(16)?,
        dataschema: row.get(17)?,
        extensions,
        data,
    };
    Ok(Row0 { seq: row.get(0)?, event: RecordedEvent { event, states: vec![received] } })
}

fn conversion(column: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
}

/// Attaches each row's recorded transitions, in the order they were recorded.
fn with_states(conn: &Connection, rows: Vec<Row0>) -> rusqlite::Result<Vec<RecordedEvent>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = vec!["?"; rows.len()].join(",");
    let sql = format!(
        "SELECT t.seq, t.state, t.at, t.target, t.detail, n.name FROM transitions t
         LEFT JOIN nodes n ON n.id = t.node WHERE t.seq IN ({placeholders}) ORDER BY t.seq, t.rowid"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut states: HashMap<i64, Vec<StateRecord>> = HashMap::new();
    let mut result = stmt.query(params_from_iter(rows.iter().map(|r| r.seq)))?;
    while let Some(row) = result.next()? {
        let code: u8 = row.get(1)?;
        let Some(state) = State::from_code(code) else { continue };
        let record = StateRecord { state, at: from_micros(row.get(2)?), target: row.get(3)?, detail: row.get(4)?, node: row.get(5)? };
        states.entry(row.get(0)?).or_default().push(record);
    }
    Ok(rows
        .into_iter()
        .map(|mut row| {
            row.event.states.extend(states.remove(&row.seq).unwrap_or_default());
            row.event
        })
        .collect())
}

pub(super) fn get(conn: &Connection, id: EventId) -> rusqlite::Result<Option<RecordedEvent>> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM {EVENT_FROM} WHERE e.id = ?1");
    let row = conn.prepare_cached(&sql)?.query_row([id.to_string()], event_row).optional()?;
    Ok(with_states(conn, row.into_iter().collect())?.pop())
}

pub(super) fn lineage(conn: &Connection, id: &str) -> rusqlite::Result<Option<Lineage>> {
    conn.prepare_cached("SELECT correlationid, hop, traceparent FROM events WHERE id = ?1")?
        .query_row([id], |r| Ok(Lineage { correlationid: r.get(0)?, hop: r.get(1)?, traceparent: r.get(2)? }))
        .optional()
}

pub(super) fn chain(conn: &Connection, correlationid: &str, limit: usize) -> rusqlite::Result<Chain> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM {EVENT_FROM} WHERE e.correlationid = ?1 ORDER BY e.seq LIMIT ?2");
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows: Vec<Row0> = stmt.query_map((correlationid, limit as i64 + 1), event_row)?.collect::<Result<_, _>>()?;
    let truncated = rows.len() > limit;
    rows.truncate(limit);
    Ok(Chain { events: with_states(conn, rows)?, truncated })
}

pub(super) fn setting(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0)).optional()
}

pub(super) fn parse_cursor(cursor: Option<&str>) -> Result<Option<i64>, StoreError> {
    cursor
        .map(|c| c.parse::<i64>().map_err(|_| StoreError::InvalidQuery(format!("cursor {c:?} is not one this store issued"))))
        .transpose()
}

/// The newest-first page. Time bounds become a range of `seq` found through
/// the id index (ids are time-ordered), so every filter index serves it.
pub(super) fn query(conn: &Connection, q: &EventQuery, cursor: Option<i64>) -> rusqlite::Result<Page> {
    let limit = q.page_size();
    let mut filters = Filters::default();
    if let Some(since) = q.since {
        filters.push("e.seq >= ?", Value::Integer(first_seq_at_or_after(conn, &first_id_at(since).to_string())?));
    }
    if let Some(until) = q.until {
        filters.push("e.seq < ?", Value::Integer(first_seq_at_or_after(conn, &first_id_at(until).to_string())?));
    }
    if let Some(cursor) = cursor {
        filters.push("e.seq < ?", Value::Integer(cursor));
    }
    filters.text("e.correlationid = ?", &q.correlation);
    filters.text("e.device = ?", &q.device);
    filters.text("e.source = ?", &q.source);
    match &q.ty {
        Some(TypePattern::Exact(ty)) => filters.push("e.type = ?", Value::Text(ty.clone())),
        Some(TypePattern::Prefix(p)) if !p.is_empty() => {
            filters.push("e.type >= ?", Value::Text(p.clone()));
            filters.push("e.type < ?", Value::Text(format!("{p}{}", char::MAX)));
        }
        _ => {}
    }
    let sql = match q.state {
        Some(state) if state != State::Received => {
            filters.push("t.state = ?", Value::Integer(state.code() as i64));
            format!(
                "SELECT {EVENT_COLUMNS} FROM transitions t JOIN events e ON e.seq = t.seq
                 LEFT JOIN nodes n ON n.id = e.node
                 WHERE {} GROUP BY t.seq ORDER BY t.seq DESC LIMIT ?",
                filters.clause().replace("e.seq", "t.seq")
            )
        }
        _ => format!("SELECT {EVENT_COLUMNS} FROM {EVENT_FROM} WHERE {} ORDER BY e.seq DESC LIMIT ?", filters.clause()),
    };
    filters.values.push(Value::Integer(limit as i64 + 1));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows: Vec<Row0> = stmt.query_map(params_from_iter(filters.values), event_row)?.collect::<Result<_, _>>()?;
    let next_cursor = (rows.len() > limit).then(|| rows[limit - 1].seq.to_string());
    rows.truncate(limit);
    Ok(Page { events: with_states(conn, rows)?, next_cursor })
}

fn first_seq_at_or_after(conn: &Connection, id: &str) -> rusqlite::Result<i64> {
    let seq: Option<i64> =
        conn.prepare_cached("SELECT seq FROM events WHERE id >= ?1 ORDER BY id LIMIT 1")?.query_row([id], |r| r.get(0)).optional()?;
    match seq {
        Some(seq) => Ok(seq),
        None => conn.query_row("SELECT coalesce(max(seq), 0) + 1 FROM events", [], |r| r.get(0)),
    }
}

#[derive(Default)]
struct Filters {
    clauses: Vec<&'static str>,
    values: Vec<Value>,
}

impl Filters {
    fn push(&mut self, clause: &'static str, value: Value) {
        self.clauses.push(clause);
        self.values.push(value);
    }

    fn text(&mut self, clause: &'static str, value: &Option<String>) {
        if let Some(value) = value {
            self.push(clause, Value::Text(value.clone()));
        }
    }

    fn clause(&self) -> String {
        match self.clauses.is_empty() {
            true => "1".into(),
            false => self.clauses.join(" AND "),
        }
    }
}
