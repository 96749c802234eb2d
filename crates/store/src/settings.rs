//! Small named values the platform keeps about itself across restarts:
//! durable consumers' cursors, the admin token's hash, the span key, the last
//! start's configuration. Not events (nothing happened) and not a general
//! key-value store for users (functions have their own, with quotas): the
//! keys are the platform's, a handful, each value a few kilobytes at most.

use async_trait::async_trait;

use crate::StoreError;

/// The platform's own settings; last write wins. A clustered backend keeps
/// them where every node reads the same value (a table, a KV bucket).
#[async_trait]
pub trait SettingStore: Send + Sync + 'static {
    /// The value last put under `key`; `None` if none was.
    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Replaces the value under `key`; resolves once it is durable.
    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;
}
