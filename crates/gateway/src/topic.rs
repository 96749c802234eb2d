//! The subscription tree that finds every subscriber of a topic in time
//! proportional to the topic's depth, not to the number of subscriptions.
//! Topic syntax and matching are the model's (`glassbox_core::topic`),
//! re-exported here for the broker.

use std::collections::HashMap;
use std::hash::Hash;

pub use glassbox_core::topic::{Filter, TopicError, matches, parse_filter, validate_name};

/// Subscriptions by filter, each with a key (who) and a value (how).
#[derive(Debug)]
pub struct SubscriptionTree<K, V> {
    root: Node<K, V>,
    len: usize,
}

#[derive(Debug)]
struct Node<K, V> {
    children: HashMap<String, Node<K, V>>,
    /// Subscriptions whose filter ends at this node.
    here: HashMap<K, V>,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Self { children: HashMap::new(), here: HashMap::new() }
    }
}

impl<K, V> Default for SubscriptionTree<K, V> {
    fn default() -> Self {
        Self { root: Node::default(), len: 0 }
    }
}

impl<K: Hash + Eq + Clone, V> SubscriptionTree<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscriptions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or replaces `key`'s subscription to `filter`; returns the old value.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let node =
            filter.split('/').fold(&mut self.root, |node, level| node.children.entry(level.to_string()).or_default());
        let old = node.here.insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `key`'s subscription to `filter`, pruning empty branches.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = Self::remove_at(&mut self.root, &levels, key);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    fn remove_at(node: &mut Node<K, V>, levels: &[&str], key: &K) -> Option<V> {
        let Some((first, rest)) = levels.split_first() else { return node.here.remove(key) };
        let child = node.children.get_mut(*first)?;
        let removed = Self::remove_at(child, rest, key);
        if child.here.is_empty() && child.children.is_empty() {
            node.children.remove(*first);
        }
        removed
    }

    /// Calls `visit` for every subscription matching topic `name`.
    pub fn for_each_match(&self, name: &str, mut visit: impl FnMut(&K, &V)) {
        Self::visit(&self.root, Some(name), name.starts_with('$'), &mut visit);
    }

    /// `rest`: the topic's levels below `node`, `None` past the last one
    /// (walked level by level, with no list of them allocated).
    fn visit(node: &Node<K, V>, rest: Option<&str>, guard_wildcards: bool, visit: &mut impl FnMut(&K, &V)) {
        if !guard_wildcards && let Some(hash) = node.children.get("#") {
            hash.here.iter().for_each(|(k, v)| visit(k, v));
        }
        let Some(rest) = rest else {
            node.here.iter().for_each(|(k, v)| visit(k, v));
            return;
        };
        let (first, rest) = match rest.split_once('/') {
            Some((first, rest)) => (first, Some(rest)),
            None => (rest, None),
        };
        if let Some(exact) = node.children.get(first) {
            Self::visit(exact, rest, false, visit);
        }
        if !guard_wildcards && let Some(plus) = node.children.get("+") {
            Self::visit(plus, rest, false, visit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_agrees_with_direct_matching() {
        let filters = ["#", "+", "a/#", "a/+", "a/b", "+/b", "a/+/c", "$SYS/#", "+/+/+", "a/b/#", "/+"];
        let mut tree = SubscriptionTree::new();
        for (i, f) in filters.iter().enumerate() {
            tree.insert(f, i, ());
        }
        assert_eq!(tree.len(), filters.len());
        for name in ["a", "a/b", "a/b/c", "x/b", "$SYS/x", "a/x/c", "/y", "", "a/b/c/d", "a/", "/", "a//c", "$SYS"] {
            let mut got: Vec<usize> = Vec::new();
            tree.for_each_match(name, |k, _| got.push(*k));
            got.sort();
            let want: Vec<usize> = (0..filters.len()).filter(|i| matches(filters[*i], name)).collect();
            assert_eq!(got, want, "topic {name:?}");
        }
    }

    #[test]
    fn removing_prunes_and_replacing_keeps_one() {
        let mut tree = SubscriptionTree::new();
        assert_eq!(tree.insert("a/+", "c1", 1), None);
        assert_eq!(tree.insert("a/+", "c1", 2), Some(1));
        tree.insert("a/+", "c2", 3);
        assert_eq!(tree.len(), 2);
        assert_eq!(tree.remove("a/+", &"c1"), Some(2));
        assert_eq!(tree.remove("a/+", &"c1"), None);
        assert_eq!(tree.remove("a/+", &"c2"), Some(3));
        assert!(tree.is_empty());
        assert!(tree.root.children.is_empty(), "empty branches are pruned");
    }
}
