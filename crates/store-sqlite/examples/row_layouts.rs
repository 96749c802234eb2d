//! The writer's CPU per device message for layouts of the `events` table
//! that decision 0034 weighed: SQLite alone, with rows shaped like the
//! gateway's (a 64-byte payload, an event row and a delivery state per
//! message, 256 messages per transaction, the recorder's pragmas).
//!
//! ```sh
//! cargo run --profile release-debug -p glassbox-store-sqlite --example row_layouts -- [MESSAGES]
//! ```
//!
//! Prints each layout's CPU time (this thread's, from `/proc`) per message;
//! run it a few times and compare medians. The encoded layouts store a blob
//! as long as `codec.rs` makes a device message (135 bytes).

use rusqlite::{Connection, Transaction, params};

const BATCH: usize = 256;
const PAYLOAD: [u8; 64] = [b'x'; 64];
const ENCODED: [u8; 135] = [b'e'; 135];

const COLUMNS: &str = "received_at INTEGER NOT NULL, time INTEGER NOT NULL, source TEXT NOT NULL,
    type TEXT NOT NULL, subject TEXT, correlationid TEXT NOT NULL, causationid TEXT, hop INTEGER NOT NULL,
    traceparent TEXT, device TEXT, feature TEXT, datasubject TEXT, tenant TEXT, originid TEXT,
    datacontenttype TEXT, dataschema TEXT, extensions TEXT, data_kind INTEGER NOT NULL, data BLOB, via TEXT,
    node INTEGER";
const INSERT_COLUMNS: &str = "INSERT INTO events (id, received_at, time, source, type, subject, correlationid,
    causationid, hop, traceparent, device, feature, datasubject, tenant, originid, datacontenttype, dataschema,
    extensions, data_kind, data, via, node)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, 1)";

/// A message as a test writes it: its id, and the text its id derives.
struct Message {
    id: [u8; 16],
    correlationid: String,
    traceparent: String,
    received_at: i64,
}

struct Layout {
    name: &'static str,
    schema: String,
    insert: fn(&Transaction<'_>, &[Message]),
}

fn layouts() -> Vec<Layout> {
    vec![
        Layout {
            name: "22 columns (before 0034)",
            schema: format!("CREATE TABLE events (id BLOB PRIMARY KEY, {COLUMNS}) WITHOUT ROWID;"),
            insert: |tx, batch| by_column(tx, batch, false),
        },
        Layout {
            name: "22 columns, derived values empty",
            schema: format!("CREATE TABLE events (id BLOB PRIMARY KEY, {COLUMNS}) WITHOUT ROWID;"),
            insert: |tx, batch| by_column(tx, batch, true),
        },
        Layout {
            name: "rowid table, unique id index",
            schema: format!("CREATE TABLE events (seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, {COLUMNS});"),
            insert: |tx, batch| by_column(tx, batch, false),
        },
        Layout {
            name: "id, receive time, encoded value (0034)",
            schema: "CREATE TABLE events (id BLOB PRIMARY KEY, received_at INTEGER NOT NULL, node INTEGER,
                origin_source TEXT, originid TEXT, event BLOB NOT NULL) WITHOUT ROWID;"
                .into(),
            insert: |tx, batch| {
                let mut insert = tx
                    .prepare_cached("INSERT INTO events (id, received_at, node, event) VALUES (?1, ?2, 1, ?3)")
                    .unwrap();
                for m in batch {
                    insert.execute(params![&m.id[..], m.received_at, &ENCODED[..]]).unwrap();
                }
            },
        },
        Layout {
            name: "one row per commit (a segment)",
            schema: "CREATE TABLE segments (last BLOB PRIMARY KEY, first BLOB NOT NULL, events BLOB NOT NULL)
                WITHOUT ROWID;"
                .into(),
            insert: |tx, batch| {
                let mut segment = Vec::with_capacity(batch.len() * (16 + ENCODED.len()));
                for m in batch {
                    segment.extend_from_slice(&m.id);
                    segment.extend_from_slice(&ENCODED);
                }
                let (first, last) = (&batch[0].id[..], &batch[batch.len() - 1].id[..]);
                tx.execute(
                    "INSERT INTO segments (last, first, events) VALUES (?1, ?2, ?3)",
                    params![last, first, segment],
                )
                .unwrap();
            },
        },
    ]
}

fn by_column(tx: &Transaction<'_>, batch: &[Message], derived_empty: bool) {
    let mut insert = tx.prepare_cached(INSERT_COLUMNS).unwrap();
    for m in batch {
        let (time, correlationid, traceparent, content_type) = match derived_empty {
            true => (0, "", None, None),
            false => (m.received_at, m.correlationid.as_str(), Some(&m.traceparent), Some("application/octet-stream")),
        };
        let none = None::<&str>;
        insert
            .execute(params![
                &m.id[..],
                m.received_at,
                time,
                "mqtt/bench-1",
                "device.message",
                "bench/a",
                correlationid,
                none,
                0,
                traceparent,
                none,
                none,
                none,
                none,
                none,
                content_type,
                none,
                none,
                2,
                &PAYLOAD[..],
                "mqtt",
            ])
            .unwrap();
    }
}

/// This thread's CPU time in seconds (at the kernel's tick).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("Linux /proc");
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

fn run(layout: &Layout, messages: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(dir.path().join("recorder.db")).unwrap();
    for (pragma, value) in [("page_size", "8192"), ("journal_mode", "WAL"), ("synchronous", "NORMAL")] {
        conn.pragma_update(None, pragma, value).unwrap();
    }
    conn.pragma_update(None, "cache_size", -65536).unwrap();
    conn.pragma_update(None, "wal_autocheckpoint", 4096).unwrap();
    conn.execute_batch(&layout.schema).unwrap();
    conn.execute_batch(
        "CREATE TABLE transitions (event BLOB NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL,
         state INTEGER NOT NULL, target TEXT, detail TEXT, node INTEGER, in_transit_since INTEGER,
         PRIMARY KEY (event, seq)) WITHOUT ROWID;",
    )
    .unwrap();
    let mut minter = ulid::Generator::new();
    let mut spent = 0.0;
    for start in (0..messages).step_by(BATCH) {
        // Made before the clock starts: the writer is handed these strings.
        let batch: Vec<Message> = (start..(start + BATCH).min(messages))
            .map(|n| {
                let id = minter.generate().unwrap();
                Message {
                    id: id.0.to_be_bytes(),
                    correlationid: id.to_string(),
                    traceparent: format!("00-{:032x}-{:016x}-01", id.0, id.0 as u64),
                    received_at: 1_796_581_836_267_311 + n as i64,
                }
            })
            .collect();
        let started = cpu_seconds();
        let tx = conn.transaction().unwrap();
        (layout.insert)(&tx, &batch);
        let mut state = tx
            .prepare_cached(
                "INSERT INTO transitions (event, seq, at, state, target, node, in_transit_since)
                 VALUES (?1, 1, ?2, 5, 'subscriber', 1, ?2)",
            )
            .unwrap();
        for m in &batch {
            state.execute(params![&m.id[..], m.received_at]).unwrap();
        }
        drop(state);
        tx.commit().unwrap();
        spent += cpu_seconds() - started;
    }
    spent * 1e6 / messages as f64
}

fn main() {
    let messages = std::env::args().nth(1).map_or(400_000, |n| n.parse().expect("MESSAGES is a number"));
    for layout in layouts() {
        println!("{:>6.2} µs/message  {}", run(&layout, messages), layout.name);
    }
}
