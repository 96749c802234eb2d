//! `glassbox devices inspect ID`: one device's state in words — registry
//! status, connection (and whether it uses TLS), session queue,
//! subscriptions, last message, last refused publish and its recent
//! connection timeline.

use chrono::{DateTime, Utc};
use glassbox_api_types::{DeviceInspection, TimelineEntry};
use glassbox_control::LivenessView;
use glassbox_core::{
    Connected, ConnectionsRefused, DEVICE_CONNECTED, DEVICE_CONNECTION_REFUSED, DEVICE_DISCONNECTED, DEVICE_FLAPPING,
    DEVICE_SESSION_EXPIRED, DEVICE_SILENT, DEVICE_SUBSCRIBE_DENIED, DisconnectReason, Disconnected, Flapping,
    PublishRefused, SessionExpired, ShadowDocument, Silent, SubscribeDenied, payload_in, payload_of,
};
use glassbox_gateway::broker::SessionInfo;
use glassbox_store::Device;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::render;

/// What a recorded disconnect reason means, for people ("" if unknown).
fn reason_in_words(reason: &str) -> &'static str {
    reason.parse::<DisconnectReason>().map_or("", DisconnectReason::in_words)
}

fn ago(value: &Value) -> String {
    ago_at(render::time(value))
}

fn ago_at(at: Option<DateTime<Utc>>) -> String {
    let Some(at) = at else { return "-".into() };
    let ms = render::millis_between(at, Utc::now()).max(0.0);
    format!("{} ({} ago)", render::clock(at), render::duration_ms(ms))
}

fn bytes(n: u64) -> String {
    match n {
        n if n < 1024 => format!("{n} B"),
        n if n < 1024 * 1024 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0)),
    }
}

/// The inspection as the CLI reads it: typed as the server writes it,
/// but the events, which are read as CloudEvents JSON.
pub type Inspection = DeviceInspection<Device, SessionInfo, LivenessView, ShadowDocument, Value>;

pub fn print(view: &Inspection) {
    let device = &view.device;
    let id = &device.id;
    let status = if device.disabled { "DISABLED (connections are refused)" } else { "enabled" };
    println!("device {id}: {status}, registered {}", render::clock(device.created_at));
    print_meta(device);
    print_session(view.session.as_ref());
    print_liveness(view.liveness.as_ref());
    match view.open_commands {
        0 => println!("commands: none pending"),
        n => println!("commands: {n} pending (glassbox control commands --device {id})"),
    }
    match &view.shadow {
        Some(shadow) if !shadow.delta.is_empty() => println!(
            "shadow: version {}; the device has yet to report {}",
            shadow.version,
            serde_json::to_string(&shadow.delta).unwrap_or_default()
        ),
        Some(shadow) => println!("shadow: version {}; reported state matches desired", shadow.version),
        None => {}
    }
    match &view.last_message {
        Some(m) => {
            println!(
                "last message: {} on {} (event {})",
                ago(&m["time"]),
                render::text(m, "subject"),
                render::text(m, "id")
            );
        }
        None => println!("last message: none recorded"),
    }
    if let Some(refused) = &view.last_refused_publish {
        print_last_refused(refused);
    }
    let timeline = &view.timeline;
    if timeline.is_empty() {
        println!("connection timeline: nothing recorded yet");
        return;
    }
    println!("connection timeline, newest first:");
    let rows: Vec<Vec<String>> = timeline
        .iter()
        .map(|e| {
            let what = e.ty.trim_start_matches("device.").to_string();
            vec![render::clock(e.time), what, timeline_detail(e)]
        })
        .collect();
    render::table(&["TIME", "WHAT", "DETAIL"], &rows);
}

/// The newest publish the gateway refused (ACL, size, rate), apart from
/// the messages it accepted.
fn print_last_refused(event: &Value) {
    let Ok(refused) = payload_in::<PublishRefused>(event) else { return };
    println!(
        "last refused publish: {} on {} — {}: {} (event {})",
        ago(&event["time"]),
        refused.topic,
        refused.reason,
        refused.detail,
        render::text(event, "id")
    );
}

fn print_meta(device: &Device) {
    let mut parts = Vec::new();
    if let Some(group) = &device.meta.group {
        parts.push(format!("group {group}"));
    }
    if let Some(owner) = &device.meta.owner {
        parts.push(format!("owner {owner}"));
    }
    if !device.meta.tags.is_empty() {
        let tags: Vec<String> = device.meta.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.push(format!("tags {}", tags.join(",")));
    }
    if !parts.is_empty() {
        println!("{}", parts.join("; "));
    }
}

fn print_liveness(liveness: Option<&LivenessView>) {
    let Some(l) = liveness else {
        println!("liveness: nothing heard from it since the server started");
        return;
    };
    let cadence = match (l.cadence_seconds, l.cadence_source) {
        (Some(c), Some(source)) => format!("{} cadence every {}", source.as_str(), render::duration_ms(c * 1000.0)),
        _ => "cadence not known yet (declare one with devices set --cadence, or it is learned)".into(),
    };
    match l.silent {
        true => println!(
            "liveness: SILENT since {} — {}; {cadence}",
            l.silent_since.map_or_else(|| "-".into(), render::clock),
            l.silent_reason.as_deref().unwrap_or("-")
        ),
        false => println!("liveness: active; {cadence}"),
    }
}

fn print_session(session: Option<&SessionInfo>) {
    let Some(s) = session else {
        println!("connection: not connected, and no session is kept (it never connected, or used a clean session)");
        return;
    };
    match (s.connected, s.last_disconnect) {
        (true, _) => println!("connection: connected since {} {}", ago_at(s.since), transport(s)),
        (false, Some(reason)) => {
            println!("connection: DISCONNECTED since {} — {}: {}", ago_at(s.since), reason.as_str(), reason.in_words())
        }
        (false, None) => println!("connection: DISCONNECTED since {}", ago_at(s.since)),
    }
    match s.expiry_seconds {
        Some(0) => println!("session: ends with the connection (clean session)"),
        Some(secs) => {
            println!("session: kept for {} after a disconnect", render::duration_ms(f64::from(secs) * 1000.0))
        }
        None => println!("session: kept until the device asks for a clean one"),
    }
    println!(
        "queue: {} / {} waiting (bound {} messages / {}, policy {}); {} in flight; {} dropped since the server started",
        render::count(s.queued, "message"),
        bytes(s.queued_bytes as u64),
        s.queue_messages_max,
        bytes(s.queue_bytes_max as u64),
        s.queue_policy.as_str(),
        s.inflight,
        s.dropped,
    );
    let subscriptions: Vec<String> = s.subscriptions.iter().map(|x| format!("{} (QoS {})", x.filter, x.qos)).collect();
    match subscriptions.is_empty() {
        true => println!("subscriptions: none"),
        false => println!("subscriptions: {}", subscriptions.join(", ")),
    }
}

/// How a connection travels: over TLS (version, cipher) or plain TCP.
fn transport(session: &SessionInfo) -> String {
    match (session.tls, &session.tls_session) {
        (Some(true), Some(tls)) => format!("over {} ({})", tls.tls_version, tls.tls_cipher),
        (Some(true), None) => "over TLS".into(),
        _ => "over plain TCP (no TLS)".into(),
    }
}

/// A timeline entry's detail in words: the reason, the detail, the peer,
/// how it connected, what was dropped, as its type's payload says.
fn timeline_detail(entry: &TimelineEntry) -> String {
    let parts = match entry.ty.as_str() {
        DEVICE_SILENT => payload::<Silent>(entry).map(|s| vec![reason_part(&s.reason)]),
        DEVICE_CONNECTED => payload::<Connected>(entry).map(|c| connected_parts(&c)),
        DEVICE_DISCONNECTED => {
            payload::<Disconnected>(entry).map(|d| vec![reason_part(d.reason.as_str()), format!("from {}", d.peer)])
        }
        DEVICE_CONNECTION_REFUSED => payload::<ConnectionsRefused>(entry)
            .map(|r| vec![reason_part(&r.reason), r.detail, format!("from {}", r.peer)]),
        DEVICE_FLAPPING => payload::<Flapping>(entry)
            .map(|f| vec![format!("{} within {} s", render::count(f.connects as usize, "connect"), f.window_seconds)]),
        DEVICE_SESSION_EXPIRED => payload::<SessionExpired>(entry)
            .map(|e| vec![format!("{} dropped", render::count(e.queued_dropped as usize, "queued message"))]),
        DEVICE_SUBSCRIBE_DENIED => payload::<SubscribeDenied>(entry).map(|d| vec![reason_part(&d.reason), d.detail]),
        _ => Ok(Vec::new()),
    };
    parts.map_or_else(|e| e.to_string(), |parts| parts.join("; "))
}

/// A timeline entry's typed payload.
fn payload<T: DeserializeOwned>(entry: &TimelineEntry) -> Result<T, glassbox_core::PayloadError> {
    payload_of(&entry.id, &entry.ty, &entry.data)
}

/// A reason's name, and what it means when it is a disconnect reason.
fn reason_part(reason: &str) -> String {
    match reason_in_words(reason) {
        "" => reason.to_string(),
        words => format!("{reason}: {words}"),
    }
}

/// Where a connection came from, its protocol and transport, and whether
/// it resumed its session.
fn connected_parts(c: &Connected) -> Vec<String> {
    let mut parts = vec![format!("from {}", c.peer)];
    parts.push(if c.protocol == 5 { "MQTT 5".into() } else { "MQTT 3.1.1".into() });
    parts.push(match (c.tls, &c.tls_session) {
        (true, Some(tls)) => format!("{} ({})", tls.tls_version, tls.tls_cipher),
        (true, None) => "TLS".into(),
        (false, _) => "plain TCP (no TLS)".into(),
    });
    if c.session_present {
        parts.push("resumed its session".into());
    }
    parts
}
