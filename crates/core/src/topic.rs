//! MQTT topic names and filters: what a valid one is and which names a
//! filter matches. Part of the model because more than the broker reads
//! topics: function triggers, series templates and the control plane match
//! them too, with the same rules.

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
}
