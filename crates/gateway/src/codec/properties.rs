//! MQTT 5.0 properties: decoded into one struct, whichever packet carries
//! them; encoded in identifier order. A single-valued property given twice
//! is a protocol error; an unknown identifier is malformed.

use bytes::{BufMut, Bytes};

use super::CodecError;
use super::wire::{Reader, put_binary, put_string, put_varint};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    /// Several in a PUBLISH to a subscriber matched by several subscriptions.
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<String>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Bytes>,
    pub request_problem_information: Option<u8>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<u8>,
    pub response_information: Option<String>,
    pub server_reference: Option<String>,
    pub reason_string: Option<String>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<u8>,
    pub user_properties: Vec<(String, String)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<u8>,
    pub subscription_identifier_available: Option<u8>,
    pub shared_subscription_available: Option<u8>,
}

fn once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), CodecError> {
    if slot.is_some() {
        return Err(CodecError::protocol(format!("property {name} given more than once")));
    }
    *slot = Some(value);
    Ok(())
}

fn flag(value: u8, name: &str) -> Result<u8, CodecError> {
    match value {
        0 | 1 => Ok(value),
        _ => Err(CodecError::protocol(format!("property {name} must be 0 or 1, got {value}"))),
    }
}

/// Which packet (or the will in CONNECT) a property block belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carrier {
    Connect,
    Will,
    ConnAck,
    Publish,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl Properties {
    /// Refuses properties the specification does not allow on `carrier`
    /// (MQTT 5.0 §2.2.2.2: such a packet is malformed).
    pub(crate) fn check_allowed(&self, carrier: Carrier) -> Result<(), CodecError> {
        use Carrier::*;
        let message_props: &[Carrier] = &[Publish, Will];
        let checks: [(bool, &str, &[Carrier]); 26] = [
            (self.payload_format_indicator.is_some(), "payload format indicator", message_props),
            (self.message_expiry_interval.is_some(), "message expiry interval", message_props),
            (self.content_type.is_some(), "content type", message_props),
            (self.response_topic.is_some(), "response topic", message_props),
            (self.correlation_data.is_some(), "correlation data", message_props),
            (!self.subscription_identifiers.is_empty(), "subscription identifier", &[Publish, Subscribe]),
            (self.session_expiry_interval.is_some(), "session expiry interval", &[Connect, ConnAck, Disconnect]),
            (self.assigned_client_identifier.is_some(), "assigned client identifier", &[ConnAck]),
            (self.server_keep_alive.is_some(), "server keep alive", &[ConnAck]),
            (self.authentication_method.is_some(), "authentication method", &[Connect, ConnAck, Auth]),
            (self.authentication_data.is_some(), "authentication data", &[Connect, ConnAck, Auth]),
            (self.request_problem_information.is_some(), "request problem information", &[Connect]),
            (self.will_delay_interval.is_some(), "will delay interval", &[Will]),
            (self.request_response_information.is_some(), "request response information", &[Connect]),
            (self.response_information.is_some(), "response information", &[ConnAck]),
            (self.server_reference.is_some(), "server reference", &[ConnAck, Disconnect]),
            (self.reason_string.is_some(), "reason string", &[ConnAck, Ack, SubAck, UnsubAck, Disconnect, Auth]),
            (self.receive_maximum.is_some(), "receive maximum", &[Connect, ConnAck]),
            (self.topic_alias_maximum.is_some(), "topic alias maximum", &[Connect, ConnAck]),
            (self.topic_alias.is_some(), "topic alias", &[Publish]),
            (self.maximum_qos.is_some(), "maximum qos", &[ConnAck]),
            (self.retain_available.is_some(), "retain available", &[ConnAck]),
            (self.maximum_packet_size.is_some(), "maximum packet size", &[Connect, ConnAck]),
            (self.wildcard_subscription_available.is_some(), "wildcard subscription available", &[ConnAck]),
            (self.subscription_identifier_available.is_some(), "subscription identifier available", &[ConnAck]),
            (self.shared_subscription_available.is_some(), "shared subscription available", &[ConnAck]),
        ];
        if let Some((_, name, _)) = checks.iter().find(|(present, _, allowed)| *present && !allowed.contains(&carrier))
        {
            return Err(CodecError::malformed(format!("property {name} is not allowed in {carrier:?}")));
        }
        if carrier == Subscribe && self.subscription_identifiers.len() > 1 {
            return Err(CodecError::protocol("SUBSCRIBE with more than one subscription identifier"));
        }
        Ok(())
    }

    /// Reads a property block: its length, then the properties.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let len = r.varint("property length")? as usize;
        let mut r = r.sub(len, "properties")?;
        let mut p = Properties::default();
        while !r.is_empty() {
            p.read_one(&mut r)?;
        }
        Ok(p)
    }

    fn read_one(&mut self, r: &mut Reader<'_>) -> Result<(), CodecError> {
        let id = r.varint("property identifier")?;
        match id {
            0x01 => once(
                &mut self.payload_format_indicator,
                flag(r.u8("payload format")?, "payload format")?,
                "payload format",
            ),
            0x02 => once(&mut self.message_expiry_interval, r.u32("message expiry")?, "message expiry interval"),
            0x03 => once(&mut self.content_type, r.string("content type")?, "content type"),
            0x08 => once(&mut self.response_topic, r.string("response topic")?, "response topic"),
            0x09 => once(&mut self.correlation_data, r.binary("correlation data")?, "correlation data"),
            0x0B => {
                let id = r.varint("subscription identifier")?;
                if id == 0 {
                    return Err(CodecError::protocol("subscription identifier 0"));
                }
                self.subscription_identifiers.push(id);
                Ok(())
            }
            0x11 => once(&mut self.session_expiry_interval, r.u32("session expiry")?, "session expiry interval"),
            0x12 => once(
                &mut self.assigned_client_identifier,
                r.string("assigned client id")?,
                "assigned client identifier",
            ),
            0x13 => once(&mut self.server_keep_alive, r.u16("server keep alive")?, "server keep alive"),
            0x15 => once(&mut self.authentication_method, r.string("authentication method")?, "authentication method"),
            0x16 => once(&mut self.authentication_data, r.binary("authentication data")?, "authentication data"),
            0x17 => once(
                &mut self.request_problem_information,
                flag(r.u8("request problem information")?, "request problem information")?,
                "request problem information",
            ),
            0x18 => once(&mut self.will_delay_interval, r.u32("will delay")?, "will delay interval"),
            0x19 => once(
                &mut self.request_response_information,
                flag(r.u8("request response information")?, "request response information")?,
                "request response information",
            ),
            0x1A => once(&mut self.response_information, r.string("response information")?, "response information"),
            0x1C => once(&mut self.server_reference, r.string("server reference")?, "server reference"),
            0x1F => once(&mut self.reason_string, r.string("reason string")?, "reason string"),
            0x21 => match r.u16("receive maximum")? {
                0 => Err(CodecError::protocol("receive maximum 0")),
                v => once(&mut self.receive_maximum, v, "receive maximum"),
            },
            0x22 => once(&mut self.topic_alias_maximum, r.u16("topic alias maximum")?, "topic alias maximum"),
            0x23 => once(&mut self.topic_alias, r.u16("topic alias")?, "topic alias"),
            0x24 => once(&mut self.maximum_qos, flag(r.u8("maximum qos")?, "maximum qos")?, "maximum qos"),
            0x25 => once(
                &mut self.retain_available,
                flag(r.u8("retain available")?, "retain available")?,
                "retain available",
            ),
            0x26 => {
                let pair = (r.string("user property name")?, r.string("user property value")?);
                self.user_properties.push(pair);
                Ok(())
            }
            0x27 => match r.u32("maximum packet size")? {
                0 => Err(CodecError::protocol("maximum packet size 0")),
                v => once(&mut self.maximum_packet_size, v, "maximum packet size"),
            },
            0x28 => once(
                &mut self.wildcard_subscription_available,
                flag(r.u8("wildcard available")?, "wildcard subscription available")?,
                "wildcard subscription available",
            ),
            0x29 => once(
                &mut self.subscription_identifier_available,
                flag(r.u8("sub id available")?, "subscription identifier available")?,
                "subscription identifier available",
            ),
            0x2A => once(
                &mut self.shared_subscription_available,
                flag(r.u8("shared available")?, "shared subscription available")?,
                "shared subscription available",
            ),
            other => Err(CodecError::malformed(format!("unknown property identifier 0x{other:02x}"))),
        }
    }

    /// Writes the property block: its length, then the properties.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::new();
        self.encode_body(&mut body);
        put_varint(out, body.len() as u32);
        out.extend_from_slice(&body);
    }

    fn encode_body(&self, b: &mut Vec<u8>) {
        let u8p = |b: &mut Vec<u8>, id: u8, v: Option<u8>| v.into_iter().for_each(|v| b.extend_from_slice(&[id, v]));
        let u16p = |b: &mut Vec<u8>, id: u8, v: Option<u16>| {
            v.into_iter().for_each(|v| {
                b.put_u8(id);
                b.put_u16(v)
            })
        };
        let u32p = |b: &mut Vec<u8>, id: u8, v: Option<u32>| {
            v.into_iter().for_each(|v| {
                b.put_u8(id);
                b.put_u32(v)
            })
        };
        let strp = |b: &mut Vec<u8>, id: u8, v: &Option<String>| {
            v.iter().for_each(|v| {
                b.put_u8(id);
                put_string(b, v)
            })
        };
        let binp = |b: &mut Vec<u8>, id: u8, v: &Option<Bytes>| {
            v.iter().for_each(|v| {
                b.put_u8(id);
                put_binary(b, v)
            })
        };
        u8p(b, 0x01, self.payload_format_indicator);
        u32p(b, 0x02, self.message_expiry_interval);
        strp(b, 0x03, &self.content_type);
        strp(b, 0x08, &self.response_topic);
        binp(b, 0x09, &self.correlation_data);
        for id in &self.subscription_identifiers {
            b.put_u8(0x0B);
            put_varint(b, *id);
        }
        u32p(b, 0x11, self.session_expiry_interval);
        strp(b, 0x12, &self.assigned_client_identifier);
        u16p(b, 0x13, self.server_keep_alive);
        strp(b, 0x15, &self.authentication_method);
        binp(b, 0x16, &self.authentication_data);
        u8p(b, 0x17, self.request_problem_information);
        u32p(b, 0x18, self.will_delay_interval);
        u8p(b, 0x19, self.request_response_information);
        strp(b, 0x1A, &self.response_information);
        strp(b, 0x1C, &self.server_reference);
        strp(b, 0x1F, &self.reason_string);
        u16p(b, 0x21, self.receive_maximum);
        u16p(b, 0x22, self.topic_alias_maximum);
        u16p(b, 0x23, self.topic_alias);
        u8p(b, 0x24, self.maximum_qos);
        u8p(b, 0x25, self.retain_available);
        for (name, value) in &self.user_properties {
            b.put_u8(0x26);
            put_string(b, name);
            put_string(b, value);
        }
        u32p(b, 0x27, self.maximum_packet_size);
        u8p(b, 0x28, self.wildcard_subscription_available);
        u8p(b, 0x29, self.subscription_identifier_available);
        u8p(b, 0x2A, self.shared_subscription_available);
    }
}
