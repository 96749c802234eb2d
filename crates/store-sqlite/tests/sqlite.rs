//! The embedded recorder against real SQLite files: what is SQLite's own
//! (files, locks, fsync, the index file, retention, settings of the single
//! writer). The ports' contract is checked by `conformance.rs`.

use std::time::Duration;

use chrono::Utc;
use glassbox_core::{Data, Event, EventQuery, IdMinter, TypePattern};
use glassbox_store::{EventStore, Ingress, SettingStore, StoreError};
use glassbox_store_sqlite::{RecorderSettings, SqliteStore};
use glassbox_testkit::events::{event, ingress};
use serde_json::value::RawValue;

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path(), RecorderSettings::default()).unwrap()
}

#[tokio::test]
async fn origin_ids_outside_the_window_are_new_events() {
    let dir = tempfile::tempdir().unwrap();
    let settings = RecorderSettings { dedup_window: Duration::ZERO, ..RecorderSettings::default() };
    let store = SqliteStore::open(dir.path(), settings).unwrap();
    let minter = IdMinter::new();
    let e = || Event { originid: Some("x".into()), ..event(&minter, "a", "t", None) };
    store.append(vec![ingress(e())]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert!(!store.append(vec![ingress(e())]).await.unwrap()[0].duplicate);
}

#[tokio::test]
async fn events_survive_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let minter = IdMinter::new();
    let e = event(&minter, "s", "t", None);
    {
        let store = open(&dir);
        store.append(vec![ingress(e.clone())]).await.unwrap();
        store.put_setting("k", "v").await.unwrap();
        store.close().await;
    }
    let store = open(&dir);
    assert_eq!(store.get(e.id).await.unwrap().unwrap().event, e);
    assert_eq!(store.setting("k").await.unwrap().as_deref(), Some("v"));
}

#[tokio::test]
async fn a_full_store_refuses_writes_and_keeps_nothing_partial() {
    let dir = tempfile::tempdir().unwrap();
    let settings = RecorderSettings { store_bytes_max: 256 * 1024, ..RecorderSettings::default() };
    let store = SqliteStore::open(dir.path(), settings).unwrap();
    let minter = IdMinter::new();
    let big = || Event { data: Data::Binary(vec![7u8; 16 * 1024]), ..event(&minter, "s", "t", None) };
    let mut acknowledged = Vec::new();
    let refused = loop {
        let batch: Vec<Event> = (0..4).map(|_| big()).collect();
        match store.append(batch.iter().cloned().map(ingress).collect()).await {
            Ok(_) => acknowledged.extend(batch.into_iter().map(|e| e.id)),
            Err(err) => break (err, batch),
        }
        assert!(acknowledged.len() < 10_000, "the bound was never reached");
    };
    let (err, batch) = refused;
    assert!(matches!(err, StoreError::Unavailable(ref m) if m.contains("full")), "{err}");
    assert!(!store.status().await.writable);
    for id in batch.iter().map(|e| e.id) {
        assert!(store.get(id).await.unwrap().is_none(), "nothing of a refused batch is written");
    }
    for id in acknowledged {
        assert!(store.get(id).await.unwrap().is_some(), "everything acknowledged is kept");
    }
    // A small message from outside still fits and shows that ingest fits
    // again, even one nobody is answered for (a QoS 0 PUBLISH).
    let small = Ingress::new(event(&minter, "mqtt/d1", "device.message", None), Utc::now(), "mqtt", "local");
    store.append(vec![small.unanswered()]).await.unwrap();
    assert!(store.status().await.writable, "ingest that fits makes the store writable again");
}

#[tokio::test]
async fn retention_deletes_only_expired_events() {
    let dir = tempfile::tempdir().unwrap();
    let settings = RecorderSettings { retention: Duration::from_secs(3600), ..RecorderSettings::default() };
    let minter = IdMinter::new();
    // Events minted two hours ago (ids carry their time), and one now.
    let old_minter_time = Utc::now() - chrono::Duration::hours(2);
    let old: Vec<Event> = (0..5)
        .map(|_| Event { id: ulid::Ulid::from_datetime(old_minter_time.into()), ..event(&minter, "s", "t", None) })
        .collect();
    let fresh = event(&minter, "s", "t", None);
    {
        let store =
            SqliteStore::open(dir.path(), RecorderSettings { retention: Duration::ZERO, ..settings.clone() }).unwrap();
        let received_then = |event| Ingress::new(event, old_minter_time, "test", "local");
        store.append(old.iter().cloned().map(received_then).chain([ingress(fresh.clone())]).collect()).await.unwrap();
        store.close().await;
    }
    let store = SqliteStore::open(dir.path(), settings).unwrap();
    for _ in 0..100 {
        if store.status().await.events_expired == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.status().await.events_expired, 5);
    assert!(store.get(old[0].id).await.unwrap().is_none());
    assert!(store.get(fresh.id).await.unwrap().is_some());
}

#[tokio::test]
async fn a_lost_index_file_is_rebuilt_from_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let minter = IdMinter::new();
    let events: Vec<Event> = (0..50).map(|i| event(&minter, "s", "t", Some(&format!("d{}", i % 5)))).collect();
    {
        let store = open(&dir);
        store.append(events.iter().cloned().map(ingress).collect()).await.unwrap();
        store.close().await;
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("{}{suffix}", glassbox_store_sqlite::INDEX_FILE_NAME)));
    }
    let store = open(&dir);
    let page = store.query(&EventQuery { device: Some("d3".into()), ..Default::default() }).await.unwrap();
    assert_eq!(page.events.len(), 10);
    let chain = store.chain(&events[7].correlationid, 10).await.unwrap();
    assert_eq!(chain.events[0].event.id, events[7].id);
}

#[tokio::test]
async fn a_chains_first_event_is_found_by_its_id_not_an_index_row() {
    let dir = tempfile::tempdir().unwrap();
    let minter = IdMinter::new();
    let root = event(&minter, "s", "t", None);
    assert_eq!(root.correlationid, root.id.to_string(), "a root's correlation id is its id");
    let child = Event { correlationid: root.correlationid.clone(), hop: 1, ..event(&minter, "fn", "out", None) };
    let named = Event { correlationid: "order-7".into(), ..event(&minter, "s", "t", None) };
    let store = open(&dir);
    let all = [root.clone(), child.clone(), named.clone()];
    store.append(all.iter().cloned().map(ingress).collect()).await.unwrap();
    let by_correlation = EventQuery { correlation: Some(root.correlationid.clone()), ..Default::default() };
    let page = store.query(&by_correlation).await.unwrap();
    let newest_first: Vec<_> = page.events.iter().map(|e| e.event.id).collect();
    assert_eq!(newest_first, [child.id, root.id]);
    let paged = EventQuery { limit: 1, ..by_correlation.clone() };
    let first = store.query(&paged).await.unwrap();
    let second = store.query(&EventQuery { cursor: first.next_cursor.clone(), ..paged }).await.unwrap();
    assert_eq!((first.events[0].event.id, second.events[0].event.id), (child.id, root.id));
    let children = EventQuery { ty: Some(TypePattern::Exact("out".into())), ..by_correlation.clone() };
    let only_child: Vec<_> = store.query(&children).await.unwrap().events.iter().map(|e| e.event.id).collect();
    assert_eq!(only_child, [child.id], "the first event is read with the query's other filters");
    assert_eq!(store.chain("order-7", 10).await.unwrap().events[0].event.id, named.id);
    store.close().await;

    // The index holds the child's and the named chain's rows, not the root's.
    let index = rusqlite::Connection::open(dir.path().join(glassbox_store_sqlite::INDEX_FILE_NAME)).unwrap();
    let rows: i64 = index.query_row("SELECT count(*) FROM by_correlation", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 2);
}

#[tokio::test]
async fn a_data_directory_serves_one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(&dir);
    let err = SqliteStore::open(dir.path(), RecorderSettings::default()).err().expect("a second open is refused");
    assert!(err.to_string().contains("in use by another glassbox process"), "{err}");
    first.close().await;
    // Closed, it lets go of the directory though something still holds it
    // (a server's tasks that have not ended yet).
    let second = open(&dir);
    drop(first);
    second.close().await;
}

#[tokio::test]
async fn a_corrupt_index_file_is_rebuilt_from_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let e = recorded_and_closed(&dir).await;
    let index = dir.path().join(glassbox_store_sqlite::INDEX_FILE_NAME);
    std::fs::write(&index, b"this is not a database, it is a crash's leftovers").unwrap();
    let store = open(&dir);
    let page = store.query(&EventQuery { device: Some("d1".into()), ..Default::default() }).await.unwrap();
    assert_eq!(page.events.iter().map(|r| r.event.id).collect::<Vec<_>>(), [e.id]);
    assert!(store.status().await.query_error.is_none());
}

#[tokio::test]
async fn after_an_unclean_stop_the_index_is_checked_and_kept_when_whole() {
    let dir = tempfile::tempdir().unwrap();
    let e = recorded_and_closed(&dir).await;
    let marker = dir.path().join("recorder-index.clean");
    assert!(marker.exists(), "a clean stop marks the index whole");
    std::fs::remove_file(&marker).unwrap(); // as if the process had been killed
    let store = open(&dir);
    assert!(!marker.exists(), "the marker is consumed at open");
    let page = store.query(&EventQuery { device: Some("d1".into()), ..Default::default() }).await.unwrap();
    assert_eq!(page.events[0].event.id, e.id);
}

/// A store in `dir` holding one event of device `d1`, closed cleanly.
async fn recorded_and_closed(dir: &tempfile::TempDir) -> Event {
    let e = event(&IdMinter::new(), "s", "t", Some("d1"));
    let store = open(dir);
    store.append(vec![ingress(e.clone())]).await.unwrap();
    store.close().await;
    e
}

/// Issue 17, finding 1: a record whose JSON data no reader can parse back
/// (stored before ingest checked it) is read as a note saying so, not as an
/// error that fails the whole page.
#[tokio::test]
async fn data_no_reader_can_parse_is_read_back_as_a_note_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let minter = IdMinter::new();
    let fine = event(&minter, "s", "fine", None);
    let mut poison = event(&minter, "s", "poison", None);
    poison.data = Data::Json(RawValue::from_string(r#"{"x":"\ud800"}"#.into()).unwrap());
    store.append(vec![ingress(fine.clone()), ingress(poison.clone())]).await.unwrap();

    let got = store.get(poison.id).await.unwrap().expect("recorded");
    let note = got.event.data.json().expect("readable JSON");
    assert_eq!(note["undecodable"]["bytes"], 14, "{note}");
    assert!(note["undecodable"]["error"].as_str().is_some_and(|e| e.contains("escape")), "{note}");
    let page = store.query(&EventQuery::default()).await.unwrap();
    assert_eq!(page.events.len(), 2, "the page around it reads");
    assert!(serde_json::to_value(&page.events).is_ok());
}

/// The ids of a newest-first walk of `query`, page by page.
async fn walk(store: &SqliteStore, query: EventQuery) -> Vec<glassbox_core::EventId> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.query(&EventQuery { cursor, ..query.clone() }).await.unwrap();
        ids.extend(page.events.iter().map(|e| e.event.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

#[tokio::test]
async fn devices_types_and_sources_are_indexed_by_span_and_read_back_event_by_event() {
    let dir = tempfile::tempdir().unwrap();
    let minter = IdMinter::new();
    let events: Vec<Event> = (0..2000)
        .map(|i| event(&minter, &format!("mqtt/d{}", i % 4), "device.message", Some(&format!("d{}", i % 4))))
        .collect();
    let store = open(&dir);
    for batch in events.chunks(100) {
        store.append(batch.iter().cloned().map(ingress).collect()).await.unwrap();
    }
    let mut d2: Vec<_> = events.iter().filter(|e| e.device.as_deref() == Some("d2")).map(|e| e.id).collect();
    d2.reverse();
    let by_device = EventQuery { device: Some("d2".into()), limit: 64, ..Default::default() };
    assert_eq!(walk(&store, by_device.clone()).await, d2);
    let by_source = EventQuery { source: Some("mqtt/d2".into()), limit: 64, ..Default::default() };
    assert_eq!(walk(&store, by_source).await, d2);
    let by_type =
        EventQuery { ty: Some(TypePattern::Exact("device.message".into())), limit: 500, ..Default::default() };
    assert_eq!(walk(&store, by_type).await.len(), 2000);
    store.close().await;
    drop(store);

    let index = rusqlite::Connection::open(dir.path().join(glassbox_store_sqlite::INDEX_FILE_NAME)).unwrap();
    let spans: i64 = index.query_row("SELECT count(*) FROM device_spans", [], |r| r.get(0)).unwrap();
    assert!(spans <= 4 * 20, "one row per device and block, not per event: {spans}");
    drop(index);

    // A restart indexes the last minute again, in other blocks: spans overlap, events are read once.
    let store = open(&dir);
    assert_eq!(walk(&store, by_device).await, d2);
}

#[tokio::test]
async fn a_span_covers_at_most_a_second_so_time_bounded_pages_find_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let minter = IdMinter::new();
    let base = (Utc::now().timestamp_millis() - 20_000) as u64;
    let at = |ms: u64, device: &str| Event {
        id: glassbox_core::EventId::from_parts(base + ms, u128::from(ms) + 1),
        ..event(&minter, "s", "t", Some(device))
    };
    let offsets = [0, 400, 1500, 3000, 3100, 8000];
    let mut events: Vec<Event> = offsets.iter().flat_map(|&ms| [at(ms, "d"), at(ms + 1, "other")]).collect();
    events.sort_by_key(|e| e.id);
    let store = open(&dir);
    store.append(events.iter().cloned().map(ingress).collect()).await.unwrap();
    let d: Vec<_> = events.iter().rev().filter(|e| e.device.as_deref() == Some("d")).map(|e| e.id).collect();

    let one_by_one = EventQuery { device: Some("d".into()), limit: 1, ..Default::default() };
    assert_eq!(walk(&store, one_by_one.clone()).await, d);
    // 3,050 ms falls inside the span [3000, 3100]: its older half is still found.
    let until = chrono::DateTime::from_timestamp_millis((base + 3050) as i64).unwrap();
    let since = chrono::DateTime::from_timestamp_millis((base + 300) as i64).unwrap();
    let bounded = EventQuery { until: Some(until), since: Some(since), ..one_by_one };
    assert_eq!(walk(&store, bounded).await, d[2..5]);
}

#[tokio::test]
async fn committed_pages_reach_the_database_file_without_waiting_for_the_writers_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let minter = IdMinter::new();
    let store = open(&dir);
    let file = dir.path().join(glassbox_store_sqlite::FILE_NAME);
    let before = std::fs::metadata(&file).unwrap().len();
    // About 2 MB of WAL: far below the writer's own checkpoint threshold (32 MiB).
    for _ in 0..10 {
        let batch = (0..1000).map(|_| ingress(event(&minter, "mqtt/d1", "device.message", Some("d1"))));
        store.append(batch.collect()).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&file).unwrap().len() < before + 1_000_000 {
        assert!(std::time::Instant::now() < deadline, "the background checkpoint never copied the pages");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.close().await;
}

/// An event's delivery states, by their detail, as read back.
async fn details(store: &SqliteStore, id: glassbox_core::EventId) -> Vec<String> {
    let recorded = store.get(id).await.unwrap().unwrap();
    let deliveries = recorded.states.into_iter().filter(|s| s.state == glassbox_core::State::InTransit);
    deliveries.filter_map(|s| s.detail).collect()
}

#[tokio::test]
async fn an_events_states_keep_their_order_whether_its_writer_numbers_them_or_the_table_does() {
    use glassbox_core::State;
    use glassbox_store::Transition;

    let dir = tempfile::tempdir().unwrap();
    let minter = IdMinter::new();
    let (fresh, older) = (event(&minter, "s", "t", None), event(&minter, "s", "t", None));
    let state = |e: &Event, n: usize| Transition::new(e.id, State::InTransit, Some("sub".into()), Some(n.to_string()));
    {
        let store = open(&dir);
        store.append(vec![ingress(older.clone()), ingress(fresh.clone())]).await.unwrap();
        // Just committed: the writer numbers these itself, in one batch and across batches.
        store.record(vec![state(&fresh, 1), state(&fresh, 2), state(&older, 1)]).await.unwrap();
        store.record(vec![state(&fresh, 3)]).await.unwrap();
        store.close().await;
    }
    // A new writer has not seen these events: it numbers after the table's last.
    let store = open(&dir);
    store.record(vec![state(&fresh, 4), state(&older, 2)]).await.unwrap();
    store.append(vec![ingress(event(&minter, "s", "t", None))]).await.unwrap();
    store.record(vec![state(&fresh, 5)]).await.unwrap();
    assert_eq!(details(&store, fresh.id).await, ["1", "2", "3", "4", "5"]);
    assert_eq!(details(&store, older.id).await, ["1", "2"]);

    let unknown = event(&minter, "s", "t", None);
    let refused = store.record(vec![state(&unknown, 1)]).await;
    assert!(matches!(refused, Err(StoreError::UnknownEvent(id)) if id == unknown.id), "{refused:?}");
}

#[tokio::test]
async fn a_state_recorded_in_its_events_own_commit_is_numbered_in_order() {
    use glassbox_core::State;
    use glassbox_store::Transition;

    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let minter = IdMinter::new();
    let state = |e: &Event, n: usize| Transition::new(e.id, State::InTransit, Some("sub".into()), Some(n.to_string()));
    // Sent together, the append and the state often share a group commit;
    // the state may also come first, and is then refused (its event is unknown).
    for _ in 0..50 {
        let e = event(&minter, "s", "t", None);
        let (appended, recorded) =
            tokio::join!(store.append(vec![ingress(e.clone())]), store.record(vec![state(&e, 1)]));
        appended.unwrap();
        let first = match recorded {
            Ok(()) => vec!["1"],
            Err(StoreError::UnknownEvent(id)) if id == e.id => vec![],
            Err(other) => panic!("{other:?}"),
        };
        store.record(vec![state(&e, 2)]).await.unwrap();
        assert_eq!(details(&store, e.id).await, [first, vec!["2"]].concat());
    }
}

/// A stored event that does not decode (a damaged page, a newer format)
/// is passed over by the index rebuild and deleted by retention, with a
/// warning each: one row stops neither. Reading it by id says what is wrong.
#[tokio::test]
async fn a_damaged_event_stops_neither_the_index_rebuild_nor_retention() {
    let dir = tempfile::tempdir().unwrap();
    let settings = RecorderSettings { retention: Duration::from_secs(3600), ..RecorderSettings::default() };
    let minter = IdMinter::new();
    let then = Utc::now() - chrono::Duration::hours(2);
    let old: Vec<Event> = (0..5)
        .map(|_| Event { id: ulid::Ulid::from_datetime(then.into()), ..event(&minter, "s", "t", Some("d1")) })
        .collect();
    let fresh: Vec<Event> = (0..3).map(|_| event(&minter, "s", "t", Some("d1"))).collect();
    let damaged_fresh = event(&minter, "s", "t", Some("d1"));
    {
        let store =
            SqliteStore::open(dir.path(), RecorderSettings { retention: Duration::ZERO, ..settings.clone() }).unwrap();
        let received_then = |event| Ingress::new(event, then, "test", "local");
        let now = fresh.iter().chain([&damaged_fresh]).cloned().map(ingress);
        store.append(old.iter().cloned().map(received_then).chain(now).collect()).await.unwrap();
        store.close().await;
    }
    let conn = rusqlite::Connection::open(dir.path().join(glassbox_store_sqlite::FILE_NAME)).unwrap();
    for id in [old[2].id, damaged_fresh.id] {
        conn.execute("UPDATE events SET event = x'09' WHERE id = ?1", [&id.0.to_be_bytes()[..]]).unwrap();
    }
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("{}{suffix}", glassbox_store_sqlite::INDEX_FILE_NAME)));
    }

    let store = SqliteStore::open(dir.path(), settings).unwrap();
    let error = store.get(damaged_fresh.id).await.unwrap_err().to_string();
    assert!(error.contains(&damaged_fresh.id.to_string()) && error.contains("newer"), "{error}");
    for _ in 0..100 {
        if store.status().await.events_expired == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.status().await.events_expired, 5, "the damaged one expired with the others");
    let since = Some(Utc::now() - chrono::Duration::minutes(1));
    let query = EventQuery { device: Some("d1".into()), since, limit: 3, ..Default::default() };
    let page = store.query(&query).await.unwrap();
    let mut ids: Vec<_> = page.events.iter().map(|e| e.event.id).collect();
    ids.sort();
    assert_eq!(ids, fresh.iter().map(|e| e.id).collect::<Vec<_>>(), "indexed past the damaged row");
}
