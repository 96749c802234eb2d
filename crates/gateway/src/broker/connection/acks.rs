//! Subscribers' acknowledgements of what the broker sent: PUBACK, PUBREC
//! (then PUBREL), PUBCOMP. Each completes a delivery's recorded states.

use glassbox_core::{DisconnectReason, State};

use super::{Connection, lock};
use crate::codec::{Ack, Packet, Properties, Protocol, QoS};

impl Connection {
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) from the subscriber.
    pub(super) async fn acknowledged(&mut self, packet_id: u16, qos: QoS) -> Result<(), DisconnectReason> {
        let mut ops = Vec::new();
        let mut from_platform = None;
        {
            let mut s = lock(&self.session);
            let done = s
                .inflight
                .get(&packet_id)
                .is_some_and(|f| f.delivery.qos == qos && (qos == QoS::AtLeastOnce || f.released));
            // An acknowledgement for nothing in flight (or of another QoS) is ignored.
            let Some(flight) = done.then(|| s.inflight.remove(&packet_id)).flatten() else { return Ok(()) };
            let message = &flight.delivery.message;
            if qos == QoS::AtLeastOnce {
                self.shared.deliveries.note(message.event, State::Delivered, &self.client_id, None);
                from_platform = (&*message.publisher == crate::broker::PLATFORM).then_some(message.event);
            }
            s.forget(&flight.delivery, &mut ops);
        }
        self.platform_acknowledged(from_platform).await;
        self.wake.notify_one();
        self.shared.persist(ops).await;
        Ok(())
    }

    /// Tells the platform its message reached the device.
    async fn platform_acknowledged(&mut self, event: Option<glassbox_core::EventId>) {
        let reserved = self.shared.reserved.get();
        if let (Some(event), Some(reserved), Some(device), Some(by)) = (event, reserved, self.device(), &self.principal)
        {
            reserved.acknowledged(device, by, event).await;
        }
    }

    /// PUBREC: the subscriber has a QoS 2 message; release it.
    pub(super) async fn received_by_subscriber(&mut self, ack: Ack) -> Result<(), DisconnectReason> {
        let mut ops = Vec::new();
        let mut from_platform = None;
        let reply = {
            let mut s = lock(&self.session);
            let event = match s.inflight.get_mut(&ack.packet_id) {
                Some(flight) if flight.delivery.qos == QoS::ExactlyOnce => {
                    flight.released = true;
                    Some(flight.delivery.message.event)
                }
                _ => None,
            };
            match (event, ack.reason) {
                (None, _) => Some(0x92),
                (Some(event), code) if code >= 0x80 => {
                    let detail = format!("the subscriber refused it (reason code {code:#04x})");
                    self.shared.deliveries.note(event, State::Delivered, &self.client_id, Some(detail));
                    if let Some(flight) = s.inflight.remove(&ack.packet_id) {
                        s.forget(&flight.delivery, &mut ops);
                    }
                    None
                }
                (Some(event), _) => {
                    self.shared.deliveries.note(event, State::Delivered, &self.client_id, None);
                    let publisher = s.inflight.get(&ack.packet_id).map(|f| f.delivery.message.publisher.clone());
                    from_platform = publisher.filter(|p| &**p == crate::broker::PLATFORM).map(|_| event);
                    Some(0)
                }
            }
        };
        self.platform_acknowledged(from_platform).await;
        self.shared.persist(ops).await;
        match reply {
            Some(code) => {
                let reason = if self.protocol == Protocol::V5 { code } else { 0 };
                let rel = Ack { packet_id: ack.packet_id, reason, properties: Properties::default() };
                self.reply(Packet::PubRel(rel)).await
            }
            None => {
                self.wake.notify_one();
                Ok(())
            }
        }
    }
}
