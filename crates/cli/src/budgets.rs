//! `glassbox budgets …`: cost budgets per function, feature or device
//! group, enforced at dispatch, and message budgets per device or group,
//! enforced by the gateway at PUBLISH (docs/cost.md).

use glassbox_api_types::{BudgetList, BudgetView, SetBudget, Warned};
use glassbox_core::budget::{Action, Limit, Measure, Per, parse_thresholds};
use glassbox_core::{Budget, BudgetTarget};

use crate::Remote;
use crate::render;

#[derive(clap::Subcommand)]
pub enum BudgetsCommand {
    /// Set the budget on a target (replacing one there): a limit per window and what happens at it.
    #[command(after_help = "TARGET is a function name, feature:NAME, group:DEVICE_GROUP or device:ID.

Actions, once the window's limit is used:
  alert     nothing is refused; each --at percentage is recorded (budget.threshold_reached)
  throttle  events wait (at most 10,000 in all) for a window with room; beyond, dropped
  stop      events are dropped (function.dropped, reason budget_exceeded) until the window rolls over

Invocations are counted when admitted; CPU milliseconds and cost when each invocation ends.
--messages counts the MQTT messages a device (device:ID) or a group's devices together
(group:NAME) publish, checked by the gateway at PUBLISH: one refused is answered 0x97
(quota exceeded, MQTT 5) and recorded as mqtt.publish_refused, reason budget_exceeded.

Examples:
  glassbox budgets set thermostat --invocations 50 --per 1m --action stop
  glassbox budgets set feature:billing --cost 5 --per 30d --action alert --at 50,80,100
  glassbox budgets set group:greenhouse --cpu-ms 60000 --per 1h --action throttle
  glassbox budgets set device:meter-7 --messages 20 --per 1m --action stop
  glassbox events query --type function.dropped")]
    Set(SetArgs),
    /// Every budget with its window's use.
    #[command(after_help = "glassbox budgets list\nglassbox budgets list --json")]
    List(ListArgs),
    /// One budget with its window's use.
    Get(TargetArgs),
    /// Delete a budget: what it held runs, and nothing more is refused by it.
    Delete(TargetArgs),
}

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("limit").required(true).args(["invocations", "cpu_ms", "cost", "messages"]))]
pub struct SetArgs {
    /// A function name, feature:NAME, group:DEVICE_GROUP or device:ID.
    #[arg(value_parser = parse_target)]
    target: BudgetTarget,
    /// MQTT messages per window (device:ID or group:NAME).
    #[arg(long)]
    messages: Option<f64>,
    /// Invocations per window.
    #[arg(long)]
    invocations: Option<f64>,
    /// CPU milliseconds per window.
    #[arg(long)]
    cpu_ms: Option<f64>,
    /// Cost per window, in the [cost] prices' currency.
    #[arg(long)]
    cost: Option<f64>,
    /// The window: 1m, 1h, 1d or 30d.
    #[arg(long, value_parser = parse_per)]
    per: Per,
    /// alert, throttle or stop.
    #[arg(long, value_parser = parse_action)]
    action: Action,
    /// Percentages recorded when reached, once per window each.
    #[arg(long, value_parser = parse_at, default_value = "50,80,100")]
    at: Thresholds,
    #[command(flatten)]
    remote: Remote,
    /// Print the budget as JSON.
    #[arg(long)]
    json: bool,
}

/// `--at`, parsed.
#[derive(Clone)]
struct Thresholds(Vec<u16>);

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    remote: Remote,
    /// Print a JSON array of budgets.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct TargetArgs {
    /// A function name, feature:NAME, group:DEVICE_GROUP or device:ID.
    #[arg(value_parser = parse_target)]
    target: BudgetTarget,
    #[command(flatten)]
    remote: Remote,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_target(text: &str) -> Result<BudgetTarget, String> {
    text.parse().map_err(|e: glassbox_core::budget::BadBudget| e.to_string())
}

fn parse_per(text: &str) -> Result<Per, String> {
    text.parse().map_err(|e: glassbox_core::budget::BadBudget| e.to_string())
}

fn parse_action(text: &str) -> Result<Action, String> {
    text.parse().map_err(|e: glassbox_core::budget::BadBudget| e.to_string())
}

fn parse_at(text: &str) -> Result<Thresholds, String> {
    parse_thresholds(text).map(Thresholds).map_err(|e| e.to_string())
}

impl SetArgs {
    /// The limit asked for, checked here so a bad one is refused before any request.
    fn limit(&self) -> anyhow::Result<Limit> {
        let (measure, amount) = match (self.invocations, self.cpu_ms, self.cost, self.messages) {
            (Some(n), _, _, _) => (Measure::Invocations, n),
            (_, Some(n), _, _) => (Measure::CpuMs, n),
            (_, _, Some(n), _) => (Measure::Cost, n),
            (_, _, _, Some(n)) => (Measure::Messages, n),
            _ => anyhow::bail!("give one limit: --invocations, --cpu-ms, --cost or --messages"),
        };
        Ok(Limit::new(measure, amount)?)
    }
}

pub async fn run(command: BudgetsCommand) -> anyhow::Result<()> {
    match command {
        BudgetsCommand::Set(a) => set(a).await,
        BudgetsCommand::List(a) => {
            let list: BudgetList = a.remote.client()?.fetch("/api/v1/budgets", &[]).await?;
            match a.json {
                true => println!("{}", serde_json::to_string_pretty(&list.budgets)?),
                false => table(&list.budgets),
            }
            Ok(())
        }
        BudgetsCommand::Get(a) => {
            let budget: BudgetView = a.remote.client()?.fetch(&path(&a.target), &[]).await?;
            match a.json {
                true => println!("{}", serde_json::to_string_pretty(&budget)?),
                false => table(std::slice::from_ref(&budget)),
            }
            Ok(())
        }
        BudgetsCommand::Delete(a) => {
            let deleted: Warned<BudgetView> = a.remote.client()?.delete_as(&path(&a.target)).await?;
            match a.json {
                true => println!("{}", serde_json::to_string(&deleted.answer)?),
                false => println!("deleted the budget on {}", deleted.answer.budget.target),
            }
            warn(deleted.warning.as_deref());
            Ok(())
        }
    }
}

fn path(target: &BudgetTarget) -> String {
    format!("/api/v1/budgets/{}", crate::client::segment(&target.to_string()))
}

async fn set(a: SetArgs) -> anyhow::Result<()> {
    let limit = a.limit()?;
    // Checked whole here too, so a measure the target cannot have is refused before any request.
    let budget = Budget { target: a.target.clone(), limit, per: a.per, action: a.action, at: a.at.0.clone() };
    budget.validate()?;
    let body = SetBudget { limit, per: a.per, action: a.action, at: Some(a.at.0.clone()) };
    let set: Warned<BudgetView> = a.remote.client()?.put_as(&path(&a.target), serde_json::to_string(&body)?).await?;
    let b = &set.answer.budget;
    match a.json {
        true => println!("{}", serde_json::to_string(&set.answer)?),
        false => println!(
            "budget on {}: {} {} per {}, action {}, recorded at {}%",
            b.target,
            amount(b.limit.measure, b.limit.amount),
            b.limit.measure.as_str(),
            b.per,
            b.action.as_str(),
            b.at.iter().map(u16::to_string).collect::<Vec<_>>().join("%, ")
        ),
    }
    warn(set.warning.as_deref());
    Ok(())
}

/// An amount as people read it: a count whole, a cost with its digits.
pub fn amount(measure: Measure, n: f64) -> String {
    match measure {
        Measure::Cost => format!("${n:.6}"),
        _ => format!("{n:.0}"),
    }
}

/// The budgets as a table: limit, use in the window, refused, and when the limit runs out at the current rate.
pub fn table(budgets: &[BudgetView]) {
    let rows: Vec<Vec<String>> = budgets
        .iter()
        .map(|v| {
            let (b, w) = (&v.budget, &v.window);
            vec![
                b.target.to_string(),
                format!("{} {} / {}", amount(b.limit.measure, b.limit.amount), b.limit.measure.as_str(), b.per),
                b.action.as_str().to_string(),
                format!("{} ({:.0}%)", amount(b.limit.measure, w.used), w.percent),
                w.refused.to_string(),
                exhaustion(v),
            ]
        })
        .collect();
    render::table(&["TARGET", "LIMIT", "ACTION", "USED", "REFUSED", "EXHAUSTED"], &rows);
}

/// When the limit runs out at the window's rate so far, in words.
fn exhaustion(v: &BudgetView) -> String {
    let w = &v.window;
    if w.percent >= 100.0 {
        return format!("now, until {}", render::clock(w.end));
    }
    match w.exhausted_at {
        Some(at) => {
            let left = (at - chrono::Utc::now()).num_seconds().max(0);
            format!("in {} at this rate", humantime::format_duration(std::time::Duration::from_secs(left as u64)))
        }
        None => "not this window".into(),
    }
}

fn warn(warning: Option<&str>) {
    if let Some(warning) = warning {
        eprintln!("warning: {warning}");
    }
}
