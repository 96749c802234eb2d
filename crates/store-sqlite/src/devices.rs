//! The device registry's SQL: writes run in the writer's transactions,
//! reads on pooled connections.

use chrono::Utc;
use glassbox_store::StoreError;
use glassbox_store::devices::{Device, DeviceQuery, SecretHash};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::{from_micros, micros};

pub(crate) enum DeviceOp {
    Create {
        id: String,
        secret: SecretHash,
    },
    SetDisabled {
        id: String,
        disabled: bool,
    },
    SetSecret {
        id: String,
        secret: SecretHash,
    },
    Delete {
        id: String,
    },
    SetMeta {
        id: String,
        meta: String,
    },
    /// Writes a shadow if its stored version is still `expected`.
    PutShadow {
        id: String,
        expected: u64,
        version: u64,
        document: String,
    },
}

const COLUMNS: &str = "id, disabled, created_at, updated_at, secret_sha256, meta";

fn device_row(row: &Row<'_>) -> rusqlite::Result<(Device, SecretHash)> {
    let device = Device {
        id: row.get(0)?,
        disabled: row.get(1)?,
        created_at: from_micros(row.get(2)?),
        updated_at: from_micros(row.get(3)?),
        meta: row.get::<_, Option<String>>(5)?.and_then(|m| serde_json::from_str(&m).ok()).unwrap_or_default(),
    };
    Ok((device, row.get(4)?))
}

pub(super) fn credentials(conn: &Connection, id: &str) -> rusqlite::Result<Option<(Device, SecretHash)>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM devices WHERE id = ?1"))?.query_row([id], device_row).optional()
}

/// A device's shadow version and document.
pub(super) fn shadow(conn: &Connection, id: &str) -> rusqlite::Result<Option<(u64, String)>> {
    conn.prepare_cached("SELECT version, document FROM shadows WHERE device = ?1")?
        .query_row([id], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .optional()
}

/// One page of devices. The filters read the metadata JSON row by row (no
/// index): a listing pages through the registry in id order anyway.
pub(super) fn list(conn: &Connection, query: &DeviceQuery) -> rusqlite::Result<Vec<Device>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM devices WHERE id > ?1
           AND (?3 IS NULL OR json_extract(meta, '$.group') = ?3)
           AND (?4 IS NULL OR json_extract(meta, '$.owner') = ?4)
           AND (?5 IS NULL OR EXISTS (SELECT 1 FROM json_each(meta, '$.tags') WHERE key = ?5 AND value = ?6))
         ORDER BY id LIMIT ?2"
    );
    let (tag_key, tag_value) = query.tag.clone().unzip();
    let mut stmt = conn.prepare_cached(&sql)?;
    let args =
        params![query.after.as_deref().unwrap_or(""), query.limit as i64, query.group, query.owner, tag_key, tag_value];
    let rows = stmt.query_map(args, device_row)?;
    rows.map(|r| r.map(|(device, _)| device)).collect()
}

/// Applies one registry change; the outer error aborts the transaction,
/// the inner one answers only this caller.
pub(super) fn apply(tx: &Transaction<'_>, op: &DeviceOp) -> rusqlite::Result<Result<Option<Device>, StoreError>> {
    let now = micros(&Utc::now());
    let changed = match op {
        DeviceOp::Create { id, secret } => {
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO devices (id, secret_sha256, disabled, created_at, updated_at) VALUES (?1, ?2, 0, ?3, ?3)",
                params![id, &secret[..], now],
            )?;
            if inserted == 0 {
                return Ok(Err(StoreError::Conflict(format!("device {id:?} already exists"))));
            }
            id
        }
        DeviceOp::SetDisabled { id, disabled } => {
            tx.execute("UPDATE devices SET disabled = ?2, updated_at = ?3 WHERE id = ?1", params![id, disabled, now])?;
            id
        }
        DeviceOp::SetSecret { id, secret } => {
            tx.execute(
                "UPDATE devices SET secret_sha256 = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, &secret[..], now],
            )?;
            id
        }
        DeviceOp::SetMeta { id, meta } => {
            tx.execute("UPDATE devices SET meta = ?2, updated_at = ?3 WHERE id = ?1", params![id, meta, now])?;
            id
        }
        DeviceOp::Delete { id } => {
            let existing = credentials(tx, id)?;
            tx.execute("DELETE FROM devices WHERE id = ?1", [id])?;
            tx.execute("DELETE FROM shadows WHERE device = ?1", [id])?;
            return Ok(Ok(existing.map(|(device, _)| device)));
        }
        DeviceOp::PutShadow { id, expected, version, document } => {
            if credentials(tx, id)?.is_none() {
                return Ok(Ok(None));
            }
            let stored = shadow(tx, id)?.map_or(0, |(v, _)| v);
            if stored != *expected {
                return Ok(Err(StoreError::Conflict(format!("shadow of {id:?} is at version {stored}"))));
            }
            tx.execute(
                "INSERT OR REPLACE INTO shadows (device, version, document, updated_at) VALUES (?1, ?2, ?3, ?4)",
                params![id, *version as i64, document, now],
            )?;
            id
        }
    };
    Ok(Ok(credentials(tx, changed)?.map(|(device, _)| device)))
}
