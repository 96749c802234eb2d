//! `/healthz` and `/readyz`.

use serde::{Deserialize, Serialize};

/// `GET /healthz`: the process answers (`status` is `ok`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

impl Health {
    pub fn ok() -> Self {
        Self { status: "ok".into() }
    }
}

/// `GET /readyz`: `ready` (200) or `unavailable` (503), with how the store
/// is doing (`S`: the store's status report; `last_error` says why it
/// refuses writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ready<S> {
    pub status: String,
    pub store: S,
}

impl<S> Ready<S> {
    /// The answer for a store that is (or is not) `writable`.
    pub fn new(writable: bool, store: S) -> Self {
        let status = if writable { "ready" } else { "unavailable" };
        Self { status: status.into(), store }
    }
}
