//! The MQTT gateway's records of connections: connected, disconnected
//! (with a reason from a closed list), refused, flapping, a session
//! expired, a subscription denied. Each is recorded as `device.<what>` when
//! the client is a registered device and as `client.<what>` otherwise
//! ([`ConnectionPayload::type_for`]); read by metrics, liveness, diagnosis
//! and `devices inspect`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::Payload;

/// A connection was admitted (data: [`Connected`]).
pub const DEVICE_CONNECTED: &str = "device.connected";
pub const CLIENT_CONNECTED: &str = "client.connected";
/// A connection ended (data: [`Disconnected`]).
pub const DEVICE_DISCONNECTED: &str = "device.disconnected";
pub const CLIENT_DISCONNECTED: &str = "client.disconnected";
/// CONNECTs refused, counted per peer and interval (data: [`ConnectionsRefused`]).
pub const DEVICE_CONNECTION_REFUSED: &str = "device.connection_refused";
pub const CLIENT_CONNECTION_REFUSED: &str = "client.connection_refused";
/// A session the broker kept for an absent client expired (data: [`SessionExpired`]).
pub const DEVICE_SESSION_EXPIRED: &str = "device.session_expired";
pub const CLIENT_SESSION_EXPIRED: &str = "client.session_expired";
/// A SUBSCRIBE was refused, by the ACL or the quota (data: [`SubscribeDenied`]).
pub const DEVICE_SUBSCRIBE_DENIED: &str = "device.subscribe_denied";
pub const CLIENT_SUBSCRIBE_DENIED: &str = "client.subscribe_denied";
/// A device reconnected too often in the flapping window (data: [`Flapping`]).
pub const DEVICE_FLAPPING: &str = "device.flapping";

/// A connection payload: recorded under [`Payload::TYPE`] (`device.<what>`)
/// for a registered device, under [`ConnectionPayload::CLIENT_TYPE`]
/// (`client.<what>`) for any other client.
pub trait ConnectionPayload: Payload {
    const CLIENT_TYPE: &'static str;

    /// The type to record it under: a device's, or a client's.
    fn type_for(device: Option<&str>) -> &'static str {
        if device.is_some() { Self::TYPE } else { Self::CLIENT_TYPE }
    }

    /// Whether `ty` is one of its two types.
    fn recorded_as(ty: &str) -> bool {
        ty == Self::TYPE || ty == Self::CLIENT_TYPE
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisconnectReason {
    /// The client sent DISCONNECT.
    ClientDisconnect,
    /// The connection closed without DISCONNECT (network loss, crash).
    ConnectionLost,
    /// Nothing arrived within 1.5 × the keep-alive.
    KeepAliveTimeout,
    /// Another connection took over the same client id.
    SessionTakeover,
    /// The client broke the protocol (malformed packet, reused packet id, …).
    ProtocolError,
    /// A packet exceeded the maximum packet size.
    PacketTooLarge,
    /// Unknown device, wrong secret or token.
    AuthFailure,
    /// The device is disabled in the registry.
    DeviceDisabled,
    /// The server is at its connection limit.
    ServerBusy,
    /// The device exceeded its publish rate or flapped and was throttled.
    RateLimited,
    /// No CONNECT arrived in time after the TCP connection opened.
    ConnectTimeout,
    /// An operator disconnected it.
    Administrative,
    /// The server is shutting down.
    ServerShutdown,
    /// The client did not take what the server sent within `mqtt.write_timeout`.
    WriteTimeout,
    /// A token whose role has no MQTT rights (deployer, device-provisioner).
    NotAuthorized,
    /// The token the client logged in with was revoked.
    TokenRevoked,
    /// The token the client logged in with expired while it was connected.
    TokenExpired,
    /// The client sent more unacknowledged QoS 1/2 PUBLISHes than the
    /// server's receive maximum (`mqtt.inflight_max`).
    ReceiveMaximumExceeded,
}

impl DisconnectReason {
    pub const ALL: [DisconnectReason; 18] = [
        DisconnectReason::ClientDisconnect,
        DisconnectReason::ConnectionLost,
        DisconnectReason::KeepAliveTimeout,
        DisconnectReason::SessionTakeover,
        DisconnectReason::ProtocolError,
        DisconnectReason::PacketTooLarge,
        DisconnectReason::AuthFailure,
        DisconnectReason::DeviceDisabled,
        DisconnectReason::ServerBusy,
        DisconnectReason::RateLimited,
        DisconnectReason::ConnectTimeout,
        DisconnectReason::Administrative,
        DisconnectReason::ServerShutdown,
        DisconnectReason::WriteTimeout,
        DisconnectReason::NotAuthorized,
        DisconnectReason::TokenRevoked,
        DisconnectReason::TokenExpired,
        DisconnectReason::ReceiveMaximumExceeded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientDisconnect => "client_disconnect",
            DisconnectReason::ConnectionLost => "connection_lost",
            DisconnectReason::KeepAliveTimeout => "keep_alive_timeout",
            DisconnectReason::SessionTakeover => "session_takeover",
            DisconnectReason::ProtocolError => "protocol_error",
            DisconnectReason::PacketTooLarge => "packet_too_large",
            DisconnectReason::AuthFailure => "auth_failure",
            DisconnectReason::DeviceDisabled => "device_disabled",
            DisconnectReason::ServerBusy => "server_busy",
            DisconnectReason::RateLimited => "rate_limited",
            DisconnectReason::ConnectTimeout => "connect_timeout",
            DisconnectReason::Administrative => "administrative",
            DisconnectReason::ServerShutdown => "server_shutdown",
            DisconnectReason::WriteTimeout => "write_timeout",
            DisconnectReason::NotAuthorized => "not_authorized",
            DisconnectReason::TokenRevoked => "token_revoked",
            DisconnectReason::TokenExpired => "token_expired",
            DisconnectReason::ReceiveMaximumExceeded => "receive_maximum_exceeded",
        }
    }

    /// What it means, for people (`glassbox inspect`).
    pub fn in_words(self) -> &'static str {
        match self {
            DisconnectReason::ClientDisconnect => "the client said goodbye (DISCONNECT)",
            DisconnectReason::ConnectionLost => "the network connection dropped without a DISCONNECT",
            DisconnectReason::KeepAliveTimeout => "nothing arrived within 1.5 x its keep-alive",
            DisconnectReason::SessionTakeover => "another connection used the same client id",
            DisconnectReason::ProtocolError => "it broke the MQTT protocol",
            DisconnectReason::PacketTooLarge => "it sent a packet over the size limit",
            DisconnectReason::AuthFailure => "its credentials were refused",
            DisconnectReason::DeviceDisabled => "the device is disabled",
            DisconnectReason::ServerBusy => "the server was at its connection limit",
            DisconnectReason::RateLimited => "it exceeded a rate limit or was throttled for flapping",
            DisconnectReason::ConnectTimeout => "no CONNECT arrived in time",
            DisconnectReason::Administrative => "an operator disconnected it (or deleted it, or rotated its secret)",
            DisconnectReason::ServerShutdown => "the server shut down",
            DisconnectReason::WriteTimeout => "it stopped reading what the server sent (mqtt.write_timeout)",
            DisconnectReason::NotAuthorized => "its token's role has no MQTT rights",
            DisconnectReason::TokenRevoked => "the token it logged in with was revoked",
            DisconnectReason::TokenExpired => "the token it logged in with expired",
            DisconnectReason::ReceiveMaximumExceeded => {
                "it sent more unacknowledged QoS 1/2 messages than the receive maximum"
            }
        }
    }

    /// The MQTT 5.0 reason code the server sends for it, where it sends one
    /// (in CONNACK for refusals, in DISCONNECT otherwise).
    pub fn mqtt5_code(self) -> Option<u8> {
        match self {
            DisconnectReason::ClientDisconnect
            | DisconnectReason::ConnectionLost
            | DisconnectReason::ConnectTimeout
            // It is not reading: a DISCONNECT would not reach it.
            | DisconnectReason::WriteTimeout => None,
            DisconnectReason::KeepAliveTimeout => Some(0x8D),
            DisconnectReason::SessionTakeover => Some(0x8E),
            DisconnectReason::ProtocolError => Some(0x82),
            DisconnectReason::PacketTooLarge => Some(0x95),
            DisconnectReason::AuthFailure => Some(0x86),
            DisconnectReason::DeviceDisabled | DisconnectReason::NotAuthorized => Some(0x87),
            DisconnectReason::TokenRevoked => Some(0x98),
            // "Maximum connect time": the connection's authorised time is up.
            DisconnectReason::TokenExpired => Some(0xA0),
            DisconnectReason::ServerBusy => Some(0x89),
            DisconnectReason::RateLimited => Some(0x96),
            DisconnectReason::Administrative => Some(0x98),
            DisconnectReason::ServerShutdown => Some(0x8B),
            DisconnectReason::ReceiveMaximumExceeded => Some(0x93),
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DisconnectReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| format!("unknown disconnect reason {s:?}"))
    }
}

/// The data of a [`DEVICE_CONNECTED`] / [`CLIENT_CONNECTED`] event, recorded
/// by the gateway once a CONNECT is admitted; events recorded before `tls`
/// existed read as plain TCP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connected {
    /// The client's address, `ip:port`.
    pub peer: String,
    /// The MQTT protocol level: 4 (3.1.1) or 5.
    pub protocol: u8,
    pub keep_alive: u16,
    pub clean_start: bool,
    /// It resumed a session the broker kept.
    pub session_present: bool,
    /// Seconds the session outlives the connection (absent: never expires).
    pub session_expiry_seconds: Option<u32>,
    /// The connection came over the TLS listener (`mqtts`).
    #[serde(default)]
    pub tls: bool,
    /// The TLS version and cipher suite it negotiated, when `tls`.
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub tls_session: Option<TlsSession>,
}

/// What a TLS connection negotiated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsSession {
    /// `TLS 1.3` or `TLS 1.2`.
    pub tls_version: String,
    /// The IANA name of the cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub tls_cipher: String,
}

/// The data of a [`DEVICE_CONNECTION_REFUSED`] / [`CLIENT_CONNECTION_REFUSED`]
/// event: the CONNECTs one peer had refused in one interval, counted, and
/// recorded by the gateway when the interval ends (`device.` when every
/// claim named one registered device). A reader takes events recorded
/// before the count existed (one refusal, its `reason`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionsRefused {
    /// The peer address (IPv6: its /64), or `other peers` past the bound.
    pub peer: String,
    /// Refusals this event stands for.
    pub count: u64,
    /// The most frequent reason among them.
    pub reason: String,
    /// How many for each reason (a disconnect reason's name).
    pub reasons: BTreeMap<String, u64>,
    /// A few of the names claimed, each cut to 128 bytes.
    pub claimed: Vec<String>,
    /// The first refusal's detail, cut to 256 bytes.
    pub detail: String,
    /// Refused at once during a login back-off, credentials not checked.
    pub backoff: u64,
    pub interval_seconds: f64,
}

/// The data of a [`DEVICE_DISCONNECTED`] / [`CLIENT_DISCONNECTED`] event,
/// recorded by the gateway when an admitted connection ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disconnected {
    pub reason: DisconnectReason,
    /// The client's address, `ip:port`.
    pub peer: String,
}

/// The data of a [`DEVICE_FLAPPING`] event, recorded by the gateway when a
/// device's connects in the window first pass the threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flapping {
    /// Connects within the window.
    pub connects: u64,
    pub window_seconds: u64,
    /// Whether its connects are refused until it calms down (`mqtt.flapping_throttle`).
    pub throttled: bool,
}

/// The data of a [`DEVICE_SESSION_EXPIRED`] / [`CLIENT_SESSION_EXPIRED`]
/// event, recorded by the gateway when it ends a session whose client
/// stayed away past its expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionExpired {
    /// Messages queued or in flight for it, dropped with the session.
    pub queued_dropped: u64,
}

/// The data of a [`DEVICE_SUBSCRIBE_DENIED`] / [`CLIENT_SUBSCRIBE_DENIED`]
/// event, recorded by the gateway for a filter the ACL refused, or once per
/// SUBSCRIBE for the filters over the subscription quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeDenied {
    /// The filter refused (the first one, cut to 128 bytes, for the quota).
    pub filter: String,
    /// `acl_denied` or `quota_exceeded`.
    pub reason: String,
    /// The rule or the limit, in words.
    pub detail: String,
    /// For the quota: how many filters of the SUBSCRIBE it refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<u64>,
}

impl Payload for Connected {
    const TYPE: &'static str = DEVICE_CONNECTED;
}
impl ConnectionPayload for Connected {
    const CLIENT_TYPE: &'static str = CLIENT_CONNECTED;
}

impl Payload for Disconnected {
    const TYPE: &'static str = DEVICE_DISCONNECTED;
}
impl ConnectionPayload for Disconnected {
    const CLIENT_TYPE: &'static str = CLIENT_DISCONNECTED;
}

impl Payload for ConnectionsRefused {
    const TYPE: &'static str = DEVICE_CONNECTION_REFUSED;
}
impl ConnectionPayload for ConnectionsRefused {
    const CLIENT_TYPE: &'static str = CLIENT_CONNECTION_REFUSED;
}

impl Payload for SessionExpired {
    const TYPE: &'static str = DEVICE_SESSION_EXPIRED;
}
impl ConnectionPayload for SessionExpired {
    const CLIENT_TYPE: &'static str = CLIENT_SESSION_EXPIRED;
}

impl Payload for SubscribeDenied {
    const TYPE: &'static str = DEVICE_SUBSCRIBE_DENIED;
}
impl ConnectionPayload for SubscribeDenied {
    const CLIENT_TYPE: &'static str = CLIENT_SUBSCRIBE_DENIED;
}

impl Payload for Flapping {
    const TYPE: &'static str = DEVICE_FLAPPING;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connected_reads_events_recorded_before_tls_as_plain_tcp() {
        let old = r#"{"peer":"127.0.0.1:5","protocol":5,"keep_alive":60,"clean_start":true,"session_present":false,"session_expiry_seconds":null}"#;
        let connected: Connected = serde_json::from_str(old).unwrap();
        assert!(!connected.tls && connected.tls_session.is_none());
        let tls = TlsSession { tls_version: "TLS 1.3".into(), tls_cipher: "TLS13_AES_128_GCM_SHA256".into() };
        let over_tls = Connected { tls: true, tls_session: Some(tls), ..connected };
        let json = serde_json::to_value(&over_tls).unwrap();
        assert_eq!((json["tls"].clone(), json["tls_version"].clone()), (true.into(), "TLS 1.3".into()));
        assert_eq!(serde_json::from_value::<Connected>(json).unwrap(), over_tls);
    }

    #[test]
    fn names_are_unique_and_serialize_as_documented() {
        let mut names: Vec<_> = DisconnectReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DisconnectReason::ALL.len());
        for reason in DisconnectReason::ALL {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
    }

    #[test]
    fn connection_payloads_round_trip_as_documented() {
        fn round_trip<P: ConnectionPayload + PartialEq + std::fmt::Debug>(json: serde_json::Value) {
            let payload: P = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(serde_json::to_value(&payload).unwrap(), json);
            assert!(P::recorded_as(P::type_for(Some("d1"))) && P::recorded_as(P::type_for(None)));
        }
        round_trip::<Disconnected>(serde_json::json!({ "reason": "keep_alive_timeout", "peer": "10.0.0.5:50123" }));
        round_trip::<SessionExpired>(serde_json::json!({ "queued_dropped": 12 }));
        round_trip::<SubscribeDenied>(serde_json::json!({
            "filter": "devices/other/#", "reason": "acl_denied", "detail": "not yours",
        }));
        round_trip::<SubscribeDenied>(serde_json::json!({
            "filter": "a/#", "refused": 2, "reason": "quota_exceeded", "detail": "the session holds 100",
        }));
        round_trip::<ConnectionsRefused>(serde_json::json!({
            "peer": "10.0.0.9", "count": 7, "reason": "auth_failure", "reasons": { "auth_failure": 5, "rate_limited": 2 },
            "claimed": ["d1"], "detail": "wrong secret", "backoff": 0, "interval_seconds": 10.0,
        }));
        assert_eq!(
            (Disconnected::type_for(Some("d1")), Disconnected::type_for(None)),
            (DEVICE_DISCONNECTED, CLIENT_DISCONNECTED)
        );
        let flapping = serde_json::json!({ "connects": 6, "window_seconds": 60, "throttled": true });
        let parsed: Flapping = serde_json::from_value(flapping.clone()).unwrap();
        assert_eq!(serde_json::to_value(parsed).unwrap(), flapping);
    }
}
