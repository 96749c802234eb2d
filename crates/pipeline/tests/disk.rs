//! Who waits for the disk (decision 0031): an ingest someone is answered
//! for resolves only once its events are on disk, while they are published
//! to the bus once committed; what nobody is answered for does not wait.
//! The store is the embedded one, wrapped so that the test holds its syncs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use glassbox_bus::{Bus, BusItem, LocalBus};
use glassbox_core::{Draft, EventId, EventQuery, Lineage, Page, RecordedEvent, SpanKey};
use glassbox_pipeline::Pipeline;
use glassbox_store::{Chain, Committed, Durable, EventStore, Ingress, StoreError, StoreStatus, Transition};
use glassbox_store_sqlite::{RecorderSettings, SqliteStore};
use tokio::sync::watch;

/// The embedded store, with a disk the test opens: every wait for the
/// disk also waits for `open`.
struct HeldDisk {
    store: Arc<SqliteStore>,
    open: watch::Sender<bool>,
}

#[async_trait]
impl EventStore for HeldDisk {
    async fn append_committed(&self, batch: Vec<Ingress>) -> Result<Committed, StoreError> {
        let Committed { appended, durable } = self.store.append_committed(batch).await?;
        if !durable.waits() {
            return Ok(Committed { appended, durable });
        }
        let mut open = self.open.subscribe();
        let held = async move {
            let _ = open.wait_for(|open| *open).await;
            durable.await
        };
        Ok(Committed { appended, durable: Durable::new(held) })
    }

    async fn record(&self, transitions: Vec<Transition>) -> Result<(), StoreError> {
        self.store.record(transitions).await
    }

    async fn get(&self, id: EventId) -> Result<Option<RecordedEvent>, StoreError> {
        self.store.get(id).await
    }

    async fn lineage(&self, id: &str) -> Result<Option<Lineage>, StoreError> {
        self.store.lineage(id).await
    }

    async fn query(&self, query: &EventQuery) -> Result<Page, StoreError> {
        self.store.query(query).await
    }

    async fn get_many(&self, ids: Vec<EventId>) -> Result<Vec<RecordedEvent>, StoreError> {
        self.store.get_many(ids).await
    }

    async fn read_after(&self, after: EventId, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.store.read_after(after, limit).await
    }

    async fn ids_after(&self, after: EventId, limit: usize) -> Result<Vec<EventId>, StoreError> {
        self.store.ids_after(after, limit).await
    }

    async fn chain(&self, correlationid: &str, limit: usize) -> Result<Chain, StoreError> {
        self.store.chain(correlationid, limit).await
    }

    async fn status(&self) -> StoreStatus {
        self.store.status().await
    }

    async fn close(&self) {
        self.store.close().await
    }
}

fn draft(ty: &str) -> Draft {
    Draft { source: "tests/disk".into(), ty: ty.into(), ..Draft::default() }
}

/// Whether `wait` is still waiting after a while.
async fn still_waiting<F: Future>(wait: &mut std::pin::Pin<Box<F>>) -> bool {
    tokio::time::timeout(Duration::from_millis(200), wait.as_mut()).await.is_err()
}

#[tokio::test]
async fn answered_ingest_waits_for_the_disk_and_is_published_before() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path(), RecorderSettings::default()).unwrap());
    let held = Arc::new(HeldDisk { store: store.clone(), open: watch::Sender::new(false) });
    let bus = Arc::new(LocalBus::default());
    let mut published = bus.subscribe();
    let pipeline = Pipeline::new(held.clone(), store.clone(), bus, "local".into(), SpanKey::random());

    // What nobody outside is answered for does not wait.
    let timeout = Duration::from_secs(5);
    tokio::time::timeout(timeout, pipeline.ingest_unanswered(vec![draft("qos0")], "mqtt")).await.unwrap().unwrap();
    tokio::time::timeout(timeout, pipeline.ingest_platform(vec![draft("own")], "platform")).await.unwrap().unwrap();

    // A producer's event, and a change made through the API, wait.
    let mut http = Box::pin(pipeline.ingest(vec![draft("http")], "http"));
    let mut api = Box::pin(pipeline.ingest_platform(vec![draft("api")], "api"));
    assert!(still_waiting(&mut http).await, "an HTTP 2xx waits for the disk");
    assert!(still_waiting(&mut api).await, "a change made through the API waits for the disk");

    // Committed is handed on meanwhile: the gateway routes it, the bus has it.
    let committed =
        tokio::time::timeout(timeout, pipeline.ingest_committed(vec![draft("mqtt")], "mqtt")).await.unwrap().unwrap();
    assert!(committed.durable.waits());
    let mut seen = Vec::new();
    while seen.len() < 5 {
        for item in tokio::time::timeout(timeout, published.next()).await.unwrap().expect("the bus is open") {
            match item {
                BusItem::Event(event) => seen.push(event.event.ty.clone()),
                other => panic!("expected an event on the bus, got {other:?}"),
            }
        }
    }
    seen.sort();
    assert_eq!(seen, ["api", "http", "mqtt", "own", "qos0"], "published once committed");

    held.open.send_replace(true);
    tokio::time::timeout(timeout, http).await.unwrap().unwrap();
    tokio::time::timeout(timeout, api).await.unwrap().unwrap();
    committed.durable.await.unwrap();
    store.close().await;
}
