//! The token table's SQL.

use glassbox_store::TokenRecord;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::{from_micros, micros};

const COLUMNS: &str =
    "name, role, salt, hash, created_at, created_by, expires_at, last_used_at, revoked_at, revoked_by";

fn row(r: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    let role: String = r.get(1)?;
    let role = role
        .parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(TokenRecord {
        name: r.get(0)?,
        role,
        salt: r.get(2)?,
        hash: r.get(3)?,
        created_at: from_micros(r.get(4)?),
        created_by: r.get(5)?,
        expires_at: r.get::<_, Option<i64>>(6)?.map(from_micros),
        last_used_at: r.get::<_, Option<i64>>(7)?.map(from_micros),
        revoked_at: r.get::<_, Option<i64>>(8)?.map(from_micros),
        revoked_by: r.get(9)?,
    })
}

pub(super) fn get(conn: &Connection, name: &str) -> rusqlite::Result<Option<TokenRecord>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM tokens WHERE name = ?1"))?.query_row([name], row).optional()
}

pub(super) fn list(conn: &Connection) -> rusqlite::Result<Vec<TokenRecord>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM tokens ORDER BY name"))?;
    let rows = stmt.query_map([], row)?;
    rows.collect()
}

pub(super) fn create(tx: &Transaction<'_>, t: &TokenRecord) -> rusqlite::Result<bool> {
    let sql = format!("INSERT OR IGNORE INTO tokens ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
    let inserted = tx.execute(
        &sql,
        params![
            t.name,
            t.role.as_str(),
            t.salt.as_slice(),
            t.hash.as_slice(),
            micros(&t.created_at),
            t.created_by,
            t.expires_at.as_ref().map(micros),
            t.last_used_at.as_ref().map(micros),
            t.revoked_at.as_ref().map(micros),
            t.revoked_by
        ],
    )?;
    Ok(inserted == 1)
}

pub(super) fn revoke(tx: &Transaction<'_>, name: &str, at: i64, by: &str) -> rusqlite::Result<Option<TokenRecord>> {
    tx.execute(
        "UPDATE tokens SET revoked_at = ?2, revoked_by = ?3 WHERE name = ?1 AND revoked_at IS NULL",
        params![name, at, by],
    )?;
    get(tx, name)
}

pub(super) fn touch(tx: &Transaction<'_>, name: &str, at: i64) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE tokens SET last_used_at = ?2 WHERE name = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
        params![name, at],
    )?;
    Ok(())
}
