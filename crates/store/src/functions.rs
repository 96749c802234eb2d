//! Deployed functions: immutable versions (content digest, spec, who and
//! when) and a `live` alias per function — none once it is deleted, while
//! its versions stay until purged; and each function's key-value store. The runtime's view of a version is the server's business: the
//! spec is opaque JSON here.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionVersion {
    pub name: String,
    /// 1, 2, 3… per function.
    pub version: u32,
    /// `sha256:<hex>` of the component.
    pub digest: String,
    /// The deploy's spec (triggers, limits, …) as JSON text.
    pub spec: String,
    pub deployed_at: DateTime<Utc>,
    pub deployed_by: String,
    /// Whether the `live` alias points here (never, once deleted).
    pub live: bool,
}

#[async_trait]
pub trait FunctionStore: Send + Sync + 'static {
    /// Adds the next version of `name` and makes it live.
    async fn add_version(&self, name: &str, digest: &str, spec: &str, by: &str) -> Result<FunctionVersion, StoreError>;

    /// Points `live` at `version` (of a deleted function too, which makes it
    /// live again); `None` if there is no such version.
    async fn set_live(&self, name: &str, version: u32) -> Result<Option<FunctionVersion>, StoreError>;

    /// Removes the `live` alias: the function no longer runs or lists. With
    /// `purge`, its versions and key-value store go too; returns the digests
    /// no version of any function uses any more (their components can go).
    async fn delete(&self, name: &str, purge: bool) -> Result<Vec<String>, StoreError>;

    /// When the function's live alias moved, oldest first, and to which
    /// version (none: deleted); the last [`LIVE_LOG_MAX`] moves. Empty for
    /// moves made before the log existed: their versions' `deployed_at` is
    /// all there is.
    async fn live_log(&self, name: &str) -> Result<Vec<LiveMove>, StoreError>;

    /// Every version of a function, newest first (a deleted one's too).
    async fn versions(&self, name: &str) -> Result<Vec<FunctionVersion>, StoreError>;

    /// The live version of every function.
    async fn live_versions(&self) -> Result<Vec<FunctionVersion>, StoreError>;

    async fn kv_get(&self, function: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores a value unless the function's store would then hold more
    /// than `quota` allows: [`StoreError::Conflict`], naming the limit.
    async fn kv_set(&self, function: &str, key: &str, value: Vec<u8>, quota: KvQuota) -> Result<(), StoreError>;
    async fn kv_delete(&self, function: &str, key: &str) -> Result<(), StoreError>;
}

/// Moves of a function's live alias kept, the oldest forgotten first: a
/// start reads back minutes of the recorder, not a function's whole life.
pub const LIVE_LOG_MAX: u32 = 100;

/// A move of a function's live alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveMove {
    pub at: DateTime<Utc>,
    /// The version made live; none when the function was deleted.
    pub version: Option<u32>,
}

/// What one function's key-value store may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvQuota {
    /// Most keys.
    pub keys_max: u64,
    /// Most bytes of keys and values together.
    pub bytes_max: u64,
}
