//! The crash test, alone in its own test binary: it spawns a child
//! process, and a child forked while another test's store is open shares
//! that store's `LOCK` file until it execs, so a test in the same process
//! that closes and reopens its store could find the directory "in use".

use chrono::Utc;
use glassbox_core::{IdMinter, State};
use glassbox_store::{EventStore, Ingress, Transition};
use glassbox_store_sqlite::{RecorderSettings, SqliteStore};
use glassbox_testkit::events::event;

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path(), RecorderSettings::default()).unwrap()
}

/// The child half of the crash test: records one acknowledged event, then
/// one of the platform's own, one nobody is answered for (a QoS 0 message)
/// and one acknowledged but only committed (its sync not waited for),
/// prints their ids, and dies uncleanly.
async fn record_then_die(dir: &str) -> ! {
    let store = SqliteStore::open(std::path::Path::new(dir), RecorderSettings::default()).unwrap();
    let minter = IdMinter::new();
    // The acknowledged one first: the two after it are still unsynced at the abort.
    let acked = event(&minter, "mqtt/d1", "device.message", Some("d1"));
    store.append(vec![Ingress::new(acked.clone(), Utc::now(), "mqtt", "local")]).await.unwrap();
    let own = event(&minter, "glassbox/functions", "function.invoked", None);
    store.append(vec![Ingress::new(own.clone(), Utc::now(), "platform", "local")]).await.unwrap();
    let unanswered = event(&minter, "mqtt/d1", "device.message", Some("d1"));
    store.append(vec![Ingress::new(unanswered.clone(), Utc::now(), "mqtt", "local").unanswered()]).await.unwrap();
    let committed = event(&minter, "mqtt/d1", "device.message", Some("d1"));
    let _durable = store.append_committed(vec![Ingress::new(committed.clone(), Utc::now(), "mqtt", "local")]).await;
    println!("recorded: {} {} {} {}", acked.id, own.id, unanswered.id, committed.id);
    std::process::abort();
}

#[tokio::test]
async fn records_nobody_is_answered_for_skip_the_fsync_and_survive_a_crash_of_the_process() {
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
    let status = store.status().await;
    assert_eq!((status.commits, status.commits_durable), (2, 0), "neither waited for the disk");
    store.append(vec![Ingress::new(event(&minter, "mqtt/d1", "m", None), Utc::now(), "mqtt", "local")]).await.unwrap();
    let status = store.status().await;
    assert_eq!((status.commits, status.commits_durable), (3, 1), "an acknowledged event waits for its fsync");
    store.close().await;

    // Nor does a message nobody is answered for (a QoS 0 PUBLISH); alone in
    // a fresh store, so no earlier commit's age can make its commit sync.
    let qos0_dir = tempfile::tempdir().unwrap();
    let store = open(&qos0_dir);
    let qos0 = Ingress::new(event(&minter, "mqtt/d1", "m", None), Utc::now(), "mqtt", "local").unanswered();
    store.append(vec![qos0]).await.unwrap();
    let status = store.status().await;
    assert_eq!((status.commits, status.commits_durable), (1, 0), "a QoS 0 message does not wait for the disk");
    assert_eq!(syncs(&status), 0, "nor is it synced at once");
    let waited = std::time::Instant::now();
    while syncs(&store.status().await) == 0 && waited.elapsed() < std::time::Duration::from_secs(10) {
        tokio::time::sleep(glassbox_store::SYNC_WITHIN / 10).await;
    }
    assert_eq!(syncs(&store.status().await), 1, "then synced, once");
    let acked = Ingress::new(event(&minter, "mqtt/d1", "m", None), Utc::now(), "mqtt", "local");
    let committed = store.append_committed(vec![acked]).await.unwrap();
    assert!(committed.durable.waits(), "an acknowledged event's producer waits for the disk");
    committed.durable.await.unwrap();
    assert_eq!(syncs(&store.status().await), 2, "its sync is done when it resolves");
    store.close().await;

    // A process that dies right after committing loses none of them.
    let crashed = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "records_nobody_is_answered_for_skip_the_fsync_and_survive_a_crash_of_the_process",
            "--nocapture",
        ])
        .env("GLASSBOX_STORE_CRASH_DIR", crashed.path())
        .output()
        .unwrap();
    assert!(!child.status.success(), "the child was to die");
    let stdout = String::from_utf8_lossy(&child.stdout);
    let ids: Vec<glassbox_core::EventId> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("recorded: "))
        .map(|ids| ids.split(' ').map(|id| id.parse().unwrap()).collect())
        .unwrap();
    assert_eq!(ids.len(), 4);
    let store = open(&crashed);
    for id in ids {
        assert!(store.get(id).await.unwrap().is_some(), "{id} lost in the crash");
    }
}

/// The syncs of committed writes to disk the store made so far.
fn syncs(status: &glassbox_store::StoreStatus) -> u64 {
    status.sync_seconds_buckets.iter().sum()
}
