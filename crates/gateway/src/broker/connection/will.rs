//! Last wills: published when a connection ends without DISCONNECT, after
//! the will delay unless the session reconnects first.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use glassbox_core::{DropReason, State};

use super::publish::{Refusal, refused_data, refused_draft, source_of};
use super::{draft, lock};
use crate::acl::Role;
use crate::broker::Shared;
use crate::broker::message::Message;
use crate::broker::router::route;
use crate::broker::session::Session;
use crate::codec::{Publish, Will};

/// A will waiting for its delay; a reconnect of the session cancels it.
pub(super) struct PendingWill {
    pub shared: Arc<Shared>,
    pub session: Arc<Mutex<Session>>,
    pub epoch: u64,
    pub role: Role,
    pub client_id: Arc<str>,
    pub will: Will,
}

impl PendingWill {
    pub(super) async fn publish_after(self, delay: Duration) {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
            let s = lock(&self.session);
            if s.epoch != self.epoch || s.link.is_some() {
                return;
            }
        }
        let Will { topic, payload, qos, retain, mut properties } = self.will;
        properties.will_delay_interval = None;
        let publish = Publish { dup: false, qos, retain, topic, packet_id: None, properties, payload };
        let device = match &self.role {
            Role::Device(id) => Some(id.as_str()),
            _ => None,
        };
        let refused = self.shared.acl.check_publish(&self.role, &publish.topic).err().map(|denied| Refusal {
            reason: DropReason::AclDenied,
            detail: denied.to_string(),
            code: 0x87,
            recorded: Some(0),
        });
        let draft = match &refused {
            Some(refusal) => refused_draft(&source_of(&self.client_id), device, &refused_data(&publish, refusal)),
            None => draft(&source_of(&self.client_id), device, &publish),
        };
        let recorded = self.shared.recorder.ingest(vec![draft], "mqtt-will").await;
        let event = match recorded.map(|mut a| a.pop().map(|a| a.id)) {
            Ok(Some(event)) => event,
            other => return tracing::warn!(client = %self.client_id, ?other, "could not record a will"),
        };
        if let Some(refusal) = refused {
            let detail = format!("{}: {}", refusal.reason, refusal.detail);
            return self.shared.deliveries.note(event, State::Dropped, "acl", Some(detail));
        }
        let message = Arc::new(Message::new(event, &publish, self.client_id.clone(), SystemTime::now()));
        let mut ops = Vec::new();
        if retain {
            ops.extend(self.shared.router.retain(&message, &self.shared.deliveries));
        }
        ops.extend(route(&self.shared, &message, retain));
        let _ = self.shared.commit(ops).await;
    }
}
