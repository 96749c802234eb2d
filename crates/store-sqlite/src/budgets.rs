//! The budget table's SQL: one row per target, the budget as JSON.

use glassbox_core::Budget;
use glassbox_store::BudgetRecord;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::{from_micros, micros};

fn row(r: &Row<'_>) -> rusqlite::Result<BudgetRecord> {
    let text: String = r.get(0)?;
    let budget: Budget = serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(BudgetRecord { budget, set_at: from_micros(r.get(1)?), set_by: r.get(2)? })
}

fn get(conn: &Connection, target: &str) -> rusqlite::Result<Option<BudgetRecord>> {
    conn.prepare_cached("SELECT budget, set_at, set_by FROM budgets WHERE target = ?1")?
        .query_row([target], row)
        .optional()
}

pub(super) fn list(conn: &Connection) -> rusqlite::Result<Vec<BudgetRecord>> {
    let mut stmt = conn.prepare_cached("SELECT budget, set_at, set_by FROM budgets ORDER BY target")?;
    let rows = stmt.query_map([], row)?;
    rows.collect()
}

pub(super) fn put(tx: &Transaction<'_>, record: &BudgetRecord) -> rusqlite::Result<Option<BudgetRecord>> {
    let target = record.budget.target.to_string();
    let previous = get(tx, &target)?;
    let budget =
        serde_json::to_string(&record.budget).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    tx.execute(
        "INSERT INTO budgets (target, budget, set_at, set_by) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (target) DO UPDATE SET budget = ?2, set_at = ?3, set_by = ?4",
        params![target, budget, micros(&record.set_at), record.set_by],
    )?;
    Ok(previous)
}

pub(super) fn delete(tx: &Transaction<'_>, target: &str) -> rusqlite::Result<Option<BudgetRecord>> {
    let previous = get(tx, target)?;
    tx.execute("DELETE FROM budgets WHERE target = ?1", [target])?;
    Ok(previous)
}
