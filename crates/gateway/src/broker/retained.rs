//! Retained messages, indexed by topic level: a SUBSCRIBE visits only the
//! branches its filter can match, not every retained message. Each is
//! counted against its publisher (`retained_per_client_max`) and all of
//! them against `retained_max`; beyond either, a message is not retained.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::lock;
use super::message::Message;

#[derive(Default)]
struct Node {
    children: HashMap<String, Node>,
    /// The message retained on the topic ending here, with its publisher.
    here: Option<Arc<Message>>,
}

#[derive(Default)]
struct Index {
    root: Node,
    len: usize,
    /// Retained messages per publisher ("" for those restored at start,
    /// whose publisher is not stored).
    by_client: HashMap<Arc<str>, usize>,
}

pub(crate) struct Retained {
    per_client_max: usize,
    max: usize,
    index: Mutex<Index>,
}

impl Retained {
    pub fn new(per_client_max: usize, max: usize) -> Self {
        Self { per_client_max, max, index: Mutex::new(Index::default()) }
    }

    /// Retains `message` on its topic, replacing what was there; says why
    /// not when a bound is reached.
    pub fn set(&self, message: &Arc<Message>) -> Result<(), String> {
        let mut index = lock(&self.index);
        let owner = message.publisher.clone();
        let previous = find(&index.root, &message.topic).map(|m| m.publisher.clone());
        if previous.as_ref() != Some(&owner) {
            let held = index.by_client.get(&owner).copied().unwrap_or(0);
            if held >= self.per_client_max {
                return Err(format!(
                    "client {:?} holds {held} retained messages (mqtt.retained_per_client_max); clear some with an empty retained PUBLISH",
                    super::refusals::truncate(&owner, 128)
                ));
            }
            if previous.is_none() && index.len >= self.max {
                return Err(format!("the broker holds {} retained messages (mqtt.retained_max)", index.len));
            }
        }
        self.insert(&mut index, message.topic.clone(), message.clone());
        Ok(())
    }

    /// Restores a message loaded from the store, whatever the bounds.
    pub fn restore(&self, topic: String, message: Arc<Message>) {
        let mut index = lock(&self.index);
        self.insert(&mut index, topic, message);
    }

    fn insert(&self, index: &mut Index, topic: String, message: Arc<Message>) {
        let owner = message.publisher.clone();
        let node = topic.split('/').fold(&mut index.root, |node, level| node.children.entry(level.into()).or_default());
        match node.here.replace(message) {
            Some(old) => release(&mut index.by_client, &old.publisher),
            None => index.len += 1,
        }
        *index.by_client.entry(owner).or_default() += 1;
    }

    pub fn clear(&self, topic: &str) {
        let mut index = lock(&self.index);
        let levels: Vec<&str> = topic.split('/').collect();
        if let Some(old) = remove(&mut index.root, &levels) {
            index.len -= 1;
            release(&mut index.by_client, &old.publisher);
        }
    }

    /// Retained messages matching a (plain) filter, by topic; expired ones are removed.
    pub fn matching(&self, filter: &str, now: SystemTime) -> Vec<Arc<Message>> {
        let levels: Vec<&str> = filter.split('/').collect();
        let mut found = Vec::new();
        collect(&lock(&self.index).root, &levels, true, &mut found);
        let (expired, mut live): (Vec<_>, Vec<_>) = found.into_iter().partition(|m| m.expired(now));
        for message in expired {
            self.clear(&message.topic);
        }
        live.sort_by(|a, b| a.topic.cmp(&b.topic));
        live
    }

    pub fn len(&self) -> usize {
        lock(&self.index).len
    }
}

fn release(by_client: &mut HashMap<Arc<str>, usize>, owner: &Arc<str>) {
    if let Some(n) = by_client.get_mut(owner) {
        *n -= 1;
        if *n == 0 {
            by_client.remove(owner);
        }
    }
}

fn find<'a>(root: &'a Node, topic: &str) -> Option<&'a Arc<Message>> {
    topic.split('/').try_fold(root, |node, level| node.children.get(level))?.here.as_ref()
}

fn remove(node: &mut Node, levels: &[&str]) -> Option<Arc<Message>> {
    let Some((first, rest)) = levels.split_first() else { return node.here.take() };
    let child = node.children.get_mut(*first)?;
    let removed = remove(child, rest);
    if child.here.is_none() && child.children.is_empty() {
        node.children.remove(*first);
    }
    removed
}

/// Wildcards at the first level do not match topics starting with `$`.
fn collect(node: &Node, levels: &[&str], first: bool, out: &mut Vec<Arc<Message>>) {
    let visible = |name: &String| !(first && name.starts_with('$'));
    match levels.split_first() {
        None => out.extend(node.here.iter().cloned()),
        Some((&"#", _)) => {
            out.extend(node.here.iter().cloned());
            for (_, child) in node.children.iter().filter(|(name, _)| visible(name)) {
                collect(child, &["#"], false, out);
            }
        }
        Some((&"+", rest)) => {
            for (_, child) in node.children.iter().filter(|(name, _)| visible(name)) {
                collect(child, rest, false, out);
            }
        }
        Some((level, rest)) => {
            if let Some(child) = node.children.get(*level) {
                collect(child, rest, false, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use glassbox_core::IdMinter;

    use super::*;
    use crate::codec::{Properties, Publish, QoS};
    use crate::topic::matches;

    fn message(topic: &str, publisher: &str) -> Arc<Message> {
        let publish = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: topic.into(),
            packet_id: None,
            properties: Properties::default(),
            payload: Bytes::from_static(b"x"),
        };
        Arc::new(Message::new(IdMinter::new().mint(), &publish, Arc::from(publisher), SystemTime::now()))
    }

    // Issue 16, finding 7: the index finds what a scan with `matches` finds.
    #[test]
    fn the_index_matches_like_the_filter_rules() {
        let retained = Retained::new(100, 100);
        let topics = ["a", "a/b", "a/b/c", "a/c", "b", "/x", "$SYS/up", "$SYS/a/b", "a//b"];
        for topic in topics {
            retained.set(&message(topic, "c")).unwrap();
        }
        let filters = ["#", "+", "a/#", "a/+", "+/b", "+/+/c", "$SYS/#", "+/up", "/+", "a/b/c/#", "a/+/b", "zz/#"];
        for filter in filters {
            let found: Vec<String> =
                retained.matching(filter, SystemTime::now()).iter().map(|m| m.topic.clone()).collect();
            let mut want: Vec<String> = topics.iter().filter(|t| matches(filter, t)).map(|t| t.to_string()).collect();
            want.sort();
            assert_eq!(found, want, "{filter}");
        }
    }

    // Issue 16, finding 7: per-client and global bounds; replacing one's own is free.
    #[test]
    fn bounds_refuse_new_topics_but_not_replacements() {
        let retained = Retained::new(2, 3);
        retained.set(&message("a/1", "c1")).unwrap();
        retained.set(&message("a/2", "c1")).unwrap();
        let refused = retained.set(&message("a/3", "c1")).unwrap_err();
        assert!(refused.contains("mqtt.retained_per_client_max"), "{refused}");
        retained.set(&message("a/2", "c1")).unwrap();
        retained.set(&message("b/1", "c2")).unwrap();
        let refused = retained.set(&message("b/2", "c2")).unwrap_err();
        assert!(refused.contains("mqtt.retained_max"), "{refused}");
        retained.clear("a/1");
        assert_eq!(retained.len(), 2);
        retained.set(&message("b/2", "c2")).unwrap();
        assert_eq!(retained.len(), 3);
    }
}
