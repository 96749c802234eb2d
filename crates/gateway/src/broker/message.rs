//! A message on its way through the broker, and its durable encoding.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use glassbox_core::EventId;

use crate::codec::{Packet, Properties, Protocol, Publish, QoS, decode, encode};

/// A recorded PUBLISH (or will), shared by every delivery of it.
#[derive(Debug)]
pub(crate) struct Message {
    pub event: EventId,
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    /// The 5.0 properties forwarded to subscribers: payload format,
    /// content type, response topic, correlation data, user properties.
    pub properties: Properties,
    /// From the 5.0 message expiry interval.
    pub expires_at: Option<SystemTime>,
    /// The publishing client, for the `no_local` option.
    pub publisher: Arc<str>,
}

impl Message {
    pub fn new(event: EventId, publish: &Publish, publisher: Arc<str>, now: SystemTime) -> Self {
        let p = &publish.properties;
        let properties = Properties {
            payload_format_indicator: p.payload_format_indicator,
            content_type: p.content_type.clone(),
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.clone(),
            user_properties: p.user_properties.clone(),
            ..Properties::default()
        };
        Self {
            event,
            topic: publish.topic.clone(),
            payload: publish.payload.clone(),
            qos: publish.qos,
            properties,
            expires_at: p.message_expiry_interval.map(|s| now + Duration::from_secs(u64::from(s))),
            publisher,
        }
    }

    pub fn expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Bytes counted against queue bounds.
    pub fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

/// One delivery of a message to one session, as queued.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// Orders the session's queue, in memory and on disk.
    pub seq: u64,
    pub message: Arc<Message>,
    /// The granted QoS: the lower of the message's and the subscription's.
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    /// True once written to the session store.
    pub persisted: bool,
}

impl Delivery {
    /// The PUBLISH for this delivery, its expiry counted down to `now`.
    pub fn publish(&self, packet_id: Option<u16>, dup: bool, protocol: Protocol, now: SystemTime) -> Publish {
        let m = &self.message;
        let properties = match protocol {
            Protocol::V311 => Properties::default(),
            Protocol::V5 => Properties {
                message_expiry_interval: m
                    .expires_at
                    .map(|at| at.duration_since(now).unwrap_or_default().as_secs_f64().ceil() as u32),
                subscription_identifiers: self.subscription_ids.clone(),
                ..m.properties.clone()
            },
        };
        Publish {
            dup,
            qos: self.qos,
            retain: self.retain,
            topic: m.topic.clone(),
            packet_id,
            properties,
            payload: m.payload.clone(),
        }
    }

    /// The durable form: event id, absolute expiry (ms since the epoch, 0
    /// for none), then the delivery as an MQTT 5.0 PUBLISH.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.message.size());
        out.extend_from_slice(&self.message.event.to_bytes());
        let expires =
            self.message.expires_at.map_or(0, |at| at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis());
        out.extend_from_slice(&(expires as u64).to_be_bytes());
        let mut publish = self.publish(None, false, Protocol::V5, SystemTime::UNIX_EPOCH);
        publish.properties.message_expiry_interval = None;
        publish.packet_id = (self.qos != QoS::AtMostOnce).then_some(1);
        encode(&Packet::Publish(publish), Protocol::V5, &mut out);
        out
    }

    /// Reads [`Delivery::encode`]'s output; `None` if it is damaged.
    pub fn decode(seq: u64, bytes: &[u8]) -> Option<Self> {
        let event = EventId::from_bytes(bytes.get(..16)?.try_into().ok()?);
        let expires = u64::from_be_bytes(bytes.get(16..24)?.try_into().ok()?);
        let Ok(Some((Packet::Publish(publish), _))) = decode(&bytes[24..], Protocol::V5, usize::MAX) else {
            return None;
        };
        let now = SystemTime::now();
        let mut message = Message::new(event, &publish, Arc::from(""), now);
        message.expires_at = (expires > 0).then(|| UNIX_EPOCH + Duration::from_millis(expires));
        Some(Self {
            seq,
            qos: publish.qos,
            retain: publish.retain,
            subscription_ids: publish.properties.subscription_identifiers,
            message: Arc::new(message),
            persisted: true,
        })
    }
}
