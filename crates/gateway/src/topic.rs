//! Topic names and filters: validation, matching, and the subscription
//! tree that finds every subscriber of a topic in time proportional to the
//! topic's depth, not to the number of subscriptions.

use std::collections::HashMap;
use std::hash::Hash;

/// Why a topic name or filter is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic name {0:?} contains a wildcard (+ or #); wildcards belong in subscriptions")]
    WildcardInName(String),
    #[error("topic filter {0:?}: '#' must be the last level, alone")]
    MisplacedMultiLevel(String),
    #[error("topic filter {0:?}: '+' must fill a whole level")]
    MisplacedSingleLevel(String),
    #[error("shared subscription {0:?}: expected $share/<name>/<filter> with a name free of + # /")]
    BadShare(String),
}

/// Checks a topic name a client publishes to.
pub fn validate_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.contains(['+', '#']) {
        return Err(TopicError::WildcardInName(name.into()));
    }
    Ok(())
}

/// A parsed subscription filter, possibly shared (`$share/<group>/<filter>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter<'a> {
    /// The share group, for shared subscriptions.
    pub share: Option<&'a str>,
    /// The filter proper, matched against topic names.
    pub filter: &'a str,
}

/// Checks and parses a subscription filter.
pub fn parse_filter(raw: &str) -> Result<Filter<'_>, TopicError> {
    let (share, filter) = match raw.strip_prefix("$share/") {
        Some(rest) => match rest.split_once('/') {
            Some((group, filter)) if !group.is_empty() && !group.contains(['+', '#']) && !filter.is_empty() => {
                (Some(group), filter)
            }
            _ => return Err(TopicError::BadShare(raw.into())),
        },
        None => (None, raw),
    };
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err(TopicError::MisplacedMultiLevel(raw.into()));
        }
        if level.contains('+') && *level != "+" {
            return Err(TopicError::MisplacedSingleLevel(raw.into()));
        }
    }
    Ok(Filter { share, filter })
}

/// Whether `filter` (valid, not shared) matches topic `name`. A filter
/// starting with a wildcard does not match names starting with `$`.
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut names = name.split('/');
    for level in filter.split('/') {
        match (level, names.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (level, Some(n)) if level == n => {}
            _ => return false,
        }
    }
    names.next().is_none()
}

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
        let levels: Vec<&str> = name.split('/').collect();
        let dollar = name.starts_with('$');
        Self::visit(&self.root, &levels, dollar, &mut visit);
    }

    fn visit(node: &Node<K, V>, levels: &[&str], guard_wildcards: bool, visit: &mut impl FnMut(&K, &V)) {
        if !guard_wildcards && let Some(hash) = node.children.get("#") {
            hash.here.iter().for_each(|(k, v)| visit(k, v));
        }
        let Some((first, rest)) = levels.split_first() else {
            node.here.iter().for_each(|(k, v)| visit(k, v));
            return;
        };
        if let Some(exact) = node.children.get(*first) {
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
    fn names_may_not_hold_wildcards() {
        assert!(validate_name("devices/d1/telemetry").is_ok());
        assert_eq!(validate_name(""), Err(TopicError::Empty));
        assert!(matches!(validate_name("a/+/b"), Err(TopicError::WildcardInName(_))));
        assert!(validate_name("/").is_ok(), "empty levels are valid");
    }

    #[test]
    fn filters_follow_the_wildcard_rules() {
        for ok in ["#", "+", "a/#", "a/+/b", "+/+", "/+", "a//b", "$SYS/#"] {
            assert!(parse_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["a/#/b", "a#", "a/b#", "a+", "a/+b", ""] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
        let shared = parse_filter("$share/workers/jobs/+").unwrap();
        assert_eq!((shared.share, shared.filter), (Some("workers"), "jobs/+"));
        for bad in ["$share/", "$share//a", "$share/g", "$share/g+/a", "$share/g/a/#/b"] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching_follows_the_specification_examples() {
        let cases = [
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            ("sport/tennis/player1/#", "sport/tennis/player1/ranking", true),
            ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true),
            ("sport/#", "sport", true),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("#", "$SYS/broker", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            ("$SYS/#", "$SYS/broker", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ];
        for (filter, name, expected) in cases {
            assert_eq!(matches(filter, name), expected, "{filter} vs {name}");
        }
    }

    #[test]
    fn the_tree_agrees_with_direct_matching() {
        let filters = ["#", "+", "a/#", "a/+", "a/b", "+/b", "a/+/c", "$SYS/#", "+/+/+", "a/b/#", "/+"];
        let mut tree = SubscriptionTree::new();
        for (i, f) in filters.iter().enumerate() {
            tree.insert(f, i, ());
        }
        assert_eq!(tree.len(), filters.len());
        for name in ["a", "a/b", "a/b/c", "x/b", "$SYS/x", "a/x/c", "/y", "", "a/b/c/d"] {
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
