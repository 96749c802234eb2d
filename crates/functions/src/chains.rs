//! The run-away chain bound: beyond the recursion guard (which stops deep
//! chains), a bound on the invocations one correlation chain may trigger
//! per minute, for fan-out loops that stay shallow (one event producing a
//! thousand at each hop).
//!
//! Only events a function produced (hop 1 or more) are counted: an
//! origin event cannot run away on its own, so device messages and API
//! events cost no entry. The counts are kept for the current minute
//! (windows start on the minute) and for at most [`CHAINS_TRACKED_MAX`]
//! chains; when that many are tracked the counts are cleared, and each
//! chain counts from zero again.
//!
//! Also which chains drive an invocation storm (`storm_chains`), read from
//! the invocation records, for the incident live diagnosis raises.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use glassbox_core::{DropReason, Event, EventQuery, FUNCTION_INVOKED, QUERY_LIMIT_MAX, TypePattern};
use glassbox_store::StoreError;

/// Invocations one chain may trigger in a minute; past it, each trigger
/// on the chain is dropped (`rate_limited`) until the minute ends.
pub const CHAIN_INVOCATIONS_MAX: u32 = 10_000;
/// Chains counted at once (see the module doc).
pub const CHAINS_TRACKED_MAX: usize = 100_000;

/// Invocations triggered per chain in the current minute.
#[derive(Default)]
pub(crate) struct Chains {
    counts: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    /// Its minute, Unix seconds.
    start: u64,
    counts: HashMap<String, u32>,
}

impl Chains {
    /// Counts one invocation `event` triggers at `now` (Unix seconds);
    /// why it must not run when its chain is past the bound.
    pub(crate) fn count(&self, event: &Event, now: u64) -> Result<(), String> {
        self.count_within(event, now, CHAIN_INVOCATIONS_MAX)
    }

    fn count_within(&self, event: &Event, now: u64, max: u32) -> Result<(), String> {
        if event.hop == 0 {
            return Ok(());
        }
        let mut window = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let start = now - now % 60;
        if window.start != start || window.counts.len() >= CHAINS_TRACKED_MAX {
            *window = Window { start, counts: HashMap::new() };
        }
        if !window.counts.contains_key(&event.correlationid) {
            window.counts.insert(event.correlationid.clone(), 0);
        }
        let Some(count) = window.counts.get_mut(&event.correlationid) else { return Ok(()) };
        if *count >= max {
            return Err(format!(
                "{}: chain {} triggered {max} invocations this minute, the bound for one chain \
                 (a run-away fan-out?); `glassbox trace {}` shows it",
                DropReason::RateLimited,
                event.correlationid,
                event.correlationid
            ));
        }
        *count += 1;
        Ok(())
    }
}

/// Invocation records read per function when naming a storm's chains.
pub const STORM_RECORDS_READ_MAX: usize = 10_000;
/// Chains a storm names, at most.
pub const STORM_CHAINS_MAX: usize = 3;

/// A correlation chain and its invocations of one function in a span of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainCount {
    pub correlation: String,
    pub function: String,
    pub invocations: u64,
}

impl super::Functions {
    /// The chains that ran the most invocations of `functions` between
    /// `since` and `until` (an invocation storm's time), most first: at most
    /// [`STORM_CHAINS_MAX`], from the newest [`STORM_RECORDS_READ_MAX`]
    /// `function.invoked` records of each function.
    pub async fn storm_chains(
        &self,
        functions: &[String],
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<ChainCount>, StoreError> {
        let mut counts: HashMap<(String, String), u64> = HashMap::new();
        for function in functions {
            let mut query = EventQuery {
                ty: Some(TypePattern::parse(FUNCTION_INVOKED)),
                source: Some(format!("glassbox/functions/{function}")),
                since: Some(since),
                until: Some(until),
                limit: QUERY_LIMIT_MAX,
                ..EventQuery::default()
            };
            let mut read = 0;
            loop {
                let page = self.pipeline.store().query(&query).await?;
                read += page.events.len();
                for recorded in page.events {
                    *counts.entry((recorded.event.correlationid, function.clone())).or_default() += 1;
                }
                match page.next_cursor {
                    Some(cursor) if read < STORM_RECORDS_READ_MAX => query.cursor = Some(cursor),
                    _ => break,
                }
            }
        }
        let mut chains: Vec<ChainCount> = counts
            .into_iter()
            .map(|((correlation, function), invocations)| ChainCount { correlation, function, invocations })
            .collect();
        chains.sort_by(|a, b| b.invocations.cmp(&a.invocations).then_with(|| a.correlation.cmp(&b.correlation)));
        chains.truncate(STORM_CHAINS_MAX);
        Ok(chains)
    }
}

#[cfg(test)]
mod tests {
    use glassbox_core::{Draft, IdMinter};

    use super::*;

    fn event(chain: &str, hop: u32) -> Event {
        let draft = Draft {
            correlationid: Some(chain.into()),
            hop: Some(hop),
            ..Draft::json("fn/fan", "fan.out", &serde_json::json!({}))
        };
        draft.into_event(IdMinter::new().mint(), Utc::now(), None)
    }

    const T: u64 = 1_764_928_800;

    #[test]
    fn a_chain_past_its_bound_is_refused_until_the_minute_ends() {
        let chains = Chains::default();
        let runs = (0..5).filter(|i| chains.count_within(&event("c1", 1), T + i, 3).is_ok()).count();
        assert_eq!(runs, 3);
        let refused = chains.count_within(&event("c1", 2), T + 5, 3).unwrap_err();
        assert!(refused.starts_with("rate_limited: chain c1 triggered 3 invocations this minute"), "{refused}");
        assert!(chains.count_within(&event("c2", 1), T + 6, 3).is_ok(), "another chain has its own count");
        assert!(chains.count_within(&event("c1", 0), T + 7, 3).is_ok(), "an origin event is not counted");
        assert!(chains.count_within(&event("c1", 1), T + 60, 3).is_ok(), "a new minute counts from zero");
    }
}
