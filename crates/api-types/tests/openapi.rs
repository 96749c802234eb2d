//! `docs/openapi.json` against the types: a value of every answer type, as
//! the server serialises it, must conform to the schema the document gives
//! for its route, and read back as the type a client reads it into. A field
//! renamed (added, removed) in a type but not in the document, or the other
//! way round, fails here.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use glassbox_api_types::openapi::Document;
use glassbox_api_types::{
    Accepted, Anomalies, Cause, Change, Diagnosis, Episode, ErrorBody, ErrorDetail, ExpiringCertificate, Health,
    Incident, IncidentChain, Ingested, InvocationSummary, Lagged, LogEntry, LogOrigin, Logs, MetricInfo, MetricKind,
    MetricRange, Metrics, Page, Point, Ready, SeriesRange, Silence, Silences, Subject, Trace, Triaged, WatchedSeries,
};
use glassbox_api_types::{BudgetList, BudgetView, BudgetWindow};
use glassbox_api_types::{
    CertificateAuthority, CertificateList, CertificatesRevoked, ClearedMessage, CommandIssued, CommandList,
    DeployedVersion, DeviceInspection, DevicePage, DeviceSecret, DeviceToggled, FunctionList, FunctionState,
    Invocations, LiveChanged, LiveDevice, QueueCleared, TimelineEntry, TokenCreatedAnswer, TokenList, TokenView,
    VersionList, Warned,
};
use glassbox_core::access::Role;
use glassbox_core::{
    Data, Event, IdMinter, Invocation, Problem, RecordedEvent, ShadowDocument, ShadowMetadata, State, StateRecord,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const OPENAPI: &str = include_str!("../../../docs/openapi.json");

fn document() -> Document {
    Document::parse(OPENAPI).expect("docs/openapi.json is JSON")
}

/// Asserts `answer` conforms to what the document gives for `method path` with `status`.
#[track_caller]
fn conforms(method: &str, path: &str, status: u16, answer: &impl Serialize) {
    let doc = document();
    let schema = doc.answer(method, path, status).unwrap_or_else(|| panic!("no schema for {method} {path} {status}"));
    let value = serde_json::to_value(answer).expect("answers serialise");
    let problems = doc.check(schema, &value);
    assert!(problems.is_empty(), "{method} {path} {status} disagrees with docs/openapi.json:\n{}", problems.join("\n"));
}

/// Asserts `answer` reads back as `T` (what a client reads it into) and
/// serialises again to the same JSON: nothing lost or renamed on the way.
#[track_caller]
fn reads_back<T: Serialize + DeserializeOwned>(answer: &impl Serialize) {
    let sent = serde_json::to_value(answer).expect("answers serialise");
    let read: T = serde_json::from_value(sent.clone()).unwrap_or_else(|e| panic!("{e}: {sent:#}"));
    assert_eq!(serde_json::to_value(read).unwrap(), sent);
}

fn at(second: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 4, second).unwrap()
}

/// An event with every attribute set, as recorded.
fn event() -> RecordedEvent {
    let id = IdMinter::new().mint();
    let event = Event {
        id,
        source: "devices/kitchen-1".into(),
        ty: "device.message".into(),
        subject: Some("devices/kitchen-1/telemetry".into()),
        time: at(1),
        datacontenttype: Some("application/json".into()),
        dataschema: Some("https://example.com/telemetry.json".into()),
        correlationid: id.to_string(),
        causationid: Some(id.to_string()),
        hop: 1,
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        device: Some("kitchen-1".into()),
        feature: Some("climate".into()),
        datasubject: Some("kitchen".into()),
        tenant: Some("home".into()),
        originid: Some("m-1".into()),
        extensions: BTreeMap::from([("region".to_string(), json!("eu"))]),
        data: Data::json_text(r#"{"t":21.5}"#).unwrap(),
    };
    let states = vec![
        StateRecord { state: State::Received, at: at(1), target: None, detail: Some("mqtt".into()), node: None },
        StateRecord {
            state: State::Delivered,
            at: at(2),
            target: Some("thermostat".into()),
            detail: None,
            node: Some("n1".into()),
        },
    ];
    RecordedEvent { event, states }
}

fn invocation() -> InvocationSummary {
    InvocationSummary::new("01JD6Y8Q1W3N4ZV7K2M5P9R0SC".into(), &invocation_record())
}

fn invocation_record() -> Invocation {
    serde_json::from_value(json!({
        "function": "thermostat", "version": 3, "digest": "sha256:ab", "event_id": "01JD6Y8Q1W3N4ZV7K2M5P9R0ST",
        "attempt": 1, "outcome": "failed", "replay_of": "01JD6Y8Q1W3N4ZV7K2M5P9R0SA", "error": "trap",
        "start": "2026-11-25T10:04:01Z", "cold": true, "instantiate_us": 900, "wall_us": 1500, "cpu_us": 700,
        "memory_bytes": 65536, "cost": 0.0000021,
        "logs": [{ "level": "info", "message": "hot", "at_us": 10, "stream": "stdout" },
                 { "level": "error", "message": "failed", "at_us": 20, "source": "platform" }],
        "outputs": ["01JD6Y8Q1W3N4ZV7K2M5P9R0SB"],
        "egress": [{ "host": "api.example.com", "port": 443, "scheme": "https", "method": "GET", "outcome": "completed",
                     "status": 200, "error": null, "bytes_out": 10, "bytes_in": 99, "duration_us": 800,
                     "traceparent": true, "at_us": 30 }],
        "http": { "method": "POST", "path": "/hooks/t", "route": "/hooks/t", "status": 200, "response_bytes": 2 },
    }))
    .expect("an invocation record")
}

#[test]
fn refusals_are_the_error_component() {
    let problem = Problem { field: "limit".into(), message: "0 is out of range".into() };
    let detail =
        ErrorDetail { code: "invalid_parameter".into(), message: "limit: …".into(), problems: vec![problem] };
    conforms("get", "/api/v1/events", 400, &ErrorBody { error: detail.clone() });
    reads_back::<ErrorBody>(&ErrorBody { error: detail.clone() });
    conforms("get", "/api/v1/events/{id}", 404, &ErrorBody { error: ErrorDetail { problems: vec![], ..detail } });
}

#[test]
fn health_and_readiness() {
    conforms("get", "/healthz", 200, &Health::ok());
    let store = json!({ "backend": "sqlite", "writable": false, "last_error": "database or disk is full" });
    conforms("get", "/readyz", 503, &Ready::new(false, store.clone()));
    reads_back::<Ready<Value>>(&Ready::new(false, store));
    reads_back::<Health>(&Health::ok());
}

#[test]
fn events_ingested_queried_and_read() {
    let accepted = Accepted { id: "01JD6Y8Q1W3N4ZV7K2M5P9R0ST".into(), correlationid: "c-1".into(), duplicate: false };
    conforms("post", "/api/v1/events", 202, &Ingested::One(accepted.clone()));
    conforms("post", "/api/v1/events", 202, &Ingested::Batch(vec![accepted.clone()]));
    reads_back::<Accepted>(&accepted);
    reads_back::<Ingested>(&Ingested::Batch(vec![accepted]));
    conforms("get", "/api/v1/events", 200, &Page { events: vec![event()], next_cursor: Some("x".into()) });
    reads_back::<Page<Value>>(&Page { events: vec![event()], next_cursor: Some("x".into()) });
    conforms("get", "/api/v1/events", 200, &Page::<RecordedEvent> { events: vec![], next_cursor: None });
    conforms("get", "/api/v1/events/{id}", 200, &event());
    let doc = document();
    let lagged = serde_json::to_value(Lagged { skipped: 3 }).unwrap();
    reads_back::<Lagged>(&lagged);
    assert_eq!(doc.check(doc.component("Lagged").unwrap(), &lagged), Vec::<String>::new());
}

#[test]
fn a_trace() {
    let trace =
        Trace { correlationid: "c-1".into(), events: vec![event()], invocations: vec![invocation()], truncated: false };
    conforms("get", "/api/v1/trace/{id}", 200, &trace);
    reads_back::<Trace<Value>>(&trace);
}

#[test]
fn function_and_platform_log_lines() {
    let function_line = LogEntry {
        id: "01JD6Y8Q1W3N4ZV7K2M5P9R0SC/0".into(),
        at: at(1),
        level: "info".into(),
        message: "hot".into(),
        source: "function".into(),
        function: Some("thermostat".into()),
        event_id: Some("01JD6Y8Q1W3N4ZV7K2M5P9R0ST".into()),
        correlationid: Some("c-1".into()),
        device: None,
        origin: LogOrigin::Invocation { stream: None, version: 3, invocation: "01JD6Y8Q1W3N4ZV7K2M5P9R0SC".into() },
    };
    let platform_line = LogEntry {
        id: "platform/7".into(),
        source: "platform".into(),
        level: "warn".into(),
        function: None,
        event_id: None,
        correlationid: None,
        device: Some("kitchen-1".into()),
        origin: LogOrigin::Platform {
            target: "glassbox_gateway::broker".into(),
            fields: serde_json::Map::from_iter([("client".to_string(), json!("kitchen-1"))]),
        },
        ..function_line.clone()
    };
    let logs = Logs { lines: vec![function_line, platform_line], truncated: true, platform_lines_dropped: 0 };
    conforms("get", "/api/v1/logs", 200, &logs);
    reads_back::<Logs>(&logs);
}

#[test]
fn metrics_and_a_metric_range() {
    let metric = MetricInfo {
        name: "function_duration_ms".into(),
        help: "How long invocations took".into(),
        kind: MetricKind::Distribution,
        labels: vec!["function".into()],
        exported: true,
        series: 2,
    };
    conforms("get", "/api/v1/metrics", 200, &Metrics { metrics: vec![metric.clone()] });
    reads_back::<Metrics>(&Metrics { metrics: vec![metric] });
    let point = Point { at: at(0), value: 1.5, count: 2, sum: 3.0, min: 1.0, max: 2.0 };
    let series =
        SeriesRange { labels: BTreeMap::from([("function".to_string(), "fan".to_string())]), points: vec![point] };
    let range = MetricRange {
        name: "function_duration_ms".into(),
        help: "How long invocations took".into(),
        kind: MetricKind::Distribution,
        since: at(0),
        until: at(30),
        step_seconds: 10,
        by: vec!["function".into()],
        series: vec![series],
    };
    conforms("get", "/api/v1/metrics/{name}", 200, &range);
    reads_back::<MetricRange>(&range);
}

fn episode(end: Option<chrono::DateTime<Utc>>, detail: Option<String>) -> Episode {
    let series = WatchedSeries {
        key: "function_duration_ms{function=\"fan\"}".into(),
        what: "latency".into(),
        unit: "ms".into(),
        subject: Subject::Function("fan".into()),
    };
    let (start, peak, peak_score, value, expected) = (at(0), at(5), 7.5, 120.0, Some(12.0));
    Episode { id: 4, series, signal: "spike".into(), start, peak, peak_score, end, value, expected, detail }
}

#[test]
fn a_diagnosis_and_anomalies() {
    let change = Change {
        at: at(0),
        kind: "deploy".into(),
        subject: Subject::Function("fan".into()),
        summary: "deploy of fan v2 by admin".into(),
        event_id: Some("01JD6Y8Q1W3N4ZV7K2M5P9R0ST".into()),
    };
    let cause =
        Cause { change, confidence: 0.8, verdict: "likely".into(), evidence: vec!["latency rose after".into()] };
    let incident = Incident {
        id: 4,
        start: at(0),
        end: None,
        subjects: vec![Subject::Function("fan".into()), Subject::Platform],
        episodes: vec![episode(None, None), episode(Some(at(9)), Some("silent for 16s".into()))],
        causes: vec![cause],
        summary: "fan is slow".into(),
        acknowledged: Some(Triaged { at: at(5), by: "token:oncall".into(), note: Some("rolling back".into()) }),
        resolved: None,
        silenced: vec![Silence { subject: "function:fan".into(), until: at(50), by: "admin".into(), note: None }],
        chains: vec![IncidentChain {
            correlation: "01JD6Y8Q1W3N4ZV7K2M5P9R0SV".into(),
            function: "fan".into(),
            invocations: 160,
        }],
    };
    let silences = Silences { silences: incident.silenced.clone() };
    conforms("get", "/api/v1/diagnose/silences", 200, &silences);
    conforms("post", "/api/v1/diagnose/incidents/{id}/ack", 200, &incident);
    let diagnosis = Diagnosis {
        now: at(10),
        since: at(0),
        incidents: vec![incident],
        series_watched: 12,
        series_learning: 1,
        unknowns: vec!["no metrics before start".into()],
        summary: "1 incident".into(),
        certificates_expiring: vec![ExpiringCertificate {
            device: "pump-1".into(),
            serial: "1f".into(),
            not_after: at(11),
        }],
    };
    conforms("get", "/api/v1/diagnose", 200, &diagnosis);
    reads_back::<Diagnosis>(&diagnosis);
    reads_back::<Anomalies>(&Anomalies { anomalies: vec![episode(Some(at(9)), Some("silent".into()))] });
    conforms("get", "/api/v1/anomalies", 200, &Anomalies { anomalies: vec![episode(None, None)] });
}

/// A device record as the registry serialises it (the server's `D`).
fn device() -> Value {
    json!({
        "id": "pump-1", "disabled": false, "created_at": at(1), "updated_at": at(2),
        "tags": {"site": "north"}, "group": "pumps", "owner": null, "attributes": {"fw": "1.2"},
        "cadence_seconds": 60, "certificate_only": false,
    })
}

/// A certificate record as the store serialises it (the server's `C`).
fn certificate() -> Value {
    json!({
        "serial": "1f2e", "device": "pump-1", "fingerprint": "ab12", "not_before": at(1), "not_after": at(2),
        "issued_at": at(1), "issued_by": "admin", "pem": "-----BEGIN CERTIFICATE-----", "renews": null,
        "renewed_by": null, "grace_until": null, "first_used_at": null, "revoked_at": at(3),
        "revoked_reason": "revoked by admin", "expiry_warned_days": null,
    })
}

#[test]
fn the_ca_and_device_certificates_answer() {
    let ca = CertificateAuthority {
        certificate: "-----BEGIN CERTIFICATE-----".into(),
        subject: Some("Glassbox device CA".into()),
        serial: "11".into(),
        fingerprint: "ab".into(),
        not_after: at(4),
        imported: false,
    };
    conforms("get", "/api/v1/ca", 200, &ca);
    reads_back::<CertificateAuthority>(&ca);
    let issued = Warned::new(certificate(), None);
    conforms("post", "/api/v1/devices/{id}/certificates", 201, &issued);
    let list = CertificateList { device: "pump-1".into(), certificates: vec![certificate()] };
    conforms("get", "/api/v1/devices/{id}/certificates", 200, &list);
    reads_back::<CertificateList<Value>>(&list);
    let revoked = Warned::new(
        CertificatesRevoked { device: "pump-1".into(), revoked: vec![certificate()], disconnected: true },
        Some("not recorded".into()),
    );
    conforms("delete", "/api/v1/devices/{id}/certificates", 200, &revoked);
    conforms("delete", "/api/v1/devices/{id}/certificates/{serial}", 200, &revoked);
    reads_back::<Warned<CertificatesRevoked<Value>>>(&revoked);
}

#[test]
fn the_device_registry_answers() {
    let live = LiveDevice { device: device(), connected: true, silent: false };
    conforms("get", "/api/v1/devices/{id}", 200, &live);
    let secret = DeviceSecret { device: device(), secret: "s3cret".into(), disconnected: Some(true) };
    let created = Warned::new(DeviceSecret { disconnected: None, ..secret.clone() }, None);
    conforms("post", "/api/v1/devices", 201, &created);
    reads_back::<Warned<DeviceSecret<Value>>>(&created);
    let rotated = Warned::new(secret, Some("not recorded: store unavailable".into()));
    conforms("post", "/api/v1/devices/{id}/secret", 200, &rotated);
    reads_back::<Warned<DeviceSecret<Value>>>(&rotated);
    let page = DevicePage { devices: vec![live.clone()], next_after: Some("pump-1".into()) };
    conforms("get", "/api/v1/devices", 200, &page);
    conforms("get", "/api/v1/devices", 200, &DevicePage::<Value> { devices: vec![], next_after: None });
    reads_back::<DevicePage<Value>>(&page);
    let updated = Warned::new(live, Some("not recorded".into()));
    conforms("patch", "/api/v1/devices/{id}", 200, &updated);
    reads_back::<Warned<LiveDevice<Value>>>(&updated);
    let disabled = Warned::new(DeviceToggled { device: device(), disconnected: Some(false) }, None);
    conforms("post", "/api/v1/devices/{id}/disable", 200, &disabled);
    conforms("post", "/api/v1/devices/{id}/enable", 200, &disabled);
    reads_back::<Warned<DeviceToggled<Value>>>(&disabled);
    let message = ClearedMessage { event: IdMinter::new().mint().to_string(), topic: "cmd/pump-1".into(), bytes: 12 };
    let cleared = QueueCleared { device: "pump-1".into(), cleared: 3, session: true, messages: vec![message] };
    let cleared = Warned::new(cleared, None);
    conforms("delete", "/api/v1/devices/{id}/queue", 200, &cleared);
    reads_back::<Warned<QueueCleared>>(&cleared);
}

#[test]
fn named_tokens_created_listed_and_revoked() {
    let created = TokenCreatedAnswer {
        name: "ci".into(),
        role: Role::Deployer,
        token: format!("gbx_ci_{}", "0".repeat(64)),
        expires: Some(at(9)),
    };
    conforms("post", "/api/v1/tokens", 201, &Warned::new(created.clone(), None));
    reads_back::<Warned<TokenCreatedAnswer>>(&Warned::new(created, None));
    let never = TokenCreatedAnswer { name: "grafana".into(), role: Role::Viewer, token: "t".into(), expires: None };
    conforms("post", "/api/v1/tokens", 201, &Warned::new(never, Some("not recorded".into())));
    let view = TokenView {
        name: "ci".into(),
        role: Role::DeviceProvisioner,
        created: at(1),
        created_by: "admin".into(),
        expires: None,
        last_used: Some(at(2)),
        revoked: Some(at(3)),
        revoked_by: Some("token:ops".into()),
    };
    let list = TokenList { tokens: vec![view.clone()] };
    conforms("get", "/api/v1/tokens", 200, &list);
    reads_back::<TokenList>(&list);
    conforms("delete", "/api/v1/tokens/{name}", 200, &Warned::new(view.clone(), None));
    reads_back::<Warned<TokenView>>(&Warned::new(view, None));
}

#[test]
fn budgets_set_listed_and_deleted() {
    use glassbox_core::budget::{Action, Limit, Measure, Per};
    let budget = glassbox_core::Budget {
        target: "feature:billing".parse().unwrap(),
        limit: Limit { measure: Measure::Cost, amount: 5.0 },
        per: Per::ThirtyDays,
        action: Action::Stop,
        at: vec![50, 80, 100],
    };
    let window = BudgetWindow {
        start: at(0),
        end: at(59),
        admitted: 12,
        ran: 11,
        cpu_ms: 3.5,
        cost: 0.25,
        used: 0.25,
        percent: 5.0,
        refused: 0,
        exhausted_at: Some(at(30)),
    };
    let view = BudgetView { budget, set_at: at(1), set_by: "token:ops".into(), window };
    let list = BudgetList { budgets: vec![view.clone()] };
    conforms("get", "/api/v1/budgets", 200, &list);
    reads_back::<BudgetList>(&list);
    conforms("get", "/api/v1/budgets/{target}", 200, &view);
    let never = BudgetView { window: BudgetWindow { exhausted_at: None, ..view.window.clone() }, ..view.clone() };
    conforms("put", "/api/v1/budgets/{target}", 200, &Warned::new(never, Some("not recorded".into())));
    conforms("delete", "/api/v1/budgets/{target}", 200, &Warned::new(view.clone(), None));
    reads_back::<Warned<BudgetView>>(&Warned::new(view, None));
}

#[test]
fn functions_retired_restored_and_idle() {
    use glassbox_api_types::{IdleFunctions, RetireAnswer};
    let principal = glassbox_core::Principal::admin(glassbox_core::AuthMethod::BearerToken, None);
    let retired = glassbox_core::Retired {
        function: "fan".into(),
        version: 2,
        triggers: vec!["mqtt:fans/#".into()],
        instances_freed: Some(3),
        by: principal.label(),
        principal,
    };
    let answer = RetireAnswer { change: retired.clone(), warning: None };
    conforms("post", "/api/v1/functions/{name}/retire", 200, &answer);
    reads_back::<RetireAnswer<glassbox_core::Retired>>(&answer);
    let restored = RetireAnswer { change: glassbox_core::Retired { instances_freed: None, ..retired }, warning: None };
    conforms("post", "/api/v1/functions/{name}/restore", 200, &restored);
    let idle = json!({"name": "fan", "version": 2, "state": "retired", "last_invocation": null, "invocations": 0,
        "counted_all": true, "triggers": ["http:GET /fan"],
        "holds": {"component_bytes": 1024, "warm_instances": 0, "routes": ["http:GET /fan"], "kv": "kept"},
        "idle": true, "why": "never invoked since its deploy at 2026-11-25T10:04:03Z"});
    let list = IdleFunctions { since: at(0), functions: vec![idle] };
    conforms("get", "/api/v1/idle-functions", 200, &list);
    reads_back::<IdleFunctions<Value>>(&list);
    let listed = FunctionList { functions: vec![DeployedVersion { retired: true, ..version(2, true) }] };
    conforms("get", "/api/v1/functions", 200, &listed);
    reads_back::<FunctionList<Value>>(&listed);
}

/// A version as the server answers it: its spec as stored.
fn version(version: u32, live: bool) -> DeployedVersion<Value> {
    let spec = json!({"triggers": ["event:order.created"], "timeout_ms": 5000, "memory_bytes": 67108864,
        "concurrency": 8, "hop_limit": 16, "feature": null, "retries": 2, "max_age_ms": 3600000,
        "rate_per_second": null, "reuse": 1000, "egress": ["api.example.com"]});
    DeployedVersion {
        name: "fan".into(),
        version,
        digest: "sha256:ab".into(),
        spec,
        deployed_at: at(3),
        deployed_by: "admin".into(),
        live,
        retired: false,
    }
}

#[test]
fn function_versions_changes_and_invocations() {
    conforms("post", "/api/v1/functions/{name}", 201, &version(2, true));
    reads_back::<DeployedVersion<Value>>(&version(2, true));
    let list = FunctionList { functions: vec![version(2, true)] };
    conforms("get", "/api/v1/functions", 200, &list);
    reads_back::<FunctionList<Value>>(&list);
    let versions = VersionList { versions: vec![version(2, true), version(1, false)] };
    conforms("get", "/api/v1/functions/{name}/versions", 200, &versions);
    reads_back::<VersionList<Value>>(&versions);
    let in_flight = json!({"queued": 1, "retrying": 0, "running": 2, "waiting": 0});
    let live = FunctionState {
        name: "fan".into(),
        state: "live".into(),
        live: Some(version(2, true)),
        live_since: Some(at(4)),
        versions: 2,
        latest: 2,
        in_flight: Some(in_flight),
    };
    conforms("get", "/api/v1/functions/{name}", 200, &live);
    reads_back::<FunctionState<Value, Value>>(&live);
    let deleted = FunctionState { state: "deleted".into(), live: None, live_since: None, in_flight: None, ..live };
    conforms("get", "/api/v1/functions/{name}", 200, &deleted);
    let change = LiveChanged { function: "fan".into(), changed: true, from: Some(2), live: version(1, true) };
    conforms("post", "/api/v1/functions/{name}/rollback", 200, &change);
    conforms("post", "/api/v1/functions/{name}/promote", 200, &LiveChanged { from: None, ..change.clone() });
    reads_back::<LiveChanged<Value>>(&change);
    let mut record = serde_json::to_value(invocation_record()).unwrap();
    record["id"] = json!("01JD6Y8Q1W3N4ZV7K2M5P9R0SC");
    let invocations = Invocations { invocations: vec![record], truncated: true };
    conforms("get", "/api/v1/functions/{name}/invocations", 200, &invocations);
    reads_back::<Invocations<Value>>(&invocations);
}

/// A command as the control service answers it.
fn command() -> Value {
    json!({
        "id": "01JD6Y8Q1W3N4ZV7K2M5P9R0SD", "device": "pump-1", "name": "reboot", "payload": {"delay": 5},
        "issuer": "admin", "idempotency_key": "k-1", "state": "succeeded", "created_at": at(1), "expires_at": at(9),
        "updated_at": at(2), "correlationid": "01JD6Y8Q1W3N4ZV7K2M5P9R0SD", "response": {"ok": true}, "reason": null,
    })
}

#[test]
fn commands_issued_and_listed() {
    let issued = CommandIssued { command: command(), duplicate: true };
    conforms("post", "/api/v1/devices/{id}/commands", 201, &CommandIssued { duplicate: false, ..issued.clone() });
    conforms("post", "/api/v1/devices/{id}/commands", 200, &issued);
    reads_back::<CommandIssued<Value>>(&issued);
    let list = CommandList { commands: vec![command()] };
    conforms("get", "/api/v1/devices/{id}/commands", 200, &list);
    reads_back::<CommandList<Value>>(&list);
    conforms("get", "/api/v1/commands/{id}", 200, &command());
}

#[test]
fn a_device_inspected_and_its_session() {
    let session = json!({
        "client_id": "pump-1", "device": "pump-1", "connected": true, "since": at(1), "last_disconnect": null,
        "tls": true, "tls_version": "TLS 1.3", "tls_cipher": "TLS13_AES_256_GCM_SHA384", "expiry_seconds": 3600,
        "subscriptions": [{"filter": "cmd/#", "qos": 1}], "queued": 0, "queued_bytes": 0,
        "queue_messages_max": 1000, "queue_bytes_max": 8388608, "queue_policy": "drop_oldest", "inflight": 0,
        "dropped": 0,
    });
    conforms("get", "/api/v1/mqtt/sessions/{client_id}", 200, &session);
    let liveness = json!({
        "connected": true, "since": at(1), "last_message": at(2), "cadence_seconds": 60.0,
        "cadence_source": "declared", "silent": false, "silent_since": null, "silent_reason": null,
    });
    let mode = |m: &str| json!({"mode": m}).as_object().cloned().unwrap_or_default();
    let shadow = ShadowDocument {
        device: "pump-1".into(),
        version: 2,
        desired: mode("eco"),
        reported: Default::default(),
        delta: mode("eco"),
        metadata: ShadowMetadata {
            desired: json!({"mode": {"timestamp": 1764065041}}).as_object().cloned().unwrap_or_default(),
            reported: Default::default(),
        },
        updated_at: Some(at(3)),
    };
    conforms("get", "/api/v1/devices/{id}/shadow", 200, &shadow);
    conforms("post", "/api/v1/devices/{id}/shadow", 200, &shadow);
    reads_back::<ShadowDocument>(&shadow);
    let connected = TimelineEntry {
        id: "01JD6Y8Q1W3N4ZV7K2M5P9R0SE".into(),
        ty: "device.connected".into(),
        time: at(1),
        data: json!({"peer": "127.0.0.1:5000", "protocol": 5}),
    };
    let inspection = DeviceInspection {
        device: device(),
        session: Some(session),
        liveness: Some(liveness),
        open_commands: 1,
        shadow: Some(shadow),
        last_message: Some(serde_json::to_value(event()).unwrap()),
        last_refused_publish: None,
        timeline: vec![connected],
    };
    conforms("get", "/api/v1/devices/{id}/inspect", 200, &inspection);
    reads_back::<DeviceInspection<Value, Value, Value, Value, Value>>(&inspection);
    let unheard = DeviceInspection { session: None, liveness: None, shadow: None, last_message: None, ..inspection };
    conforms("get", "/api/v1/devices/{id}/inspect", 200, &unheard);
}

#[test]
fn the_perimeter() {
    use glassbox_api_types::perimeter::*;
    let perimeter = Perimeter {
        listeners: vec![Listener {
            name: "mqtt".into(),
            address: "0.0.0.0:1883".into(),
            protocol: "mqtt".into(),
            tls: false,
            serves: vec!["devices and backend clients".into()],
            authentication: vec!["device id + secret".into()],
            note: Note::warn("device secrets cross the network in plaintext"),
        }],
        routes: vec![PublicRoute {
            function: "button".into(),
            version: 2,
            method: "POST".into(),
            path: "/button".into(),
            listener: "http".into(),
            rate_limit_per_second: Some(1000),
            invocations_per_second: None,
            note: Note::ok("rate limited"),
        }],
        tokens: vec![TokenExposure {
            name: "ci".into(),
            role: "deployer".into(),
            created_by: Some("admin".into()),
            last_used: None,
            expires: Some(at(9)),
            note: Note::warn("never used"),
        }],
        devices: DeviceCredentials {
            total: 3,
            secret_only: 1,
            secret_and_certificate: 1,
            certificate_only: 1,
            disabled: 0,
            expiring: vec![CertificateExpiry {
                device: "d1".into(),
                serial: "0a1b".into(),
                not_after: at(30),
                note: Note::high("expires in 1 day"),
            }],
            note: Note::warn("1 device logs in with a shared secret only"),
        },
        egress: vec![FunctionEgress { function: "button".into(), version: 2, rules: vec![], note: Note::ok("denied") }],
        settings: vec![RiskySetting {
            key: "metrics.public".into(),
            value: "true".into(),
            note: Note::warn("/metrics answers without a token"),
        }],
    };
    conforms("get", "/api/v1/perimeter", 200, &perimeter);
    reads_back::<Perimeter>(&perimeter);
}

/// The check itself: the same answer with one field renamed fails it.
#[test]
fn a_field_renamed_on_one_side_is_caught() {
    let doc = document();
    let schema = doc.answer("get", "/api/v1/events", 200).unwrap();
    let mut page = serde_json::to_value(Page { events: vec![event()], next_cursor: None::<String> }).unwrap();
    let cursor = page.as_object_mut().unwrap().remove("next_cursor").unwrap();
    page["next_page"] = cursor;
    let problems = doc.check(schema, &page);
    assert!(problems.iter().any(|p| p.contains("next_cursor")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("next_page")), "{problems:?}");
}

#[test]
fn audit_entries_checkpoints_and_proofs() {
    use glassbox_api_types::{AuditPage, CheckpointList, CheckpointView, ConsistencyProof, InclusionProof};
    use glassbox_audit::{Auth, Draft, Hash};
    use glassbox_core::{AuthMethod, PrincipalKind};

    let draft = Draft {
        time: at(1),
        actor: "ci".into(),
        actor_kind: PrincipalKind::Token,
        auth: Auth { method: AuthMethod::BearerToken, key_id: Some("ci".into()) },
        source: Some("10.0.0.7:51234".into()),
        node: "node-1".into(),
        action: "function.deploy".into(),
        target: "function:fan".into(),
        before: None,
        after: Some("sha256:ab".into()),
        event: "01JABC".into(),
        detail: json!({"function": "fan", "version": 2}),
        salt: "00112233445566778899aabbccddeeff".into(),
    };
    let entry = draft.seal(1, Hash::default());
    let mut erased = entry.clone();
    erased.erase();
    let page = AuditPage { entries: vec![entry.clone(), erased], next: Some(2) };
    conforms("get", "/api/v1/audit", 200, &page);
    reads_back::<AuditPage>(&page);
    let checkpoint = CheckpointView {
        origin: "glassbox/node-1/audit".into(),
        size: 1,
        root: entry.hash,
        at: at(2),
        note: "glassbox/node-1/audit\n1\nAAAA\n\n— glassbox/node-1/audit AAAA\n".into(),
    };
    conforms("get", "/api/v1/audit/checkpoint", 200, &checkpoint);
    let key = "glassbox/node-1/audit+01020304+AQ==".to_string();
    let list = CheckpointList { checkpoints: vec![checkpoint.clone()], key: key.clone(), next: None };
    conforms("get", "/api/v1/audit/checkpoints", 200, &list);
    reads_back::<CheckpointList>(&list);
    let proof = InclusionProof {
        entry,
        index: 0,
        checkpoint: checkpoint.clone(),
        proof: vec![Hash([3; 32])],
        key: key.clone(),
    };
    conforms("get", "/api/v1/audit/{seq}/proof", 200, &proof);
    reads_back::<InclusionProof>(&proof);
    let consistency = ConsistencyProof { from: 1, from_root: Hash([4; 32]), to: checkpoint, proof: vec![], key };
    conforms("get", "/api/v1/audit/consistency", 200, &consistency);
    reads_back::<ConsistencyProof>(&consistency);
}
