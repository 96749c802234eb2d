//! Per-device message budgets at PUBLISH: a device's message is checked
//! against the budgets (`glassbox_link::MessageBudgets`, in memory) after
//! the rate limit and the ACL and before anything is recorded, so a refused
//! one costs nothing downstream. It is answered 0x97 (quota exceeded) in
//! 5.0; a 3.1.1 client has no reason codes and gets a plain PUBACK (the
//! message dropped), as over the publish rate. Refusals are recorded as the
//! rate limit's are: one `mqtt.publish_refused` per interval per
//! connection, the others counted into the next one (or a summary at close).

use std::time::Instant;

use glassbox_core::{DropReason, PublishRefused};
use glassbox_link::MessageVerdict;

use super::Connection;
use super::publish::{RATE_REFUSAL_INTERVAL, Refusal};

/// MQTT 5.0 reason code: quota exceeded.
const QUOTA_EXCEEDED: u8 = 0x97;

/// Refusals by a budget on one connection: when one was last recorded, and
/// how many were counted (not recorded) since.
#[derive(Default)]
pub(super) struct BudgetRefusals {
    last_recorded: Option<Instant>,
    unrecorded: u64,
    /// The first topic and reason among those counted, for the summary at close.
    unrecorded_topic: String,
    unrecorded_detail: String,
}

impl BudgetRefusals {
    /// Notes a refusal: `Some(counted before it)` when this one is recorded.
    fn refused(&mut self, topic: &str, detail: &str) -> Option<u64> {
        let now = Instant::now();
        if self.last_recorded.is_some_and(|at| now.duration_since(at) < RATE_REFUSAL_INTERVAL) {
            self.unrecorded += 1;
            if self.unrecorded_topic.is_empty() {
                self.unrecorded_topic = topic.to_string();
                self.unrecorded_detail = detail.to_string();
            }
            return None;
        }
        self.unrecorded_topic.clear();
        self.last_recorded = Some(now);
        Some(std::mem::take(&mut self.unrecorded))
    }
}

impl Connection {
    /// Why a device's PUBLISH to `topic` is refused by its message budgets, if it is.
    pub(super) fn over_budget(&mut self, topic: &str) -> Option<Refusal> {
        let budgets = self.shared.budgets.get()?;
        let device = self.device()?;
        let MessageVerdict::Refuse(why) = budgets.admit_message(device) else { return None };
        let prefix = format!("{}: ", DropReason::BudgetExceeded);
        let detail = why.strip_prefix(&prefix).unwrap_or(&why).to_string();
        let recorded = self.budget.refused(topic, &detail);
        Some(Refusal { reason: DropReason::BudgetExceeded, detail, code: QUOTA_EXCEEDED, recorded })
    }

    /// Records the budget refusals counted since the last one recorded,
    /// when the connection closes.
    pub(super) async fn record_unrecorded_budget_refusals(&mut self) {
        let unrecorded = std::mem::take(&mut self.budget.unrecorded);
        if unrecorded == 0 {
            return;
        }
        let data = PublishRefused {
            topic: std::mem::take(&mut self.budget.unrecorded_topic),
            qos: 0,
            retain: false,
            bytes: 0,
            reason: DropReason::BudgetExceeded,
            detail: format!("{} (counted until the connection closed)", self.budget.unrecorded_detail),
            unrecorded: unrecorded - 1,
        };
        self.record_refusal_summary(data).await;
    }
}
