//! The query verb's model: filters over recorded events, newest first, paged.

use chrono::{DateTime, Utc};

use crate::{RecordedEvent, State};

/// Page size when none is asked for.
pub const QUERY_LIMIT_DEFAULT: usize = 100;
/// Largest page: bounded answers however broad the filter.
pub const QUERY_LIMIT_MAX: usize = 1000;

/// An event `type` filter: exact (`device.message`) or prefix (`device.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypePattern {
    Exact(String),
    Prefix(String),
}

impl TypePattern {
    pub fn parse(pattern: &str) -> Self {
        match pattern.strip_suffix('*') {
            Some(prefix) => TypePattern::Prefix(prefix.to_string()),
            None => TypePattern::Exact(pattern.to_string()),
        }
    }

    pub fn matches(&self, ty: &str) -> bool {
        match self {
            TypePattern::Exact(t) => t == ty,
            TypePattern::Prefix(p) => ty.starts_with(p.as_str()),
        }
    }
}

/// Filters for recorded events; all given filters must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    pub correlation: Option<String>,
    pub device: Option<String>,
    pub ty: Option<TypePattern>,
    pub source: Option<String>,
    /// Events that reached this state (for any target).
    pub state: Option<State>,
    /// Received at or after.
    pub since: Option<DateTime<Utc>>,
    /// Received before.
    pub until: Option<DateTime<Utc>>,
    /// Page size; clamped to [`QUERY_LIMIT_MAX`].
    pub limit: usize,
    /// Opaque continuation from a previous [`Page`].
    pub cursor: Option<String>,
}

impl EventQuery {
    /// The page size to use: the asked one within bounds.
    pub fn page_size(&self) -> usize {
        match self.limit {
            0 => QUERY_LIMIT_DEFAULT,
            n => n.min(QUERY_LIMIT_MAX),
        }
    }

    /// Whether a live event matches the filters (for tails). `state` is
    /// matched against `received`: a new event has no other state yet.
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        let e = &event.event;
        let eq = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| Some(w) == have);
        eq(&self.correlation, Some(&e.correlationid))
            && eq(&self.device, e.device.as_deref())
            && eq(&self.source, Some(&e.source))
            && self.ty.as_ref().is_none_or(|t| t.matches(&e.ty))
            && self.state.is_none_or(|s| event.states.iter().any(|r| r.state == s))
    }
}

/// One page of results, newest first.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub events: Vec<RecordedEvent>,
    /// Pass back as [`EventQuery::cursor`] for the next (older) page.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_patterns_match_exactly_or_by_prefix() {
        assert!(TypePattern::parse("device.message").matches("device.message"));
        assert!(!TypePattern::parse("device.message").matches("device.messages"));
        assert!(TypePattern::parse("device.*").matches("device.connected"));
        assert!(!TypePattern::parse("device.*").matches("function.invoked"));
    }

    #[test]
    fn page_size_is_bounded() {
        assert_eq!(EventQuery::default().page_size(), QUERY_LIMIT_DEFAULT);
        assert_eq!(EventQuery { limit: 1_000_000, ..Default::default() }.page_size(), QUERY_LIMIT_MAX);
    }
}
