//! Schemas and migrations of the two files. `PRAGMA user_version` holds
//! the number of migrations applied; each runs once, in order, in its own
//! transaction. Never edit a released migration: append a new one.

use rusqlite::Connection;

/// `recorder.db`: the durable record.
pub const RECORDER: &[&str] = &[
    // 1: events (each row is also the event's `received` record) and transitions.
    "CREATE TABLE nodes (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    -- Keyed by the 16-byte ULID: ids are minted in time order, so the table
    -- is also the time index and appends go to its right edge. Secondary
    -- indexes live in the index file, maintained by the indexer thread.
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
    -- Read inside the writer's transaction for de-duplication, so it stays here.
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
    // 2: the device registry.
    "CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        secret_sha256 BLOB NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 3: one row per delivery: its end state, and when it became in_transit.
    "ALTER TABLE transitions ADD COLUMN in_transit_since INTEGER;",
    // 4: device shadows (the document is the control plane's JSON).
    "CREATE TABLE shadows (
        device TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        document TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 5: device commands; ids are ULIDs, so id order is creation order.
    "CREATE TABLE commands (
        id TEXT PRIMARY KEY,
        device TEXT NOT NULL,
        name TEXT NOT NULL,
        payload TEXT,
        issuer TEXT NOT NULL,
        idempotency_key TEXT,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        correlationid TEXT NOT NULL,
        response TEXT,
        reason TEXT
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX commands_idempotency ON commands(device, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX commands_device ON commands(device, id);
    CREATE INDEX commands_open ON commands(expires_at) WHERE state IN ('queued', 'in_transit', 'delivered');",
    // 6: device metadata (tags, group, owner, attributes, cadence) as JSON.
    "ALTER TABLE devices ADD COLUMN meta TEXT;",
    // 7: functions: immutable versions, the live alias, per-function key-value.
    "CREATE TABLE functions (name TEXT PRIMARY KEY, live INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE function_versions (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        digest TEXT NOT NULL,
        spec TEXT NOT NULL,
        deployed_at INTEGER NOT NULL,
        deployed_by TEXT NOT NULL,
        PRIMARY KEY (name, version)
    ) WITHOUT ROWID;
    CREATE TABLE function_kv (function TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
        PRIMARY KEY (function, key)) WITHOUT ROWID;",
    // 8: when each function's live alias moved, and to which version (NULL:
    // deleted), so which version was live at any time is known.
    "CREATE TABLE function_live_log (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        at INTEGER NOT NULL,
        version INTEGER
    );
    CREATE INDEX function_live_log_name ON function_live_log(name, id);",
    // 9: named API tokens: role, salted hash, who made them, use, expiry, revocation.
    "CREATE TABLE tokens (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        salt BLOB NOT NULL,
        hash BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        expires_at INTEGER,
        last_used_at INTEGER,
        revoked_at INTEGER,
        revoked_by TEXT
    ) WITHOUT ROWID;",
    // 10: device certificates the built-in CA issued (the certificate, never a key).
    "CREATE TABLE certificates (
        serial TEXT PRIMARY KEY,
        device TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        not_before INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        issued_at INTEGER NOT NULL,
        issued_by TEXT NOT NULL,
        pem TEXT NOT NULL,
        renews TEXT,
        renewed_by TEXT,
        grace_until INTEGER,
        first_used_at INTEGER,
        revoked_at INTEGER,
        revoked_reason TEXT,
        expiry_warned_days INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX certificates_device ON certificates(device, issued_at);
    CREATE INDEX certificates_not_after ON certificates(not_after) WHERE revoked_at IS NULL AND renewed_by IS NULL;",
    // 11: the audit log (one row a change, chained by hash, never deleted) and its signed checkpoints.
    "CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,
        time INTEGER NOT NULL,
        actor TEXT NOT NULL,
        actor_kind TEXT NOT NULL,
        auth_method TEXT NOT NULL,
        key_id TEXT,
        source TEXT,
        node TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        before TEXT,
        after TEXT,
        event TEXT NOT NULL,
        detail TEXT,
        erased INTEGER NOT NULL DEFAULT 0,
        salt TEXT,
        personal BLOB NOT NULL,
        prev BLOB NOT NULL,
        hash BLOB NOT NULL
    );
    CREATE INDEX audit_log_actor ON audit_log(actor, seq);
    CREATE INDEX audit_log_action ON audit_log(action, seq);
    CREATE INDEX audit_log_target ON audit_log(target, seq);
    CREATE TABLE audit_checkpoints (
        size INTEGER PRIMARY KEY,
        root BLOB NOT NULL,
        at INTEGER NOT NULL,
        note TEXT NOT NULL
    );",
    // 12: cost budgets, one per target (a function, feature:NAME, group:NAME), the budget as JSON.
    "CREATE TABLE budgets (
        target TEXT PRIMARY KEY,
        budget TEXT NOT NULL,
        set_at INTEGER NOT NULL,
        set_by TEXT NOT NULL
    ) WITHOUT ROWID;",
    // 13: no query reads transitions by state first (state filters join on
    // the event), so this index only cost every recorded delivery a B-tree insert.
    "DROP INDEX IF EXISTS transitions_state;",
    // 14: transitions kept in their event's order (one B-tree, not a table
    // plus an index on `event`): each recorded delivery is one insert.
    // `seq` numbers an event's states as they were recorded (decision 0026).
    "CREATE TABLE transitions_by_event (
        event BLOB NOT NULL,
        seq INTEGER NOT NULL,
        at INTEGER NOT NULL,
        state INTEGER NOT NULL,
        target TEXT,
        detail TEXT,
        node INTEGER,
        in_transit_since INTEGER,
        PRIMARY KEY (event, seq)
    ) WITHOUT ROWID;
    INSERT INTO transitions_by_event (event, seq, at, state, target, detail, node, in_transit_since)
        SELECT event, rowid, at, state, target, detail, node, in_transit_since FROM transitions ORDER BY event, rowid;
    DROP TABLE transitions;
    ALTER TABLE transitions_by_event RENAME TO transitions;",
    // 15: an event is its id, receive time, node and one encoded value
    // (codec.rs, decision 0034). The rows of the 22 columns before are
    // moved by `upgrade::encode_events` at open, in chunks, then dropped.
    "ALTER TABLE events RENAME TO events_by_column;
    DROP INDEX events_origin;
    CREATE TABLE events (
        id BLOB PRIMARY KEY,
        received_at INTEGER NOT NULL,
        node INTEGER,
        -- The de-duplication key of an event that has a producer's id.
        origin_source TEXT,
        originid TEXT,
        event BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX events_origin ON events(origin_source, originid) WHERE originid IS NOT NULL;",
];

/// `recorder-index.db`: secondary indexes, derived from `recorder.db` and
/// rebuilt from it when missing. Each key table ends in an event id, so it
/// serves newest-first walks of one key directly.
pub const INDEX: &[&str] = &[
    // 1: one table per queryable attribute, and the indexer's watermark.
    "CREATE TABLE by_correlation (correlationid TEXT NOT NULL, id BLOB NOT NULL, PRIMARY KEY (correlationid, id)) WITHOUT ROWID;
    CREATE TABLE by_device (device TEXT NOT NULL, id BLOB NOT NULL, PRIMARY KEY (device, id)) WITHOUT ROWID;
    CREATE TABLE by_type (type TEXT NOT NULL, id BLOB NOT NULL, PRIMARY KEY (type, id)) WITHOUT ROWID;
    CREATE TABLE by_source (source TEXT NOT NULL, id BLOB NOT NULL, PRIMARY KEY (source, id)) WITHOUT ROWID;
    CREATE TABLE watermark (one INTEGER PRIMARY KEY CHECK (one = 1), received_at INTEGER NOT NULL);",
    // 2: device, type and source by span: one row per key and block of
    // events, its lowest and highest id (decision 0026). Emptying the
    // watermark makes the next open index the whole record again.
    "DROP TABLE by_device;
    DROP TABLE by_type;
    DROP TABLE by_source;
    CREATE TABLE device_spans (key TEXT NOT NULL, last BLOB NOT NULL, first BLOB NOT NULL, PRIMARY KEY (key, last)) WITHOUT ROWID;
    CREATE TABLE type_spans (key TEXT NOT NULL, last BLOB NOT NULL, first BLOB NOT NULL, PRIMARY KEY (key, last)) WITHOUT ROWID;
    CREATE TABLE source_spans (key TEXT NOT NULL, last BLOB NOT NULL, first BLOB NOT NULL, PRIMARY KEY (key, last)) WITHOUT ROWID;
    DELETE FROM watermark;",
];

/// Brings a database to the length of `migrations`; refuses a newer one.
/// `sessions.db`: MQTT persistent sessions, offline queues, retained messages.
pub const SESSIONS: &[&str] = &[
    // 1: opaque state and messages, owned by the gateway.
    "CREATE TABLE sessions (client_id TEXT PRIMARY KEY, state BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE queued (client_id TEXT NOT NULL, seq INTEGER NOT NULL, message BLOB NOT NULL,
        PRIMARY KEY (client_id, seq)) WITHOUT ROWID;
    CREATE TABLE retained (topic TEXT PRIMARY KEY, message BLOB NOT NULL) WITHOUT ROWID;",
    // 2: subscriptions row by row (a SUBSCRIBE writes one row, not the whole
    // session), moved out of the sessions' JSON state.
    "CREATE TABLE subscriptions (client_id TEXT NOT NULL, filter TEXT NOT NULL, options BLOB NOT NULL,
        PRIMARY KEY (client_id, filter)) WITHOUT ROWID;
    INSERT INTO subscriptions (client_id, filter, options)
        SELECT s.client_id, j.key, CAST(j.value AS BLOB)
        FROM sessions s, json_each(CAST(s.state AS TEXT), '$.subscriptions') j
        WHERE json_valid(CAST(s.state AS TEXT));
    UPDATE sessions SET state = CAST(json_remove(CAST(state AS TEXT), '$.subscriptions') AS BLOB)
        WHERE json_valid(CAST(state AS TEXT));",
];

pub fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), String> {
    let latest = migrations.len();
    let current: usize =
        conn.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0)).map_err(|e| e.to_string())? as usize;
    if current > latest {
        return Err(format!("schema version {current} is newer than this build's {latest}; upgrade glassbox"));
    }
    for (index, sql) in migrations.iter().enumerate().skip(current) {
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(sql).map_err(|e| format!("migration {}: {e}", index + 1))?;
        tx.pragma_update(None, "user_version", (index + 1) as i64).map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
    }
    Ok(())
}

pub const METRICS: &[&str] = &[
    // 1: aggregates per series and time bucket: fine (10 s) and coarse (5 min).
    "CREATE TABLE points_fine (series TEXT NOT NULL, at INTEGER NOT NULL, count INTEGER NOT NULL,
        sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL, PRIMARY KEY (series, at)) WITHOUT ROWID;
    CREATE TABLE points_coarse (series TEXT NOT NULL, at INTEGER NOT NULL, count INTEGER NOT NULL,
        sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL, PRIMARY KEY (series, at)) WITHOUT ROWID;
    CREATE INDEX points_fine_at ON points_fine (at);
    CREATE INDEX points_coarse_at ON points_coarse (at);",
];
