//! Who gets a message: the subscription tree (plain and shared
//! subscriptions), retained messages, and session expiry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use chrono::Utc;
use glassbox_core::{DropReason, SessionExpired, State};
use glassbox_store::SessionOp;

use super::deliveries::Deliveries;
use super::message::{Delivery, Message};
use super::retained::Retained;
use super::session::{NEVER, Session, SubOptions};
use super::{Shared, lock};
use crate::codec::QoS;
use crate::topic::{SubscriptionTree, parse_filter};

/// A subscription's owner: a client, in a share group or not.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SubKey {
    client: Arc<str>,
    group: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
struct Sub {
    options: SubOptions,
    /// The filter proper (without `$share/<group>/`): a share group is one
    /// group name and one filter.
    filter: Arc<str>,
}

pub(crate) struct Router {
    tree: Mutex<SubscriptionTree<SubKey, Sub>>,
    retained: Retained,
    /// Turns taken by shared subscriptions.
    rotation: AtomicUsize,
}

/// The members of one share group (a group name and a filter), with their options.
type ShareGroup = Vec<(Arc<str>, SubOptions)>;

/// One client's delivery of a message: overlapping subscriptions give one
/// delivery at the highest QoS, with every matching subscription id.
struct Plan {
    qos: QoS,
    retain_as_published: bool,
    subscription_ids: Vec<u32>,
}

impl Default for Plan {
    fn default() -> Self {
        Self { qos: QoS::AtMostOnce, retain_as_published: false, subscription_ids: Vec::new() }
    }
}

impl Plan {
    /// Folds in one more matching subscription: the highest QoS, every id.
    fn add(&mut self, options: &SubOptions) {
        self.qos = self.qos.max(qos_of(options.qos));
        self.subscription_ids.extend(options.id);
    }

    /// Folds in another plan for the same client.
    fn merge(&mut self, other: Plan) {
        self.qos = self.qos.max(other.qos);
        self.retain_as_published |= other.retain_as_published;
        self.subscription_ids.extend(other.subscription_ids);
    }
}

/// Plans by client: one per client, overlapping subscriptions merged.
/// Sorted rather than hashed: most messages have a few subscribers, and
/// one has nothing to merge.
fn merged(mut plans: Vec<(Arc<str>, Plan)>) -> Vec<(Arc<str>, Plan)> {
    if plans.len() > 1 {
        plans.sort_by(|a, b| a.0.cmp(&b.0));
        plans.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1.merge(std::mem::take(&mut later.1));
            }
            same
        });
    }
    plans
}

impl Router {
    pub fn new(retained_per_client_max: usize, retained_max: usize) -> Self {
        Self {
            tree: Mutex::default(),
            retained: Retained::new(retained_per_client_max, retained_max),
            rotation: AtomicUsize::new(0),
        }
    }

    /// Adds (or replaces) a subscription; `raw` is the filter as subscribed,
    /// already validated.
    pub fn subscribe(&self, client: &Arc<str>, raw: &str, options: SubOptions) {
        let Ok(parsed) = parse_filter(raw) else { return };
        let key = SubKey { client: client.clone(), group: parsed.share.map(Arc::from) };
        let sub = Sub { options, filter: Arc::from(parsed.filter) };
        lock(&self.tree).insert(parsed.filter, key, sub);
    }

    /// True if the subscription existed.
    pub fn unsubscribe(&self, client: &Arc<str>, raw: &str) -> bool {
        let Ok(parsed) = parse_filter(raw) else { return false };
        let key = SubKey { client: client.clone(), group: parsed.share.map(Arc::from) };
        lock(&self.tree).remove(parsed.filter, &key).is_some()
    }

    pub fn restore_retained(&self, topic: String, message: Arc<Message>) {
        self.retained.restore(topic, message);
    }

    /// Sets or (empty payload) clears a topic's retained message. Beyond a
    /// retained bound the message is not retained (it is still delivered):
    /// noted on its event as dropped for target `retained`, with the bound.
    pub fn retain(&self, message: &Arc<Message>, deliveries: &Deliveries) -> Option<SessionOp> {
        let topic = message.topic.clone();
        if message.payload.is_empty() {
            self.retained.clear(&topic);
            return Some(SessionOp::Retain { topic, message: None });
        }
        if let Err(why) = self.retained.set(message) {
            let detail = format!("{}: not retained, still delivered: {why}", DropReason::RetainedLimit);
            deliveries.note(message.event, State::Dropped, "retained", Some(detail));
            return None;
        }
        let stored = Delivery {
            seq: 0,
            message: message.clone(),
            qos: message.qos,
            retain: true,
            subscription_ids: Vec::new(),
            persisted: false,
        };
        Some(SessionOp::Retain { topic, message: Some(stored.encode()) })
    }

    /// Removes a topic's retained message; the change to store.
    pub fn unretain(&self, topic: &str) -> SessionOp {
        self.retained.clear(topic);
        SessionOp::Retain { topic: topic.to_string(), message: None }
    }

    /// Retained messages matching a (plain) filter; expired ones are removed.
    pub fn retained_matching(&self, filter: &str, now: SystemTime) -> Vec<Arc<Message>> {
        self.retained.matching(filter, now)
    }

    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// Plain subscribers' plans (a client may appear more than once: see
    /// [`merged`]), and share groups' members.
    fn plans(&self, message: &Message) -> (Vec<(Arc<str>, Plan)>, Vec<ShareGroup>) {
        let mut plain = Vec::new();
        let mut groups: HashMap<(Arc<str>, Arc<str>), ShareGroup> = HashMap::new();
        lock(&self.tree).for_each_match(&message.topic, |key, sub| match &key.group {
            Some(group) => groups
                .entry((group.clone(), sub.filter.clone()))
                .or_default()
                .push((key.client.clone(), sub.options.clone())),
            None if sub.options.no_local && key.client == message.publisher => {}
            None => {
                let mut plan = Plan { retain_as_published: sub.options.retain_as_published, ..Plan::default() };
                plan.add(&sub.options);
                plain.push((key.client.clone(), plan));
            }
        });
        let mut groups: Vec<_> = groups.into_values().collect();
        for members in &mut groups {
            members.sort_by(|a, b| a.0.cmp(&b.0));
        }
        (plain, groups)
    }
}

pub(crate) fn qos_of(bits: u8) -> QoS {
    QoS::from_bits(bits.min(2)).unwrap_or(QoS::AtMostOnce)
}

/// Hands a recorded message to every matching session; one member of each
/// share group gets it, connected members first. `retained` is the
/// PUBLISH's retain flag. Returns what to persist.
pub(crate) fn route(shared: &Shared, message: &Arc<Message>, retained: bool) -> Vec<SessionOp> {
    let router = &shared.router;
    let (mut plans, groups) = router.plans(message);
    // Sessions resolved under one lock of the map, then offered to one by one.
    let targets: Vec<(Arc<Mutex<Session>>, Plan)> = {
        let map = lock(&shared.sessions);
        for members in groups {
            let start = router.rotation.fetch_add(1, Ordering::Relaxed);
            let turn = |i: usize| &members[(start + i) % members.len()];
            let online = (0..members.len()).map(turn).find(|(c, _)| map.get(c).is_some_and(|s| lock(s).link.is_some()));
            let (client, options) = online.unwrap_or_else(|| turn(0));
            let mut plan = Plan::default();
            plan.add(options);
            plans.push((client.clone(), plan));
        }
        merged(plans).into_iter().filter_map(|(client, plan)| map.get(&client).map(|s| (s.clone(), plan))).collect()
    };
    let deliveries = &shared.deliveries;
    if targets.is_empty() {
        // Each subscriber's `in_transit` says where it went; this says it went nowhere.
        deliveries.note(message.event, State::Routed, "mqtt", Some("no subscribers".into()));
    }
    let mut ops = Vec::new();
    for (session, plan) in targets {
        let delivery = Delivery {
            seq: 0,
            message: message.clone(),
            qos: plan.qos.min(message.qos),
            retain: retained && plan.retain_as_published,
            subscription_ids: plan.subscription_ids,
            persisted: false,
        };
        lock(&session).offer(delivery, deliveries, &mut ops);
    }
    ops
}

/// Removes a session: its subscriptions, its queue (each message dropped
/// with `session_ended`), and its stored state.
pub(crate) fn end_session(shared: &Shared, session: &Arc<Mutex<Session>>, why: &str) -> Vec<SessionOp> {
    let (client_id, persistent, filters) = {
        let mut s = lock(session);
        s.discard(&shared.deliveries, why);
        let filters: Vec<String> = s.subscriptions.drain().map(|(f, _)| f).collect();
        (s.client_id.clone(), s.persistent(), filters)
    };
    for filter in &filters {
        shared.router.unsubscribe(&client_id, filter);
    }
    {
        let mut map = lock(&shared.sessions);
        if map.get(&client_id).is_some_and(|current| Arc::ptr_eq(current, session)) {
            map.remove(&client_id);
        }
    }
    match persistent {
        true => vec![SessionOp::DeleteSession { client_id: client_id.to_string() }],
        false => Vec::new(),
    }
}

/// Ends disconnected sessions whose expiry passed, once a second, while the
/// broker lives.
pub(crate) async fn expire_sessions(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let now = Utc::now();
        let expired: Vec<_> = lock(&shared.sessions)
            .values()
            .filter(|s| {
                let s = lock(s);
                let deadline = s.disconnected_at.map(|at| at + chrono::Duration::seconds(i64::from(s.expiry)));
                s.link.is_none() && s.expiry != NEVER && deadline.is_some_and(|d| d <= now)
            })
            .cloned()
            .collect();
        for session in expired {
            let (client_id, device, queued) = {
                let s = lock(&session);
                (s.client_id.clone(), s.device.clone(), s.queue.len() + s.inflight.len())
            };
            let ops = end_session(&shared, &session, "the session expired while the client was away");
            shared.persist(ops).await;
            let data = SessionExpired { queued_dropped: queued as u64 };
            super::connection::record_lifecycle(&shared, device.as_deref(), &client_id, &data).await;
        }
    }
}
