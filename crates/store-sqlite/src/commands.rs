//! The command table's SQL.

use chrono::{DateTime, Utc};
use glassbox_store::commands::{CommandRecord, CommandState};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::{from_micros, micros};

const COLUMNS: &str = "id, device, name, payload, issuer, idempotency_key, state, created_at, expires_at, updated_at, \
    correlationid, response, reason";

fn row(r: &Row<'_>) -> rusqlite::Result<CommandRecord> {
    let state: String = r.get(6)?;
    Ok(CommandRecord {
        id: r.get(0)?,
        device: r.get(1)?,
        name: r.get(2)?,
        payload: r.get(3)?,
        issuer: r.get(4)?,
        idempotency_key: r.get(5)?,
        state: CommandState::parse(&state).unwrap_or(CommandState::Failed),
        created_at: from_micros(r.get(7)?),
        expires_at: from_micros(r.get(8)?),
        updated_at: from_micros(r.get(9)?),
        correlationid: r.get(10)?,
        response: r.get(11)?,
        reason: r.get(12)?,
    })
}

pub(super) fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<CommandRecord>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM commands WHERE id = ?1"))?.query_row([id], row).optional()
}

pub(super) fn by_key(conn: &Connection, device: &str, key: &str) -> rusqlite::Result<Option<CommandRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM commands WHERE device = ?1 AND idempotency_key = ?2");
    conn.prepare_cached(&sql)?.query_row(params![device, key], row).optional()
}

pub(super) fn create(tx: &Transaction<'_>, c: &CommandRecord) -> rusqlite::Result<(CommandRecord, bool)> {
    if let Some(key) = &c.idempotency_key
        && let Some(existing) = by_key(tx, &c.device, key)?
    {
        return Ok((existing, false));
    }
    tx.execute(
        &format!("INSERT INTO commands ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
        params![
            c.id,
            c.device,
            c.name,
            c.payload,
            c.issuer,
            c.idempotency_key,
            c.state.as_str(),
            micros(&c.created_at),
            micros(&c.expires_at),
            micros(&c.updated_at),
            c.correlationid,
            c.response,
            c.reason
        ],
    )?;
    Ok((c.clone(), true))
}

pub(super) fn list(
    conn: &Connection,
    device: Option<&str>,
    state: Option<CommandState>,
    limit: usize,
) -> rusqlite::Result<Vec<CommandRecord>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM commands WHERE (?1 IS NULL OR device = ?1) AND (?2 IS NULL OR state = ?2)
         ORDER BY id DESC LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![device, state.map(CommandState::as_str), limit as i64], row)?;
    rows.collect()
}

pub(super) fn advance(
    tx: &Transaction<'_>,
    id: &str,
    from: &[CommandState],
    to: CommandState,
    response: Option<String>,
    reason: Option<String>,
) -> rusqlite::Result<Option<CommandRecord>> {
    let Some(current) = get(tx, id)? else { return Ok(None) };
    if !from.contains(&current.state) {
        return Ok(None);
    }
    tx.execute(
        "UPDATE commands SET state = ?2, updated_at = ?3, response = COALESCE(?4, response), reason = COALESCE(?5, reason)
         WHERE id = ?1",
        params![id, to.as_str(), micros(&Utc::now()), response, reason],
    )?;
    get(tx, id)
}

pub(super) fn due(conn: &Connection, now: DateTime<Utc>, limit: usize) -> rusqlite::Result<Vec<CommandRecord>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM commands WHERE state IN ('queued', 'in_transit', 'delivered') AND expires_at <= ?1
         ORDER BY expires_at LIMIT ?2"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![micros(&now), limit as i64], row)?;
    rows.collect()
}
