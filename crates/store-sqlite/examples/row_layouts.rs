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

use std::error::Error;

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
    insert: fn(&Transaction<'_>, &[Message]) -> rusqlite::Result<()>,
}

/// The table of 22 columns, keyed by the id (`WITHOUT ROWID`).
fn by_column_table() -> String {
    format!("CREATE TABLE events (id BLOB PRIMARY KEY, {COLUMNS}) WITHOUT ROWID;")
}

fn layouts() -> Vec<Layout> {
    vec![
        Layout {
            name: "22 columns (before 0034)",
            schema: by_column_table(),
            insert: |tx, batch| by_column(tx, batch, false),
        },
        Layout {
            name: "22 columns, derived values empty",
            schema: by_column_table(),
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
                let mut insert =
                    tx.prepare_cached("INSERT INTO events (id, received_at, node, event) VALUES (?1, ?2, 1, ?3)")?;
                for m in batch {
                    insert.execute(params![&m.id[..], m.received_at, &ENCODED[..]])?;
                }
                Ok(())
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
                )?;
                Ok(())
            },
        },
    ]
}

fn by_column(tx: &Transaction<'_>, batch: &[Message], derived_empty: bool) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(INSERT_COLUMNS)?;
    for m in batch {
        let (time, correlationid, traceparent, content_type) = match derived_empty {
            true => (0, "", None, None),
            false => (m.received_at, m.correlationid.as_str(), Some(&m.traceparent), Some("application/octet-stream")),
        };
        let none = None::<&str>;
        insert.execute(params![
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
        ])?;
    }
    Ok(())
}

/// This thread's CPU time in seconds (at the kernel's tick), from Linux's `/proc`.
fn cpu_seconds() -> Result<f64, Box<dyn Error>> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")?;
    // After the command name (which may hold spaces): utime and stime are the 12th and 13th fields.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, Box<dyn Error>> {
        Ok(fields.get(i).ok_or("a short /proc/thread-self/stat")?.parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

fn run(layout: &Layout, messages: usize) -> Result<f64, Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let mut conn = Connection::open(dir.path().join("recorder.db"))?;
    for (pragma, value) in [("page_size", "8192"), ("journal_mode", "WAL"), ("synchronous", "NORMAL")] {
        conn.pragma_update(None, pragma, value)?;
    }
    conn.pragma_update(None, "cache_size", -65536)?;
    conn.pragma_update(None, "wal_autocheckpoint", 4096)?;
    conn.execute_batch(&layout.schema)?;
    conn.execute_batch(
        "CREATE TABLE transitions (event BLOB NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL,
         state INTEGER NOT NULL, target TEXT, detail TEXT, node INTEGER, in_transit_since INTEGER,
         PRIMARY KEY (event, seq)) WITHOUT ROWID;",
    )?;
    let mut minter = ulid::Generator::new();
    let mut spent = 0.0;
    for start in (0..messages).step_by(BATCH) {
        // Made before the clock starts: the writer is handed these strings.
        let batch = (start..(start + BATCH).min(messages))
            .map(|n| {
                let id = minter.generate()?;
                Ok(Message {
                    id: id.0.to_be_bytes(),
                    correlationid: id.to_string(),
                    traceparent: format!("00-{:032x}-{:016x}-01", id.0, id.0 as u64),
                    received_at: 1_796_581_836_267_311 + n as i64,
                })
            })
            .collect::<Result<Vec<Message>, ulid::MonotonicError>>()?;
        let started = cpu_seconds()?;
        let tx = conn.transaction()?;
        (layout.insert)(&tx, &batch)?;
        let mut state = tx.prepare_cached(
            "INSERT INTO transitions (event, seq, at, state, target, node, in_transit_since)
             VALUES (?1, 1, ?2, 5, 'subscriber', 1, ?2)",
        )?;
        for m in &batch {
            state.execute(params![&m.id[..], m.received_at])?;
        }
        drop(state);
        tx.commit()?;
        spent += cpu_seconds()? - started;
    }
    Ok(spent * 1e6 / messages as f64)
}

fn main() -> Result<(), Box<dyn Error>> {
    let messages = match std::env::args().nth(1) {
        Some(n) => n.parse().map_err(|_| format!("MESSAGES is a count of messages, like 400000; got {n:?}"))?,
        None => 400_000,
    };
    for layout in layouts() {
        println!("{:>6.2} µs/message  {}", run(&layout, messages)?, layout.name);
    }
    Ok(())
}
