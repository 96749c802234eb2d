//! The embedded recorder against real SQLite files.

use std::time::Duration;

use chrono::Utc;
use glassbox_core::{Data, Draft, Event, EventQuery, IdMinter, State, TypePattern};
use glassbox_store::{EventStore, Ingress, RecorderSettings, SqliteStore, StoreError, Transition};
use serde_json::value::RawValue;

fn event(minter: &IdMinter, source: &str, ty: &str, device: Option<&str>) -> Event {
    let draft = Draft {
        source: source.into(),
        ty: ty.into(),
        device: device.map(Into::into),
        data: Data::Json(RawValue::from_string(r#"{"temperature":21.5}"#.into()).unwrap()),
        ..Draft::default()
    };
    draft.into_event(minter.mint(), Utc::now(), None)
}

fn ingress(event: Event) -> Ingress {
    Ingress::new(event, Utc::now(), "test", "local")
}

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path(), RecorderSettings::default()).unwrap()
}

#[tokio::test]
async fn appended_event_reads_back_with_its_received_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let minter = IdMinter::new();
    let sent = event(&minter, "sensors", "telemetry", Some("d1"));
    let appended = store.append(vec![ingress(sent.clone())]).await.unwrap();
    assert_eq!(appended[0].id, sent.id.to_string());
    assert!(!appended[0].duplicate);

    let got = store.get(sent.id).await.unwrap().expect("recorded");
    assert_eq!(got.event, sent);
    assert_eq!(got.states.len(), 1);
    assert_eq!(got.states[0].state, State::Received);
    assert_eq!(got.states[0].detail.as_deref(), Some("test"));
}

#[tokio::test]
async fn every_state_transition_is_recorded_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let minter = IdMinter::new();
    let e = event(&minter, "s", "t", None);
    store.append(vec![ingress(e.clone())]).await.unwrap();
    let all_but_received: Vec<State> = State::ALL.into_iter().filter(|s| *s != State::Received).collect();
    let transitions = all_but_received
        .iter()
        .map(|state| Transition {
            event: e.id,
            state: *state,
            at: Utc::now(),
            target: Some("fn:thermostat".into()),
            detail: Some(format!("{state} detail")),
            in_transit_since: None,
        })
        .collect();
    store.record(transitions).await.unwrap();

    let got = store.get(e.id).await.unwrap().unwrap();
    let states: Vec<State> = got.states.iter().map(|s| s.state).collect();
    assert_eq!(states, State::ALL);
    assert_eq!(got.states[3].target.as_deref(), Some("fn:thermostat"));
    assert_eq!(got.states[3].node.as_deref(), Some("local"));
}

#[tokio::test]
async fn transition_for_an_unknown_event_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let id = IdMinter::new().mint();
    let t = Transition::new(id, State::InTransit, None, None);
    assert!(matches!(store.record(vec![t]).await, Err(StoreError::UnknownEvent(got)) if got == id));
}

#[tokio::test]
async fn retry_with_same_source_and_originid_returns_the_first_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let minter = IdMinter::new();
    let with_origin =
        |source: &str| Event { originid: Some("producer-42".into()), ..event(&minter, source, "t", None) };
    let first = store.append(vec![ingress(with_origin("a"))]).await.unwrap().remove(0);
    // Same batch and later batches both see the first one.
    let again = store.append(vec![ingress(with_origin("a")), ingress(with_origin("a"))]).await.unwrap();
    assert!(again.iter().all(|a| a.duplicate && a.id == first.id));
    // Another source with the same origin id is a different event.
    let other = store.append(vec![ingress(with_origin("b"))]).await.unwrap().remove(0);
    assert!(!other.duplicate);
    let page = store.query(&EventQuery::default()).await.unwrap();
    assert_eq!(page.events.len(), 2);
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
async fn query_filters_newest_first_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let minter = IdMinter::new();
    let mut batch = Vec::new();
    for i in 0..25 {
        let device = format!("d{}", i % 3);
        let ty = if i % 2 == 0 { "device.message" } else { "device.connected" };
        batch.push(ingress(event(&minter, "mqtt", ty, Some(&device))));
    }
    batch.push(ingress(event(&minter, "http", "order.created", None)));
    store.append(batch).await.unwrap();

    let by_device = EventQuery { device: Some("d1".into()), ..Default::default() };
    let page = store.query(&by_device).await.unwrap();
    assert_eq!(page.events.len(), 8);
    assert!(page.events.windows(2).all(|w| w[0].event.id > w[1].event.id), "newest first");

    let prefix = EventQuery { ty: Some(TypePattern::parse("device.*")), ..Default::default() };
    assert_eq!(store.query(&prefix).await.unwrap().events.len(), 25);
    let exact = EventQuery { ty: Some(TypePattern::parse("device.message")), ..Default::default() };
    assert_eq!(store.query(&exact).await.unwrap().events.len(), 13);
    let source = EventQuery { source: Some("http".into()), ..Default::default() };
    assert_eq!(store.query(&source).await.unwrap().events[0].event.ty, "order.created");

    let mut seen = Vec::new();
    let mut q = EventQuery { limit: 10, ..Default::default() };
    loop {
        let page = store.query(&q).await.unwrap();
        seen.extend(page.events.into_iter().map(|e| e.event.id));
        match page.next_cursor {
            Some(cursor) => q.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(seen.len(), 26);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "pages continue without gaps or repeats");

    let bad = EventQuery { cursor: Some("nope".into()), ..Default::default() };
    assert!(matches!(store.query(&bad).await, Err(StoreError::InvalidQuery(_))));
}

#[tokio::test]
async fn query_by_state_and_time_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let minter = IdMinter::new();
    let early = event(&minter, "s", "t", None);
    store.append(vec![ingress(early.clone())]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let boundary = Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let late: Vec<Event> = (0..3).map(|_| event(&minter, "s", "t", None)).collect();
    store.append(late.iter().cloned().map(ingress).collect()).await.unwrap();
    let dropped = Transition {
        event: late[1].id,
        state: State::Dropped,
        at: Utc::now(),
        target: Some("sub".into()),
        detail: Some("queue_full".into()),
        in_transit_since: None,
    };
    store.record(vec![dropped.clone(), Transition { target: Some("sub2".into()), ..dropped }]).await.unwrap();
    // A delivery's two states in one row come back as two states.
    let queued_at = Utc::now() - chrono::Duration::milliseconds(3);
    let delivered = Transition {
        in_transit_since: Some(queued_at),
        ..Transition::new(late[2].id, State::Delivered, Some("sub".into()), None)
    };
    store.record(vec![delivered]).await.unwrap();

    let since = store.query(&EventQuery { since: Some(boundary), ..Default::default() }).await.unwrap();
    assert_eq!(since.events.len(), 3);
    let until = store.query(&EventQuery { until: Some(boundary), ..Default::default() }).await.unwrap();
    assert_eq!(until.events.iter().map(|e| e.event.id).collect::<Vec<_>>(), [early.id]);

    let by_state = store.query(&EventQuery { state: Some(State::Dropped), ..Default::default() }).await.unwrap();
    assert_eq!(by_state.events.len(), 1, "one event even with two dropped deliveries");
    assert_eq!(by_state.events[0].event.id, late[1].id);
    assert_eq!(by_state.events[0].states.len(), 3);
    let received = store.query(&EventQuery { state: Some(State::Received), ..Default::default() }).await.unwrap();
    assert_eq!(received.events.len(), 4);
    let in_transit = store.query(&EventQuery { state: Some(State::InTransit), ..Default::default() }).await.unwrap();
    assert_eq!(in_transit.events.iter().map(|e| e.event.id).collect::<Vec<_>>(), [late[2].id]);
    let states: Vec<_> = in_transit.events[0].states.iter().map(|s| (s.state, s.target.clone())).collect();
    let sub = Some("sub".to_string());
    assert_eq!(states, [(State::Received, None), (State::InTransit, sub.clone()), (State::Delivered, sub)]);
    assert_eq!(in_transit.events[0].states[1].at.timestamp_micros(), queued_at.timestamp_micros());
}

#[tokio::test]
async fn chain_returns_the_whole_correlation_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let minter = IdMinter::new();
    let origin = event(&minter, "s", "t", None);
    let child = Event {
        correlationid: origin.correlationid.clone(),
        causationid: Some(origin.id.to_string()),
        hop: 1,
        ..event(&minter, "fn", "out", None)
    };
    let unrelated = event(&minter, "s", "t", None);
    store.append(vec![ingress(origin.clone()), ingress(unrelated), ingress(child.clone())]).await.unwrap();
    let chain = store.chain(&origin.correlationid, 100).await.unwrap();
    assert_eq!(chain.events.iter().map(|e| e.event.id).collect::<Vec<_>>(), [origin.id, child.id]);
    assert!(!chain.truncated);
    let short = store.chain(&origin.correlationid, 1).await.unwrap();
    assert!(short.truncated);
    let lineage = store.lineage(&child.id.to_string()).await.unwrap().unwrap();
    assert_eq!((lineage.correlationid, lineage.hop), (origin.correlationid, 1));
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

/// The child half of the crash test: records one event of the platform's
/// own and one acknowledged event, prints their ids, and dies uncleanly.
async fn record_then_die(dir: &str) -> ! {
    let store = SqliteStore::open(std::path::Path::new(dir), RecorderSettings::default()).unwrap();
    let minter = IdMinter::new();
    let own = event(&minter, "glassbox/functions", "function.invoked", None);
    store.append(vec![Ingress::new(own.clone(), Utc::now(), "platform", "local")]).await.unwrap();
    let acked = event(&minter, "mqtt/d1", "device.message", Some("d1"));
    store.append(vec![Ingress::new(acked.clone(), Utc::now(), "mqtt", "local")]).await.unwrap();
    println!("recorded: {} {}", own.id, acked.id);
    std::process::abort();
}

#[tokio::test]
async fn the_platforms_own_records_skip_the_fsync_and_survive_a_crash_of_the_process() {
    if let Ok(dir) = std::env::var("GLASSBOX_STORE_CRASH_DIR") {
        record_then_die(&dir).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let minter = IdMinter::new();
    let own = Ingress::new(event(&minter, "glassbox", "function.invoked", None), Utc::now(), "platform", "local");
    store.append(vec![own.clone()]).await.unwrap();
    let processed = Transition::new(own.event().id, State::Processed, Some("fn:f".into()), None);
    store.record(vec![processed]).await.unwrap();
    let status = store.status();
    assert_eq!((status.commits, status.commits_fsynced), (2, 0), "neither waited for the disk");
    store.append(vec![Ingress::new(event(&minter, "mqtt/d1", "m", None), Utc::now(), "mqtt", "local")]).await.unwrap();
    let status = store.status();
    assert_eq!((status.commits, status.commits_fsynced), (3, 1), "an acknowledged event waits for its fsync");
    store.close().await;

    // A process that dies right after committing loses neither kind.
    let crashed = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "the_platforms_own_records_skip_the_fsync_and_survive_a_crash_of_the_process", "--nocapture"])
        .env("GLASSBOX_STORE_CRASH_DIR", crashed.path())
        .output()
        .unwrap();
    assert!(!child.status.success(), "the child was to die");
    let stdout = String::from_utf8_lossy(&child.stdout);
    let ids: Vec<glassbox_core::EventId> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("recorded: ")?.split_once(" "))
        .map(|(a, b)| vec![a.parse().unwrap(), b.parse().unwrap()])
        .unwrap();
    let store = open(&crashed);
    for id in ids {
        assert!(store.get(id).await.unwrap().is_some(), "{id} lost in the crash");
    }
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
    assert!(!store.status().writable);
    for id in batch.iter().map(|e| e.id) {
        assert!(store.get(id).await.unwrap().is_none(), "nothing of a refused batch is written");
    }
    for id in acknowledged {
        assert!(store.get(id).await.unwrap().is_some(), "everything acknowledged is kept");
    }
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
        if store.status().events_expired == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.status().events_expired, 5);
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
        let _ = std::fs::remove_file(dir.path().join(format!("{}{suffix}", glassbox_store::sqlite::INDEX_FILE_NAME)));
    }
    let store = open(&dir);
    let page = store.query(&EventQuery { device: Some("d3".into()), ..Default::default() }).await.unwrap();
    assert_eq!(page.events.len(), 10);
    let chain = store.chain(&events[7].correlationid, 10).await.unwrap();
    assert_eq!(chain.events[0].event.id, events[7].id);
}

#[tokio::test]
async fn queries_see_every_acknowledged_append_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let minter = IdMinter::new();
    for round in 0..20 {
        let e = event(&minter, "s", "t", Some("busy"));
        store.append(vec![ingress(e.clone())]).await.unwrap();
        let page =
            store.query(&EventQuery { device: Some("busy".into()), limit: 1, ..Default::default() }).await.unwrap();
        assert_eq!(page.events[0].event.id, e.id, "round {round}: the index lags an acknowledged append");
    }
}

#[tokio::test]
async fn the_device_registry_creates_disables_rotates_and_deletes() {
    use glassbox_core::secrets::{matches as secret_matches, mint};
    use glassbox_store::DeviceRegistry;
    let new_secret = || mint("gbxd_");
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (secret, hash) = new_secret();
    let created = store.create_device("thermo-1", hash).await.unwrap();
    assert!(!created.disabled);
    assert!(matches!(store.create_device("thermo-1", hash).await, Err(StoreError::Conflict(_))));
    let (_, stored) = store.device_credentials("thermo-1").await.unwrap().unwrap();
    assert!(secret_matches(secret.as_bytes(), &stored));

    assert!(store.set_device_disabled("thermo-1", true).await.unwrap().unwrap().disabled);
    assert!(store.set_device_disabled("nobody", true).await.unwrap().is_none());
    let (rotated, new_hash) = new_secret();
    store.set_device_secret("thermo-1", new_hash).await.unwrap();
    let (_, stored) = store.device_credentials("thermo-1").await.unwrap().unwrap();
    assert!(secret_matches(rotated.as_bytes(), &stored) && !secret_matches(secret.as_bytes(), &stored));

    store.create_device("pump-2", new_secret().1).await.unwrap();
    let ids: Vec<String> = store.devices(None, 10).await.unwrap().into_iter().map(|d| d.id).collect();
    assert_eq!(ids, ["pump-2", "thermo-1"]);
    assert_eq!(store.devices(Some("pump-2"), 10).await.unwrap().len(), 1);
    assert_eq!(store.delete_device("pump-2").await.unwrap().unwrap().id, "pump-2");
    assert!(store.delete_device("pump-2").await.unwrap().is_none());
    assert!(store.device("pump-2").await.unwrap().is_none());
}

#[tokio::test]
async fn a_data_directory_serves_one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(&dir);
    let err = SqliteStore::open(dir.path(), RecorderSettings::default()).err().expect("a second open is refused");
    assert!(err.to_string().contains("in use by another glassbox process"), "{err}");
    first.close().await;
    drop(first);
    open(&dir);
}

#[tokio::test]
async fn a_corrupt_index_file_is_rebuilt_from_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let e = recorded_and_closed(&dir).await;
    let index = dir.path().join(glassbox_store::sqlite::INDEX_FILE_NAME);
    std::fs::write(&index, b"this is not a database, it is a crash's leftovers").unwrap();
    let store = open(&dir);
    let page = store.query(&EventQuery { device: Some("d1".into()), ..Default::default() }).await.unwrap();
    assert_eq!(page.events.iter().map(|r| r.event.id).collect::<Vec<_>>(), [e.id]);
    assert!(store.status().index_error.is_none());
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

#[tokio::test]
async fn shadows_are_written_only_over_the_version_they_were_read_at() {
    use glassbox_store::DeviceRegistry;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_device("d1", [0; 32]).await.unwrap();
    assert_eq!(store.shadow("d1").await.unwrap(), None);
    assert!(store.put_shadow("d1", 0, 1, "{\"v\":1}".into()).await.unwrap());
    assert!(!store.put_shadow("d1", 0, 1, "{\"v\":\"late\"}".into()).await.unwrap(), "a stale writer loses");
    assert!(store.put_shadow("d1", 1, 2, "{\"v\":2}".into()).await.unwrap());
    assert_eq!(store.shadow("d1").await.unwrap(), Some((2, "{\"v\":2}".to_string())));
    assert!(store.put_shadow("nobody", 0, 1, "{}".into()).await.is_err(), "unknown device");
    store.delete_device("d1").await.unwrap();
    assert_eq!(store.shadow("d1").await.unwrap(), None, "deleted with its device");
}

#[tokio::test]
async fn commands_are_idempotent_by_key_and_change_state_only_from_expected_states() {
    use glassbox_store::{CommandRecord, CommandState, CommandStore};
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = Utc::now();
    let command = |id: &str, key: Option<&str>| CommandRecord {
        id: id.into(),
        device: "d1".into(),
        name: "reboot".into(),
        payload: Some("{\"delay\":1}".into()),
        issuer: "admin".into(),
        idempotency_key: key.map(str::to_string),
        state: CommandState::Queued,
        created_at: now,
        expires_at: now + chrono::Duration::seconds(60),
        updated_at: now,
        correlationid: id.into(),
        response: None,
        reason: None,
    };
    let (first, created) = store.create_command(command("c1", Some("k"))).await.unwrap();
    assert!(created);
    let (again, created) = store.create_command(command("c2", Some("k"))).await.unwrap();
    assert_eq!((again.id.as_str(), created), ("c1", false), "same key: the first command");
    store.create_command(command("c3", None)).await.unwrap();

    let sent = store.advance_command("c1", &[CommandState::Queued], CommandState::InTransit, None, None).await.unwrap();
    assert_eq!(sent.unwrap().state, CommandState::InTransit);
    let stale =
        store.advance_command("c1", &[CommandState::Queued], CommandState::Cancelled, None, None).await.unwrap();
    assert!(stale.is_none(), "not queued any more");
    let done = store
        .advance_command("c1", &CommandState::OPEN, CommandState::Succeeded, Some("{\"ok\":true}".into()), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((done.state, done.response.as_deref()), (CommandState::Succeeded, Some("{\"ok\":true}")));
    assert_eq!(done.payload, first.payload);

    let listed = store.commands(Some("d1"), None, 10).await.unwrap();
    assert_eq!(listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["c3", "c1"], "newest first");
    let open = store.commands(Some("d1"), Some(CommandState::Queued), 10).await.unwrap();
    assert_eq!(open.len(), 1);
    let due = store.due_commands(now + chrono::Duration::seconds(61), 10).await.unwrap();
    assert_eq!(due.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["c3"], "open and past its ttl");
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

// Issue 16, finding 5: a function's key-value store had no limit on keys
// or bytes; now a set past either is refused, naming the limit, and what
// was stored stays within it.
#[tokio::test]
async fn finding_5_kv_set_past_the_key_count_or_byte_quota_is_refused_naming_the_limit() {
    use glassbox_store::{FunctionStore, KvQuota};
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let quota = KvQuota { keys_max: 3, bytes_max: 1000 };
    for key in ["a", "b", "c"] {
        store.kv_set("f", key, vec![0; 100], quota).await.unwrap();
    }
    let refused = store.kv_set("f", "d", vec![0; 1], quota).await.unwrap_err();
    assert!(matches!(&refused, StoreError::Conflict(m) if m.starts_with("kv_keys_max: ")), "{refused}");
    assert_eq!(store.kv_get("f", "d").await.unwrap(), None);
    store.kv_set("f", "a", vec![1; 50], quota).await.unwrap();
    store.kv_set("g", "d", vec![0; 1], quota).await.unwrap();

    // Keys and values count: 3 keys + 50 + 100 + 100 bytes so far.
    let refused = store.kv_set("f", "b", vec![0; 900], quota).await.unwrap_err();
    let expected = "kv_bytes_max: this would bring the function's store to 1053 bytes";
    assert!(matches!(&refused, StoreError::Conflict(m) if m.starts_with(expected)), "{refused}");
    assert!(refused.to_string().contains("over its limit of 1000"), "{refused}");
    assert_eq!(store.kv_get("f", "b").await.unwrap(), Some(vec![0; 100]), "the old value stays");
    store.kv_set("f", "b", vec![0; 700], quota).await.unwrap();
    store.kv_delete("f", "c").await.unwrap();
    store.kv_set("f", "d", vec![0; 1], quota).await.unwrap();
}

/// A delete drops the live alias and keeps the versions; promoting one
/// brings the function back; a purge removes versions and key-value store
/// and names the components no version uses any more.
#[tokio::test]
async fn a_deleted_function_keeps_its_versions_until_purged() {
    use glassbox_store::{FunctionStore, KvQuota};
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let quota = KvQuota { keys_max: 10, bytes_max: 1000 };
    store.add_version("f", "sha256:a", "{}", "admin").await.unwrap();
    store.add_version("f", "sha256:b", "{}", "admin").await.unwrap();
    store.add_version("g", "sha256:b", "{}", "admin").await.unwrap();
    store.kv_set("f", "k", vec![1], quota).await.unwrap();

    assert_eq!(store.delete("f", false).await.unwrap(), Vec::<String>::new());
    let live: Vec<String> = store.live_versions().await.unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(live, ["g"]);
    let kept = store.versions("f").await.unwrap();
    assert_eq!((kept.len(), kept.iter().any(|v| v.live)), (2, false));
    assert_eq!(store.add_version("f", "sha256:c", "{}", "admin").await.unwrap().version, 3, "numbers continue");
    store.delete("f", false).await.unwrap();
    assert!(store.set_live("f", 1).await.unwrap().unwrap().live, "a promote brings it back");

    let unused = store.delete("f", true).await.unwrap();
    assert_eq!(unused, ["sha256:a", "sha256:c"], "sha256:b is g's too");
    assert!(store.versions("f").await.unwrap().is_empty());
    assert_eq!(store.kv_get("f", "k").await.unwrap(), None);
    assert_eq!(store.add_version("f", "sha256:a", "{}", "admin").await.unwrap().version, 1, "purged: from 1");
}

/// Each move of the live alias is logged, a delete as none, at most
/// `LIVE_LOG_MAX` per function; a purge forgets them.
#[tokio::test]
async fn moves_of_the_live_alias_are_logged_within_a_bound() {
    use glassbox_store::{FunctionStore, LIVE_LOG_MAX};
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.add_version("f", "sha256:a", "{}", "admin").await.unwrap();
    store.add_version("f", "sha256:b", "{}", "admin").await.unwrap();
    store.set_live("f", 1).await.unwrap();
    store.delete("f", false).await.unwrap();
    let moves: Vec<Option<u32>> = store.live_log("f").await.unwrap().into_iter().map(|m| m.version).collect();
    assert_eq!(moves, [Some(1), Some(2), Some(1), None]);
    for _ in 0..LIVE_LOG_MAX {
        store.set_live("f", 2).await.unwrap();
    }
    assert_eq!(store.live_log("f").await.unwrap().len(), LIVE_LOG_MAX as usize);
    store.delete("f", true).await.unwrap();
    assert!(store.live_log("f").await.unwrap().is_empty());
}
