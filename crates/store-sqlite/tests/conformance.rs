//! The ports' conformance suite (`glassbox-testkit`) against the embedded
//! SQLite stores, each case on a fresh temporary data directory.

use std::sync::Arc;

use async_trait::async_trait;
use glassbox_store::{
    BudgetStore, CertificateStore, CommandStore, DeviceRegistry, EventStore, FunctionStore, MetricStore, Retention,
    SessionStore, SettingStore, TokenStore,
};
use glassbox_store_sqlite::{RecorderSettings, SqliteMetrics, SqliteSessions, SqliteStore};
use glassbox_testkit::{Audited, Factory, Fresh};
use tempfile::TempDir;

/// Opens each store in a new temporary directory, kept as long as the store.
struct Sqlite;

impl Sqlite {
    fn recorder() -> (Arc<SqliteStore>, TempDir) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let settings = RecorderSettings { node: glassbox_testkit::NODE.into(), ..RecorderSettings::default() };
        (Arc::new(SqliteStore::open(dir.path(), settings).expect("the recorder opens")), dir)
    }
}

#[async_trait]
impl Factory for Sqlite {
    async fn events(&self) -> Fresh<dyn EventStore> {
        let (store, dir) = Self::recorder();
        Fresh::new(store, dir)
    }

    async fn devices(&self) -> Fresh<dyn DeviceRegistry> {
        let (store, dir) = Self::recorder();
        Fresh::new(store, dir)
    }

    async fn commands(&self) -> Fresh<dyn CommandStore> {
        let (store, dir) = Self::recorder();
        Fresh::new(store, dir)
    }

    async fn certificates(&self) -> Fresh<dyn CertificateStore> {
        let (store, dir) = Self::recorder();
        Fresh::new(store, dir)
    }

    async fn functions(&self) -> Fresh<dyn FunctionStore> {
        let (store, dir) = Self::recorder();
        Fresh::new(store, dir)
    }

    async fn sessions(&self) -> Fresh<dyn SessionStore> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteSessions::open(dir.path()).expect("the session store opens");
        Fresh::new(Arc::new(store), dir)
    }

    async fn metrics(&self) -> Fresh<dyn MetricStore> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteMetrics::open(dir.path(), Retention::default()).expect("the metric store opens");
        Fresh::new(Arc::new(store), dir)
    }

    async fn settings(&self) -> Fresh<dyn SettingStore> {
        let (store, dir) = Self::recorder();
        Fresh::new(store, dir)
    }

    async fn tokens(&self) -> Fresh<dyn TokenStore> {
        let (store, dir) = Self::recorder();
        Fresh::new(store, dir)
    }

    async fn audit(&self) -> Fresh<Audited> {
        let (store, dir) = Self::recorder();
        Fresh::new(Arc::new(Audited { events: store.clone(), audit: store }), dir)
    }

    async fn budgets(&self) -> Fresh<dyn BudgetStore> {
        let (store, dir) = Self::recorder();
        Fresh::new(store, dir)
    }
}

glassbox_testkit::conformance!(Sqlite);
