//! Inbound PUBLISHes: checked, batched per read, recorded (pipelined, up to
//! the receive maximum), routed in order once committed, then acknowledged
//! in order once on disk and once what routing queued for stored sessions
//! is committed (pipelined too).

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use glassbox_core::{DEVICE_MESSAGE, Data, DisconnectReason, Draft, DropReason, EventId, PublishRefused, State};
use glassbox_store::{Appended, Committed, SessionOp, StoreError};

use super::{Connection, lock};
use crate::broker::message::Message;
use crate::broker::router::route;
use crate::codec::{Ack, Packet, Properties, Protocol, Publish, QoS};
use crate::topic::validate_name;

/// A PUBLISH being recorded, and what to answer once it is.
pub(super) struct Inbound {
    publish: Publish,
    refused: Option<Refusal>,
}

/// Why a PUBLISH accepted on the wire is not delivered, and whether it is
/// recorded on its own (a rate-limited flood is counted instead).
pub(super) struct Refusal {
    pub reason: DropReason,
    pub detail: String,
    /// The MQTT 5.0 reason code in its acknowledgement.
    pub code: u8,
    /// `Some(n)`: recorded as its own event, `n` refusals before it counted only.
    pub recorded: Option<u64>,
}

/// A recorded batch, routed: the acknowledgements to send once what it
/// queued for stored sessions is committed, and the messages on reserved
/// topics to hand to the platform then.
pub(super) struct Routed {
    /// PUBLISHes in the batch: they count against the receive maximum until answered.
    count: usize,
    /// PUBACKs and PUBRECs, with their packet ids.
    acks: Vec<(u16, Packet)>,
    reserved: Vec<(String, Publish, EventId)>,
}

pub(super) type Recording = Pin<Box<dyn Future<Output = (Vec<Inbound>, Result<Committed, StoreError>)> + Send>>;

/// A routed batch waiting for the disk and for the session store's commit.
pub(super) type Committing = Pin<Box<dyn Future<Output = (Routed, Result<(), StoreError>)> + Send>>;

/// The source of what client `client_id` publishes.
pub(super) fn source_of(client_id: &str) -> String {
    format!("mqtt/{client_id}")
}

/// The event a PUBLISH (or a will) becomes; `source` is [`source_of`] its client.
pub(super) fn draft(source: &str, device: Option<&str>, publish: &Publish) -> Draft {
    let p = &publish.properties;
    let user = |name: &str| p.user_properties.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    // JSON no reader could parse back (too deep, a lone surrogate) is kept as bytes.
    let json = std::str::from_utf8(&publish.payload).ok().and_then(|text| Data::json_text(text).ok());
    let (data, content_type) = match json {
        Some(data) => (data, Some("application/json".to_string())),
        None if publish.payload.is_empty() => (Data::None, None),
        None => (Data::Binary(publish.payload.to_vec()), Some("application/octet-stream".to_string())),
    };
    Draft {
        source: source.to_string(),
        ty: DEVICE_MESSAGE.into(),
        subject: Some(publish.topic.clone()),
        datacontenttype: p.content_type.clone().or(content_type),
        correlationid: user("correlationid"),
        traceparent: user("traceparent").filter(|tp| glassbox_core::TraceParent::parse(tp).is_ok()),
        device: device.map(str::to_string),
        data,
        ..Draft::default()
    }
}

/// What is recorded of a refused PUBLISH (or will): its topic and size, not its payload.
pub(super) fn refused_data(publish: &Publish, refusal: &Refusal) -> PublishRefused {
    PublishRefused {
        topic: publish.topic.clone(),
        qos: publish.qos as u8,
        retain: publish.retain,
        bytes: publish.payload.len(),
        reason: refusal.reason,
        detail: refusal.detail.clone(),
        unrecorded: refusal.recorded.unwrap_or_default(),
    }
}

/// The event a refused PUBLISH (or will) becomes.
pub(super) fn refused_draft(source: &str, device: Option<&str>, data: &PublishRefused) -> Draft {
    Draft { subject: Some(data.topic.clone()), device: device.map(str::to_string), ..Draft::payload(source, data) }
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
            if self.unanswered_ids.contains(&id) {
                // A resend of one being recorded is answered when it is; a new
                // message may not reuse an id in flight.
                return if publish.dup { Ok(()) } else { Err(DisconnectReason::ProtocolError) };
            }
            self.within_receive_maximum(publish.qos)?;
            self.unanswered_ids.insert(id);
        }
        let refused = self.refusal(&publish.topic);
        self.unanswered += 1;
        self.batch.push(Inbound { publish, refused });
        Ok(())
    }

    /// MQTT 5.0 §3.3.4: a client may have at most the receive maximum the
    /// CONNACK announced (`mqtt.inflight_max`) QoS 1 and 2 PUBLISHes
    /// unanswered — QoS 1 until its PUBACK, QoS 2 until its PUBCOMP (so
    /// while awaiting its PUBREL too). One more ends the connection with
    /// 0x93, rather than piling up QoS 2 state or leaving the client
    /// waiting. A 3.1.1 client is told no maximum: its QoS 1 PUBLISHes are
    /// held back by the gateway reading no more until it has answered, and
    /// only QoS 2 ones awaiting release beyond the maximum close it.
    fn within_receive_maximum(&self, qos: QoS) -> Result<(), DisconnectReason> {
        let window = usize::from(self.shared.settings.inflight_max);
        let awaiting_release = lock(&self.session).awaiting_release.len();
        let unanswered = match self.protocol {
            Protocol::V5 => self.unanswered_ids.len() + awaiting_release,
            Protocol::V311 if qos == QoS::ExactlyOnce => awaiting_release,
            Protocol::V311 => 0,
        };
        match unanswered >= window {
            true => Err(DisconnectReason::ReceiveMaximumExceeded),
            false => Ok(()),
        }
    }

    /// Why a PUBLISH to `topic` is refused, if it is. Every PUBLISH counts
    /// against the device's rate; over it, one refusal per interval is
    /// recorded and the others are counted into the next one recorded.
    fn refusal(&mut self, topic: &str) -> Option<Refusal> {
        if !self.rate.allow() {
            let limit = self.shared.settings.publish_rate_max;
            let detail = format!("over the device publish rate of {limit}/s");
            let recorded = self.rate.refused(topic);
            return Some(Refusal { reason: DropReason::RateLimited, detail, code: 0x96, recorded });
        }
        if let Err(denied) = self.shared.acl.check_publish(&self.role, topic) {
            return Some(Refusal {
                reason: DropReason::AclDenied,
                detail: denied.to_string(),
                code: 0x87,
                recorded: Some(0),
            });
        }
        self.over_budget(topic)
    }

    pub(super) fn start_recording(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let device = self.device().map(str::to_string);
        let drafts: Vec<Draft> = batch
            .iter()
            .filter_map(|i| match &i.refused {
                None => Some(draft(&self.source, device.as_deref(), &i.publish)),
                Some(refusal) if refusal.recorded.is_some() => {
                    Some(refused_draft(&self.source, device.as_deref(), &refused_data(&i.publish, refusal)))
                }
                Some(_) => None,
            })
            .collect();
        if drafts.is_empty() {
            // Nothing to record (all counted refusals): answer in order all the same.
            self.recording.push_back(Box::pin(async move { (batch, Ok(Committed::unanswered(Vec::new()))) }));
            return;
        }
        // QoS 0 only: nobody is answered, so nothing waits for the disk.
        let answered = batch.iter().any(|i| i.publish.packet_id.is_some());
        let recorder = self.shared.recorder.clone();
        self.recording.push_back(Box::pin(async move {
            let result = match answered {
                true => recorder.ingest_committed(drafts, "mqtt").await,
                false => recorder.ingest_unanswered(drafts, "mqtt").await.map(Committed::unanswered),
            };
            (batch, result)
        }));
    }

    /// Routes a committed batch, then acknowledges it once it is on disk
    /// and what routing queued for stored sessions is committed: a PUBACK
    /// (PUBREC) is sent only when the message is on disk in the recorder
    /// and committed in every stored session it was queued for, so a crash
    /// of the process after it loses nothing acknowledged (issue 17).
    /// Subscribers get it sooner, once committed (decision 0031): a crash
    /// of the machine before the disk has it loses a message nobody was
    /// answered for, which its publisher sends again. Both waits are
    /// pipelined: reading goes on meanwhile, and batches are answered in
    /// order.
    pub(super) async fn answer(
        &mut self,
        batch: Vec<Inbound>,
        result: Result<Committed, StoreError>,
    ) -> Result<(), DisconnectReason> {
        let Committed { appended, durable } = result.map_err(|e| {
            self.unanswered -= batch.len();
            tracing::error!(error = %e, client = %self.client_id, "could not record PUBLISHes; closing so the client resends them");
            DisconnectReason::ServerBusy
        })?;
        // Recorded is recorded: route every message even if the client has gone.
        let (routed, mut ops) = self.route_batch(batch, appended);
        if routed.acks.is_empty() {
            // QoS 0 only: no acknowledgement waits for the store.
            self.shared.persist(std::mem::take(&mut ops)).await;
        }
        if ops.is_empty() && !durable.waits() && self.committing.is_empty() {
            return self.acknowledge(routed, Ok(())).await;
        }
        let store = self.shared.store.clone();
        let mut commit = Box::pin(async move {
            let (stored, durable) = futures::join!(store.commit(ops), durable);
            stored.and(durable)
        });
        // Started now, so its changes reach the sessions writer before any this
        // connection makes later (a later eviction's removal must not overtake them).
        self.committing.push_back(match futures::poll!(commit.as_mut()) {
            Poll::Ready(committed) => Box::pin(std::future::ready((routed, committed))),
            Poll::Pending => Box::pin(async move { (routed, commit.await) }),
        });
        Ok(())
    }

    /// Sends a routed batch's acknowledgements, in order, unless it could
    /// not be put on disk or its session changes could not be stored; then
    /// hands its reserved-topic messages to the platform.
    pub(super) async fn acknowledge(
        &mut self,
        routed: Routed,
        committed: Result<(), StoreError>,
    ) -> Result<(), DisconnectReason> {
        self.unanswered -= routed.count;
        if let Err(e) = committed {
            tracing::error!(error = %e, client = %self.client_id, "could not make PUBLISHes durable (in the recorder, or as deliveries to persistent sessions); closing without acknowledging so the client resends them");
            return Err(DisconnectReason::ServerBusy);
        }
        let mut answered = Ok(());
        for (id, ack) in routed.acks {
            self.unanswered_ids.remove(&id);
            // Recorded: a resend is answered again, not recorded again. A 5.0
            // PUBREC of 0x80 or more (refused) ends the exchange instead: no
            // PUBREL follows, and the client may reuse the id at once.
            if let Packet::PubRec(rec) = &ack
                && rec.reason < 0x80
            {
                lock(&self.session).awaiting_release.insert(id);
            }
            if answered.is_ok() {
                answered = self.reply(ack).await;
            }
        }
        for (rest, publish, event) in routed.reserved {
            if let (Some(handler), Some(by)) = (self.shared.reserved.get(), &self.principal) {
                let published = glassbox_link::ReservedPublish {
                    device: self.device().unwrap_or_default(),
                    by,
                    rest: &rest,
                    payload: &publish.payload,
                    correlation: publish.properties.correlation_data.as_deref(),
                    event,
                };
                handler.published(published).await;
            }
        }
        answered
    }

    /// Hands each recorded message of a batch to its subscribers (refused
    /// ones are noted as dropped), in order; returns the acknowledgements
    /// to send and the session changes to store before them.
    fn route_batch(&mut self, batch: Vec<Inbound>, appended: Vec<Appended>) -> (Routed, Vec<SessionOp>) {
        let now = SystemTime::now();
        let mut routed = Routed { count: batch.len(), acks: Vec::new(), reserved: Vec::new() };
        let mut ops = Vec::new();
        let mut appended = appended.into_iter();
        for Inbound { publish, refused } in batch {
            if let Some(id) = publish.packet_id {
                routed.acks.push((id, self.acknowledgement(id, publish.qos, refused.as_ref())));
            }
            if refused.as_ref().is_some_and(|r| r.recorded.is_none()) {
                continue;
            }
            let Some(event) = appended.next().map(|a| a.id) else { continue };
            if let Some(Refusal { reason, detail, .. }) = refused {
                let target = if reason == DropReason::AclDenied { "acl" } else { "gateway" };
                self.shared.deliveries.note(event, State::Dropped, target, Some(format!("{reason}: {detail}")));
                continue;
            }
            let message = Arc::new(Message::new(event, &publish, self.client_id.clone(), now));
            if publish.retain {
                ops.extend(self.shared.router.retain(&message, &self.shared.deliveries));
            }
            ops.extend(route(&self.shared, &message, publish.retain));
            if let Some(rest) = self.reserved_rest(&publish.topic).filter(|_| self.shared.reserved.get().is_some()) {
                routed.reserved.push((rest, publish, event));
            }
        }
        (routed, ops)
    }

    /// The PUBACK (QoS 1) or PUBREC (QoS 2) of a PUBLISH, with the reason
    /// it was refused (5.0).
    fn acknowledgement(&self, packet_id: u16, qos: QoS, refused: Option<&Refusal>) -> Packet {
        let reason = match (refused, self.protocol) {
            (Some(refusal), Protocol::V5) => refusal.code,
            _ => 0,
        };
        let ack = Ack { packet_id, reason, properties: Properties::default() };
        match qos {
            QoS::ExactlyOnce => Packet::PubRec(ack),
            _ => Packet::PubAck(ack),
        }
    }

    /// Records the over-rate refusals counted since the last one recorded,
    /// when the connection closes.
    pub(super) async fn record_unrecorded_refusals(&mut self) {
        self.record_unrecorded_budget_refusals().await;
        let unrecorded = std::mem::take(&mut self.rate.unrecorded);
        if unrecorded == 0 {
            return;
        }
        let limit = self.shared.settings.publish_rate_max;
        let data = PublishRefused {
            topic: std::mem::take(&mut self.rate.unrecorded_topic),
            qos: 0,
            retain: false,
            bytes: 0,
            reason: DropReason::RateLimited,
            detail: format!("over the device publish rate of {limit}/s (counted until the connection closed)"),
            unrecorded: unrecorded - 1,
        };
        self.record_refusal_summary(data).await;
    }

    /// Records one `mqtt.publish_refused` standing for the refusals a
    /// connection counted without recording, dropped by the gateway.
    pub(super) async fn record_refusal_summary(&mut self, data: PublishRefused) {
        let draft = refused_draft(&self.source, self.device(), &data);
        match self.shared.recorder.ingest(vec![draft], "mqtt").await {
            Ok(appended) => {
                let detail = format!("{}: {}", data.reason, data.detail);
                for event in appended.iter().map(|a| a.id) {
                    self.shared.deliveries.note(event, State::Dropped, "gateway", Some(detail.clone()));
                }
            }
            Err(e) => tracing::warn!(error = %e, client = %self.client_id, "could not record refused publishes"),
        }
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
    /// When a refusal over the rate was last recorded, and how many were
    /// counted (not recorded) since.
    pub last_recorded: Option<Instant>,
    pub unrecorded: u64,
    /// The first topic among them, for the summary recorded at close.
    pub unrecorded_topic: String,
}

/// Over-rate refusals are recorded at most once per this interval per connection.
pub(super) const RATE_REFUSAL_INTERVAL: Duration = Duration::from_secs(10);

impl RateLimit {
    pub(super) fn new(rate: f64) -> Self {
        Self {
            rate,
            tokens: rate,
            last: Instant::now(),
            last_recorded: None,
            unrecorded: 0,
            unrecorded_topic: String::new(),
        }
    }

    /// Notes a refusal of a PUBLISH to `topic`: `Some(counted before it)`
    /// if this one is recorded.
    fn refused(&mut self, topic: &str) -> Option<u64> {
        let now = Instant::now();
        if self.last_recorded.is_some_and(|at| now.duration_since(at) < RATE_REFUSAL_INTERVAL) {
            self.unrecorded += 1;
            if self.unrecorded_topic.is_empty() {
                self.unrecorded_topic = topic.to_string();
            }
            return None;
        }
        self.unrecorded_topic.clear();
        self.last_recorded = Some(now);
        Some(std::mem::take(&mut self.unrecorded))
    }

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
