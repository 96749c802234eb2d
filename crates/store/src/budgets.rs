//! Budgets: one per target (a function, `feature:NAME`, `group:NAME`),
//! with who set it and when. The dispatcher holds them in memory and
//! checks them there; the store is read at start and written on a change.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use glassbox_core::{Budget, BudgetTarget};

use crate::StoreError;

/// A budget as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRecord {
    pub budget: Budget,
    pub set_at: DateTime<Utc>,
    /// Who set it, as a principal's label (`admin`, `token:ops`).
    pub set_by: String,
}

/// Where budgets are kept.
#[async_trait]
pub trait BudgetStore: Send + Sync + 'static {
    /// Stores `record`, replacing the budget on its target; returns the
    /// one replaced, if any.
    async fn put_budget(&self, record: &BudgetRecord) -> Result<Option<BudgetRecord>, StoreError>;

    /// Every budget, by target.
    async fn budgets(&self) -> Result<Vec<BudgetRecord>, StoreError>;

    /// Removes the budget on `target`; returns it, none if there was none.
    async fn delete_budget(&self, target: &BudgetTarget) -> Result<Option<BudgetRecord>, StoreError>;
}
