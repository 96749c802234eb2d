//! Admission: the connection limit, login back-off, credentials, and
//! flapping, before a client gets a session. Refusals are answered here and
//! counted per peer address (`refusals`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use glassbox_core::{DisconnectReason, Flapping, Payload};

use super::stream::{WriteSide, write_all};
use super::{lock, record_connection_event};
use crate::acl::Role;
use crate::broker::Shared;
use crate::broker::auth::{Credentials, Login, OPERATOR_USERNAME};
use crate::broker::refusals::{Refusal, record as record_refusal};
use crate::codec::{ConnAck, Connect, Packet, Properties, Protocol, encode};
use crate::flapping::Flap;
use crate::tls::CertificateInfo;
use crate::topic::validate_name;

/// How a refusal during a login back-off is told apart.
const BACKOFF_DETAIL: &str = "backing off:";

/// Who a connection was admitted as.
pub(super) struct Admitted {
    pub role: Role,
    /// When its credential lapses (see [`Login::until`]).
    pub until: Option<DateTime<Utc>>,
    /// Its client id: the one it asked for, or one assigned to it.
    pub client_id: Arc<str>,
    /// Whether the client id was assigned (it sent an empty one).
    pub assigned: bool,
    /// Whether it logged in with its client certificate.
    pub by_certificate: bool,
}

/// Checks limits, login back-off and credentials; answers a refusal itself
/// (recorded per peer, see `refusals`).
pub(super) async fn admit(
    shared: &Arc<Shared>,
    connect: &Connect,
    peer: SocketAddr,
    certificate: Option<&CertificateInfo>,
    write: &mut WriteSide,
) -> Option<Admitted> {
    let protocol = connect.protocol;
    // A device is whoever presents itself as one: user name = client id, or
    // a client certificate without a user name.
    let by_certificate_only = certificate.is_some() && connect.username.is_none() && !connect.client_id.is_empty();
    let claimed_device = connect
        .username
        .as_deref()
        .filter(|u| *u == connect.client_id && *u != OPERATOR_USERNAME)
        .or(by_certificate_only.then_some(connect.client_id.as_str()));
    let claimed = connect.username.as_deref().unwrap_or(&connect.client_id);
    let mut refuse = async |reason: DisconnectReason, detail: String, code: u8| {
        let _ = send_now(write, protocol, &connack(code, Properties::default()), shared.settings.write_timeout).await;
        let backoff = detail.starts_with(BACKOFF_DETAIL);
        let refusal = Refusal { reason, detail: &detail, device: claimed_device, claimed, backoff };
        record_refusal(shared, peer.ip(), &refusal).await;
    };
    if shared.connections.load(Ordering::Relaxed) as usize > shared.settings.connections_max {
        let detail = format!("the server is at its connection limit ({})", shared.settings.connections_max);
        refuse(DisconnectReason::ServerBusy, detail, refusal_code(DisconnectReason::ServerBusy, protocol)).await;
        return None;
    }
    if connect.client_id.is_empty() && protocol == Protocol::V311 && !connect.clean_start {
        let detail = "an empty client id needs a clean session".to_string();
        refuse(DisconnectReason::ProtocolError, detail, 2).await;
        return None;
    }
    if let Some(Err(e)) = connect.will.as_ref().map(|will| validate_name(&will.topic)) {
        // 5.0 says why (0x90, topic name invalid); 3.1.1 has no code for it, and 2
        // (identifier rejected) is the nearest refusal it has.
        let detail = format!("the will's topic is not a valid topic name: {e}");
        let code = if protocol == Protocol::V5 { 0x90 } else { 2 };
        refuse(DisconnectReason::ProtocolError, detail, code).await;
        return None;
    }
    let credentials = Credentials {
        client_id: &connect.client_id,
        username: connect.username.as_deref(),
        password: connect.password.as_deref(),
        certificate,
    };
    let by_certificate = credentials.by_certificate();
    if let Some(wait) = shared.backoff.waiting(peer.ip(), claimed, Instant::now()) {
        // Credentials are not checked while backing off: guessing gains nothing.
        let detail = format!(
            "{BACKOFF_DETAIL} {:.0} s more after repeated failed logins from this address or for this id (mqtt.login_backoff_max)",
            wait.as_secs_f64().ceil()
        );
        refuse(DisconnectReason::RateLimited, detail, refusal_code(DisconnectReason::ServerBusy, protocol)).await;
        return None;
    }
    let Login { role, until } = match shared.auth.authenticate(&credentials).await {
        Ok(login) => login,
        Err((reason, detail)) => {
            if reason == DisconnectReason::AuthFailure {
                shared.backoff.failed(peer.ip(), claimed, Instant::now());
            }
            refuse(reason, detail, refusal_code(reason, protocol)).await;
            return None;
        }
    };
    shared.backoff.succeeded(claimed);
    if let Role::Device(device) = &role {
        let flap = lock(&shared.flapping).connected(device, Instant::now());
        if let Flap::Started { connects } = flap {
            let window = shared.settings.flapping.window.as_secs();
            let data = Flapping {
                connects: connects as u64,
                window_seconds: window,
                throttled: shared.settings.flapping_throttle,
            };
            record_connection_event(shared, Flapping::TYPE, Some(device), device, &data).await;
        }
        if shared.settings.flapping_throttle && flap != Flap::Steady {
            let detail = "flapping: too many connects in the window; back off and retry later".to_string();
            let code = if protocol == Protocol::V5 { 0x9F } else { 3 };
            refuse(DisconnectReason::RateLimited, detail, code).await;
            return None;
        }
    }
    let assigned = connect.client_id.is_empty();
    let client_id = match assigned {
        true => Arc::from(format!("auto-{}", ulid::Ulid::new())),
        false => Arc::from(connect.client_id.as_str()),
    };
    Some(Admitted { role, until, client_id, assigned, by_certificate })
}

fn refusal_code(reason: DisconnectReason, protocol: Protocol) -> u8 {
    match (protocol, reason) {
        (Protocol::V5, reason) => reason.mqtt5_code().unwrap_or(0x80),
        (Protocol::V311, DisconnectReason::ServerBusy) => 3,
        (Protocol::V311, DisconnectReason::DeviceDisabled | DisconnectReason::NotAuthorized) => 5,
        (Protocol::V311, _) => 4,
    }
}

pub(super) fn connack(reason: u8, properties: Properties) -> Packet {
    Packet::ConnAck(ConnAck { session_present: false, reason, properties })
}

/// Writes one packet straight to the stream, before the writer task exists.
pub(super) async fn send_now(
    write: &mut WriteSide,
    protocol: Protocol,
    packet: &Packet,
    stall: Duration,
) -> Result<(), DisconnectReason> {
    let mut out = Vec::new();
    encode(packet, protocol, &mut out);
    write_all(write, &out, stall).await
}
