//! The Glassbox event model.
//!
//! Every message, request, schedule tick, function output, command and change
//! is an [`Event`]: a CloudEvents 1.0 record with Glassbox's extensions
//! (`correlationid`, `causationid`, `hop`, `traceparent`, `device`, `feature`,
//! `datasubject`, `tenant`, `originid`). Ingress turns producer input into an
//! event with [`parse_cloudevent`] and an id from [`IdMinter`]; the recorder
//! stores it with its lifecycle [`StateRecord`]s; everything else reads them.
//! The platform's own events have typed payloads and type-name constants
//! in [`events`], shared by producers and readers.
//!
//! This crate does no I/O: it is shared by the store, the bus, the gateway,
//! the runtime and the CLI, so it must stay small and dependency-light.

pub mod access;
pub mod budget;
mod deploys;
mod device;
mod device_changes;
mod event;
pub mod events;
mod histogram;
pub mod human_duration;
mod id;
mod ingest;
mod lifecycle;
mod principal;
mod query;
pub mod secrets;
mod token_changes;
pub mod topic;
mod trace_context;

pub use budget::{
    BUDGET_DELETED, BUDGET_SET, BUDGET_THRESHOLD_REACHED, Budget, BudgetDeleted, BudgetSet, BudgetTarget,
    ThresholdReached,
};
pub use deploys::{
    Deleted, Deployed, FUNCTION_DELETED, FUNCTION_DEPLOYED, FUNCTION_PROMOTED, FUNCTION_RESTORED, FUNCTION_RETIRED,
    FUNCTION_ROLLED_BACK, LiveChanged, Retired,
};
pub use device::{DEVICE_ID_BYTES_MAX, validate_device_id};
pub use device_changes::{
    CommandQueued, CommandStep, DEVICE_COMMAND_CANCELLED, DEVICE_COMMAND_QUEUED, DEVICE_COMMAND_RESPONSE_REJECTED,
    DEVICE_DELETED, DEVICE_DISABLED, DEVICE_ENABLED, DEVICE_QUEUE_CLEARED, DEVICE_REGISTERED, DEVICE_SECRET_ROTATED,
    DEVICE_SHADOW_UPDATED, DEVICE_UPDATED, QueueCleared, REGISTRY_CHANGES, RegistryChanged, ShadowState, ShadowUpdated,
};
pub use event::{Data, Event, RecordedEvent, StateRecord, check_json, format_time};
pub use events::certificate::{
    CertificateExpiring, CertificateIssued, CertificateRefused, CertificateRevoked, DEVICE_CERTIFICATE_EXPIRING,
    DEVICE_CERTIFICATE_ISSUED, DEVICE_CERTIFICATE_REFUSED, DEVICE_CERTIFICATE_RENEW_ACCEPTED,
    DEVICE_CERTIFICATE_RENEW_REJECTED, DEVICE_CERTIFICATE_RENEWED, DEVICE_CERTIFICATE_REVOKED, RenewAccepted,
    RenewRejected, RenewRequest,
};
pub use events::command::{CommandMessage, CommandReply, CommandState, DEVICE_COMMAND_IN_TRANSIT, ReplyStatus};
pub use events::connection::{
    CLIENT_CONNECTED, CLIENT_CONNECTION_REFUSED, CLIENT_DISCONNECTED, CLIENT_SESSION_EXPIRED, CLIENT_SUBSCRIBE_DENIED,
    Connected, ConnectionPayload, ConnectionsRefused, DEVICE_CONNECTED, DEVICE_CONNECTION_REFUSED, DEVICE_DISCONNECTED,
    DEVICE_FLAPPING, DEVICE_SESSION_EXPIRED, DEVICE_SUBSCRIBE_DENIED, DisconnectReason, Disconnected, Flapping,
    SessionExpired, SubscribeDenied, TlsSession,
};
pub use events::function::{
    DeadLetter, DeadLetterCleared, DeadLetterClearedReason, Dropped, EgressDenied, EgressRequest, FUNCTION_DEAD_LETTER,
    FUNCTION_DEAD_LETTER_CLEARED, FUNCTION_DROPPED, FUNCTION_EGRESS_DENIED, FUNCTION_HANDED_BACK, FUNCTION_INVOKED,
    FUNCTION_RESUMED, HandedBack, HttpExchange, Invocation, InvocationKey, LogLine, Resumed,
};
pub use events::liveness::{Active, DEVICE_ACTIVE, DEVICE_SILENT, Silent};
pub use events::mqtt::{PUBLISH_REFUSED, PublishRefused, RETAINED_CLEARED, RetainedCleared};
pub use events::platform::{
    ANOMALY_DETECTED, ANOMALY_RESOLVED, Anomaly, AnomalySeries, AnomalySubject, CONFIG_CHANGED, ConfigChanged,
    DIAGNOSE_SILENCED, INCIDENT_ACKNOWLEDGED, INCIDENT_RESOLVED, IncidentAcknowledged, IncidentNote, IncidentResolved,
    Silenced,
};
pub use events::shadow::{
    DEVICE_SHADOW_ACCEPTED, DEVICE_SHADOW_DELTA, DEVICE_SHADOW_REJECTED, GetRejected, ShadowAccepted, ShadowDelta,
    ShadowDocument, ShadowMetadata, ShadowRejected, UpdateAccepted, UpdateRejected,
};
pub use events::trigger::{HTTP_REQUEST, HttpRequest, SCHEDULE_FIRED, ScheduleFired};
pub use events::{DEVICE_MESSAGE, Payload, PayloadError, payload_in, payload_of};
pub use histogram::Histogram;
pub use id::{EventId, IdHasher, IdMinter, IdSet, RecentIds, first_id_at, last_id_at, minted_at};
pub use ingest::{Draft, Limits, Lineage, Problem, ValidationError, check_causationid, check_text, parse_cloudevent};
pub use lifecycle::{Delivery, DropReason, InvalidTransition, State};
pub use principal::{AuthMethod, Principal, PrincipalKind};
pub use query::{EventQuery, Page, QUERY_LIMIT_DEFAULT, QUERY_LIMIT_MAX, TypePattern};
pub use token_changes::{TOKEN_CREATED, TOKEN_REVOKED, TokenCreated, TokenRevoked};
pub use trace_context::{SpanKey, TRACEPARENT_LEN, TraceParent};
