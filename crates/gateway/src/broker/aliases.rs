//! Topic aliases the server assigns on the PUBLISHes it sends to a 5.0
//! client (MQTT 5.0 §3.3.2.3.4): the first PUBLISH on a topic carries the
//! topic and a new alias, later ones the alias and an empty topic, which
//! saves the topic's bytes on every message to a subscriber of few topics.
//!
//! Aliases belong to one network connection (the client forgets them when
//! it reconnects), so the map lives in the session's [`Link`](super::session::Link).
//! It is bounded by the smaller of the client's Topic Alias Maximum and
//! `mqtt.topic_alias_max`; once full, the topics that have an alias keep it
//! and others are sent in full (no eviction: reassigning an alias would cost
//! a full topic again, and a subscriber's topics are usually few and stable).

use std::collections::HashMap;

use crate::codec::Publish;

/// One connection's outbound topic aliases.
#[derive(Debug, Default)]
pub(crate) struct OutboundAliases {
    /// Aliases this connection may assign: 0 turns them off.
    max: u16,
    by_topic: HashMap<String, u16>,
}

/// What a PUBLISH on a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alias {
    /// No alias: the topic in full.
    None,
    /// A new alias, sent with the topic, which the client then remembers.
    New(u16),
    /// An alias the client knows: sent with an empty topic.
    Known(u16),
}

impl OutboundAliases {
    pub fn new(max: u16) -> Self {
        Self { max, by_topic: HashMap::new() }
    }

    /// The alias a PUBLISH on `topic` would carry; assigns nothing (see [`Self::commit`]).
    pub fn plan(&self, topic: &str) -> Alias {
        if self.max == 0 {
            return Alias::None;
        }
        match self.by_topic.get(topic) {
            Some(&alias) => Alias::Known(alias),
            // Aliases are 1..=max, handed out in order and never reused.
            None if self.by_topic.len() < usize::from(self.max) => Alias::New(self.by_topic.len() as u16 + 1),
            None => Alias::None,
        }
    }

    /// Gives `publish` the form `alias` says (the topic kept or emptied, the property set).
    pub fn shape(alias: Alias, publish: &mut Publish) {
        match alias {
            Alias::None => {}
            Alias::New(n) => publish.properties.topic_alias = Some(n),
            Alias::Known(n) => {
                publish.topic.clear();
                publish.properties.topic_alias = Some(n);
            }
        }
    }

    /// Remembers a new alias once the PUBLISH introducing it is sent; a
    /// PUBLISH dropped instead (too large) must not assign one.
    pub fn commit(&mut self, alias: Alias, topic: &str) {
        if let Alias::New(n) = alias {
            self.by_topic.insert(topic.to_string(), n);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::{Properties, QoS};

    fn publish(topic: &str) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic.into(),
            packet_id: None,
            properties: Properties::default(),
            payload: Bytes::new(),
        }
    }

    /// Plans, shapes and commits one PUBLISH, as the session does.
    fn send(aliases: &mut OutboundAliases, topic: &str) -> Publish {
        let mut p = publish(topic);
        let alias = aliases.plan(topic);
        OutboundAliases::shape(alias, &mut p);
        aliases.commit(alias, topic);
        p
    }

    #[test]
    fn the_first_publish_names_the_topic_and_later_ones_only_the_alias() {
        let mut aliases = OutboundAliases::new(2);
        let first = send(&mut aliases, "a/b");
        assert_eq!((first.topic.as_str(), first.properties.topic_alias), ("a/b", Some(1)));
        let second = send(&mut aliases, "a/b");
        assert_eq!((second.topic.as_str(), second.properties.topic_alias), ("", Some(1)));
        let other = send(&mut aliases, "c");
        assert_eq!((other.topic.as_str(), other.properties.topic_alias), ("c", Some(2)));
    }

    #[test]
    fn beyond_the_maximum_topics_go_in_full_and_earlier_aliases_stay() {
        let mut aliases = OutboundAliases::new(1);
        send(&mut aliases, "a");
        let full = send(&mut aliases, "b");
        assert_eq!((full.topic.as_str(), full.properties.topic_alias), ("b", None));
        assert_eq!(aliases.plan("a"), Alias::Known(1));
        assert_eq!(aliases.by_topic.len(), 1, "bounded by the maximum");
    }

    #[test]
    fn a_client_that_allows_none_gets_none() {
        let mut aliases = OutboundAliases::new(0);
        let p = send(&mut aliases, "a");
        assert_eq!((p.topic.as_str(), p.properties.topic_alias), ("a", None));
    }

    #[test]
    fn an_alias_planned_but_not_committed_is_not_assigned() {
        let aliases = OutboundAliases::new(4);
        assert_eq!(aliases.plan("a"), Alias::New(1));
        assert_eq!(aliases.plan("a"), Alias::New(1), "nothing was sent, so nothing is known");
    }
}
