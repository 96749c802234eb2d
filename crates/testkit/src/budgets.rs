//! [`glassbox_store::BudgetStore`]: one budget per target, replaced whole
//! (the replaced one returned), listed by target, deleted once.

use chrono::{Duration, TimeZone, Utc};
use glassbox_core::budget::{Action, Limit, Measure, Per};
use glassbox_core::{Budget, BudgetTarget};
use glassbox_store::BudgetRecord;

use crate::Factory;

fn record(target: &str, amount: f64, action: Action) -> BudgetRecord {
    BudgetRecord {
        budget: Budget {
            target: target.parse().unwrap(),
            limit: Limit { measure: Measure::Invocations, amount },
            per: Per::Minute,
            action,
            at: vec![50, 100],
        },
        set_at: Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap(),
        set_by: "admin".into(),
    }
}

pub async fn a_budget_per_target_is_replaced_whole_and_deleted_once(factory: &impl Factory) {
    let store = factory.budgets().await;
    let fan = record("fan", 50.0, Action::Stop);
    assert_eq!(store.put_budget(&fan).await.unwrap(), None, "nothing replaced");
    let billing = record("feature:billing", 10.0, Action::Alert);
    store.put_budget(&billing).await.unwrap();
    let group = record("group:greenhouse", 5.0, Action::Throttle);
    store.put_budget(&group).await.unwrap();
    assert_eq!(store.budgets().await.unwrap(), vec![fan.clone(), billing.clone(), group.clone()], "by target");

    let raised = BudgetRecord {
        set_at: fan.set_at + Duration::hours(1),
        set_by: "token:ops".into(),
        ..record("fan", 80.0, Action::Alert)
    };
    assert_eq!(store.put_budget(&raised).await.unwrap(), Some(fan), "the replaced budget comes back");
    assert_eq!(store.budgets().await.unwrap()[0], raised, "replaced whole");

    let target: BudgetTarget = "feature:billing".parse().unwrap();
    assert_eq!(store.delete_budget(&target).await.unwrap(), Some(billing));
    assert_eq!(store.delete_budget(&target).await.unwrap(), None, "deleted once");
    assert_eq!(store.budgets().await.unwrap(), vec![raised, group]);
}
