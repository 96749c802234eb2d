//! Retained messages as a service: list them, and clear them on the
//! record. Clearing removes what a client's empty retained PUBLISH would,
//! and records `mqtt.retained_cleared` with who cleared which topics, so
//! nothing leaves without a trace of who removed it.

use std::sync::Arc;

use glassbox_core::topic::parse_filter;
use glassbox_core::{Draft, Principal, RetainedCleared};
use glassbox_link::{DeviceLink, RetainedMessage};
use glassbox_pipeline::Pipeline;

use super::record::{Changed, record_change};

/// Retained messages listed at most by one call.
pub const RETAINED_LIST_MAX: usize = 10_000;

pub struct RetainedMessages {
    link: Arc<dyn DeviceLink>,
    pipeline: Arc<Pipeline>,
}

/// A filter that cannot select retained messages.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadFilter(String);

impl RetainedMessages {
    pub fn new(link: Arc<dyn DeviceLink>, pipeline: Arc<Pipeline>) -> Self {
        Self { link, pipeline }
    }

    /// The retained messages on topics matching `filter` (`#`: all), by
    /// topic, at most `limit` (and [`RETAINED_LIST_MAX`]).
    pub fn list(&self, filter: &str, limit: usize) -> Result<Vec<RetainedMessage>, BadFilter> {
        checked(filter)?;
        Ok(self.link.retained(filter, limit.min(RETAINED_LIST_MAX)))
    }

    /// Removes the retained messages on topics matching `filter`, as `by`,
    /// and records it (also when none matched).
    pub async fn clear(&self, filter: &str, by: &Principal) -> Result<Changed<Vec<RetainedMessage>>, BadFilter> {
        checked(filter)?;
        let cleared = self.link.clear_retained(filter).await;
        let data = RetainedCleared {
            filter: filter.to_string(),
            principal: by.clone(),
            topics: cleared.iter().map(|m| m.topic.clone()).collect(),
            events: cleared.iter().map(|m| m.event.to_string()).collect(),
        };
        let draft = Draft { subject: Some(filter.to_string()), ..Draft::payload("glassbox/mqtt", &data) };
        let unrecorded = record_change(&self.pipeline, draft, "api").await;
        Ok(Changed { value: cleared, unrecorded })
    }
}

/// A plain topic filter: shared subscriptions hold no retained messages.
fn checked(filter: &str) -> Result<(), BadFilter> {
    let parsed = parse_filter(filter).map_err(|e| BadFilter(format!("filter {filter:?}: {e}")))?;
    match parsed.share {
        Some(_) => {
            Err(BadFilter(format!("filter {filter:?}: a shared subscription ($share/…) holds no retained messages")))
        }
        None => Ok(()),
    }
}
