//! Why a device connection ended, or was refused: a closed list, recorded
//! on every `device.disconnected` and `device.connection_refused` event;
//! and what a `device.connected` event records about the connection.

use std::fmt;

use serde::{Deserialize, Serialize};

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
}

impl DisconnectReason {
    pub const ALL: [DisconnectReason; 14] = [
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
            DisconnectReason::DeviceDisabled => Some(0x87),
            DisconnectReason::ServerBusy => Some(0x89),
            DisconnectReason::RateLimited => Some(0x96),
            DisconnectReason::Administrative => Some(0x98),
            DisconnectReason::ServerShutdown => Some(0x8B),
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The data of a `device.connected` / `client.connected` event. Shared by
/// the gateway, which writes it, and every reader; events recorded before
/// `tls` existed read as plain TCP.
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
}
