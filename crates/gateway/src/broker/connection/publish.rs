//! Inbound PUBLISHes: checked, batched per read, recorded (pipelined, up to
//! the receive maximum), then acknowledged and routed in order.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use glassbox_core::{Data, DisconnectReason, Draft, DropReason, State};
use glassbox_store::{Appended, StoreError};

use super::{Connection, lock};
use crate::broker::message::Message;
use crate::broker::router::route;
use crate::codec::{Ack, Packet, Properties, Protocol, Publish, QoS};
use crate::topic::validate_name;

/// A PUBLISH being recorded, and what to answer once it is.
pub(super) struct Inbound {
    publish: Publish,
    /// Accepted on the wire but not delivered: drop reason, detail, 5.0 code.
    refused: Option<(DropReason, String, u8)>,
}

pub(super) type Recording = Pin<Box<dyn Future<Output = (Vec<Inbound>, Result<Vec<Appended>, StoreError>)> + Send>>;

/// The event a PUBLISH (or a will) becomes.
pub(super) fn draft(client_id: &str, device: Option<&str>, publish: &Publish) -> Draft {
    let p = &publish.properties;
    let user = |name: &str| p.user_properties.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let json = std::str::from_utf8(&publish.payload)
        .ok()
        .and_then(|text| serde_json::value::RawValue::from_string(text.to_string()).ok());
    let (data, content_type) = match json {
        Some(raw) => (Data::Json(raw), Some("application/json".to_string())),
        None if publish.payload.is_empty() => (Data::None, None),
        None => (Data::Binary(publish.payload.to_vec()), Some("application/octet-stream".to_string())),
    };
    Draft {
        source: format!("mqtt/{client_id}"),
        ty: "device.message".into(),
        subject: Some(publish.topic.clone()),
        datacontenttype: p.content_type.clone().or(content_type),
        correlationid: user("correlationid"),
        traceparent: user("traceparent").filter(|tp| glassbox_core::TraceParent::parse(tp).is_ok()),
        device: device.map(str::to_string),
        data,
        ..Draft::default()
    }
}

impl Connection {
    /// Checks a PUBLISH and adds it to the batch being read.
    pub(super) async fn publish(&mut self, mut publish: Publish) -> Result<(), DisconnectReason> {
        if let Some(alias) = publish.properties.topic_alias.take() {
            if alias == 0 || alias > self.shared.settings.topic_alias_max {
                return Err(DisconnectReason::ProtocolError);
            }
            match publish.topic.is_empty() {
                true => publish.topic = self.aliases.get(&alias).cloned().ok_or(DisconnectReason::ProtocolError)?,
                false => drop(self.aliases.insert(alias, publish.topic.clone())),
            }
        }
        if validate_name(&publish.topic).is_err() {
            return Err(DisconnectReason::ProtocolError);
        }
        if let Some(id) = publish.packet_id {
            if publish.qos == QoS::ExactlyOnce && lock(&self.session).awaiting_release.contains(&id) {
                // A resent QoS 2 PUBLISH already recorded: acknowledge again, record nothing.
                return self.reply(Packet::PubRec(Ack::new(id))).await;
            }
            if !self.unanswered_ids.insert(id) {
                // A resend of one being recorded is answered when it is; a new
                // message may not reuse an id in flight.
                return if publish.dup { Ok(()) } else { Err(DisconnectReason::ProtocolError) };
            }
            let window = usize::from(self.shared.settings.inflight_max);
            if publish.qos == QoS::ExactlyOnce && lock(&self.session).awaiting_release.len() >= window {
                return Err(DisconnectReason::ProtocolError);
            }
        }
        let refused = match self.shared.acl.check_publish(&self.principal, &publish.topic) {
            Err(denied) => Some((DropReason::AclDenied, denied.to_string(), 0x87)),
            Ok(()) if !self.rate.allow() => {
                let limit = self.shared.settings.publish_rate_max;
                Some((DropReason::RateLimited, format!("over the device publish rate of {limit}/s"), 0x96))
            }
            Ok(()) => None,
        };
        self.unanswered += 1;
        self.batch.push(Inbound { publish, refused });
        Ok(())
    }

    pub(super) fn start_recording(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let device = self.device().map(str::to_string);
        let drafts: Vec<Draft> = batch.iter().map(|i| draft(&self.client_id, device.as_deref(), &i.publish)).collect();
        let recorder = self.shared.recorder.clone();
        self.recording.push_back(Box::pin(async move {
            let result = recorder.ingest(drafts, "mqtt").await;
            (batch, result)
        }));
    }

    /// Answers a recorded batch in order, then routes it.
    pub(super) async fn answer(
        &mut self,
        batch: Vec<Inbound>,
        result: Result<Vec<Appended>, StoreError>,
    ) -> Result<(), DisconnectReason> {
        self.unanswered -= batch.len();
        let appended = result.map_err(|e| {
            tracing::error!(error = %e, client = %self.client_id, "could not record PUBLISHes; closing so the client resends them");
            DisconnectReason::ServerBusy
        })?;
        let now = SystemTime::now();
        let mut ops = Vec::new();
        // Recorded is recorded: route every message even if the client has gone.
        let mut answered = Ok(());
        for (inbound, appended) in batch.into_iter().zip(appended) {
            let Inbound { publish, refused } = inbound;
            if let Some(id) = publish.packet_id {
                self.unanswered_ids.remove(&id);
                let reason = match (&refused, self.protocol) {
                    (Some((_, _, code)), Protocol::V5) => *code,
                    _ => 0,
                };
                let ack = Ack { packet_id: id, reason, properties: Properties::default() };
                let packet = match publish.qos {
                    QoS::ExactlyOnce => {
                        lock(&self.session).awaiting_release.insert(id);
                        Packet::PubRec(ack)
                    }
                    _ => Packet::PubAck(ack),
                };
                if answered.is_ok() {
                    answered = self.reply(packet).await;
                }
            }
            let Ok(event) = appended.id.parse() else { continue };
            if let Some((reason, detail, _)) = refused {
                let target = if reason == DropReason::AclDenied { "acl" } else { "gateway" };
                self.shared.deliveries.note(event, State::Dropped, target, Some(format!("{reason}: {detail}")));
                continue;
            }
            let message = Arc::new(Message::new(event, &publish, self.client_id.clone(), now));
            if publish.retain {
                ops.extend(self.shared.router.retain(&message, &self.shared.deliveries));
            }
            ops.extend(route(&self.shared, &message, publish.retain));
            if let (Some(reserved), Some(rest)) = (self.shared.reserved.get(), self.reserved_rest(&publish.topic)) {
                let device = self.device().unwrap_or_default().to_string();
                let correlation = publish.properties.correlation_data.as_deref();
                reserved.published(&device, &rest, &publish.payload, correlation, event).await;
            }
        }
        self.shared.persist(ops).await;
        answered
    }

    /// For a device's own reserved topic, what follows `$glassbox/devices/<id>/`.
    fn reserved_rest(&self, topic: &str) -> Option<String> {
        let device = self.device()?;
        let rest = topic.strip_prefix(crate::acl::RESERVED_PREFIX)?.strip_prefix(device)?.strip_prefix('/')?;
        Some(rest.to_string())
    }
}

/// Publishes per second, with a burst of one second's worth.
pub(super) struct RateLimit {
    pub rate: f64,
    pub tokens: f64,
    pub last: Instant,
}

impl RateLimit {
    pub(super) fn allow(&mut self) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        false
    }
}
