//! `[otel]`: where the recorded stream is exported, and as what service.

use serde::{Deserialize, Serialize};

/// `[otel]`: OpenTelemetry export of spans and function logs over OTLP/HTTP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtelConfig {
    /// The OTLP/HTTP endpoint's base URL (`/v1/traces` and `/v1/logs` are
    /// appended), e.g. `http://127.0.0.1:4318`. Empty: no export. Default empty.
    pub endpoint: String,
    /// The `service.name` resource attribute. Default `glassbox`.
    pub service_name: String,
}

impl Default for OtelConfig {
    fn default() -> Self {
        Self { endpoint: String::new(), service_name: "glassbox".into() }
    }
}
