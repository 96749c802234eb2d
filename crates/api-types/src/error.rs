//! The body of every refusal: `{"error": {"code", "message", "problems"}}`.

use glassbox_core::Problem;
use serde::{Deserialize, Serialize};

/// What the API answers with any 4xx or 5xx.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// One refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable and machine-readable: `invalid_event`, `not_found`, …
    pub code: String,
    /// For people: what was wrong and what to do; a 5xx's holds an error id.
    pub message: String,
    /// Each thing wrong when several are (attributes, parameters, headers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}
