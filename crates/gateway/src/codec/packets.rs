//! The packets of MQTT 3.1.1 and 5.0 and their bodies' encodings.

use bytes::{BufMut, Bytes};

use super::properties::{Carrier, Properties};
use super::wire::{Reader, put_binary, put_string, put_varint_into};
use super::{CodecError, Protocol};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    pub fn from_bits(bits: u8) -> Result<Self, CodecError> {
        match bits {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            _ => Err(CodecError::malformed("QoS 3 is not a QoS")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol: Protocol,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub client_id: String,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    /// 5.0 reason code; for 3.1.1 the return code (0–5).
    pub reason: u8,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// May be empty in 5.0 when a topic alias stands for it.
    pub topic: String,
    /// Present exactly when QoS > 0.
    pub packet_id: Option<u16>,
    pub properties: Properties,
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub packet_id: u16,
    pub reason: u8,
    pub properties: Properties,
}

impl Ack {
    pub fn new(packet_id: u16) -> Self {
        Self { packet_id, reason: 0, properties: Properties::default() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainHandling {
    SendAtSubscribe = 0,
    SendIfNew = 1,
    DoNotSend = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    pub fn qos(qos: QoS) -> Self {
        Self { qos, no_local: false, retain_as_published: false, retain_handling: RetainHandling::SendAtSubscribe }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: u16,
    pub properties: Properties,
    pub filters: Vec<(String, SubscriptionOptions)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: u16,
    pub properties: Properties,
    /// One per filter: the granted QoS, or a failure code (0x80 and up).
    pub reasons: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: u16,
    pub properties: Properties,
    pub filters: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: u16,
    pub properties: Properties,
    /// One per filter in 5.0; empty in 3.1.1.
    pub reasons: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disconnect {
    pub reason: u8,
    pub properties: Properties,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    pub reason: u8,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

/// The fixed header's flag bits each type requires (PUBLISH's are free).
fn required_flags(kind: u8) -> Option<u8> {
    match kind {
        3 => None,
        6 | 8 | 10 => Some(0b0010),
        _ => Some(0),
    }
}

pub(super) fn decode_body(kind: u8, flags: u8, body: &[u8], protocol: Protocol) -> Result<Packet, CodecError> {
    if let Some(required) = required_flags(kind)
        && flags != required
    {
        return Err(CodecError::malformed(format!("packet type {kind} with reserved flags {flags:#06b}")));
    }
    let v5 = protocol == Protocol::V5;
    let mut r = Reader::new(body);
    let packet = match kind {
        1 => Packet::Connect(Box::new(decode_connect(&mut r)?)),
        2 => Packet::ConnAck(ConnAck {
            session_present: match r.u8("connack flags")? {
                0 => false,
                1 => true,
                _ => return Err(CodecError::malformed("connack flags: reserved bits set")),
            },
            reason: r.u8("connack reason")?,
            properties: props(&mut r, v5, Carrier::ConnAck)?,
        }),
        3 => Packet::Publish(decode_publish(flags, &mut r, v5)?),
        4 => Packet::PubAck(decode_ack(&mut r, v5)?),
        5 => Packet::PubRec(decode_ack(&mut r, v5)?),
        6 => Packet::PubRel(decode_ack(&mut r, v5)?),
        7 => Packet::PubComp(decode_ack(&mut r, v5)?),
        8 => Packet::Subscribe(decode_subscribe(&mut r, v5)?),
        9 => {
            let packet_id = r.u16("packet id")?;
            let properties = props(&mut r, v5, Carrier::SubAck)?;
            let reasons = r.rest().to_vec();
            Packet::SubAck(SubAck { packet_id, properties, reasons })
        }
        10 => Packet::Unsubscribe(decode_unsubscribe(&mut r, v5)?),
        11 => {
            let packet_id = r.u16("packet id")?;
            let properties = props(&mut r, v5, Carrier::UnsubAck)?;
            let reasons = if v5 { r.rest().to_vec() } else { Vec::new() };
            Packet::UnsubAck(UnsubAck { packet_id, properties, reasons })
        }
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 => Packet::Disconnect(Disconnect {
            reason: reason_or_success(&mut r, v5)?,
            properties: props_if_any(&mut r, v5, Carrier::Disconnect)?,
        }),
        15 if v5 => Packet::Auth(Auth {
            reason: reason_or_success(&mut r, v5)?,
            properties: props_if_any(&mut r, v5, Carrier::Auth)?,
        }),
        other => return Err(CodecError::malformed(format!("unknown packet type {other}"))),
    };
    if !r.is_empty() {
        return Err(CodecError::malformed("bytes left over after the packet"));
    }
    Ok(packet)
}

fn props(r: &mut Reader<'_>, v5: bool, carrier: Carrier) -> Result<Properties, CodecError> {
    if !v5 {
        return Ok(Properties::default());
    }
    let properties = Properties::decode(r)?;
    properties.check_allowed(carrier)?;
    Ok(properties)
}

/// DISCONNECT and AUTH may stop before the reason code (meaning success)
/// or before the properties (meaning none).
fn reason_or_success(r: &mut Reader<'_>, v5: bool) -> Result<u8, CodecError> {
    if v5 && !r.is_empty() { r.u8("reason code") } else { Ok(0) }
}

fn props_if_any(r: &mut Reader<'_>, v5: bool, carrier: Carrier) -> Result<Properties, CodecError> {
    if v5 && !r.is_empty() { props(r, v5, carrier) } else { Ok(Properties::default()) }
}

fn decode_connect(r: &mut Reader<'_>) -> Result<Connect, CodecError> {
    let name = r.string("protocol name")?;
    let level = r.u8("protocol level")?;
    let protocol = match (name.as_str(), level) {
        ("MQTT", 4) => Protocol::V311,
        ("MQTT", 5) => Protocol::V5,
        _ => return Err(CodecError::UnsupportedProtocol { name, level }),
    };
    let v5 = protocol == Protocol::V5;
    let flags = r.u8("connect flags")?;
    if flags & 0x01 != 0 {
        return Err(CodecError::malformed("connect flags: reserved bit set"));
    }
    let (has_username, has_password, has_will) = (flags & 0x80 != 0, flags & 0x40 != 0, flags & 0x04 != 0);
    let will_qos = QoS::from_bits((flags >> 3) & 0x03)?;
    let will_retain = flags & 0x20 != 0;
    if !has_will && (will_qos != QoS::AtMostOnce || will_retain) {
        return Err(CodecError::malformed("connect flags: will QoS or retain set without a will"));
    }
    if !v5 && has_password && !has_username {
        return Err(CodecError::malformed("connect flags: password without user name"));
    }
    let keep_alive = r.u16("keep alive")?;
    let properties = props(r, v5, Carrier::Connect)?;
    let client_id = r.string("client identifier")?;
    let will = match has_will {
        false => None,
        true => {
            let properties = props(r, v5, Carrier::Will)?;
            let topic = r.string("will topic")?;
            let payload = r.binary("will payload")?;
            Some(Will { topic, payload, qos: will_qos, retain: will_retain, properties })
        }
    };
    let username = if has_username { Some(r.string("user name")?) } else { None };
    let password = if has_password { Some(r.binary("password")?) } else { None };
    Ok(Connect {
        protocol,
        clean_start: flags & 0x02 != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

fn decode_publish(flags: u8, r: &mut Reader<'_>, v5: bool) -> Result<Publish, CodecError> {
    let qos = QoS::from_bits((flags >> 1) & 0x03)?;
    let dup = flags & 0x08 != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(CodecError::malformed("DUP set on a QoS 0 PUBLISH"));
    }
    let topic = r.string("topic name")?;
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        _ => match r.u16("packet id")? {
            0 => return Err(CodecError::malformed("packet id 0")),
            id => Some(id),
        },
    };
    let properties = props(r, v5, Carrier::Publish)?;
    Ok(Publish { dup, qos, retain: flags & 0x01 != 0, topic, packet_id, properties, payload: r.rest() })
}

fn decode_ack(r: &mut Reader<'_>, v5: bool) -> Result<Ack, CodecError> {
    let packet_id = r.u16("packet id")?;
    let reason = reason_or_success(r, v5)?;
    let properties = props_if_any(r, v5, Carrier::Ack)?;
    Ok(Ack { packet_id, reason, properties })
}

fn nonzero_id(r: &mut Reader<'_>) -> Result<u16, CodecError> {
    match r.u16("packet id")? {
        0 => Err(CodecError::malformed("packet id 0")),
        id => Ok(id),
    }
}

fn decode_subscribe(r: &mut Reader<'_>, v5: bool) -> Result<Subscribe, CodecError> {
    let packet_id = nonzero_id(r)?;
    let properties = props(r, v5, Carrier::Subscribe)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string("topic filter")?;
        let options = r.u8("subscription options")?;
        filters.push((filter, decode_options(options, v5)?));
    }
    if filters.is_empty() {
        return Err(CodecError::protocol("SUBSCRIBE without a topic filter"));
    }
    Ok(Subscribe { packet_id, properties, filters })
}

fn decode_options(options: u8, v5: bool) -> Result<SubscriptionOptions, CodecError> {
    let reserved = if v5 { 0xC0 } else { 0xFC };
    if options & reserved != 0 {
        return Err(CodecError::malformed("subscription options: reserved bits set"));
    }
    let retain_handling = match (options >> 4) & 0x03 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(CodecError::protocol("retain handling 3")),
    };
    Ok(SubscriptionOptions {
        qos: QoS::from_bits(options & 0x03)?,
        no_local: options & 0x04 != 0,
        retain_as_published: options & 0x08 != 0,
        retain_handling,
    })
}

fn decode_unsubscribe(r: &mut Reader<'_>, v5: bool) -> Result<Unsubscribe, CodecError> {
    let packet_id = nonzero_id(r)?;
    let properties = props(r, v5, Carrier::Unsubscribe)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string("topic filter")?);
    }
    if filters.is_empty() {
        return Err(CodecError::protocol("UNSUBSCRIBE without a topic filter"));
    }
    Ok(Unsubscribe { packet_id, properties, filters })
}

pub(super) fn encode(packet: &Packet, protocol: Protocol, out: &mut Vec<u8>) {
    let v5 = protocol == Protocol::V5;
    let start = begin_packet(out);
    let body = &mut *out;
    let first = match packet {
        Packet::Connect(c) => {
            encode_connect(c, body);
            0x10
        }
        Packet::ConnAck(c) => {
            body.put_u8(c.session_present as u8);
            body.put_u8(c.reason);
            put_props(&c.properties, v5, body);
            0x20
        }
        Packet::Publish(p) => publish_body(p, v5, body),
        Packet::PubAck(a) => encode_ack(a, v5, body, 0x40),
        Packet::PubRec(a) => encode_ack(a, v5, body, 0x50),
        Packet::PubRel(a) => encode_ack(a, v5, body, 0x62),
        Packet::PubComp(a) => encode_ack(a, v5, body, 0x70),
        Packet::Subscribe(s) => {
            body.put_u16(s.packet_id);
            put_props(&s.properties, v5, body);
            for (filter, o) in &s.filters {
                put_string(body, filter);
                let bits = o.qos as u8
                    | (o.no_local as u8) << 2
                    | (o.retain_as_published as u8) << 3
                    | (o.retain_handling as u8) << 4;
                body.put_u8(if v5 { bits } else { o.qos as u8 });
            }
            0x82
        }
        Packet::SubAck(s) => {
            body.put_u16(s.packet_id);
            put_props(&s.properties, v5, body);
            body.extend_from_slice(&s.reasons);
            0x90
        }
        Packet::Unsubscribe(u) => {
            body.put_u16(u.packet_id);
            put_props(&u.properties, v5, body);
            u.filters.iter().for_each(|f| put_string(body, f));
            0xA2
        }
        Packet::UnsubAck(u) => {
            body.put_u16(u.packet_id);
            if v5 {
                u.properties.encode(body);
                body.extend_from_slice(&u.reasons);
            }
            0xB0
        }
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(d) => {
            put_reason_and_props(d.reason, &d.properties, v5, body);
            0xE0
        }
        Packet::Auth(a) => {
            put_reason_and_props(a.reason, &a.properties, v5, body);
            0xF0
        }
    };
    end_packet(out, start, first);
}

/// Encodes a PUBLISH on its own (no [`Packet`] to build around it).
pub(super) fn encode_publish(p: &Publish, protocol: Protocol, out: &mut Vec<u8>) {
    let start = begin_packet(out);
    let first = publish_body(p, protocol == Protocol::V5, out);
    end_packet(out, start, first);
}

/// The most a fixed header takes: its first byte and a 4-byte remaining length.
const FIXED_HEADER_MAX: usize = 5;

/// Leaves room for the fixed header, whose length is known only once the
/// body is written: the body goes straight into `out`, with no buffer of
/// its own. Returns where the packet starts.
fn begin_packet(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; FIXED_HEADER_MAX]);
    start
}

/// Writes the fixed header in the room [`begin_packet`] left, and moves the
/// body back over the part of it the header did not need.
fn end_packet(out: &mut Vec<u8>, start: usize, first: u8) {
    let body = start + FIXED_HEADER_MAX;
    let mut length = [0; 4];
    let length_len = put_varint_into(&mut length, (out.len() - body) as u32);
    out[start] = first;
    out[start + 1..start + 1 + length_len].copy_from_slice(&length[..length_len]);
    out.copy_within(body.., start + 1 + length_len);
    out.truncate(out.len() - (FIXED_HEADER_MAX - 1 - length_len));
}

/// Writes a PUBLISH's body; returns its fixed header's first byte.
fn publish_body(p: &Publish, v5: bool, body: &mut Vec<u8>) -> u8 {
    put_string(body, &p.topic);
    if let Some(id) = p.packet_id {
        body.put_u16(id);
    }
    put_props(&p.properties, v5, body);
    body.extend_from_slice(&p.payload);
    0x30 | (p.dup as u8) << 3 | (p.qos as u8) << 1 | p.retain as u8
}

fn put_props(properties: &Properties, v5: bool, out: &mut Vec<u8>) {
    if v5 {
        properties.encode(out);
    }
}

/// The short forms: nothing for success without properties.
fn put_reason_and_props(reason: u8, properties: &Properties, v5: bool, out: &mut Vec<u8>) {
    if v5 && (reason != 0 || *properties != Properties::default()) {
        out.put_u8(reason);
        properties.encode(out);
    }
}

fn encode_ack(a: &Ack, v5: bool, body: &mut Vec<u8>, first: u8) -> u8 {
    body.put_u16(a.packet_id);
    put_reason_and_props(a.reason, &a.properties, v5, body);
    first
}

fn encode_connect(c: &Connect, body: &mut Vec<u8>) {
    let v5 = c.protocol == Protocol::V5;
    put_string(body, "MQTT");
    body.put_u8(c.protocol.level());
    let mut flags = (c.clean_start as u8) << 1;
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos as u8) << 3 | (w.retain as u8) << 5;
    }
    flags |= (c.password.is_some() as u8) << 6 | (c.username.is_some() as u8) << 7;
    body.put_u8(flags);
    body.put_u16(c.keep_alive);
    put_props(&c.properties, v5, body);
    put_string(body, &c.client_id);
    if let Some(w) = &c.will {
        put_props(&w.properties, v5, body);
        put_string(body, &w.topic);
        put_binary(body, &w.payload);
    }
    if let Some(u) = &c.username {
        put_string(body, u);
    }
    if let Some(p) = &c.password {
        put_binary(body, p);
    }
}
