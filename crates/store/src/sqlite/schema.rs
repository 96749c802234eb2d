//! Schema and migrations. `PRAGMA user_version` holds the number of
//! migrations applied; each runs once, in order, in its own transaction.
//! Never edit a released migration: append a new one.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: events (each row is also the event's `received` record) and transitions.
    // Secondary indexes end in the primary key, so each serves newest-first scans.
    "CREATE TABLE nodes (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    -- Keyed by the 16-byte ULID: ids are minted in time order, so the table
    -- is also the time index and appends go to its right edge.
    CREATE TABLE events (
        id BLOB PRIMARY KEY,
        received_at INTEGER NOT NULL,
        time INTEGER NOT NULL,
        source TEXT NOT NULL,
        type TEXT NOT NULL,
        subject TEXT,
        correlationid TEXT NOT NULL,
        causationid TEXT,
        hop INTEGER NOT NULL,
        traceparent TEXT,
        device TEXT,
        feature TEXT,
        datasubject TEXT,
        tenant TEXT,
        originid TEXT,
        datacontenttype TEXT,
        dataschema TEXT,
        extensions TEXT,
        data_kind INTEGER NOT NULL,
        data BLOB,
        via TEXT,
        node INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX events_correlation ON events(correlationid);
    CREATE INDEX events_device ON events(device) WHERE device IS NOT NULL;
    CREATE INDEX events_type ON events(type);
    CREATE INDEX events_source ON events(source);
    CREATE INDEX events_origin ON events(source, originid) WHERE originid IS NOT NULL;
    CREATE TABLE transitions (
        event BLOB NOT NULL,
        at INTEGER NOT NULL,
        state INTEGER NOT NULL,
        target TEXT,
        detail TEXT,
        node INTEGER
    );
    CREATE INDEX transitions_event ON transitions(event);
    CREATE INDEX transitions_state ON transitions(state, event);",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Brings the database to [`SCHEMA_VERSION`]; refuses a newer one.
pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    let current: usize =
        conn.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0)).map_err(|e| e.to_string())? as usize;
    if current > SCHEMA_VERSION {
        return Err(format!(
            "the store has schema version {current}, newer than this build's {SCHEMA_VERSION}; upgrade glassbox"
        ));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(sql).map_err(|e| format!("migration {}: {e}", index + 1))?;
        tx.pragma_update(None, "user_version", (index + 1) as i64).map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
    }
    Ok(())
}
