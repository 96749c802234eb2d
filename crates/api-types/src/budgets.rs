//! `/api/v1/budgets`: cost budgets per function, feature or device group,
//! each with its current window's use.

use chrono::{DateTime, Utc};
use glassbox_core::Budget;
use glassbox_core::budget::{Action, Limit, Per};
use serde::{Deserialize, Serialize};

/// `PUT /api/v1/budgets/{target}`'s body: the budget on that target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetBudget {
    /// `{"measure": "invocations" | "cpu_ms" | "cost", "amount": N}`; more than zero.
    pub limit: Limit,
    /// `1m`, `1h`, `1d` or `30d`.
    pub per: Per,
    pub action: Action,
    /// Percentages recorded as `budget.threshold_reached`; absent: 50, 80, 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Vec<u16>>,
}

/// A budget with who set it and its current window's use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetView {
    #[serde(flatten)]
    pub budget: Budget,
    pub set_at: DateTime<Utc>,
    /// Who set it (`admin`, `token:ops`).
    pub set_by: String,
    pub window: BudgetWindow,
}

/// Use in a budget's current window (counted in memory since the window
/// started or the server did, whichever is later).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Invocations admitted to run.
    pub admitted: u64,
    /// Invocations that ran to an outcome.
    pub ran: u64,
    pub cpu_ms: f64,
    /// In the `[cost]` prices' currency.
    pub cost: f64,
    /// Use in the limit's measure, and that as a percentage of the limit.
    pub used: f64,
    pub percent: f64,
    /// Events dropped (`stop`) or held (`throttle`) by this budget.
    pub refused: u64,
    /// When the limit is used up at the window's rate so far; null when not within this window.
    pub exhausted_at: Option<DateTime<Utc>>,
}

/// `GET /api/v1/budgets`'s answer, by target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetList {
    pub budgets: Vec<BudgetView>,
}
