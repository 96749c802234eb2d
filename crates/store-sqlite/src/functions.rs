//! The function tables' SQL.

use chrono::Utc;
use glassbox_store::functions::{FunctionVersion, KvQuota, LIVE_LOG_MAX, LiveMove};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::{from_micros, micros};

const COLUMNS: &str =
    "v.name, v.version, v.digest, v.spec, v.deployed_at, v.deployed_by, COALESCE(f.live = v.version, FALSE)";

fn row(r: &Row<'_>) -> rusqlite::Result<FunctionVersion> {
    Ok(FunctionVersion {
        name: r.get(0)?,
        version: r.get(1)?,
        digest: r.get(2)?,
        spec: r.get(3)?,
        deployed_at: from_micros(r.get(4)?),
        deployed_by: r.get(5)?,
        live: r.get(6)?,
    })
}

fn select(conn: &Connection, filter: &str, args: impl rusqlite::Params) -> rusqlite::Result<Vec<FunctionVersion>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM function_versions v LEFT JOIN functions f ON f.name = v.name WHERE {filter}
         ORDER BY v.name, v.version DESC"
    );
    conn.prepare_cached(&sql)?.query_map(args, row)?.collect()
}

pub(super) fn add(
    tx: &Transaction<'_>,
    name: &str,
    digest: &str,
    spec: &str,
    by: &str,
) -> rusqlite::Result<FunctionVersion> {
    let next: u32 =
        tx.query_row("SELECT COALESCE(MAX(version), 0) + 1 FROM function_versions WHERE name = ?1", [name], |r| {
            r.get(0)
        })?;
    tx.execute(
        "INSERT INTO function_versions (name, version, digest, spec, deployed_at, deployed_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![name, next, digest, spec, micros(&Utc::now()), by],
    )?;
    tx.execute(
        "INSERT INTO functions (name, live) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET live = excluded.live",
        params![name, next],
    )?;
    log_move(tx, name, Some(next))?;
    Ok(select(tx, "v.name = ?1 AND v.version = ?2", params![name, next])?.remove(0))
}

pub(super) fn set_live(tx: &Transaction<'_>, name: &str, version: u32) -> rusqlite::Result<Option<FunctionVersion>> {
    if select(tx, "v.name = ?1 AND v.version = ?2", params![name, version])?.is_empty() {
        return Ok(None);
    }
    tx.execute(
        "INSERT INTO functions (name, live) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET live = excluded.live",
        params![name, version],
    )?;
    log_move(tx, name, Some(version))?;
    Ok(select(tx, "v.name = ?1 AND v.version = ?2", params![name, version])?.pop())
}

/// Drops the live alias (and, purging, the versions and the key-value
/// store); returns the digests of purged versions no other version uses.
pub(super) fn delete(tx: &Transaction<'_>, name: &str, purge: bool) -> rusqlite::Result<Vec<String>> {
    tx.execute("DELETE FROM functions WHERE name = ?1", [name])?;
    if !purge {
        log_move(tx, name, None)?;
        return Ok(Vec::new());
    }
    // Purged, the name is new again: nothing of it was live.
    tx.execute("DELETE FROM function_live_log WHERE name = ?1", [name])?;
    let digests: Vec<String> = tx
        .prepare("SELECT DISTINCT digest FROM function_versions WHERE name = ?1 ORDER BY digest")?
        .query_map([name], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    tx.execute("DELETE FROM function_versions WHERE name = ?1", [name])?;
    tx.execute("DELETE FROM function_kv WHERE function = ?1", [name])?;
    let mut unused = Vec::new();
    for digest in digests {
        let used: bool =
            tx.query_row("SELECT EXISTS (SELECT 1 FROM function_versions WHERE digest = ?1)", [&digest], |r| r.get(0))?;
        if !used {
            unused.push(digest);
        }
    }
    Ok(unused)
}

/// Notes a move of the live alias, forgetting the oldest past [`LIVE_LOG_MAX`].
fn log_move(tx: &Transaction<'_>, name: &str, version: Option<u32>) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO function_live_log (name, at, version) VALUES (?1, ?2, ?3)",
        params![name, micros(&Utc::now()), version],
    )?;
    tx.execute(
        "DELETE FROM function_live_log WHERE name = ?1 AND id <= (
            SELECT id FROM function_live_log WHERE name = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        params![name, LIVE_LOG_MAX],
    )?;
    Ok(())
}

pub(super) fn live_log(conn: &Connection, name: &str) -> rusqlite::Result<Vec<LiveMove>> {
    conn.prepare_cached("SELECT at, version FROM function_live_log WHERE name = ?1 ORDER BY id")?
        .query_map([name], |r| Ok(LiveMove { at: from_micros(r.get(0)?), version: r.get(1)? }))?
        .collect()
}

pub(super) fn versions(conn: &Connection, name: &str) -> rusqlite::Result<Vec<FunctionVersion>> {
    select(conn, "v.name = ?1", [name])
}

pub(super) fn live(conn: &Connection) -> rusqlite::Result<Vec<FunctionVersion>> {
    select(conn, "v.version = f.live", [])
}

pub(super) fn kv_get(conn: &Connection, function: &str, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT value FROM function_kv WHERE function = ?1 AND key = ?2")?
        .query_row([function, key], |r| r.get(0))
        .optional()
}

/// Sets a value within the function's quota; the inner error names the
/// limit it would pass. The function's keys are counted only when the set
/// could grow the store (a new key, or a larger value).
pub(super) fn kv_set(
    tx: &Transaction<'_>,
    function: &str,
    key: &str,
    value: &[u8],
    quota: KvQuota,
) -> rusqlite::Result<Result<(), String>> {
    let size = "length(CAST(key AS BLOB)) + length(value)";
    let old: Option<u64> = tx
        .prepare_cached(&format!("SELECT {size} FROM function_kv WHERE function = ?1 AND key = ?2"))?
        .query_row([function, key], |r| r.get(0))
        .optional()?;
    let new = (key.len() + value.len()) as u64;
    if old.is_none_or(|old| new > old) {
        let (keys, bytes): (u64, u64) = tx
            .prepare_cached(&format!("SELECT COUNT(*), COALESCE(SUM({size}), 0) FROM function_kv WHERE function = ?1"))?
            .query_row([function], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if old.is_none() && keys >= quota.keys_max {
            return Ok(Err(format!(
                "kv_keys_max: this function's store holds {keys} keys, its limit; delete keys before adding more"
            )));
        }
        let total = bytes - old.unwrap_or(0) + new;
        if total > quota.bytes_max {
            return Ok(Err(format!(
                "kv_bytes_max: this would bring the function's store to {total} bytes of keys and values, over its \
                 limit of {}; delete keys or store less",
                quota.bytes_max
            )));
        }
    }
    tx.execute(
        "INSERT OR REPLACE INTO function_kv (function, key, value) VALUES (?1, ?2, ?3)",
        params![function, key, value],
    )?;
    Ok(Ok(()))
}

pub(super) fn kv_delete(tx: &Transaction<'_>, function: &str, key: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM function_kv WHERE function = ?1 AND key = ?2", [function, key])?;
    Ok(())
}
