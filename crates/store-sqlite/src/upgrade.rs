//! Moves the events a build before migration 15 stored in 22 columns into
//! their encoded rows (decision 0034), byte for byte where it can. Runs at open, before the writer
//! starts, a chunk per transaction: a stop half-way leaves the rest to the
//! next open, and no transaction holds the whole record.

use std::time::{Duration, Instant};

use glassbox_core::{Data, Event, EventId};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::codec;
use super::writer::INSERT_EVENT;

/// Events moved per transaction.
const CHUNK_EVENTS: usize = 10_000;
/// How often a long upgrade says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

const COLUMNS: &str = "id, received_at, time, source, type, subject, correlationid, causationid, hop, traceparent,
    device, feature, datasubject, tenant, originid, datacontenttype, dataschema, extensions, data_kind, data, via, node";

/// Encodes every row left in `events_by_column`, then drops that table.
pub(super) fn encode_events(conn: &mut Connection) -> rusqlite::Result<()> {
    let exists = conn
        .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events_by_column'", [], |_| Ok(()))
        .optional()?
        .is_some();
    if !exists {
        return Ok(());
    }
    let started = Instant::now();
    let mut logged = started;
    let mut moved = 0;
    loop {
        let tx = conn.transaction()?;
        let chunk = move_chunk(&tx)?;
        if chunk == 0 {
            tx.execute_batch("DROP TABLE events_by_column")?;
            tx.commit()?;
            break;
        }
        tx.commit()?;
        moved += chunk;
        if logged.elapsed() >= PROGRESS_EVERY {
            logged = Instant::now();
            tracing::info!(moved, "encoding the recorded events for this build's format");
        }
    }
    if moved > 0 {
        tracing::info!(moved, elapsed = ?started.elapsed(), "encoded the recorded events");
    }
    Ok(())
}

/// Moves the oldest [`CHUNK_EVENTS`] rows; how many it moved.
fn move_chunk(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<usize> {
    let mut select = tx.prepare(&format!("SELECT {COLUMNS} FROM events_by_column ORDER BY id LIMIT ?1"))?;
    let mut insert = tx.prepare(INSERT_EVENT)?;
    let mut rows = select.query([CHUNK_EVENTS as i64])?;
    let mut encoded = Vec::new();
    let mut last: Option<[u8; 16]> = None;
    let mut count = 0;
    while let Some(row) = rows.next()? {
        let ColumnRow { event, extensions, data_kind, data, received_at, via, node } = column_row(row)?;
        encoded.clear();
        codec::encode_attributes(&event, extensions.as_deref(), received_at, via.as_deref(), &mut encoded);
        codec::put_data(data_kind, &data, &mut encoded);
        let origin_source = event.originid.as_ref().map(|_| event.source.as_str());
        let id = event.id.0.to_be_bytes();
        insert.execute(params![&id[..], received_at, node, origin_source, event.originid, &encoded[..]])?;
        last = Some(id);
        count += 1;
    }
    if let Some(last) = last {
        tx.execute("DELETE FROM events_by_column WHERE id <= ?1", [&last[..]])?;
    }
    Ok(count)
}

/// An event as a row of [`COLUMNS`] held it. Its extensions and data are
/// moved as they are, not parsed: what no reader could parse before reads
/// back the same way after, and nothing in a row can stop the upgrade.
struct ColumnRow {
    /// Without its extensions and data.
    event: Event,
    extensions: Option<String>,
    data_kind: u8,
    data: Vec<u8>,
    received_at: i64,
    via: Option<String>,
    node: Option<i64>,
}

fn column_row(row: &Row<'_>) -> rusqlite::Result<ColumnRow> {
    let data: Option<Vec<u8>> = row.get(19)?;
    // The readers before read any other kind, or none, as no data.
    let (data_kind, data) = match (row.get::<_, i64>(18)?, data) {
        (1, Some(bytes)) => (codec::DATA_JSON, bytes),
        (2, Some(bytes)) => (codec::DATA_BINARY, bytes),
        _ => (codec::DATA_NONE, Vec::new()),
    };
    let event = Event {
        id: EventId::from_bytes(row.get::<_, [u8; 16]>(0)?),
        time: super::from_micros(row.get(2)?),
        source: row.get(3)?,
        ty: row.get(4)?,
        subject: row.get(5)?,
        correlationid: row.get(6)?,
        causationid: row.get(7)?,
        hop: row.get(8)?,
        traceparent: row.get(9)?,
        device: row.get(10)?,
        feature: row.get(11)?,
        datasubject: row.get(12)?,
        tenant: row.get(13)?,
        originid: row.get(14)?,
        datacontenttype: row.get(15)?,
        dataschema: row.get(16)?,
        extensions: Default::default(),
        data: Data::None,
    };
    Ok(ColumnRow {
        event,
        extensions: row.get(17)?,
        data_kind,
        data,
        received_at: row.get(1)?,
        via: row.get(20)?,
        node: row.get(21)?,
    })
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use glassbox_core::{Event, EventQuery, IdMinter};
    use glassbox_store::{EventStore, Ingress};
    use glassbox_testkit::events::event;
    use rusqlite::params;
    use serde_json::value::RawValue;

    use crate::{FILE_NAME, RecorderSettings, SqliteStore, schema};

    /// A record written by a build before migration 15, as that build's writer wrote it.
    fn record_by_column(dir: &std::path::Path, events: &[Event]) {
        let mut conn = rusqlite::Connection::open(dir.join(FILE_NAME)).unwrap();
        schema::migrate(&mut conn, &schema::RECORDER[..14]).unwrap();
        conn.execute("INSERT INTO nodes (id, name) VALUES (1, 'old-node')", []).unwrap();
        for e in events {
            let (kind, data): (i64, Option<Vec<u8>>) = match &e.data {
                glassbox_core::Data::None => (0, None),
                glassbox_core::Data::Json(raw) => (1, Some(raw.get().as_bytes().to_vec())),
                glassbox_core::Data::Binary(bytes) => (2, Some(bytes.clone())),
            };
            let extensions = (!e.extensions.is_empty()).then(|| serde_json::to_string(&e.extensions).unwrap());
            conn.execute(
                "INSERT INTO events (id, received_at, time, source, type, subject, correlationid, causationid, hop,
                 traceparent, device, feature, datasubject, tenant, originid, datacontenttype, dataschema, extensions,
                 data_kind, data, via, node)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, 1)",
                params![
                    &e.id.0.to_be_bytes()[..],
                    e.time.timestamp_micros() + 1,
                    e.time.timestamp_micros(),
                    e.source,
                    e.ty,
                    e.subject,
                    e.correlationid,
                    e.causationid,
                    e.hop,
                    e.traceparent,
                    e.device,
                    e.feature,
                    e.datasubject,
                    e.tenant,
                    e.originid,
                    e.datacontenttype,
                    e.dataschema,
                    extensions,
                    kind,
                    data,
                    "mqtt",
                ],
            )
            .unwrap();
        }
    }

    /// Events recorded by column read back the same once the store opens
    /// them with this build, and stay queryable and de-duplicated.
    #[tokio::test]
    async fn events_recorded_by_column_are_encoded_at_open_and_read_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let minter = IdMinter::new();
        let mut events: Vec<Event> =
            (0..12_000).map(|i| event(&minter, "s", if i % 2 == 0 { "even" } else { "odd" }, Some("d1"))).collect();
        events[7].originid = Some("retried".into());
        events[7].correlationid = "chain-1".into();
        events[7].extensions.insert("region".into(), serde_json::json!("eu"));
        // Stored before ingest checked JSON: no reader can parse it.
        events[8].data = glassbox_core::Data::Json(RawValue::from_string(r#"{"x":"\ud800"}"#.into()).unwrap());
        record_by_column(dir.path(), &events);
        let conn = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
        let id9 = &events[9].id.0.to_be_bytes()[..];
        conn.execute("UPDATE events SET extensions = 'not json' WHERE id = ?1", [id9]).unwrap();
        drop(conn);

        let store = SqliteStore::open(dir.path(), RecorderSettings::default()).unwrap();
        for e in [&events[0], &events[7], &events[11_999]] {
            let got = store.get(e.id).await.unwrap().expect("moved");
            assert_eq!(&got.event, e);
            let received = &got.states[0];
            assert_eq!(received.at.timestamp_micros(), e.time.timestamp_micros() + 1);
            assert_eq!((received.detail.as_deref(), received.node.as_deref()), (Some("mqtt"), Some("old-node")));
        }
        let odd =
            EventQuery { ty: Some(glassbox_core::TypePattern::Exact("odd".into())), limit: 100, ..Default::default() };
        let page = store.query(&odd).await.unwrap();
        assert_eq!(page.events.len(), 100);
        assert!(page.events.iter().all(|e| e.event.ty == "odd"));
        let mut retry = events[7].clone();
        retry.id = minter.mint();
        let appended = store.append(vec![Ingress::new(retry, Utc::now(), "mqtt", "n")]).await.unwrap();
        assert!(appended[0].duplicate && appended[0].id == events[7].id, "the origin id still de-duplicates");
        assert_eq!(appended[0].correlationid, "chain-1");
        store.close().await;

        let conn = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
        let kept: Vec<u8> = conn
            .query_row("SELECT event FROM events WHERE id = ?1", [&events[8].id.0.to_be_bytes()[..]], |r| r.get(0))
            .unwrap();
        assert!(kept.ends_with(br#"{"x":"\ud800"}"#), "the bytes themselves are kept");
        let left: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE name = 'events_by_column'", [], |r| r.get(0))
            .unwrap();
        let moved: i64 = conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0)).unwrap();
        assert_eq!((left, moved), (0, 12_000));
    }
}
