//! SUBSCRIBE and UNSUBSCRIBE: ACL checks, the session's subscriptions, and
//! retained messages for new ones.

use std::time::SystemTime;

use glassbox_core::{DisconnectReason, DropReason, SubscribeDenied};

use glassbox_store::SessionOp;

use super::{Connection, lock, record_lifecycle};
use crate::broker::message::Delivery;
use crate::broker::refusals::truncate;
use crate::broker::session::SubOptions;
use crate::codec::{Packet, Properties, Protocol, RetainHandling, SubAck, Subscribe, UnsubAck, Unsubscribe};
use crate::topic::parse_filter;

/// SUBACK reason (5.0) for a subscription over `mqtt.subscriptions_max`.
const QUOTA_EXCEEDED: u8 = 0x97;

impl Connection {
    pub(super) async fn subscribe(&mut self, subscribe: Subscribe) -> Result<(), DisconnectReason> {
        let id = subscribe.properties.subscription_identifiers.first().copied();
        let now = SystemTime::now();
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        let mut ops = Vec::new();
        let mut over_quota = Vec::new();
        for (filter, options) in &subscribe.filters {
            let code = match parse_filter(filter) {
                Err(_) => 0x8F,
                Ok(parsed) if parsed.share.is_some() && options.no_local => 0x8F,
                Ok(parsed) => match self.shared.acl.check_subscribe(&self.role, parsed.filter) {
                    Err(denied) => {
                        let data = SubscribeDenied {
                            filter: filter.clone(),
                            reason: DropReason::AclDenied.to_string(),
                            detail: denied.to_string(),
                            refused: None,
                        };
                        record_lifecycle(&self.shared, self.device(), &self.client_id, &data).await;
                        0x87
                    }
                    Ok(()) => {
                        let sub = SubOptions {
                            qos: options.qos as u8,
                            no_local: options.no_local,
                            retain_as_published: options.retain_as_published,
                            id,
                        };
                        match self.add_subscription(filter, &sub, &mut ops) {
                            None => {
                                over_quota.push(filter.as_str());
                                QUOTA_EXCEEDED
                            }
                            Some(new) => {
                                self.shared.router.subscribe(&self.client_id, filter, sub);
                                let send_retained = match options.retain_handling {
                                    RetainHandling::SendAtSubscribe => true,
                                    RetainHandling::SendIfNew => new,
                                    RetainHandling::DoNotSend => false,
                                };
                                if send_retained && parsed.share.is_none() {
                                    retained.extend(
                                        self.shared
                                            .router
                                            .retained_matching(parsed.filter, now)
                                            .into_iter()
                                            .map(|message| (message, options.qos)),
                                    );
                                }
                                options.qos as u8
                            }
                        }
                    }
                },
            };
            // 3.1.1 has a single failure code.
            reasons.push(if self.protocol == Protocol::V311 && code >= 0x80 { 0x80 } else { code });
        }
        self.reply(Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            properties: Properties::default(),
            reasons,
        }))
        .await?;
        if let Some(first) = over_quota.first() {
            let max = self.shared.settings.subscriptions_max;
            let data = SubscribeDenied {
                filter: truncate(first, 128).to_string(),
                reason: "quota_exceeded".into(),
                detail: format!(
                    "the session holds {max} subscriptions (mqtt.subscriptions_max); unsubscribe some first"
                ),
                refused: Some(over_quota.len() as u64),
            };
            record_lifecycle(&self.shared, self.device(), &self.client_id, &data).await;
        }
        if let (Some(reserved), Some(device)) = (self.shared.reserved.get().cloned(), self.device().map(str::to_string))
        {
            let own = format!("{}{device}/", crate::acl::RESERVED_PREFIX);
            for (filter, _) in subscribe.filters.iter().filter(|(f, _)| f.starts_with(&own)) {
                reserved.subscribed(&device, filter).await;
            }
        }
        {
            let mut s = lock(&self.session);
            for (message, qos) in retained {
                let delivery = Delivery {
                    seq: 0,
                    qos: qos.min(message.qos),
                    message,
                    retain: true,
                    subscription_ids: id.into_iter().collect(),
                    persisted: false,
                };
                s.offer(delivery, &self.shared.deliveries, &mut ops);
            }
        }
        self.shared.persist(ops).await;
        Ok(())
    }

    /// Adds or replaces a subscription of the session, within
    /// `subscriptions_max`: whether it is new, `None` if over the bound.
    fn add_subscription(&self, filter: &str, sub: &SubOptions, ops: &mut Vec<SessionOp>) -> Option<bool> {
        let mut s = lock(&self.session);
        let new = !s.subscriptions.contains_key(filter);
        if new && s.subscriptions.len() >= self.shared.settings.subscriptions_max {
            return None;
        }
        if s.persistent() {
            ops.push(s.subscribed(filter, sub));
        }
        s.subscriptions.insert(filter.to_string(), sub.clone());
        Some(new)
    }

    pub(super) async fn unsubscribe(&mut self, unsubscribe: Unsubscribe) -> Result<(), DisconnectReason> {
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        let mut ops = Vec::new();
        {
            let mut s = lock(&self.session);
            for filter in &unsubscribe.filters {
                let had = s.subscriptions.remove(filter).is_some();
                self.shared.router.unsubscribe(&self.client_id, filter);
                if had && s.persistent() {
                    ops.push(s.unsubscribed(filter));
                }
                reasons.push(if had { 0x00 } else { 0x11 });
            }
        }
        self.shared.persist(ops).await;
        let reasons = if self.protocol == Protocol::V5 { reasons } else { Vec::new() };
        self.reply(Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            properties: Properties::default(),
            reasons,
        }))
        .await
    }
}
