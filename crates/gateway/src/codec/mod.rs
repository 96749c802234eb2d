//! The MQTT wire codec: one [`Packet`] type for 3.1.1 and 5.0, [`decode`]
//! from a byte buffer (incremental: `Ok(None)` asks for more bytes) and
//! [`encode`] into one.
//!
//! The codec enforces what the specifications call *malformed* (bad
//! lengths, bad UTF-8, reserved flags, invalid property values) and
//! duplicates of single-valued properties (a *protocol error*). Rules that
//! need session state (packet ids in flight, topic aliases, ACLs) belong to
//! the broker.

mod packets;
mod properties;
mod wire;

pub use packets::{
    Ack, Auth, ConnAck, Connect, Disconnect, Packet, Publish, QoS, RetainHandling, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
pub use properties::Properties;
pub use wire::{PACKET_BYTES_MAX, VARINT_MAX};

/// The protocol version a connection speaks, from its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

impl Protocol {
    pub fn level(self) -> u8 {
        match self {
            Protocol::V311 => 4,
            Protocol::V5 => 5,
        }
    }
}

/// Why bytes could not be decoded. Each maps to the reason code a server
/// answers with (CONNACK or DISCONNECT in 5.0; 3.1.1 just closes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("malformed packet: {0}")]
    Malformed(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("unsupported protocol {name:?} level {level}; use MQTT 3.1.1 (4) or 5.0 (5)")]
    UnsupportedProtocol { name: String, level: u8 },
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    TooLarge { size: usize, max: usize },
}

impl CodecError {
    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        CodecError::Malformed(message.into())
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        CodecError::Protocol(message.into())
    }

    /// The MQTT 5.0 reason code for this error.
    pub fn reason_code(&self) -> u8 {
        match self {
            CodecError::Malformed(_) => 0x81,
            CodecError::Protocol(_) => 0x82,
            CodecError::UnsupportedProtocol { .. } => 0x84,
            CodecError::TooLarge { .. } => 0x95,
        }
    }
}

/// Decodes the first packet in `buf`. Returns the packet and the bytes it
/// used, `Ok(None)` if `buf` holds only part of a packet, or an error.
/// A packet larger than `max_packet_bytes` is refused as soon as its fixed
/// header is read, before its body arrives. `protocol` is ignored for
/// CONNECT, which carries its own.
pub fn decode(buf: &[u8], protocol: Protocol, max_packet_bytes: usize) -> Result<Option<(Packet, usize)>, CodecError> {
    let Some(&first) = buf.first() else { return Ok(None) };
    let Some((remaining, len_bytes)) = wire::decode_varint(&buf[1..])? else { return Ok(None) };
    let total = 1 + len_bytes + remaining as usize;
    if total > max_packet_bytes {
        return Err(CodecError::TooLarge { size: total, max: max_packet_bytes });
    }
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[1 + len_bytes..total];
    let packet = packets::decode_body(first >> 4, first & 0x0f, body, protocol)?;
    Ok(Some((packet, total)))
}

/// The bytes `publish` takes on the wire for `protocol`, fixed header
/// included: what a client's Maximum Packet Size is compared with.
pub fn publish_len(publish: &Publish, protocol: Protocol) -> usize {
    let mut out = Vec::with_capacity(publish.topic.len() + publish.payload.len() + 32);
    packets::encode_publish(publish, protocol, &mut out);
    out.len()
}

/// Appends the encoding of `packet` for `protocol` to `out`.
pub fn encode(packet: &Packet, protocol: Protocol, out: &mut Vec<u8>) {
    packets::encode(packet, protocol, out);
}
