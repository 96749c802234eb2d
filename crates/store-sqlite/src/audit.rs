//! The audit log's SQL: `audit_log` (one row an entry, sealed by the writer
//! in the commit of its change's event) and `audit_checkpoints`; and
//! [`AuditFile`], a read-only view of a data directory's log for the
//! offline `glassbox audit verify --data-dir`.

use std::path::Path;

use glassbox_audit::{Auth, Draft, Entry, Hash};
use glassbox_store::{AuditQuery, StoredCheckpoint};
use rusqlite::types::Type;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, Transaction, params, params_from_iter};

use super::{FILE_NAME, from_micros, micros};

const COLUMNS: &str = "seq, time, actor, actor_kind, auth_method, key_id, source, node, action, target, \
    before, after, event, detail, erased, salt, personal, prev, hash";

/// A value kept as its serde name (`token`, `bearer_token`).
fn name_of<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

fn parse_name<T: serde::de::DeserializeOwned>(index: usize, name: String) -> rusqlite::Result<T> {
    serde_json::from_value(serde_json::Value::String(name))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(e)))
}

fn hash_at(r: &Row<'_>, index: usize) -> rusqlite::Result<Hash> {
    let bytes: Vec<u8> = r.get(index)?;
    Hash::from_slice(&bytes)
        .ok_or_else(|| rusqlite::Error::FromSqlConversionFailure(index, Type::Blob, "a hash has 32 bytes".into()))
}

fn row(r: &Row<'_>) -> rusqlite::Result<Entry> {
    let detail: Option<String> = r.get(13)?;
    let detail = detail
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(13, Type::Text, Box::new(e)))?;
    Ok(Entry {
        seq: r.get::<_, i64>(0)? as u64,
        time: from_micros(r.get(1)?),
        actor: r.get(2)?,
        actor_kind: parse_name(3, r.get(3)?)?,
        auth: Auth { method: parse_name(4, r.get(4)?)?, key_id: r.get(5)? },
        source: r.get(6)?,
        node: r.get(7)?,
        action: r.get(8)?,
        target: r.get(9)?,
        before: r.get(10)?,
        after: r.get(11)?,
        event: r.get(12)?,
        detail,
        erased: r.get(14)?,
        salt: r.get(15)?,
        personal: hash_at(r, 16)?,
        prev: hash_at(r, 17)?,
        hash: hash_at(r, 18)?,
    })
}

/// The last entry's `seq` and hash (0 and zeros before the first).
pub(super) fn head(tx: &Transaction<'_>) -> rusqlite::Result<(u64, Hash)> {
    let last = tx
        .prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)? as u64, hash_at(r, 1)?)))
        .optional()?;
    Ok(last.unwrap_or_default())
}

/// Seals `draft` after `head` and writes it; the new head.
pub(super) fn seal(tx: &Transaction<'_>, head: (u64, Hash), draft: &Draft) -> rusqlite::Result<(u64, Hash)> {
    let entry = draft.clone().seal(head.0 + 1, head.1);
    let detail = entry.detail.as_ref().map(|d| d.to_string());
    tx.prepare_cached(&format!(
        "INSERT INTO audit_log ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
    ))?
    .execute(params![
        entry.seq as i64,
        micros(&entry.time),
        entry.actor,
        name_of(&entry.actor_kind),
        name_of(&entry.auth.method),
        entry.auth.key_id,
        entry.source,
        entry.node,
        entry.action,
        entry.target,
        entry.before,
        entry.after,
        entry.event,
        detail,
        entry.erased,
        entry.salt,
        &entry.personal.0[..],
        &entry.prev.0[..],
        &entry.hash.0[..],
    ])?;
    Ok((entry.seq, entry.hash))
}

pub(super) fn entries(conn: &Connection, query: &AuditQuery) -> rusqlite::Result<Vec<Entry>> {
    let mut clauses = Vec::new();
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    let mut push = |clause: &str, value: rusqlite::types::Value| {
        values.push(value);
        clauses.push(clause.replace('?', &format!("?{}", values.len())));
    };
    if let Some(actor) = &query.actor {
        push("actor = ?", actor.clone().into());
    }
    match query.action.as_deref().map(|a| a.strip_suffix(".*").ok_or(a)) {
        Some(Ok(noun)) => push("action LIKE ? ESCAPE '\\'", format!("{}.%", escape_like(noun)).into()),
        Some(Err(action)) => push("action = ?", action.to_string().into()),
        None => {}
    }
    if let Some(target) = &query.target {
        push("target = ?", target.clone().into());
    }
    if let Some(since) = &query.since {
        push("time >= ?", micros(since).into());
    }
    if let Some(after) = query.after {
        push("seq > ?", (after as i64).into());
    }
    if let Some(before) = query.before {
        push("seq < ?", (before as i64).into());
    }
    let filter = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
    let order = if query.newest_first { "DESC" } else { "ASC" };
    let sql = format!("SELECT {COLUMNS} FROM audit_log {filter} ORDER BY seq {order} LIMIT {}", query.limit);
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(values), row)?;
    rows.collect()
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

pub(super) fn leaves(conn: &Connection, after: u64, limit: usize) -> rusqlite::Result<Vec<Hash>> {
    let mut stmt = conn.prepare_cached("SELECT hash FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
    let rows = stmt.query_map(params![after as i64, limit as i64], |r| hash_at(r, 0))?;
    rows.collect()
}

fn checkpoint_row(r: &Row<'_>) -> rusqlite::Result<StoredCheckpoint> {
    Ok(StoredCheckpoint {
        size: r.get::<_, i64>(0)? as u64,
        root: hash_at(r, 1)?,
        at: from_micros(r.get(2)?),
        note: r.get(3)?,
    })
}

pub(super) fn add_checkpoint(tx: &Transaction<'_>, c: &StoredCheckpoint) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO audit_checkpoints (size, root, at, note) VALUES (?1, ?2, ?3, ?4)",
        params![c.size as i64, &c.root.0[..], micros(&c.at), c.note],
    )?;
    Ok(())
}

pub(super) fn checkpoints(conn: &Connection, after: u64, limit: usize) -> rusqlite::Result<Vec<StoredCheckpoint>> {
    let mut stmt = conn
        .prepare_cached("SELECT size, root, at, note FROM audit_checkpoints WHERE size > ?1 ORDER BY size LIMIT ?2")?;
    let rows = stmt.query_map(params![after as i64, limit as i64], checkpoint_row)?;
    rows.collect()
}

pub(super) fn latest_checkpoint(conn: &Connection) -> rusqlite::Result<Option<StoredCheckpoint>> {
    conn.prepare_cached("SELECT size, root, at, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1")?
        .query_row([], checkpoint_row)
        .optional()
}

/// A data directory's audit log, opened read-only: what `glassbox audit
/// verify --data-dir` reads, with or without a server running on it.
pub struct AuditFile {
    conn: Connection,
}

impl AuditFile {
    /// Opens `<dir>/recorder.db` read-only; an error says what is missing.
    pub fn open(dir: &Path) -> Result<Self, String> {
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            return Err(format!("{} does not exist: is {} a Glassbox data directory?", path.display(), dir.display()));
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(Self { conn })
    }

    /// Calls `each` on every entry in `seq` order, stopping at its first error.
    pub fn for_each_entry<E: From<String>>(&self, mut each: impl FnMut(Entry) -> Result<(), E>) -> Result<(), E> {
        let sql = format!("SELECT {COLUMNS} FROM audit_log ORDER BY seq");
        let mut stmt = self.conn.prepare(&sql).map_err(|e| E::from(format!("cannot read the audit log: {e}")))?;
        let mut rows = stmt.query([]).map_err(|e| E::from(format!("cannot read the audit log: {e}")))?;
        loop {
            match rows.next() {
                Ok(Some(r)) => each(row(r).map_err(|e| E::from(format!("an audit row does not read: {e}")))?)?,
                Ok(None) => return Ok(()),
                Err(e) => return Err(E::from(format!("cannot read the audit log: {e}"))),
            }
        }
    }

    /// Every checkpoint kept, smallest first.
    pub fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, String> {
        checkpoints(&self.conn, 0, usize::MAX >> 1).map_err(|e| format!("cannot read the audit checkpoints: {e}"))
    }
}
