//! `/api/v1/budgets`: cost budgets, through the functions' budget service
//! (`glassbox_functions::Budgets`) with the caller's principal, which
//! records each change (`budget.set`, `budget.deleted`). Reading needs
//! `read`; setting and deleting need `deploy` (see `access`): a budget
//! changes what functions may run, as a deploy does.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use glassbox_api_types::{BudgetList, BudgetView, BudgetWindow, SetBudget, Warned};
use glassbox_core::{Budget, BudgetTarget};
use glassbox_functions::{BudgetError, Usage};

use super::auth::Caller;
use super::body::{JsonBody, Shape};
use super::params::Path;
use super::{ApiError, AppState};

impl Shape for SetBudget {
    const EXAMPLE: &'static str =
        r#"{"limit": {"measure": "invocations", "amount": 50}, "per": "1m", "action": "stop", "at": [50, 80, 100]}"#;
}

/// `GET /api/v1/budgets`: every budget with its window's use, by target.
pub async fn list(State(app): State<AppState>) -> Json<BudgetList> {
    Json(BudgetList { budgets: app.functions.budgets().list().into_iter().map(view).collect() })
}

/// `GET /api/v1/budgets/{target}`.
pub async fn get(State(app): State<AppState>, Path(target): Path<String>) -> Result<Json<BudgetView>, ApiError> {
    let target = parse_target(&target)?;
    Ok(Json(view(app.functions.budgets().get(&target).map_err(error)?)))
}

/// `PUT /api/v1/budgets/{target}`: sets the budget, replacing one there.
pub async fn put(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(target): Path<String>,
    JsonBody(body): JsonBody<SetBudget>,
) -> Result<Json<Warned<BudgetView>>, ApiError> {
    let target = parse_target(&target)?;
    let at = body.at.unwrap_or_else(|| Budget::AT_DEFAULT.to_vec());
    let budget = Budget { target, limit: body.limit, per: body.per, action: body.action, at };
    let set = app.functions.budgets().set(budget, &by).await.map_err(error)?;
    Ok(Json(Warned::new(view(set.value), set.unrecorded)))
}

/// `DELETE /api/v1/budgets/{target}`: the budget as it was.
pub async fn delete(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(target): Path<String>,
) -> Result<Json<Warned<BudgetView>>, ApiError> {
    let target = parse_target(&target)?;
    let deleted = app.functions.budgets().delete(&target, &by).await.map_err(error)?;
    Ok(Json(Warned::new(view(deleted.value), deleted.unrecorded)))
}

fn parse_target(text: &str) -> Result<BudgetTarget, ApiError> {
    text.parse().map_err(|e: glassbox_core::budget::BadBudget| ApiError::bad_request("invalid_budget", e.to_string()))
}

fn view(u: Usage) -> BudgetView {
    BudgetView {
        budget: u.record.budget,
        set_at: u.record.set_at,
        set_by: u.record.set_by,
        window: BudgetWindow {
            start: u.window_start,
            end: u.window_end,
            admitted: u.admitted,
            ran: u.ran,
            cpu_ms: u.cpu_ms,
            cost: u.cost,
            used: u.used,
            percent: u.percent,
            refused: u.refused,
            exhausted_at: u.exhausted_at,
        },
    }
}

fn error(e: BudgetError) -> ApiError {
    match e {
        BudgetError::Invalid(m) => ApiError::bad_request("invalid_budget", m),
        BudgetError::Unknown(_) => ApiError::not_found(e.to_string()),
        BudgetError::Full => ApiError::new(StatusCode::CONFLICT, "too_many_budgets", e.to_string()),
        BudgetError::Store(e) => e.into(),
    }
}
