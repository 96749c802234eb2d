//! The shapes the HTTP API under `/api/v1` answers with, one type per
//! answer: the server builds them, the CLI (and later the dashboard) reads
//! them, so both sides serialise the same way and a renamed field fails to
//! compile instead of silently reading as zero. `docs/openapi.json` is
//! checked against them by `tests/openapi.rs`.
//!
//! Types that hold recorded events are generic over the event: the server
//! fills them with `glassbox_core::RecordedEvent` (which only serialises),
//! a client with what it reads events into.
//!
//! Only serde here: no web framework, no runtime.

mod audit;
mod budgets;
mod certificates;
mod commands;
mod devices;
mod diagnose;
mod error;
mod events;
mod functions;
mod health;
mod logs;
mod metrics;
mod mqtt;
pub mod openapi;
pub mod perimeter;
mod tokens;
mod trace;

pub use audit::{AuditPage, CheckpointList, CheckpointView, ConsistencyProof, InclusionProof};
pub use budgets::{BudgetList, BudgetView, BudgetWindow, SetBudget};
pub use certificates::{CertificateAuthority, CertificateList, CertificatesRevoked, IssueCertificate};
pub use commands::{CommandIssued, CommandList, CommandView};
pub use devices::{ClearedMessage, DevicePage, DeviceSecret, DeviceToggled, LiveDevice, QueueCleared, Warned};
pub use diagnose::{
    Anomalies, Cause, Change, Diagnosis, Episode, ExpiringCertificate, Incident, IncidentChain, Silence,
    SilenceRequest, Silences, Subject, TriageRequest, Triaged, WatchedSeries,
};
pub use error::{ErrorBody, ErrorDetail};
pub use events::{Accepted, Ingested, Lagged, Page};
pub use functions::{
    DeadLetters, DeployedVersion, DiscardRequest, Discarded, FunctionList, FunctionState, IdleFunctions, Invocations,
    LiveChanged, RedriveAnswer, RedriveRequest, RetireAnswer, VersionList,
};
pub use health::{Health, Ready};
pub use logs::{LogEntry, LogOrigin, Logs};
pub use metrics::{MetricInfo, MetricKind, MetricRange, Metrics, Point, SeriesRange};
pub use mqtt::{DeviceInspection, RetainedClearedAnswer, RetainedList, RetainedView, TimelineEntry};
pub use tokens::{CreateToken, TokenCreatedAnswer, TokenList, TokenView};
pub use trace::{InvocationSummary, Trace};
